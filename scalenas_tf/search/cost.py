"""What every family's cost record shares: MAC unit conversions and the search's cost measures.

Each family counts cost analytically from its encoding (`families/<name>/cost.py`) into a frozen
record that inherits `MacUnits`; a record has at least `params` and `macs`, and `measure(name)`
gives the number a search compares, in the unit `COST_MEASURES` names.
"""

from __future__ import annotations

# measure -> (unit name in summaries, divisor of the raw count)
COST_MEASURES = {"macs": ("gmacs", 1e9), "params": ("mparams", 1e6), "madds": ("madds_m", 1e6)}


class MacUnits:
    """MAC conversions and cost measures shared by the cost records (each has `macs` and `params`)."""

    @property
    def gmacs(self) -> float:
        """MACs / 1e9."""
        return self.macs / 1e9

    @property
    def gflops_hrnet(self) -> float:
        """MACs / 2**30, the "GFLOPs" printed by the HRNet and ScaleNAS papers."""
        return self.macs / 2**30

    @property
    def madds_m(self) -> float:
        """Multiply-adds in millions (MACs / 1e6), the MAdds of the mobile NAS papers."""
        return self.macs / 1e6

    def measure(self, name: str) -> float:
        """The cost in the unit of measure `name` (`"macs"`: GMACs, `"params"`: M params, `"madds"`: M)."""
        if name not in COST_MEASURES:
            raise ValueError(f"Unknown cost measure {name!r}. Expected one of {sorted(COST_MEASURES)}")
        raw = self.params if name == "params" else self.macs
        return raw / COST_MEASURES[name][1]

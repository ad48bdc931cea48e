"""What every family's cost record shares: MAC unit conversions, the search's cost measures, and the
latency features that the analytic counters accumulate.

Each family counts cost analytically from its encoding (`families/<name>/cost.py`) into a frozen
record that inherits `MacUnits`; a record has at least `params` and `macs`, and `measure(name)`
gives the number a search compares, in the unit `COST_MEASURES` names. A record also carries
`features`, counts of the work its extracted model executes (`LatencyFeatures`), from which a fitted
`search.latency.LatencyModel` predicts `latency_ms` without building the model.
"""

from __future__ import annotations

import dataclasses

# measure -> (unit name in summaries, divisor of the raw count)
COST_MEASURES = {
    "macs": ("gmacs", 1e9),
    "params": ("mparams", 1e6),
    "madds": ("madds_m", 1e6),
    "latency_ms": ("latency_ms", 1.0),
}

# The features every counter reports (see `LatencyFeatures`).
LATENCY_FEATURES = (
    "conv_macs",
    "pointwise_macs",
    "depthwise3_macs",
    "depthwise5_macs",
    "depthwise7_macs",
    "dense_macs",
    "conv_outputs",
    "memory_elements",
    "ops",
)


@dataclasses.dataclass(frozen=True)
class MacUnits:
    """MAC conversions and cost measures shared by the cost records (each has `macs` and `params`).

    Attributes (keyword-only, after the record's own fields):
        features: latency features of the work the extracted model executes (`LatencyFeatures`);
            not part of equality.
        latency_ms: the latency a `LatencyModel` predicted from `features`, or None (set with
            `dataclasses.replace`, as `Experiment.cost_of` does).
    """

    features: dict[str, int] = dataclasses.field(default_factory=dict, compare=False, kw_only=True)
    latency_ms: float | None = dataclasses.field(default=None, kw_only=True)

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
        """The cost in the unit of measure `name` (`"macs"`: GMACs, `"params"`: M params, `"madds"`: M,
        `"latency_ms"`: the predicted latency in ms).

        Raises:
            ValueError: an unknown measure, or `"latency_ms"` on a record without a predicted latency.
        """
        if name not in COST_MEASURES:
            raise ValueError(f"Unknown cost measure {name!r}. Expected one of {sorted(COST_MEASURES)}")
        if name == "latency_ms":
            if self.latency_ms is None:
                raise ValueError(
                    "The cost measure 'latency_ms' needs a latency predictor: set config.search.latency_model to "
                    "a JSON file written by `bin/benchmark.py --what=latency --latency_model=PATH`"
                )
            return float(self.latency_ms)
        raw = self.params if name == "params" else self.macs
        return raw / COST_MEASURES[name][1]


class LatencyFeatures:
    """Sums the latency features of the ops an extracted model executes (every family's counter uses one).

    A small set of counts, each of work whose cost per unit differs on a CPU runtime (LiteRT/XNNPACK):
    - `conv_macs`: MACs of dense k x k convs (k > 1), compute-bound, the most efficient per MAC;
    - `pointwise_macs`: MACs of dense 1x1 convs on a feature map (a GEMM);
    - `depthwise3_macs`, `depthwise5_macs`, `depthwise7_macs`: MACs of depthwise convs with a 3x3
      (or smaller), 5x5 and 7x7 (or larger) kernel, memory-bound and slower per MAC than dense convs;
      apart because their kernels differ: measured with LiteRT/XNNPACK on an AMD EPYC, a 7x7
      depthwise MAC cost several times a 3x3 or 5x5 one (2.6-23x in the fitted weights), and
      depthwise MACs in one sum ranked held-out SCARLET subnets (`configs/scarlet.py:cpu`) with
      Spearman 0.81, split by kernel 0.96;
    - `dense_macs`: MACs of dense layers and of 1x1 convs on a 1x1 map (classifier, SE), matrix-vector;
    - `conv_outputs`: elements written by conv and dense layers (activation traffic);
    - `memory_elements`: elements streamed by the ops without MACs (adds, resampling, concat,
      padding, activations that do not fuse into a conv, SE multiplies: their output; pooling: its
      input), memory-bound work that MACs do not see;
    - `ops`: ops executed, the per-op overhead that dominates small feature maps.

    Counts are exact integers of the static model; a latency model weighs them (`search.latency`).
    """

    def __init__(self):
        self.values = dict.fromkeys(LATENCY_FEATURES, 0)

    def conv(self, out_hw, c_in: int, c_out: int, kernel: int, groups: int = 1) -> None:
        """A conv writing `out_hw` x `c_out` (stride already applied)."""
        outputs = out_hw[0] * out_hw[1] * c_out
        macs = outputs * (c_in // groups) * kernel * kernel
        if groups > 1:
            key = "depthwise3_macs" if kernel <= 3 else "depthwise5_macs" if kernel <= 5 else "depthwise7_macs"
        elif kernel > 1:
            key = "conv_macs"
        elif out_hw[0] * out_hw[1] == 1:
            key = "dense_macs"
        else:
            key = "pointwise_macs"
        self.values[key] += macs
        self.values["conv_outputs"] += outputs
        self.values["ops"] += 1

    def dense(self, c_in: int, c_out: int) -> None:
        self.values["dense_macs"] += c_in * c_out
        self.values["conv_outputs"] += c_out
        self.values["ops"] += 1

    def memory(self, elements: int, ops: int = 1) -> None:
        """`ops` ops without MACs that stream `elements` elements together."""
        self.values["memory_elements"] += elements
        self.values["ops"] += ops

    def as_dict(self) -> dict[str, int]:
        return dict(self.values)

"""The ScaleNAS multi-resolution search space: architecture encodings, validation and sampling.

Pure Python (no TensorFlow), so that search, cost counting and the command-line tools stay cheap.

An architecture (`ScaleNASArch`) holds one `ModuleArch` per multi-resolution module, in network
order (stage 2, then stage 3, then stage 4). A module gives each branch's depth (number of
BasicBlocks) and the fusion bits `fusion[j][s][k]`: after block step `s`, target branch `j` adds
the (resampled) output of source branch `k`. The semantics are those of the authors' forward pass
(the released masks of the ScaleNAS authors, `load_official_mask`, follow them):

    for s in range(max(depths)):
        x_i = block_i_s(x_i) for every branch i with s < depths[i]   # finished branches pass through
        x_j = ReLU(x_j + sum(F_jks(x_k) for k != j if fusion[j][s][k]))   # for every target j

Canonical form (what validation accepts and hashing sees): `fusion[j][s]` has one bit per branch;
the self bit `fusion[j][s][j]` is 1 for `s < depths[j]` (the self term is always included) and
cross bits may only be set at steps the target itself runs (`s < depths[j]`, as in every released
mask); every bit at `s >= depths[j]` is 0.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from scalenas_tf.arch import ArchError
from scalenas_tf.arch import ArchFiles
from scalenas_tf.arch import EncodedArch
from scalenas_tf.arch import short

ARCH_FORMAT = "scalenas_tf.arch/v1"
# How a fusion edge brings a lower-resolution branch up to its target: "nearest" (the ScaleNAS
# supernet, pose HRNet, timm) or "bilinear" (HRNetV2 segmentation: half-pixel centres, to the
# target's exact size).
FUSION_UPSAMPLING = ("nearest", "bilinear")


@dataclasses.dataclass(frozen=True)
class ModuleArch:
    """One multi-resolution module: per-branch depth and per-step fusion bits.

    Args:
        depths: tuple of ints, one per branch.
        fusion: nested tuple `[target][step][source]` of 0/1 ints; `step` runs over the space's
            largest depth choice.
    """

    depths: tuple[int, ...]
    fusion: tuple[tuple[tuple[int, ...], ...], ...]

    @property
    def num_branches(self) -> int:
        return len(self.depths)

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def edges(self) -> list[tuple[int, int, int]]:
        """Active cross-branch fusion edges as `(target, step, source)` triples."""
        return [
            (j, s, k)
            for j, steps in enumerate(self.fusion)
            for s, bits in enumerate(steps)
            for k, bit in enumerate(bits)
            if bit and k != j
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"depths": list(self.depths), "fusion": [[list(b) for b in t] for t in self.fusion]}


@dataclasses.dataclass(frozen=True)
class ScaleNASArch(EncodedArch):
    """A ScaleNAS architecture: one `ModuleArch` per module, in network order."""

    modules: tuple[ModuleArch, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"format": ARCH_FORMAT, "modules": [m.to_dict() for m in self.modules]}

    @classmethod
    def from_dict(cls, data: Any) -> ScaleNASArch:
        """Reads `to_dict()` output. Raises `ArchError` naming the bad field."""
        if not isinstance(data, dict) or "modules" not in data:
            raise ArchError(
                "An arch must be a JSON object with a 'modules' list "
                f"(format {ARCH_FORMAT!r}). Received: {_short(data)}"
            )
        if data.get("format", ARCH_FORMAT) != ARCH_FORMAT:
            raise ArchError(f"Unknown arch format. Expected {ARCH_FORMAT!r}. Received: format={data['format']!r}")
        if not isinstance(data["modules"], list):
            raise ArchError(f"'modules' must be a list. Received: modules={_short(data['modules'])}")
        modules = []
        for m, entry in enumerate(data["modules"]):
            if not isinstance(entry, dict) or "depths" not in entry or "fusion" not in entry:
                raise ArchError(f"modules[{m}] must be an object with 'depths' and 'fusion'. Received: {_short(entry)}")
            depths = _int_tuple(entry["depths"], f"modules[{m}].depths")
            fusion = _bits_3d(entry["fusion"], f"modules[{m}].fusion")
            modules.append(ModuleArch(depths, fusion))
        return cls(tuple(modules))


@dataclasses.dataclass(frozen=True)
class ScaleNASSpace(ArchFiles):
    """The ScaleNAS multi-resolution space (HRNet-like, per-branch depth, any-to-any fusion).

    Args:
        width: int. Channels of branch 0; branch i has `width * 2**i` (W32: 32/64/128/256).
        depth_choices: sorted tuple of ints. BasicBlocks a branch may hold in one module.
        num_modules: modules in stages 2, 3, 4 (paper: 1, 4, 3).
        num_branches: branches in stages 2, 3, 4 (paper: 2, 3, 4).
        multi_scale_output: bool. False for top-down pose, where only branch 0 of the last module
            feeds the head (HRNet's `multi_scale_output=False`): `largest`, `hrnet` and the
            samplers then fuse every branch into target 0 at its last step and leave the other
            targets' last steps self-only; `smallest` keeps no fusion at all (the published
            "smallest", 13.62M for W32 pose).
        stem_channels: int. Channels of the two stride-2 stem convs and layer1's bottleneck width.
        layer1_blocks: int. Bottlenecks in layer1 (HRNet: 4, output `4 * stem_channels`).
        fusion_upsampling: `"nearest"` (default: the ScaleNAS supernet, pose HRNet and timm repeat
            pixels by 2**(k-j) and crop to the target) or `"bilinear"` (the HRNetV2 segmentation
            code: `F.interpolate(size=target, mode="bilinear", align_corners=False)`, i.e. half-pixel
            centres to the target's exact size). Changes no parameter or MAC count.
        bn_momentum: float in [0, 1). Every BatchNormalization's momentum in Keras's convention
            (the weight of the old moving statistics; PyTorch's momentum is `1 - bn_momentum`).
            Default 0.9 (PyTorch's default 0.1); the authors' segmentation code uses 0.99.

    Example:
    >>> space = ScaleNASSpace(width=32)
    >>> arch = space.hrnet()
    >>> space.validate(arch)
    >>> [m.depths for m in arch.modules][:2]
    [(4, 4), (4, 4, 4)]
    """

    arch_class = ScaleNASArch

    width: int = 32
    depth_choices: tuple[int, ...] = (2, 3, 4, 5)
    num_modules: tuple[int, ...] = (1, 4, 3)
    num_branches: tuple[int, ...] = (2, 3, 4)
    multi_scale_output: bool = True
    stem_channels: int = 64
    layer1_blocks: int = 4
    fusion_upsampling: str = "nearest"
    bn_momentum: float = 0.9

    def __post_init__(self):
        def positive_int(name, value):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")

        positive_int("width", self.width)
        positive_int("stem_channels", self.stem_channels)
        positive_int("layer1_blocks", self.layer1_blocks)
        for name in ("depth_choices", "num_modules", "num_branches"):
            value = getattr(self, name)
            items = tuple(value) if isinstance(value, (list, tuple, range, np.ndarray)) else None
            if items is None or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
                raise ValueError(f"`{name}` must be a list of ints. Received: {name}={value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in items))
        if not isinstance(self.multi_scale_output, (bool, np.bool_)):
            raise ValueError(f"`multi_scale_output` must be true or false. Received: {self.multi_scale_output!r}")
        if not isinstance(self.fusion_upsampling, str) or self.fusion_upsampling not in FUSION_UPSAMPLING:
            raise ValueError(
                f"`fusion_upsampling` must be one of {list(FUSION_UPSAMPLING)}. "
                f"Received: fusion_upsampling={self.fusion_upsampling!r}"
            )
        momentum = self.bn_momentum
        if (
            isinstance(momentum, (bool, np.bool_))
            or not isinstance(momentum, (int, float, np.integer, np.floating))
            or not 0.0 <= momentum < 1.0
        ):
            raise ValueError(
                "`bn_momentum` must be a number in [0, 1) (Keras convention: the weight of the old moving "
                f"statistics, PyTorch's 1 - momentum). Received: bn_momentum={momentum!r}"
            )
        object.__setattr__(self, "bn_momentum", float(momentum))  # JSON-able, as the layers store it
        if (
            not self.depth_choices
            or min(self.depth_choices) < 1
            or list(self.depth_choices) != sorted(set(self.depth_choices))
        ):
            raise ValueError(
                f"`depth_choices` must be distinct positive ints in increasing order. "
                f"Received: depth_choices={self.depth_choices}"
            )
        if len(self.num_modules) != len(self.num_branches) or not self.num_modules:
            raise ValueError(
                "`num_modules` and `num_branches` need one entry per stage. "
                f"Received: num_modules={self.num_modules}, num_branches={self.num_branches}"
            )
        if any(n < 1 for n in self.num_modules):
            raise ValueError(f"`num_modules` must be positive. Received: num_modules={self.num_modules}")
        expected = tuple(range(2, 2 + len(self.num_branches)))
        if self.num_branches != expected:
            raise ValueError(
                f"`num_branches` must add one branch per stage, starting at 2. Expected {expected}. "
                f"Received: num_branches={self.num_branches}"
            )

    # === Layout ===

    @property
    def max_steps(self) -> int:
        """Block steps a module can hold (the largest depth choice)."""
        return self.depth_choices[-1]

    def branch_channels(self, num_branches: int | None = None) -> tuple[int, ...]:
        n = self.num_branches[-1] if num_branches is None else num_branches
        return tuple(self.width * 2**i for i in range(n))

    def module_layout(self) -> list[tuple[int, int, int]]:
        """`(stage, module_in_stage, num_branches)` per module, in network order (stage from 2)."""
        return [
            (stage_index + 2, module, branches)
            for stage_index, (modules, branches) in enumerate(zip(self.num_modules, self.num_branches))
            for module in range(modules)
        ]

    @property
    def num_total_modules(self) -> int:
        return sum(self.num_modules)

    def module_label(self, m: int) -> str:
        stage, module, _ = self.module_layout()[m]
        return f"module {m} (stage {stage}, module {module})"

    # === Validation ===

    def validate(self, arch: ScaleNASArch) -> None:
        """Raises `ArchError` naming the module, branch or step and the bad value."""
        if not isinstance(arch, ScaleNASArch):
            raise ArchError(f"Expected a ScaleNASArch. Received: {type(arch).__name__}")
        layout = self.module_layout()
        if len(arch.modules) != len(layout):
            raise ArchError(
                f"Arch has {len(arch.modules)} modules; this space has {len(layout)} "
                f"(stages {self.num_modules}). Received: {len(arch.modules)} modules"
            )
        for m, ((_, _, num_branches), module) in enumerate(zip(layout, arch.modules)):
            where = self.module_label(m)
            if len(module.depths) != num_branches:
                raise ArchError(
                    f"{where}: expected {num_branches} branch depths. Received: depths={list(module.depths)}"
                )
            for i, d in enumerate(module.depths):
                if d not in self.depth_choices:
                    raise ArchError(
                        f"{where}, branch {i}: depth {d} is not in depth_choices {self.depth_choices}. "
                        f"Received: depths={list(module.depths)}"
                    )
            if len(module.fusion) != num_branches:
                raise ArchError(
                    f"{where}: fusion needs one entry per target branch ({num_branches}). "
                    f"Received: {len(module.fusion)} entries"
                )
            for j, steps in enumerate(module.fusion):
                if len(steps) != self.max_steps:
                    raise ArchError(
                        f"{where}, target branch {j}: fusion needs {self.max_steps} steps. Received: {len(steps)} steps"
                    )
                for s, bits in enumerate(steps):
                    self._validate_bits(where, module, j, s, bits)

    def _validate_bits(self, where, module, j, s, bits):
        if len(bits) != module.num_branches:
            raise ArchError(
                f"{where}, target branch {j}, step {s}: expected {module.num_branches} bits. Received: {list(bits)}"
            )
        if any(b not in (0, 1) for b in bits):
            raise ArchError(f"{where}, target branch {j}, step {s}: bits must be 0 or 1. Received: {list(bits)}")
        if s < module.depths[j]:
            if bits[j] != 1:
                raise ArchError(
                    f"{where}, target branch {j}, step {s}: the self bit must be 1 within the branch's depth "
                    f"(the self term is always included). Received: {list(bits)}"
                )
        elif any(bits):
            raise ArchError(
                f"{where}, target branch {j}, step {s}: fusion bits must be 0 at steps at or beyond the "
                f"branch's depth {module.depths[j]}. Received: {list(bits)}"
            )

    # === Named points ===

    def _make_module(self, depths, cross_bit) -> ModuleArch:
        """Builds a canonical module; `cross_bit(j, s, k)` decides each cross bit with s < depths[j]."""
        fusion = tuple(
            tuple(
                tuple((1 if k == j else int(cross_bit(j, s, k))) if s < depths[j] else 0 for k in range(len(depths)))
                for s in range(self.max_steps)
            )
            for j in range(len(depths))
        )
        return ModuleArch(tuple(int(d) for d in depths), fusion)

    def apply_output_rule(self, arch: ScaleNASArch) -> ScaleNASArch:
        """With `multi_scale_output=False`, the last module's last steps as HRNet's single output
        builds them (every branch into target 0, the other targets self-only); else `arch` unchanged.
        Samplers and search operators apply it to every arch they make."""
        return self._with_pose_output(arch)

    def _with_pose_output(self, arch: ScaleNASArch) -> ScaleNASArch:
        """Single-output last module: all-ones into target 0 at its last step, self-only elsewhere."""
        if self.multi_scale_output:
            return arch
        last = arch.modules[-1]
        d = last.depths

        def bit(j, s, k):
            if s == d[j] - 1:
                return j == 0
            return last.fusion[j][s][k]

        return ScaleNASArch(arch.modules[:-1] + (self._make_module(d, bit),))

    def largest(self) -> ScaleNASArch:
        """Deepest branches, every fusion bit on (for pose, every bit the single output can use).

        With `multi_scale_output=False` the last module's targets 1.. get self-only last steps, as
        HRNet builds no fuse layer for them; this reproduces the published pose figures.
        """
        d = self.depth_choices[-1]
        arch = ScaleNASArch(tuple(self._make_module((d,) * b, lambda j, s, k: 1) for _, _, b in self.module_layout()))
        return self._with_pose_output(arch)

    def smallest(self) -> ScaleNASArch:
        """Shallowest branches, no cross-branch fusion anywhere (the published "smallest")."""
        d = self.depth_choices[0]
        return ScaleNASArch(tuple(self._make_module((d,) * b, lambda j, s, k: 0) for _, _, b in self.module_layout()))

    def hrnet(self, depth: int = 4) -> ScaleNASArch:
        """HRNet: `depth` blocks per branch, all-ones fusion at each target's last step only."""
        if depth not in self.depth_choices:
            raise ArchError(f"HRNet depth {depth} is not in depth_choices {self.depth_choices}")
        arch = ScaleNASArch(
            tuple(self._make_module((depth,) * b, lambda j, s, k: s == depth - 1) for _, _, b in self.module_layout())
        )
        return self._with_pose_output(arch)

    def named(self, name: str) -> ScaleNASArch:
        """`'largest'`, `'smallest'` or `'hrnet'`."""
        points = {"largest": self.largest, "smallest": self.smallest, "hrnet": self.hrnet}
        if name not in points:
            raise ArchError(f"Unknown named arch {name!r}. Expected one of {sorted(points)}")
        return points[name]()

    # === Sampling ===

    def depth_groups(self) -> tuple[tuple[int, ...], ...]:
        """ScaleNAS depth groups: pairs of consecutive depth choices ({2,3}, {3,4}, {4,5})."""
        choices = self.depth_choices
        return tuple(tuple(choices[i : i + 2]) for i in range(max(1, len(choices) - 1)))

    def sample(
        self,
        rng: np.random.Generator,
        fusion_prob: float = 0.5,
        depth_choices: Sequence[int] | None = None,
    ) -> ScaleNASArch:
        """Samples an arch: each depth uniform over `depth_choices`, each cross bit on w.p. `fusion_prob`.

        Python-side sampling for tests and search; the trainer samples inside the compiled step.
        """
        choices = tuple(self.depth_choices if depth_choices is None else depth_choices)
        if not choices or not set(choices) <= set(self.depth_choices):
            raise ValueError(
                f"`depth_choices` must be a non-empty subset of {self.depth_choices}. Received: depth_choices={choices}"
            )
        if not 0.0 <= fusion_prob <= 1.0:
            raise ValueError(f"`fusion_prob` must be in [0, 1]. Received: fusion_prob={fusion_prob}")
        modules = []
        for _, _, b in self.module_layout():
            depths = tuple(int(d) for d in rng.choice(choices, size=b))
            bits = rng.random((b, self.max_steps, b)) < fusion_prob
            modules.append(self._make_module(depths, lambda j, s, k, bits=bits: bits[j, s, k]))
        return self._with_pose_output(ScaleNASArch(tuple(modules)))

    # === Flat integer vector (the supernet's arch tensor) ===

    def module_vector_size(self, num_branches: int) -> int:
        return num_branches + num_branches * self.max_steps * num_branches

    @property
    def vector_size(self) -> int:
        return sum(self.module_vector_size(b) for _, _, b in self.module_layout())

    def to_vector(self, arch: ScaleNASArch) -> np.ndarray:
        """The arch as a flat int32 vector: per module, depths then fusion bits `[target, step, source]`."""
        self.validate(arch)
        parts = []
        for module in arch.modules:
            parts.append(np.asarray(module.depths, dtype=np.int32))
            parts.append(np.asarray(module.fusion, dtype=np.int32).reshape(-1))
        return np.concatenate(parts)

    def from_vector(self, vector) -> ScaleNASArch:
        vector = np.asarray(vector).astype(np.int64).reshape(-1)
        if vector.size != self.vector_size:
            raise ArchError(f"Arch vector must have {self.vector_size} entries. Received: {vector.size}")
        modules, offset = [], 0
        for _, _, b in self.module_layout():
            depths = tuple(int(d) for d in vector[offset : offset + b])
            offset += b
            n = b * self.max_steps * b
            bits = vector[offset : offset + n].reshape(b, self.max_steps, b)
            offset += n
            modules.append(ModuleArch(depths, tuple(tuple(tuple(int(x) for x in r) for r in t) for t in bits)))
        arch = ScaleNASArch(tuple(modules))
        self.validate(arch)
        return arch

    # === The official ScaleNAS mask format ===

    def from_official_mask(self, mask: Any) -> ScaleNASArch:
        """Imports the authors' mask: a list of `{"d": depths, "f": fusion}` per module.

        Self bits carry no meaning (the self term is always added) and are canonicalized to 1;
        entries for steps at or beyond a module's max depth are padding and must be all zero.
        """
        layout = self.module_layout()
        if not isinstance(mask, (list, tuple)):
            raise ArchError(f"An official mask must be a list of modules. Received: {_short(mask)}")
        if len(mask) != len(layout):
            raise ArchError(
                f"Official mask has {len(mask)} modules; this space has {len(layout)} (stages {self.num_modules})"
            )
        modules = []
        for m, (entry, (_, _, b)) in enumerate(zip(mask, layout)):
            where = self.module_label(m)
            if not isinstance(entry, dict) or "d" not in entry or "f" not in entry:
                raise ArchError(f"{where}: expected an object with 'd' and 'f'. Received: {_short(entry)}")
            depths = _int_tuple(entry["d"], f"{where} 'd'")
            fusion = _bits_3d(entry["f"], f"{where} 'f'")
            if len(depths) != b:
                raise ArchError(f"{where}: expected {b} branch depths. Received: d={list(depths)}")
            for i, d in enumerate(depths):
                if d not in self.depth_choices:
                    raise ArchError(f"{where}, branch {i}: depth {d} is not in depth_choices {self.depth_choices}")
            if len(fusion) != b:
                raise ArchError(f"{where}: 'f' needs one entry per target branch ({b}). Received: {len(fusion)}")
            rows = []
            for j, steps in enumerate(fusion):
                if len(steps) > self.max_steps:
                    raise ArchError(f"{where}, target branch {j}: more than {self.max_steps} steps")
                row = []
                for s in range(self.max_steps):
                    bits = steps[s] if s < len(steps) else ()
                    if s >= max(depths):
                        if any(bits):
                            raise ArchError(
                                f"{where}, target branch {j}, step {s}: padding must be 0. Received: {list(bits)}"
                            )
                        row.append((0,) * b)
                        continue
                    if len(bits) != b:
                        raise ArchError(
                            f"{where}, target branch {j}, step {s}: expected {b} bits. Received: {list(bits)}"
                        )
                    row.append(
                        tuple((1 if k == j else int(x)) if s < depths[j] else int(x) for k, x in enumerate(bits))
                    )
                rows.append(tuple(row))
            modules.append(ModuleArch(depths, tuple(rows)))
        arch = ScaleNASArch(tuple(modules))
        self.validate(arch)
        return arch

    def to_official_mask(self, arch: ScaleNASArch) -> list[dict[str, Any]]:
        """The authors' format (steps at or beyond a module's max depth padded as `[0, 0]`)."""
        self.validate(arch)
        out = []
        for module in arch.modules:
            f = [
                [list(bits) if s < module.max_depth else [0, 0] for s, bits in enumerate(steps)]
                for steps in module.fusion
            ]
            out.append({"d": list(module.depths), "f": f})
        return out

    def load_official_mask(self, path: str | os.PathLike, allow_pickle: bool = False) -> ScaleNASArch:
        """Reads an official mask from `.json`, or from the authors' pickled `.npy` if `allow_pickle`.

        Loading a pickle runs code from the file, so `.npy` needs the explicit opt-in.
        """
        path = os.fspath(path)
        if path.endswith(".npy"):
            if not allow_pickle:
                raise ArchError(
                    f"{path} is a pickled .npy; loading it runs code from the file. Pass allow_pickle=True "
                    "only for files you trust, or convert it to JSON."
                )
            try:
                data = np.load(path, allow_pickle=True)
            except (ValueError, EOFError, pickle.UnpicklingError) as e:  # numpy's errors for a damaged file
                reason = " ".join(str(e).split())
                raise ArchError(f"{path} is not a readable .npy file ({type(e).__name__}: {reason})") from None
            mask = data.tolist() if isinstance(data, np.ndarray) else data
            return self.from_official_mask(_to_builtin(mask))
        try:
            with open(path) as f:
                mask = json.load(f)
        except json.JSONDecodeError as e:
            raise ArchError(f"{path} is not valid JSON: {e}") from None
        return self.from_official_mask(mask)

    # === Logs and search ===

    def describe(self, arch: ScaleNASArch) -> str:
        """A short one-line form for tables: branch depths per module (`"4-4 4-4-4 ..."`)."""
        return " ".join("-".join(str(d) for d in m.depths) for m in arch.modules)

    def flatten(self, arch: ScaleNASArch) -> dict[str, int]:
        """`{"stage3/module1/branch2/depth": 4, "stage3/module1/fuse2_s3_from0": 1, ...}` for logs."""
        flat = {}
        for (stage, module, _), mod in zip(self.module_layout(), arch.modules):
            prefix = f"stage{stage}/module{module}"
            for i, d in enumerate(mod.depths):
                flat[f"{prefix}/branch{i}/depth"] = d
            for j, steps in enumerate(mod.fusion):
                for s, bits in enumerate(steps):
                    for k, bit in enumerate(bits):
                        if k != j and s < mod.depths[j]:
                            flat[f"{prefix}/fuse{j}_s{s}_from{k}"] = bit
        return flat


_short = short


def _int_tuple(value: Any, field: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        raise ArchError(f"{field} must be a list of ints. Received: {_short(value)}")
    return tuple(int(v) for v in value)


def _bits_3d(value: Any, field: str) -> tuple[tuple[tuple[int, ...], ...], ...]:
    if not isinstance(value, (list, tuple)):
        raise ArchError(f"{field} must be a list [target][step][source] of 0/1. Received: {_short(value)}")
    out = []
    for j, steps in enumerate(value):
        if not isinstance(steps, (list, tuple)):
            raise ArchError(f"{field}[{j}] must be a list of steps. Received: {_short(steps)}")
        out.append(tuple(_int_tuple(bits, f"{field}[{j}][{s}]") for s, bits in enumerate(steps)))
    return tuple(out)


def _to_builtin(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _to_builtin(value.tolist())
    if isinstance(value, dict):
        return {k: _to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_builtin(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value

"""The ScaleNet space: a base model (7 MBConv stages) times a scaling strategy (depth, width, resolution).

Pure Python (no TensorFlow), like the other spaces. An architecture (`ScaleNetArch`) is a base path
and one strategy:

    base        7 lists of block choice names, stage i holding min_blocks[i]..max_blocks[i] blocks,
                each name `K{kernel}E{expand}[+SE]` (e.g. "K5E6+SE"; stage 1 has expand 1)
    depth       d: stage i of the generated network has ceil(n_i * d) blocks, the extra ones
                copies of the stage's last base block
    width       w: the stem and every block have ceil(c * w) channels (never the 1x1 head)
    resolution  the input side in pixels (ceil(224 * r) for a resolution multiplier r)

`ScaleNetSpace.generate(arch)` turns an arch into a `Network`: the list of concrete blocks with their
channels, hidden and squeeze widths, strides and residuals. The cost counter, the static Keras model
and extraction all read that one list, so they cannot disagree about what an arch means.

Scaling stage j (searched: j = 1..M, M = 3) offers the depth and width multipliers
`depth_multipliers[j]` / `width_multipliers[j]` and the pixel sizes `resolutions[j]`; stage 0 is the
base model (1, 1, 224). Its FLOPs budget is 2^j f0 (see `budget`). A generalized stage (j > M, e.g.
ScaleNet-S4) may use any d, w >= 1 and resolution: such an arch is in the space, but not trained by
the supernet (`stage_of` returns None).

Reference:
    Xie et al., "ScaleNet: Searching for the Model to Scale", ECCV 2022 (and its supplement);
    ../shared/reference/scalenet.md, which names the sources of every rule and the choices made.
    Tan and Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019.
"""

from __future__ import annotations

import dataclasses
import math
import re
from fractions import Fraction
from typing import Any

import numpy as np

from scalenas_tf.arch import ArchError
from scalenas_tf.arch import ArchFiles
from scalenas_tf.arch import EncodedArch
from scalenas_tf.arch import short

SCALENET_ARCH_FORMAT = "scalenas_tf.scalenet_arch/v1"
NUM_STAGES = 7

# Supplement Table 1 (the official super-supernet's skeleton).
SCALENET_CHANNELS = (16, 32, 40, 80, 96, 192, 320)
SCALENET_STRIDES = (1, 2, 2, 2, 1, 2, 1)
SCALENET_MAX_BLOCKS = (1, 4, 4, 4, 4, 4, 1)
# EfficientNet-B0's skeleton (Tan and Le 2019, Table 1).
EFFICIENTNET_B0_CHANNELS = (16, 24, 40, 80, 112, 192, 320)

# Supplement Table 2 / the official training config: one list per scaling stage, shared by depth
# and width; resolutions as the code's pixel lists, with the multipliers behind them.
SCALING_MULTIPLIERS = (
    (1.0,),
    (1.04, 1.08, 1.12, 1.16),
    (1.2, 1.24, 1.28, 1.32, 1.36),
    (1.4, 1.44, 1.48, 1.52, 1.56, 1.6, 1.64),
)
RESOLUTIONS = ((224,), (224, 240, 256), (272, 288, 304), (320, 336, 354))
RESOLUTION_MULTIPLIERS = ((1.0,), (1.0, 1.07, 1.14), (1.21, 1.285, 1.355), (1.425, 1.5, 1.58))

SE_SQUEEZE = ("hidden", "input")
HIDDEN_RULES = ("base_then_scale", "scale_then_expand")
SPATIAL_RULES = ("ceil", "floor")
PATH_GENERATIONS = ("scalenet", "efficientnet")
ACTIVATIONS = ("hswish", "swish", "relu")
SE_GATES = ("hard_sigmoid", "sigmoid")

_BLOCK_NAME = re.compile(r"^K(\d+)E(\d+)(\+SE)?$")


def _kse(kernels, expands, ses):
    return tuple(f"K{k}E{e}" + ("+SE" if se else "") for se in ses for e in expands for k in kernels)


# name -> (stage-1 choices, choices of stages 2..7).
CHOICE_PRESETS = {
    # What the official code trains and the released models use: E6 + SE, stage 1 E1 + SE.
    "official": (_kse((3, 5, 7), (1,), (True,)), _kse((3, 5, 7), (6,), (True,))),
    # The paper's space (supplement Table 1): K3/5/7 x E3/6 x SE yes/no; stage 1 E1.
    "paper": (_kse((3, 5, 7), (1,), (False, True)), _kse((3, 5, 7), (3, 6), (False, True))),
}

# ScaleNet-S0's base path (the released configs); every released model ScaleNet-S0..S5 scales it.
SCALENET_S0_BASE = (
    ("K5E1+SE",),
    ("K5E6+SE",),
    ("K7E6+SE", "K7E6+SE", "K5E6+SE", "K3E6+SE"),
    ("K5E6+SE", "K5E6+SE"),
    ("K7E6+SE", "K7E6+SE"),
    ("K7E6+SE", "K5E6+SE", "K7E6+SE"),
    ("K5E6+SE",),
)
# EfficientNet-B0 (kernel, expand, repeats per stage), a point of a space with its channels.
EFFICIENTNET_B0_BASE = (
    ("K3E1+SE",),
    ("K3E6+SE",) * 2,
    ("K5E6+SE",) * 2,
    ("K3E6+SE",) * 3,
    ("K5E6+SE",) * 3,
    ("K5E6+SE",) * 4,
    ("K3E6+SE",),
)

# Named strategies (d, w, px). ScaleNet-S*: the released configs (S1 / S3 depth 1.04 / 1.40 give the
# same per-stage depths as Table 3's 1.08 / 1.48 on this base). EfficientNet-S*: EfficientNet-B0 with
# the same strategies and ScaleNet path generation. EfficientNet-B*: EfficientNet's own compound
# scaling (needs `path_generation="efficientnet"`).
_SCALENET_STRATEGIES = {
    0: (1.0, 1.0, 224),
    1: (1.04, 1.04, 256),
    2: (1.36, 1.2, 304),
    3: (1.4, 1.4, 354),
    4: (1.653, 1.534, 458),
    5: (1.848, 1.688, 533),
}
_EFFICIENTNET_COMPOUND = {
    1: (1.1, 1.0, 240),
    2: (1.2, 1.1, 260),
    3: (1.4, 1.2, 300),
    4: (1.8, 1.4, 380),
    5: (2.2, 1.6, 456),
}
# Supplement Table 3: searched (S1..S3) and generalized (S4, S5) strategies as (d, w, r) multipliers.
TABLE3_STRATEGIES = (
    (1.0, 1.0, 1.0),
    (1.08, 1.04, 1.14),
    (1.36, 1.2, 1.355),
    (1.48, 1.4, 1.58),
    (1.653, 1.534, 2.042),
    (1.848, 1.688, 2.378),
)


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named arch and the skeleton and path generation it is defined for."""

    base: tuple[tuple[str, ...], ...]
    depth: float
    width: float
    resolution: int
    channels: tuple[int, ...]
    path_generation: str = "scalenet"


def _presets() -> dict[str, Preset]:
    presets = {}
    for j, (d, w, px) in _SCALENET_STRATEGIES.items():
        presets[f"scalenet_s{j}"] = Preset(SCALENET_S0_BASE, d, w, px, SCALENET_CHANNELS)
    presets["efficientnet_b0"] = Preset(EFFICIENTNET_B0_BASE, 1.0, 1.0, 224, EFFICIENTNET_B0_CHANNELS)
    for j, (d, w, px) in _SCALENET_STRATEGIES.items():
        if j:
            presets[f"efficientnet_s{j}"] = Preset(EFFICIENTNET_B0_BASE, d, w, px, EFFICIENTNET_B0_CHANNELS)
    for j, (d, w, px) in _EFFICIENTNET_COMPOUND.items():
        presets[f"efficientnet_b{j}"] = Preset(
            EFFICIENTNET_B0_BASE, d, w, px, EFFICIENTNET_B0_CHANNELS, path_generation="efficientnet"
        )
    return presets


PRESETS = _presets()


@dataclasses.dataclass(frozen=True)
class BlockChoice:
    """An MBConv choice: `kernel` x `kernel` depthwise, expansion `expand`, optional SE."""

    kernel: int
    expand: int
    se: bool = False

    @property
    def name(self) -> str:
        return f"K{self.kernel}E{self.expand}" + ("+SE" if self.se else "")


def parse_choice(name: Any) -> BlockChoice:
    """`"K5E6+SE"` -> `BlockChoice(5, 6, True)`; anything else is an ArchError."""
    match = _BLOCK_NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise ArchError(f"a block choice is 'K<kernel>E<expand>[+SE]', e.g. 'K5E6+SE'. Received: {short(name)}")
    return BlockChoice(int(match.group(1)), int(match.group(2)), bool(match.group(3)))


def scale(channels: int, multiplier: float) -> int:
    """ceil(channels * multiplier), computed on the multiplier's decimal value (1.16 * 25 is 29, not 30)."""
    return math.ceil(Fraction(int(channels)) * Fraction(repr(float(multiplier))))


def round_filters(channels: int, multiplier: float, divisor: int = 8) -> int:
    """EfficientNet's width rounding: the nearest multiple of `divisor`, never below 90% of c * w."""
    value = channels * multiplier
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * value else rounded)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


@dataclasses.dataclass(frozen=True)
class ScaleNetArch(EncodedArch):
    """A base path (7 lists of choice names) and a scaling strategy (depth, width, resolution in pixels)."""

    base: tuple[tuple[str, ...], ...]
    depth: float = 1.0
    width: float = 1.0
    resolution: int = 224

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SCALENET_ARCH_FORMAT,
            "base": [list(stage) for stage in self.base],
            "depth": float(self.depth),
            "width": float(self.width),
            "resolution": int(self.resolution),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ScaleNetArch:
        """Reads `to_dict()` output (`format` optional). Raises ArchError naming the field and the value."""
        if not isinstance(data, dict):
            raise ArchError(
                'A ScaleNet arch is an object {"base": [[...7 lists of choice names...]], "depth": d, "width": w, '
                f'"resolution": px}}. Received: {short(data)}'
            )
        if data.get("format", SCALENET_ARCH_FORMAT) != SCALENET_ARCH_FORMAT:
            raise ArchError(f"Unknown arch format. Expected {SCALENET_ARCH_FORMAT!r}. Received: {data['format']!r}")
        unknown = sorted(set(data) - {"format", "base", "depth", "width", "resolution"})
        if unknown:
            raise ArchError(f"Unknown key(s) in a ScaleNet arch: {unknown}. Known: base, depth, width, resolution")
        if "base" not in data:
            raise ArchError(f"A ScaleNet arch needs a 'base' (7 lists of choice names). Received keys: {sorted(data)}")
        base = data["base"]
        if (
            not isinstance(base, (list, tuple))
            or len(base) != NUM_STAGES
            or not all(isinstance(stage, (list, tuple)) for stage in base)
        ):
            raise ArchError(
                f"'base' must be {NUM_STAGES} lists of choice names, one per stage. Received: {short(base)}"
            )
        for i, stage in enumerate(base):
            for b, name in enumerate(stage):
                try:
                    parse_choice(name)
                except ArchError as e:
                    raise ArchError(f"stage {i + 1} block {b + 1} (base[{i}][{b}]): {e}") from None
        fields = {"depth": 1.0, "width": 1.0, "resolution": 224}
        for key in fields:
            value = data.get(key, fields[key])
            if not _is_number(value) or not math.isfinite(value):
                raise ArchError(f"'{key}' must be a number. Received: {key}={short(value)}")
            fields[key] = value
        if fields["resolution"] != int(fields["resolution"]):
            raise ArchError(f"'resolution' is in pixels, an int. Received: resolution={fields['resolution']!r}")
        return cls(
            tuple(tuple(stage) for stage in base),
            float(fields["depth"]),
            float(fields["width"]),
            int(fields["resolution"]),
        )


@dataclasses.dataclass(frozen=True)
class Block:
    """One MBConv block of a generated network (every width already scaled).

    `hidden` is the depthwise width (= `in_channels` when `expand` is 1: no expand conv), `squeeze`
    the SE bottleneck (0 without SE); `slot` is the block's index in its stage (copies included);
    `copy` is True for blocks that depth scaling added.
    """

    stage: int
    slot: int
    kernel: int
    expand: int
    se: bool
    in_channels: int
    out_channels: int
    hidden: int
    squeeze: int
    stride: int
    copy: bool = False

    @property
    def has_expand(self) -> bool:
        return self.expand != 1

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclasses.dataclass(frozen=True)
class Network:
    """A generated network: stem (3 -> `stem_channels`, 3x3 stride 2), `blocks`, head 1x1 conv to
    `head_channels`, global average pooling, classifier; input `resolution` x `resolution`."""

    resolution: int
    stem_channels: int
    blocks: tuple[Block, ...]
    head_channels: int

    @property
    def depths(self) -> tuple[int, ...]:
        """Blocks per stage (copies included)."""
        return tuple(sum(b.stage == i for b in self.blocks) for i in range(NUM_STAGES))


def _positive_ints(name, value, length=None):
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise ValueError(f"`{name}` must be a non-empty list of positive ints. Received: {name}={value!r}")
    if length is not None and len(value) != length:
        raise ValueError(f"`{name}` needs one entry per stage ({length}). Received: {name}={value!r}")
    return tuple(int(v) for v in value)


def _stage_lists(name, value, kind):
    """Per-scaling-stage lists: a list of non-empty lists of numbers (ints for pixels)."""
    ok = isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) and v for v in value)
    if ok:
        ok = all(_is_number(x) and x > 0 and (kind is float or x == int(x)) for v in value for x in v)
    if not ok:
        what = "pixel sizes" if kind is int else "positive multipliers"
        raise ValueError(
            f"`{name}` must be one non-empty list of {what} per scaling stage, e.g. ((1.0,), (1.04, 1.08)). "
            f"Received: {name}={value!r}"
        )
    return tuple(tuple(kind(x) for x in v) for v in value)


@dataclasses.dataclass(frozen=True)
class ScaleNetSpace(ArchFiles):
    """Base models x scaling strategies (ScaleNet's scaling-stage space).

    Args:
        choices: `"official"` (K3/5/7 E6 + SE; stage 1 E1 + SE: what the official code trains),
            `"paper"` (K3/5/7 x E3/6 x SE yes/no; stage 1 E1) or a list of `K{k}E{e}[+SE]` names
            for stages 2..7 (stage 1 then offers each kernel / SE pair of the list with E1).
        stem_channels: the stem 3x3 stride-2 conv's output (32).
        stage_channels, stage_strides: out channels and first-block stride of the 7 stages.
        min_blocks, max_blocks: blocks per stage in a base path (1..1/4/4/4/4/4/1).
        head_channels: the 1x1 conv before pooling (1280; width scaling leaves it alone).
        depth_multipliers, width_multipliers: one list per scaling stage j = 0..M (stage 0: (1.0,)).
        resolutions: pixel sizes per scaling stage; resolution_multipliers: the r behind each.
        base_resolution: the base model's input side (224); r -> ceil(base_resolution * r) px.
        se_squeeze: `"hidden"` (SE bottleneck = hidden // 4, the official super-supernet) or
            `"input"` (= block input // 4: EfficientNet and the retrained ScaleNet-S0..S5).
        hidden_rule: `"base_then_scale"` (hidden = ceil(round(c_in * e) * w): the trained weights)
            or `"scale_then_expand"` (round(ceil(c_in * w) * e): the official FLOPs counter).
        spatial: `"ceil"` (a strided conv's output is ceil(h / 2), as built) or `"floor"` (the
            official FLOPs counter; cost only).
        path_generation: `"scalenet"` (ceil(n d) blocks, ceil(c w) channels, head fixed) or
            `"efficientnet"` (EfficientNet's compound scaling: ceil(n d) blocks, every width
            including stem and head rounded to a multiple of 8).
        activation: `"hswish"` (official), `"swish"` (EfficientNet) or `"relu"`, in the stem, blocks
            and head; se_activation and se_gate: the SE's inner activation (`"relu"` official,
            `"swish"` EfficientNet) and gate (`"hard_sigmoid"` / `"sigmoid"`).
        f0: the base FLOPs budget in MACs (stage j's budget is 2^j f0); None: not set (estimate it
            with `cost.estimate_f0`).

    Example:
    >>> space = ScaleNetSpace()
    >>> net = space.generate(space.named("scalenet_s1"))
    >>> net.depths, net.resolution
    ((2, 2, 5, 3, 3, 4, 2), 256)
    """

    arch_class = ScaleNetArch

    choices: Any = "official"
    stem_channels: int = 32
    stage_channels: tuple[int, ...] = SCALENET_CHANNELS
    stage_strides: tuple[int, ...] = SCALENET_STRIDES
    min_blocks: tuple[int, ...] = (1,) * NUM_STAGES
    max_blocks: tuple[int, ...] = SCALENET_MAX_BLOCKS
    head_channels: int = 1280
    depth_multipliers: tuple[tuple[float, ...], ...] = SCALING_MULTIPLIERS
    width_multipliers: tuple[tuple[float, ...], ...] = SCALING_MULTIPLIERS
    resolutions: tuple[tuple[int, ...], ...] = RESOLUTIONS
    resolution_multipliers: tuple[tuple[float, ...], ...] = RESOLUTION_MULTIPLIERS
    base_resolution: int = 224
    se_squeeze: str = "hidden"
    hidden_rule: str = "base_then_scale"
    spatial: str = "ceil"
    path_generation: str = "scalenet"
    activation: str = "hswish"
    se_activation: str = "relu"
    se_gate: str = "hard_sigmoid"
    f0: float | None = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("stage_channels", _positive_ints("stage_channels", self.stage_channels, NUM_STAGES))
        set_("stage_strides", _positive_ints("stage_strides", self.stage_strides, NUM_STAGES))
        set_("min_blocks", _positive_ints("min_blocks", self.min_blocks, NUM_STAGES))
        set_("max_blocks", _positive_ints("max_blocks", self.max_blocks, NUM_STAGES))
        if any(s not in (1, 2) for s in self.stage_strides):
            raise ValueError(f"`stage_strides` must be 1 or 2. Received: stage_strides={self.stage_strides}")
        for i, (lo, hi) in enumerate(zip(self.min_blocks, self.max_blocks)):
            if lo > hi:
                raise ValueError(
                    f"Stage {i + 1}: min_blocks {lo} > max_blocks {hi}. "
                    f"Received: min_blocks={self.min_blocks}, max_blocks={self.max_blocks}"
                )
        for name in ("stem_channels", "head_channels", "base_resolution"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
        for name in ("depth_multipliers", "width_multipliers", "resolution_multipliers"):
            set_(name, _stage_lists(name, getattr(self, name), float))
        set_("resolutions", _stage_lists("resolutions", self.resolutions, int))
        lists = {n: getattr(self, n) for n in ("depth_multipliers", "width_multipliers", "resolutions")}
        lists["resolution_multipliers"] = self.resolution_multipliers
        if len({len(v) for v in lists.values()}) != 1:
            raise ValueError(
                "`depth_multipliers`, `width_multipliers`, `resolutions` and `resolution_multipliers` need one "
                f"list per scaling stage each. Received lengths: { {n: len(v) for n, v in lists.items()} }"
            )
        for j, (px, r) in enumerate(zip(self.resolutions, self.resolution_multipliers)):
            if len(px) != len(r):
                raise ValueError(
                    f"Scaling stage {j}: resolutions {px} and resolution_multipliers {r} must pair up one to one"
                )
        for name in ("depth_multipliers", "width_multipliers"):
            if any(m < 1 for v in getattr(self, name) for m in v):
                raise ValueError(f"`{name}` must be >= 1 (scaling up). Received: {name}={getattr(self, name)}")
        options = (
            ("se_squeeze", SE_SQUEEZE),
            ("hidden_rule", HIDDEN_RULES),
            ("spatial", SPATIAL_RULES),
            ("path_generation", PATH_GENERATIONS),
            ("activation", ACTIVATIONS),
            ("se_activation", ACTIVATIONS),
            ("se_gate", SE_GATES),
        )
        for name, allowed in options:
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}. Received: {name}={getattr(self, name)!r}")
        if self.f0 is not None and (not _is_number(self.f0) or self.f0 <= 0):
            raise ValueError(f"`f0` must be a positive number of MACs or None. Received: f0={self.f0!r}")
        first, other = self._choice_lists()
        set_("choices", self.choices if isinstance(self.choices, str) else other)
        object.__setattr__(self, "_first", first)
        object.__setattr__(self, "_other", other)

    def _choice_lists(self):
        if isinstance(self.choices, str):
            if self.choices not in CHOICE_PRESETS:
                raise ValueError(
                    f"`choices` must be one of {sorted(CHOICE_PRESETS)} or a list of 'K<k>E<e>[+SE]' names. "
                    f"Received: choices={self.choices!r}"
                )
            return CHOICE_PRESETS[self.choices]
        if not isinstance(self.choices, (list, tuple)) or not self.choices:
            raise ValueError(f"`choices` must be a preset name or a non-empty list. Received: choices={self.choices!r}")
        parsed = []
        for name in self.choices:
            try:
                block = parse_choice(name)
            except ArchError as e:
                raise ValueError(f"`choices`: {e}") from None
            if block.kernel % 2 == 0 or block.expand < 1:
                raise ValueError(f"`choices`: {name!r} needs an odd kernel and expand >= 1")
            parsed.append(block)
        other = tuple(dict.fromkeys(b.name for b in parsed))
        first = tuple(dict.fromkeys(BlockChoice(b.kernel, 1, b.se).name for b in parsed))
        return first, other

    # === Structure ===

    def stage_choices(self, stage: int) -> tuple[str, ...]:
        """The choice names offered in `stage` (0-based; stage 0 is the paper's stage 1, expand 1)."""
        return self._first if stage == 0 else self._other

    @property
    def num_scaling_stages(self) -> int:
        """M + 1: the base model (stage 0) and the searched scaling stages."""
        return len(self.resolutions)

    def stage_of(self, arch: ScaleNetArch) -> int | None:
        """The scaling stage whose lists hold `arch`'s (d, w, px), or None (a generalized strategy)."""
        for j in range(self.num_scaling_stages):
            if (
                arch.depth in self.depth_multipliers[j]
                and arch.width in self.width_multipliers[j]
                and arch.resolution in self.resolutions[j]
            ):
                return j
        return None

    def resolution_multiplier(self, px: int) -> float:
        """The multiplier behind a pixel size of the lists, else px / base_resolution."""
        for pxs, rs in zip(self.resolutions, self.resolution_multipliers):
            if px in pxs:
                return rs[pxs.index(px)]
        return px / self.base_resolution

    def budget(self, stage: int) -> float:
        """Scaling stage j's FLOPs budget, 2^j f0 (MACs). Raises ValueError when f0 is not set."""
        if self.f0 is None:
            raise ValueError("config.search_space.f0 is not set; estimate it with `bin/cost.py --budget_samples=N`")
        return float(2**stage * self.f0)

    # === Validation ===

    def validate(self, arch: ScaleNetArch) -> None:
        """Raises ArchError naming the stage, block and value if `arch` is not in this space."""
        if not isinstance(arch, ScaleNetArch):
            raise ArchError(f"Expected a ScaleNetArch. Received: {type(arch).__name__}")
        if len(arch.base) != NUM_STAGES:
            raise ArchError(f"A ScaleNet base has {NUM_STAGES} stages. Received: {len(arch.base)}")
        for i, stage in enumerate(arch.base):
            if not self.min_blocks[i] <= len(stage) <= self.max_blocks[i]:
                raise ArchError(
                    f"stage {i + 1} (base[{i}]) has {len(stage)} blocks; this space allows "
                    f"{self.min_blocks[i]}..{self.max_blocks[i]}"
                )
            for b, name in enumerate(stage):
                if name not in self.stage_choices(i):
                    raise ArchError(
                        f"stage {i + 1} block {b + 1} (base[{i}][{b}]) = {short(name)}: not a choice of this space's "
                        f"stage {i + 1}; expected one of {list(self.stage_choices(i))}"
                    )
        for key in ("depth", "width"):
            value = getattr(arch, key)
            if not _is_number(value) or not math.isfinite(value) or not 1 <= value <= 16:
                raise ArchError(f"{key}={short(value)}: a multiplier must be in [1, 16]")
        if not isinstance(arch.resolution, (int, np.integer)) or not 8 <= arch.resolution <= 4096:
            raise ArchError(f"resolution={short(arch.resolution)}: must be an int number of pixels in [8, 4096]")

    # === Path generation ===

    def generate(self, arch: ScaleNetArch, validate: bool = True) -> Network:
        """The scaled network of `arch` (supplement §F; EfficientNet's rules with `path_generation="efficientnet"`).

        Depth: stage i gets ceil(n_i * d) blocks; blocks beyond n_i copy the stage's last base block
        (stride 1, in = out). Width (`"scalenet"`): ceil(c * w) for the stem and every block, head fixed;
        (`"efficientnet"`): `round_filters(c, w)` for stem, blocks and head. Hidden width per
        `hidden_rule`, SE squeeze per `se_squeeze` (at least 1).
        """
        if validate:
            self.validate(arch)
        blocks = []
        for i, stage in enumerate(arch.base):
            n = math.ceil(Fraction(len(stage)) * Fraction(repr(float(arch.depth))))
            for slot in range(n):
                choice = parse_choice(stage[min(slot, len(stage) - 1)])
                c_in, c_out, hidden, squeeze = self.block_widths(i, slot == 0, choice, arch.width)
                blocks.append(
                    Block(
                        stage=i,
                        slot=slot,
                        kernel=choice.kernel,
                        expand=choice.expand,
                        se=choice.se,
                        in_channels=c_in,
                        out_channels=c_out,
                        hidden=hidden,
                        squeeze=squeeze,
                        stride=self.stage_strides[i] if slot == 0 else 1,
                        copy=slot >= len(stage),
                    )
                )
        return Network(
            resolution=int(arch.resolution),
            stem_channels=self.scaled(self.stem_channels, arch.width),
            blocks=tuple(blocks),
            head_channels=self.head_width(arch.width),
        )

    def scaled(self, channels: int, width: float) -> int:
        """A width under multiplier `width`: ceil(c w) (`"scalenet"`) or `round_filters` (`"efficientnet"`)."""
        return round_filters(channels, width) if self.path_generation == "efficientnet" else scale(channels, width)

    def head_width(self, width: float) -> int:
        """The head conv's outputs: fixed under ScaleNet's rules, scaled under EfficientNet's."""
        return self.scaled(self.head_channels, width) if self.path_generation == "efficientnet" else self.head_channels

    def block_widths(self, stage: int, first: bool, choice: BlockChoice, width: float) -> tuple[int, int, int, int]:
        """`(in, out, hidden, squeeze)` channels of a block of `stage` (0-based) under width multiplier
        `width`: the stage's first block reads the previous stage (or the stem), later ones the stage's
        own width. `squeeze` is 0 without SE."""
        c_in_base = (self.stage_channels[stage - 1] if stage else self.stem_channels) if first else None
        if c_in_base is None:
            c_in_base = self.stage_channels[stage]
        c_in, c_out = self.scaled(c_in_base, width), self.scaled(self.stage_channels[stage], width)
        if choice.expand == 1:
            hidden = c_in
        elif self.path_generation == "efficientnet" or self.hidden_rule == "scale_then_expand":
            hidden = round(c_in * choice.expand)
        else:
            hidden = scale(round(c_in_base * choice.expand), width)
        squeeze = max(1, (hidden if self.se_squeeze == "hidden" else c_in) // 4) if choice.se else 0
        return c_in, c_out, hidden, squeeze

    def feature_size(self, size: int, stride: int) -> int:
        """A strided conv's output side: ceil(size / stride) (as built) or floor (`spatial="floor"`)."""
        return -(-size // stride) if self.spatial == "ceil" else size // stride

    # === Named points ===

    def strategy(self, stage: int, depth_index=-1, width_index=-1, resolution_index=-1) -> tuple[float, float, int]:
        """(d, w, px) of scaling stage `stage` at the given list indices (default: the largest)."""
        return (
            self.depth_multipliers[stage][depth_index],
            self.width_multipliers[stage][width_index],
            self.resolutions[stage][resolution_index],
        )

    def largest(self) -> ScaleNetArch:
        """Every stage at max blocks of its largest choice, at the last scaling stage's largest strategy."""
        d, w, px = self.strategy(self.num_scaling_stages - 1)
        base = []
        for i in range(NUM_STAGES):
            top = max(self.stage_choices(i), key=lambda n: (lambda b: (b.kernel**2 * b.expand, b.se))(parse_choice(n)))
            base.append((top,) * self.max_blocks[i])
        return ScaleNetArch(tuple(base), d, w, px)

    def smallest(self) -> ScaleNetArch:
        """Every stage at min blocks of its smallest choice, the base model (stage 0, its smallest entry)."""
        d, w, px = self.strategy(0, 0, 0, 0)
        base = []
        for i in range(NUM_STAGES):
            low = min(self.stage_choices(i), key=lambda n: (lambda b: (b.kernel**2 * b.expand, b.se))(parse_choice(n)))
            base.append((low,) * self.min_blocks[i])
        return ScaleNetArch(tuple(base), d, w, px)

    def named_archs(self) -> tuple[str, ...]:
        return ("largest", "smallest", *PRESETS)

    def named(self, name: str) -> ScaleNetArch:
        """`'largest'`, `'smallest'` or a preset: `scalenet_s0`..`scalenet_s5` (the released ScaleNet
        models), `efficientnet_b0`, `efficientnet_s1`..`s5` (B0 with ScaleNet's strategies) and
        `efficientnet_b1`..`b5` (EfficientNet's compound scaling). A preset is refused, with the reason,
        by a space whose skeleton or path generation it does not fit."""
        if name == "largest":
            return self.largest()
        if name == "smallest":
            return self.smallest()
        if name not in PRESETS:
            raise ArchError(f"Unknown named arch {name!r}. Expected largest, smallest or one of {sorted(PRESETS)}")
        preset = PRESETS[name]
        if self.stage_channels != preset.channels:
            raise ArchError(
                f"Preset {name!r} is defined on stage channels {preset.channels}; this space has "
                f"{self.stage_channels} (use configs/scalenet.py:"
                f"{'efficientnet_b0' if preset.channels == EFFICIENTNET_B0_CHANNELS else 'official'})"
            )
        if self.path_generation != preset.path_generation:
            raise ArchError(
                f"Preset {name!r} uses path_generation={preset.path_generation!r}; this space has "
                f"{self.path_generation!r} (set config.search_space.path_generation={preset.path_generation!r})"
            )
        arch = ScaleNetArch(preset.base, preset.depth, preset.width, preset.resolution)
        try:
            self.validate(arch)
        except ArchError as e:
            raise ArchError(f"Preset {name!r} is not in this space: {e}") from None
        return arch

    # === Python-side sampling ===

    def sample_base(self, rng: np.random.Generator) -> tuple[tuple[str, ...], ...]:
        """A uniform base path: blocks per stage uniform in min..max, each block's choice uniform."""
        base = []
        for i in range(NUM_STAGES):
            n = int(rng.integers(self.min_blocks[i], self.max_blocks[i] + 1))
            names = self.stage_choices(i)
            base.append(tuple(str(names[rng.integers(len(names))]) for _ in range(n)))
        return tuple(base)

    def sample(self, rng: np.random.Generator, stage: int | None = None) -> ScaleNetArch:
        """A uniform base path with a strategy of scaling stage `stage` (default: uniform over stages)."""
        j = int(rng.integers(self.num_scaling_stages)) if stage is None else int(stage)
        d = self.depth_multipliers[j][rng.integers(len(self.depth_multipliers[j]))]
        w = self.width_multipliers[j][rng.integers(len(self.width_multipliers[j]))]
        px = self.resolutions[j][rng.integers(len(self.resolutions[j]))]
        return ScaleNetArch(self.sample_base(rng), float(d), float(w), int(px))

    # === Flat integer vector (the supernet's arch tensor) ===

    @property
    def depth_values(self) -> tuple[float, ...]:
        """Every depth multiplier of the scaling stages, sorted (a vector holds an index into it)."""
        return tuple(sorted({m for v in self.depth_multipliers for m in v}))

    @property
    def width_values(self) -> tuple[float, ...]:
        return tuple(sorted({m for v in self.width_multipliers for m in v}))

    @property
    def resolution_values(self) -> tuple[int, ...]:
        return tuple(sorted({px for v in self.resolutions for px in v}))

    @property
    def choice_names(self) -> tuple[str, ...]:
        """Every choice of the space (stage 1's, then the others'); a base slot's entry indexes this tuple."""
        return tuple(dict.fromkeys(self._first + self._other))

    @property
    def vector_size(self) -> int:
        return NUM_STAGES + sum(self.max_blocks) + 3

    def to_vector(self, arch: ScaleNetArch) -> np.ndarray:
        """Int32 vector: blocks per stage (7), one choice index per base slot (`sum(max_blocks)`, unused
        slots 0), then the indices of d, w and px in `depth_values`, `width_values`, `resolution_values`.

        Only strategies of the scaling stages' lists have a vector (a generalized stage is not trained)."""
        self.validate(arch)
        names = self.choice_names
        counts, slots = [], []
        for i, stage in enumerate(arch.base):
            counts.append(len(stage))
            slots.extend([names.index(n) for n in stage] + [0] * (self.max_blocks[i] - len(stage)))
        strategy = []
        for key, values in (
            ("depth", self.depth_values),
            ("width", self.width_values),
            ("resolution", self.resolution_values),
        ):
            value = getattr(arch, key)
            if value not in values:
                raise ArchError(
                    f"{key}={value!r} is not in the space's scaling-stage lists {list(values)}: only trained "
                    "strategies have an arch vector"
                )
            strategy.append(values.index(value))
        return np.asarray(counts + slots + strategy, dtype=np.int32)

    def from_vector(self, vector) -> ScaleNetArch:
        vector = np.asarray(vector).astype(np.int64).reshape(-1)
        if vector.size != self.vector_size:
            raise ArchError(f"Arch vector must have {self.vector_size} entries. Received: {vector.size}")
        names = self.choice_names
        base, offset = [], NUM_STAGES
        for i in range(NUM_STAGES):
            n = int(vector[i])
            if not self.min_blocks[i] <= n <= self.max_blocks[i]:
                raise ArchError(
                    f"Arch vector entry {i} (blocks of stage {i + 1}) = {n}; this space allows "
                    f"{self.min_blocks[i]}..{self.max_blocks[i]}"
                )
            ids = vector[offset : offset + n]
            if ids.min() < 0 or ids.max() >= len(names):
                raise ArchError(f"Arch vector: stage {i + 1} choice ids must be in [0, {len(names)}). Received: {ids}")
            base.append(tuple(names[k] for k in ids))
            offset += self.max_blocks[i]
        strategy = []
        for k, (key, values) in enumerate(
            (("depth", self.depth_values), ("width", self.width_values), ("resolution", self.resolution_values))
        ):
            index = int(vector[offset + k])
            if not 0 <= index < len(values):
                raise ArchError(f"Arch vector: the {key} index must be in [0, {len(values)}). Received: {index}")
            strategy.append(values[index])
        arch = ScaleNetArch(tuple(base), float(strategy[0]), float(strategy[1]), int(strategy[2]))
        self.validate(arch)
        return arch

    # === Files and display ===

    def describe(self, arch: ScaleNetArch) -> str:
        """A one-line form for tables: stages joined by '|', then d, w, px."""
        stages = " | ".join(" ".join(stage) for stage in arch.base)
        return f"{stages} @ d={arch.depth:g} w={arch.width:g} {arch.resolution}px"

    def flatten(self, arch: ScaleNetArch) -> dict[str, Any]:
        flat = {f"stage{i + 1}": " ".join(stage) for i, stage in enumerate(arch.base)}
        return {**flat, "depth": arch.depth, "width": arch.width, "resolution": arch.resolution}

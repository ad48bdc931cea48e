"""The SCARLET mobile search space: 19 layers, each an inverted-residual block or an identity.

Pure Python (no TensorFlow), like the ScaleNAS space. An architecture (`ScarletArch`) is one choice
name per searchable layer, in the notation of the SCARLET paper:

    "K7E3"     inverted-residual block, 7x7 depthwise, expansion 3
    "K5E6+SE"  the same with squeeze-and-excitation on the expanded tensor
    "id"       identity: during supernet training an ELS (a 1x1 conv without bias, BN or activation,
               `identity_op="els"`) or a parameter-free skip (`identity_op="skip"`, the ablation)

S1 offers expansion {3, 6} x kernel {3, 5, 7} plus identity (7 choices); S2 adds the SE versions
(13 choices). By default identity is offered only where a layer keeps stride 1 and width (as in the
released models); `identity_everywhere=True` offers it at every layer, the ELS conv carrying a width
change and a 3x3 stride-2 max pooling before it carrying a stride (the LET paper's rule; needs ELS).

Reference:
    Chu et al., "SCARLET-NAS: Bridging the Gap between Stability and Scalability in Weight-sharing
    Neural Architecture Search", ICCV-W 2021; Chu et al., "FairNAS: Rethinking Evaluation Fairness
    of Weight Sharing Neural Architecture Search", ICCV 2021.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

from scalenas_tf.arch import ArchError
from scalenas_tf.arch import ArchFiles
from scalenas_tf.arch import EncodedArch

SCARLET_ARCH_FORMAT = "scalenas_tf.scarlet_arch/v1"
IDENTITY = "id"
VARIANTS = ("s1", "s2")
ACTIVATIONS = ("hswish", "relu6")
IDENTITY_OPS = ("els", "skip")

# Out channels and strides of the 19 searchable layers (figures.md).
SCARLET_CHANNELS = (32, 32, 40, 40, 40, 40, 80, 80, 80, 80, 96, 96, 96, 96, 192, 192, 192, 192, 320)
SCARLET_STRIDES = (2, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1)

_BLOCK_NAME = re.compile(r"^K(\d+)E(\d+)(\+SE)?$")

PRESETS = {
    "scarlet_a": (
        "K7E3",
        "K5E6",
        "K5E3",
        "K7E3+SE",
        "K3E6+SE",
        "K5E3+SE",
        "K3E6+SE",
        "K3E3",
        "K7E3+SE",
        "K7E3",
        "K5E3",
        "K7E3+SE",
        "K3E3",
        "K7E3+SE",
        "K3E6+SE",
        "K5E6+SE",
        "K3E3+SE",
        "K3E6+SE",
        "K7E6+SE",
    ),
    "scarlet_b": (
        "K3E3+SE",
        "K5E3+SE",
        "K3E3+SE",
        "K7E6+SE",
        "K3E3",
        "K5E3",
        "K7E6+SE",
        "K3E3+SE",
        "id",
        "K5E3",
        "K3E3+SE",
        "K3E3+SE",
        "K7E6+SE",
        "K3E3+SE",
        "K5E6+SE",
        "K5E6+SE",
        "id",
        "K7E6+SE",
        "K5E6+SE",
    ),
    "scarlet_c": (
        "K5E3+SE",
        "K3E3+SE",
        "K5E3+SE",
        "id",
        "id",
        "K3E3",
        "K7E6+SE",
        "K3E3+SE",
        "K3E3+SE",
        "K5E3",
        "K7E3+SE",
        "K7E3",
        "K3E3+SE",
        "K7E3+SE",
        "K3E3+SE",
        "id",
        "K3E6+SE",
        "K7E6+SE",
        "K5E6+SE",
    ),
}


@dataclasses.dataclass(frozen=True)
class BlockChoice:
    """An inverted-residual choice: `kernel` x `kernel` depthwise, expansion `expand`, optional SE."""

    kernel: int
    expand: int
    se: bool = False

    @property
    def name(self) -> str:
        return f"K{self.kernel}E{self.expand}" + ("+SE" if self.se else "")


def parse_choice(name: str) -> BlockChoice | None:
    """`"K5E6+SE"` -> `BlockChoice(5, 6, True)`; `"id"` -> None; anything else is an ArchError."""
    if name == IDENTITY:
        return None
    match = _BLOCK_NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise ArchError(f"A choice is 'id' or 'K<kernel>E<expand>[+SE]', e.g. 'K7E3+SE'. Received: {name!r}")
    return BlockChoice(int(match.group(1)), int(match.group(2)), bool(match.group(3)))


@dataclasses.dataclass(frozen=True)
class ScarletArch(EncodedArch):
    """One choice name per searchable layer, in network order."""

    choices: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"format": SCARLET_ARCH_FORMAT, "choices": list(self.choices)}

    @classmethod
    def from_dict(cls, data: Any) -> ScarletArch:
        """Reads `to_dict()` output, or a plain list of choice names. Raises ArchError naming the field."""
        if isinstance(data, dict):
            if data.get("format", SCARLET_ARCH_FORMAT) != SCARLET_ARCH_FORMAT:
                raise ArchError(
                    f"Unknown arch format. Expected {SCARLET_ARCH_FORMAT!r}. Received: format={data['format']!r}"
                )
            if "choices" not in data:
                raise ArchError(f"A SCARLET arch object needs a 'choices' list. Received keys: {sorted(data)}")
            data = data["choices"]
        if not isinstance(data, (list, tuple)) or not all(isinstance(c, str) for c in data):
            text = repr(data)
            raise ArchError(
                f"A SCARLET arch is a list of choice names such as ['K7E3', 'id', ...]. "
                f"Received: {text if len(text) < 80 else text[:77] + '...'}"
            )
        for i, name in enumerate(data):
            try:
                parse_choice(name)
            except ArchError as e:
                raise ArchError(f"choices[{i}]: {e}") from None
        return cls(tuple(data))


@dataclasses.dataclass(frozen=True)
class ScarletSpace(ArchFiles):
    """The SCARLET mobile space (MobileNetV2-like skeleton, one searchable choice per layer).

    Args:
        variant: `"s1"` (expand {3, 6} x kernel {3, 5, 7} + identity: 7 choices) or `"s2"` (the
            same with and without SE + identity: 13 choices).
        channels, strides: out channels and stride of each searchable layer (default: SCARLET's 19).
        stem_channels: the stem's 3x3 stride-2 conv (32).
        first_channels: the separable conv's output, the first layer's input (16).
        head_channels: the head's 1x1 conv before pooling (1280).
        kernel_sizes, expand_ratios: the block choices.
        activation: `"hswish"` (default) or `"relu6"`, inside the choice blocks; the stem, separable
            conv and head use ReLU6 as in figures.md.
        identity_everywhere: bool. Offer identity at every layer (a width change is carried by the
            ELS conv, a stride by max pooling before it); needs `identity_op="els"`.
        identity_op: `"els"` (a 1x1 conv, folded at extraction) or `"skip"` (parameter-free).

    Example:
    >>> space = ScarletSpace()
    >>> arch = space.named("scarlet_b")
    >>> space.to_vector(arch)[8] == space.choice_names.index("id")
    True
    """

    arch_class = ScarletArch

    variant: str = "s2"
    channels: tuple[int, ...] = SCARLET_CHANNELS
    strides: tuple[int, ...] = SCARLET_STRIDES
    stem_channels: int = 32
    first_channels: int = 16
    head_channels: int = 1280
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    expand_ratios: tuple[int, ...] = (3, 6)
    activation: str = "hswish"
    identity_everywhere: bool = False
    identity_op: str = "els"

    def __post_init__(self):
        for name in ("channels", "strides", "kernel_sizes", "expand_ratios"):
            value = getattr(self, name)
            if (
                not isinstance(value, (list, tuple))
                or not value
                or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in value)
            ):
                raise ValueError(f"`{name}` must be a non-empty list of positive ints. Received: {name}={value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        if len(self.channels) != len(self.strides):
            raise ValueError(
                "`channels` and `strides` need one entry per layer. "
                f"Received: {len(self.channels)} and {len(self.strides)}"
            )
        if any(s not in (1, 2) for s in self.strides):
            raise ValueError(f"`strides` must be 1 or 2. Received: strides={self.strides}")
        if any(e < 2 for e in self.expand_ratios):
            raise ValueError(
                "`expand_ratios` must be >= 2 (every block has an expand conv). "
                f"Received: expand_ratios={self.expand_ratios}"
            )
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"`kernel_sizes` must be odd. Received: kernel_sizes={self.kernel_sizes}")
        for name in ("stem_channels", "first_channels", "head_channels"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
        for name, allowed in (("variant", VARIANTS), ("activation", ACTIVATIONS), ("identity_op", IDENTITY_OPS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}. Received: {name}={getattr(self, name)!r}")
        if not isinstance(self.identity_everywhere, (bool, np.bool_)):
            raise ValueError(f"`identity_everywhere` must be true or false. Received: {self.identity_everywhere!r}")
        if self.identity_everywhere and self.identity_op != "els":
            raise ValueError(
                "`identity_everywhere=True` needs `identity_op='els'`: a parameter-free skip cannot change "
                f"width or stride. Received: identity_op={self.identity_op!r}"
            )

    # === Structure ===

    @property
    def num_layers(self) -> int:
        return len(self.channels)

    @property
    def block_choices(self) -> tuple[BlockChoice, ...]:
        ses = (False,) if self.variant == "s1" else (False, True)
        return tuple(BlockChoice(k, e, se) for se in ses for k in self.kernel_sizes for e in self.expand_ratios)

    @property
    def choice_names(self) -> tuple[str, ...]:
        """Every choice of the space; a layer's arch-vector entry indexes this tuple."""
        return tuple(b.name for b in self.block_choices) + (IDENTITY,)

    def in_channels(self, layer: int) -> int:
        return self.first_channels if layer == 0 else self.channels[layer - 1]

    def has_residual(self, layer: int) -> bool:
        """Whether a block at `layer` adds its input (stride 1 and unchanged width)."""
        return self.strides[layer] == 1 and self.in_channels(layer) == self.channels[layer]

    def identity_allowed(self, layer: int) -> bool:
        return self.identity_everywhere or self.has_residual(layer)

    def layer_choices(self, layer: int) -> tuple[str, ...]:
        """The choice names offered at `layer` (every block, plus identity where allowed)."""
        names = self.choice_names
        return names if self.identity_allowed(layer) else names[:-1]

    def feature_sizes(self, input_size: tuple[int, int]) -> list[tuple[int, int]]:
        """Spatial size after the stem and after every layer (stride 2: ceil(h / 2), PyTorch's k // 2 pad)."""
        h, w = -(-input_size[0] // 2), -(-input_size[1] // 2)
        sizes = [(h, w)]
        for s in self.strides:
            if s == 2:
                h, w = -(-h // 2), -(-w // 2)
            sizes.append((h, w))
        return sizes

    # === Validation ===

    def validate(self, arch: ScarletArch) -> None:
        """Raises ArchError naming the layer and the choice if `arch` is not in this space."""
        if not isinstance(arch, ScarletArch):
            raise ArchError(f"Expected a ScarletArch. Received: {type(arch).__name__}")
        if len(arch.choices) != self.num_layers:
            raise ArchError(
                f"A SCARLET arch has {self.num_layers} choices, one per layer. Received: {len(arch.choices)}"
            )
        for i, name in enumerate(arch.choices):
            if name not in self.layer_choices(i):
                if name == IDENTITY:
                    why = (
                        f"identity is offered only where stride is 1 and width unchanged (layer {i}: "
                        f"{self.in_channels(i)}->{self.channels[i]}, stride {self.strides[i]}); "
                        "set identity_everywhere=True to offer it everywhere"
                    )
                else:
                    try:
                        parse_choice(name)
                        why = (
                            f"not a choice of this {self.variant} space; expected one of {list(self.layer_choices(i))}"
                        )
                    except ArchError as e:
                        why = str(e)
                raise ArchError(f"choices[{i}]={name!r}: {why}")

    # === Named points ===

    def largest(self) -> ScarletArch:
        """Every layer the largest block (largest kernel and expansion, with SE in S2)."""
        top = max(self.block_choices, key=lambda b: (b.kernel * b.expand, b.se))
        return ScarletArch((top.name,) * self.num_layers)

    def smallest(self) -> ScarletArch:
        """Identity where allowed, the smallest block elsewhere."""
        low = min(self.block_choices, key=lambda b: (b.kernel * b.expand, b.se))
        return ScarletArch(tuple(IDENTITY if self.identity_allowed(i) else low.name for i in range(self.num_layers)))

    def uniform(self, name: str) -> ScarletArch:
        """The same choice at every layer (e.g. `"K7E6"`)."""
        arch = ScarletArch((name,) * self.num_layers)
        self.validate(arch)
        return arch

    def named(self, name: str) -> ScarletArch:
        """`'largest'`, `'smallest'`, a preset (`'scarlet_a'`, `'scarlet_b'`, `'scarlet_c'`), or
        `'all_<choice>'` (e.g. `'all_K7E6'`, one choice everywhere)."""
        if name == "largest":
            return self.largest()
        if name == "smallest":
            return self.smallest()
        if name.startswith("all_"):
            return self.uniform(name[4:])
        if name not in PRESETS:
            raise ArchError(
                f"Unknown named arch {name!r}. Expected largest, smallest, all_<choice> or one of {sorted(PRESETS)}"
            )
        arch = ScarletArch(PRESETS[name])
        try:
            self.validate(arch)
        except ArchError as e:
            raise ArchError(
                f"Preset {name!r} is not in this space ({self.variant}, {self.num_layers} layers): {e}"
            ) from None
        return arch

    # === Sampling and vectors ===

    def sample(self, rng: np.random.Generator) -> ScarletArch:
        """Uniform over each layer's choices (SPOS), Python side."""
        return ScarletArch(
            tuple(str(c[rng.integers(len(c))]) for c in (self.layer_choices(i) for i in range(self.num_layers)))
        )

    @property
    def vector_size(self) -> int:
        return self.num_layers

    def to_vector(self, arch: ScarletArch) -> np.ndarray:
        """Int32 `(num_layers,)`: each layer's index into `choice_names`."""
        self.validate(arch)
        names = self.choice_names
        return np.asarray([names.index(c) for c in arch.choices], dtype=np.int32)

    def from_vector(self, vector) -> ScarletArch:
        vector = np.asarray(vector).astype(np.int64).reshape(-1)
        if vector.size != self.vector_size:
            raise ArchError(f"Arch vector must have {self.vector_size} entries. Received: {vector.size}")
        names = self.choice_names
        if vector.min() < 0 or vector.max() >= len(names):
            raise ArchError(f"Arch vector entries must be in [0, {len(names)}). Received: {vector.tolist()}")
        arch = ScarletArch(tuple(names[i] for i in vector))
        self.validate(arch)
        return arch

    def describe(self, arch: ScarletArch) -> str:
        """A short one-line form for tables: the choices joined by spaces."""
        return " ".join(arch.choices)

    def flatten(self, arch: ScarletArch) -> dict[str, str]:
        return {f"layer{i:02d}": c for i, c in enumerate(arch.choices)}


# === ELS folding plan (pure structure; the weights are folded in subnet.py) ===

FORWARD, BACKWARD, KEPT = "forward", "backward", "kept"
HEAD, STEM = "head", "stem"


@dataclasses.dataclass(frozen=True)
class Fold:
    """What extraction does with one run of ELS convs.

    Consecutive identity layers are composed into one linear map first (`layers`, in order); a
    stride-2 identity starts a new run, because its max pooling sits between the convs.

    Attributes:
        layers: the identity layers whose ELS convs this map composes.
        pool: whether a 3x3 stride-2 max pooling precedes the map (a strided identity).
        in_channels, out_channels: of the composed map.
        action: `"forward"` (into the next layer's first 1x1 conv: y = K(Wx) = (KW)x),
            `"backward"` (into the previous layer's projection conv and its BN), or `"kept"` (a
            1x1 conv stays in the extracted model: neither direction is exact).
        target: the layer folded into (an index, `"head"` or `"stem"`), None when kept.
        reason: why it was kept (empty otherwise).
    """

    layers: tuple[int, ...]
    pool: bool
    in_channels: int
    out_channels: int
    action: str
    target: int | str | None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (`layers` as a list)."""
        return {**dataclasses.asdict(self), "layers": list(self.layers)}


def fold_plan(space: ScarletSpace, arch: ScarletArch) -> list[Fold]:
    """How extraction removes the ELS convs of `arch` (empty with `identity_op="skip"`).

    Rules (each exact in real arithmetic):
    - forward, when the next op is a block without a residual add (its expand conv reads only y)
      or the head's 1x1 conv;
    - backward, when the map has no max pooling and the previous op is a block without a residual
      add or the stem's separable conv (their output is projection conv + BN, with no activation);
    - otherwise the composed 1x1 conv is kept, e.g. an identity between two residual blocks
      (SCARLET-B), and `reason` says so.
    """
    space.validate(arch)
    if space.identity_op != "els":
        return []
    runs, current = [], []
    for i, name in enumerate(arch.choices):
        starts_new = name == IDENTITY and space.strides[i] == 2
        if name != IDENTITY or starts_new:
            if current:
                runs.append(current)
            current = []
        if name == IDENTITY:
            current.append(i)
    if current:
        runs.append(current)

    def foldable_block(layer):
        return arch.choices[layer] != IDENTITY and not space.has_residual(layer)

    plan = []
    for run in runs:
        first, last = run[0], run[-1]
        pool = space.strides[first] == 2
        c_in, c_out = space.in_channels(first), space.channels[last]
        nxt, prev = last + 1, first - 1
        if nxt == space.num_layers:
            action, target = FORWARD, HEAD
        elif foldable_block(nxt):
            action, target = FORWARD, nxt
        elif not pool and prev == -1:
            action, target = BACKWARD, STEM
        elif not pool and arch.choices[prev] != IDENTITY and not space.has_residual(prev):
            action, target = BACKWARD, prev
        else:
            plan.append(Fold(tuple(run), pool, c_in, c_out, KEPT, None, _kept_reason(space, arch, run, pool)))
            continue
        plan.append(Fold(tuple(run), pool, c_in, c_out, action, target))
    return plan


def _kept_reason(space, arch, run, pool):
    nxt, prev = run[-1] + 1, run[0] - 1
    if arch.choices[nxt] == IDENTITY:
        forward = f"layer {nxt} is a strided identity (max pooling first)"
    else:
        forward = f"layer {nxt} adds a residual"
    if pool:
        backward = "a max pooling precedes the map"
    elif arch.choices[prev] == IDENTITY:
        backward = f"layer {prev} is an identity kept as a conv"
    else:
        backward = f"layer {prev} adds a residual"
    return f"forward: {forward}; backward: {backward}"

"""Analytic parameter and MAC counts of a SCARLET arch, from its choice names alone (no graph build).

Convention (that of the published figures): params are every weight except BN moving statistics
(conv kernels and biases, BN gamma and beta, the classifier's kernel and bias); MACs count
convolutions (output elements x C_in/groups x kh x kw) and dense layers (in x out) only, so biases,
BN, activations, residual adds, pooling and the SE gating multiply are free. The mobile NAS papers
print MAdds = MACs / 1e6 (`ScarletCost.madds_m`); the HRNet and ScaleNAS papers print "GFLOPs" =
MACs / 2**30 (`ScarletCost.gflops_hrnet`).

The latency features (`ScarletCost.features`, `search.cost.LatencyFeatures`) always describe the
extracted model (ELS folds applied), whatever `as_extracted`: its convs, the padding of strided
depthwise convs, h-swish activations (ReLU6 fuses into the conv before it), SE pooling, gate and
multiply, residual adds and pooling.

Pure Python (no TensorFlow), like the ScaleNAS counter.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from scalenas_tf.arch import ArchError
from scalenas_tf.families.scarlet.space import BACKWARD
from scalenas_tf.families.scarlet.space import FORWARD
from scalenas_tf.families.scarlet.space import HEAD
from scalenas_tf.families.scarlet.space import IDENTITY
from scalenas_tf.families.scarlet.space import KEPT
from scalenas_tf.families.scarlet.space import STEM
from scalenas_tf.families.scarlet.space import ScarletArch
from scalenas_tf.families.scarlet.space import ScarletSpace
from scalenas_tf.families.scarlet.space import fold_plan
from scalenas_tf.families.scarlet.space import parse_choice
from scalenas_tf.search.cost import LatencyFeatures
from scalenas_tf.search.cost import MacUnits


@dataclasses.dataclass(frozen=True)
class ScarletCost(MacUnits):
    """Params and MACs of one SCARLET network at one input size.

    Attributes:
        params: weights other than BN moving statistics (the figures' convention).
        macs: conv and dense multiply-accumulates.
        bn_channels: channels of all BN layers together (each holds a moving mean and variance).
        input_size: `(height, width)`.
        as_extracted: whether this counts the extracted model (ELS folds applied, kept ELS convs
            counted) rather than the papers' model (identity as a plain skip).
        layers: per-part breakdown, `(name, params, macs)` for `"stem"`, `"separable"`,
            `"layer00"`..., `"head"` (head conv, pooling and classifier); an ELS conv kept by
            extraction is counted in the last identity layer it covers. Their sums are
            `params` and `macs`.
    """

    params: int
    macs: int
    bn_channels: int
    input_size: tuple[int, int]
    as_extracted: bool = False
    layers: tuple[tuple[str, int, int], ...] = ()

    @property
    def params_with_bn_statistics(self) -> int:
        """What Keras' `count_params()` gives: params plus the BN moving mean and variance."""
        return self.params + 2 * self.bn_channels

    def to_dict(self) -> dict:
        """JSON-able summary (the per-layer breakdown is left out)."""
        return {
            "params": self.params,
            "macs": self.macs,
            "bn_channels": self.bn_channels,
            "params_with_bn_statistics": self.params_with_bn_statistics,
            "madds_m": round(self.madds_m, 6),
            "gmacs": round(self.gmacs, 6),
            "gflops_hrnet": round(self.gflops_hrnet, 6),
            "input_size": list(self.input_size),
            "as_extracted": self.as_extracted,
        }


class _Tally:
    """Sums params, MACs and BN channels, keeps a per-part breakdown, and the latency features."""

    def __init__(self):
        self.params = self.macs = self.bn = 0
        self.parts = []
        self.features = LatencyFeatures()

    def start(self, name):
        self.parts.append([name, 0, 0])

    def _add(self, params, macs, bn=0):
        self.params += params
        self.macs += macs
        self.bn += bn
        self.parts[-1][1] += params
        self.parts[-1][2] += macs

    def conv(self, out_hw, c_in, c_out, kernel, groups=1, bias=False, bn=True):
        """A conv whose output is `out_hw` (stride already applied), optionally followed by BN."""
        per_output = (c_in // groups) * kernel * kernel
        params = c_out * per_output + (c_out if bias else 0) + (2 * c_out if bn else 0)
        self._add(params, out_hw[0] * out_hw[1] * c_out * per_output, c_out if bn else 0)
        self.features.conv(out_hw, c_in, c_out, kernel, groups)

    def dense(self, c_in, c_out):
        self._add(c_in * c_out + c_out, c_in * c_out)
        self.features.dense(c_in, c_out)

    def memory(self, hw, channels):
        """One op without MACs streaming `hw` x `channels` elements (latency features only)."""
        self.features.memory(hw[0] * hw[1] * channels)

    def padded(self, in_hw, channels, kernel):
        """The explicit zero padding extraction puts before a strided conv (latency features only)."""
        self.memory((in_hw[0] + kernel // 2 * 2, in_hw[1] + kernel // 2 * 2), channels)


def _check_arguments(num_classes, input_size):
    if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive int. Received: num_classes={num_classes!r}")
    if (
        not isinstance(input_size, (list, tuple))
        or len(input_size) != 2
        or any(not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1 for v in input_size)
    ):
        raise ValueError(f"`input_size` must be (height, width) positive ints. Received: input_size={input_size}")
    return int(num_classes), (int(input_size[0]), int(input_size[1]))


def _check_arch(space, arch, validate):
    if validate:
        space.validate(arch)
        return
    # Even unvalidated, the arch must be countable: one known choice name per layer.
    if not isinstance(arch, ScarletArch):
        raise ArchError(f"Expected a ScarletArch. Received: {type(arch).__name__}")
    if len(arch.choices) != space.num_layers:
        raise ArchError(f"A SCARLET arch has {space.num_layers} choices, one per layer. Received: {len(arch.choices)}")
    for i, name in enumerate(arch.choices):
        try:
            parse_choice(name)
        except ArchError as e:
            raise ArchError(f"choices[{i}]: {e}") from None


def _extraction_changes(space, arch):
    """From the fold plan: {block: expand-conv input}, {block or "stem": projection output},
    head-conv input (or None), and {last identity layer: kept fold}."""
    expand_in, project_out, head_in, kept = {}, {}, None, {}
    for fold in fold_plan(space, arch):
        if fold.action == FORWARD and fold.target == HEAD:
            head_in = fold.in_channels
        elif fold.action == FORWARD:
            expand_in[fold.target] = fold.in_channels
        elif fold.action == BACKWARD:
            project_out[fold.target] = fold.out_channels
        elif fold.action == KEPT:
            kept[fold.layers[-1]] = fold
        else:  # a new action in fold_plan must be counted here too
            raise ValueError(f"Unknown fold action {fold.action!r} in {fold}")
    return expand_in, project_out, head_in, kept


def count(
    space: ScarletSpace,
    arch: ScarletArch,
    num_classes: int = 1000,
    input_size: tuple[int, int] = (224, 224),
    as_extracted: bool = False,
    validate: bool = True,
) -> ScarletCost:
    """Counts params and MACs of `arch` at `input_size` (height, width) with a `num_classes` classifier.

    The network (figures.md): stem 3x3 stride-2 conv 3 -> stem_channels (BN, ReLU6); separable conv
    (3x3 depthwise, BN, ReLU6; 1x1 to first_channels, BN); one block or identity per layer; head 1x1
    conv to head_channels (BN, ReLU6), global average pooling, dense classifier with bias. A block
    `K<k>E<e>[+SE]` from C_in to C_out: 1x1 expand to hidden = round(C_in * e) + BN; k x k depthwise
    with the layer's stride + BN; with SE, on the expanded tensor, 1x1 convs with bias hidden ->
    max(1, hidden // 4) -> hidden at 1x1 spatial size; 1x1 project to C_out + BN. No conv before a
    BN has a bias.

    Identity layers:
    - `as_extracted=False` (the papers' count): an identity is a plain skip and costs nothing, even
      a strided one (max pooling is free). An identity that changes width (only possible with
      `space.identity_everywhere=True`) has no parameter-free form, so it is counted as its ELS
      conv: 1x1 without bias, C_in x C_out params and C_in x C_out MACs per output pixel.
    - `as_extracted=True`: the model that extraction builds. With `identity_op="skip"` identities
      cost nothing, as above. With `"els"` each `fold_plan` entry is applied: "forward" makes the
      target block's expand conv (or the head conv) read `fold.in_channels`; "backward" makes the
      target block's project conv and BN (or the separable conv's pointwise conv and BN) write
      `fold.out_channels`; "kept" adds a 1x1 conv without bias `fold.in_channels` ->
      `fold.out_channels` at the output size of the fold's last layer. The identity layers
      themselves then cost nothing. Under the default rules (identity keeps width) this equals
      the default count except for kept convs, which add C x C params and C x C x H x W MACs.

    Args:
        space: the SCARLET space the arch belongs to.
        arch: the architecture.
        num_classes: classifier outputs.
        input_size: `(height, width)` of the input image; any size >= 1.
        as_extracted: count the extracted model instead of the papers' plain-skip model.
        validate: check the arch against the space first (it must still be countable without).

    Returns:
        A `ScarletCost`.

    Raises:
        ArchError: if the arch is outside the space (or, unvalidated, not countable).
        ValueError: for a bad class count or input size.
    """
    num_classes, input_size = _check_arguments(num_classes, input_size)
    _check_arch(space, arch, validate)
    as_extracted = bool(as_extracted)
    pooled = set()
    if as_extracted and space.identity_op == "els":
        expand_in, project_out, head_in, kept = _extraction_changes(space, arch)
        pooled = {fold.layers[0] for fold in fold_plan(space, arch) if fold.pool}
    else:
        expand_in, project_out, head_in, kept = {}, {}, None, {}
    sizes = space.feature_sizes(input_size)
    tally = _Tally()
    separate_act = space.activation != "relu6"  # ReLU6 fuses into the conv before it; h-swish is an op

    # === Stem and separable conv ===
    tally.start("stem")
    tally.padded(input_size, 3, 3)
    tally.conv(sizes[0], 3, space.stem_channels, 3)
    tally.start("separable")
    tally.conv(sizes[0], space.stem_channels, space.stem_channels, 3, groups=space.stem_channels)
    tally.conv(sizes[0], space.stem_channels, project_out.get(STEM, space.first_channels), 1)

    # === Searchable layers ===
    for i, name in enumerate(arch.choices):
        tally.start(f"layer{i:02d}")
        c_in, c_out, out_hw = space.in_channels(i), space.channels[i], sizes[i + 1]
        block = parse_choice(name)
        if block is None:
            if i in pooled:
                tally.memory(out_hw, c_in)  # the strided identity's max pooling
            if i in kept:
                fold = kept[i]
                tally.conv(out_hw, fold.in_channels, fold.out_channels, 1, bn=False)
            elif not as_extracted and c_in != c_out:
                tally.conv(out_hw, c_in, c_out, 1, bn=False)  # the ELS conv: no free form exists
            continue
        hidden = round(c_in * block.expand)
        tally.conv(sizes[i], expand_in.get(i, c_in), hidden, 1)
        if separate_act:
            tally.memory(sizes[i], hidden)
        if space.strides[i] > 1:
            tally.padded(sizes[i], hidden, block.kernel)
        tally.conv(out_hw, hidden, hidden, block.kernel, groups=hidden)
        if separate_act:
            tally.memory(out_hw, hidden)
        if block.se:
            squeezed = max(1, hidden // 4)
            tally.memory(out_hw, hidden)  # average pooling (reads the map)
            tally.conv((1, 1), hidden, squeezed, 1, bias=True, bn=False)
            tally.conv((1, 1), squeezed, hidden, 1, bias=True, bn=False)
            tally.memory((1, 1), hidden)  # the hard-sigmoid gate
            tally.memory(out_hw, hidden)  # the gating multiply
        tally.conv(out_hw, hidden, project_out.get(i, c_out), 1)
        if space.has_residual(i):
            tally.memory(out_hw, c_out)

    # === Head ===
    tally.start("head")
    head_reads = head_in if head_in is not None else space.channels[-1]
    tally.conv(sizes[-1], head_reads, space.head_channels, 1)
    tally.memory(sizes[-1], space.head_channels)  # global average pooling (reads the map)
    tally.dense(space.head_channels, num_classes)
    features = tally.features.as_dict()
    if not as_extracted and space.identity_op == "els" and IDENTITY in arch.choices:
        # The features always describe the extracted model (ELS folds applied). An unvalidated arch
        # that the fold plan refuses has no extracted model: it keeps the papers' model's features.
        try:
            features = count(space, arch, num_classes, input_size, as_extracted=True, validate=False).features
        except ArchError:
            pass
    return ScarletCost(
        params=tally.params,
        macs=tally.macs,
        bn_channels=tally.bn,
        input_size=input_size,
        as_extracted=as_extracted,
        layers=tuple((n, p, m) for n, p, m in tally.parts),
        features=features,
    )

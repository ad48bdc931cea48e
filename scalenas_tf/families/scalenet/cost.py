"""Analytic params and MACs of a ScaleNet arch (no graph build), and the FLOPs budget estimate.

Convention (figures.md): params are every weight except BN moving statistics; MACs count conv
(output elements x C_in/groups x kh x kw) and dense (in x out) multiply-accumulates only. The SE
bottleneck is two 1x1 convs with bias on a 1x1 map. Units: MAdds = MACs / 1e6 (mobile papers),
"FLOPs (G)" of the ScaleNet tables = MACs / 1e9 (`gmacs`).

Which published column which options reproduce (../shared/reference/scalenet.md §10):
- ScaleNet params (supplement Table 4): `se_squeeze="input"`, `hidden_rule="base_then_scale"`.
- ScaleNet FLOPs (Tables 4 and 6): the official counter's `spatial="floor"`,
  `hidden_rule="scale_then_expand"`, `se_squeeze="hidden"`.
- EfficientNet-B0: 5,288,548 params, 385.8M MACs with `se_squeeze="input"` on B0's skeleton.

The latency features (`ScaleNetCost.features`, `search.cost.LatencyFeatures`) count the network at
the size counted (by default its own resolution; the bilinear resize an extracted model at another
input size starts with is left out): convs, explicit padding of strided convs, activations that do
not fuse into a conv, SE pooling, gate and multiply, residual adds and pooling.

Pure Python (no TensorFlow).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from scalenas_tf.families.scalenet.space import Network
from scalenas_tf.families.scalenet.space import ScaleNetArch
from scalenas_tf.families.scalenet.space import ScaleNetSpace
from scalenas_tf.search.cost import LatencyFeatures
from scalenas_tf.search.cost import MacUnits

# Ops an activation adds to the extracted model (LiteRT): ReLU fuses into the conv before it; h-swish
# and the gates are one op; swish is a sigmoid and a multiply.
_ACTIVATION_OPS = {"relu": 0, "hswish": 1, "hard_sigmoid": 1, "sigmoid": 1, "swish": 2}


@dataclasses.dataclass(frozen=True)
class ScaleNetCost(MacUnits):
    """Params and MACs of one generated ScaleNet network.

    Attributes:
        params: weights other than BN moving statistics (the figures' convention).
        macs: conv and dense multiply-accumulates.
        bn_channels: channels of all BN layers (each holds a moving mean and variance).
        classifier_params: the classifier's weights (supplement Table 6 prints params without them).
        input_size: `(height, width)`.
        depths: blocks per stage of the generated network.
        layers: `(name, params, macs)` for "stem", "s{stage}b{slot}" and "head" (head conv and
            classifier); they sum to `params` and `macs`.
    """

    params: int
    macs: int
    bn_channels: int
    classifier_params: int
    input_size: tuple[int, int]
    depths: tuple[int, ...] = ()
    layers: tuple[tuple[str, int, int], ...] = ()

    @property
    def params_with_bn_statistics(self) -> int:
        """What Keras' `count_params()` gives: params plus the BN moving mean and variance."""
        return self.params + 2 * self.bn_channels

    @property
    def params_without_classifier(self) -> int:
        return self.params - self.classifier_params

    def to_dict(self) -> dict:
        """JSON-able summary (the per-layer breakdown is left out)."""
        return {
            "params": self.params,
            "macs": self.macs,
            "madds_m": round(self.madds_m, 6),
            "gmacs": round(self.gmacs, 6),
            "gflops_hrnet": round(self.gflops_hrnet, 6),
            "bn_channels": self.bn_channels,
            "params_with_bn_statistics": self.params_with_bn_statistics,
            "params_without_classifier": self.params_without_classifier,
            "input_size": list(self.input_size),
            "depths": list(self.depths),
        }


def _check_input_size(input_size):
    if (
        not isinstance(input_size, (list, tuple))
        or len(input_size) != 2
        or any(not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1 for v in input_size)
    ):
        raise ValueError(f"`input_size` must be (height, width) positive ints. Received: input_size={input_size}")
    return int(input_size[0]), int(input_size[1])


def count_network(
    space: ScaleNetSpace, net: Network, num_classes: int = 1000, input_size: tuple[int, int] | None = None
) -> ScaleNetCost:
    """Counts a generated network at `input_size` (default: its own resolution, square)."""
    if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive int. Received: num_classes={num_classes!r}")
    size = _check_input_size((net.resolution, net.resolution) if input_size is None else input_size)
    h, w = size
    parts, totals = [], {"params": 0, "macs": 0, "bn": 0}
    features = LatencyFeatures()

    def conv(hw, c_in, c_out, kernel, groups=1, bias=False, bn=True):
        per_output = (c_in // groups) * kernel * kernel
        params = c_out * per_output + (c_out if bias else 0) + (2 * c_out if bn else 0)
        macs = hw[0] * hw[1] * c_out * per_output
        totals["params"] += params
        totals["macs"] += macs
        totals["bn"] += c_out if bn else 0
        parts[-1][1] += params
        parts[-1][2] += macs
        features.conv(hw, c_in, c_out, kernel, groups)

    def memory(hw, channels, name=None):
        """Ops without MACs (latency features only); `name`: an activation, which may fuse into the conv."""
        ops = _ACTIVATION_OPS[name] if name is not None else 1
        if ops:
            features.memory(ops * hw[0] * hw[1] * channels, ops)

    def padded(hw, channels, kernel):  # the explicit zero padding before a strided conv
        memory((hw[0] + kernel // 2 * 2, hw[1] + kernel // 2 * 2), channels)

    act = space.activation
    padded((h, w), 3, 3)
    h, w = space.feature_size(h, 2), space.feature_size(w, 2)
    parts.append(["stem", 0, 0])
    conv((h, w), 3, net.stem_channels, 3)
    memory((h, w), net.stem_channels, act)
    for block in net.blocks:
        parts.append([f"s{block.stage + 1}b{block.slot + 1}", 0, 0])
        if block.has_expand:
            conv((h, w), block.in_channels, block.hidden, 1)
            memory((h, w), block.hidden, act)
        if block.stride > 1:
            padded((h, w), block.hidden, block.kernel)
        h, w = space.feature_size(h, block.stride), space.feature_size(w, block.stride)
        conv((h, w), block.hidden, block.hidden, block.kernel, groups=block.hidden)
        memory((h, w), block.hidden, act)
        if block.se:
            memory((h, w), block.hidden)  # average pooling (reads the map)
            conv((1, 1), block.hidden, block.squeeze, 1, bias=True, bn=False)
            memory((1, 1), block.squeeze, space.se_activation)
            conv((1, 1), block.squeeze, block.hidden, 1, bias=True, bn=False)
            memory((1, 1), block.hidden, space.se_gate)
            memory((h, w), block.hidden)  # the gating multiply
        conv((h, w), block.hidden, block.out_channels, 1)
        if block.residual:
            memory((h, w), block.out_channels)
    parts.append(["head", 0, 0])
    last = net.blocks[-1].out_channels if net.blocks else net.stem_channels
    conv((h, w), last, net.head_channels, 1)
    memory((h, w), net.head_channels, act)
    memory((h, w), net.head_channels)  # global average pooling (reads the map)
    features.dense(net.head_channels, num_classes)
    classifier = net.head_channels * num_classes + num_classes
    totals["params"] += classifier
    totals["macs"] += net.head_channels * num_classes
    parts[-1][1] += classifier
    parts[-1][2] += net.head_channels * num_classes
    return ScaleNetCost(
        params=totals["params"],
        macs=totals["macs"],
        bn_channels=totals["bn"],
        classifier_params=classifier,
        input_size=size,
        depths=net.depths,
        layers=tuple((n, p, m) for n, p, m in parts),
        features=features.as_dict(),
    )


def count(
    space: ScaleNetSpace,
    arch: ScaleNetArch,
    num_classes: int = 1000,
    input_size: tuple[int, int] | None = None,
    validate: bool = True,
) -> ScaleNetCost:
    """Counts params and MACs of `arch` (generated with `space`'s rules) at `input_size`.

    The network: stem 3x3 stride-2 conv (BN); per block an optional 1x1 expand conv (BN), a k x k
    depthwise conv with the block's stride (BN), an optional SE (1x1 convs with bias, hidden ->
    squeeze -> hidden), a 1x1 project conv (BN); head 1x1 conv (BN), global average pooling, a dense
    classifier with bias. Feature sizes follow `space.spatial`.

    Args:
        space: the ScaleNet space (its conventions: `se_squeeze`, `hidden_rule`, `spatial`,
            `path_generation`).
        arch: the architecture.
        num_classes: classifier outputs.
        input_size: `(height, width)`; default the arch's resolution (square).
        validate: check the arch against the space first.

    Raises:
        ArchError: the arch is not in the space. ValueError: a bad class count or input size.
    """
    net = space.generate(arch, validate=validate)
    return count_network(space, net, num_classes, input_size)


def mean_base_macs(space: ScaleNetSpace, samples: int = 100_000, seed: int = 0, num_classes: int = 1000) -> float:
    """Mean MACs of `samples` uniform base paths (d = w = 1, base resolution): the basis of f0."""
    if not isinstance(samples, (int, np.integer)) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"`samples` must be a positive int. Received: samples={samples!r}")
    rng = np.random.default_rng(seed)
    px = space.base_resolution
    total = 0
    for _ in range(int(samples)):
        arch = ScaleNetArch(space.sample_base(rng), 1.0, 1.0, px)
        total += count(space, arch, num_classes, validate=False).macs
    return total / samples


def estimate_f0(mean_macs: float, step: float = 50e6) -> float:
    """The multiple of `step` (50M) nearest to `mean_macs` (at least one step)."""
    return float(max(1, round(mean_macs / step)) * step)


def budgets(f0: float, stages: int) -> list[float]:
    """2^j f0 for scaling stages j = 0..stages-1."""
    return [float(2**j * f0) for j in range(stages)]

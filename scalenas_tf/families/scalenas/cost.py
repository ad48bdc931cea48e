"""Analytic parameter and MAC counts of a ScaleNAS arch, from the encoding alone (no graph build).

Convention (that of the published HRNet / ScaleNAS figures): params are every weight except BN moving statistics;
MACs count convolutions (output elements x C_in/groups x kh x kw) and dense layers only. HRNet and
ScaleNAS papers print "GFLOPs" = MACs / 2**30; `Cost.gmacs` is MACs / 1e9.

Two counts are kept. `params`/`macs` count everything the reference forward pass executes, which is
what the papers publish. `live_params`/`live_macs` count only the work whose result reaches the head:
in top-down pose only branch 0 of the last module is read, so e.g. a branch deeper than branch 0
there, or fusion into targets 1.. of the last module, is dead work. Extracted Keras models hold the
live work only, so `live_params` is what their `count_params()` sees (plus BN moving statistics,
`keras_count_params`), and the latency features (`Cost.features`, `search.cost.LatencyFeatures`)
count the live work only: convs, the explicit padding of strided convs, residual and fusion adds,
fusion upsampling, and the seg head's resizes and concat.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from scalenas_tf import tasks
from scalenas_tf.families.scalenas.space import ScaleNASArch
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.search.cost import LatencyFeatures
from scalenas_tf.search.cost import MacUnits


@dataclasses.dataclass(frozen=True)
class Cost(MacUnits):
    """Params and MACs of one network at one input size."""

    params: int
    macs: int
    live_params: int
    live_macs: int
    live_bn_channels: int
    input_size: tuple[int, int]

    @property
    def keras_count_params(self) -> int:
        """What `count_params()` of the extracted Keras model gives: live params + BN moving stats."""
        return self.live_params + 2 * self.live_bn_channels

    def to_dict(self) -> dict:
        return {
            "params": self.params,
            "macs": self.macs,
            "gmacs": round(self.gmacs, 6),
            "gflops_hrnet": round(self.gflops_hrnet, 6),
            "live_params": self.live_params,
            "live_macs": self.live_macs,
            "live_params_with_bn_stats": self.keras_count_params,
            "input_size": list(self.input_size),
        }


class _Tally:
    """Sums params, MACs and BN channels, keeping the live part apart; latency features count
    the live work only (what the extracted model executes)."""

    def __init__(self):
        self.params = self.macs = 0
        self.live_params = self.live_macs = self.live_bn = 0
        self.features = LatencyFeatures()

    def _add(self, params, macs, bn, live):
        self.params += params
        self.macs += macs
        if live:
            self.live_params += params
            self.live_macs += macs
            self.live_bn += bn

    def conv(self, hw, c_in, c_out, kernel, stride=1, bias=False, bn=True, live=True):
        """A conv (PyTorch padding k//2) with optional BN; returns the output size."""
        out = (math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))
        params = kernel * kernel * c_in * c_out + (c_out if bias else 0) + (2 * c_out if bn else 0)
        self._add(params, out[0] * out[1] * c_out * c_in * kernel * kernel, c_out if bn else 0, live)
        if live:
            if stride > 1:  # extraction pads a strided conv explicitly (ZeroPadding2D)
                pad = kernel // 2
                self.features.memory((hw[0] + 2 * pad) * (hw[1] + 2 * pad) * c_in)
            self.features.conv(out, c_in, c_out, kernel)
        return out

    def dense(self, c_in, c_out, live=True):
        self._add(c_in * c_out + c_out, c_in * c_out, 0, live)
        if live:
            self.features.dense(c_in, c_out)

    def memory(self, hw, channels, ops=1, live=True):
        """`ops` ops without MACs, each streaming `hw` x `channels` (adds, resampling, concat, pooling)."""
        if live:
            self.features.memory(ops * hw[0] * hw[1] * channels, ops)

    def bottleneck(self, hw, c_in, planes, live=True):
        out_c = planes * tasks.BOTTLENECK_EXPANSION
        self.conv(hw, c_in, planes, 1, live=live)
        self.conv(hw, planes, planes, 3, live=live)
        self.conv(hw, planes, out_c, 1, live=live)
        if c_in != out_c:
            self.conv(hw, c_in, out_c, 1, live=live)
        self.memory(hw, out_c, live=live)  # the residual add (its ReLU fuses into it)
        return out_c

    def basic_block(self, hw, c, live=True):
        self.conv(hw, c, c, 3, live=live)
        self.conv(hw, c, c, 3, live=live)
        self.memory(hw, c, live=live)

    def fusion_edge(self, sizes, channels, target, source, live=True):
        if source > target:
            self.conv(sizes[source], channels[source], channels[target], 1, live=live)
            self.memory(sizes[target], channels[target], live=live)  # upsampling to the target
            factor = 2 ** (source - target)
            if (sizes[source][0] * factor, sizes[source][1] * factor) != tuple(sizes[target]):
                self.memory(sizes[target], channels[target], live=live)  # cropping the odd row / column
            return
        hw = sizes[source]
        for t in range(target - source):
            last = t == target - source - 1
            hw = self.conv(hw, channels[source], channels[target] if last else channels[source], 3, 2, live=live)


def _live_sets(space: ScaleNASSpace, arch: ScaleNASArch, task: str):
    """Which blocks and fusion edges reach the head: per module, (live blocks, live edges, needed inputs)."""
    layout = space.module_layout()
    needed = set(range(layout[-1][2])) if tasks.head_reads_all_branches(task) else {0}
    per_module = [None] * len(layout)
    for m in reversed(range(len(layout))):
        module = arch.modules[m]
        live_blocks, live_edges = set(), set()
        for s in reversed(range(space.max_steps)):
            before = set(needed)
            for j in needed:
                for k, bit in enumerate(module.fusion[j][s]):
                    if bit and k != j:
                        live_edges.add((j, s, k))
                        before.add(k)
            live_blocks.update((i, s) for i in before if s < module.depths[i])
            needed = before
        per_module[m] = (live_blocks, live_edges, set(needed))
        if m > 0 and layout[m - 1][2] < layout[m][2]:  # a transition adds branch B from branch B - 1
            new = layout[m][2] - 1
            needed = {i for i in needed if i < new} | ({new - 1} if new in needed else set())
    return per_module


def count(
    space: ScaleNASSpace,
    arch: ScaleNASArch,
    task: str = "pose",
    num_classes: int = 17,
    input_size: tuple[int, int] = (256, 192),
    validate: bool = True,
) -> Cost:
    """Counts params and MACs of `arch` with the given head at `input_size` (height, width).

    Args:
        space: the search space the arch belongs to.
        arch: the architecture.
        task: `"cls"` (HRNet classification head), `"seg"` (HRNetV2 head) or `"pose"` (heatmaps).
        num_classes: classes, or joints for pose.
        input_size: `(height, width)` of the input image; any size >= 1.
        validate: check the arch against the space first.

    Returns:
        A `Cost`.

    Raises:
        ArchError: if `validate` and the arch is outside the space.
        ValueError: for a bad task, class count or input size.
    """
    tasks.validate_task(task, num_classes)
    if len(input_size) != 2 or any(
        not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1 for v in input_size
    ):
        raise ValueError(f"`input_size` must be (height, width) positive ints. Received: input_size={input_size}")
    input_size = (int(input_size[0]), int(input_size[1]))
    if validate:
        space.validate(arch)
    tally = _Tally()
    live = _live_sets(space, arch, task)
    stem = space.stem_channels

    # === Stem and layer1 ===
    hw = tally.conv(tuple(input_size), 3, stem, 3, 2)
    hw = tally.conv(hw, stem, stem, 3, 2)
    c = stem
    for _ in range(space.layer1_blocks):
        c = tally.bottleneck(hw, c, stem)

    # === Stages ===
    channels = space.branch_channels()
    sizes = [hw]
    for _ in range(1, len(channels)):
        sizes.append((math.ceil(sizes[-1][0] / 2), math.ceil(sizes[-1][1] / 2)))
    prev_branches = 0
    for m, ((_, _, b), module) in enumerate(zip(space.module_layout(), arch.modules)):
        live_blocks, live_edges, needed_in = live[m]
        if prev_branches == 0:  # transition1: both branches from layer1
            if c != channels[0]:
                tally.conv(hw, c, channels[0], 3, live=0 in needed_in)
            tally.conv(hw, c, channels[1], 3, 2, live=1 in needed_in)
        elif b > prev_branches:
            tally.conv(sizes[b - 2], channels[b - 2], channels[b - 1], 3, 2, live=b - 1 in needed_in)
        prev_branches = b
        for s in range(space.max_steps):
            for i in range(b):
                if s < module.depths[i]:
                    tally.basic_block(sizes[i], channels[i], live=(i, s) in live_blocks)
            for j, s_, k in module.edges():
                if s_ == s:
                    tally.fusion_edge(sizes, channels, j, k, live=(j, s, k) in live_edges)
            for j in range(b):  # one add per fused source (the ReLU after them fuses into the last)
                fused = sum(1 for j_, s_, _ in live_edges if j_ == j and s_ == s)
                tally.memory(sizes[j], channels[j], ops=fused, live=fused > 0)

    # === Head ===
    b = len(channels)
    if task == "pose":
        tally.conv(sizes[0], channels[0], num_classes, 1, bias=True, bn=False)
    elif task == "seg":
        total = sum(channels)
        for i in range(1, b):
            tally.memory(sizes[0], channels[i])  # bilinear resize of branch i to branch 0
        tally.memory(sizes[0], total)  # concat
        tally.conv(sizes[0], total, total, 1, bias=True)
        tally.conv(sizes[0], total, num_classes, 1, bias=True, bn=False)
    else:
        head = tasks.CLS_HEAD_CHANNELS
        if b > len(head):
            raise ValueError(f"The classification head supports up to {len(head)} branches. Received: {b}")
        out = tally.bottleneck(sizes[0], channels[0], head[0])
        for i in range(1, b):
            tally.bottleneck(sizes[i], channels[i], head[i])
            nxt = head[i] * tasks.BOTTLENECK_EXPANSION
            tally.conv(sizes[i - 1], out, nxt, 3, 2, bias=True)
            tally.memory(sizes[i], nxt)  # the add of branch i and the downsampled sum
            out = nxt
        tally.conv(sizes[b - 1], out, tasks.CLS_NUM_FEATURES, 1, bias=True)
        tally.memory(sizes[b - 1], tasks.CLS_NUM_FEATURES)  # global average pooling (reads the map)
        tally.dense(tasks.CLS_NUM_FEATURES, num_classes)
    return Cost(
        params=tally.params,
        macs=tally.macs,
        live_params=tally.live_params,
        live_macs=tally.live_macs,
        live_bn_channels=tally.live_bn,
        input_size=tuple(input_size),
        features=tally.features.as_dict(),
    )

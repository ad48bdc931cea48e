"""The searchable multi-resolution module: per-branch depth and a fusion layer after every block step."""

import keras
import numpy as np
import tensorflow as tf

from scalenas_tf.families.scalenas.basic_block import BasicBlock
from scalenas_tf.families.scalenas.fusion import FusionEdge
from scalenas_tf.layers import common


@keras.saving.register_keras_serializable(package="scalenas")
class HRModule(keras.layers.Layer):
    """A ScaleNAS module: B parallel branches of BasicBlocks with any-to-any fusion after each step.

    Holds `max(depth_choices)` blocks per branch and one `FusionEdge` per (target, step, source).
    For step s: each branch i with s < depth_i runs block s; then every target j becomes
    `ReLU(x_j + sum_k bit[j, s, k] * F_jsk(x_k))` (targets read the states before this fusion).
    Inside a compiled function each block and edge sits in a `tf.cond`, so one trace serves every
    arch and only the chosen work runs; blocks (and edges) of one shape share one traced cond function
    (`common.gate_layers`), so the trace does not grow with their number; an arch known while tracing
    (a constant, e.g. the in-place teacher's largest) branches in Python instead and builds no conds (the
    blocks and edges it runs, and the blocks every arch runs, are calls of shared functions without one).

    Args:
        branch_channels: tuple of ints, one per branch (W, 2W, ...).
        depth_choices: sorted tuple of ints; blocks below the smallest choice always run.
        fusion_upsampling: `"nearest"` or `"bilinear"`: how edges from lower-resolution branches
            upsample (`FusionEdge`'s `upsampling`).
        bn_momentum: float. Keras momentum of every BN layer (PyTorch's is `1 - bn_momentum`).

    Call arguments:
        inputs: list of B float tensors, branch i of shape `(batch, h_i, w_i, branch_channels[i])`.
        arch: int tensor of shape `(B + B * S * B,)`: depths, then fusion bits `[target, step, source]`
            (S = max depth choice), the per-module slice of `ScaleNASSpace.to_vector`.
        training: bool.

    Reference:
        Cheng et al., "ScaleNAS: One-Shot Learning of Scale-Aware Representations for Visual
        Recognition", AutoML-Conf 2022; Wang et al., "Deep High-Resolution Representation Learning
        for Visual Recognition", TPAMI 2020.
    """

    def __init__(
        self,
        branch_channels,
        depth_choices=(2, 3, 4, 5),
        fusion_upsampling="nearest",
        bn_momentum=common.BN_MOMENTUM,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.branch_channels = tuple(int(c) for c in branch_channels)
        self.depth_choices = tuple(int(d) for d in depth_choices)
        self.fusion_upsampling = fusion_upsampling
        self.bn_momentum = bn_momentum
        if len(self.branch_channels) < 1:
            raise ValueError(f"`branch_channels` must be non-empty. Received: branch_channels={branch_channels}")
        if not self.depth_choices or list(self.depth_choices) != sorted(set(self.depth_choices)):
            raise ValueError(f"`depth_choices` must be increasing. Received: depth_choices={depth_choices}")
        b, steps = self.num_branches, self.max_steps
        self.blocks = [
            BasicBlock(self.branch_channels[i], bn_momentum, name=f"{self.name}_b{i}_k{s}")
            for i in range(b)
            for s in range(steps)
        ]
        self.edges = [
            FusionEdge(
                k,
                j,
                self.branch_channels[k],
                self.branch_channels[j],
                upsampling=fusion_upsampling,
                bn_momentum=bn_momentum,
                name=f"{self.name}_f{j}s{s}k{k}",
            )
            for j in range(b)
            for s in range(steps)
            for k in range(b)
            if k != j
        ]

    @property
    def num_branches(self):
        return len(self.branch_channels)

    @property
    def max_steps(self):
        return self.depth_choices[-1]

    def block(self, branch, step):
        return self.blocks[branch * self.max_steps + step]

    def edge(self, target, step, source):
        b = self.num_branches
        return self.edges[(target * self.max_steps + step) * (b - 1) + (source if source < target else source - 1)]

    def build(self, input_shape):
        for block in self.blocks:
            block.build(common.channels_shape(block.filters))
        for edge in self.edges:
            edge.build(common.channels_shape(edge.source_channels))

    def call(self, inputs, arch, training=None):
        b, steps = self.num_branches, self.max_steps
        xs = list(inputs)
        block_on, edge_on = self._gates(arch)
        sizes = [common.dims(x, (1, 2)) for x in xs]
        for s in range(steps):
            for i in range(b):
                xs[i] = self._maybe_block(xs[i], i, s, block_on[i][s], training)
            fused = []
            for j in range(b):
                y = xs[j]
                for k in range(b):
                    if k == j:
                        continue
                    y = common.gate_layers(
                        edge_on[j][s][k],
                        self.edge(j, s, k),
                        lambda edges, y, x, hw: y + edges[0](x, target_hw=hw, training=training),
                        lambda y, x, hw: y,
                        (y, xs[k], sizes[j]),
                        key=(training,),
                    )
                # Every state is a ReLU output, so the ReLU is exact when nothing was added.
                fused.append(keras.ops.relu(y) if b > 1 else y)
            xs = fused
        return xs

    def _gates(self, arch):
        """Python lists of scalar bool tensors (Python bools for a fixed arch): `block_on[i][s]`, `edge_on[j][s][k]`.

        A block runs when `s < depth_i`; an edge when its bit is set and `s < depth_j` (bits beyond
        the target's depth are 0 in a valid arch; masking them anyway makes the graph compute
        exactly what the encoding validates, whatever tensor comes in). Computed as two tensors and
        unstacked, which keeps the traced graph small.
        """
        b, steps = self.num_branches, self.max_steps
        known = common.static_value(arch)
        if known is not None:  # a fixed arch: Python bools, so `call` builds no conds
            depths = known[:b].astype(np.int64)
            bits = known[b:].reshape(b, steps, b)
            block_on = np.arange(steps)[None, :] < depths[:, None]
            edge_on = np.logical_and(bits > 0, block_on[:, :, None])
            return block_on.tolist(), edge_on.tolist()
        arch = tf.convert_to_tensor(arch, dtype=tf.int32)
        depths = arch[:b]
        bits = tf.reshape(arch[b:], (b, steps, b))
        block_on = tf.range(steps)[None, :] < depths[:, None]
        edge_on = tf.logical_and(bits > 0, block_on[:, :, None])
        block_on = [tf.unstack(row) for row in tf.unstack(block_on)]
        edge_on = [[tf.unstack(row) for row in tf.unstack(plane)] for plane in tf.unstack(edge_on)]
        return block_on, edge_on

    def gated_layers(self, arch):
        """`(layer, on)` for every block and edge that runs only for some archs.

        `on` is a scalar bool tensor, true when `arch` (this module's slice) runs the layer: the same
        predicates as `call`, so sparse updates and BN recalibration touch exactly what ran.
        """
        b, steps = self.num_branches, self.max_steps
        block_on, edge_on = self._gates(arch)
        gated = [(self.block(i, s), block_on[i][s]) for i in range(b) for s in range(self.depth_choices[0], steps)]
        gated += [
            (self.edge(j, s, k), edge_on[j][s][k]) for j in range(b) for s in range(steps) for k in range(b) if k != j
        ]
        return [(layer, on if tf.is_tensor(on) else tf.constant(bool(on))) for layer, on in gated]

    def _maybe_block(self, x, i, s, on, training):
        block = self.block(i, s)
        return common.gate_layers(
            True if s < self.depth_choices[0] else on,
            block,
            lambda blocks, x: blocks[0](x, training=training),
            lambda x: x,
            (x,),
            key=(training,),
        )

    def extract(self, xs, module_arch):
        """Applies the chosen blocks and edges of `module_arch` (a `ModuleArch`) to KerasTensors `xs`."""
        b = self.num_branches
        xs = list(xs)
        sizes = [tuple(x.shape[1:3]) for x in xs]
        for s in range(max(module_arch.depths)):
            for i in range(b):
                if s < module_arch.depths[i]:
                    xs[i] = self.block(i, s).extract(xs[i])
            fused = []
            for j in range(b):
                sources = [k for k in range(b) if k != j and module_arch.fusion[j][s][k]]
                if not sources:
                    fused.append(xs[j])
                    continue
                terms = [xs[j]] + [self.edge(j, s, k).extract(xs[k], sizes[j]) for k in sources]
                y = keras.layers.Add(name=f"{self.name}_fuse{j}s{s}_add")(terms)
                fused.append(keras.layers.ReLU(name=f"{self.name}_fuse{j}s{s}_relu")(y))
            xs = fused
        return xs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "branch_channels": self.branch_channels,
                "depth_choices": self.depth_choices,
                "fusion_upsampling": self.fusion_upsampling,
                "bn_momentum": self.bn_momentum,
            }
        )
        return config

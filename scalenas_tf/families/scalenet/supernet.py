"""The ScaleNet super-supernet: one keras.Model over base paths x depth x width x resolution.

Every stage holds `slots` = ceil(max_blocks x max depth multiplier) depth slots (2, 7, 7, 7, 7, 7, 2
for the official space); each slot holds one `ElasticMBConv` per choice of its stage, at the widest
width any strategy gives it. A subnet (the arch vector of `ScaleNetSpace.to_vector`) runs:

- resolution: the input resized (bilinear) to the arch's pixels, when it has another size;
- width: every layer on its leading ceil(c w) channels (tables indexed by the width index);
- depth: stage i's slots k < ceil(n_i d) (a `tf.cond` per slot beyond the stage's minimum), slot k
  running the op of base block min(k, n_i - 1), so added blocks copy the stage's last base block; each
  slot's computation is traced once for all slots of its config (`common.gate_layers`);
- op: per slot, one computation for the choices that differ only in kernel size (the chosen one's
  weights gathered, the depthwise conv a `tf.switch_case` over kernel sizes); a `tf.switch_case` over
  such groups where a stage's choices differ in more (the `paper` space's expand ratios and SE).

One trace serves every arch; an arch known while tracing (e.g. the in-place teacher's largest)
branches in Python and has static widths.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import keras
import numpy as np
import tensorflow as tf

from scalenas_tf import tasks
from scalenas_tf.families.scalenet.elastic import ACTIVATIONS
from scalenas_tf.families.scalenet.elastic import ElasticBatchNorm
from scalenas_tf.families.scalenet.elastic import ElasticConv
from scalenas_tf.families.scalenet.elastic import ElasticMBConv
from scalenas_tf.families.scalenet.elastic import channel_mask
from scalenas_tf.families.scalenet.space import NUM_STAGES
from scalenas_tf.families.scalenet.space import ScaleNetSpace
from scalenas_tf.families.scalenet.space import parse_choice
from scalenas_tf.layers import common
from scalenas_tf.models.supernet import Supernet


def op_name(stage: int, slot: int, choice: str) -> str:
    """`s3b2_k5e6se`: stage 3 (1-based), slot 2, choice K5E6+SE."""
    return f"s{stage + 1}b{slot + 1}_{choice.lower().replace('+', '')}"


@dataclasses.dataclass(frozen=True)
class Tables:
    """The integer tables the supernet gathers from (plain numpy; built from the space's own rules).

    depths[i]: `(max_blocks[i] + 1, len(depth_values))` blocks of stage i for n base blocks and a
    depth index; stem[w]: stem width; widths[i][k][c]: `(len(width_values), 4)` (in, out, hidden,
    squeeze) of choice c at slot k of stage i; local[i]: global choice id -> index in stage i's
    choices (-1: not offered); slots[i]: depth slots of stage i.
    """

    depths: tuple[np.ndarray, ...]
    stem: np.ndarray
    widths: tuple[tuple[tuple[np.ndarray, ...], ...], ...]
    local: tuple[np.ndarray, ...]
    slots: tuple[int, ...]
    resolutions: np.ndarray

    @classmethod
    def of(cls, space: ScaleNetSpace) -> Tables:
        d_values, w_values = space.depth_values, space.width_values
        depths, widths, local, slots = [], [], [], []
        names = space.choice_names
        for i in range(NUM_STAGES):
            table = np.zeros((space.max_blocks[i] + 1, len(d_values)), np.int32)
            for n in range(1, space.max_blocks[i] + 1):
                for j, d in enumerate(d_values):
                    table[n, j] = math.ceil(Fraction(n) * Fraction(repr(float(d))))
            depths.append(table)
            slots.append(int(table.max()))
            choices = space.stage_choices(i)
            widths.append(
                tuple(
                    tuple(
                        np.asarray([space.block_widths(i, k == 0, parse_choice(c), w) for w in w_values], np.int32)
                        for c in choices
                    )
                    for k in range(slots[-1])
                )
            )
            local.append(np.asarray([choices.index(n) if n in choices else -1 for n in names], np.int32))
        stem = np.asarray([space.scaled(space.stem_channels, w) for w in w_values], np.int32)
        return cls(
            tuple(depths),
            stem,
            tuple(widths),
            tuple(local),
            tuple(slots),
            np.asarray(space.resolution_values, np.int32),
        )


def _take(table, index):
    """`table[index]`: numpy when `index` is a Python/numpy int, else a gather."""
    if isinstance(index, (int, np.integer)):
        return table[int(index)]
    return tf.gather(tf.constant(table), index)


def _run_slot(ops, groups, x, local, widths, training):
    """The chosen op of a slot (`local`: an int, or a scalar int tensor): one computation per group of ops that
    differ only in kernel size (the chosen op's weights gathered), a `tf.switch_case` over groups."""

    def call(c, **kwargs):  # op c at its widths row
        w = widths[c]
        return ops[c](x, out_channels=w[1], hidden=w[2], squeeze=w[3], training=training, **kwargs)

    if isinstance(local, int):
        return call(local)
    position = np.zeros(len(ops), np.int32)
    group_of = np.zeros(len(ops), np.int32)
    for g, members in enumerate(groups):
        position[list(members)] = np.arange(len(members))
        group_of[list(members)] = g

    def run_group(members):
        if len(members) == 1:
            return call(members[0])
        index = tf.gather(tf.constant(position), local)
        return call(members[0], group=[ops[c] for c in members], index=index)

    if len(groups) == 1:
        return run_group(groups[0])
    # Before ops were grouped, a chain of two-way conds (as SCARLET's 13 choices) measured no better than
    # one switch_case over the 3 choices (back to back on 2026-12-03, official depth, `:cpu`: first step
    # 150.9 vs 147.2 s, 158.2k vs 159.6k ops in all, peak RSS 4.77 vs 4.68 GB).
    branches = [lambda members=members: run_group(members) for members in groups]
    return tf.switch_case(tf.gather(tf.constant(group_of), local), branches)


@keras.saving.register_keras_serializable(package="scalenas")
class ScaleNetSupernet(Supernet):
    """Weight-sharing super-supernet over a `ScaleNetSpace` (classification).

    Args:
        space: `ScaleNetSpace` or the dict of its fields (ScaleNet path generation, ceil spatial sizes).
        task: `"cls"`.
        num_classes: int.
        resize: resize the input to the arch's resolution (bilinear, half-pixel centres) when its size
            differs; False feeds the input as given (a pipeline that resizes itself).

    Call arguments:
        images: float tensor `(batch, h, w, 3)`.
        arch: `None` (the largest), a `ScaleNetArch`, or an int tensor `(space.vector_size,)`.
        training: bool.

    Reference:
        Xie et al., "ScaleNet: Searching for the Model to Scale", ECCV 2022.
    """

    def __init__(self, space, task="cls", num_classes=1000, resize=True, **kwargs):
        kwargs.setdefault("name", "scalenet_supernet")
        super().__init__(**kwargs)
        if isinstance(space, dict):
            space = ScaleNetSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in space.items()})
        if not isinstance(space, ScaleNetSpace):
            raise TypeError(
                f"`space` must be a ScaleNetSpace or a dict of its fields. Received: {type(space).__name__}"
            )
        tasks.validate_task(task, num_classes)
        if task != "cls":
            raise ValueError(f"The ScaleNet space is for classification: `task` must be 'cls'. Received: task={task!r}")
        if space.path_generation != "scalenet" or space.spatial != "ceil":
            raise ValueError(
                "The super-supernet scales with ScaleNet's rules and builds real convs: it needs "
                "path_generation='scalenet' and spatial='ceil' (the other options reproduce published counts). "
                f"Received: path_generation={space.path_generation!r}, spatial={space.spatial!r}"
            )
        self.space, self.task, self.num_classes, self.resize = space, task, num_classes, bool(resize)
        self.tables = t = Tables.of(space)

        # === Layers ===
        self.stem_conv = ElasticConv(3, int(t.stem.max()), 3, 2, name="stem_conv")
        self.stem_bn = ElasticBatchNorm(int(t.stem.max()), name="stem_bn")
        self.ops = []  # ops[i][k][c]: stage i, slot k, choice c
        for i in range(NUM_STAGES):
            stage_ops = []
            for k in range(t.slots[i]):
                slot_ops = []
                for c, name in enumerate(space.stage_choices(i)):
                    choice, capacity = parse_choice(name), t.widths[i][k][c].max(axis=0)
                    first = k == 0
                    slot_ops.append(
                        ElasticMBConv(
                            *(int(v) for v in capacity),
                            kernel_size=choice.kernel,
                            expand=choice.expand,
                            use_se=choice.se,
                            strides=space.stage_strides[i] if first else 1,
                            residual=not first or (space.stage_strides[i] == 1 and self._same_base_width(i)),
                            activation=space.activation,
                            se_activation=space.se_activation,
                            se_gate=space.se_gate,
                            name=op_name(i, k, name),
                        )
                    )
                stage_ops.append(slot_ops)
            self.ops.append(stage_ops)
        # groups[i][k]: the choices of slot k of stage i that run as one computation (`ElasticMBConv` group
        # calls: ops that differ only in kernel size, at equal width tables).
        self.groups = [
            [
                common.group_indices(
                    len(ops),
                    lambda a, b, ops=ops, w=t.widths[i][k]: (
                        ops[a].shares_compute_with(ops[b]) and np.array_equal(w[a], w[b])
                    ),
                )
                for k, ops in enumerate(stage_ops)
            ]
            for i, stage_ops in enumerate(self.ops)
        ]
        last = max(int(t.widths[-1][0][c][:, 1].max()) for c in range(len(space.stage_choices(NUM_STAGES - 1))))
        self.head_conv = ElasticConv(last, space.head_channels, 1, name="head_conv")
        self.head_bn = ElasticBatchNorm(space.head_channels, name="head_bn")
        self.classifier = keras.layers.Dense(num_classes, name="classifier")

    def _same_base_width(self, stage):
        previous = self.space.stage_channels[stage - 1] if stage else self.space.stem_channels
        return previous == self.space.stage_channels[stage]

    def build(self, input_shape=None):
        self.stem_conv.build()
        self.stem_bn.build()
        for op in self.all_ops():
            op.build()
        self.head_conv.build()
        self.head_bn.build()
        self.classifier.build((None, self.space.head_channels))
        self.built = True

    def all_ops(self):
        return [op for stage in self.ops for slot in stage for op in slot]

    # === The arch ===

    def check_arch(self, vector):
        """`vector` with an in-graph check that block counts, the used slots' choices and the strategy
        indices are in the space. Eagerly the full validation runs (`ArchError` naming stage and value)."""
        if tf.executing_eagerly():
            self.space.from_vector(vector.numpy())
            return vector
        space, t = self.space, self.tables
        size_ok = tf.debugging.assert_equal(
            tf.size(vector), space.vector_size, message=f"ScaleNet arch vector: expected {space.vector_size} entries"
        )
        with tf.control_dependencies([size_ok]):
            counts = vector[:NUM_STAGES]
            ok = [tf.reduce_all((counts >= space.min_blocks) & (counts <= space.max_blocks))]
            offset = NUM_STAGES
            for i in range(NUM_STAGES):
                ids = vector[offset : offset + space.max_blocks[i]]
                used = tf.range(space.max_blocks[i]) < counts[i]
                known = (ids >= 0) & (ids < len(space.choice_names))
                offered = tf.gather(tf.constant(t.local[i]), tf.clip_by_value(ids, 0, len(space.choice_names) - 1)) >= 0
                ok.append(tf.reduce_all(~used | (known & offered)))
                offset += space.max_blocks[i]
            for k, values in enumerate((space.depth_values, space.width_values, space.resolution_values)):
                ok.append((vector[offset + k] >= 0) & (vector[offset + k] < len(values)))
            check = tf.debugging.Assert(
                tf.reduce_all(tf.stack(ok)),
                [
                    "ScaleNet arch vector outside the space (block counts, choices per stage, strategy indices); "
                    "checks [counts, stage 1..7 choices, depth, width, resolution]:",
                    tf.stack(ok),
                    "vector",
                    vector,
                ],
                summarize=space.vector_size,
            )
        with tf.control_dependencies([check]):
            return tf.identity(vector)

    def _vector(self, arch):
        """`(vector, static)`: a numpy vector when known while tracing (Python branching), else the checked tensor."""
        vector = self.static_arch(arch)
        if vector is not None:
            return vector, True
        return self.arch_tensor(arch), False

    def _slots(self, vector):
        """Per stage and slot: `(on, choice index, widths row)`; `on` is None for slots every arch runs."""
        space, t = self.space, self.tables
        d_index, w_index = vector[-3], vector[-2]
        plan, offset = [], NUM_STAGES
        for i in range(NUM_STAGES):
            n = vector[i]
            depth = _take(t.depths[i], n)
            depth = depth[int(d_index)] if isinstance(d_index, (int, np.integer)) else tf.gather(depth, d_index)
            stage = []
            for k in range(t.slots[i]):
                if isinstance(n, (int, np.integer)):
                    base_slot = min(k, int(n) - 1)
                    local = int(t.local[i][int(vector[offset + base_slot])])
                    on = bool(k < depth)
                else:
                    base_slot = tf.minimum(k, n - 1)
                    local = tf.gather(tf.constant(t.local[i]), tf.gather(vector, offset + base_slot))
                    on = None if k < space.min_blocks[i] else k < depth
                widths = [_take(table, w_index) for table in t.widths[i][k]]
                stage.append((on, local, widths))
            plan.append(stage)
            offset += space.max_blocks[i]
        return plan

    # === Forward ===

    def _resize(self, images, px):
        if not self.resize:
            return images
        size = images.shape[1:3]
        if isinstance(px, (int, np.integer)) and size[0] is not None and tuple(size) == (px, px):
            return images
        if isinstance(px, (int, np.integer)):
            px = tf.constant(int(px))
        same = tf.reduce_all(tf.equal(tf.shape(images)[1:3], px))
        return tf.cond(same, lambda: images, lambda: tf.image.resize(images, tf.stack([px, px])))

    def call(self, images, arch=None, training=None):
        vector, static = self._vector(arch)
        if not static:
            with tf.control_dependencies([vector]):  # nothing runs before the check
                images = tf.identity(images)
        t = self.tables
        px = _take(t.resolutions, vector[-1])
        x = self._resize(images, px)
        act = ACTIVATIONS[self.space.activation]
        x = act(self.stem_bn(self.stem_conv(x, _take(t.stem, vector[-2])), training=training))
        for i, stage in enumerate(self._slots(vector)):
            for k, (on, local, widths) in enumerate(stage):
                groups = self.groups[i][k]
                if isinstance(local, (int, np.integer)):  # a known arch: static widths, the chosen op alone
                    local = int(local)
                    widths = [tuple(int(v) for v in row) for row in widths]
                x = common.gate_layers(
                    True if on is None else on,
                    self.ops[i][k],
                    lambda ops, x, local, widths, groups=groups: _run_slot(ops, groups, x, local, widths, training),
                    lambda x, local, widths: x,
                    (x, local, widths),
                    key=(groups, training),
                )
        x = act(self.head_bn(self.head_conv(x), training=training))
        return self.classifier(tf.reduce_mean(x, axis=(1, 2)))

    # === What an arch touches ===

    def gated_layers(self, arch=None):
        """`(op, on)` for every choice op: `on` is true when `arch` runs it (its slot is within the
        stage's depth and holds that choice). Stem, head and classifier run for every arch."""
        return [(op, on) for op, on, _ in self._op_gates(self.arch_tensor(arch))]

    def _op_gates(self, vector):
        """`(op, on, widths row)` for every choice op, in `all_ops()` order."""
        gated = []
        for i, stage in enumerate(self._slots(vector)):
            for k, (on, local, widths) in enumerate(stage):
                for c, op in enumerate(self.ops[i][k]):
                    chosen = tf.equal(local, c)
                    gated.append((op, chosen if on is None else tf.logical_and(on, chosen), widths[c]))
        return gated

    def channel_masks(self, arch=None):
        """`(variable, mask)` for every elastic weight: true where `arch` reads it (channels within its
        widths, in ops it runs). The classifier and the head conv's outputs are never sliced."""
        vector = self.arch_tensor(arch)
        stem = tf.gather(tf.constant(self.tables.stem), vector[-2])
        pairs = self.stem_conv.masks(3, stem) + self.stem_bn.masks(stem)
        last = None
        for op, on, w in self._op_gates(vector):
            pairs += op.masks(w[0], w[1], w[2], w[3], on)
            last = w[1]
        pairs += self.head_conv.masks(last, self.space.head_channels)
        return pairs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "space": dataclasses.asdict(self.space),
                "task": self.task,
                "num_classes": self.num_classes,
                "resize": self.resize,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**dict(config))


def channel_masks_of(supernet, arch):
    """Eager helper: `{variable path: numpy mask broadcast to the variable's shape}`."""
    return {v.path: np.broadcast_to(np.asarray(m), v.shape) for v, m in supernet.channel_masks(arch)}


__all__ = ["ScaleNetSupernet", "Tables", "op_name", "channel_mask", "channel_masks_of"]

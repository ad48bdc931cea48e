"""A searchable mobile layer: one op per choice, the chosen one run in graph by a chain of two-way `tf.cond`s, one
per group of ops that differ only in kernel size."""

import keras
import tensorflow as tf

from scalenas_tf.families.scarlet.mobile_block import MobileBlock
from scalenas_tf.families.scarlet.space import IDENTITY
from scalenas_tf.families.scarlet.space import parse_choice
from scalenas_tf.families.scarlet.stabilizer import Stabilizer
from scalenas_tf.layers import common


@keras.saving.register_keras_serializable(package="scalenas")
class ChoiceLayer(keras.layers.Layer):
    """The choices of one SCARLET layer, each with its own weights (single-path one-shot, SPOS/FairNAS).

    Identity is a `Stabilizer` (ELS, `identity_op="els"`) or a parameter-free skip (`"skip"`).

    Args:
        in_channels, filters, strides: the layer's skeleton.
        choices: tuple of choice names (`"K7E3"`, `"K5E6+SE"`, `"id"`), in the space's order.
        choice_ids: tuple of ints, each choice's index in the space's `choice_names` (what the arch
            vector holds).
        activation: `"hswish"` or `"relu6"`. identity_op: `"els"` or `"skip"`.

    Call arguments:
        inputs: float tensor `(batch, h, w, in_channels)`.
        choice: scalar int tensor, an entry of `choice_ids` (a constant one runs its op without conds).
        training: bool.
    """

    def __init__(
        self, in_channels, filters, strides, choices, choice_ids, activation="hswish", identity_op="els", **kwargs
    ):
        super().__init__(**kwargs)
        self.in_channels, self.filters, self.strides = int(in_channels), int(filters), int(strides)
        self.choices, self.choice_ids = tuple(choices), tuple(int(i) for i in choice_ids)
        self.activation, self.identity_op = activation, identity_op
        if len(self.choices) != len(self.choice_ids):
            raise ValueError(
                f"`choices` and `choice_ids` differ in length: {len(self.choices)} vs {len(self.choice_ids)}"
            )
        self.ops = []
        for name in self.choices:
            block = parse_choice(name)
            if block is not None:
                op = MobileBlock(
                    self.in_channels,
                    self.filters,
                    block.kernel,
                    block.expand,
                    block.se,
                    self.strides,
                    activation,
                    name=f"{self.name}_{slug(name)}",
                )
            elif identity_op == "els":
                op = Stabilizer(self.in_channels, self.filters, self.strides, name=f"{self.name}_els")
            else:
                if self.strides != 1 or self.in_channels != self.filters:
                    raise ValueError(f"{self.name}: a plain skip cannot change width or stride")
                op = None
            self.ops.append(op)
        # groups: indices of `ops` run as one computation (blocks that differ only in kernel size, see
        # `MobileBlock.call`); the identity alone. One two-way cond per group.
        blocks = [op if isinstance(op, MobileBlock) else None for op in self.ops]
        self.groups = common.group_indices(
            len(self.ops),
            lambda a, b: blocks[a] is not None and blocks[b] is not None and blocks[a].shares_compute_with(blocks[b]),
        )

    def build(self, input_shape=None):
        for op in self.ops:
            if op is not None:
                op.build(None)

    def op(self, name):
        """The op of choice `name` (None for a plain skip)."""
        return self.ops[self.choices.index(name)]

    def _local(self, choice):
        table = tf.constant(
            [self.choice_ids.index(i) if i in self.choice_ids else -1 for i in range(max(self.choice_ids) + 1)]
        )
        return tf.gather(table, tf.cast(choice, tf.int32))

    def call(self, inputs, choice, training=None):
        # A chain of two-way conds, one per group of ops that differ only in kernel size (one computation on
        # the chosen op's weights): exactly one is on and the others pass the previous value through, the
        # same gating as the ScaleNAS layers, in functions shared by the layers' groups of one config
        # (`common.gate_layers`). A 13-way `tf.switch_case` over the ops
        # compiles worse: each branch of a `Case`'s gradient returns a gradient for every input of the
        # `Case` (all 13 ops' weights), zeros for the other branches'. Measured back to back on
        # 2026-12-03, `bin/benchmark.py --what=compile --config=configs/scarlet.py:cpu`: first step
        # 149.4 s vs 98.3 s here, 131.9k vs 85.2k ops in all, peak RSS 5.00 vs 3.47 GB; its step, 16
        # calls interleaved in one process with this chain's, 149 vs 157 ms (median).
        known = common.static_value(choice)
        if known is not None:  # a fixed arch: run the chosen op, no conds
            if int(known) not in self.choice_ids:
                raise ValueError(f"{self.name}: choice id {int(known)} is not one of this layer's {self.choice_ids}")
            op = self.ops[self.choice_ids.index(int(known))]
            return op(inputs, training=training) if op is not None else tf.identity(inputs)
        choice = tf.cast(choice, tf.int32)
        shape = tf.shape(inputs)
        s = self.strides
        y = tf.zeros(tf.stack([shape[0], (shape[1] + s - 1) // s, (shape[2] + s - 1) // s, self.filters]), inputs.dtype)
        position = tf.gather(self._table([p for members in self.groups for p in range(len(members))]), choice)
        group_of = tf.gather(self._table([g for g, members in enumerate(self.groups) for _ in members]), choice)
        for g, members in enumerate(self.groups):
            ops = [self.ops[c] for c in members]
            y = common.gate_layers(
                tf.equal(group_of, g),
                [op for op in ops if op is not None],
                lambda layers, x, position, y: _run(layers or [None], x, position, training),
                lambda x, position, y: y,
                (inputs, position, y),
                key=(training,),
            )
        return y

    def _table(self, values_in_group_order):
        """Int table from choice id to `values_in_group_order[k]`, k the choice's place in `groups` order."""
        order = [c for members in self.groups for c in members]
        table = [-1] * (max(self.choice_ids) + 1)
        for c, value in zip(order, values_in_group_order):
            table[self.choice_ids[c]] = value
        return tf.constant(table, tf.int32)

    def gated_layers(self, choice):
        """`(op, on)` for every op with weights; `on` is true when `choice` selects it."""
        choice = tf.cast(tf.convert_to_tensor(choice), tf.int32)
        return [(op, tf.equal(choice, i)) for op, i in zip(self.ops, self.choice_ids) if op is not None]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "in_channels": self.in_channels,
                "filters": self.filters,
                "strides": self.strides,
                "choices": self.choices,
                "choice_ids": self.choice_ids,
                "activation": self.activation,
                "identity_op": self.identity_op,
            }
        )
        return config


def _run(ops, inputs, position, training):
    """The chosen op of a group (`position` within it); None is the plain skip."""
    if ops[0] is None:
        return tf.identity(inputs)
    if len(ops) == 1:
        return ops[0](inputs, training=training)
    return ops[0](inputs, training=training, group=ops, index=position)


def slug(name):
    """A choice name usable in layer names: `"K5E6+SE"` -> `"k5e6se"`, `"id"` -> `"id"`."""
    return name.replace("+", "").lower() if name != IDENTITY else IDENTITY

"""`common.gate_layers`: layers of one config share one traced cond function, and compute what `common.gate` does."""

import keras
import numpy as np
import tensorflow as tf

from scalenas_tf.layers import common


class ConvBN(keras.layers.Layer):
    """A conv, a `SupernetBatchNorm` and a ReLU: trainable weights and written statistics."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv = common.conv2d(filters, 3, name=f"{self.name}_conv")
        self.bn = common.batch_norm(f"{self.name}_bn")

    def build(self, input_shape):
        self.conv.build(common.channels_shape(self.filters))
        self.bn.build(common.channels_shape(self.filters))

    def call(self, x, training=None):
        return keras.ops.relu(self.bn(self.conv(x), training=training))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def make_layers(seed):
    keras.utils.set_random_seed(seed)
    layers = [ConvBN(4, name=f"block{i}") for i in range(3)]
    for i, layer in enumerate(layers):
        layer.build(None)
        layer.bn.moving_mean.assign(np.full(4, 0.1 * i, "float32"))
    return layers


def gated_step(layers, x, shared):
    variables = [v for layer in layers for v in layer.trainable_variables]

    @tf.function(autograph=False)
    def step(on):
        with tf.GradientTape() as tape:
            y = x
            for k, layer in enumerate(layers):
                if shared:
                    y = common.gate_layers(
                        on[k], layer, lambda ls, y: ls[0](y, training=True) + y, lambda y: y, (y,), key=(True,)
                    )
                else:
                    y = common.gate(on[k], lambda layer=layer, y=y: layer(y, training=True) + y, lambda y=y: y)
            loss = tf.reduce_sum(y * y)
        return y, tape.gradient(loss, variables)

    return step


def test_shared_gates_compute_the_conds_bits_and_trace_once():
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32"))
    on = tf.constant([True, False, True])
    results = []
    for shared in (True, False):
        layers = make_layers(seed=1)
        stats = [[v.numpy().copy() for v in layer.non_trainable_variables] for layer in layers]
        step = gated_step(layers, x, shared)
        y, grads = step(on)
        results.append((y.numpy(), [g.numpy() for g in grads], [v.numpy() for ly in layers for v in ly.variables]))
        # The skipped layer: zero gradients, statistics untouched; the others' statistics moved.
        skipped = layers[1]
        for v, before in zip(skipped.non_trainable_variables, stats[1]):
            np.testing.assert_array_equal(v.numpy(), before)
        assert all(np.any(v.numpy() != s) for v, s in zip(layers[0].non_trainable_variables, stats[0]))
        assert all(not np.any(g.numpy()) for g in grads[3:6])
        assert all(np.any(g.numpy()) for g in grads[:3] + grads[6:])
        names = [f.signature.name for f in step.get_concrete_function(on).graph.as_graph_def().library.function]
        traced = [n for n in names if n.startswith("__inference_gated")]
        assert len(traced) == (1 if shared else 0), names
    (y0, g0, v0), (y1, g1, v1) = results
    np.testing.assert_array_equal(y0, y1)
    for a, b in zip(g0 + v0, g1 + v1):
        np.testing.assert_array_equal(a, b)


def test_layers_of_another_config_or_key_trace_their_own_function():
    keras.utils.set_random_seed(0)
    layers = [ConvBN(4, name="a"), ConvBN(4, name="b"), ConvBN(8, name="c")]
    for layer in layers:
        layer.build(None)
    x4 = tf.zeros((1, 4, 4, 4))
    x8 = tf.zeros((1, 4, 4, 8))

    @tf.function(autograph=False)
    def step(on):
        ys = [
            common.gate_layers(on, layers[0], lambda ls, x: ls[0](x, training=True), lambda x: x, (x4,), key=(True,)),
            common.gate_layers(on, layers[1], lambda ls, x: ls[0](x, training=False), lambda x: x, (x4,), key=(False,)),
            common.gate_layers(on, layers[2], lambda ls, x: ls[0](x, training=True), lambda x: x, (x8,), key=(True,)),
        ]
        return ys

    library = step.get_concrete_function(tf.constant(True)).graph.as_graph_def().library
    names = [f.signature.name for f in library.function]
    assert len([n for n in names if n.startswith("__inference_gated")]) == 3, names


def test_a_known_gate_or_eager_call_runs_in_python():
    keras.utils.set_random_seed(0)
    layer = ConvBN(4, name="eager")
    layer.build(None)
    x = tf.ones((1, 4, 4, 4))

    def run(ls, x):
        return ls[0](x, training=False)

    np.testing.assert_array_equal(
        common.gate_layers(tf.constant(True), layer, run, lambda x: x, (x,)).numpy(), layer(x, training=False).numpy()
    )
    np.testing.assert_array_equal(common.gate_layers(tf.constant(False), layer, run, lambda x: x, (x,)).numpy(), x)

    @tf.function(autograph=False)
    def known():
        return common.gate_layers(False, layer, run, lambda x: x, (x,))

    graph = known.get_concrete_function().graph
    assert not [op for op in graph.get_operations() if op.type in ("If", "StatelessIf", "PartitionedCall")]


def test_a_known_true_gate_shares_its_computation_with_no_cond():
    """A fixed arch's layers (e.g. the in-place teacher's) run through one shared function without a cond: the same
    bits (outputs, gradients, BN statistics) as calling the layers inline."""
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32"))
    results = []
    for shared in (True, False):
        layers = make_layers(seed=1)
        variables = [v for layer in layers for v in layer.trainable_variables]

        @tf.function(autograph=False)
        def step():
            with tf.GradientTape() as tape:
                y = x
                for layer in layers:
                    if shared:
                        y = common.gate_layers(
                            True, layer, lambda ls, y: ls[0](y, training=True) + y, lambda y: y, (y,)
                        )
                    else:
                        y = layer(y, training=True) + y
                loss = tf.reduce_sum(y * y)
            return y, tape.gradient(loss, variables)

        y, grads = step()
        results.append((y.numpy(), [g.numpy() for g in grads], [v.numpy() for ly in layers for v in ly.variables]))
        graph_def = step.get_concrete_function().graph.as_graph_def()
        names = [f.signature.name for f in graph_def.library.function]
        types = [node.op for f in graph_def.library.function for node in f.node_def] + [n.op for n in graph_def.node]
        assert len([n for n in names if n.startswith("__inference_gated")]) == (1 if shared else 0), names
        assert not [t for t in types if t in ("If", "StatelessIf")]
    (y0, g0, v0), (y1, g1, v1) = results
    np.testing.assert_array_equal(y0, y1)
    for a, b in zip(g0 + v0, g1 + v1):
        np.testing.assert_array_equal(a, b)


def test_each_traced_function_traces_its_own_shared_functions():
    """A second trace does not reuse the first's functions: they hold what was true when they traced (here BN's
    momentum, read while tracing)."""
    layers = make_layers(seed=2)
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 6, 6, 4)).astype("float32"))

    def traced():
        @tf.function(autograph=False)
        def step(on):
            return common.gate_layers(on, layers[0], lambda ls, y: ls[0](y, training=True), lambda y: y, (x,))

        return step

    traced()(tf.constant(True))
    layers[0].bn.momentum = 0.0  # the next trace stores the batch's statistics
    traced()(tf.constant(True))
    batch_mean = tf.reduce_mean(layers[0].conv(x), axis=(0, 1, 2))
    np.testing.assert_allclose(layers[0].bn.moving_mean.numpy(), batch_mean.numpy(), rtol=1e-5, atol=1e-6)

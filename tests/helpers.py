"""Test helpers: non-trivial BN statistics (so that a wrong weight copy cannot hide), a small ScaleNet space."""

import keras
import numpy as np
import tensorflow as tf

from scalenas_tf.families.scalenet.space import ScaleNetSpace

# Two blocks at most in stages 2-3 (depth slots 2 * 1.5 = 3), three scaling stages.
SMALL_SCALENET_SPACE = ScaleNetSpace(
    stem_channels=8,
    stage_channels=(8, 8, 16, 16, 16, 24, 24),
    max_blocks=(1, 2, 2, 1, 1, 1, 1),
    head_channels=32,
    depth_multipliers=((1.0,), (1.2,), (1.5,)),
    width_multipliers=((1.0,), (1.25,), (1.5,)),
    resolutions=((32,), (36, 40), (44,)),
    resolution_multipliers=((1.0,), (1.125, 1.25), (1.375,)),
    base_resolution=32,
)


def _batch_norms(model):
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def randomize_batch_norm(model, seed=0, images=None):
    """Random gamma and beta; moving statistics random, or (given `images`) set from one training pass.

    Setting the statistics from the batch (momentum 0 for one largest-arch pass) keeps activations of
    a deep random network O(1), so float32 comparisons at 1e-5 test the copy, not overflow.
    """
    rng = np.random.default_rng(seed)
    norms = _batch_norms(model)
    for layer in norms:
        c = layer.gamma.shape[0]
        layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
        layer.beta.assign(rng.normal(0, 0.1, c).astype("float32"))
        layer.moving_mean.assign(rng.normal(0, 0.1, c).astype("float32"))
        layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
    if images is not None:
        momenta = [layer.momentum for layer in norms]
        for layer in norms:
            layer.momentum = 0.0
        model(images, training=True)
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def assert_group_call_is_the_chosen_ops_call(new_ops, x, **call_kwargs):
    """For every index, a group call `ops[0](x, group=ops, index=i, training=True)` equals calling op i alone bit
    for bit: the output, every gradient (zeros for the ops not chosen), and the BN statistics (op i's moved as
    its own call moves them, the others' unchanged). `new_ops()` returns unbuilt ops; each use gets a fresh,
    identical set (same seed, distinct random BN statistics per op). `call_kwargs`: other call arguments."""

    def make_ops():
        keras.utils.set_random_seed(7)
        ops = new_ops()
        for k, op in enumerate(ops):
            op.build()
            randomize_batch_norm(op, seed=7 + k)
        return ops

    @tf.function(autograph=False)
    def run(ops, index):
        with tf.GradientTape() as tape:
            group = {} if index is None else {"group": ops, "index": index}
            y = ops[0](x, training=True, **call_kwargs, **group)
            loss = tf.reduce_sum(y * tf.sin(y))
        variables = [v for op in ops for v in op.trainable_variables]
        return y, tape.gradient(loss, variables, unconnected_gradients="zero")

    for index in range(len(make_ops())):
        grouped, alone, initial = make_ops(), make_ops(), make_ops()
        got, got_grads = run(grouped, tf.constant(index))
        want, want_grads = run([alone[index]], None)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        per_op = len(alone[index].trainable_variables)
        for j, op in enumerate(grouped):
            for g, w, v in zip(got_grads[j * per_op : (j + 1) * per_op], want_grads, op.trainable_variables):
                np.testing.assert_array_equal(g.numpy(), w.numpy() if j == index else 0.0, err_msg=v.path)
            expected = alone[index] if j == index else initial[j]
            for mine, theirs in zip(op.non_trainable_variables, expected.non_trainable_variables):
                np.testing.assert_array_equal(np.array(mine), np.array(theirs), err_msg=mine.path)
        moved = [
            np.any(np.array(a) != np.array(b))
            for a, b in zip(alone[index].non_trainable_variables, initial[index].non_trainable_variables)
        ]
        assert all(moved), "the chosen op's BN statistics did not move"

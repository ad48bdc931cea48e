"""`SupernetBatchNorm`'s fused training pass."""

import numpy as np
import tensorflow as tf

from scalenas_tf.layers import common


def test_float32_training_pass_has_v3s_bits_and_leaves_no_unused_zeros():
    """float32 runs `FusedBatchNorm`: output, moving statistics and gradients equal `FusedBatchNormV3`'s bit for
    bit, and the tape's gradient makes no zeros constant that nothing reads (it makes four per `V3` op)."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(4, 9, 7, 24)).astype(np.float32) * 3 + 1)
    dy = tf.constant(rng.normal(size=x.shape).astype(np.float32))
    bn = common.batch_norm("bn_bits", 0.9)
    bn.build(x.shape)
    for v in bn.weights:
        v.assign(rng.uniform(0.5, 2.0, size=v.shape).astype(np.float32))
    stats = [v.numpy() for v in (bn.moving_mean, bn.moving_variance)]
    gamma, beta = tf.constant(bn.gamma.numpy()), tf.constant(bn.beta.numpy())

    @tf.function(autograph=False)
    def layer_step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(bn(x, training=True) * dy)
        return [loss, *tape.gradient(loss, [x, bn.gamma, bn.beta]), bn.moving_mean + 0.0, bn.moving_variance + 0.0]

    @tf.function(autograph=False)
    def v3_step():
        with tf.GradientTape() as tape:
            tape.watch([x, gamma, beta])
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x,
                gamma,
                beta,
                mean=stats[0],
                variance=stats[1],
                epsilon=bn.epsilon,
                is_training=True,
                exponential_avg_factor=1.0 - bn.momentum,
            )
            loss = tf.reduce_sum(y * dy)
        return [loss, *tape.gradient(loss, [x, gamma, beta]), mean, variance]

    graph = layer_step.get_concrete_function().graph
    read = {name.split(":")[0].lstrip("^") for op in graph.get_operations() for name in op.node_def.input}
    unused_zeros = [op.name for op in graph.get_operations() if op.type == "Const" and op.name.startswith("zeros")]
    assert not [name for name in unused_zeros if name not in read]
    assert "FusedBatchNorm" in {op.type for op in graph.get_operations()}
    got = layer_step()
    want = v3_step()
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(bn.moving_mean.numpy(), stats[0])

"""gradient_tracing: the indexed reachability walk reaches what TF's does, and is in place only while tracing."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import gradients_util

from scalenas_tf.families.scalenas.samplers import UniformSampler
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.families.scalenas.supernet import ScaleNASSupernet
from scalenas_tf.training import gradient_tracing
from scalenas_tf.training.trainer import SupernetTrainer

KERNELS = [np.random.default_rng(i).normal(size=(3, 3, 4, 4)).astype("float32") * 0.3 for i in range(3)]


def gated_convs(variables):
    """A function that builds cond gradients over captured variables, as a supernet's step does."""

    @tf.function(autograph=False)
    def step(x, on):
        with tf.GradientTape() as tape:
            y = x
            for i, w in enumerate(variables):
                y = tf.cond(on[i], lambda y=y, w=w: tf.nn.relu(tf.nn.conv2d(y, w, 1, "SAME")) + y, lambda y=y: y)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, variables)

    return step


def test_walk_reaches_the_same_ops_as_tfs(monkeypatch):
    original, calls = gradients_util._MarkReachedOps, []

    def both(from_ops, reached_ops, func_graphs):
        theirs, ours = set(reached_ops), set(reached_ops)
        original(from_ops, theirs, func_graphs)
        gradient_tracing.mark_reached_ops(from_ops, ours, func_graphs)
        assert ours == theirs
        calls.append((len(theirs), sum(len(gradients_util._Captures(g)) for g in func_graphs)))
        reached_ops.update(theirs)

    monkeypatch.setattr(gradients_util, "_MarkReachedOps", both)
    variables = [tf.Variable(k) for k in KERNELS]
    gated_convs(variables).get_concrete_function(tf.TensorSpec((2, 8, 8, 4)), tf.TensorSpec((3,), tf.bool))
    # The tape's gradient and one per cond branch, walking graphs that capture the variables and inputs.
    assert len(calls) >= 4, calls
    assert any(reached > 5 and captures > 3 for reached, captures in calls), calls


def test_gradients_are_bit_identical_and_tfs_walk_is_back_after_the_context():
    original = gradients_util._MarkReachedOps
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32"))
    on = tf.constant([True, False, True])
    plain = [g.numpy() for g in gated_convs([tf.Variable(k) for k in KERNELS])(x, on)]
    with gradient_tracing.indexed_gradient_walk():
        with gradient_tracing.indexed_gradient_walk():  # reentrant
            assert gradients_util._MarkReachedOps is gradient_tracing.mark_reached_ops
        assert gradients_util._MarkReachedOps is gradient_tracing.mark_reached_ops
        indexed = [g.numpy() for g in gated_convs([tf.Variable(k) for k in KERNELS])(x, on)]
    assert gradients_util._MarkReachedOps is original
    assert np.abs(plain[1]).max() == 0.0 and np.abs(plain[0]).max() > 0.0  # the skipped block gets no gradient
    for a, b in zip(plain, indexed):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RuntimeError), gradient_tracing.indexed_gradient_walk():
        raise RuntimeError("restored on errors too")
    assert gradients_util._MarkReachedOps is original


def test_the_train_step_traces_with_the_indexed_walk(monkeypatch):
    walks, indexed = [], gradient_tracing.mark_reached_ops

    def counting(from_ops, reached_ops, func_graphs):
        walks.append(len(from_ops))
        return indexed(from_ops, reached_ops, func_graphs)

    monkeypatch.setattr(gradient_tracing, "mark_reached_ops", counting)
    space = ScaleNASSpace(
        width=4, depth_choices=(1, 2), num_modules=(1,), num_branches=(2,), stem_channels=8, layer1_blocks=1
    )
    net = ScaleNASSupernet(space, task="seg", num_classes=3)
    net.build((None, None, None, 3))
    trainer = SupernetTrainer(net, sampler=UniformSampler(space, seed=0))
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    images, masks = tf.zeros((2, 16, 16, 3)), tf.zeros((2, 16, 16), tf.int32)
    tf.function(trainer.train_step, autograph=False).get_concrete_function((images, masks))
    assert len(walks) > 3, walks

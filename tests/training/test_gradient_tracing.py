"""gradient_tracing: the indexed reachability walk reaches what TF's does, and is in place only while tracing;
cond gradients with direct intermediates compute the same bits with fewer ops."""

import collections
import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.eager import context
from tensorflow.python.framework import ops
from tensorflow.python.ops import cond_v2
from tensorflow.python.ops import gradients_util

from scalenas_tf.families.scalenas.samplers import UniformSampler
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.families.scalenas.supernet import ScaleNASSupernet
from scalenas_tf.families.scalenet.samplers import HierarchicalSampler
from scalenas_tf.families.scalenet.supernet import ScaleNetSupernet
from scalenas_tf.training import gradient_tracing
from scalenas_tf.training.trainer import SupernetTrainer
from tests.helpers import SMALL_SCALENET_SPACE

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


def gated_switch_cases(variables):
    """A function whose cond branches each hold a `tf.switch_case` over the variables, as ScaleNet's slots do."""

    @tf.function(autograph=False)
    def step(x, on, choice):
        with tf.GradientTape() as tape:
            y = x
            for i in range(2):

                def run(y=y, i=i):
                    z = tf.nn.relu(y)  # an intermediate of the If that the Case's gradient captures
                    branches = [lambda w=w: tf.nn.relu(tf.nn.conv2d(z, w, 1, "SAME")) + y for w in variables]
                    return tf.switch_case(choice[i], branches)

                y = tf.cond(on[i], run, lambda y=y: y)
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


def library_op_types(concrete_function):
    """Op type counts over the functions of `concrete_function`'s graph (cond branches and their gradients)."""
    library = concrete_function.graph.as_graph_def().library.function
    counts = {}
    for function in library:
        for node in function.node_def:
            counts[node.op] = counts.get(node.op, 0) + 1
    return counts


def branch_op_types(concrete_function, op_type):
    """Op type counts over the branch functions of the `op_type` ops ("If" or "Case", stateless or not) in
    `concrete_function`'s graph and its functions."""
    graph_def = concrete_function.graph.as_graph_def()
    library = {function.signature.name: function for function in graph_def.library.function}
    nodes = list(graph_def.node) + [node for function in library.values() for node in function.node_def]
    names = set()
    for node in nodes:
        if node.op in (op_type, "Stateless" + op_type):
            for key in ("then_branch", "else_branch"):
                if key in node.attr:
                    names.add(node.attr[key].func.name)
            names.update(f.name for f in node.attr["branches"].list.func)
    counts = collections.Counter()
    for name in names:
        counts.update(node.op for node in library[name].node_def)
    return counts


def fake_param_shapes(concrete_function):
    """The traced shapes (-1 or 0 where unknown) of the `FakeParam` ops in `concrete_function`'s functions."""
    library = concrete_function.graph.as_graph_def().library.function
    return [
        [d.size for d in node.attr["shape"].shape.dim]
        for function in library
        for node in function.node_def
        if node.op == "FakeParam"
    ]


def test_direct_intermediates_give_the_same_gradients_with_fewer_ops():
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 8, 8, 4)).astype("float32"))
    specs = (tf.TensorSpec((2, 8, 8, 4)), tf.TensorSpec((3,), tf.bool))
    wrapped_before, fakeparams_before = context.optionals_in_gradients_enabled(), cond_v2._create_fakeparams
    plain = gated_convs([tf.Variable(k) for k in KERNELS])
    plain_ops = library_op_types(plain.get_concrete_function(*specs))
    with gradient_tracing.direct_cond_intermediates():
        with gradient_tracing.direct_cond_intermediates():  # reentrant
            assert not context.optionals_in_gradients_enabled()
        assert not context.optionals_in_gradients_enabled()
        assert cond_v2._create_fakeparams is gradient_tracing.empty_fakeparams
        direct = gated_convs([tf.Variable(k) for k in KERNELS])
        direct_function = direct.get_concrete_function(*specs)
        direct_ops = library_op_types(direct_function)
    assert fake_param_shapes(direct_function) and all(shape[0] == 0 for shape in fake_param_shapes(direct_function))
    assert context.optionals_in_gradients_enabled() == wrapped_before
    assert cond_v2._create_fakeparams is fakeparams_before
    assert plain_ops.get("OptionalFromValue", 0) > 0 and plain_ops.get("OptionalGetValue", 0) > 0
    assert "OptionalFromValue" not in direct_ops and "OptionalGetValue" not in direct_ops
    assert direct_ops.get("FakeParam", 0) > 0
    assert sum(direct_ops.values()) < sum(plain_ops.values())
    for on in ([True, False, True], [False, True, False], [True, True, True], [False, False, False]):
        on = tf.constant(on)
        for a, b in zip(plain(x, on), direct(x, on)):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(RuntimeError), gradient_tracing.direct_cond_intermediates():
        raise RuntimeError("restored on errors too")
    assert context.optionals_in_gradients_enabled() == wrapped_before
    assert cond_v2._create_fakeparams is fakeparams_before


def test_case_gradients_keep_their_optionals_inside_the_context():
    """In the direct form a `Case` outputs every branch's intermediates, each with a `FakeParam` in the other
    branches (ScaleNet compiled in 0.42 GB more), so its gradient keeps TF's optionals while the `If`s around it
    take their intermediates directly: the same gradients, for every gate and choice."""
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 8, 8, 4)).astype("float32"))
    specs = (tf.TensorSpec((2, 8, 8, 4)), tf.TensorSpec((2,), tf.bool), tf.TensorSpec((2,), tf.int32))
    registered = {t: ops._gradient_registry.lookup(t) for t in ("If", "StatelessIf", "Case", "StatelessCase")}
    capture_helper = cond_v2._CondGradFuncGraph._capture_helper
    plain = gated_switch_cases([tf.Variable(k) for k in KERNELS])
    plain_ops = library_op_types(plain.get_concrete_function(*specs))
    with gradient_tracing.direct_cond_intermediates():
        assert all(ops._gradient_registry.lookup(t) is not g for t, g in registered.items())
        direct = gated_switch_cases([tf.Variable(k) for k in KERNELS])
        direct_function = direct.get_concrete_function(*specs)
        direct_ops = library_op_types(direct_function)
        assert not context.optionals_in_gradients_enabled()  # the Case gradients set them back
    assert {t: ops._gradient_registry.lookup(t) for t in registered} == registered
    assert cond_v2._CondGradFuncGraph._capture_helper is capture_helper
    # The forward Cases' branches wrap their intermediates, the forward Ifs' branches output theirs directly.
    assert direct_ops["OptionalFromValue"] == branch_op_types(direct_function, "Case")["OptionalFromValue"] > 0
    assert "FakeParam" not in branch_op_types(direct_function, "Case")
    assert branch_op_types(direct_function, "If")["FakeParam"] > 0
    assert plain_ops["OptionalFromValue"] > direct_ops["OptionalFromValue"]  # there the Ifs' are wrapped too
    assert direct_ops.get("FakeParam", 0) > 0
    for on in ([True, False], [False, True], [True, True], [False, False]):
        for choice in ([0, 2], [1, 1], [2, 0]):
            args = (x, tf.constant(on), tf.constant(choice))
            for a, b in zip(plain(*args), direct(*args)):
                np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(RuntimeError), gradient_tracing.direct_cond_intermediates():
        raise RuntimeError("restored on errors too")
    assert {t: ops._gradient_registry.lookup(t) for t in registered} == registered
    assert cond_v2._CondGradFuncGraph._capture_helper is capture_helper


def test_train_steps_are_bit_identical_with_direct_intermediates(monkeypatch):
    """Adam steps of random subnets (slots skipped and run) give the same weights, slots and BN statistics whether
    the cond gradients take their intermediates directly (the trainer's default) or wrapped. ScaleNet's slots are
    conds of the train step; ScaleNAS's and SCARLET's gates run in shared functions (`common.gate_layers`), whose
    conds TF builds with their intermediates up front either way."""
    space = SMALL_SCALENET_SPACE
    rng = np.random.default_rng(3)
    images = tf.constant(rng.normal(size=(2, 40, 40, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, 5, size=(2,)).astype("int32"))
    weights = None
    results = []
    for direct in (True, False):
        if not direct:
            monkeypatch.setattr(gradient_tracing, "direct_cond_intermediates", contextlib.nullcontext)
        net = ScaleNetSupernet(space, num_classes=5)
        net.build()
        if weights is None:
            weights = net.get_weights()
        net.set_weights(weights)
        trainer = SupernetTrainer(net, sampler=HierarchicalSampler(space, seed=5))
        trainer.compile(optimizer=keras.optimizers.Adam(0.01))
        step = tf.function(trainer.train_step, autograph=False)
        ops = library_op_types(step.get_concrete_function((images, labels)))
        assert ("FakeParam" in ops) == direct, ops.get("FakeParam")
        if direct:  # traced with a known batch of 2, yet every FakeParam's buffer is empty
            shapes = fake_param_shapes(step.get_concrete_function((images, labels)))
            assert any(len(shape) == 4 for shape in shapes), shapes
            assert all(shape[0] == 0 for shape in shapes if shape), [shape for shape in shapes if shape[0]]
        losses = [float(step((images, labels))["loss"]) for _ in range(6)]
        results.append((losses, [v.numpy() for v in net.variables + trainer.optimizer.variables]))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)

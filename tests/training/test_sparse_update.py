"""The fast update path replays Keras's optimizers exactly: same weights and slots, bit for bit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.training import sparse_update


def _optimizer(name):
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, 50, warmup_target=None)
    return {
        "adam": lambda: keras.optimizers.Adam(schedule),
        "adamw": lambda: keras.optimizers.AdamW(1e-3, weight_decay=0.05),
        "sgd": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        "sgd_nesterov": lambda: keras.optimizers.SGD(schedule, momentum=0.8, nesterov=True, weight_decay=1e-2),
        "sgd_plain": lambda: keras.optimizers.SGD(0.05),
        "adam_amsgrad": lambda: keras.optimizers.Adam(1e-3, amsgrad=True),
        "adam_clipnorm": lambda: keras.optimizers.Adam(1e-3, global_clipnorm=0.1),
    }[name]()


def _apply_graph(optimizer, shape, count):
    """The graph of `apply_gradients` over `count` ungated zero variables of `shape`, traced once."""
    variables = [keras.Variable(np.zeros(shape, "float32")) for _ in range(count)]
    optimizer.build(variables)
    fn = tf.function(lambda gs: sparse_update.apply_gradients(optimizer, gs, variables, [], sparse=True))
    return fn.get_concrete_function([tf.TensorSpec(shape, tf.float32)] * count).graph


class _Layer:
    """What `apply_gradients` reads of a gated layer."""

    def __init__(self, variables):
        self.trainable_variables = variables


def _run(name, fast, steps=6, gated=False):
    rng = np.random.default_rng(0)
    # Shapes repeat, so the ungated ones are updated stacked (`_update_stacked`); (7,) is alone in its shape.
    shapes = ((3, 3, 4, 4), (4,), (7,), (3, 3, 4, 4), (4,), (4,), (3, 3, 4, 4))
    variables = [keras.Variable(rng.normal(size=shape).astype("float32")) for shape in shapes]
    optimizer = _optimizer(name)
    optimizer.build(variables)
    grads = [[tf.constant(rng.normal(size=v.shape).astype("float32")) for v in variables] for _ in range(steps)]

    @tf.function
    def step(gs, on):
        if fast:
            layers = [(_Layer(variables[:2]), on)] if gated else []
            sparse_update.apply_gradients(optimizer, gs, variables, gated_layers=layers, sparse=True)
        else:
            optimizer.apply(gs, variables)

    for gs in grads:
        step(gs, tf.constant(True))
    return [v.numpy() for v in variables] + [s.numpy() for s in optimizer.variables]


@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "sgd_nesterov", "sgd_plain", "adam_clipnorm", "adam_amsgrad"])
def test_fast_path_equals_keras_apply_bit_for_bit(name, gated):
    """Ungated variables are updated stacked by shape (or written out, alone in their shape); a gated layer's
    (gate on) in a functional cond, by calls of the traced update: all give Keras's bits."""
    fast, keras_ref = _run(name, fast=True, gated=gated), _run(name, fast=False)
    assert len(fast) == len(keras_ref)
    for got, want in zip(fast, keras_ref):
        np.testing.assert_array_equal(got, want)


def test_adam_scalars_are_computed_once_per_step():
    """The reason for the hoisting: the graph holds two `Pow` ops per step, not two per variable."""
    graph = _apply_graph(keras.optimizers.Adam(1e-3), (2, 2), 20)
    assert sum(op.type == "Pow" for op in graph.get_operations()) == 2


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_update_constants_are_built_once_per_step(name):
    """Keras's update creates its constants (`1 - beta_1`, the momentum, ...) per variable; the fast path once."""

    def constants(count):
        graph = _apply_graph(_optimizer(name), (2, 2), count)
        return sum(op.type == "Const" for op in graph.get_operations())

    assert constants(1) == constants(20)


def test_missing_gradients_are_skipped_like_keras():
    variables = [keras.Variable(np.ones((2,), "float32")), keras.Variable(np.ones((2,), "float32"))]
    optimizer = keras.optimizers.SGD(0.5)
    optimizer.build(variables)
    sparse_update.apply_gradients(optimizer, [tf.ones((2,)), None], variables, [], sparse=True)
    np.testing.assert_array_equal(variables[0].numpy(), [0.5, 0.5])
    np.testing.assert_array_equal(variables[1].numpy(), [1.0, 1.0])


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "sgd_nesterov", "sgd_plain"])
def test_gated_layers_of_one_layout_share_one_branch_function(name):
    """A gated layer's update is one functional `If` op; every layer of the same layout (per variable: decayed,
    masked) calls the same two branch functions, whatever the variables' shapes."""

    def graph(count):
        variables = [keras.Variable(np.zeros((2, 2 + i % 3), "float32")) for i in range(2 * count + 1)]
        optimizer = _optimizer(name)
        optimizer.build(variables)
        layers = [_Layer(variables[1 + 2 * i : 3 + 2 * i]) for i in range(count)]
        fn = tf.function(
            lambda gs, ons: sparse_update.apply_gradients(
                optimizer, gs, variables, [(layer, ons[i]) for i, layer in enumerate(layers)]
            )
        )
        specs = [tf.TensorSpec(v.shape, tf.float32) for v in variables]
        return fn.get_concrete_function(specs, tf.TensorSpec([count], tf.bool)).graph.as_graph_def()

    def ifs(graph_def):
        return [n for n in graph_def.node if n.op in ("If", "StatelessIf")]

    def size(graph_def):
        return len(graph_def.node) + sum(len(f.node_def) for f in graph_def.library.function)

    small, large = graph(1), graph(21)
    assert len(ifs(large)) == 21
    assert len({(n.attr["then_branch"].func.name, n.attr["else_branch"].func.name) for n in ifs(large)}) == 1
    assert all(not n.attr["_lower_using_switch_merge"].b for n in ifs(large))  # functional
    assert len(large.library.function) == len(small.library.function)
    per_layer = (size(large) - size(small)) / 20
    # Per variable (two per layer here) its gradient and the handles of it and its slots, captured; per layer the
    # `If` and the gate's slice (4 ops). A `tf.cond` per layer, with a call of a traced update per variable in
    # its branch, measured 21 (Adam), 33 (AdamW), 19 (SGD), 29 (Nesterov SGD with decay), 19 (plain SGD).
    bound = {"adam": 13, "adamw": 13, "sgd": 11, "sgd_nesterov": 11, "sgd_plain": 9}[name]
    assert per_layer <= bound, per_layer


def _run_gated(name, fast, gated, pattern):
    """Steps with the layer of the variables `gated` on or off as `pattern` says. Off, the reference applies Keras's
    optimizer to the other variables only (the step count still advances, as in the trainer's step)."""
    rng = np.random.default_rng(1)
    shapes = ((3, 3, 4, 4), (4,), (7,), (3, 3, 4, 4), (4,), (4,), (3, 3, 4, 4))
    variables = [keras.Variable(rng.normal(size=shape).astype("float32")) for shape in shapes]
    optimizer = _optimizer(name)
    optimizer.build(variables)
    others = [i for i in range(len(variables)) if i not in gated]

    @tf.function
    def step(gs, on):
        layers = [(_Layer([variables[i] for i in gated]), on)]
        sparse_update.apply_gradients(optimizer, gs, variables, gated_layers=layers, sparse=True)

    @tf.function
    def reference(gs, on):
        if on:
            optimizer.apply(gs, variables)
        else:
            optimizer.apply([gs[i] for i in others], [variables[i] for i in others])

    states = []
    for on in pattern:
        gs = [tf.constant(rng.normal(size=v.shape).astype("float32")) for v in variables]
        if not on:  # a layer the step did not run gets zero gradients (its cond's untaken branch)
            gs = [tf.zeros_like(g) if i in gated else g for i, g in enumerate(gs)]
        if fast:
            step(gs, tf.constant(on))
        else:
            reference(gs, on)
        states.append([v.numpy() for v in variables] + [s.numpy() for s in optimizer.variables])
    return states


@pytest.mark.parametrize("gated", [(0, 1), (2,), (0, 2, 3, 6)], ids=["two", "one", "four"])
@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "sgd_nesterov", "sgd_plain"])
def test_a_gated_layer_updates_as_keras_when_on_and_not_at_all_when_off(name, gated):
    """On, the gated variables get Keras's bits; off, they and their slots keep theirs."""
    pattern = (True, False, False, True, False, True)
    fast, keras_ref = _run_gated(name, True, gated, pattern), _run_gated(name, False, gated, pattern)
    for k, (got, want) in enumerate(zip(fast, keras_ref)):
        assert len(got) == len(want)
        for i, (a, b) in enumerate(zip(got, want)):
            np.testing.assert_array_equal(a, b, err_msg=f"step {k}, value {i}")
    # Not vacuous: while the gate was off (step 2), the gated variables stayed and the others moved.
    for i in range(len(fast[1])):
        if i < 7:
            assert np.array_equal(fast[1][i], fast[2][i]) == (i in gated), i


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "sgd_nesterov"])
def test_ungated_variables_of_one_shape_are_updated_stacked(name):
    """Their arithmetic is built once per shape: per variable only its reads and assigns remain."""

    def size(count):
        graph = _apply_graph(_optimizer(name), (2, 3), count)
        return len(graph.get_operations()), sum(op.type == "Pack" for op in graph.get_operations())

    (small, _), (large, packs) = size(2), size(22)
    per_variable = (large - small) / 20
    # the gradient, the captured handles of the variable and its slots, a read per slot and an assign per variable
    # and slot; weight decay (AdamW, the Nesterov SGD here) reads and assigns the variable once more. Written out
    # they measured 20 (Adam), 26 (AdamW), 10 (SGD) and 17 (Nesterov SGD with decay).
    bound = {"adam": 9, "adamw": 11, "sgd": 6, "sgd_nesterov": 8}[name]
    assert per_variable <= bound, per_variable
    assert packs >= 2


def test_large_variables_are_updated_one_by_one():
    """Stacking copies values in and out; above `_STACKED_MAX_ELEMENTS` per variable that costs more than the
    kernels it saves, so large variables keep the written-out update."""

    def packs(shape):
        graph = _apply_graph(keras.optimizers.Adam(1e-3), shape, 3)
        return sum(op.type == "Pack" for op in graph.get_operations())

    limit = sparse_update._STACKED_MAX_ELEMENTS
    assert packs((limit,)) == 3  # gradients, m, v
    assert packs((limit + 1,)) == 0


# === Stacked slots (`build_optimizer`) ===


def _run_stacked(name, stack, steps=6, missing=()):
    """Variables, then per variable its slot values, after `steps` updates; the gradient of the variables in
    `missing` is None on odd steps (as Keras, they are skipped then)."""
    rng = np.random.default_rng(0)
    shapes = ((3, 3, 4, 4), (4,), (7,), (3, 3, 4, 4), (4,), (4,), (3, 3, 4, 4))
    variables = [keras.Variable(rng.normal(size=shape).astype("float32")) for shape in shapes]
    optimizer = _optimizer(name)
    stacks = sparse_update.build_optimizer(optimizer, variables, stack=stack) if stack is not None else None
    if stack is None:
        optimizer.build(variables)
    grads = [[tf.constant(rng.normal(size=v.shape).astype("float32")) for v in variables] for _ in range(steps)]
    for k, gs in enumerate(grads):
        gs = [None if k % 2 and i in missing else g for i, g in enumerate(gs)]
        if stack is None:
            tf.function(lambda gs: optimizer.apply(gs, variables))(gs)
        else:
            tf.function(lambda gs: sparse_update.apply_gradients(optimizer, gs, variables, [], slot_stacks=stacks))(gs)
    slots = sparse_update.slot_map(optimizer, variables)
    per_variable = []
    for v in variables:
        stacked = stacks.slots_of(v) if stacks is not None else None
        per_variable.append([np.asarray(s) for s in (stacked if stacked is not None else slots[id(v)])])
    return [v.numpy() for v in variables], per_variable, optimizer, stacks


def _stacked(optimizer):
    return [v for v in optimizer.variables if "stacked_" in v.path]


@pytest.mark.parametrize("missing", [(), (0, 2, 4)], ids=["all", "some_missing"])
@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "sgd_nesterov", "adam_clipnorm"])
def test_stacked_slots_equal_keras_apply_bit_for_bit(name, missing):
    """Weights and every slot value as Keras's own `apply` with one slot per variable; a variable without a
    gradient (0 and 4 are in stacked groups, 2 alone in its shape) keeps its weights and its slot rows."""
    weights, slots, optimizer, stacks = _run_stacked(name, stack=True, missing=missing)
    want_weights, want_slots, reference, _ = _run_stacked(name, stack=None, missing=missing)
    # (3, 3, 4, 4) x 3 and (4,) x 3 are stacked; (7,) keeps its own slots
    assert [len(group.variables) for group in stacks.groups] == [3, 3]
    num_slots = {"adam": 2, "adamw": 2, "sgd": 1, "sgd_nesterov": 1, "adam_clipnorm": 2}[name]
    assert len(optimizer.variables) == len(reference.variables) - 4 * num_slots
    for got, want in zip(weights, want_weights):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(slots, want_slots):
        assert len(got) == len(want) == num_slots
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
            assert np.any(a != 0)  # trained: the comparison is not of zeros


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd_nesterov"])
def test_stacked_slots_leave_one_assign_per_variable(name):
    """With stacked slots a variable adds its captured handle, its gradient and its assign to the graph (weight
    decay: a read and an assign more): its slots are read and assigned once per group."""

    def size(count):
        variables = [keras.Variable(np.zeros((2, 3), "float32")) for _ in range(count)]
        optimizer = _optimizer(name)
        stacks = sparse_update.build_optimizer(optimizer, variables)
        assert len(_stacked(optimizer)) == {"adam": 2, "adamw": 2, "sgd_nesterov": 1}[name]
        assert not any(sparse_update.slot_map(optimizer, variables).values())
        fn = tf.function(lambda gs: sparse_update.apply_gradients(optimizer, gs, variables, [], slot_stacks=stacks))
        graph = fn.get_concrete_function([tf.TensorSpec((2, 3), tf.float32)] * count).graph
        return len(graph.get_operations())

    per_variable = (size(22) - size(2)) / 20
    assert per_variable <= {"adam": 3, "adamw": 5, "sgd_nesterov": 5}[name], per_variable


@pytest.mark.parametrize("name", ["sgd_plain", "adam_amsgrad"])
def test_slots_are_not_stacked_where_the_update_is_keras_own_or_has_no_slots(name):
    variables = [keras.Variable(np.zeros((2, 3), "float32")) for _ in range(3)]
    optimizer = _optimizer(name)
    assert sparse_update.build_optimizer(optimizer, variables) is None
    assert not _stacked(optimizer)
    slots = sparse_update.slot_map(optimizer, variables)
    assert [len(slots[id(v)]) for v in variables] == [{"sgd_plain": 0, "adam_amsgrad": 3}[name]] * 3


def test_slots_are_not_stacked_when_asked_not_to_or_under_a_strategy():
    variables = [keras.Variable(np.zeros((2, 3), "float32")) for _ in range(3)]
    optimizer = keras.optimizers.Adam(1e-3)
    assert sparse_update.build_optimizer(optimizer, variables, stack=False) is None
    assert not _stacked(optimizer)
    assert all(len(slots) == 2 for slots in sparse_update.slot_map(optimizer, variables).values())
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        variables = [keras.Variable(np.zeros((2, 3), "float32")) for _ in range(3)]
        optimizer = keras.optimizers.Adam(1e-3)
        assert sparse_update.build_optimizer(optimizer, variables) is None
        assert not _stacked(optimizer)
        assert all(len(slots) == 2 for slots in sparse_update.slot_map(optimizer, variables).values())


def test_a_built_optimizer_keeps_its_stacks():
    variables = [keras.Variable(np.zeros((2, 3), "float32")) for _ in range(3)]
    optimizer = keras.optimizers.Adam(1e-3)
    stacks = sparse_update.build_optimizer(optimizer, variables)
    count = len(optimizer.variables)
    assert sparse_update.build_optimizer(optimizer, variables) is stacks
    assert len(optimizer.variables) == count and len(_stacked(optimizer)) == 2


def test_stacked_slots_refuse_gates_and_masks():
    variables = [keras.Variable(np.zeros((2, 3), "float32")) for _ in range(3)]
    optimizer = keras.optimizers.Adam(1e-3)
    stacks = sparse_update.build_optimizer(optimizer, variables)
    grads = [tf.ones((2, 3))] * 3
    with pytest.raises(ValueError, match=r"updated every step.*gates or masks 2 of them"):
        sparse_update.apply_gradients(
            optimizer, grads, variables, [(_Layer(variables[:2]), tf.constant(True))], slot_stacks=stacks
        )
    with pytest.raises(ValueError, match=r"gates or masks 1 of them"):
        mask = [(variables[1], tf.ones((2, 3), tf.bool))]
        sparse_update.apply_gradients(optimizer, grads, variables, [], masks=mask, slot_stacks=stacks)
    # dense: gates and masks are ignored, so the stacks apply
    sparse_update.apply_gradients(
        optimizer, grads, variables, [(_Layer(variables[:2]), tf.constant(True))], sparse=False, slot_stacks=stacks
    )
    assert int(optimizer.iterations.numpy()) == 1

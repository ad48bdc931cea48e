"""SupernetTrainer: sparse updates, one compiled step, distillation, MirroredStrategy, BN recalibration.

Cost: every trainer traces its train step once (a few seconds for the tiny space below), so the
setups are module-scoped fixtures shared by several tests.

The space is the smallest one that still has everything the trainer gates: one module of two
branches with depth choices (1, 2), so block step 1 of each branch is gated, and four fusion edges
(two per step). Images are 16x16 (branches at 4x4 and 2x2).
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.data.pipeline import make_dataset
from scalenas_tf.families.scalenas.samplers import GroupedSampler
from scalenas_tf.families.scalenas.samplers import UniformSampler
from scalenas_tf.families.scalenas.space import ModuleArch
from scalenas_tf.families.scalenas.space import ScaleNASArch
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.families.scalenas.supernet import ScaleNASSupernet
from scalenas_tf.layers import common
from scalenas_tf.models.extraction import extract_subnet
from scalenas_tf.training import compile_stats
from scalenas_tf.training import losses
from scalenas_tf.training import sparse_update
from scalenas_tf.training.bn_calibration import BatchNormCalibrator
from scalenas_tf.training.sampler import FixedSampler
from scalenas_tf.training.sampler import SingleArchSampler
from scalenas_tf.training.sparse_update import slot_map
from scalenas_tf.training.trainer import SupernetTrainer

SPACE = ScaleNASSpace(
    width=4, depth_choices=(1, 2), num_modules=(1,), num_branches=(2,), stem_channels=8, layer1_blocks=1
)
NUM_CLASSES = 5
SIZE = (16, 16)
# Branch 0 runs both blocks and reads branch 1 at step 0; branch 1 runs one block and reads nothing.
# Gated layers: block (0, 1) and edge (target 0, step 0, source 1) run; block (1, 1) and the edges
# (0, 1, 1), (1, 0, 0) and (1, 1, 0) do not.
MIXED = ScaleNASArch((ModuleArch(depths=(2, 1), fusion=(((1, 1), (1, 0)), ((0, 1), (0, 0)))),))
SWITCH_STEP = 3  # steps with the largest arch (every layer and slot gets non-trivial values) ...
MIXED_STEPS = 5  # ... then steps with MIXED, whose unused layers must stay put


# === Shared helpers ===

_DATA = {}


def seg_data(split, n):
    """The first `n` examples of a split as numpy `(images, masks)` (cached)."""
    if (split, n) not in _DATA:
        ds = make_dataset("seg", split, n, input_size=SIZE, num_examples=n, shuffle=False, repeat=False)
        images, masks = next(iter(ds))
        _DATA[(split, n)] = (images.numpy(), masks.numpy())
    return _DATA[(split, n)]


def train_dataset(n=8, batch=2):
    images, masks = seg_data("train", n)
    return tf.data.Dataset.from_tensor_slices((images, masks)).batch(batch, drop_remainder=True).repeat()


_INIT = {}


def new_supernet(seed=0):
    """A built supernet; the same `seed` gives the same weights (copied from one reference net)."""
    net = ScaleNASSupernet(SPACE, task="seg", num_classes=NUM_CLASSES)
    net.build((None, None, None, 3))
    if seed not in _INIT:
        keras.utils.set_random_seed(seed)
        reference = ScaleNASSupernet(SPACE, task="seg", num_classes=NUM_CLASSES)
        reference.build((None, None, None, 3))
        _INIT[seed] = reference.get_weights()
    net.set_weights(_INIT[seed])
    return net


def split_gated(net, arch):
    """(gated layers `arch` runs, gated layers it does not run, ids of every gated variable)."""
    on, off, gated_ids = [], [], set()
    for layer, flag in net.gated_layers(arch):
        (on if bool(flag.numpy()) else off).append(layer)
        gated_ids.update(id(v) for v in layer.trainable_variables)
    return on, off, gated_ids


class SwitchSampler(SingleArchSampler):
    """`first` for steps < `switch_step`, then `then` (one trace serves both)."""

    def __init__(self, space, first, then, switch_step):
        super().__init__(space)
        self._first = tf.constant(space.to_vector(first))
        self._then = tf.constant(space.to_vector(then))
        self.switch_step = switch_step

    def _draw(self, seed, step):
        vector = tf.where(step < self.switch_step, self._first, self._then)
        return vector, {"group": tf.constant(-1, tf.int32), "fusion_prob": tf.constant(-1.0)}


def snapshot(trainer):
    """`{id(var): (weights, [slot values])}` of the supernet's trainable variables."""
    variables = trainer.supernet.trainable_variables
    slots = slot_map(trainer.optimizer, variables)
    return {id(v): (v.numpy().copy(), [s.numpy().copy() for s in slots[id(v)]]) for v in variables}


# === Sparse updates ===

OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adamw": lambda: keras.optimizers.AdamW(1e-2, weight_decay=1e-2),
    "rmsprop": lambda: keras.optimizers.RMSprop(1e-2, momentum=0.5, weight_decay=1e-2),
    # Wrapped: takes the snapshot-and-restore fallback of sparse_update.
    "loss_scale_sgd": lambda: keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)
    ),
}
# Slots each optimizer keeps per variable (so an empty slot list cannot make a check vacuous).
NUM_SLOTS = {"sgd": 1, "adamw": 2, "rmsprop": 2, "loss_scale_sgd": 1}

_RUNS = {}


def switch_run(name, sparse):
    """Trains SWITCH_STEP steps on the largest arch then MIXED_STEPS on MIXED (cached per setup).

    Returns `(trainer, state at the switch, state at the end)`.
    """
    key = (name, sparse)
    if key not in _RUNS:
        net = new_supernet(0)
        sampler = SwitchSampler(SPACE, SPACE.largest(), MIXED, SWITCH_STEP)
        trainer = SupernetTrainer(net, sampler=sampler, sparse_updates=sparse)
        trainer.compile(optimizer=OPTIMIZERS[name]())
        ds = train_dataset()
        trainer.fit(ds, epochs=1, steps_per_epoch=SWITCH_STEP, verbose=0, shuffle=False)
        at_switch = snapshot(trainer)
        trainer.fit(ds, epochs=1, steps_per_epoch=MIXED_STEPS, verbose=0, shuffle=False)
        _RUNS[key] = (trainer, at_switch, snapshot(trainer))
    return _RUNS[key]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_sparse_update_leaves_unused_choices_bit_identical(name):
    trainer, at_switch, end = switch_run(name, sparse=True)
    net = trainer.supernet
    assert int(trainer.optimizer.iterations.numpy()) == SWITCH_STEP + MIXED_STEPS
    on, off, gated_ids = split_gated(net, MIXED)
    assert len(on) == 2 and len(off) == 4
    for layer in off:
        for v in layer.trainable_variables:
            w0, slots0 = at_switch[id(v)]
            w1, slots1 = end[id(v)]
            assert len(slots0) == NUM_SLOTS[name], v.path
            np.testing.assert_array_equal(w1, w0, err_msg=v.path)
            for s0, s1 in zip(slots0, slots1):
                assert np.any(s0 != 0), f"{v.path}: slot never trained, the check would be vacuous"
                np.testing.assert_array_equal(s1, s0, err_msg=f"slot of {v.path}")
    # Everything MIXED runs keeps training: the gated layers that are on and every ungated layer.
    used = [v for layer in on for v in layer.trainable_variables]
    used += [v for v in net.trainable_variables if id(v) not in gated_ids]
    for v in used:
        w0, slots0 = at_switch[id(v)]
        w1, slots1 = end[id(v)]
        assert not np.array_equal(w1, w0), f"{v.path} did not change"
        assert all(not np.array_equal(s1, s0) for s0, s1 in zip(slots0, slots1)), f"slots of {v.path}"


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_dense_update_moves_unused_choices(name):
    """The PyTorch 1.x behaviour: zero gradients still drive momentum and weight decay."""
    trainer, at_switch, end = switch_run(name, sparse=False)
    _, off, _ = split_gated(trainer.supernet, MIXED)
    for layer in off:
        for v in layer.trainable_variables:
            w0, slots0 = at_switch[id(v)]
            w1, slots1 = end[id(v)]
            assert not np.array_equal(w1, w0), f"{v.path} did not move"
            assert all(not np.array_equal(s1, s0) for s0, s1 in zip(slots0, slots1)), f"slots of {v.path}"


@pytest.mark.parametrize("name, reference", [("sgd", ("sgd", False)), ("loss_scale_sgd", ("sgd", True))])
def test_sparse_update_matches_dense_on_used_variables(name, reference):
    """Skipping unused choices changes nothing else: used weights follow the dense/plain trajectory.

    The runs start from the same weights and see the same batches; the unused choices do not feed
    the forward pass, so the variables MIXED runs must agree (the loss scale is a power of two, so
    scaling and unscaling is exact).
    """
    trainer, _, end = switch_run(name, sparse=True)
    ref_trainer, _, ref_end = switch_run(*reference)
    net, ref_net = trainer.supernet, ref_trainer.supernet
    on, _, gated_ids = split_gated(net, MIXED)
    on_ids = {id(v) for layer in on for v in layer.trainable_variables}
    max_diff = 0.0
    checked = 0
    for v, rv in zip(net.trainable_variables, ref_net.trainable_variables):
        assert v.path == rv.path
        if id(v) in on_ids or id(v) not in gated_ids:
            np.testing.assert_allclose(end[id(v)][0], ref_end[id(rv)][0], rtol=1e-5, atol=1e-6, err_msg=v.path)
            max_diff = max(max_diff, float(np.abs(end[id(v)][0] - ref_end[id(rv)][0]).max()))
            checked += 1
    assert checked > 10
    print(f"sparse {name} vs {reference}: max |diff| on used variables = {max_diff:.3g}")


# === One compiled train step over many archs ===


@pytest.fixture(scope="module")
def grouped():
    """A supernet trained 24 steps with GroupedSampler (5 groups here), counting train-step traces."""
    net = new_supernet(1)
    sampler = GroupedSampler(SPACE, seed=0)
    trainer = SupernetTrainer(net, sampler=sampler)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    traces = []
    step = trainer.train_step

    def counting_train_step(data):
        traces.append(1)  # Python runs only while tracing; compiled calls do not come back here
        return step(data)

    trainer.train_step = counting_train_step
    before = [v.numpy().copy() for v in net.trainable_variables]
    ds = train_dataset(16, 4)
    history = trainer.fit(ds, epochs=2, steps_per_epoch=12, verbose=0, shuffle=False)
    return trainer, traces, before, history


def test_one_trace_serves_every_sampled_arch(grouped):
    trainer, traces, before, history = grouped
    assert sum(traces) == 1
    assert int(trainer.optimizer.iterations.numpy()) == 24  # 24 steps: every group several times
    function = trainer.train_function
    # Keras 3.15 (TF backend): `train_function` is a Python wrapper around a tf.function.
    inner = inspect.getclosurevars(function).nonlocals.get("multi_step_on_iterator")
    if inner is not None and hasattr(inner, "experimental_get_tracing_count"):
        assert inner.experimental_get_tracing_count() == 1
    # Every gated layer ran at some step (the largest group), so all of them trained.
    for v, w in zip(trainer.supernet.trainable_variables, before):
        assert not np.array_equal(v.numpy(), w), v.path
    assert np.all(np.isfinite(history.history["loss"]))


def traced_step_stats(sparse_updates, optimizer):
    trainer = SupernetTrainer(new_supernet(0), sampler=UniformSampler(SPACE, seed=0), sparse_updates=sparse_updates)
    trainer.compile(optimizer=optimizer)
    step = tf.function(trainer.train_step, autograph=False).get_concrete_function(seg_data("train", 2))
    return compile_stats.graph_stats(step)


def test_only_the_sparse_update_conds_stay_functional():
    """The gates and their gradients are lowered to Switch/Merge as TF does by default (a functional branch would
    miss the oneDNN rewrite); the sparse update's conds stay functional (`graph_options.functional_control_flow`),
    except with an optimizer whose own `update_step` runs in them."""
    dense = traced_step_stats(False, keras.optimizers.Adam(1e-3))
    sparse = traced_step_stats(True, keras.optimizers.Adam(1e-3))
    assert dense["if_ops"] > 10 and dense["lowered_ops"] == dense["if_ops"], dense
    assert sparse["lowered_ops"] == dense["lowered_ops"], (sparse, dense)
    assert sparse["if_ops"] > dense["if_ops"], (sparse, dense)
    amsgrad = traced_step_stats(True, keras.optimizers.Adam(1e-3, amsgrad=True))
    assert amsgrad["lowered_ops"] == amsgrad["if_ops"] == sparse["if_ops"], (amsgrad, sparse)


def test_more_fitting_does_not_retrace(grouped):
    trainer, traces, _, _ = grouped
    n = sum(traces)
    trainer.fit(train_dataset(16, 4), epochs=1, steps_per_epoch=6, verbose=0, shuffle=False)
    assert sum(traces) == n


# === Direct dispatch of the step ===


def _lookups(monkeypatch):
    """Counts `tf.function`'s per-call trace lookups (what `make_train_function`'s dispatch skips)."""
    from tensorflow.core.function.polymorphism import function_cache

    count = [0]
    lookup = function_cache.FunctionCache.lookup

    def counted(self, *args, **kwargs):
        count[0] += 1
        return lookup(self, *args, **kwargs)

    monkeypatch.setattr(function_cache.FunctionCache, "lookup", counted)
    return count


def _dispatch_run(direct, monkeypatch):
    trainer = SupernetTrainer(new_supernet(0), sampler=UniformSampler(SPACE, seed=3))
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    if not direct:  # Keras's own functions, the reference
        trainer.make_train_function = lambda force=False: keras.Model.make_train_function(trainer, force)
        trainer.make_test_function = lambda force=False: keras.Model.make_test_function(trainer, force)
    images, masks = seg_data("train", 6)
    # Unknown length: each epoch ends when the data does (`OutOfRangeError` from the step).
    ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(2).filter(lambda *_: True)
    history = trainer.fit(ds, epochs=2, verbose=0)
    lookups = _lookups(monkeypatch)
    history.history.update(trainer.fit(ds, epochs=2, verbose=0).history)
    steady_lookups = lookups[0]
    # A new batch size is a new input signature: traced once, then dispatched.
    batch_steps = [trainer.train_on_batch(images[:3], masks[:3], return_dict=True) for _ in range(2)]
    evaluation = trainer.evaluate(ds, verbose=0, return_dict=True)
    return trainer, steady_lookups, (history.history, batch_steps, evaluation), [w.numpy() for w in trainer.weights]


def test_direct_dispatch_trains_and_evaluates_bit_for_bit_as_keras(monkeypatch):
    direct, direct_lookups, direct_results, direct_weights = _dispatch_run(True, monkeypatch)
    reference, keras_lookups, keras_results, keras_weights = _dispatch_run(False, monkeypatch)
    assert "_single_step_function" in direct.train_function.__qualname__
    assert "_single_step_function" in direct.test_function.__qualname__
    assert "_single_step_function" not in reference.train_function.__qualname__
    assert int(direct.optimizer.iterations) == int(reference.optimizer.iterations) > 2
    assert direct.train_step_traces == reference.train_step_traces == 2  # the iterator's batches, then batch 3
    # Keras looks the step up on every call (2 epochs x (3 batches + the end of the data)); the direct
    # dispatch, never once the step is traced.
    assert keras_lookups >= 8 and direct_lookups == 0, (keras_lookups, direct_lookups)
    assert direct_results == keras_results
    assert all(np.array_equal(a, b) for a, b in zip(direct_weights, keras_weights))


def test_direct_dispatch_only_without_strategy_and_xla_and_one_step_per_call():
    for settings in ({"steps_per_execution": 2}, {"jit_compile": True}):
        trainer = SupernetTrainer(new_supernet(0), sampler=UniformSampler(SPACE, seed=3))
        trainer.compile(optimizer=keras.optimizers.Adam(1e-2), **settings)
        trainer.make_train_function()
        assert "_single_step_function" not in trainer.train_function.__qualname__, settings
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        trainer = SupernetTrainer(new_supernet(0), sampler=UniformSampler(SPACE, seed=3))
        trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    trainer.make_train_function()
    assert "_single_step_function" not in trainer.train_function.__qualname__


# === Stacked optimizer slots ===


def _stacked_run(stacked, optimizer, teacher="inplace", sparse_updates=True, epochs=2):
    keras.utils.set_random_seed(7)
    trainer = SupernetTrainer(
        new_supernet(0),
        sampler=UniformSampler(SPACE, seed=3),
        teacher=teacher,
        sparse_updates=sparse_updates,
        stacked_slots=stacked,
    )
    trainer.compile(optimizer=optimizer)
    history = trainer.fit(train_dataset(8, 2), epochs=epochs, steps_per_epoch=3, verbose=0, shuffle=False)
    return trainer, history.history


def _slot_values(trainer):
    """Per trainable variable, its optimizer slots' values (stacked or not)."""
    variables = trainer.supernet.trainable_variables
    per_variable = sparse_update.slot_map(trainer.optimizer, variables)
    stacks = trainer._slot_stacks
    values = []
    for v in variables:
        stacked = stacks.slots_of(v) if stacks is not None else None
        values.append([np.asarray(s) for s in (stacked if stacked is not None else per_variable[id(v)])])
    return values


@pytest.mark.parametrize(
    "optimizer, teacher, sparse_updates",
    [
        (lambda: keras.optimizers.Adam(1e-2), "inplace", True),
        (lambda: keras.optimizers.AdamW(1e-2, weight_decay=1e-2), "inplace", True),
        (lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True), None, False),
    ],
    ids=["adam_inplace", "adamw_inplace", "sgd_dense"],
)
def test_stacked_slots_train_bit_for_bit_as_one_slot_per_variable(optimizer, teacher, sparse_updates):
    """Where every variable is updated every step, the default stacks same-shape variables' slots: fewer
    optimizer variables, the same losses, weights, BN statistics and slot values, one trace."""
    stacked, stacked_logs = _stacked_run(True, optimizer(), teacher, sparse_updates)
    plain, plain_logs = _stacked_run(False, optimizer(), teacher, sparse_updates)
    assert stacked._slot_stacks is not None and plain._slot_stacks is None
    num_stacked = sum(len(group.variables) for group in stacked._slot_stacks.groups)
    num_slots = len(_slot_values(plain)[0])
    assert num_stacked > len(stacked.supernet.trainable_variables) // 2
    assert len(plain.optimizer.variables) - len(stacked.optimizer.variables) == num_slots * (
        num_stacked - len(stacked._slot_stacks.groups)
    )
    assert stacked.train_step_traces == plain.train_step_traces == 1
    assert stacked_logs == plain_logs
    for a, b in zip(stacked.supernet.weights, plain.supernet.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    trained = 0
    for got, want in zip(_slot_values(stacked), _slot_values(plain)):
        assert len(got) == len(want) == num_slots
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
            trained += bool(np.any(a != 0))
    # (dense updates of unsampled choices get zero gradients: SGD's momentum of those stays 0)
    assert trained >= 0.9 * num_slots * len(stacked.supernet.trainable_variables)


def test_sparse_updates_keep_one_slot_per_variable():
    """With gates (sparse updates, no in-place teacher) a variable's slots may stay put: not stacked."""
    trainer = SupernetTrainer(new_supernet(0), sampler=UniformSampler(SPACE, seed=3))
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    assert trainer._slot_stacks is None
    slots = sparse_update.slot_map(trainer.optimizer, trainer.supernet.trainable_variables)
    assert all(len(s) == 2 for s in slots.values())


def test_a_checkpoint_of_the_other_slot_layout_fails_on_load_and_its_own_resumes(tmp_path):
    """Keras skips an optimizer state that does not fit with a warning (a resumed run would restart its slots
    and step count): the trainer fails with a message that names the setting that loads it."""
    stacked, _ = _stacked_run(True, keras.optimizers.Adam(1e-2), epochs=1)
    plain, _ = _stacked_run(False, keras.optimizers.Adam(1e-2), epochs=1)
    stacked_file, plain_file = str(tmp_path / "stacked.weights.h5"), str(tmp_path / "plain.weights.h5")
    stacked.save_weights(stacked_file)
    plain.save_weights(plain_file)
    for trainer, other in ((stacked, plain_file), (plain, stacked_file)):
        fresh = SupernetTrainer(new_supernet(1), teacher="inplace", stacked_slots=trainer.stacked_slots)
        fresh.compile(optimizer=keras.optimizers.Adam(1e-2))
        with pytest.raises(ValueError, match=r"optimizer state does not fit.*stacked_optimizer_slots=False"):
            fresh.load_weights(other)
    resumed = SupernetTrainer(new_supernet(1), teacher="inplace")
    resumed.compile(optimizer=keras.optimizers.Adam(1e-2))
    resumed.load_weights(stacked_file)
    assert int(resumed.optimizer.iterations.numpy()) == 3
    for a, b in zip(resumed.optimizer.variables + resumed.weights, stacked.optimizer.variables + stacked.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_loop_refuses_a_checkpoint_of_the_other_slot_layout(tmp_path):
    """`tf.train.Checkpoint` keys optimizer variables by position: the loop checks the layout before restoring."""
    from scalenas_tf.training.loop import train_loop

    def trainer_of(stacked):
        trainer = SupernetTrainer(new_supernet(0), teacher="inplace", stacked_slots=stacked)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
        return trainer

    directory = str(tmp_path / "loop")
    train_loop(trainer_of(False), train_dataset(8, 2), 2, directory, checkpoint_every=2, log=lambda line: None)
    with pytest.raises(ValueError, match=r"optimizer state does not fit.*stacked_slots=True"):
        train_loop(trainer_of(True), train_dataset(8, 2), 4, directory, checkpoint_every=2, log=lambda line: None)
    summary = train_loop(trainer_of(False), train_dataset(8, 2), 3, directory, log=lambda line: None)
    assert summary["resumed_from"] == 2 and summary["steps"] == 3


# === Distillation ===


@pytest.fixture(scope="module")
def distilled():
    teacher_net = new_supernet(seed=5)
    teacher = extract_subnet(teacher_net, SPACE.largest(), SIZE)
    teacher_out = teacher(seg_data("train", 8)[0], training=False).numpy()
    net = new_supernet(0)
    trainer = SupernetTrainer(net, sampler=GroupedSampler(SPACE, seed=0), teacher=teacher, distill_weight=0.5)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    # All 8 images in every batch, 5 steps (one cycle of the 5 groups) per epoch: epochs differ
    # only in the weights and the archs drawn within each group.
    history = trainer.fit(train_dataset(8, 8), epochs=8, steps_per_epoch=5, verbose=0, shuffle=False)
    return trainer, teacher, teacher_weights, teacher_out, history.history


def test_distillation_lowers_task_and_distill_loss(distilled):
    _, _, _, _, logs = distilled
    print("task_loss", np.round(logs["task_loss"], 4), "distill_loss", np.round(logs["distill_loss"], 4))
    assert logs["distill_loss"][0] > 0
    assert logs["task_loss"][-1] < 0.8 * logs["task_loss"][0]
    assert logs["distill_loss"][-1] < 0.8 * logs["distill_loss"][0]
    expected = np.array(logs["task_loss"]) + 0.5 * np.array(logs["distill_loss"])
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)


def test_teacher_is_frozen(distilled):
    trainer, teacher, teacher_weights, teacher_out, _ = distilled
    assert not teacher.trainable
    for w0, w1 in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    np.testing.assert_array_equal(teacher(seg_data("train", 8)[0], training=False).numpy(), teacher_out)
    assert not any(id(v) in {id(t) for t in teacher.weights} for v in trainer.supernet.trainable_variables)


def test_no_teacher_no_distill_loss(grouped):
    _, _, _, history = grouped
    assert history.history["distill_loss"] == [0.0, 0.0]
    np.testing.assert_allclose(history.history["loss"], history.history["task_loss"])


# === tf.distribute: loss scaling and one subnet for all replicas ===

STRATEGY_LR = 0.1


def mirrored():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def one_step(strategy, images, masks):
    """Trainable weights after one SGD step on the global batch `(images, masks)` under `strategy`."""
    with strategy.scope():
        net = new_supernet(2)
        trainer = SupernetTrainer(net, sampler=FixedSampler(SPACE, MIXED))
        trainer.compile(optimizer=keras.optimizers.SGD(STRATEGY_LR))
    ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(len(images))
    trainer.fit(ds, epochs=1, verbose=0, shuffle=False)
    assert int(trainer.optimizer.iterations.numpy()) == 1
    return [v.numpy() for v in net.trainable_variables]


def reference_step(halves):
    """One SGD step with the mean of the per-half gradients (each half's BN sees only itself)."""
    net = new_supernet(2)
    variables = net.trainable_variables
    grads = []
    for images, masks in halves:
        with tf.GradientTape() as tape:
            loss = losses.segmentation_loss(masks, net(images, arch=MIXED, training=True))
        grads.append(tape.gradient(loss, variables))
    out = []
    for v, g0, g1 in zip(variables, *grads):
        g = 0.0 if g0 is None else (g0 + g1) / 2
        out.append(v.numpy() - STRATEGY_LR * np.asarray(g))
    return out


def max_abs_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def strategy_steps():
    images, masks = seg_data("train", 4)
    same_images, same_masks = np.repeat(images[:1], 4, axis=0), np.repeat(masks[:1], 4, axis=0)
    init = [v.numpy() for v in new_supernet(2).trainable_variables]
    return {
        "init": init,
        "one_replica_same": one_step(tf.distribute.get_strategy(), same_images, same_masks),
        "two_replicas_same": one_step(mirrored(), same_images, same_masks),
        "two_replicas": one_step(mirrored(), images, masks),
        "reference_halves": reference_step([(images[:2], masks[:2]), (images[2:], masks[2:])]),
    }


def test_two_replicas_equal_one_replica_on_identical_examples(strategy_steps):
    """With 4 copies of one example, per-replica BN statistics equal global ones: updates must match.

    A missing (or doubled) division by the replica count makes the update 2x (or 0.5x) too large.
    """
    one, two, init = strategy_steps["one_replica_same"], strategy_steps["two_replicas_same"], strategy_steps["init"]
    diff = max_abs_diff(one, two)
    step = max_abs_diff(one, init)
    print(f"1 vs 2 replicas, identical examples: max |diff| = {diff:.3g} (update size {step:.3g})")
    assert step > 1e-3
    assert diff < 1e-5


def test_two_replicas_average_per_replica_gradients(strategy_steps):
    """Distinct examples: the update is the mean of the two replicas' gradients (2 examples each).

    Keras BN is not synchronized, so each replica normalizes with its own batch statistics and the
    result differs from one replica on all 4 examples; the exact reference averages the gradients of
    the two halves computed separately.
    """
    two, ref, init = strategy_steps["two_replicas"], strategy_steps["reference_halves"], strategy_steps["init"]
    diff = max_abs_diff(two, ref)
    print(f"2 replicas vs per-half reference: max |diff| = {diff:.3g} (update size {max_abs_diff(ref, init):.3g})")
    assert max_abs_diff(ref, init) > 1e-3
    assert diff < 1e-5


def per_replica_vectors(per_replica_subnets, steps):
    strategy = mirrored()
    with strategy.scope():
        trainer = SupernetTrainer(
            new_supernet(3), sampler=UniformSampler(SPACE, seed=1), per_replica_subnets=per_replica_subnets
        )
        trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    sample = tf.function(lambda: strategy.run(trainer.sample))
    out = []
    for step in steps:
        trainer.optimizer.iterations.assign(step)
        vectors = [v.numpy() for v in strategy.experimental_local_results(sample())]
        assert len(vectors) == 2
        out.append(vectors)
    return out


def test_every_replica_samples_the_same_subnet():
    draws = per_replica_vectors(False, range(6))
    for step, (a, b) in enumerate(draws):
        np.testing.assert_array_equal(a, b, err_msg=f"step {step}")
    # The step matters: the draws are not one constant arch.
    assert len({a.tobytes() for a, _ in draws}) > 1


def test_per_replica_subnets_differ():
    draws = per_replica_vectors(True, range(6))
    assert any(not np.array_equal(a, b) for a, b in draws)
    for a, b in draws:
        SPACE.from_vector(a[0]), SPACE.from_vector(b[0])  # both canonical


def test_per_replica_subnets_update_what_any_replica_ran():
    """per_replica_subnets: a choice only replica 1 ran is updated; one no replica ran is untouched.

    The fast sparse path reads the gate of replica 0 in cross-replica context, so this holds only
    if the gates are all-reduced (any) across replicas first.
    """
    strategy = mirrored()
    with strategy.scope():
        net = new_supernet(4)
        trainer = SupernetTrainer(net, sampler=UniformSampler(SPACE, seed=3), per_replica_subnets=True)
        trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    sample = tf.function(lambda: strategy.run(trainer.sample))
    layers = [layer for layer, _ in net.gated_layers(SPACE.largest())]

    def runs(vector):
        return [bool(on.numpy()) for _, on in net.gated_layers(vector[0])]

    for step in range(100):
        trainer.optimizer.iterations.assign(step)
        r0, r1 = [runs(v.numpy()) for v in strategy.experimental_local_results(sample())]
        only_1 = [layer for layer, a, b in zip(layers, r0, r1) if b and not a]
        neither = [layer for layer, a, b in zip(layers, r0, r1) if not a and not b]
        if only_1 and neither:
            break
    else:
        pytest.fail("no step where replica 1 runs a choice replica 0 does not, and a choice runs nowhere")
    before = {id(v): v.numpy().copy() for v in net.trainable_variables}
    ds = tf.data.Dataset.from_tensor_slices(seg_data("train", 4)).batch(4)
    trainer.fit(ds, epochs=1, verbose=0, shuffle=False)
    assert int(trainer.optimizer.iterations.numpy()) == step + 1
    for layer in only_1:
        for v in layer.trainable_variables:
            assert not np.array_equal(v.numpy(), before[id(v)]), f"{v.path}: ran on replica 1 only, not updated"
    for layer in neither:
        for v in layer.trainable_variables:
            np.testing.assert_array_equal(v.numpy(), before[id(v)], err_msg=v.path)


# === BN recalibration ===


def bn_state(net):
    return [(n.moving_mean.numpy().copy(), n.moving_variance.numpy().copy()) for n in bn_layers(net)]


def bn_layers(layer):
    layers = layer._flatten_layers(include_self=True, recursive=True)
    return [x for x in layers if isinstance(x, keras.layers.BatchNormalization)]


@pytest.fixture
def trained(grouped):
    """The grouped-trained supernet; its BN statistics are restored after each test."""
    net = grouped[0].supernet
    saved = net.get_weights()
    yield net
    net.set_weights(saved)


@pytest.fixture(scope="module")
def calibrator(grouped):
    return BatchNormCalibrator(grouped[0].supernet)


def batches(n, batch=4, split="train"):
    images, masks = seg_data(split, n * batch)
    return [(images[i * batch : (i + 1) * batch], masks[i * batch : (i + 1) * batch]) for i in range(n)]


def test_calibration_touches_exactly_the_bns_the_arch_runs(trained, calibrator):
    net = trained
    _, off, _ = split_gated(net, MIXED)
    not_run = {id(n) for layer in off for n in bn_layers(layer)}
    assert not_run
    norms = bn_layers(net)
    before = bn_state(net)
    weights = [v.numpy().copy() for v in net.trainable_variables]
    assert calibrator(MIXED, batches(3), num_batches=3) == 3
    after = bn_state(net)
    for norm, (m0, v0), (m1, v1) in zip(norms, before, after):
        if id(norm) in not_run:
            np.testing.assert_array_equal(m1, m0, err_msg=norm.name)
            np.testing.assert_array_equal(v1, v0, err_msg=norm.name)
        else:
            assert not np.array_equal(m1, m0) and not np.array_equal(v1, v0), norm.name
    # The trainable weights are untouched.
    for v, w in zip(net.trainable_variables, weights):
        np.testing.assert_array_equal(v.numpy(), w, err_msg=v.path)


def test_calibration_is_deterministic(trained, calibrator):
    net = trained
    _, off, _ = split_gated(net, MIXED)
    not_run = {id(n) for layer in off for n in bn_layers(layer)}
    data = batches(3)
    calibrator(MIXED, data, num_batches=3)
    first = bn_state(net)
    calibrator(SPACE.largest(), data, num_batches=3)  # recalibrates every BN in between
    largest = bn_state(net)
    calibrator(MIXED, data, num_batches=3)
    for norm, (m0, v0), (ml, vl), (m1, v1) in zip(bn_layers(net), first, largest, bn_state(net)):
        if id(norm) in not_run:  # MIXED leaves what the largest arch's calibration put there
            np.testing.assert_array_equal(m1, ml, err_msg=norm.name)
            np.testing.assert_array_equal(v1, vl, err_msg=norm.name)
        else:  # the same batches give the same statistics, whatever ran before
            np.testing.assert_array_equal(m1, m0, err_msg=norm.name)
            np.testing.assert_array_equal(v1, v0, err_msg=norm.name)


def test_calibration_averages_per_batch_statistics(trained, calibrator):
    net = trained
    data = batches(3)
    calibrator(SPACE.smallest(), data, num_batches=3)
    bn = net.stem.bn1
    # Its input: the stem's first conv of the images (it runs for every arch).
    means, variances = [], []
    for images, _ in data:
        x = common.call_padded(net.stem.conv1, tf.constant(images)).numpy().reshape(-1, bn.moving_mean.shape[0])
        means.append(x.mean(axis=0))
        variances.append(x.var(axis=0, ddof=1))  # unbiased, as PyTorch's running variance
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(means, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean(variances, axis=0), rtol=1e-4, atol=1e-5)
    # Not just the last batch's statistics.
    assert np.abs(bn.moving_mean.numpy() - means[-1]).max() > 1e-4


def test_calibration_with_a_repeated_batch_equals_that_batch(trained, calibrator):
    data = batches(1)
    calibrator(MIXED, data * 3, num_batches=3)
    repeated = bn_state(trained)
    calibrator(MIXED, data, num_batches=1)
    for (m0, v0), (m1, v1) in zip(repeated, bn_state(trained)):
        np.testing.assert_allclose(m0, m1, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(v0, v1, rtol=1e-6, atol=1e-7)


def test_calibration_stops_at_num_batches_and_reports_what_it_used(trained, calibrator):
    data = batches(3)
    assert calibrator(MIXED, data, num_batches=2) == 2
    two = bn_state(trained)
    calibrator(MIXED, data[:2], num_batches=2)
    for (m0, _), (m1, _) in zip(two, bn_state(trained)):
        np.testing.assert_array_equal(m0, m1)
    assert calibrator(MIXED, data, num_batches=10) == 3  # a short dataset: all of it
    # Images alone (no targets) are accepted too.
    assert calibrator(MIXED, tf.data.Dataset.from_tensor_slices(seg_data("train", 8)[0]).batch(4), 5) == 2


def test_calibration_improves_the_arch_loss(trained, calibrator):
    net = trained
    val_images, val_masks = seg_data("validation", 32)

    def val_loss(arch):
        return float(losses.segmentation_loss(val_masks, net(val_images, arch=arch, training=False)))

    arch = SPACE.smallest()
    before = val_loss(arch)
    calibrator(arch, batches(8), num_batches=8)
    after = val_loss(arch)
    print(f"smallest arch validation loss: shared BN statistics {before:.4f}, recalibrated {after:.4f}")
    assert after < before


def test_calibration_argument_errors(trained, calibrator):
    with pytest.raises(ValueError, match="num_batches"):
        calibrator(MIXED, batches(1), num_batches=0)
    with pytest.raises(ValueError, match="no batches"):
        calibrator(MIXED, [], num_batches=1)


# === Constructor and compile validation ===


def test_constructor_validation():
    net = new_supernet(0)
    with pytest.raises(ValueError, match="teacher.*'bogus'"):
        SupernetTrainer(net, teacher="bogus")
    with pytest.raises(TypeError, match="teacher.*int"):
        SupernetTrainer(net, teacher=3)
    with pytest.raises(TypeError, match="Supernet.*Sequential"):
        SupernetTrainer(keras.Sequential([keras.layers.Dense(1)]))
    with pytest.raises(TypeError, match="sampler.*str"):
        SupernetTrainer(net, sampler="grouped")
    with pytest.raises(ValueError, match="distill_weight.*-0.5"):
        SupernetTrainer(net, distill_weight=-0.5)
    trainer = SupernetTrainer(net, teacher="inplace", distill_weight=0.0)
    assert trainer.inplace and trainer.teacher is None


def test_compile_rejects_a_loss():
    trainer = SupernetTrainer(new_supernet(0))
    with pytest.raises(ValueError, match="task_loss"):
        trainer.compile(optimizer="sgd", loss="mse")

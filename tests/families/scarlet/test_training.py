"""SCARLET training: the single-path samplers, the compiled step, sparse updates and BN recalibration.

Samplers are pure tensor code, so they are tested on the full default space (19 layers, 13 choices,
12 where identity is not offered). Anything that traces a train step uses tiny spaces: tracing the
step of a 19-layer S2 supernet takes minutes on a small CPU.

`TINY` (S1, 7 choices where identity is offered): l0 8->8 stride 2 (no identity), l1 8->8 (residual,
identity offered), l2 8->16 (no identity); 16x16 images, 3 classes, one fixed batch of 8.
`FAIR` is `TINY` with kernel 3 only: 3 choices (K3E3, K3E6, id), so the strict-fairness step has 3
paths and its unlooped form (one tape over every path) traces in seconds.
"""

import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.families.scarlet.samplers import SinglePathSampler
from scalenas_tf.families.scarlet.samplers import StrictFairSampler
from scalenas_tf.families.scarlet.space import ScarletArch
from scalenas_tf.families.scarlet.space import ScarletSpace
from scalenas_tf.families.scarlet.stabilizer import Stabilizer
from scalenas_tf.families.scarlet.supernet import ScarletSupernet
from scalenas_tf.layers import common
from scalenas_tf.training import gradient_tracing
from scalenas_tf.training import graph_options
from scalenas_tf.training.bn_calibration import BatchNormCalibrator
from scalenas_tf.training.sparse_update import slot_map
from scalenas_tf.training.trainer import SupernetTrainer
from tests.helpers import randomize_batch_norm

FULL = ScarletSpace()
TINY_FIELDS = dict(
    variant="s1", channels=(8, 8, 16), strides=(2, 1, 1), stem_channels=8, first_channels=8, head_channels=16
)
TINY = ScarletSpace(**TINY_FIELDS)
TINY_SKIP = ScarletSpace(identity_op="skip", **TINY_FIELDS)
FAIR = ScarletSpace(kernel_sizes=(3,), **TINY_FIELDS)
NUM_CLASSES = 3
SIZE = (16, 16)
BATCH = 8


# === Helpers ===


def batch(seed=0, n=BATCH):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *SIZE, 3)).astype("float32"), rng.integers(0, NUM_CLASSES, n).astype("int32")


def fixed_dataset():
    """The same batch every step (memorization)."""
    images, labels = batch()
    return tf.data.Dataset.from_tensors((images, labels)).repeat()


_INIT = {}


def new_supernet(space, seed=0):
    """A built ScarletSupernet; the same space and seed give the same weights."""
    key = (space, seed)
    net = ScarletSupernet(space, num_classes=NUM_CLASSES)
    net.build((None, None, None, 3))
    if key not in _INIT:
        keras.utils.set_random_seed(seed)
        reference = ScarletSupernet(space, num_classes=NUM_CLASSES)
        reference.build((None, None, None, 3))
        _INIT[key] = reference.get_weights()
    net.set_weights(_INIT[key])
    return net


def layer_ids(space):
    names = space.choice_names
    return [[names.index(c) for c in space.layer_choices(i)] for i in range(space.num_layers)]


def traced(sampler):
    """`step -> vectors (num_subnets, L)` as numpy, through one traced `tf.function`."""
    fn = tf.function(lambda step: sampler(step)[0])
    return lambda step: fn(tf.constant(step, tf.int64)).numpy(), fn


def split_gated(net, vector):
    """(gated layers `vector` runs, gated layers it does not run)."""
    on, off = [], []
    for layer, flag in net.gated_layers(vector):
        (on if bool(flag.numpy()) else off).append(layer)
    return on, off


def bn_layers(layer):
    layers = layer._flatten_layers(include_self=True, recursive=True)
    return [x for x in layers if isinstance(x, keras.layers.BatchNormalization)]


# === StrictFairSampler (FairNAS) ===

FAIR_STEPS = 200


@pytest.fixture(scope="module")
def strict_fair_vectors():
    sampler = StrictFairSampler(FULL, seed=11)
    draw, fn = traced(sampler)
    vectors = np.stack([draw(step) for step in range(FAIR_STEPS)])
    assert fn.experimental_get_tracing_count() == 1
    return sampler, vectors


def test_strict_fair_runs_every_choice_once_per_step(strict_fair_vectors):
    sampler, vectors = strict_fair_vectors
    ids = layer_ids(FULL)
    m = max(len(x) for x in ids)
    assert m == 13 and sampler.num_subnets == m
    assert vectors.shape == (FAIR_STEPS, m, FULL.num_layers)
    short = [i for i, x in enumerate(ids) if len(x) < m]
    assert short == [0, 2, 6, 10, 14, 18]  # no identity where stride or width changes: 12 choices
    for step, v in enumerate(vectors):
        for i, offered in enumerate(ids):
            column = v[:, i]
            counts = np.bincount(column, minlength=len(FULL.choice_names))
            assert set(np.flatnonzero(counts)) <= set(offered), (step, i)
            if len(offered) == m:
                assert sorted(column) == sorted(offered), (step, i)
            else:
                assert all(1 <= counts[c] <= 2 for c in offered), (step, i, counts)
        for path in v:  # every path is an arch of the space
            FULL.from_vector(path)


def test_strict_fair_shuffles_the_fill_and_the_order(strict_fair_vectors):
    """The doubled choice of a short layer varies across steps, and so does the path order."""
    _, vectors = strict_fair_vectors
    ids = layer_ids(FULL)
    doubled = set()
    for v in vectors:
        counts = np.bincount(v[:, 0], minlength=len(FULL.choice_names))
        doubled.add(int(np.argmax(counts)))
    assert doubled == set(ids[0])  # over 200 steps, each of layer 0's 12 choices was the doubled one
    assert len({v.tobytes() for v in vectors}) == FAIR_STEPS  # every step different


def test_strict_fair_is_deterministic_per_seed_and_step(strict_fair_vectors):
    sampler, vectors = strict_fair_vectors
    again, _ = traced(StrictFairSampler(FULL, seed=11))
    other, _ = traced(StrictFairSampler(FULL, seed=12))
    for step in (0, 1, 57, FAIR_STEPS - 1):
        np.testing.assert_array_equal(again(step), vectors[step])
        np.testing.assert_array_equal(sampler(tf.constant(step))[0].numpy(), vectors[step])  # eager
        assert not np.array_equal(other(step), vectors[step])
    eager, info = sampler.sample_numpy([3, 4])
    np.testing.assert_array_equal(eager[:, :, :], vectors[3:5])
    np.testing.assert_array_equal(info["group"][0], np.arange(13))


# === SinglePathSampler (SPOS) ===

SPOS_STEPS = 4000


@pytest.fixture(scope="module")
def spos_vectors():
    sampler = SinglePathSampler(FULL, seed=5)
    steps = tf.range(SPOS_STEPS, dtype=tf.int64)
    many = tf.function(lambda s: tf.map_fn(lambda t: sampler(t)[0][0], s, fn_output_signature=tf.int32))
    return sampler, many(steps).numpy()


def test_spos_draws_only_offered_choices_uniformly(spos_vectors):
    _, vectors = spos_vectors
    assert vectors.shape == (SPOS_STEPS, FULL.num_layers)
    worst = 0.0
    for i, offered in enumerate(layer_ids(FULL)):
        counts = np.bincount(vectors[:, i], minlength=len(FULL.choice_names))
        assert set(np.flatnonzero(counts)) == set(offered), i
        p = 1.0 / len(offered)
        mean, sigma = SPOS_STEPS * p, np.sqrt(SPOS_STEPS * p * (1 - p))
        z = np.abs(counts[offered] - mean) / sigma
        worst = max(worst, float(z.max()))
        # 5 sigma per cell: ~250 cells, a false alarm has probability ~1e-4 for a uniform sampler
        assert z.max() < 5, (i, counts[offered], mean)
    print(f"SPOS uniformity: worst cell {worst:.2f} sigma over {SPOS_STEPS} steps")


def test_spos_is_deterministic(spos_vectors):
    sampler, vectors = spos_vectors
    again = SinglePathSampler(FULL, seed=5)
    other = SinglePathSampler(FULL, seed=6)
    draw, _ = traced(again)
    for step in (0, 1, 999, SPOS_STEPS - 1):
        np.testing.assert_array_equal(draw(step)[0], vectors[step])
        np.testing.assert_array_equal(sampler(tf.constant(step))[0].numpy()[0], vectors[step])  # eager
    assert not np.array_equal(np.stack([other(tf.constant(s))[0].numpy()[0] for s in range(5)]), vectors[:5])
    assert len({v.tobytes() for v in vectors}) == SPOS_STEPS


def test_scarlet_samplers_reject_other_spaces():
    for cls in (SinglePathSampler, StrictFairSampler):
        with pytest.raises(TypeError, match="ScarletSpace"):
            cls(ScaleNASSpace(width=8))


# === The compiled step with SinglePathSampler ===

SPOS_EPOCHS, SPOS_STEPS_PER_EPOCH = 4, 5
_SPOS_RUNS = {}


def spos_run(space):
    """Trains a fresh supernet on the fixed batch with SPOS and Adam (cached per space).

    Returns `(trainer, history)`.
    """
    if space not in _SPOS_RUNS:
        net = new_supernet(space)
        trainer = SupernetTrainer(net, sampler=SinglePathSampler(space, seed=3))
        trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = trainer.fit(
            fixed_dataset(), epochs=SPOS_EPOCHS, steps_per_epoch=SPOS_STEPS_PER_EPOCH, verbose=0, shuffle=False
        )
        _SPOS_RUNS[space] = (trainer, history.history)
    return _SPOS_RUNS[space]


VARIANTS = {"els": TINY, "skip": TINY_SKIP}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_spos_trains_with_one_trace_and_memorizes(variant):
    space = VARIANTS[variant]
    trainer, history = spos_run(space)
    steps = SPOS_EPOCHS * SPOS_STEPS_PER_EPOCH
    assert trainer.train_step_traces == 1
    assert int(trainer.optimizer.iterations.numpy()) == steps
    archs = {trainer.sampler(tf.constant(s))[0].numpy().tobytes() for s in range(steps)}
    assert len(archs) > steps // 2, "the steps should have trained different paths"
    losses = history["loss"]
    print(f"{variant}: epoch losses {[round(x, 3) for x in losses]}")
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_spos_sparse_update_leaves_unrun_choices_bit_identical(variant):
    """One more Adam step: the choices the step's path did not run keep weights, slots and BN statistics."""
    space = VARIANTS[variant]
    trainer, _ = spos_run(space)
    net = trainer.supernet
    step = int(trainer.optimizer.iterations.numpy())
    vector = trainer.sampler(tf.constant(step))[0][0]
    on, off = split_gated(net, vector)
    assert on and off
    variables = net.trainable_variables
    slots = slot_map(trainer.optimizer, variables)
    before = {id(v): (v.numpy().copy(), [s.numpy().copy() for s in slots[id(v)]]) for v in variables}
    stats_before = {id(v): v.numpy().copy() for v in net.non_trainable_variables}

    trainer.fit(fixed_dataset(), epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    assert int(trainer.optimizer.iterations.numpy()) == step + 1
    assert trainer.train_step_traces == 1

    trained_before = 0
    for layer in off:
        for v in layer.trainable_variables:
            w0, s0 = before[id(v)]
            np.testing.assert_array_equal(v.numpy(), w0, err_msg=v.path)
            for a, b in zip(s0, slots[id(v)]):
                np.testing.assert_array_equal(b.numpy(), a, err_msg=f"slot of {v.path}")
            trained_before += any(np.any(a != 0) for a in s0)
        for v in layer.non_trainable_variables:
            np.testing.assert_array_equal(v.numpy(), stats_before[id(v)], err_msg=v.path)
    # Adam's moments of an earlier-trained choice would move it under a dense update.
    assert trained_before > 0, "no unrun choice had been trained before: the check would be vacuous"

    gated = {id(v) for layer in on + off for v in layer.trainable_variables}
    run = [v for layer in on for v in layer.trainable_variables] + [v for v in variables if id(v) not in gated]
    for v in run:
        assert not np.array_equal(v.numpy(), before[id(v)][0]), f"{v.path} did not change"


# === The compiled step with StrictFairSampler ===


def test_strict_fair_defaults_to_the_subnet_loop():
    assert StrictFairSampler(TINY).num_subnets == 7
    assert SupernetTrainer(ScarletSupernet(TINY, num_classes=NUM_CLASSES), sampler=StrictFairSampler(TINY)).subnet_loop
    # The default is "more than 4 subnets per step": FAIR's 3 paths stay unlooped unless asked.
    assert not SupernetTrainer(
        ScarletSupernet(FAIR, num_classes=NUM_CLASSES), sampler=StrictFairSampler(FAIR)
    ).subnet_loop
    assert not SupernetTrainer(
        ScarletSupernet(TINY, num_classes=NUM_CLASSES), sampler=SinglePathSampler(TINY)
    ).subnet_loop


def strict_fair_step(space, subnet_loop, steps=1):
    net = new_supernet(space, seed=1)
    trainer = SupernetTrainer(net, sampler=StrictFairSampler(space, seed=4), subnet_loop=subnet_loop)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05))
    history = trainer.fit(fixed_dataset(), epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    assert trainer.train_step_traces == 1
    return trainer, history.history


def test_looped_strict_fair_step_equals_one_tape():
    """`subnet_loop=True` accumulates the paths' gradients in a while loop: same update as one tape."""
    looped, looped_history = strict_fair_step(FAIR, subnet_loop=True)
    taped, taped_history = strict_fair_step(FAIR, subnet_loop=False)
    assert looped.subnet_loop and not taped.subnet_loop
    np.testing.assert_allclose(looped_history["loss"], taped_history["loss"], rtol=1e-6)
    init = _INIT[(FAIR, 1)]
    moved = diff = 0.0
    for a, b, w0 in zip(looped.supernet.get_weights(), taped.supernet.get_weights(), init):
        diff = max(diff, float(np.abs(a - b).max()))
        moved = max(moved, float(np.abs(a - w0).max()))
    print(f"strict fair, looped vs one tape: max weight diff {diff:.3g} (largest weight change {moved:.3g})")
    assert moved > 1e-2
    assert diff <= 1e-5


def test_strict_fair_step_trains_every_choice():
    """TINY, default loop (7 paths): one step moves the weights of every op of every layer."""
    trainer, history = strict_fair_step(TINY, subnet_loop=None)
    assert trainer.subnet_loop
    assert np.isfinite(history["loss"][0])
    net = trainer.supernet
    init = dict(zip([v.path for v in net.weights], _INIT[(TINY, 1)]))
    for layer in net.choice_layers:
        for op in layer.ops:
            assert op is not None
            for v in op.trainable_variables:
                assert not np.array_equal(v.numpy(), init[v.path]), f"{v.path} did not change"


def test_looped_strict_fair_steps_are_bit_identical_with_wrapped_cond_intermediates(monkeypatch):
    """The loop's cond gradients take their intermediates directly (the trainer's default): two steps give the
    same weights, optimizer slots and BN statistics, bit for bit, as with TF's optional-wrapped intermediates,
    with the graph optimizations training uses (`graph_optimizations("fast")`; TF's full set rewrites
    this graph differently in the two forms, a last-bit difference in some gradients)."""
    with graph_options.graph_optimizations("fast"):
        direct, _ = strict_fair_step(FAIR, subnet_loop=True, steps=2)
        monkeypatch.setattr(gradient_tracing, "direct_cond_intermediates", contextlib.nullcontext)
        wrapped, _ = strict_fair_step(FAIR, subnet_loop=True, steps=2)
    assert direct.subnet_loop and wrapped.subnet_loop
    for a, b in zip(direct.variables, wrapped.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert any(not np.array_equal(a, b) for a, b in zip(direct.supernet.get_weights(), _INIT[(FAIR, 1)]))


def test_looped_step_sums_gradients_in_variables_with_the_carried_sums_bits():
    """Without a strategy the loop adds each path's gradients to variables made by `compile` (the loop carries
    only a counter and the losses); the carried sums (the form used under a strategy) give the same weights,
    optimizer slots and BN statistics, bit for bit, after two Adam steps. The sums are not the trainer's
    weights, so checkpoints keep their layout."""

    def two_steps(carried):
        net = new_supernet(FAIR, seed=1)
        trainer = SupernetTrainer(net, sampler=StrictFairSampler(FAIR, seed=4), subnet_loop=True)
        trainer.compile(optimizer=keras.optimizers.Adam(0.01))
        assert trainer._gradient_sums is not None
        sums = trainer._gradient_sums.values
        assert len(sums) == len(net.trainable_variables)
        assert not {id(v) for v in sums} & {id(v) for v in trainer.weights + trainer.variables}
        if carried:
            object.__setattr__(trainer, "_gradient_sums", None)
        with graph_options.graph_optimizations("fast"):
            trainer.fit(fixed_dataset(), epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
        assert trainer.train_step_traces == 1
        return trainer, sums

    summed, sums = two_steps(carried=False)
    carried, _ = two_steps(carried=True)
    for a, b in zip(summed.variables, carried.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert any(not np.array_equal(a, b) for a, b in zip(summed.supernet.get_weights(), _INIT[(FAIR, 1)]))
    assert any(np.abs(s.numpy()).max() > 0 for s in sums)  # the last step's summed gradients


@pytest.mark.slow
def test_looped_strict_fair_step_equals_one_tape_seven_paths():
    """As above on TINY's 7 paths, the default loop against one tape (the tape traces for ~90 s)."""
    looped, _ = strict_fair_step(TINY, subnet_loop=None)
    taped, _ = strict_fair_step(TINY, subnet_loop=False)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(looped.supernet.get_weights(), taped.supernet.get_weights()))
    assert diff <= 1e-5


# === BN recalibration ===


def test_bn_recalibration_on_a_scarlet_supernet():
    net = new_supernet(TINY, seed=2)
    randomize_batch_norm(net, seed=3)
    arch = ScarletArch(("K5E6", "id", "K3E3"))
    vector = TINY.to_vector(arch)
    on, off = split_gated(net, vector)
    assert [layer.name for layer in on] == ["l00_k5e6", "l01_els", "l02_k3e3"]
    assert isinstance(on[1], Stabilizer)
    not_run = {id(n) for layer in off for n in bn_layers(layer)}
    norms = bn_layers(net)
    assert 0 < len(not_run) < len(norms)
    before = [(n.moving_mean.numpy().copy(), n.moving_variance.numpy().copy()) for n in norms]
    weights = [v.numpy().copy() for v in net.trainable_variables]
    data = [batch(10), batch(11)]

    assert BatchNormCalibrator(net)(arch, data, num_batches=2) == 2
    for norm, (m0, v0) in zip(norms, before):
        if id(norm) in not_run:
            np.testing.assert_array_equal(norm.moving_mean.numpy(), m0, err_msg=norm.name)
            np.testing.assert_array_equal(norm.moving_variance.numpy(), v0, err_msg=norm.name)
        else:
            assert not np.array_equal(norm.moving_mean.numpy(), m0), norm.name
            assert not np.array_equal(norm.moving_variance.numpy(), v0), norm.name
    for v, w in zip(net.trainable_variables, weights):
        np.testing.assert_array_equal(v.numpy(), w, err_msg=v.path)

    # The stem BN now holds the average of the two batches' statistics (unbiased variance).
    means, variances = [], []
    for images, _ in data:
        z = common.call_padded(net.stem_conv, tf.constant(images)).numpy().reshape(-1, TINY.stem_channels)
        means.append(z.mean(0))
        variances.append(z.var(0, ddof=1))
    np.testing.assert_allclose(net.stem_bn.moving_mean.numpy(), np.mean(means, 0), atol=1e-5)
    np.testing.assert_allclose(net.stem_bn.moving_variance.numpy(), np.mean(variances, 0), rtol=1e-4)

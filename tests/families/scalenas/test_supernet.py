"""The supernet: one trace serves every arch, compute follows the subnet, config and .keras round trips."""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.arch import ArchError
from scalenas_tf.families.scalenas import cost
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.families.scalenas.supernet import ScaleNASSupernet
from scalenas_tf.families.scalenas.supernet import random_arch_vectors
from tests.helpers import randomize_batch_norm


@pytest.fixture(scope="module")
def small():
    space = ScaleNASSpace(width=8, num_modules=(1, 1, 1))
    net = ScaleNASSupernet(space, task="seg", num_classes=5)
    net.build((None, None, None, 3))
    return net


def test_one_trace_serves_fifty_archs(small):
    forward = tf.function(lambda images, vector: small(images, arch=vector, training=False))
    x = tf.zeros((1, 64, 64, 3))
    vectors = random_arch_vectors(small.space, 50, seed=0)
    assert len({v.tobytes() for v in vectors}) == 50
    outputs = [forward(x, tf.constant(v)) for v in vectors]
    assert forward.experimental_get_tracing_count() == 1
    assert all(o.shape == (1, 16, 16, 5) for o in outputs)


def test_arch_changes_the_output(small):
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    a = small(x, arch=small.space.smallest(), training=False).numpy()
    b = small(x, arch=small.space.largest(), training=False).numpy()
    assert np.abs(a - b).max() > 1e-3


def test_arch_none_is_largest(small):
    x = np.random.default_rng(1).normal(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(
        small(x, training=False).numpy(), small(x, arch=small.space.largest(), training=False).numpy()
    )


def test_bad_arch_is_rejected(small):
    with pytest.raises(ArchError, match="shape"):
        small(np.zeros((1, 64, 64, 3), "float32"), arch=np.zeros(3, "int32"))
    with pytest.raises(ArchError):
        small(np.zeros((1, 64, 64, 3), "float32"), arch=ScaleNASSpace(width=8).largest())


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="task"):
        ScaleNASSupernet(ScaleNASSpace(width=8), task="detection")
    with pytest.raises(ValueError, match="num_classes"):
        ScaleNASSupernet(ScaleNASSpace(width=8), task="seg", num_classes=0)
    with pytest.raises(TypeError, match="space"):
        ScaleNASSupernet("W32")


def test_training_mode_updates_only_the_chosen_blocks_statistics(small):
    """Only chosen blocks run: BN statistics of blocks outside the arch stay untouched in training mode."""
    space = small.space
    arch = space.smallest()
    unused = small.hr_modules[0].block(0, space.depth_choices[-1] - 1).bn1
    used = small.hr_modules[0].block(0, 0).bn1
    before_unused, before_used = unused.moving_mean.numpy().copy(), used.moving_mean.numpy().copy()
    x = np.random.default_rng(2).normal(size=(2, 64, 64, 3)).astype("float32")
    step = tf.function(lambda images, vector: small(images, arch=vector, training=True))
    step(tf.constant(x), tf.constant(space.to_vector(arch)))
    np.testing.assert_array_equal(unused.moving_mean.numpy(), before_unused)
    assert np.abs(used.moving_mean.numpy() - before_used).max() > 0


def test_get_config_round_trip(small):
    config = small.get_config()
    clone = ScaleNASSupernet.from_config(config)
    assert clone.get_config() == config
    assert clone.space == small.space


def test_keras_save_and_load_round_trip(tmp_path, small):
    randomize_batch_norm(small, seed=3)
    x = np.random.default_rng(3).normal(size=(1, 64, 64, 3)).astype("float32")
    arch = small.space.sample(np.random.default_rng(4))
    path = tmp_path / "supernet.keras"
    small.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ScaleNASSupernet)
    np.testing.assert_allclose(
        loaded(x, arch=arch, training=False).numpy(), small(x, arch=arch, training=False).numpy(), atol=1e-6
    )


def test_compute_follows_the_subnet():
    """Inside one traced function the smallest arch runs measurably faster than the largest.

    Timing with a wide margin (the MAC ratio is 0.45): min over repeats, timed in alternating rounds so
    that a burst of load on the machine slows both archs, not only the one being timed.
    """
    # A light stem so that the searchable modules dominate the MACs.
    space = ScaleNASSpace(width=32, num_modules=(1, 1, 1), stem_channels=16, layer1_blocks=1)
    net = ScaleNASSupernet(space, task="seg", num_classes=5)
    net.build((None, None, None, 3))
    forward = tf.function(lambda images, vector: net(images, arch=vector, training=False))
    x = tf.random.normal((2, 128, 128, 3))
    small_v, large_v = (tf.constant(space.to_vector(a)) for a in (space.smallest(), space.largest()))

    times = {"small": [], "large": []}
    for vector in (small_v, large_v):
        forward(x, vector).numpy()  # warm up
    for _ in range(7):
        for key, vector in (("small", small_v), ("large", large_v)):
            start = time.perf_counter()
            forward(x, vector).numpy()
            times[key].append(time.perf_counter() - start)
    t_small, t_large = min(times["small"]), min(times["large"])
    ratio = (
        cost.count(space, space.smallest(), "seg", 5, (128, 128)).macs
        / cost.count(space, space.largest(), "seg", 5, (128, 128)).macs
    )
    assert ratio < 0.5
    assert forward.experimental_get_tracing_count() == 1
    assert t_small < 0.8 * t_large, (t_small, t_large)


# === Space options: fusion upsampling and BN momentum ===

TINY = dict(width=4, num_modules=(1, 1, 1), stem_channels=8, layer1_blocks=1)


def _batch_norms(model):
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


@pytest.mark.parametrize("task, num_classes", [("seg", 5), ("pose", 4), ("cls", 7)])
def test_bn_momentum_reaches_every_batch_norm(task, num_classes):
    default = ScaleNASSupernet(ScaleNASSpace(**TINY), task=task, num_classes=num_classes)
    assert {bn.momentum for bn in _batch_norms(default)} == {0.9}
    net = ScaleNASSupernet(ScaleNASSpace(**TINY, bn_momentum=0.99), task=task, num_classes=num_classes)
    norms = _batch_norms(net)
    assert len(norms) == len(_batch_norms(default)) > 50
    assert {bn.momentum for bn in norms} == {0.99}


def test_fusion_upsampling_reaches_every_edge():
    net = ScaleNASSupernet(ScaleNASSpace(**TINY, fusion_upsampling="bilinear"), task="seg", num_classes=5)
    assert {e.upsampling for m in net.hr_modules for e in m.edges} == {"bilinear"}
    default = ScaleNASSupernet(ScaleNASSpace(**TINY), task="seg", num_classes=5)
    assert {e.upsampling for m in default.hr_modules for e in m.edges} == {"nearest"}


def test_space_options_survive_config_and_keras_file(tmp_path):
    space = ScaleNASSpace(**TINY, fusion_upsampling="bilinear", bn_momentum=0.99)
    net = ScaleNASSupernet(space, task="seg", num_classes=5)
    net.build((None, None, None, 3))
    randomize_batch_norm(net, seed=5)
    config = net.get_config()
    assert config["space"]["fusion_upsampling"] == "bilinear" and config["space"]["bn_momentum"] == 0.99
    assert ScaleNASSupernet.from_config(config).space == space

    # A config stored before the fields existed loads as nearest and 0.9.
    old = dict(
        config, space={k: v for k, v in config["space"].items() if k not in ("fusion_upsampling", "bn_momentum")}
    )
    assert ScaleNASSupernet.from_config(old).space == ScaleNASSpace(**TINY)

    x = np.random.default_rng(6).normal(size=(1, 36, 52, 3)).astype("float32")  # odd branch sizes
    arch = space.sample(np.random.default_rng(7))
    path = tmp_path / "supernet.keras"
    net.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.space == space
    assert {bn.momentum for bn in _batch_norms(loaded)} == {0.99}
    np.testing.assert_allclose(
        loaded(x, arch=arch, training=False).numpy(), net(x, arch=arch, training=False).numpy(), atol=1e-6
    )


def test_bilinear_supernet_trains_in_one_trace():
    """A compiled training step with bilinear fusion: one trace for several archs and input sizes,
    gradients reach the low-to-high edges' convs."""
    space = ScaleNASSpace(**TINY, fusion_upsampling="bilinear")
    net = ScaleNASSupernet(space, task="seg", num_classes=5)
    net.build((None, None, None, 3))
    edge = net.hr_modules[0].edge(0, space.max_steps - 1, 1)

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((None,), tf.int32)])
    def step(images, vector):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(net(images, arch=vector, training=True)))
        return tape.gradient(loss, edge.convs[0].kernel)

    largest = tf.constant(space.to_vector(space.largest()))
    for size in ((36, 52), (32, 32)):
        grad = step(tf.random.normal((2, *size, 3)), largest)
        assert np.abs(grad.numpy()).max() > 0
    step(tf.random.normal((2, 32, 32, 3)), tf.constant(space.to_vector(space.smallest())))
    assert step.experimental_get_tracing_count() == 1

"""A fixed arch (known while tracing) traces as a plain graph: no `tf.cond`, same outputs, same checks.

The in-place teacher runs the largest arch every step; with the arch a constant, the layers branch in
Python instead of building a cond per block, edge or choice (and its gradient). A sampled or fed arch
(a tensor only known when the step runs) still goes through the conds, with one trace for every arch.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.arch import ArchError
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.families.scalenas.supernet import ScaleNASSupernet
from scalenas_tf.families.scarlet.space import ScarletSpace
from scalenas_tf.families.scarlet.supernet import ScarletSupernet
from scalenas_tf.training import compile_stats
from scalenas_tf.training.sampler import FixedSampler
from scalenas_tf.training.trainer import SupernetTrainer
from tests.helpers import randomize_batch_norm

SCALENAS_SPACE = ScaleNASSpace(width=4, num_modules=(1, 1, 1), stem_channels=8, layer1_blocks=1, depth_choices=(1, 2))
SCARLET_SPACE = ScarletSpace(
    variant="s1", channels=(8, 8, 16, 16), strides=(1, 1, 2, 1), stem_channels=8, first_channels=8, head_channels=24
)


def _scalenas():
    return ScaleNASSupernet(SCALENAS_SPACE, task="seg", num_classes=3), (32, 32)


def _scarlet():
    return ScarletSupernet(SCARLET_SPACE, num_classes=3), (16, 16)


FAMILIES = {"scalenas": _scalenas, "scarlet": _scarlet}


def _built(family):
    keras.utils.set_random_seed(0)
    net, size = FAMILIES[family]()
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype("float32")
    net(x, training=False)
    randomize_batch_norm(net, seed=1)
    return net, x


def _closed_over(net, arch, training):
    """A tf.function whose arch is a Python closure (a default argument would become a traced input)."""

    def forward(images):
        return net(images, arch=arch, training=training)

    return tf.function(forward)


def _if_ops(fn, *args):
    return compile_stats.graph_stats(fn.get_concrete_function(*args))["if_ops"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_known_arch_builds_no_cond_and_computes_what_the_fed_arch_does(family):
    net, x = _built(family)
    space = net.space
    arch = space.sample(np.random.default_rng(3))
    vector = space.to_vector(arch)

    fed = tf.function(lambda images, v: net(images, arch=v, training=False))
    want = fed(x, tf.constant(vector)).numpy()
    assert _if_ops(fed, x, tf.constant(vector)) > 0  # the fed arch goes through the conds

    for known in (arch, vector, tf.constant(vector)):
        fixed = _closed_over(net, known, training=False)
        assert _if_ops(fixed, x) == 0, type(known).__name__
        # Different graphs, so grappler may fuse differently: equal to float32 rounding.
        np.testing.assert_allclose(fixed(x).numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_known_arch_trains_the_same_batch_norm_statistics(family):
    """Training mode: the same outputs and the same BN moving statistics as the fed arch, for run and unrun layers."""
    results = []
    for how in ("fed", "known"):
        net, x = _built(family)
        vector = net.space.to_vector(net.space.sample(np.random.default_rng(4)))
        if how == "fed":
            fn = tf.function(lambda images, v, net=net: net(images, arch=v, training=True))
            out = fn(x, tf.constant(vector))
        else:
            out = _closed_over(net, vector, training=True)(x)
        stats = [w.numpy() for w in net.non_trainable_weights]
        results.append((out.numpy(), stats))
    (out_fed, stats_fed), (out_known, stats_known) = results
    np.testing.assert_allclose(out_known, out_fed, rtol=1e-5, atol=1e-5)
    assert len(stats_fed) == len(stats_known)
    for a, b in zip(stats_known, stats_fed):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_known_invalid_arch_is_refused_while_tracing_with_the_module_named():
    net, x = _built("scalenas")
    vector = SCALENAS_SPACE.to_vector(SCALENAS_SPACE.largest()).copy()
    vector[0] = 7  # module 0, branch 0: depth 7 is not a choice
    fn = tf.function(lambda images: net(images, arch=tf.constant(vector), training=False))
    with pytest.raises(ArchError, match=r"module 0 .*branch 0: depth 7 is not in depth_choices"):
        fn(x)


def test_gated_layers_of_a_known_arch_are_bool_tensors():
    net, _ = _built("scalenas")
    smallest = SCALENAS_SPACE.smallest()
    gated = net.gated_layers(smallest)
    assert gated and all(tf.is_tensor(on) and on.dtype == tf.bool for _, on in gated)
    fed = net.gated_layers(tf.constant(SCALENAS_SPACE.to_vector(smallest)))
    assert [bool(on) for _, on in gated] == [bool(on) for _, on in fed]


def test_inplace_teacher_step_has_half_the_conds():
    """The teacher's largest arch is a constant: only the sampled student's blocks and edges are conds."""
    counts = {}
    for teacher in (None, "inplace"):
        net, x = _built("scalenas")
        trainer = SupernetTrainer(net, sampler=FixedSampler(SCALENAS_SPACE, SCALENAS_SPACE.smallest()), teacher=teacher)
        trainer.compile(optimizer=keras.optimizers.SGD(0.01))
        targets = np.zeros((2, 32, 32), "int32")
        counts[teacher] = compile_stats.graph_stats(
            tf.function(trainer.train_step).get_concrete_function((tf.constant(x), tf.constant(targets)))
        )["if_ops"]
    # Without a teacher the sampled student's conds and their sparse-update conds; in place, the student's conds
    # only (its updates are dense: the largest arch runs every choice), the teacher none.
    assert 0 < counts["inplace"] < counts[None]


def test_a_choice_layer_refuses_a_known_choice_it_does_not_offer():
    from scalenas_tf.families.scarlet.choice_layer import ChoiceLayer

    layer = ChoiceLayer(8, 8, 1, ("K3E3", "id"), (0, 12), identity_op="skip", name="l0")
    with pytest.raises(ValueError, match=r"l0: choice id 5 is not one of this layer's \(0, 12\)"):
        layer(np.zeros((1, 4, 4, 8), "float32"), np.int32(5))
    np.testing.assert_array_equal(layer(np.ones((1, 4, 4, 8), "float32"), np.int32(12)), np.ones((1, 4, 4, 8)))

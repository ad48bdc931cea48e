"""The ScaleNet super-supernet: parity with extraction, one trace for every arch, sparse updates and BN
recalibration on sliced weights, and the cost counter against the extracted model."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.arch import ArchError
from scalenas_tf.families.scalenet import cost
from scalenas_tf.families.scalenet import subnet
from scalenas_tf.families.scalenet.elastic import ElasticMBConv
from scalenas_tf.families.scalenet.space import ScaleNetArch
from scalenas_tf.families.scalenet.space import ScaleNetSpace
from scalenas_tf.families.scalenet.supernet import ScaleNetSupernet
from scalenas_tf.training import sparse_update
from scalenas_tf.training.bn_calibration import BatchNormCalibrator
from tests.helpers import SMALL_SCALENET_SPACE
from tests.helpers import assert_group_call_is_the_chosen_ops_call
from tests.helpers import randomize_batch_norm

SPACE = SMALL_SCALENET_SPACE
NUM_CLASSES = 5


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(0)
    supernet = ScaleNetSupernet(SPACE, num_classes=NUM_CLASSES)
    supernet.build()
    randomize_batch_norm(supernet, seed=1, images=_images(40, batch=16))
    return supernet


def assert_parity(got, want, message="", tolerance=1e-5):
    """<= `tolerance` x max(1, the logits' scale)."""
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, atol=tolerance * scale, rtol=0, err_msg=message)


def _images(size, seed=0, batch=2):
    return np.random.default_rng(seed).normal(size=(batch, size, size, 3)).astype("float32")


def _archs(n, seed=3):
    rng = np.random.default_rng(seed)
    archs = [SPACE.largest(), SPACE.smallest()] + [SPACE.sample(rng) for _ in range(n)]
    # A base with a 1-block stage that depth scaling doubles, at a mid strategy.
    archs.append(
        ScaleNetArch((("K3E1+SE",), ("K5E6+SE",), ("K7E6+SE", "K3E6+SE")) + (("K3E6+SE",),) * 4, 1.2, 1.25, 36)
    )
    return archs


def test_structure_follows_the_space(net):
    assert net.tables.slots == (2, 3, 3, 2, 2, 2, 2)  # ceil(n_max * 1.5)
    assert len(net.ops[2]) == 3 and len(net.ops[2][0]) == 3  # stage 3: 3 slots x 3 choices
    # Capacities: the widest strategy's widths (stem ceil(8 * 1.5) = 12; hidden ceil(round(16 * 6) * 1.5)).
    assert net.stem_conv.filters == 12
    op = net.ops[2][1][0]
    assert (op.in_channels, op.out_channels, op.hidden, op.squeeze) == (24, 24, 144, 36)
    assert op.residual and not net.ops[2][0][0].residual


@pytest.mark.parametrize("strides", [1, 2])
def test_a_slots_kernel_choices_run_as_one_computation_with_the_chosen_ops_arithmetic(strides):
    """A group call (one computation, the chosen op's weights gathered, the depthwise conv switched by
    kernel size) equals calling the chosen op alone bit for bit: output, every gradient, and the BN
    statistics (the chosen op's moved, the others' untouched), at widths below the capacities."""
    x = tf.constant(_images(9, seed=2, batch=3)[..., :1].repeat(6, axis=-1) * np.arange(1, 7, dtype="float32"))
    # Widths below the capacities 8, 24, 6.

    def ops():
        return [
            ElasticMBConv(8, 8, 24, 6, kernel_size=k, expand=3, use_se=True, strides=strides, residual=strides == 1)
            for k in (3, 5, 7)
        ]

    assert_group_call_is_the_chosen_ops_call(ops, x, out_channels=6, hidden=18, squeeze=4)


def test_paper_choices_run_grouped_by_expand_and_se_with_one_trace():
    """The `paper` choices (K3/5/7 x E3/6 x SE or not) form 4 groups per slot (a switch over groups, each one
    computation over its kernels): the traced supernet agrees with the arch known while tracing."""
    space = dataclasses.replace(SPACE, choices="paper")
    keras.utils.set_random_seed(11)
    net = ScaleNetSupernet(space, num_classes=NUM_CLASSES)
    net.build()
    assert net.groups[2][1] == ((0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11))
    assert net.groups[0][0] == ((0, 1, 2), (3, 4, 5))  # stage 1: E1, SE or not
    fn = tf.function(
        lambda x, v: net(x, arch=v, training=False),
        input_signature=[tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((space.vector_size,), tf.int32)],
    )
    rng = np.random.default_rng(12)
    for i in range(4):
        arch = space.sample(rng)
        x = _images(arch.resolution, seed=i)
        want = net(x, arch=arch, training=False).numpy()
        assert_parity(fn(x, tf.constant(space.to_vector(arch))).numpy(), want, space.describe(arch), tolerance=5e-5)
    assert fn.experimental_get_tracing_count() == 1


def test_parity_of_the_traced_supernet_static_arch_and_extraction(net):
    """The extracted plain model equals the supernet run with the arch known (<= 1e-5); the traced
    supernet with the arch fed as a tensor agrees within float32 kernel rounding: the random largest
    subnet's logits reach ~60, and there the same static code run eagerly and traced already differs by
    ~1e-3 (2e-5 of the scale, measured), so that comparison allows 5e-5 of the scale."""
    fn = tf.function(
        lambda x, v: net(x, arch=v, training=False),
        input_signature=[tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((SPACE.vector_size,), tf.int32)],
    )
    for i, arch in enumerate(_archs(4)):
        x = _images(arch.resolution, seed=i)
        want = fn(x, tf.constant(SPACE.to_vector(arch))).numpy()
        assert np.abs(want).max() > 0.05  # not vacuous
        static = net(x, arch=arch, training=False).numpy()
        extracted = subnet.extract(net, arch).model
        assert_parity(static, want, SPACE.describe(arch), tolerance=5e-5)
        assert_parity(extracted(x, training=False).numpy(), static, SPACE.describe(arch))
    assert fn.experimental_get_tracing_count() == 1


def test_input_resized_to_the_arch_resolution(net):
    arch = _archs(0)[-1]  # 36 px
    x = _images(40, seed=9)
    resized = tf.image.resize(x, (36, 36)).numpy()
    want = net(resized, arch=arch, training=False).numpy()
    assert_parity(net(x, arch=arch, training=False).numpy(), want)
    vector = tf.constant(SPACE.to_vector(arch))
    assert_parity(net(x, arch=vector, training=False).numpy(), want)
    model = subnet.extract(net, arch, input_size=(40, 40)).model
    assert model.input_shape == (None, 40, 40, 3)
    assert_parity(model(x, training=False).numpy(), want)
    no_resize = ScaleNetSupernet(SPACE, num_classes=NUM_CLASSES, resize=False)
    assert no_resize.get_config()["resize"] is False


def test_one_trace_serves_every_arch_and_size_and_compute_follows_the_subnet(net):
    fn = tf.function(
        lambda x, v: net(x, arch=v, training=False),
        input_signature=[tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((SPACE.vector_size,), tf.int32)],
    )
    for size, arch in zip((32, 40, 44, 36, 32, 40), _archs(4)):
        fn(_images(size), tf.constant(SPACE.to_vector(arch)))
    assert fn.experimental_get_tracing_count() == 1
    # Compute follows the subnet: the counter's MACs (equal to the extracted model's, below) differ 10x.
    small, large = (cost.count(SPACE, a, NUM_CLASSES).macs for a in (SPACE.smallest(), SPACE.largest()))
    assert large > 10 * small


def test_slots_of_one_config_share_one_traced_function(net):
    """Each slot's computation is traced (with its gradient) once per op config and input signature
    (`common.gate_layers`), not once per slot: the slots a stage adds beyond its first share one function."""

    @tf.function(autograph=False)
    def grads(x, v):
        with tf.GradientTape() as tape:
            y = net(x, arch=v, training=True)
        return tape.gradient(tf.reduce_sum(y), net.trainable_variables)

    vector = tf.constant(SPACE.to_vector(SPACE.largest()))
    graph_def = grads.get_concrete_function(tf.constant(_images(40)), vector).graph.as_graph_def()
    shared = [f.signature.name for f in graph_def.library.function if f.signature.name.startswith("__inference_gated")]
    # One per (always run or gated, the slot's op configs): a slot's input signature follows its first op's config.
    kinds = set()
    for i, stage in enumerate(net.ops):
        for k, ops in enumerate(stage):
            configs = [{key: value for key, value in op.get_config().items() if key != "name"} for op in ops]
            kinds.add((k < SPACE.min_blocks[i], json.dumps(configs, sort_keys=True)))
    assert len(shared) == len(kinds) < sum(net.tables.slots), (shared, len(kinds))


def test_counter_equals_the_extracted_models_weights(net):
    for arch in _archs(3):
        model = subnet.extract(net, arch).model
        counted = cost.count(SPACE, arch, NUM_CLASSES)
        assert model.count_params() == counted.params_with_bn_statistics, SPACE.describe(arch)


def test_invalid_archs_are_refused(net):
    vector = SPACE.to_vector(SPACE.largest())
    bad = vector.copy()
    bad[1] = 3  # stage 2 allows 1..2 blocks
    with pytest.raises(ArchError, match=r"blocks of stage 2\) = 3"):
        net(_images(32), arch=bad)
    fn = tf.function(lambda v: net(_images(32), arch=v, training=False))
    with pytest.raises(tf.errors.InvalidArgumentError, match="ScaleNet arch vector outside the space"):
        fn(tf.constant(bad))
    with pytest.raises(ValueError, match="path_generation='scalenet' and spatial='ceil'"):
        ScaleNetSupernet(ScaleNetSpace(spatial="floor"))
    with pytest.raises(ValueError, match="must be 'cls'"):
        ScaleNetSupernet(SPACE, task="seg", num_classes=3)
    with pytest.raises(ValueError, match=r"stage 2 has 4 blocks; the supernet has 3 slots"):
        subnet.extract(net, ScaleNetArch(SPACE.largest().base, 2.0, 1.0, 32))
    with pytest.raises(ValueError, match=r"width 1.6 exceeds the supernet's widest 1.5"):
        subnet.extract(net, ScaleNetArch(SPACE.largest().base, 1.0, 1.6, 32))


def _masks(net, arch):
    """`{variable path: bool array of the variable's shape}` of what `arch` reads."""
    return {v.path: np.broadcast_to(np.asarray(m), v.shape) for v, m in net.channel_masks(arch)}


def _step(net, optimizer, arch, x, y):
    vector = tf.constant(SPACE.to_vector(arch))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = net(x, arch=vector, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        variables = net.trainable_variables
        grads = tape.gradient(loss, variables)
        sparse_update.apply_gradients(
            optimizer, grads, variables, net.gated_layers(vector), masks=net.channel_masks(vector)
        )

    step()


@pytest.mark.parametrize("optimizer_name", ["adam", "sgd"])
def test_sparse_updates_leave_unread_channels_and_unrun_ops_untouched(optimizer_name):
    keras.utils.set_random_seed(4)
    net = ScaleNetSupernet(SPACE, num_classes=NUM_CLASSES)
    net.build()
    optimizer = keras.optimizers.Adam(1e-2) if optimizer_name == "adam" else keras.optimizers.SGD(1e-2, momentum=0.9)
    optimizer.build(net.trainable_variables)
    rng = np.random.default_rng(0)
    x, y = _images(36, batch=4), rng.integers(0, NUM_CLASSES, 4)
    # Warm the slots with the largest arch so that momentum would move untouched entries.
    _step(net, optimizer, SPACE.largest(), x, y)
    arch = _archs(0)[-1]
    masks = _masks(net, arch)
    slots = sparse_update.slot_map(optimizer, net.trainable_variables)
    before = {v.path: np.array(v) for v in net.trainable_variables}
    slot_before = {s.path: np.array(s) for v in net.trainable_variables for s in slots[id(v)]}
    _step(net, optimizer, arch, x, y)
    moved = 0
    for v in net.trainable_variables:
        if v.path not in masks:
            continue  # the classifier: read whole by every arch
        unread = ~masks[v.path]
        after = np.array(v)
        np.testing.assert_array_equal(after[unread], before[v.path][unread], err_msg=v.path)
        for s in slots[id(v)]:
            np.testing.assert_array_equal(np.array(s)[unread], slot_before[s.path][unread], err_msg=s.path)
        moved += int(np.any(after[~unread] != before[v.path][~unread]))
    assert moved > 20  # what the arch read did train
    # Some entries are unread in every kind of way: an op not run, a slot beyond the depth, channels
    # beyond the width.
    unrun = [op for op, on in net.gated_layers(arch) if not bool(on)]
    assert unrun and not masks[unrun[0].dw_kernel.path].any()
    partial = masks[net.stem_conv.kernel.path]
    assert partial.any() and not partial.all()


def test_bn_recalibration_touches_exactly_what_the_arch_reads(net):
    arch = _archs(0)[-1]
    masks = _masks(net, arch)
    norms = [n for n in net._flatten_layers(include_self=False) if isinstance(n, keras.layers.BatchNormalization)]
    before = {n.moving_mean.path: np.array(n.moving_mean) for n in norms}
    data = [_images(36, seed=s, batch=4) for s in range(3)]
    BatchNormCalibrator(net)(arch, data, num_batches=3)
    changed = 0
    for n in norms:
        mean = np.array(n.moving_mean)
        read = masks.get(n.moving_mean.path, np.ones(mean.shape, bool))
        np.testing.assert_array_equal(mean[~read], before[n.moving_mean.path][~read], err_msg=n.name)
        changed += int(np.any(mean[read] != before[n.moving_mean.path][read]))
    assert changed > 10


def test_trainer_fits_every_strategy_in_one_trace_with_sparse_updates():
    """`SupernetTrainer` over the super-supernet: HSS draws bases, depths, widths and resolutions in one
    compiled step; with a fixed arch, the entries it does not read stay bit-exact through `fit`."""
    from scalenas_tf.families.scalenet.samplers import HierarchicalSampler
    from scalenas_tf.training.sampler import FixedSampler
    from scalenas_tf.training.trainer import SupernetTrainer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 40, 40, 3)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, 16)
    keras.utils.set_random_seed(5)
    net = ScaleNetSupernet(SPACE, num_classes=NUM_CLASSES)
    trainer = SupernetTrainer(net, sampler=HierarchicalSampler(SPACE, seed=1), teacher=None, distill_weight=0.0)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    trainer.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert trainer.train_step_traces == 1
    arch = _archs(0)[-1]
    fixed = SupernetTrainer(net, sampler=FixedSampler(SPACE, arch), teacher=None, distill_weight=0.0)
    fixed.compile(optimizer=keras.optimizers.Adam(1e-3))
    masks = _masks(net, arch)
    before = {v.path: np.array(v) for v in net.trainable_variables}
    fixed.fit(x, y, batch_size=4, epochs=1, verbose=0)
    for v in net.trainable_variables:
        if v.path in masks:
            np.testing.assert_array_equal(np.array(v)[~masks[v.path]], before[v.path][~masks[v.path]], err_msg=v.path)


@pytest.mark.slow  # about 10 minutes on 2 cores: the step traces once per replica
def test_mirrored_strategy_two_replicas_equal_one_on_identical_examples():
    """Under MirroredStrategy (2 logical CPUs) the sliced-width step equals one replica's when both
    replicas see the same examples, and unread entries (and momentum slots) stay bit-exact. SGD with
    momentum: Adam's first step, lr * g / (|g| + eps), turns the float noise of near-zero gradients into
    differences of order lr, so it cannot be compared this way."""
    from scalenas_tf.training.sampler import FixedSampler
    from scalenas_tf.training.trainer import SupernetTrainer

    arch = _archs(0)[-1]
    x = np.repeat(_images(36, seed=3, batch=1), 4, axis=0)
    y = np.zeros(4, np.int64)

    def one_step(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(6)
            net = ScaleNetSupernet(SPACE, num_classes=NUM_CLASSES)
            trainer = SupernetTrainer(net, sampler=FixedSampler(SPACE, arch), teacher=None, distill_weight=0.0)
            trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        before = [np.array(v) for v in net.trainable_variables]
        trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1, verbose=0)
        return net, before, [np.array(v) for v in net.trainable_variables]

    net, init, one = one_step(tf.distribute.get_strategy())
    _, init_two, two = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    for a, b in zip(init, init_two):
        np.testing.assert_array_equal(a, b)
    assert max(float(np.abs(a - b).max()) for a, b in zip(one, init)) > 1e-3
    assert max(float(np.abs(a - b).max()) for a, b in zip(one, two)) < 1e-5
    masks = _masks(net, arch)
    for v, before, after in zip(net.trainable_variables, init_two, two):
        if v.path in masks:
            np.testing.assert_array_equal(after[~masks[v.path]], before[~masks[v.path]], err_msg=v.path)


def test_training_gradients_equal_the_extracted_models():
    """In training mode (batch statistics) the supernet's loss and gradients for an arch equal the
    extracted static model's on the resized input; entries outside the arch's widths get zero."""
    keras.utils.set_random_seed(8)
    net = ScaleNetSupernet(SPACE, num_classes=NUM_CLASSES)
    net.build()
    x, y = _images(40, seed=4, batch=4), np.array([0, 1, 2, 3])
    for arch in _archs(1, seed=6)[2:]:
        model = subnet.extract(net, arch).model
        resized = tf.image.resize(x, (arch.resolution, arch.resolution))
        with tf.GradientTape() as tape:
            out = net(x, arch=tf.constant(SPACE.to_vector(arch)), training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, out, from_logits=True))
        grads = dict(zip([v.path for v in net.trainable_variables], tape.gradient(loss, net.trainable_variables)))
        with tf.GradientTape() as tape:
            out = model(resized, training=True)
            static_loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, out, from_logits=True))
        static = dict(
            zip([v.path for v in model.trainable_variables], tape.gradient(static_loss, model.trainable_variables))
        )
        assert abs(float(loss) - float(static_loss)) < 1e-5
        for layer, mine in (("stem_conv", net.stem_conv.kernel), ("classifier", net.classifier.kernel)):
            theirs = static[model.get_layer(layer).kernel.path].numpy()
            got = grads[mine.path].numpy()
            used = got[..., : theirs.shape[-1]] if layer == "stem_conv" else got
            scale = float(np.abs(theirs).max())
            np.testing.assert_allclose(used, theirs, atol=1e-4 * scale, rtol=0, err_msg=layer)
            assert not np.any(got[..., theirs.shape[-1] :]) if layer == "stem_conv" else True

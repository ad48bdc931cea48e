"""Extraction: the static Keras subnet computes what the supernet computes for that arch, with the counted params."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from scalenas_tf.arch import ArchError
from scalenas_tf.families.scalenas import cost
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.families.scalenas.supernet import ScaleNASSupernet
from scalenas_tf.models.extraction import extract_subnet
from tests.helpers import randomize_batch_norm

REPO = pathlib.Path(__file__).resolve().parents[3]
MASKS = REPO.parent / "shared" / "fixtures" / "scalenas_masks"
SIZE = (64, 96)
TASKS = {"seg": 5, "pose": 4, "cls": 7}


@pytest.fixture(scope="module", params=sorted(TASKS))
def supernet(request):
    task = request.param
    space = ScaleNASSpace(width=8, num_modules=(1, 1, 1), multi_scale_output=task != "pose")
    net = ScaleNASSupernet(space, task=task, num_classes=TASKS[task])
    net.build((None, None, None, 3))
    randomize_batch_norm(net, images=_images(9))
    return net


def _archs(space, n_random=1):
    rng = np.random.default_rng(7)
    named = [space.largest(), space.smallest(), space.hrnet()]
    return named + [space.sample(rng, fusion_prob=0.5) for _ in range(n_random)]


def _images(seed=0, size=SIZE):
    return np.random.default_rng(seed).normal(size=(2, *size, 3)).astype("float32")


def test_extracted_matches_supernet_with_counted_params(supernet):
    """Named points and a random arch: same outputs (eager, float32, 1e-5), counted params, standard layers."""
    x = _images()
    space = supernet.space
    for arch in _archs(space):
        static = extract_subnet(supernet, arch, input_size=SIZE)
        want = supernet(x, arch=arch, training=False).numpy()
        got = static(x, training=False).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)

        counted = cost.count(space, arch, supernet.task, supernet.num_classes, SIZE)
        moving = sum(int(np.prod(w.shape)) for w in static.non_trainable_weights)
        assert static.count_params() == counted.keras_count_params
        assert static.count_params() - moving == counted.live_params
        if supernet.task != "pose":
            assert counted.live_params == counted.params
        for layer in static.layers:
            assert type(layer).__module__.startswith("keras."), type(layer)


def test_extracted_matches_supernet_in_one_traced_function(supernet):
    """The compiled supernet (one trace for every arch) agrees with each static model.

    1e-4, not 1e-5: in a graph, grappler/oneDNN fuse conv + BN + ReLU and reorder float sums
    (measured ~3e-5 on O(1) outputs); the eager comparison above is exact.
    """
    x = tf.constant(_images(1))
    forward = tf.function(lambda images, vector: supernet(images, arch=vector, training=False))
    space = supernet.space
    for arch in [space.smallest(), space.hrnet(), space.sample(np.random.default_rng(11))]:
        static = extract_subnet(supernet, arch, input_size=SIZE)
        want = forward(x, tf.constant(space.to_vector(arch))).numpy()
        np.testing.assert_allclose(static(x, training=False).numpy(), want, atol=1e-4, rtol=0)
    assert forward.experimental_get_tracing_count() == 1


def test_extraction_copies_weights_instead_of_sharing(supernet):
    arch = supernet.space.smallest()
    static = extract_subnet(supernet, arch, input_size=SIZE)
    x = _images(2)
    before = static(x, training=False).numpy()
    kernel = supernet.stem.conv1.kernel
    kernel.assign(kernel + 1.0)
    try:
        np.testing.assert_array_equal(static(x, training=False).numpy(), before)
    finally:
        kernel.assign(kernel - 1.0)


def test_extract_rejects_bad_input(supernet):
    with pytest.raises(ArchError, match="modules"):
        extract_subnet(supernet, ScaleNASSpace(width=8).hrnet(), input_size=SIZE)
    with pytest.raises(ValueError, match="input_size"):
        extract_subnet(supernet, supernet.space.hrnet(), input_size=(64,))


@pytest.mark.parametrize("mask", ["seg_w32_S1", "seg_w48_S4"])
def test_official_masks_extract_with_counted_params(mask):
    """The released masks at a CPU-size width: extracted count_params equals the counter."""
    path = MASKS / f"{mask}.json"
    if not path.exists():
        pytest.skip(f"fixture not found: {path}")
    space = ScaleNASSpace(width=8)
    arch = space.load_official_mask(path)
    net = ScaleNASSupernet(space, task="seg", num_classes=19)
    static = extract_subnet(net, arch, input_size=(64, 64))
    counted = cost.count(space, arch, "seg", 19, (64, 64))
    assert static.count_params() == counted.keras_count_params
    assert counted.live_params == counted.params


@pytest.mark.slow
def test_extracted_model_loads_and_serves_without_scalenas_tf(tmp_path):
    space = ScaleNASSpace(width=8, num_modules=(1, 1, 1))
    net = ScaleNASSupernet(space, task="seg", num_classes=3)
    net.build((None, None, None, 3))
    randomize_batch_norm(net)
    arch = space.sample(np.random.default_rng(0))
    static = extract_subnet(net, arch, input_size=(64, 64))
    x = _images(5, (64, 64))
    path = tmp_path / "subnet.keras"
    static.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", net(x, arch=arch, training=False).numpy())
    script = (
        "import sys, numpy as np, keras\n"
        f"m = keras.saving.load_model({str(path)!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r}); want = np.load({str(tmp_path / 'want.npy')!r})\n"
        "diff = float(np.abs(m(x, training=False).numpy() - want).max())\n"
        "assert 'scalenas_tf' not in sys.modules\n"
        "print(diff)\n"
    )
    env = dict(os.environ, PYTHONPATH="", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize(
    "config,arch,params",
    [
        ("configs/scalenas_pose.py:w32", "hrnet", 28_536_113),
        ("configs/scalenas_seg.py:w32", str(MASKS / "seg_w32_S1.json"), None),
        ("configs/scalenas_seg.py:w48", str(MASKS / "seg_w48_S4.json"), None),
        ("configs/scalenas_cls.py:w18", "hrnet", 21_299_004),
        ("configs/scalenas_pose.py:w32", "largest", None),
    ],
)
def test_cost_binary_extract_full_size(config, arch, params):
    """bin/cost.py --extract at full size: keras_params == params (the published convention)."""
    flag = f"--official_mask={arch}" if arch.endswith(".json") else f"--arch={arch}"
    if arch.endswith(".json") and not os.path.exists(arch):
        pytest.skip(f"fixture not found: {arch}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "bin/cost.py", f"--config={config}", flag, "--extract"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["keras_params"] == summary["params"] == summary["live_params"]
    if params is not None:
        assert summary["params"] == params


# === HRNetV2 segmentation options: bilinear fusion, BN momentum 0.99 ===

ODD_SIZE = (60, 84)  # branches 15x21, 8x11, 4x6, 2x3: no upsampled size is a factor of its source


@pytest.fixture(scope="module")
def bilinear():
    space = ScaleNASSpace(width=8, num_modules=(1, 1, 1), fusion_upsampling="bilinear", bn_momentum=0.99)
    net = ScaleNASSupernet(space, task="seg", num_classes=5)
    net.build((None, None, None, 3))
    randomize_batch_norm(net, images=_images(9, ODD_SIZE))
    return net


def _batch_norms(model):
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


@pytest.mark.parametrize("size", [SIZE, ODD_SIZE])
def test_bilinear_extracted_matches_supernet_with_counted_params(bilinear, size):
    """Bilinear fusion and BN momentum 0.99 survive extraction: same outputs (eager, 1e-5), the
    counter's params (equal to the nearest space's), fusion through Resizing, momentum on every BN."""
    x = _images(3, size)
    space = bilinear.space
    nearest = ScaleNASSpace(width=8, num_modules=(1, 1, 1))
    for arch in _archs(space):
        static = extract_subnet(bilinear, arch, input_size=size)
        want = bilinear(x, arch=arch, training=False).numpy()
        np.testing.assert_allclose(static(x, training=False).numpy(), want, atol=1e-5, rtol=0)

        counted = cost.count(space, arch, "seg", 5, size)
        assert counted == cost.count(nearest, arch, "seg", 5, size)
        assert static.count_params() == counted.keras_count_params
        kinds = [type(layer).__name__ for layer in static.layers]
        assert "UpSampling2D" not in kinds
        resizes = [layer.name for layer in static.layers if isinstance(layer, keras.layers.Resizing)]
        fusion_resizes = [name for name in resizes if not name.startswith("head_")]
        assert len(fusion_resizes) == sum(k > j for m in arch.modules for j, _, k in m.edges())
        assert {bn.momentum for bn in _batch_norms(static)} == {0.99}
    assert {bn.momentum for bn in _batch_norms(bilinear)} == {0.99}


def test_bilinear_extracted_matches_supernet_in_one_traced_function(bilinear):
    x = tf.constant(_images(4, ODD_SIZE))
    forward = tf.function(lambda images, vector: bilinear(images, arch=vector, training=False))
    space = bilinear.space
    for arch in [space.largest(), space.hrnet(), space.sample(np.random.default_rng(12))]:
        static = extract_subnet(bilinear, arch, input_size=ODD_SIZE)
        want = forward(x, tf.constant(space.to_vector(arch))).numpy()
        np.testing.assert_allclose(static(x, training=False).numpy(), want, atol=1e-4, rtol=0)
    assert forward.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_bilinear_subnet_exports_to_tflite_resize_bilinear(bilinear, tmp_path):
    """SavedModel and TFLite of a bilinear-fusion subnet: fusion converts to RESIZE_BILINEAR (builtin
    ops only) and the TFLite logits match the supernet's."""
    from ai_edge_litert.interpreter import Interpreter

    from scalenas_tf.data import pipeline
    from scalenas_tf.export import parity
    from scalenas_tf.export import serving

    space = bilinear.space
    arch = space.hrnet()
    static = extract_subnet(bilinear, arch, input_size=ODD_SIZE)
    saved = serving.save_saved_model(static, "seg", ODD_SIZE, str(tmp_path / "saved_model"))
    path = serving.save_tflite(saved, str(tmp_path / "model.tflite"))
    ops = [op["op_name"] for op in Interpreter(model_path=path)._get_ops_details()]
    assert "RESIZE_NEAREST_NEIGHBOR" not in ops
    # hrnet's low-to-high fusion edges (1 + 3 + 6 in its three modules of 2, 3, 4 branches), the
    # head's 3 branch resizes and the serving output's one.
    assert ops.count("RESIZE_BILINEAR") == 10 + 3 + 1
    images = np.random.default_rng(8).uniform(size=(2, *ODD_SIZE, 3)).astype("float32")
    want = bilinear(pipeline.normalize(images), arch=arch, training=False).numpy()
    got = parity.run_tflite(path, images)["logits"]
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())

"""QAT through tensorflow-model-optimization (the `[qat]` extra): the tf_keras twin and the int8 TFLite file.

Skipped as a whole where the extra is not installed (`pip install -e ".[qat]"`).
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from configs import quickstart
from configs import scalenet
from configs import scarlet
from scalenas_tf.data import pipeline
from scalenas_tf.experiment import Experiment
from scalenas_tf.export import qat
from scalenas_tf.export import serving

# Skipped without the optional extra (README: CI installs it and runs this module after the main suite).
if qat.unavailable_reason() is not None:
    pytest.skip(qat.unavailable_reason(), allow_module_level=True)

CONFIGS = {
    "scalenas": quickstart.get_config(),
    "scarlet": scarlet.get_config("cpu"),
    "scalenet": scalenet.get_config("cpu"),
}


@pytest.fixture(scope="module")
def experiments():
    """`{family: (experiment, supernet)}`, each supernet built once for the module."""
    built = {}
    for name, config in CONFIGS.items():
        experiment = Experiment.from_config(config)
        built[name] = (experiment, experiment.build_supernet())
    return built


def _extract(experiments, name, arch):
    experiment, supernet = experiments[name]
    return experiment.family.extract(supernet, arch, experiment.model.input_size).model, experiment


def _randomize(model, seed):
    """Random BN parameters and statistics and biases (the kernels are random already), with gamma small
    enough that a deep random network stays O(1): a 1e-5 comparison then tests the copy, not overflow."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for weight in layer.weights:
            leaf, shape = weight.path.rsplit("/", 1)[-1], weight.shape
            if leaf == "gamma":
                weight.assign(rng.uniform(0.3, 0.8, shape).astype("float32"))
            elif leaf == "moving_variance":
                weight.assign(rng.uniform(1.0, 2.0, shape).astype("float32"))
            elif leaf in ("beta", "moving_mean", "bias"):
                weight.assign(rng.normal(0.0, 0.2, shape).astype("float32"))


def _images(size, batch=2, seed=0):
    return np.random.default_rng(seed).uniform(size=(batch, *size, 3)).astype("float32")


def test_unavailable_reason_is_none_with_the_extra():
    assert qat.unavailable_reason() is None


@pytest.mark.parametrize("name", ["scalenas", "scarlet", "scalenet"])
def test_twin_computes_what_the_keras3_model_computes(experiments, name):
    experiment = experiments[name][0]
    space, size = experiment.space, experiment.model.input_size
    if name == "scalenas":  # Every fusion on: strided convs, UpSampling2D, Resizing, Concatenate.
        arch = space.sample(np.random.default_rng(0), fusion_prob=1.0, depth_choices=(space.depth_choices[0],))
    else:  # SCARLET: hard_silu Activations, DepthwiseConv2D; ScaleNet: SE Multiply, nested model.
        arch = space.largest()
    static, _ = _extract(experiments, name, arch)
    _randomize(static, seed=1)
    twin = qat.tf_keras_twin(static)
    assert type(twin).__module__.startswith("tf_keras")
    x = pipeline.normalize(_images(size))
    expected = np.asarray(static(x, training=False))
    got = np.asarray(twin(x, training=False))
    assert got.shape == expected.shape and 0.1 < np.abs(expected).max() < 100
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_twin_of_other_standard_layers():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Activation("hard_sigmoid")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Reshape((4, 4))(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Softmax()(keras.layers.Dense(3, activation="hard_silu")(x))
    model = keras.Model(inputs, outputs)
    x = _images((8, 8), seed=2) * 4 - 2
    np.testing.assert_allclose(qat.tf_keras_twin(model)(x), model(x), rtol=0, atol=1e-6)


def test_twin_rejects_an_unsupported_layer():
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.LayerNormalization(name="ln")(keras.layers.Conv2D(4, 1)(inputs))
    with pytest.raises(ValueError, match=r"Layer 'ln' of class LayerNormalization has no tf_keras twin"):
        qat.tf_keras_twin(keras.Model(inputs, outputs))


def test_twin_rejects_a_keras_value_tf_keras_cannot_express():
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Resizing(4, 6, pad_to_aspect_ratio=True, name="pad")(inputs)
    with pytest.raises(ValueError, match=r"Layer 'pad' \(Resizing\): tf_keras cannot express pad_to_aspect_ratio"):
        qat.tf_keras_twin(keras.Model(inputs, outputs))


def _run_tflite(data, images):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    runner = interpreter.get_signature_runner("serving_default")
    return interpreter.get_signature_list(), runner.get_input_details(), runner(images=images)


@pytest.mark.slow  # ~40 s on 2 cores: tracing the training step of a 170-layer QAT model, converting it.
def test_qat_seg_quickstart_to_int8_tflite(experiments):
    experiment = experiments["scalenas"][0]
    size = experiment.model.input_size
    static, _ = _extract(experiments, "scalenas", experiment.space.smallest())
    rng = np.random.default_rng(0)
    labels = rng.integers(0, experiment.model.num_classes, size=(2, *size)).astype("int32")
    labels[:, :4] = 255  # Ignored pixels.
    batches = [(_images(size, seed=3), labels)]  # Re-iterated for the second step.
    data, report = qat.quantize_aware_tflite(static, "seg", size, batches, steps=2, log=None)
    assert report["steps"] == 2 and np.isfinite([report["loss_start"], report["loss_final"]]).all()
    assert report["quantized_layers"] > 100 and report["unquantized_layers"] == []
    assert report["calibrated_ranges"] > 0 and report["io_quantization"] == {}
    signatures, inputs, outputs = _run_tflite(data, _images(size, batch=1, seed=4))
    assert signatures == {"serving_default": {"inputs": ["images"], "outputs": list(serving.OUTPUT_NAMES["seg"])}}
    assert inputs["images"]["dtype"] == np.float32
    h, w = size
    assert outputs["logits"].shape == (1, h // 4, w // 4, experiment.model.num_classes)
    assert outputs["logits"].dtype == np.float32
    assert outputs["segmentation"].shape == (1, h, w) and outputs["segmentation"].dtype == np.int32
    assert set(np.unique(outputs["segmentation"])) <= set(range(experiment.model.num_classes))


def test_qat_cls_int8_io(experiments):
    experiment = experiments["scarlet"][0]
    size, classes = experiment.model.input_size, experiment.model.num_classes
    static, _ = _extract(experiments, "scarlet", experiment.space.smallest())
    labels = np.arange(4, dtype="int32") % classes
    # No training steps: the one batch only calibrates (the seg test trains).
    data, report = qat.quantize_aware_tflite(
        static, "cls", size, iter([(_images(size, batch=4, seed=5), labels)]), steps=0, int8_io=True, log=None
    )
    assert report["steps"] == 0 and report["loss_final"] is None
    scale, zero_point = report["io_quantization"]["images"]
    assert set(report["io_quantization"]) == {"images", "logits", "probabilities"}
    images = np.clip(np.round(_images(size, batch=1, seed=6) / scale + zero_point), -128, 127).astype(np.int8)
    signatures, inputs, outputs = _run_tflite(data, images)
    assert signatures["serving_default"]["outputs"] == list(serving.OUTPUT_NAMES["cls"])
    assert inputs["images"]["dtype"] == np.int8
    assert outputs["logits"].shape == outputs["probabilities"].shape == (1, classes)
    assert outputs["probabilities"].dtype == np.int8


def test_qat_of_a_bn_no_conv_owns():
    """tfmot has no config for a BN that follows an Add: it gets an output-only range, not an error."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, padding="same")(inputs)))
    x = keras.layers.Add()([x, keras.layers.Conv2D(4, 1)(inputs)])
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.BatchNormalization(name="after_add")(x))
    static = keras.Model(inputs, keras.layers.Dense(3)(x))
    batches = [(_images((16, 16), seed=8), np.array([0, 2], "int32"))]
    legacy = os.environ.get("TF_USE_LEGACY_KERAS")
    data, report = qat.quantize_aware_tflite(static, "cls", (16, 16), batches, steps=1, log=None)
    assert report["unquantized_layers"] == [] and np.isfinite(report["loss_final"])
    # Importing tfmot sets TF_USE_LEGACY_KERAS=1; qat undoes it, and tf.keras stays Keras 3.
    assert os.environ.get("TF_USE_LEGACY_KERAS") == legacy and tf.keras.version().startswith("3.")
    _, inputs, outputs = _run_tflite(data, _images((16, 16), batch=1, seed=9))
    assert outputs["probabilities"].shape == (1, 3) and abs(float(outputs["probabilities"].sum()) - 1) < 0.05


def test_qat_rejects_bad_arguments():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    static = keras.Model(inputs, keras.layers.Dense(3)(x))
    with pytest.raises(ValueError, match=r"`task` must be one of"):
        qat.quantize_aware_tflite(static, "det", (16, 16), [], steps=1)
    with pytest.raises(ValueError, match=r"`static` must take one \(batch, 32, 32, 3\) input"):
        qat.quantize_aware_tflite(static, "cls", (32, 32), [], steps=1)
    with pytest.raises(ValueError, match=r"`train_batches` ran out after 0 of steps=1"):
        qat.quantize_aware_tflite(static, "cls", (16, 16), [], steps=1, log=None)
    one_shot = iter([(_images((16, 16)), np.zeros(2, "int32"))])
    with pytest.raises(ValueError, match=r"`train_batches` ran out after 1 of steps=3"):
        qat.quantize_aware_tflite(static, "cls", (16, 16), one_shot, steps=3, log=None)


def test_export_runner_writes_the_qat_file_with_its_checks(tmp_path):
    """bin/export.py's path: a tiny trained supernet -> `formats=("tflite_qat",)` -> metadata with the
    QAT report, the metric drop and a file that LiteRT runs (in a process without scalenas_tf)."""
    import json

    from scalenas_tf.runners import export as export_runner
    from scalenas_tf.runners import train as train_runner

    config = quickstart.get_config()
    config.search_space.update(width=4, depth_choices=(1,), num_modules=(1, 1), num_branches=(2, 3), stem_channels=8)
    config.model.input_size = (32, 32)
    config.data.update(batch_size=4, train_examples=16, validation_examples=8)
    config.train.update(steps=2, steps_per_epoch=2, warmup_steps=0)
    config.search.update(calibration_batches=1, calibration_batch_size=4, validation_examples=8, batch_size=8)
    config.export.update(calibration_samples=8, qat_steps=2, max_metric_drop={"tflite_qat": 1.0})
    workdir = str(tmp_path / "job")
    train_runner.run(config, workdir, verbose=0, log=lambda *a: None)
    result = export_runner.run(config, workdir, arch="largest", name="q", formats=("tflite_qat",), log=lambda *a: None)
    meta = json.load(open(os.path.join(result["export_dir"], "metadata.json")))
    report = meta["parity"]["tflite_qat"]
    assert meta["files"] == {"tflite_qat": "model_qat.tflite"} and report["passed"]
    assert report["qat"]["steps"] == 2 and report["calibration_samples"] == 8
    assert report["size_bytes"] == os.path.getsize(os.path.join(result["export_dir"], "model_qat.tflite"))
    assert report["metric_drop"] == meta["parity"]["supernet"]["metric"] - report["metric"]

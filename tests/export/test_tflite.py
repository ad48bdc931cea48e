"""export/tflite.py (format names, conversion arguments) and the quantized I/O of parity.run_tflite."""

import keras
import numpy as np
import pytest

from scalenas_tf.export import parity
from scalenas_tf.export import serving
from scalenas_tf.export import tflite


def test_check_formats():
    assert tflite.check_formats("saved_model,tflite_int8") == ("saved_model", "tflite_int8")
    assert tflite.check_formats(["tflite_qat"]) == ("tflite_qat",)
    for bad in ("", [], ["tflite_fp32", "tflite_fp32"], ["int4"], [1], None):
        with pytest.raises(ValueError, match="--formats must be distinct names"):
            tflite.check_formats(bad, "--formats")
    assert set(tflite.FORMATS) == set(tflite.FLOAT_FORMATS) | set(tflite.QUANTIZED_FORMATS)
    assert set(tflite.FILE_NAMES) == set(tflite.FORMATS)


def test_quantize_and_dequantize_use_the_tensor_scale_and_zero_point():
    detail = {"dtype": np.int8, "quantization": (0.5, -3)}
    x = np.array([[-100.0, -1.0, 0.0, 0.26, 1.0, 100.0]], np.float32)
    q = parity._quantize(x, detail)
    assert q.dtype == np.int8 and q.tolist() == [[-128, -5, -3, -2, -1, 127]]
    assert parity._dequantize(q, detail).tolist() == [[-62.5, -1.0, 0.0, 0.5, 1.0, 65.0]]
    assert parity._quantize(x, {"dtype": np.float32, "quantization": (0.0, 0)}).dtype == np.float32
    labels = np.array([1, 2], np.int32)  # integer outputs without a scale stay as they are
    assert parity._dequantize(labels, {"dtype": np.int32, "quantization": (0.0, 0)}) is labels


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    return model, serving.save_saved_model(model, "cls", (8, 8), str(tmp_path_factory.mktemp("m") / "saved_model"))


def test_each_format_converts_and_runs(saved_model, tmp_path):
    model, path = saved_model
    images = np.random.default_rng(0).random((16, 8, 8, 3)).astype(np.float32)
    expected = serving.serving_fn(model, "cls")(images)["logits"].numpy()
    for fmt, io in [("tflite_fp32", False), ("tflite_fp16", False), ("tflite_dynamic", False), ("tflite_int8", True)]:
        file = tflite.write(tflite.convert(path, fmt, images, int8_io=io), str(tmp_path / tflite.FILE_NAMES[fmt]))
        got = parity.run_tflite(file, images)
        assert sorted(got) == ["logits", "probabilities"] and got["logits"].dtype == np.float32
        scale = np.abs(expected).max()
        # float32 to rounding; fp16 weights to ~1e-3 relative; int8 to a few quantization steps.
        tolerance = {"tflite_fp32": 1e-5, "tflite_fp16": 3e-3, "tflite_dynamic": 0.05, "tflite_int8": 0.1}[fmt]
        assert np.abs(got["logits"] - expected).max() <= tolerance * max(1.0, scale), fmt


def test_convert_argument_errors(saved_model):
    _, path = saved_model
    for fmt in ("saved_model", "tflite_qat", "tflite_int4"):
        with pytest.raises(ValueError, match="`fmt` must be one of"):
            tflite.convert(path, fmt)
    with pytest.raises(ValueError, match="tflite_int8 needs representative images"):
        tflite.convert(path, "tflite_int8")


def test_isolated_lite_run_matches_the_in_process_run(saved_model, tmp_path):
    _, path = saved_model
    images = np.random.default_rng(1).random((3, 8, 8, 3)).astype(np.float32)
    for fmt in ("tflite_fp32", "tflite_int8"):
        file = tflite.write(tflite.convert(path, fmt, images, int8_io=True), str(tmp_path / tflite.FILE_NAMES[fmt]))
        alone, here = parity.run_tflite_isolated(file, images), parity.run_tflite(file, images)
        assert sorted(alone) == sorted(here)
        for name in here:
            np.testing.assert_array_equal(alone[name], here[name])
    with pytest.raises(parity.ParityError, match="plain LiteRT process failed"):
        parity.run_tflite_isolated(str(tmp_path / "missing.tflite"), images)

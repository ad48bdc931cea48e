"""The export formats, and converting a SavedModel to each TFLite flavour with the TFLite converter.

| format           | file                  | what it holds                                                      |
|------------------|-----------------------|--------------------------------------------------------------------|
| `saved_model`    | `saved_model/`        | float32 SavedModel (`export/serving.py` has the contract)          |
| `tflite_fp32`    | `model.tflite`        | float32 TFLite                                                     |
| `tflite_fp16`    | `model_fp16.tflite`   | float16 weights, float32 compute (the weights are dequantized)     |
| `tflite_dynamic` | `model_dynamic.tflite`| int8 weights, activations quantized on the fly (dynamic range)     |
| `tflite_int8`    | `model_int8.tflite`   | full integer: int8 weights and activations, calibrated on a        |
|                  |                       | representative dataset; input/output float32 or int8 (`int8_io`)   |
| `tflite_qat`     | `model_qat.tflite`    | full integer after quantization-aware fine-tuning (`export/qat.py`, |
|                  |                       | the optional `[qat]` extra)                                        |

Every TFLite file keeps the SavedModel's `serving_default` signature: input `images` in [0, 1] and the
task's named outputs. With `int8_io` the float tensors at the edges are int8 instead: `images` is
quantized with the input's (scale, zero point), as `parity.run_tflite` does, and float outputs come
back quantized (the int32 `segmentation` labels stay int32).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import tensorflow as tf

FORMATS = ("saved_model", "tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8", "tflite_qat")
# Formats that compute what the supernet computes to float32 rounding: held to `parity_atol`.
FLOAT_FORMATS = ("saved_model", "tflite_fp32")
# Formats that trade accuracy for size and speed: held to a maximum drop of the task metric.
QUANTIZED_FORMATS = ("tflite_fp16", "tflite_dynamic", "tflite_int8", "tflite_qat")
# Formats whose conversion needs a representative dataset.
CALIBRATED_FORMATS = ("tflite_int8", "tflite_qat")
FILE_NAMES = {
    "saved_model": "saved_model",
    "tflite_fp32": "model.tflite",
    "tflite_fp16": "model_fp16.tflite",
    "tflite_dynamic": "model_dynamic.tflite",
    "tflite_int8": "model_int8.tflite",
    "tflite_qat": "model_qat.tflite",
}


def check_formats(formats, field: str = "formats") -> tuple[str, ...]:
    """`formats` as a tuple of distinct known names; a ValueError naming `field` and the value otherwise."""
    if isinstance(formats, str):
        formats = [f for f in formats.split(",") if f]
    formats = tuple(formats) if isinstance(formats, (list, tuple)) else formats
    if (
        not isinstance(formats, tuple)
        or not formats
        or not all(isinstance(f, str) for f in formats)
        or any(f not in FORMATS for f in formats)
        or len(set(formats)) != len(formats)
    ):
        raise ValueError(f"{field} must be distinct names from {list(FORMATS)}. Received: {formats!r}")
    return formats


def representative_dataset(images: np.ndarray):
    """The converter's representative dataset: one `[image]` (batch 1, float32 in [0, 1]) at a time."""
    images = np.asarray(images, np.float32)

    def generate():
        for image in images:
            yield {"images": image[None]}

    return generate


def convert(
    saved_model_dir: str,
    fmt: str,
    representative: np.ndarray | Iterable | None = None,
    int8_io: bool = False,
) -> bytes:
    """The TFLite flatbuffer of the SavedModel's `serving_default` in format `fmt` (not `saved_model`,
    not `tflite_qat`: that one is trained, see `export/qat.py`).

    Args:
        saved_model_dir: a SavedModel written by `serving.save_saved_model`.
        fmt: `tflite_fp32`, `tflite_fp16`, `tflite_dynamic` or `tflite_int8`.
        representative: float32 images in [0, 1], `(n, h, w, 3)`, to calibrate `tflite_int8`'s
            activation ranges (required there, unused elsewhere).
        int8_io: for `tflite_int8`, int8 input and float outputs instead of float32.
    """
    if fmt not in FORMATS or fmt in ("saved_model", "tflite_qat"):
        raise ValueError(
            f"`fmt` must be one of tflite_fp32, tflite_fp16, tflite_dynamic, tflite_int8. Received: {fmt!r}"
        )
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if fmt == "tflite_fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "tflite_dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "tflite_int8":
        if representative is None or len(representative) == 0:
            raise ValueError("tflite_int8 needs representative images to calibrate its activation ranges")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset(representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter.convert()


def write(data: bytes, path: str) -> str:
    """Writes `data` to `path` through a temporary file renamed into place (`workdir.atomic_write_bytes`)."""
    from scalenas_tf import workdir

    return workdir.atomic_write_bytes(path, data)

"""The serving contract of an exported subnet, and writing it as a SavedModel and a TFLite file.

Input (`serving_default`, and the TFLite signature of the same name): `images`, float32
`(batch, height, width, 3)`, RGB scaled to [0, 1]; the model normalizes it itself with the ImageNet
mean and standard deviation (`data.pipeline.normalize`), so a caller only scales pixels by 1/255.
Outputs, by task:
  seg:  `logits` float32 `(batch, ceil(H/4), ceil(W/4), classes)` (the head's output) and
        `segmentation` int32 `(batch, H, W)`, the argmax of the logits resized bilinearly to the input.
  cls:  `logits` float32 `(batch, classes)` and `probabilities` (their softmax).
  pose: `heatmaps` float32 `(batch, ceil(H/4), ceil(W/4), keypoints)`.
The height and width are fixed at export (`input_size`); the batch is free in the SavedModel and 1 in
the TFLite file (resize its input for more).
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from scalenas_tf.data import pipeline

INPUT_NAME = "images"
OUTPUT_NAMES = {"seg": ("logits", "segmentation"), "cls": ("logits", "probabilities"), "pose": ("heatmaps",)}
# The output compared against the supernet in parity checks.
RAW_OUTPUT = {"seg": "logits", "cls": "logits", "pose": "heatmaps"}


def serving_fn(static: keras.Model, task: str):
    """`images in [0, 1] -> dict of named outputs` around an extracted model (not traced)."""
    if task not in OUTPUT_NAMES:
        raise ValueError(f"`task` must be one of {sorted(OUTPUT_NAMES)}. Received: task={task!r}")

    def serve(images):
        return post_process(task, static(pipeline.normalize(images), training=False), images)

    return serve


def post_process(task: str, outputs, images) -> dict:
    """The named serving outputs from a network's raw output (`images` gives the seg output size)."""
    outputs = tf.cast(outputs, tf.float32)
    if task == "seg":
        logits = tf.image.resize(outputs, tf.shape(images)[1:3], method="bilinear")
        return {"logits": outputs, "segmentation": tf.argmax(logits, axis=-1, output_type=tf.int32)}
    if task == "cls":
        return {"logits": outputs, "probabilities": tf.nn.softmax(outputs, axis=-1)}
    return {"heatmaps": outputs}


def input_spec(input_size, batch=None) -> tf.TensorSpec:
    return tf.TensorSpec((batch, int(input_size[0]), int(input_size[1]), 3), tf.float32, name=INPUT_NAME)


def save_saved_model(static: keras.Model, task: str, input_size, path: str) -> str:
    """Writes `static` with the serving contract as a SavedModel at `path` (the `serve` endpoint, also
    `serving_default`). Returns `path`."""
    archive = keras.export.ExportArchive()
    archive.track(static)
    archive.add_endpoint("serve", serving_fn(static, task), input_signature=[input_spec(input_size)])
    archive.write_out(path, verbose=False)
    return path


def save_tflite(saved_model_dir: str, path: str) -> str:
    """Converts the SavedModel's `serving_default` to a float32 TFLite file at `path` (builtin ops
    only, no quantization; `export.tflite.convert` makes the other formats). Returns `path`."""
    from scalenas_tf.export import tflite

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return tflite.write(tflite.convert(saved_model_dir, "tflite_fp32"), path)

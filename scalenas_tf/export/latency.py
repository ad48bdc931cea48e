"""Measured inference latency of a TFLite file with LiteRT, and float32 TFLite bytes of a static model.

`measure_tflite` runs a file's `serving_default` signature (or, for a file without signatures, its
only graph) on random inputs of the signature's shapes and dtypes with
`ai_edge_litert.interpreter.Interpreter` (its default CPU path, XNNPACK for float ops) and times
whole calls: setting the inputs, `Invoke`, reading the outputs, as a caller of the file pays them.
`tflite_bytes` converts an extracted static Keras model in memory (no SavedModel on disk; measured
~4x faster than `TFLiteConverter.from_keras_model`, with the same ops), for measuring many subnets
quickly; `bin/export.py` writes the served file with the serving contract (`export.serving`), whose
extra ops (input normalization, seg argmax) cost the same for every arch.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

SIGNATURE = "serving_default"


def _check_int(name: str, value: Any, low: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ValueError(f"`{name}` must be an int >= {low}. Received: {name}={value!r}")
    return int(value)


def tflite_bytes(model, batch: int | None = None) -> bytes:
    """A float32 TFLite flatbuffer (builtin ops only) of a static Keras model, converted in memory.

    The model's variables are frozen into constants first, so the converter folds BatchNorm into
    the convs as it does for an exported SavedModel (`export.serving.save_tflite`). Converting the
    traced function together with the model as its trackable object instead keeps the variables as
    VAR_HANDLE/READ_VARIABLE ops and computes BN and weight transposes at run time: measured 8x
    slower on a quickstart subnet. The file has no signatures: `measure_tflite` runs its main graph.

    Args:
        model: a `keras.Model` whose inputs have static shapes apart from the batch.
        batch: the batch size fixed in the file; None (default) leaves it free, as an exported
            file's is (nearest upsampling then runs a few shape ops more).

    Raises:
        ValueError: an input has an unknown dimension other than the batch, or a bad `batch`.
    """
    import tensorflow as tf

    if batch is not None:
        batch = _check_int("batch", batch, 1)
    specs = []
    for tensor in model.inputs:
        shape = tuple(tensor.shape[1:])
        if any(d is None for d in shape):
            raise ValueError(f"Input {tensor.name!r} must have a static shape besides the batch. Received: {shape}")
        specs.append(tf.TensorSpec((batch, *shape), tensor.dtype, name=tensor.name))

    @tf.function(autograph=False)
    def serve(*inputs):
        outputs = model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
        if isinstance(outputs, dict):
            return outputs
        if isinstance(outputs, (list, tuple)):
            return {f"output_{i}": y for i, y in enumerate(outputs)}
        return {"output": outputs}

    # Without a trackable object the converter freezes the variables of the concrete function.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function(*specs)])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def _random_input(details: dict, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Random values of an input's dtype; floats in [0, 1) (images), integers over their full range."""
    shape = [int(d) for d in details["shape"]]
    if shape:
        shape[0] = batch
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return rng.random(shape).astype(dtype)
    if dtype.kind in "iu" and dtype.itemsize == 1:  # quantized (int8 / uint8) images
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, size=shape, dtype=dtype)
    if dtype.kind in "iu":  # indices, lengths: small non-negative values are valid for any of them
        return rng.integers(0, 2, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    raise ValueError(f"Input {details['name']!r} has an unsupported dtype {dtype}")


def _runner(interpreter, batch: int, rng: np.random.Generator):
    """`(call, inputs)`: a no-argument call of the model on fixed random inputs."""
    signatures = interpreter.get_signature_list()
    if signatures:
        if SIGNATURE not in signatures:
            raise ValueError(f"The TFLite file has no {SIGNATURE!r} signature. Signatures: {sorted(signatures)}")
        runner = interpreter.get_signature_runner(SIGNATURE)
        inputs = {name: _random_input(d, batch, rng) for name, d in runner.get_input_details().items()}
        return (lambda: runner(**inputs)), inputs
    # An old file without signatures: its main graph.
    details = interpreter.get_input_details()
    inputs = {d["name"]: _random_input(d, batch, rng) for d in details}
    for d in details:
        interpreter.resize_tensor_input(d["index"], inputs[d["name"]].shape)
    interpreter.allocate_tensors()
    outputs = interpreter.get_output_details()

    def call():
        for d in details:
            interpreter.set_tensor(d["index"], inputs[d["name"]])
        interpreter.invoke()
        return [interpreter.get_tensor(o["index"]) for o in outputs]

    return call, inputs


def measure_tflite(
    path_or_bytes: str | os.PathLike | bytes,
    threads: int = 1,
    warmup: int = 5,
    repeats: int = 20,
    batch: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Times the `serving_default` signature of a TFLite model on random inputs (a file without
    signatures, as `tflite_bytes` writes: its main graph).

    Args:
        path_or_bytes: a `.tflite` path, or the flatbuffer itself.
        threads: the interpreter's threads (`num_threads`).
        warmup: untimed calls first (the first call also prepares the XNNPACK delegate).
        repeats: timed calls.
        batch: the batch dimension of every input (the file's batch is resized to it).
        seed: of the random inputs.

    Returns:
        `{"median_ms", "mean_ms", "p90_ms", "min_ms", "runs_ms" (each timed call), "threads",
        "batch", "warmup", "repeats"}`.

    Raises:
        FileNotFoundError: no such file. ValueError: bad arguments, or no `serving_default` signature.
    """
    from ai_edge_litert.interpreter import Interpreter

    threads = _check_int("threads", threads, 1)
    warmup = _check_int("warmup", warmup, 0)
    repeats = _check_int("repeats", repeats, 1)
    batch = _check_int("batch", batch, 1)
    if isinstance(path_or_bytes, (bytes, bytearray)):
        interpreter = Interpreter(model_content=bytes(path_or_bytes), num_threads=threads)
    else:
        path = os.fspath(path_or_bytes)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"TFLite file not found: {path}")
        interpreter = Interpreter(model_path=path, num_threads=threads)
    call, _ = _runner(interpreter, batch, np.random.default_rng(seed))
    for _ in range(warmup):
        call()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        runs.append(1e3 * (time.perf_counter() - start))
    return {
        **summarize(runs),
        "runs_ms": [float(v) for v in runs],
        "threads": threads,
        "batch": batch,
        "warmup": warmup,
        "repeats": repeats,
    }


def summarize(runs_ms) -> dict[str, float]:
    """Median, mean, 90th percentile and minimum of call times in ms."""
    values = np.asarray(runs_ms, np.float64)
    return {
        "median_ms": float(np.median(values)),
        "mean_ms": float(np.mean(values)),
        "p90_ms": float(np.percentile(values, 90)),
        "min_ms": float(np.min(values)),
    }

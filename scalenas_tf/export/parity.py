"""Running exported files the way a deployment would, and comparing them with the supernet.

- `run_saved_model_isolated`: a fresh Python process that imports TensorFlow and numpy only, loads the
  SavedModel, runs `serving_default`, and fails if `scalenas_tf` ever got imported.
- `run_tflite`: LiteRT (`ai_edge_litert`, the successor of `tf.lite.Interpreter`), signature runner;
  `run_tflite_isolated` the same in a fresh process that imports neither scalenas_tf nor TensorFlow.
- `compare`: max abs diff of the raw output and agreement of the task's decision (segmentation
  labels, class, keypoint argmax).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

# Run in a clean process: no scalenas_tf on the import path, nothing but tensorflow and numpy.
_ISOLATED = r"""
import json, sys
import numpy as np
import tensorflow as tf

saved_model, inputs, outputs = sys.argv[1:4]
model = tf.saved_model.load(saved_model)
serve = model.signatures["serving_default"]
images = np.load(inputs)
result = {k: v.numpy() for k, v in serve(images=tf.constant(images)).items()}
np.savez(outputs, **result)
leaked = sorted(m for m in sys.modules if m.split(".")[0] == "scalenas_tf")
print(json.dumps({"scalenas_tf_modules": leaked, "outputs": sorted(result)}))
sys.exit(3 if leaked else 0)
"""


# The same for a TFLite file: LiteRT and numpy only (no TensorFlow either); the (de)quantization rules
# are those of `_quantize`/`_dequantize` below.
_ISOLATED_TFLITE = r"""
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter

model, inputs, outputs = sys.argv[1:4]
runner = Interpreter(model_path=model).get_signature_runner("serving_default")
feed, fetch = runner.get_input_details()["images"], runner.get_output_details()
results = {}
for image in np.load(inputs):
    x = image[None]
    if np.issubdtype(feed["dtype"], np.integer):
        scale, zero = feed["quantization"]
        info = np.iinfo(feed["dtype"])
        x = np.clip(np.round(x / scale + zero), info.min, info.max)
    for name, value in runner(images=x.astype(feed["dtype"])).items():
        scale, zero = fetch[name]["quantization"]
        if np.issubdtype(value.dtype, np.integer) and scale:
            value = ((value.astype(np.float32) - zero) * scale).astype(np.float32)
        results.setdefault(name, []).append(np.array(value))
np.savez(outputs, **{k: np.concatenate(v) for k, v in results.items()})
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("scalenas_tf", "tensorflow"))
print(json.dumps({"leaked_modules": leaked, "outputs": sorted(results)}))
sys.exit(3 if leaked else 0)
"""


class ParityError(AssertionError):
    """An exported model does not compute what the supernet computes."""


def _run_isolated(script: str, model_path: str, images: np.ndarray, what: str, timeout: float):
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = os.path.join(tmp, "images.npy"), os.path.join(tmp, "outputs.npz")
        np.save(inputs, np.asarray(images, np.float32))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        proc = subprocess.run(
            [sys.executable, "-c", script, os.path.abspath(model_path), inputs, outputs],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise ParityError(
                f"loading {model_path} in a plain {what} process failed (exit {proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        leaked = report.get("scalenas_tf_modules") or report.get("leaked_modules")
        if leaked:
            raise ParityError(f"running {model_path} imported {leaked[:5]} (a plain {what} process must not)")
        with np.load(outputs) as data:
            return {k: data[k] for k in data.files}


def run_saved_model_isolated(saved_model_dir: str, images: np.ndarray, timeout: float = 600) -> dict[str, np.ndarray]:
    """Outputs of `serving_default` computed in a subprocess that never imports scalenas_tf."""
    return _run_isolated(_ISOLATED, saved_model_dir, images, "TensorFlow", timeout)


def run_tflite_isolated(path: str, images: np.ndarray, timeout: float = 600) -> dict[str, np.ndarray]:
    """`run_tflite` in a subprocess that imports LiteRT and numpy only (neither scalenas_tf nor TensorFlow)."""
    return _run_isolated(_ISOLATED_TFLITE, path, images, "LiteRT", timeout)


def run_tflite(path: str, images: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of the TFLite file's `serving_default` signature under LiteRT, one image at a time.

    A quantized (int8/uint8) input gets the images quantized with its (scale, zero point); a quantized
    float output is dequantized the same way, so every format answers in the units of the float model.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("serving_default")
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    results: dict[str, list[np.ndarray]] = {}
    for image in np.asarray(images, np.float32):
        feed = _quantize(image[None], inputs["images"])
        for name, value in runner(images=feed).items():
            results.setdefault(name, []).append(_dequantize(np.array(value), outputs[name]))
    return {name: np.concatenate(values, axis=0) for name, values in results.items()}


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if not np.issubdtype(dtype, np.integer):
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(x.dtype, np.integer) or scale == 0:  # float, or integer labels (no scale)
        return x
    return ((x.astype(np.float32) - zero_point) * scale).astype(np.float32)


def decisions(task: str, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The task's discrete prediction from named outputs (labels, classes, keypoint argmaxes)."""
    if task == "seg":
        return np.asarray(outputs["segmentation"])
    if task == "cls":
        return np.argmax(outputs["logits"], axis=-1)
    heatmaps = np.asarray(outputs["heatmaps"])
    return np.argmax(heatmaps.reshape(heatmaps.shape[0], -1, heatmaps.shape[-1]), axis=1)


def compare(task: str, raw_name: str, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> dict:
    """`max_abs_diff` of the raw output, its scale, and the fraction of equal decisions."""
    ref, got = np.asarray(reference[raw_name], np.float64), np.asarray(candidate[raw_name], np.float64)
    if ref.shape != got.shape:
        raise ParityError(f"{raw_name}: shape {got.shape} differs from the supernet's {ref.shape}")
    agree = float(np.mean(decisions(task, reference) == decisions(task, candidate)))
    return {
        "max_abs_diff": float(np.max(np.abs(ref - got))),
        "output_max_abs": float(np.max(np.abs(ref))),
        "decision_agreement": agree,
    }

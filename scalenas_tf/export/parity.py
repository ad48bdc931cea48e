"""Running exported files the way a deployment would, and comparing them with the supernet.

- `run_saved_model_isolated`: a fresh Python process that imports TensorFlow and numpy only, loads the
  SavedModel, runs `serving_default`, and fails if `scalenas_tf` ever got imported.
- `run_tflite`: LiteRT (`ai_edge_litert`, the successor of `tf.lite.Interpreter`), signature runner.
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


class ParityError(AssertionError):
    """An exported model does not compute what the supernet computes."""


def run_saved_model_isolated(saved_model_dir: str, images: np.ndarray, timeout: float = 600) -> dict[str, np.ndarray]:
    """Outputs of `serving_default` computed in a subprocess that never imports scalenas_tf."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = os.path.join(tmp, "images.npy"), os.path.join(tmp, "outputs.npz")
        np.save(inputs, np.asarray(images, np.float32))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        proc = subprocess.run(
            [sys.executable, "-c", _ISOLATED, os.path.abspath(saved_model_dir), inputs, outputs],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise ParityError(
                f"loading {saved_model_dir} in a plain TensorFlow process failed (exit {proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        if report["scalenas_tf_modules"]:
            raise ParityError(f"the SavedModel imported scalenas_tf when loaded: {report['scalenas_tf_modules']}")
        with np.load(outputs) as data:
            return {k: data[k] for k in data.files}


def run_tflite(path: str, images: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of the TFLite file's `serving_default` signature under LiteRT, one image at a time."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("serving_default")
    results: dict[str, list[np.ndarray]] = {}
    for image in np.asarray(images, np.float32):
        for name, value in runner(images=image[None]).items():
            results.setdefault(name, []).append(np.array(value))
    return {name: np.concatenate(values, axis=0) for name, values in results.items()}


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

"""Export job: `run(config, workdir, ...)` -> summary dict. No flags, no exit.

arch (named, a JSON file, or the Pareto point of `workdir/search/` best within a cost budget)
-> BN recalibration on the search's calibration batches (so the metric is the one the search saw)
-> extracted plain-Keras subnet -> `workdir/export/<name>/`:
  saved_model/     SavedModel, `serving_default`: `images` in [0, 1] -> outputs named by task
                   (`export/serving.py` documents the contract)
  model.tflite     float32 TFLite with the same signature
  metadata.json    arch, cost, metric (supernet, SavedModel, TFLite), parity, source checkpoint, versions
Parity runs on the whole validation split the search used: the SavedModel in a separate process that
never imports scalenas_tf, the TFLite file under LiteRT, both against the supernet. Export fails
(`ParityError`) when an output differs by more than `parity_atol * max(1, max |output|)`.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
from typing import Any

import numpy as np

from scalenas_tf import config as config_lib
from scalenas_tf.runners import search as search_runner

NAMED = ("largest", "smallest", "hrnet")


def choose_arch(config: Any, workdir: str, space, arch: str = "", budget: float | None = None):
    """`(arch, how)`: a named arch, an encoding JSON file, or the search front's best point within
    `budget` (cost unit of the search), or its best point overall."""
    if arch and budget is not None:
        raise ValueError(f"Give an arch or a budget, not both. Received: arch={arch!r}, budget={budget}")
    if arch and not os.path.exists(arch):
        try:
            return space.named(arch), f"named arch {arch!r}"
        except ValueError as e:
            raise ValueError(f"--arch must be a named arch or an arch JSON file. Not found: {arch!r} ({e})") from None
    if arch:
        return space.load_arch(arch), f"arch file {arch}"
    front_path = os.path.join(search_runner.search_dir(workdir), "pareto_front.json")
    if not os.path.exists(front_path):
        raise ValueError(
            f"No search results at {front_path}. Run bin/search.py with this --workdir first, or pass --arch"
        )
    with open(front_path) as f:
        front = json.load(f)
    unit = config_lib.COST_MEASURES[config_lib.cost_measure(config)][0]
    metric = [k for k in front[0] if k not in ("hash", "method", "arch", "describe", "params", unit)][0]
    if budget is not None:
        within = [p for p in front if p[unit] <= budget]
        if not within:
            cheapest = min(p[unit] for p in front)
            raise ValueError(f"No Pareto point costs <= budget {budget} {unit}; the cheapest costs {cheapest:.6g} {unit}")
        point = max(within, key=lambda p: (p[metric], -p[unit]))
        how = f"best Pareto point within {budget} {unit}"
    else:
        point = max(front, key=lambda p: (p[metric], -p[unit]))
        how = "best Pareto point"
    chosen = space.arch_from_dict(point["arch"])
    return chosen, f"{how} ({point[unit]:.6g} {unit}, {metric} {point[metric]:.4f} in search)"


def run(
    config: Any, workdir: str, arch: str = "", budget: float | None = None, name: str = "", log=print
) -> dict[str, Any]:
    """Exports one subnet of the trained supernet in `workdir`; see the module docstring."""
    import tensorflow as tf

    import scalenas_tf
    from scalenas_tf.data import pipeline
    from scalenas_tf.evaluation import metrics
    from scalenas_tf.export import parity
    from scalenas_tf.export import serving
    from scalenas_tf.models.subnet import extract_subnet
    from scalenas_tf.scarlet_space import ScarletSpace

    config_lib.validate(config)
    config_lib.search_section(config)
    export = config.get("export", {})
    atol = float(export.get("parity_atol", 1e-4))
    if not atol > 0:
        raise ValueError(f"config.export.parity_atol must be > 0. Received: {atol}")
    space = config_lib.build_space(config)
    task, num_classes = config.model.task, config.model.num_classes
    input_size = config_lib.parse_input_size(config.model.input_size)
    chosen, how = choose_arch(config, workdir, space, arch, budget)
    supernet, weights = search_runner.load_trained_supernet(config, workdir)
    start = time.perf_counter()
    log(f"[export] arch {chosen.hash()}: {how}")

    evaluator = search_runner.make_evaluator(config, supernet)
    evaluated = evaluator(chosen)  # recalibrates BN for this arch, in place
    baseline = evaluator.constant_baseline()
    folds = None
    if isinstance(space, ScarletSpace):
        from scalenas_tf.models.scarlet_subnet import extract_scarlet_subnet

        static, folds = extract_scarlet_subnet(supernet, chosen, input_size, name=f"subnet_{chosen.hash()}")
        for fold in folds:
            log(f"[export] ELS layers {list(fold['layers'])}: {fold['action']}"
                + (f" into {fold['target']}" if fold["target"] is not None else f" ({fold['reason']})"))
    else:
        static = extract_subnet(supernet, chosen, input_size, name=f"subnet_{chosen.hash()}")
    cost_entry = _cost_entry(config, space, chosen, input_size)

    out = os.path.join(workdir, "export", name or chosen.hash())
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    saved_model = serving.save_saved_model(static, task, input_size, os.path.join(out, "saved_model"))
    log(f"[export] SavedModel: {saved_model}")
    tflite = None
    if export.get("tflite", True):
        tflite = serving.save_tflite(saved_model, os.path.join(out, "model.tflite"))
        log(f"[export] TFLite: {tflite}")

    # Parity on the validation batches the search scored (images back in [0, 1]).
    images = np.concatenate([pipeline.denormalize(x).numpy() for x, _ in evaluator.validation_batches])
    targets = [t for _, t in evaluator.validation_batches]
    vector = tf.constant(space.to_vector(chosen), tf.int32)
    reference_fn = serving.serving_fn(lambda x, training: supernet(x, arch=vector, training=training), task)
    # Eagerly, batch by batch: only the arch's branches run, and no second trace of the supernet.
    reference = {}
    for x, _ in evaluator.validation_batches:
        for k, v in reference_fn(pipeline.denormalize(x)).items():
            reference.setdefault(k, []).append(v.numpy())
    reference = {k: np.concatenate(v) for k, v in reference.items()}
    raw = serving.RAW_OUTPUT[task]

    def metric_of(outputs):
        total, offset = None, 0
        for t in targets:
            n = int(np.shape(t["heatmaps"] if isinstance(t, dict) else t)[0])
            stat = metrics.batch_statistic(task, num_classes, t, outputs[raw][offset : offset + n]).numpy()
            total, offset = (stat if total is None else total + stat), offset + n
        return metrics.metric_from_statistic(task, total)

    checks = {"supernet": {"metric": metric_of(reference)}}
    candidates = {}
    if export.get("isolated_check", True):
        candidates["saved_model"] = parity.run_saved_model_isolated(saved_model, images)
    else:
        loaded = tf.saved_model.load(saved_model).signatures["serving_default"]
        candidates["saved_model"] = {k: v.numpy() for k, v in loaded(images=tf.constant(images)).items()}
    if tflite:
        candidates["tflite"] = parity.run_tflite(tflite, images)
    failures = []
    for kind, outputs in candidates.items():
        report = parity.compare(task, raw, reference, outputs)
        report["metric"] = metric_of(outputs)
        report["tolerance"] = atol * max(1.0, report["output_max_abs"])
        report["passed"] = report["max_abs_diff"] <= report["tolerance"]
        checks[kind] = report
        if not report["passed"]:
            failures.append(f"{kind}: max abs diff {report['max_abs_diff']:.3g} > {report['tolerance']:.3g}")

    cost_entry["keras_count_params"] = int(static.count_params())
    metadata = {
        "arch": chosen.to_dict(),
        "arch_hash": chosen.hash(),
        "chosen_by": how,
        "task": task,
        "num_classes": num_classes,
        "input": {"name": serving.INPUT_NAME, "shape": [None, *input_size, 3], "dtype": "float32",
                  "preprocessing": "RGB scaled to [0, 1]; the model normalizes with ImageNet mean/std itself",
                  "mean": list(pipeline.MEAN), "std": list(pipeline.STD)},
        "outputs": list(serving.OUTPUT_NAMES[task]),
        "cost": cost_entry,
        "metric": {"name": evaluator.metric_name, "value": evaluated["metric"],
                   "constant_baseline": baseline["metric"],
                   "data": {"source": config.data.source, "split": "validation",
                            "examples": int(images.shape[0]), "source_kwargs": dict(config.data.get("source_kwargs") or {})}},
        "parity": checks,
        "source_checkpoint": {"path": os.path.abspath(weights), "sha256": search_runner.file_sha256(weights)},
        "versions": {"scalenas_tf": scalenas_tf.__version__, "tensorflow": tf.__version__},
        "files": {"saved_model": "saved_model", "tflite": "model.tflite" if tflite else None},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if folds is not None:
        metadata["els_folds"] = folds
    with open(os.path.join(out, "metadata.json"), "w") as f:
        json.dump(metadata, f, indent=1)
    if failures:
        raise parity.ParityError(
            f"exported model differs from the supernet ({'; '.join(failures)}); see {out}/metadata.json"
        )
    return {"export_dir": out, "seconds": round(time.perf_counter() - start, 1), **metadata}


def _cost_entry(config, space, arch, input_size):
    """The exported model's analytic cost: params, MACs, and the search's own cost unit."""
    from scalenas_tf.scarlet_space import ScarletSpace

    if isinstance(space, ScarletSpace):
        from scalenas_tf.search import scarlet_cost

        counted = scarlet_cost.count(space, arch, config.model.num_classes, input_size, as_extracted=True)
        return {"params": counted.params, "macs": counted.macs, "gmacs": counted.gmacs, "madds_m": counted.madds_m,
                "counted": "as extracted (ELS folds applied)", "input_size": list(input_size)}
    from scalenas_tf.search import cost as cost_lib

    counted = cost_lib.count(space, arch, config.model.task, config.model.num_classes, input_size)
    unit, scale = config_lib.COST_MEASURES[config_lib.cost_measure(config)]
    return {"params": counted.params, "macs": counted.macs, "gmacs": counted.gmacs, "input_size": list(input_size),
            unit: (counted.macs if unit == "gmacs" else counted.params) / scale}


def format_summary(summary: dict[str, Any]) -> str:
    """The exported model: where, its metric against the constant baseline, and parity."""
    m = summary["metric"]
    lines = [
        f"Exported {summary['arch_hash']} ({summary['chosen_by']}) to {summary['export_dir']}",
        f"  {m['name']} {m['value']:.4f} on {m['data']['examples']} validation images "
        f"(constant prediction: {m['constant_baseline']:.4f}); "
        f"{summary['cost']['params']:,} params, {summary['cost']['gmacs']:.4f} GMACs",
    ]
    for kind, report in summary["parity"].items():
        if kind == "supernet":
            continue
        lines.append(
            f"  parity {kind:<11}: max abs diff {report['max_abs_diff']:.2e} (tolerance {report['tolerance']:.1e}), "
            f"decisions agree {report['decision_agreement']:.4%}, {m['name']} {report['metric']:.4f} "
            f"vs supernet {summary['parity']['supernet']['metric']:.4f}"
        )
    return "\n".join(lines)

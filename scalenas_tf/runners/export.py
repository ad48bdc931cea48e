"""Export job: `run(config, workdir, ...)` -> summary dict. No flags, no exit.

arch (named, a JSON file, or the Pareto point of `workdir/search/` best within a cost budget)
-> BN recalibration on the search's calibration batches (so the metric is the one the search saw)
-> extracted plain-Keras subnet -> `workdir/export/<name>/`, in the formats asked for
(`export/tflite.py` lists them; default `saved_model` and `tflite_fp32`):
  saved_model/        SavedModel, `serving_default`: `images` in [0, 1] -> outputs named by task
                      (`export/serving.py` documents the contract)
  model.tflite        float32 TFLite with the same signature
  model_fp16.tflite, model_dynamic.tflite, model_int8.tflite, model_qat.tflite: quantized TFLite
  metadata.json       arch, cost, and per format: size, parity, metric; source checkpoint, versions
Every format runs on the whole validation split the search used, in a separate process that never
imports scalenas_tf (the SavedModel with TensorFlow; the TFLite files with LiteRT and numpy only, not
even TensorFlow), all against the supernet (`isolated_check=False` runs them in this process). Export fails
(`ParityError`) when a float format's output differs by more than `parity_atol * max(1, max |output|)`,
or when a quantized format's task metric drops by more than its `max_metric_drop`; then nothing is
replaced and the report is kept as `workdir/export/<name>.parity_failed.json`. Everything is built in a
hidden staging directory beside the final one and moved into place only once it passed.
int8 formats calibrate on `calibration_samples` images of the training pipeline; `tflite_qat`
fine-tunes a tf_keras twin for `qat_steps` steps first (`export/qat.py`, the `[qat]` extra).
"""

from __future__ import annotations

import datetime
import os
import tempfile
import time
from typing import Any

import numpy as np

from scalenas_tf import workdir as workdir_lib
from scalenas_tf.evaluation.metrics import METRIC_NAMES
from scalenas_tf.experiment import Experiment


def choose_arch(experiment: Experiment, workdir: workdir_lib.Workdir, arch: str = "", budget: float | None = None):
    """`(arch, how)`: a named arch, an arch JSON file, or the search front's best point within
    `budget` (cost unit of the search), or its best point overall."""
    if arch and budget is not None:
        raise ValueError(f"Give an arch or a budget, not both. Received: arch={arch!r}, budget={budget}")
    family, space = experiment.family, experiment.space
    if arch:
        chosen, label = family.resolve_arch(space, arch)
        kind = "arch file" if os.path.isfile(arch) else "named arch"
        return chosen, f"{kind} {label!r}"
    front_path = workdir.pareto_json
    if not os.path.exists(front_path):
        raise ValueError(
            f"No search results at {front_path}. Run bin/search.py with this --workdir first, or pass --arch"
        )
    unit = experiment.require("search").cost_unit
    metric = METRIC_NAMES[experiment.model.task]
    front = workdir_lib.read_json_list(
        front_path, "Pareto front", item_required={"arch": dict, unit: (int, float), metric: (int, float)}
    )
    if not front:
        raise ValueError(f"{front_path}: the Pareto front is empty; run bin/search.py again or pass --arch")
    if budget is not None:
        within = [p for p in front if p[unit] <= budget]
        if not within:
            cheapest = min(p[unit] for p in front)
            raise ValueError(
                f"No Pareto point costs <= budget {budget} {unit}; the cheapest costs {cheapest:.6g} {unit}"
            )
        point = max(within, key=lambda p: (p[metric], -p[unit]))
        how = f"best Pareto point within {budget} {unit}"
    else:
        point = max(front, key=lambda p: (p[metric], -p[unit]))
        how = "best Pareto point"
    try:
        chosen = space.arch_from_dict(point["arch"])
    except ValueError as e:
        raise ValueError(f"{front_path}: a front point's arch is not in this space ({e})") from None
    return chosen, f"{how} ({point[unit]:.6g} {unit}, {metric} {point[metric]:.4f} in search)"


def run(
    config: Any,
    workdir: str,
    arch: str | None = None,
    budget: float | None = None,
    name: str | None = None,
    formats=None,
    log=print,
) -> dict[str, Any]:
    """Exports one subnet of the trained supernet in `workdir`; see the module docstring.

    `arch`, `budget`, `name` and `formats` (names from `export.tflite.FORMATS`, or one comma-separated
    string) default to `config.export`'s. The export is built in a staging
    directory and moved into `workdir/export/<name>/` only after its parity checks pass, so a
    failed or killed export leaves an earlier one of the same name intact.
    """
    import tensorflow as tf

    import scalenas_tf
    from scalenas_tf.data import pipeline
    from scalenas_tf.evaluation import metrics
    from scalenas_tf.evaluation.evaluator import make_evaluator
    from scalenas_tf.export import parity
    from scalenas_tf.export import serving
    from scalenas_tf.export import tflite
    from scalenas_tf.models.checkpoint import load_trained_supernet
    from scalenas_tf.training import graph_options

    experiment = Experiment.from_config(config, require=("data", "search"))
    export, model, family, space = experiment.export, experiment.model, experiment.family, experiment.space
    arch = export.arch if arch is None else arch
    budget = export.budget if budget is None else budget
    name = export.name if name is None else name
    formats = export.formats if formats is None else tflite.check_formats(formats, "formats")
    if "tflite_qat" in formats:
        from scalenas_tf.export import qat

        missing = qat.unavailable_reason()
        if missing:
            raise ValueError(f"formats: tflite_qat needs the [qat] extra: {missing}")
    work = workdir_lib.Workdir(workdir)
    if name:
        work.export_dir(name)  # checks the name before any heavy work
    task, num_classes, input_size = model.task, model.num_classes, model.input_size
    chosen, how = choose_arch(experiment, work, arch, budget)
    supernet, weights = load_trained_supernet(experiment, work)
    start = time.perf_counter()
    log(f"[export] arch {chosen.hash()}: {how}")

    with graph_options.graph_optimizations(experiment.graph_optimizations):
        evaluator = make_evaluator(experiment, supernet)
        evaluated = evaluator(chosen)  # recalibrates BN for this arch, in place
        baseline = evaluator.constant_baseline()
    extraction = family.extract(supernet, chosen, input_size, name=f"subnet_{chosen.hash()}")
    static = extraction.model
    for line in extraction.log_lines:
        log(f"[export] {line}")
    cost_entry = family.export_cost(space, chosen, task, num_classes, input_size, experiment.search.cost_measure)
    if experiment.search.latency_model:  # the latency the search's predictor gives this arch
        from scalenas_tf.search.latency import LatencyModel

        features = family.count(space, chosen, task, num_classes, input_size).features
        cost_entry["latency_ms_predicted"] = LatencyModel.load(experiment.search.latency_model).predict(features)

    out = work.export_dir(name or chosen.hash())
    os.makedirs(work.export_root, exist_ok=True)
    workdir_lib.clean_stale(work.export_root)
    raw = serving.RAW_OUTPUT[task]
    with workdir_lib.staged_dir(out) as staging, tempfile.TemporaryDirectory() as scratch:
        # Every TFLite file converts from the SavedModel; it stays in scratch space unless asked for.
        home = staging if "saved_model" in formats else scratch
        saved_model = serving.save_saved_model(static, task, input_size, os.path.join(home, "saved_model"))
        log("[export] SavedModel written")
        representative = None
        if any(f in tflite.CALIBRATED_FORMATS for f in formats):
            representative = _representative_images(experiment, export.calibration_samples)
            log(f"[export] {len(representative)} representative images from the training pipeline")
        written = {}
        for fmt in formats:
            if fmt == "saved_model":
                continue
            begin = time.perf_counter()
            if fmt == "tflite_qat":
                from scalenas_tf.export import qat

                data, qat_report = qat.quantize_aware_tflite(
                    static,
                    task,
                    input_size,
                    _train_batches(experiment),
                    export.qat_steps,
                    learning_rate=export.qat_learning_rate,
                    # In batches of 32 (calibration of the fake-quant ranges runs a batch at a time).
                    representative=[representative[i : i + 32] for i in range(0, len(representative), 32)],
                    int8_io=export.int8_io,
                    log=log,
                )
            else:
                data = tflite.convert(saved_model, fmt, representative, int8_io=export.int8_io)
            written[fmt] = tflite.write(data, os.path.join(staging, tflite.FILE_NAMES[fmt]))
            log(f"[export] {fmt}: {len(data):,} bytes in {time.perf_counter() - begin:.1f} s")

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

        def metric_of(outputs):
            if evaluator.keypoint_ground_truth is not None:  # COCO AP (without the flip test here)
                from scalenas_tf.evaluation import keypoints

                sizes = [int(np.shape(t["heatmaps"])[0]) for t in targets]
                slices = iter(np.split(np.asarray(outputs[raw]), np.cumsum(sizes)[:-1]))
                stats = keypoints.evaluate_coco(
                    lambda images: next(slices), evaluator.validation_batches, evaluator.keypoint_ground_truth
                )
                return stats["AP"]
            total, offset = None, 0
            for t in targets:
                n = int(np.shape(t["heatmaps"] if isinstance(t, dict) else t)[0])
                stat = metrics.batch_statistic(task, num_classes, t, outputs[raw][offset : offset + n]).numpy()
                total, offset = (stat if total is None else total + stat), offset + n
            return metrics.metric_from_statistic(task, total)

        supernet_metric = metric_of(reference)
        checks = {"supernet": {"metric": supernet_metric}}
        candidates = {}
        if "saved_model" in formats:
            if export.isolated_check:
                candidates["saved_model"] = parity.run_saved_model_isolated(saved_model, images)
            else:
                loaded = tf.saved_model.load(saved_model).signatures["serving_default"]
                candidates["saved_model"] = {k: v.numpy() for k, v in loaded(images=tf.constant(images)).items()}
        for fmt, path in written.items():
            run_tflite = parity.run_tflite_isolated if export.isolated_check else parity.run_tflite
            candidates[fmt] = run_tflite(path, images)
        failures = []
        for fmt, outputs in candidates.items():
            report = parity.compare(task, raw, reference, outputs)
            report["metric"] = metric_of(outputs)
            report["metric_drop"] = supernet_metric - report["metric"]
            report["size_bytes"] = _size_on_disk(os.path.join(staging, tflite.FILE_NAMES[fmt]))
            if fmt in tflite.FLOAT_FORMATS:
                report["tolerance"] = export.parity_atol * max(1.0, report["output_max_abs"])
                report["passed"] = report["max_abs_diff"] <= report["tolerance"]
                if not report["passed"]:
                    failures.append(f"{fmt}: max abs diff {report['max_abs_diff']:.3g} > {report['tolerance']:.3g}")
            else:
                report["max_metric_drop"] = export.max_metric_drop[fmt]
                report["passed"] = report["metric_drop"] <= report["max_metric_drop"]
                if not report["passed"]:
                    failures.append(
                        f"{fmt}: {evaluator.metric_name} drops by {report['metric_drop']:.4f} "
                        f"({supernet_metric:.4f} -> {report['metric']:.4f}) > max_metric_drop "
                        f"{report['max_metric_drop']:.4f}"
                    )
            if fmt in tflite.CALIBRATED_FORMATS:
                report["calibration_samples"] = len(representative)
                report["int8_io"] = export.int8_io
            if fmt == "tflite_qat":
                report["qat"] = qat_report
            checks[fmt] = report

        cost_entry["keras_count_params"] = int(static.count_params())
        data = experiment.data
        metadata = {
            "arch": chosen.to_dict(),
            "arch_hash": chosen.hash(),
            "chosen_by": how,
            "task": task,
            "num_classes": num_classes,
            "input": {
                "name": serving.INPUT_NAME,
                "shape": [None, *input_size, 3],
                "dtype": "float32",
                "preprocessing": "RGB scaled to [0, 1]; the model normalizes with ImageNet mean/std itself",
                "mean": list(pipeline.MEAN),
                "std": list(pipeline.STD),
            },
            "outputs": list(serving.OUTPUT_NAMES[task]),
            "cost": cost_entry,
            "metric": {
                "name": evaluator.metric_name,
                "value": evaluated["metric"],
                "constant_baseline": baseline["metric"],
                "data": {
                    "source": data.source,
                    "split": "validation",
                    "examples": int(images.shape[0]),
                    "source_kwargs": data.source_kwargs,
                },
            },
            "parity": checks,
            "source_checkpoint": {"path": os.path.abspath(weights), "sha256": workdir_lib.file_sha256(weights)},
            "versions": {"scalenas_tf": scalenas_tf.__version__, "tensorflow": tf.__version__},
            "files": {fmt: tflite.FILE_NAMES[fmt] for fmt in formats},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **extraction.report,
        }
        if failures:
            # Keep the evidence beside the exports; the staged model is dropped, an earlier export stays.
            failed = os.path.join(work.export_root, f"{os.path.basename(out)}.parity_failed.json")
            workdir_lib.atomic_write_json(failed, metadata)
            raise parity.ParityError(
                f"exported model fails its checks ({'; '.join(failures)}); nothing was replaced, see {failed}"
            )
        workdir_lib.atomic_write_json(os.path.join(staging, workdir_lib.METADATA), metadata)
    log(f"[export] {out}")
    return {"export_dir": out, "seconds": round(time.perf_counter() - start, 1), **metadata}


def _size_on_disk(path: str) -> int:
    """Bytes of a file, or of every file under a directory."""
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(base, f)) for base, _, files in os.walk(path) for f in files)


def _train_dataset(experiment: Experiment, batch_size: int, num_examples=None, repeat=True):
    from scalenas_tf.data import pipeline

    data, model = experiment.data, experiment.model
    return pipeline.make_dataset(
        model.task,
        "train",
        batch_size,
        model.input_size,
        source=data.source,
        seed=experiment.seed,
        num_examples=num_examples,
        repeat=repeat,
        drop_remainder=False,
        source_kwargs=data.source_kwargs,
    )


def _representative_images(experiment: Experiment, samples: int) -> np.ndarray:
    """`samples` training images (augmented as in training), in [0, 1]: int8 calibration data."""
    from scalenas_tf.data import pipeline

    available = experiment.data.train_examples
    count = samples if available is None else min(samples, available)
    batches = _train_dataset(experiment, min(count, 64), num_examples=count, repeat=False)
    images = np.concatenate([pipeline.denormalize(x).numpy() for x, _ in batches])[:samples]
    if len(images) < samples:
        raise ValueError(
            f"config.export.calibration_samples={samples} but the training split gave only {len(images)} images"
        )
    return images


def _train_batches(experiment: Experiment):
    """Endless `(images in [0, 1], targets)` training batches (quantization-aware fine-tuning)."""
    from scalenas_tf.data import pipeline

    for x, y in _train_dataset(experiment, experiment.data.batch_size, num_examples=experiment.data.train_examples):
        yield pipeline.denormalize(x), y


def format_summary(summary: dict[str, Any]) -> str:
    """The exported model: where, its metric against the constant baseline, and parity."""
    m = summary["metric"]
    lines = [
        f"Exported {summary['arch_hash']} ({summary['chosen_by']}) to {summary['export_dir']}",
        f"  {m['name']} {m['value']:.4f} on {m['data']['examples']} validation images "
        f"(constant prediction: {m['constant_baseline']:.4f}); "
        f"{summary['cost']['params']:,} params, {summary['cost']['gmacs']:.4f} GMACs",
    ]
    supernet_metric = summary["parity"]["supernet"]["metric"]
    for fmt, report in summary["parity"].items():
        if fmt == "supernet":
            continue
        check = (
            f"max abs diff {report['max_abs_diff']:.2e} (tolerance {report['tolerance']:.1e})"
            if "tolerance" in report
            else f"drop {report['metric_drop']:+.4f} (max {report['max_metric_drop']:.4f}), "
            f"max abs diff {report['max_abs_diff']:.2e}"
        )
        lines.append(
            f"  {fmt:<14} {report['size_bytes'] / 1e6:8.3f} MB  {m['name']} {report['metric']:.4f} "
            f"(supernet {supernet_metric:.4f}), {check}, decisions agree {report['decision_agreement']:.4%}"
        )
    return "\n".join(lines)

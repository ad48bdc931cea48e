"""Search job: `run(config, workdir)` -> summary dict. No flags, no exit.

Reads `workdir/supernet.weights.h5` (written by the training job) and writes `workdir/search/`:
  evaluations.jsonl    every evaluated arch, one JSON line each, appended durably (the resumable state)
  pareto_front.json    the final Pareto front of (cost, metric) over all evaluations, by cost
  pareto_front.csv     the same as a table
  pareto.png           cost vs metric: every evaluation and the front of each method
  search_summary.json  fronts, hypervolumes, the constant baseline, timings
Restarting the same command continues where it stopped (see `search/state.py`).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from scalenas_tf import workdir as workdir_lib
from scalenas_tf.evaluation.evaluator import make_evaluator
from scalenas_tf.experiment import Experiment
from scalenas_tf.models.checkpoint import load_trained_supernet
from scalenas_tf.search import pareto
from scalenas_tf.search.ledger import front_of
from scalenas_tf.search.state import EvaluationLog
from scalenas_tf.training import graph_options


def log_header(experiment: Experiment, weights: str) -> dict[str, Any]:
    """What the stored evaluations depend on (the settings a larger value of which extends a search,
    e.g. the budget, are left out)."""
    search, data, model = experiment.search, experiment.data, experiment.model
    settings = search.algorithm
    header = {
        "search_space": experiment.search_space_fields,
        "model": {"task": model.task, "num_classes": model.num_classes, "input_size": list(model.input_size)},
        "data": {
            "source": data.source,
            "seed": experiment.seed,
            "source_kwargs": data.source_kwargs,
            "validation_examples": search.validation_examples,
            "batch_size": search.batch_size,
            "calibration_batches": search.calibration_batches,
            "calibration_batch_size": search.calibration_batch_size,
            "recalibrate": search.recalibrate,
        },
        "cost_measure": search.cost_measure,
        "settings": {k: v for k, v in settings.to_dict().items() if k not in settings.EXTENDABLE},
        "weights_sha256": workdir_lib.file_sha256(weights),
    }
    if search.cost_measure == "latency_ms":  # the costs are this predictor's: another must not extend the log
        header["latency_model_sha256"] = workdir_lib.file_sha256(search.latency_model)
    return header


class _Progress:
    """A Keras progress bar per method (ETA from the archs evaluated so far), printed at most every
    `interval` seconds when the output is not a terminal."""

    def __init__(self, method, budget, metric_name):
        import keras

        interactive = sys.stdout.isatty()
        self.bar = keras.utils.Progbar(
            budget,
            interval=0.05 if interactive else 10.0,
            unit_name="arch",
            stateful_metrics=["best " + metric_name],
        )
        self.method, self.metric_name = method, metric_name
        self.count = self.fresh = 0
        self.best = float("-inf")
        print(f"[search] {method}: {budget} archs", flush=True)

    def __call__(self, record, fresh):
        self.count += 1
        self.fresh += int(fresh)
        self.best = max(self.best, float(record["metric"]))
        self.bar.update(self.count, [("best " + self.metric_name, self.best)])


def run(config: Any, workdir: str, log=print) -> dict[str, Any]:
    """Runs the configured searches over the trained supernet in `workdir` (resuming if it holds one)."""
    experiment = Experiment.from_config(config, require=("data", "search"))
    search, family, space = experiment.search, experiment.family, experiment.space
    settings = search.algorithm
    work = workdir_lib.Workdir(workdir)
    with graph_options.graph_optimizations(experiment.graph_optimizations):  # the evaluator's functions
        cost_of = experiment.cost_of()
        supernet, weights = load_trained_supernet(experiment, work)
        evaluations = EvaluationLog(work.evaluations, log_header(experiment, weights))
        if evaluations.records:
            log(f"[search] resuming: {len(evaluations.records)} evaluations stored in {evaluations.path}")

        start = time.perf_counter()
        evaluator = make_evaluator(experiment, supernet)
        baseline = evaluator.constant_baseline()
        metric_name = evaluator.metric_name

        def evaluate(arch):
            result = evaluator(arch)
            counted = cost_of(arch)
            record = {"metric": result["metric"], "details": result["details"], "seconds": result["seconds"]}
            if isinstance(counted, tuple):
                record.update(cost=counted[0], params=counted[1])
            else:
                record["cost"] = counted
            return record

        results = {}
        for method in search.methods:
            progress = _Progress(method, settings.evaluations, metric_name)
            wrapped = evaluations.cached_evaluate(method, evaluate, on_record=progress)
            method_start = time.perf_counter()
            results[method] = family.search(method)(space, wrapped, cost_of, settings)
            if results[method].stopped_early:
                log(f"[search] {method} stopped early: {results[method].stopped_early}")
            log(
                f"[search] {method}: {len(results[method].results)} archs ({progress.fresh} evaluated now) "
                f"in {time.perf_counter() - method_start:.1f}s"
            )

        summary = summarize(results, baseline, metric_name, search.cost_unit, settings.evaluations, space)
        summary.update(
            workdir=workdir,
            weights=weights,
            seconds=round(time.perf_counter() - start, 1),
            metric_traces=evaluator.trace_count,
        )
        write_outputs(work, summary, results, metric_name)
        return summary


def _point(record, method, metric_name, unit, space):
    point = {
        "hash": record["hash"],
        "method": method,
        unit: record["cost"],
        metric_name: record["metric"],
        "arch": record["arch"].to_dict(),
        "describe": space.describe(record["arch"]),
    }
    if "params" in record:
        point["params"] = int(record["params"])
    return point


def summarize(results, baseline, metric_name, unit, budget, space) -> dict[str, Any]:
    everything = [r for res in results.values() for r in res.results if r["feasible"]]
    if not everything:
        raise ValueError("The search evaluated no feasible arch; loosen config.search.max_cost or min_metric")
    costs = [r["cost"] for r in everything]
    metrics = [r["metric"] for r in everything]
    reference = (max(costs), -min(metrics + [baseline["metric"]]))
    found_by = {}
    for method, res in results.items():
        for r in res.results:
            found_by.setdefault(r["hash"], method)
    front = [
        _point(r, found_by[r["hash"]], metric_name, unit, space)
        for r in front_of([dict(r) for r in {r["hash"]: r for r in everything}.values()])
    ]
    per_method = {}
    for method, res in results.items():
        method_front = res.front()
        points = pareto.objectives([r["cost"] for r in method_front], [r["metric"] for r in method_front])
        per_method[method] = {
            "evaluated": len(res.results),
            "stopped_early": res.stopped_early,
            "best_" + metric_name: max((r["metric"] for r in res.results), default=None),
            "front_size": len(method_front),
            "hypervolume": pareto.hypervolume_2d(points, reference) if len(method_front) else 0.0,
            "front": [_point(r, method, metric_name, unit, space) for r in method_front],
        }
        per_method[method].update(res.summary_extras(lambda r, m=method: _point(r, m, metric_name, unit, space)))
    return {
        "metric": metric_name,
        "cost_unit": unit,
        "constant_baseline": baseline,
        "budget": budget,
        "hypervolume_reference": {unit: reference[0], metric_name: -reference[1]},
        "front": front,
        "methods": per_method,
    }


def write_outputs(work: workdir_lib.Workdir, summary, results, metric_name):
    """The front (JSON, CSV), the summary and the plot, each written atomically."""
    unit = summary["cost_unit"]
    workdir_lib.atomic_write_json(work.pareto_json, summary["front"])
    rows = [["rank", unit, metric_name, "method", "hash", "arch"]]
    for i, p in enumerate(summary["front"]):
        rows.append([i, f"{p[unit]:.6g}", f"{p[metric_name]:.6f}", p["method"], p["hash"], p["describe"]])
    workdir_lib.atomic_write_csv(work.pareto_csv, rows)
    workdir_lib.atomic_write_json(work.search_summary, summary)
    with workdir_lib.atomic_path(work.pareto_png) as tmp:
        plot(tmp, results, summary, metric_name, unit)
    for method, res in results.items():
        for name, writer in res.extra_files().items():
            with workdir_lib.atomic_path(
                os.path.join(work.search_dir, f"{method}_{workdir_lib.check_name(name)}")
            ) as tmp:
                writer(tmp)


def plot(path, results, summary, metric_name, unit):
    """Cost vs metric: every evaluation per method (dots), each method's front (steps), the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"evolution": "tab:red", "nsga2": "tab:red", "mcea": "tab:red", "random": "tab:blue"}
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for method, res in results.items():
        colour = colours.get(method, "tab:gray")
        ax.scatter(
            [r["cost"] for r in res.results],
            [r["metric"] for r in res.results],
            s=8,
            alpha=0.35,
            color=colour,
            label=f"{method} ({len(res.results)} archs)",
        )
        front = res.front()
        ax.step(
            [r["cost"] for r in front],
            [r["metric"] for r in front],
            where="post",
            color=colour,
            linewidth=1.8,
            label=f"{method} front (hypervolume {summary['methods'][method]['hypervolume']:.4g})",
        )
    ax.axhline(
        summary["constant_baseline"]["metric"], color="black", linestyle="--", linewidth=1, label="constant prediction"
    )
    ax.set_xlabel(unit)
    ax.set_ylabel(metric_name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# What a search summary must hold for `format_summary` and the export to read it.
SUMMARY_FIELDS = {"metric": str, "cost_unit": str, "front": list, "methods": dict, "constant_baseline": dict}


def load_summary(workdir: str) -> dict[str, Any] | None:
    """`workdir/search/search_summary.json`, checked, or None if no search finished there.

    Raises:
        WorkdirError: the file is truncated, malformed or lacks a field (the message names the file).
    """
    path = workdir_lib.Workdir(workdir).search_summary
    if not os.path.exists(path):
        return None
    return workdir_lib.read_json_object(path, "search summary", required=SUMMARY_FIELDS)


def format_summary(summary: dict[str, Any]) -> str:
    """The Pareto front and the per-method comparison as a text table."""
    unit, metric = summary["cost_unit"], summary["metric"]
    lines = [
        f"Pareto front ({len(summary['front'])} archs, {metric} vs {unit}):",
        f"  {'#':>2}  {unit:>10}  {metric:>8}  {'method':<9}  {'hash':<16}  arch",
    ]
    for i, p in enumerate(summary["front"]):
        lines.append(
            f"  {i:>2}  {p[unit]:>10.5f}  {p[metric]:>8.4f}  {p['method']:<9}  {p['hash']:<16}  {p.get('describe', '')}"
        )
    for method, m in summary["methods"].items():
        lines.append(
            f"{method:>10}: {m['evaluated']} archs, best {metric} {m['best_' + metric]:.4f}, "
            f"front {m['front_size']}, hypervolume {m['hypervolume']:.5g}"
        )
        if m.get("selected"):
            lines.append(
                f"{'':>10}  {len(m['selected'])} models spread along its (accuracy, MAdds, params) front "
                f"of {m['front3_size']}:"
            )
            for p in m["selected"]:
                lines.append(
                    f"{'':>12}{p[unit]:>10.3f} {unit}  {p.get('params', 0):>10,} params  "
                    f"{metric} {p[metric]:.4f}  {p['hash']}"
                )
    lines.append(f"  constant prediction: {metric} {summary['constant_baseline']['metric']:.4f}")
    return "\n".join(lines)

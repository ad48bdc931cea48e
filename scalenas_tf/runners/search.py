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

import csv
import hashlib
import json
import os
import sys
import time
from typing import Any

from scalenas_tf import config as config_lib
from scalenas_tf.search import evolution
from scalenas_tf.search import pareto
from scalenas_tf.search.state import EvaluationLog

WEIGHTS = "supernet.weights.h5"


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def search_dir(workdir: str) -> str:
    return os.path.join(workdir, "search")


def cost_function(config: Any, space):
    """`arch -> cost` from the analytic counter: in the search's unit (GMACs or M params) for ScaleNAS;
    `(MAdds in M, params)` for SCARLET (NSGA-II's two cost objectives)."""
    from scalenas_tf.search import cost as cost_lib
    from scalenas_tf.search import scarlet_cost

    measure = config_lib.cost_measure(config)
    _, scale = config_lib.COST_MEASURES[measure]
    input_size = config_lib.parse_input_size(config.model.input_size)
    if measure == "madds":

        def scarlet_cost_of(arch):
            counted = scarlet_cost.count(space, arch, config.model.num_classes, input_size, validate=False)
            return counted.madds_m, float(counted.params)

        return scarlet_cost_of

    def cost_of(arch):
        counted = cost_lib.count(space, arch, config.model.task, config.model.num_classes, input_size, validate=False)
        return (counted.macs if measure == "macs" else counted.params) / scale

    return cost_of


def load_trained_supernet(config: Any, workdir: str):
    """The config's supernet with `workdir/supernet.weights.h5` loaded; a clear error if it is missing."""
    weights = os.path.join(workdir, WEIGHTS)
    if not os.path.exists(weights):
        raise ValueError(
            f"No trained supernet at {weights}. Train one first: "
            f"python bin/train_supernet.py --config=... --workdir={workdir}"
        )
    supernet = config_lib.build_supernet(config)
    supernet.build((None, None, None, 3))
    try:
        supernet.load_weights(weights)
    except ValueError as e:
        raise ValueError(f"{weights} does not fit the supernet of this config ({e})") from None
    return supernet, weights


def make_evaluator(config: Any, supernet):
    """A `SubnetEvaluator` on the config's calibration (train split) and validation batches."""
    from scalenas_tf.data import pipeline
    from scalenas_tf.evaluation.evaluator import SubnetEvaluator
    from scalenas_tf.evaluation.evaluator import take_batches

    search = config.search
    input_size = config_lib.parse_input_size(config.model.input_size)
    task, source = config.model.task, config.data.source
    calibration = pipeline.make_dataset(
        task, "train", search.calibration_batch_size, input_size, source=source, seed=config.seed,
        shuffle=False, repeat=False, drop_remainder=True,
        num_examples=search.calibration_batches * search.calibration_batch_size,
        source_kwargs=config.data.get("source_kwargs"),
    )
    validation = pipeline.make_dataset(
        task, "validation", search.batch_size, input_size, source=source, seed=config.seed,
        num_examples=search.validation_examples, source_kwargs=config.data.get("source_kwargs"),
    )
    return SubnetEvaluator(
        supernet,
        take_batches(calibration, search.calibration_batches, "calibration data"),
        take_batches(validation, -(-search.validation_examples // search.batch_size), "validation data"),
        recalibrate=bool(search.get("recalibrate", True)),
    )


def log_header(config: Any, weights: str, settings) -> dict[str, Any]:
    """What the stored evaluations depend on (the budget and NSGA-II's generations are left out: a
    larger one extends a search)."""
    search = config.search
    return {
        "search_space": dict(config.search_space),
        "model": {"task": config.model.task, "num_classes": config.model.num_classes,
                  "input_size": list(config_lib.parse_input_size(config.model.input_size))},
        "data": {"source": config.data.source, "seed": config.seed,
                 "source_kwargs": dict(config.data.get("source_kwargs") or {}),
                 "validation_examples": search.validation_examples, "batch_size": search.batch_size,
                 "calibration_batches": search.calibration_batches,
                 "calibration_batch_size": search.calibration_batch_size,
                 "recalibrate": bool(search.get("recalibrate", True))},
        "cost_measure": config_lib.cost_measure(config),
        "settings": {k: v for k, v in settings.to_dict().items() if k not in ("budget", "generations")},
        "weights_sha256": file_sha256(weights),
    }


class _Progress:
    """A Keras progress bar per method (ETA from the archs evaluated so far), printed at most every
    `interval` seconds when the output is not a terminal."""

    def __init__(self, method, budget, metric_name):
        import keras

        interactive = sys.stdout.isatty()
        self.bar = keras.utils.Progbar(
            budget, interval=0.05 if interactive else 10.0, unit_name="arch",
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
    config_lib.validate(config)
    search = config_lib.search_section(config)
    settings = config_lib.build_search_settings(config)
    config_lib.get_field(config, "data.source")
    space = config_lib.build_space(config)
    cost_of = cost_function(config, space)
    supernet, weights = load_trained_supernet(config, workdir)
    out = search_dir(workdir)
    os.makedirs(out, exist_ok=True)
    evaluations = EvaluationLog(os.path.join(out, "evaluations.jsonl"), log_header(config, weights, settings))
    if evaluations.records:
        log(f"[search] resuming: {len(evaluations.records)} evaluations stored in {evaluations.path}")

    start = time.perf_counter()
    evaluator = make_evaluator(config, supernet)
    baseline = evaluator.constant_baseline()
    metric_name = evaluator.metric_name
    measure = config_lib.cost_measure(config)
    scarlet = measure == "madds"

    def evaluate(arch):
        result = evaluator(arch)
        counted = cost_of(arch)
        record = {"metric": result["metric"], "cost": counted, "seconds": result["seconds"]}
        if scarlet:
            record.update(cost=counted[0], params=counted[1])
        return record

    if scarlet:
        from scalenas_tf.search import nsga2

        searches = {"nsga2": nsga2.nsga2_search, "random": nsga2.random_search_scarlet}
        budget = settings.max_evaluations
    else:
        searches = {"evolution": evolution.topology_evolution, "random": evolution.random_search}
        budget = settings.budget
    results = {}
    for method in search.get("methods", config_lib.search_methods(config)):
        progress = _Progress(method, budget, metric_name)
        wrapped = evaluations.cached_evaluate(method, evaluate, on_record=progress)
        method_start = time.perf_counter()
        results[method] = searches[method](space, wrapped, cost_of, settings)
        if results[method].stopped_early:
            log(f"[search] {method} stopped early: {results[method].stopped_early}")
        log(f"[search] {method}: {len(results[method].results)} archs ({progress.fresh} evaluated now) "
            f"in {time.perf_counter() - method_start:.1f}s")

    summary = summarize(results, baseline, metric_name, measure, budget, space)
    summary.update(
        workdir=workdir, weights=weights, seconds=round(time.perf_counter() - start, 1),
        metric_traces=evaluator.trace_count,
    )
    write_outputs(out, summary, results, metric_name, measure)
    return summary


def _point(record, method, metric_name, unit, space):
    point = {"hash": record["hash"], "method": method, unit: record["cost"], metric_name: record["metric"],
             "arch": record["arch"].to_dict(), "describe": space.describe(record["arch"])}
    if "params" in record:
        point["params"] = int(record["params"])
    return point


def summarize(results, baseline, metric_name, measure, budget, space) -> dict[str, Any]:
    unit, _ = config_lib.COST_MEASURES[measure]
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
    front = [_point(r, found_by[r["hash"]], metric_name, unit, space) for r in evolution.front_of(
        [dict(r) for r in {r["hash"]: r for r in everything}.values()]
    )]
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
        if hasattr(res, "selected"):  # NSGA-II: K models spread along the 3-objective front
            per_method[method]["front3_size"] = len(res.front3())
            per_method[method]["selected"] = [_point(r, method, metric_name, unit, space) for r in res.selected()]
    return {
        "metric": metric_name,
        "cost_unit": unit,
        "constant_baseline": baseline,
        "budget": budget,
        "hypervolume_reference": {unit: reference[0], metric_name: -reference[1]},
        "front": front,
        "methods": per_method,
    }


def write_outputs(out, summary, results, metric_name, measure):
    unit = summary["cost_unit"]
    with open(os.path.join(out, "pareto_front.json"), "w") as f:
        json.dump(summary["front"], f, indent=1)
    with open(os.path.join(out, "pareto_front.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", unit, metric_name, "method", "hash", "arch"])
        for i, p in enumerate(summary["front"]):
            writer.writerow([i, f"{p[unit]:.6g}", f"{p[metric_name]:.6f}", p["method"], p["hash"], p["describe"]])
    with open(os.path.join(out, "search_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    plot(os.path.join(out, "pareto.png"), results, summary, metric_name, unit)


def plot(path, results, summary, metric_name, unit):
    """Cost vs metric: every evaluation per method (dots), each method's front (steps), the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"evolution": "tab:red", "nsga2": "tab:red", "random": "tab:blue"}
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for method, res in results.items():
        colour = colours.get(method, "tab:gray")
        ax.scatter([r["cost"] for r in res.results], [r["metric"] for r in res.results], s=8, alpha=0.35,
                   color=colour, label=f"{method} ({len(res.results)} archs)")
        front = res.front()
        ax.step([r["cost"] for r in front], [r["metric"] for r in front], where="post", color=colour, linewidth=1.8,
                label=f"{method} front (hypervolume {summary['methods'][method]['hypervolume']:.4g})")
    ax.axhline(summary["constant_baseline"]["metric"], color="black", linestyle="--", linewidth=1,
               label="constant prediction")
    ax.set_xlabel(unit)
    ax.set_ylabel(metric_name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def load_summary(workdir: str) -> dict[str, Any] | None:
    """`workdir/search/search_summary.json`, or None if no search finished there."""
    path = os.path.join(search_dir(workdir), "search_summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def format_summary(summary: dict[str, Any]) -> str:
    """The Pareto front and the per-method comparison as a text table."""
    unit, metric = summary["cost_unit"], summary["metric"]
    lines = [f"Pareto front ({len(summary['front'])} archs, {metric} vs {unit}):",
             f"  {'#':>2}  {unit:>10}  {metric:>8}  {'method':<9}  {'hash':<16}  arch"]
    for i, p in enumerate(summary["front"]):
        lines.append(f"  {i:>2}  {p[unit]:>10.5f}  {p[metric]:>8.4f}  {p['method']:<9}  {p['hash']:<16}  {p.get('describe', '')}")
    for method, m in summary["methods"].items():
        lines.append(
            f"{method:>10}: {m['evaluated']} archs, best {metric} {m['best_' + metric]:.4f}, "
            f"front {m['front_size']}, hypervolume {m['hypervolume']:.5g}"
        )
        if m.get("selected"):
            lines.append(f"{'':>10}  {len(m['selected'])} models spread along its (accuracy, MAdds, params) front "
                         f"of {m['front3_size']}:")
            for p in m["selected"]:
                lines.append(f"{'':>12}{p[unit]:>10.3f} {unit}  {p.get('params', 0):>10,} params  "
                             f"{metric} {p[metric]:.4f}  {p['hash']}")
    lines.append(f"  constant prediction: {metric} {summary['constant_baseline']['metric']:.4f}")
    return "\n".join(lines)

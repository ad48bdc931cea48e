"""The evaluation ledger every search spends its budget through, and the result it returns.

A search sees an arch only through two callables: `cost_of(arch)` (cheap, analytic: a float, or a
`(cost, params)` pair for searches that also weigh parameters) and `evaluate(arch) -> float` (the
task metric, higher is better; the expensive part). The ledger applies the same rules for every
family: an arch is evaluated at most once; `max_cost` is checked FIRST, from `cost_of`, so an arch
over it is never evaluated and costs nothing; `min_metric` is checked after, and an arch below it
(or with a non-finite metric) is recorded as infeasible: it counts against the budget but is never
a parent, on a front, or an output.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

from scalenas_tf.search import pareto

# Draws that may fail in a row (duplicate or over `max_cost`) before a search stops early: a small
# space can run out of new archs, and a tight `max_cost` can admit too few.
MAX_FAILED_DRAWS = 2000


class SearchExhausted(RuntimeError):
    """No new arch within the constraints could be drawn (`MAX_FAILED_DRAWS` tries in a row)."""


class EvaluationLedger:
    """Evaluates each new arch once, enforcing `max_cost` before and `min_metric` after.

    Args:
        cost_of: `arch -> cost` or `arch -> (cost, params)`.
        evaluate: `arch -> metric`.
        budget: int. The most archs evaluated (infeasible ones included).
        max_cost: cost limit in the unit of `cost_of`, or None.
        min_metric: metric floor, or None.
    """

    def __init__(self, cost_of: Callable, evaluate: Callable, budget: int, max_cost=None, min_metric=None):
        self.cost_of = cost_of
        self.evaluate = evaluate
        self.budget = int(budget)
        self.max_cost = max_cost
        self.min_metric = min_metric
        self.results: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.failed = 0

    @property
    def done(self) -> bool:
        return len(self.results) >= self.budget

    def _fail(self) -> None:
        self.failed += 1
        if self.failed >= MAX_FAILED_DRAWS:
            raise SearchExhausted(
                f"no new arch within the constraints after {MAX_FAILED_DRAWS} draws "
                f"({len(self.results)} of {self.budget} evaluated; max_cost={self.max_cost})"
            )

    def offer(self, arch, **extra) -> dict[str, Any] | None:
        """The new record if `arch` is new and within `max_cost` (then evaluated), else None.

        `extra` (e.g. `generation=3`) is stored in the record.
        """
        key = arch.hash()
        if key in self.seen:
            return self._fail()
        counted = self.cost_of(arch)
        cost, params = (counted, None) if not isinstance(counted, (tuple, list)) else counted
        cost = float(cost)
        if self.max_cost is not None and not cost <= self.max_cost:
            return self._fail()
        self.failed = 0
        self.seen.add(key)
        metric = float(self.evaluate(arch))
        feasible = math.isfinite(metric) and (self.min_metric is None or metric >= self.min_metric)
        record = {"hash": key, "arch": arch, "cost": cost, "metric": metric, "feasible": feasible, **extra}
        if params is not None:
            record["params"] = float(params)
        self.results.append(record)
        return record

    def feasible(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["feasible"]]


def spend_on_stream(ledger: EvaluationLedger, stream: Iterator, **extra) -> str | None:
    """Random search: offers archs from `stream` until the budget is spent. Returns why it stopped
    early (None when it spent its budget)."""
    try:
        while not ledger.done:
            ledger.offer(next(stream), **extra)
    except SearchExhausted as e:
        return str(e)
    return None


@dataclasses.dataclass
class SearchResult:
    """What a search evaluated, in order (dicts with `hash`, `arch`, `cost`, `metric`, `feasible`,
    and `params` where the search weighs them), and why it stopped before its budget (`None` when it
    spent it). Families may subclass it to add outputs (`summary_extras`)."""

    method: str
    results: list[dict[str, Any]]
    stopped_early: str | None = None

    def front(self) -> list[dict[str, Any]]:
        """The feasible results on the 2-D Pareto front of (cost, metric), by increasing cost."""
        return front_of(self.results)

    def summary_extras(self, point: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Extra fields for this method's entry in the search summary (`point` formats a record)."""
        return {}

    def extra_files(self) -> dict[str, Callable[[str], None]]:
        """Extra outputs of this method: `{file name: writer(path)}`; the runner writes each atomically
        into the search directory as `<method>_<file name>`."""
        return {}


def front_of(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The feasible results on the Pareto front of (cost, metric), by increasing cost."""
    feasible = [r for r in results if r["feasible"]]
    if not feasible:
        return []
    points = pareto.objectives([r["cost"] for r in feasible], [r["metric"] for r in feasible])
    front = [feasible[i] for i in pareto.pareto_front(points)]
    return sorted(front, key=lambda r: (r["cost"], -r["metric"]))

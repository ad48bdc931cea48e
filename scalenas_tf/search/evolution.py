"""ScaleNAS multi-scale topology evolution (Algorithm 1) and the random-search baseline.

Pure Python: the searches see an arch only through two callables, `cost_of(arch) -> float` (cheap,
analytic; checked first, so an arch over `max_cost` is never evaluated) and `evaluate(arch) -> float`
(the task metric, higher is better; the expensive part). Both searches are deterministic given
`settings.seed` and the metrics they receive, so a search that replays its stored metrics (see
`search/state.py`) proposes exactly the archs it proposed before and continues where it stopped.

Evolution, with the paper's defaults:
  1. Initial population: `population` (n0 = 1000) archs sampled across depth groups x fusion
     percentages (group i mod G: depths uniform in {2,3}, {3,4} or {4,5}, each cross bit on with
     probability 0.2, 0.5 or 0.8), each evaluated.
  2. Repeat until `budget` (N = 2000) archs are evaluated: select the top `top_k` (k = 100) of all
     feasible evaluated archs by peeling successive Pareto fronts of (cost, metric) (the overflowing
     front by crowding distance); make `children` new archs, each from two distinct parents by
     inner-stage crossover (each module taken from the second parent with probability
     `crossover_prob`, p_c = 0.25) then mutation (each module, with probability `mutation_prob`,
     p_m = 0.5, flips one cross-branch fusion bit chosen uniformly within its active depth); evaluate
     them.
Random search spends the same budget on archs from the same stream as the initial population (same
seed), so the two searches share their first n0 archs and differ only in how they spend the rest.

An arch whose metric is below `min_metric` counts against the budget but is never a parent and never
on the front. An arch is evaluated at most once per search (duplicates are redrawn).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from scalenas_tf.search import pareto
from scalenas_tf.search_space import ModuleArch
from scalenas_tf.search_space import ScaleNASArch
from scalenas_tf.search_space import ScaleNASSpace

# Draws that may fail in a row (duplicate or over `max_cost`) before a search stops early: a small
# space can run out of new archs, and a tight `max_cost` can admit too few.
MAX_FAILED_DRAWS = 2000


class SearchExhausted(RuntimeError):
    """No new arch within the constraints could be drawn (`MAX_FAILED_DRAWS` tries in a row)."""


@dataclasses.dataclass(frozen=True)
class EvolutionSettings:
    """Settings of both searches (paper defaults). `budget` is the number of archs each evaluates."""

    population: int = 1000
    top_k: int = 100
    children: int = 100
    crossover_prob: float = 0.25
    mutation_prob: float = 0.5
    budget: int = 2000
    fusion_probs: tuple[float, ...] = (0.2, 0.5, 0.8)
    seed: int = 0
    max_cost: float | None = None
    min_metric: float | None = None

    def __post_init__(self):
        for name in ("population", "top_k", "children", "budget"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"search.{name} must be an int >= 1. Received: {name}={value!r}")
        if self.population > self.budget:
            raise ValueError(
                f"search.population ({self.population}) must not exceed search.budget ({self.budget})"
            )
        for name in ("crossover_prob", "mutation_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"search.{name} must be in [0, 1]. Received: {name}={value!r}")
        probs = tuple(self.fusion_probs)
        if not probs or not all(isinstance(p, (int, float)) and 0.0 <= p <= 1.0 for p in probs):
            raise ValueError(f"search.fusion_probs must be probabilities. Received: fusion_probs={self.fusion_probs!r}")
        object.__setattr__(self, "fusion_probs", tuple(float(p) for p in probs))
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"search.seed must be an int >= 0. Received: seed={self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# === Operators ===


def crossover(space: ScaleNASSpace, first: ScaleNASArch, second: ScaleNASArch, rng, prob: float) -> ScaleNASArch:
    """Inner-stage crossover: each module of `first` is replaced by `second`'s module at the same
    position with probability `prob` (modules at one position have the same branches, so the child
    is valid)."""
    take = rng.random(len(first.modules)) < prob
    modules = tuple(b if t else a for a, b, t in zip(first.modules, second.modules, take))
    return space.apply_output_rule(ScaleNASArch(modules))


def mutate(space: ScaleNASSpace, arch: ScaleNASArch, rng, prob: float) -> ScaleNASArch:
    """Fusion mutation: each module, with probability `prob`, flips one cross-branch bit chosen
    uniformly among those within its active depth (target j, step s < depths[j], source k != j)."""
    modules = []
    for module in arch.modules:
        active = [
            (j, s, k)
            for j, d in enumerate(module.depths)
            for s in range(d)
            for k in range(module.num_branches)
            if k != j
        ]
        if active and rng.random() < prob:
            j, s, k = active[rng.integers(len(active))]
            fusion = [[list(bits) for bits in steps] for steps in module.fusion]
            fusion[j][s][k] = 1 - fusion[j][s][k]
            module = ModuleArch(module.depths, tuple(tuple(tuple(b) for b in steps) for steps in fusion))
        modules.append(module)
    return space.apply_output_rule(ScaleNASArch(tuple(modules)))


def sample_stream(space: ScaleNASSpace, settings: EvolutionSettings):
    """Endless archs cycling through depth groups x fusion probabilities (seeded by `settings.seed`)."""
    rng = np.random.default_rng([settings.seed, 0])
    groups = [(d, p) for d in space.depth_groups() for p in settings.fusion_probs]
    for i in itertools.count():
        depths, prob = groups[i % len(groups)]
        yield space.sample(rng, fusion_prob=prob, depth_choices=depths)


# === Searches ===


@dataclasses.dataclass
class SearchResult:
    """What a search evaluated, in order (dicts with `hash`, `arch`, `cost`, `metric`, `feasible`),
    and why it stopped before its budget (`None` when it spent it)."""

    method: str
    results: list[dict[str, Any]]
    stopped_early: str | None = None

    def front(self) -> list[dict[str, Any]]:
        return front_of(self.results)


class _Budget:
    """Evaluates each new arch once, enforcing `max_cost` before and `min_metric` after."""

    def __init__(self, cost_of, evaluate, settings):
        self.cost_of = cost_of
        self.evaluate = evaluate
        self.settings = settings
        self.results: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.failed = 0

    @property
    def done(self) -> bool:
        return len(self.results) >= self.settings.budget

    def offer(self, arch: ScaleNASArch) -> bool:
        """Evaluates `arch` if it is new and within `max_cost`; returns whether it was."""
        key = arch.hash()
        cost = None if key in self.seen else float(self.cost_of(arch))
        if cost is None or (self.settings.max_cost is not None and cost > self.settings.max_cost):
            self.failed += 1
            if self.failed >= MAX_FAILED_DRAWS:
                raise SearchExhausted(
                    f"no new arch within the constraints after {MAX_FAILED_DRAWS} draws "
                    f"({len(self.results)} of {self.settings.budget} evaluated; max_cost={self.settings.max_cost})"
                )
            return False
        self.failed = 0
        self.seen.add(key)
        metric = float(self.evaluate(arch))
        feasible = self.settings.min_metric is None or metric >= self.settings.min_metric
        self.results.append({"hash": key, "arch": arch, "cost": cost, "metric": metric, "feasible": feasible})
        return True

    def feasible(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["feasible"]]


def random_search(
    space: ScaleNASSpace, evaluate: Callable[[ScaleNASArch], float], cost_of: Callable[[ScaleNASArch], float],
    settings: EvolutionSettings,
) -> SearchResult:
    """`settings.budget` archs from `sample_stream`; stops early (keeping what it has) if the space
    runs out of new archs within the constraints."""
    budget = _Budget(cost_of, evaluate, settings)
    stream = sample_stream(space, settings)
    try:
        while not budget.done:
            budget.offer(next(stream))
    except SearchExhausted as e:
        return SearchResult("random", budget.results, str(e))
    return SearchResult("random", budget.results)


def topology_evolution(
    space: ScaleNASSpace, evaluate: Callable[[ScaleNASArch], float], cost_of: Callable[[ScaleNASArch], float],
    settings: EvolutionSettings,
) -> SearchResult:
    """ScaleNAS Algorithm 1 (see the module docstring)."""
    budget = _Budget(cost_of, evaluate, settings)
    stream = sample_stream(space, settings)
    rng = np.random.default_rng([settings.seed, 1])
    try:
        while len(budget.results) < settings.population:
            budget.offer(next(stream))
        while not budget.done:
            parents = budget.feasible()
            if not parents:
                raise SearchExhausted("no evaluated arch meets min_metric, so there are no parents")
            points = pareto.objectives([p["cost"] for p in parents], [p["metric"] for p in parents])
            parents = [parents[i]["arch"] for i in pareto.select_top_k(points, settings.top_k)]
            made = 0
            while made < settings.children and not budget.done:
                if len(parents) > 1:
                    a, b = rng.choice(len(parents), size=2, replace=False)
                else:
                    a = b = 0
                child = crossover(space, parents[a], parents[b], rng, settings.crossover_prob)
                child = mutate(space, child, rng, settings.mutation_prob)
                made += budget.offer(child)
    except SearchExhausted as e:
        return SearchResult("evolution", budget.results, str(e))
    return SearchResult("evolution", budget.results)


def front_of(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The feasible results on the Pareto front of (cost, metric), by increasing cost."""
    feasible = [r for r in results if r["feasible"]]
    if not feasible:
        return []
    points = pareto.objectives([r["cost"] for r in feasible], [r["metric"] for r in feasible])
    front = [feasible[i] for i in pareto.pareto_front(points)]
    return sorted(front, key=lambda r: (r["cost"], -r["metric"]))

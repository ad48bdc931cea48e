"""SCARLET's constrained, weighted NSGA-II (SCARLET-NAS Algorithm 1) and its random-search baseline.

Pure numpy. The searches see an arch only through two callables:
  - `cost_of(arch) -> (madds, params)`: cheap and analytic (MAdds = MACs / 1e6);
  - `evaluate(arch) -> accuracy`: the expensive part (e.g. a supernet evaluation).

Objectives: maximize accuracy, minimize MAdds, maximize params (at equal MAdds more params means
more capacity, as in SCARLET). Internally every objective is minimized: (-accuracy, madds, -params),
and the crowding distance weighs the three terms by `settings.weights` (SCARLET's 0.4, 0.4, 0.2).

Constraint order (the reason the callables are separate):
  1. `max_cost` is checked FIRST, from `cost_of`. An arch over it is never passed to `evaluate`:
     it is redrawn (the initial population keeps sampling; a generation makes another child) and
     costs nothing from the budget. Duplicates of anything already evaluated are redrawn the same
     way, so an arch is evaluated at most once per search. `MAX_FAILED_DRAWS` redraws in a row stop
     the search early, keeping its results, with the reason in `stopped_early`.
  2. `min_metric` is checked only for archs that passed step 1, after `evaluate`. An arch below it is
     recorded (`feasible=False`; it counts against the budget) but never enters a population, the
     fronts or the selected outputs. A non-finite accuracy is treated the same way.

Algorithm (`nsga2_search`):
  1. Initial population: `population` feasible archs sampled uniformly (`space.sample`), each
     evaluated (infeasible draws are recorded and sampling goes on).
  2. Each of `generations` generations makes `population` evaluated children. A child comes from
     two parents, each chosen by a tournament of `tournament_size` distinct population members
     (lower non-domination rank wins, then larger weighted crowding distance, then the first drawn),
     single-point crossover (with probability `crossover_prob` the child is the first parent's
     layers before a cut point uniform in 1..L-1 and the second's from it on; otherwise a copy of
     the first parent), then mutation (each layer, with probability `mutation_prob`, is redrawn
     uniformly from that layer's choices, possibly to the same one).
  3. Parents + feasible children are sorted into non-dominated fronts; the next population takes
     whole fronts in order and cuts the overflowing front by weighted crowding distance
     (`pareto.select_top_k`).
  The search stops after the last generation or when `evaluations` archs are evaluated.

The result's final front (`front3()`) is the non-dominated set of ALL feasible evaluated archs (not
only the last population: a good arch crowded out of a population is still a valid output), and
`selected()` spreads `num_outputs` models evenly along it by MAdds (`select_spread`). `front()` is
the 2-D (MAdds, accuracy) front, as `SearchResult.front`, so the search summaries work.

Determinism: given `settings.seed` and the metrics `evaluate` returns, both searches propose the
same archs in the same order (random streams `np.random.default_rng([seed, 0])` for uniform
sampling and `[seed, 1]` for the variation operators), so replaying a log (`search/state.py`)
reproduces the run. `random_search` draws from the same sampling stream, so it shares the
initial population's archs with `nsga2_search` and differs only in how it spends the rest.

References:
    Chu et al., "SCARLET-NAS: Bridging the Gap between Stability and Scalability in Weight-sharing
    Neural Architecture Search", ICCV-W 2021, Algorithm 1.
    Deb et al., "A Fast and Elitist Multiobjective Genetic Algorithm: NSGA-II", IEEE TEVC 2002.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any
from typing import ClassVar

import numpy as np

from scalenas_tf.families.scarlet.space import ScarletArch
from scalenas_tf.families.scarlet.space import ScarletSpace
from scalenas_tf.search import pareto
from scalenas_tf.search.ledger import EvaluationLedger
from scalenas_tf.search.ledger import SearchExhausted
from scalenas_tf.search.ledger import SearchResult
from scalenas_tf.search.ledger import spend_on_stream

_SAMPLE_STREAM, _VARIATION_STREAM = 0, 1


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class NSGA2Settings:
    """Settings of `nsga2_search` and `random_search`.

    Args:
        population: int >= 2. Population size (70).
        generations: int >= 0. Generations after the initial population (120).
        weights: three non-negative numbers. Crowding-distance weights of (accuracy, MAdds, params)
            (0.4, 0.4, 0.2).
        max_cost: MAdds (MACs / 1e6) limit, checked before evaluation; None for no limit (500).
        min_metric: accuracy floor, checked after evaluation; None for none (0.4).
        crossover_prob: probability that a child is a single-point crossover of its two parents
            rather than a copy of the first (0.9, NSGA-II's customary p_c; Deb et al. 2002).
        mutation_prob: per-layer probability that a gene is redrawn uniformly from its layer's
            choices; None (default) means 1 / num_layers, NSGA-II's customary p_m = 1 / n (about
            one redrawn layer per child).
        tournament_size: int in [1, population]. Contestants per parent selection (2: binary).
        num_outputs: int >= 1. K, the models `selected()` spreads along the final front (10).
        seed: int >= 0.
        budget: the most archs evaluated in all (those under `min_metric` included); None means
            population * (generations + 1), what NSGA-II evaluates when every arch is feasible.
            Must be >= population. Archs rejected by `min_metric` while the initial population fills
            use up budget, so the last generation(s) then run short or not at all.
    """

    population: int = 70
    generations: int = 120
    weights: tuple[float, float, float] = (0.4, 0.4, 0.2)
    max_cost: float | None = 500.0
    min_metric: float | None = 0.4
    crossover_prob: float = 0.9
    mutation_prob: float | None = None
    tournament_size: int = 2
    num_outputs: int = 10
    seed: int = 0
    budget: int | None = None

    # Fields left out of a search log's header: raising them extends a finished search.
    EXTENDABLE: ClassVar[tuple[str, ...]] = ("budget", "generations")

    def __post_init__(self):
        minimums = {"population": 2, "generations": 0, "tournament_size": 1, "num_outputs": 1, "seed": 0}
        for name, low in minimums.items():
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ValueError(f"search.{name} must be an int >= {low}. Received: {name}={value!r}")
        if self.tournament_size > self.population:
            raise ValueError(
                f"search.tournament_size must not exceed search.population ({self.population}). "
                f"Received: tournament_size={self.tournament_size}"
            )
        weights = self.weights
        if (
            not isinstance(weights, (list, tuple))
            or len(weights) != 3
            or not all(_is_number(w) and math.isfinite(w) and w >= 0 for w in weights)
            or sum(weights) <= 0
        ):
            raise ValueError(
                "search.weights must be 3 non-negative numbers (accuracy, MAdds, params), not all zero. "
                f"Received: weights={weights!r}"
            )
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))
        if self.max_cost is not None and (not _is_number(self.max_cost) or not self.max_cost > 0):
            raise ValueError(f"search.max_cost must be a number > 0 or None. Received: max_cost={self.max_cost!r}")
        if self.min_metric is not None and (not _is_number(self.min_metric) or not math.isfinite(self.min_metric)):
            raise ValueError(
                f"search.min_metric must be a finite number or None. Received: min_metric={self.min_metric!r}"
            )
        for name in ("crossover_prob", "mutation_prob"):
            value = getattr(self, name)
            if value is None and name == "mutation_prob":
                continue
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"search.{name} must be in [0, 1]. Received: {name}={value!r}")
        if self.budget is not None:
            if not _is_int(self.budget) or self.budget < 1:
                raise ValueError(f"search.budget must be an int >= 1 or None. Received: budget={self.budget!r}")
            if self.budget < self.population:
                raise ValueError(f"search.population ({self.population}) must not exceed search.budget ({self.budget})")

    @property
    def evaluations(self) -> int:
        """`budget`, or population * (generations + 1) when it is None."""
        return self.budget if self.budget is not None else self.population * (self.generations + 1)

    def mutation_rate(self, num_layers: int) -> float:
        """`mutation_prob`, or 1 / num_layers when it is None."""
        return self.mutation_prob if self.mutation_prob is not None else 1.0 / max(num_layers, 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# === Operators ===


def crossover(first: ScarletArch, second: ScarletArch, rng: np.random.Generator, prob: float) -> ScarletArch:
    """Single-point crossover: with probability `prob`, `first`'s layers before a cut uniform in
    1..L-1 and `second`'s from the cut on; otherwise `first` unchanged. Layers keep their positions,
    so the child is in the space whenever both parents are."""
    num_layers = len(first.choices)
    if rng.random() >= prob or num_layers < 2:
        return first
    cut = int(rng.integers(1, num_layers))
    return ScarletArch(first.choices[:cut] + second.choices[cut:])


def mutate(space: ScarletSpace, arch: ScarletArch, rng: np.random.Generator, prob: float) -> ScarletArch:
    """Each layer, with probability `prob`, is redrawn uniformly from `space.layer_choices(layer)`
    (the redraw may give the same choice back)."""
    redraw = rng.random(len(arch.choices)) < prob
    if not redraw.any():
        return arch
    choices = list(arch.choices)
    for layer in np.flatnonzero(redraw):
        options = space.layer_choices(int(layer))
        choices[layer] = str(options[rng.integers(len(options))])
    return ScarletArch(tuple(choices))


def objectives3(records: list[dict[str, Any]]) -> np.ndarray:
    """`(n, 3)` minimized objectives (-accuracy, MAdds, -params) of result dicts."""
    if not records:
        return np.zeros((0, 3))
    return np.asarray([[-r["metric"], r["cost"], -r["params"]] for r in records], dtype=np.float64)


def select_spread(front: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """`k` results spread evenly along `front` by MAdds: sorted by (MAdds, -accuracy), the entries at
    `round(linspace(0, n - 1, k))`, without repeats. Both ends are included when k >= 2; all of
    `front` when k >= len(front); the lowest-MAdds entry when k == 1.

    Raises:
        ValueError: `k` < 0.
    """
    if not _is_int(k) or k < 0:
        raise ValueError(f"`k` must be an int >= 0. Received: k={k!r}")
    ordered = sorted(front, key=lambda r: (r["cost"], -r["metric"]))
    if k == 0 or not ordered:
        return []
    if k >= len(ordered):
        return ordered
    indices = np.unique(np.round(np.linspace(0, len(ordered) - 1, k)).astype(np.int64))
    return [ordered[i] for i in indices]


# === Results ===


@dataclasses.dataclass
class ParetoSearchResult(SearchResult):
    """What a search evaluated, in order: dicts with `hash`, `arch`, `cost` (MAdds), `params`,
    `metric` (accuracy), `feasible` and `generation` (0 for the initial population, None for random
    search). `populations` holds the hashes of each generation's population (index 0: initial;
    empty for random search). `front()` is the 2-D (MAdds, accuracy) front of the feasible results,
    `front3()` the (accuracy, MAdds, params) one, and `selected()` its `num_outputs` spread models."""

    num_outputs: int = 10
    populations: list[list[str]] = dataclasses.field(default_factory=list)

    def front3(self) -> list[dict[str, Any]]:
        """The feasible results that no feasible result dominates in (accuracy up, MAdds down,
        params up), by increasing MAdds."""
        feasible = [r for r in self.results if r["feasible"]]
        if not feasible:
            return []
        front = [feasible[i] for i in pareto.pareto_front(objectives3(feasible))]
        return sorted(front, key=lambda r: (r["cost"], -r["metric"]))

    def selected(self, k: int | None = None) -> list[dict[str, Any]]:
        """`k` (default `num_outputs`) models spread evenly by MAdds along `front3()`."""
        return select_spread(self.front3(), self.num_outputs if k is None else k)

    def summary_extras(self, point) -> dict[str, Any]:
        """The K models spread along the 3-objective front, for the search summary."""
        return {"front3_size": len(self.front3()), "selected": [point(r) for r in self.selected()]}


def _ledger(cost_of, evaluate, settings: NSGA2Settings) -> EvaluationLedger:
    return EvaluationLedger(cost_of, evaluate, settings.evaluations, settings.max_cost, settings.min_metric)


# === Searches ===


def _ranks_and_crowding(points: np.ndarray, weights) -> tuple[np.ndarray, np.ndarray]:
    """Each point's non-domination rank (0 = first front) and weighted crowding distance within it."""
    rank = np.zeros(len(points), dtype=np.int64)
    crowd = np.zeros(len(points))
    for i, front in enumerate(pareto.non_dominated_fronts(points)):
        rank[front] = i
        crowd[front] = pareto.crowding_distance(points[front], weights)
    return rank, crowd


def _tournament(rng: np.random.Generator, rank, crowd, size: int) -> int:
    """Index of the winner among `size` distinct contestants: lower rank, then larger crowding."""
    n = len(rank)
    contestants = rng.choice(n, size=size, replace=n < size)
    best = int(contestants[0])
    for c in contestants[1:]:
        c = int(c)
        if rank[c] < rank[best] or (rank[c] == rank[best] and crowd[c] > crowd[best]):
            best = c
    return best


def _next_generation(space, population, ledger, rng, settings, generation) -> list[dict[str, Any]]:
    """One NSGA-II generation: `population` evaluated children, then elitist survival."""
    rank, crowd = _ranks_and_crowding(objectives3(population), settings.weights)
    mutation_prob = settings.mutation_rate(space.num_layers)
    children, made = [], 0
    while made < settings.population and not ledger.done:
        a = _tournament(rng, rank, crowd, settings.tournament_size)
        b = _tournament(rng, rank, crowd, settings.tournament_size)
        child = crossover(population[a]["arch"], population[b]["arch"], rng, settings.crossover_prob)
        child = mutate(space, child, rng, mutation_prob)
        record = ledger.offer(child, generation=generation)
        if record is None:
            continue  # over max_cost or already evaluated: make another child
        made += 1
        if record["feasible"]:
            children.append(record)
    merged = population + children
    keep = pareto.select_top_k(objectives3(merged), settings.population, settings.weights)
    return [merged[i] for i in keep]


def nsga2_search(
    space: ScarletSpace,
    evaluate: Callable[[ScarletArch], float],
    cost_of: Callable[[ScarletArch], tuple[float, float]],
    settings: NSGA2Settings,
) -> ParetoSearchResult:
    """SCARLET's constrained, weighted NSGA-II (see the module docstring).

    Args:
        space: the search space (`sample`, `num_layers`, `layer_choices`).
        evaluate: `arch -> accuracy` (higher is better); called at most once per arch, and only for
            archs within `settings.max_cost`.
        cost_of: `arch -> (madds, params)`, cheap.
        settings: `NSGA2Settings`.

    Returns:
        A `ParetoSearchResult` with method "nsga2"; `stopped_early` holds the reason when the
        search ran out of new archs within the constraints before its budget or last generation.
    """
    ledger = _ledger(cost_of, evaluate, settings)
    sampler = np.random.default_rng([settings.seed, _SAMPLE_STREAM])
    rng = np.random.default_rng([settings.seed, _VARIATION_STREAM])
    population: list[dict[str, Any]] = []
    history: list[list[str]] = []

    def result(stopped_early=None):
        return ParetoSearchResult("nsga2", ledger.results, stopped_early, settings.num_outputs, history)

    try:
        while len(population) < settings.population and not ledger.done:
            record = ledger.offer(space.sample(sampler), generation=0)
            if record is not None and record["feasible"]:
                population.append(record)
        history.append([r["hash"] for r in population])
        for generation in range(1, settings.generations + 1):
            if ledger.done or not population:
                break
            population = _next_generation(space, population, ledger, rng, settings, generation)
            history.append([r["hash"] for r in population])
    except SearchExhausted as e:
        return result(str(e))
    return result()


def random_search(
    space: ScarletSpace,
    evaluate: Callable[[ScarletArch], float],
    cost_of: Callable[[ScarletArch], tuple[float, float]],
    settings: NSGA2Settings,
) -> ParetoSearchResult:
    """The baseline: `settings.evaluations` uniform samples (the number NSGA-II evaluates),
    under the same `max_cost` (checked first) and `min_metric` rules, from the same sampling stream
    as NSGA-II's initial population. Returns a `ParetoSearchResult` with method "random"."""
    ledger = _ledger(cost_of, evaluate, settings)
    stream = _sample_stream(space, settings)
    stopped = spend_on_stream(ledger, stream, generation=None)
    return ParetoSearchResult("random", ledger.results, stopped, settings.num_outputs)


def _sample_stream(space: ScarletSpace, settings: NSGA2Settings):
    """Endless uniform samples, the stream NSGA-II's initial population draws from."""
    sampler = np.random.default_rng([settings.seed, _SAMPLE_STREAM])
    while True:
        yield space.sample(sampler)

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
from typing import ClassVar

import numpy as np

from scalenas_tf.families.scalenas.space import ModuleArch
from scalenas_tf.families.scalenas.space import ScaleNASArch
from scalenas_tf.families.scalenas.space import ScaleNASSpace
from scalenas_tf.search import pareto
from scalenas_tf.search.ledger import EvaluationLedger
from scalenas_tf.search.ledger import SearchExhausted
from scalenas_tf.search.ledger import SearchResult
from scalenas_tf.search.ledger import spend_on_stream


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

    # Fields left out of a search log's header: raising them extends a finished search.
    EXTENDABLE: ClassVar[tuple[str, ...]] = ("budget",)

    def __post_init__(self):
        for name in ("population", "top_k", "children", "budget"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"search.{name} must be an int >= 1. Received: {name}={value!r}")
        if self.population > self.budget:
            raise ValueError(f"search.population ({self.population}) must not exceed search.budget ({self.budget})")

        def number(value):  # not a bool, which isinstance(value, int) would take
            return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)

        for name in ("crossover_prob", "mutation_prob"):
            value = getattr(self, name)
            if not number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"search.{name} must be in [0, 1]. Received: {name}={value!r}")
        probs = tuple(self.fusion_probs) if isinstance(self.fusion_probs, (list, tuple, np.ndarray)) else ()
        if not probs or not all(number(p) and 0.0 <= p <= 1.0 for p in probs):
            raise ValueError(f"search.fusion_probs must be probabilities. Received: fusion_probs={self.fusion_probs!r}")
        object.__setattr__(self, "fusion_probs", tuple(float(p) for p in probs))
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"search.seed must be an int >= 0. Received: seed={self.seed!r}")
        if self.max_cost is not None and (not number(self.max_cost) or not self.max_cost > 0):
            raise ValueError(f"search.max_cost must be a number > 0 or None. Received: max_cost={self.max_cost!r}")
        if self.min_metric is not None and (not number(self.min_metric) or not np.isfinite(self.min_metric)):
            raise ValueError(
                f"search.min_metric must be a finite number or None. Received: min_metric={self.min_metric!r}"
            )

    @property
    def evaluations(self) -> int:
        """The archs each method evaluates: `budget`."""
        return self.budget

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


def _ledger(cost_of, evaluate, settings: EvolutionSettings) -> EvaluationLedger:
    return EvaluationLedger(cost_of, evaluate, settings.budget, settings.max_cost, settings.min_metric)


def random_search(
    space: ScaleNASSpace,
    evaluate: Callable[[ScaleNASArch], float],
    cost_of: Callable[[ScaleNASArch], float],
    settings: EvolutionSettings,
) -> SearchResult:
    """`settings.budget` archs from `sample_stream`; stops early (keeping what it has) if the space
    runs out of new archs within the constraints."""
    ledger = _ledger(cost_of, evaluate, settings)
    stopped = spend_on_stream(ledger, sample_stream(space, settings))
    return SearchResult("random", ledger.results, stopped)


def topology_evolution(
    space: ScaleNASSpace,
    evaluate: Callable[[ScaleNASArch], float],
    cost_of: Callable[[ScaleNASArch], float],
    settings: EvolutionSettings,
) -> SearchResult:
    """ScaleNAS Algorithm 1 (see the module docstring)."""
    budget = _ledger(cost_of, evaluate, settings)
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
                made += budget.offer(child) is not None
    except SearchExhausted as e:
        return SearchResult("evolution", budget.results, str(e))
    return SearchResult("evolution", budget.results)

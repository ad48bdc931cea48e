"""MCEA, ScaleNet's joint search of a base model and its scaling strategies, and the random baseline.

The search (supplement §A; ../shared/reference/scalenet.md §6-§8):

1. FLOPs budgets: f0 (the base model's, a multiple of 50M near the mean cost of random base paths,
   unless given) and 2^j f0 for scaling stage j. A base path is feasible when its cost is within
   `base_tolerance` of f0; a strategy S of stage j, for a set of bases, when the mean over them of
   |2^j F(base) - F(base x S)| is within `stage_tolerance` x 2^j (relative to each base's own cost).
2. Initial strategies: `initial_bases` random feasible bases; for each stage j, every (d, w, px) of
   the stage's lists, scored by the mean metric of the bases scaled by it; S_j = the best.
3. `iterations` (T) rounds of: a genetic search over the base (population P, N generations; the
   score of a base is the mean over j = 1..M of metric(base x S_j)), then a grid search per stage
   with the best base fixed.
4. Generalization: the searched (d, w, r) of stages 1..M fitted per dimension (`generalization.py`)
   and evaluated at M+1..M+`generalize_to` (the generated models come with their cost).

Infeasible candidates are never evaluated; their pseudo-score is -1 + (B - F) / B (B the budget),
below any metric in [0, 1] and higher for cheaper candidates, the reference's 3 + (B - F) / B in its
percent scale shifted to this library's fractional metrics.

The genetic search encodes a base as one gene per base slot (0 = no block, k = the stage's k-th
choice), drops empty slots (the official "identities move to the end"), binary tournament, two-point
crossover, per-gene random reset, elitist survival without duplicates. The official code uses
pymoo's integer polynomial mutation; a random reset of 1 / L genes is used here (no pymoo
dependency; with 3 choices per gene the two differ little).

`cost_of` gives the cost in the search's unit (GMACs: MACs / 1e9); budgets and tolerances are in it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any
from typing import ClassVar

import numpy as np

from scalenas_tf.families.scalenet import generalization
from scalenas_tf.families.scalenet.space import NUM_STAGES
from scalenas_tf.families.scalenet.space import ScaleNetArch
from scalenas_tf.families.scalenet.space import ScaleNetSpace
from scalenas_tf.search.ledger import EvaluationLedger
from scalenas_tf.search.ledger import SearchExhausted
from scalenas_tf.search.ledger import SearchResult

MAX_DRAWS = 2000


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class MCEASettings:
    """MCEA's settings (the paper's defaults; `configs/scalenet.py:cpu` shrinks them).

    Args:
        iterations: T, rounds of base search + strategy search (8).
        population, generations: P and N of the base search (50, 40).
        initial_bases: random feasible bases that set the initial strategies (20).
        f0: the base budget in the cost unit (GMACs), or None: the space's `f0`, else the mean cost of
            `budget_samples` random bases rounded to the nearest `budget_step`.
        budget_samples, budget_step: the estimate's sample count (10,000) and rounding (0.05 = 50M).
        base_tolerance, stage_tolerance: feasibility, in the cost unit (0.025 = 25M; 0.05 x 2^j).
        crossover_prob, mutation_prob: per child and per gene (None: 1 / number of genes).
        generalization: "linear" or "squared"; generalize_to: stages M+1..M+k to generate (2).
        seed: int. budget: the most evaluations (None: unbounded; `evaluations` is the plan's count).
    """

    iterations: int = 8
    population: int = 50
    generations: int = 40
    initial_bases: int = 20
    f0: float | None = None
    budget_samples: int = 10_000
    budget_step: float = 0.05
    base_tolerance: float = 0.025
    stage_tolerance: float = 0.05
    crossover_prob: float = 0.9
    mutation_prob: float | None = None
    generalization: str = "linear"
    generalize_to: int = 2
    seed: int = 0
    budget: int | None = None
    max_cost: ClassVar[None] = None  # feasibility is by the budgets above
    min_metric: ClassVar[None] = None

    EXTENDABLE: ClassVar[tuple[str, ...]] = ("budget",)

    def __post_init__(self):
        minimums = {
            "iterations": 0,
            "population": 2,
            "generations": 0,
            "initial_bases": 1,
            "budget_samples": 1,
            "generalize_to": 0,
            "seed": 0,
        }
        for name, low in minimums.items():
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ValueError(f"search.{name} must be an int >= {low}. Received: {name}={value!r}")
        for name in ("budget_step", "base_tolerance", "stage_tolerance"):
            value = getattr(self, name)
            if not _is_number(value) or not value > 0:
                raise ValueError(f"search.{name} must be a number > 0. Received: {name}={value!r}")
        if self.f0 is not None and (not _is_number(self.f0) or not self.f0 > 0):
            raise ValueError(f"search.f0 must be a number > 0 or None. Received: f0={self.f0!r}")
        for name in ("crossover_prob", "mutation_prob"):
            value = getattr(self, name)
            if value is None and name == "mutation_prob":
                continue
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"search.{name} must be in [0, 1]. Received: {name}={value!r}")
        if self.generalization not in generalization.FORMS:
            raise ValueError(
                f"search.generalization must be one of {sorted(generalization.FORMS)}. "
                f"Received: {self.generalization!r}"
            )
        if self.budget is not None and (not _is_int(self.budget) or self.budget < 1):
            raise ValueError(f"search.budget must be an int >= 1 or None. Received: budget={self.budget!r}")

    @property
    def evaluations(self) -> int:
        """`budget`, or a bound on what the plan evaluates (every grid point and child new)."""
        if self.budget is not None:
            return self.budget
        grid = 400  # bound on the strategies of all stages together (271 in the official space)
        per_round = self.population * (self.generations + 1) * 3 + grid
        return self.initial_bases * grid + self.iterations * per_round

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _cost(cost_of, arch) -> float:
    counted = cost_of(arch)
    return float(counted[0] if isinstance(counted, (tuple, list)) else counted)


def pseudo_score(cost: float, budget: float) -> float:
    """The score of an infeasible candidate: -1 + (B - F) / B (below any metric in [0, 1])."""
    return -1.0 + (budget - cost) / budget


class _Search:
    """MCEA's state: budgets, the evaluation ledger and the metric cache."""

    def __init__(self, space: ScaleNetSpace, evaluate, cost_of, settings: MCEASettings):
        self.space, self.cost_of, self.settings = space, cost_of, settings
        self.ledger = EvaluationLedger(cost_of, evaluate, settings.budget or 10**12)
        self.metrics: dict[str, float] = {}
        self.rng = np.random.default_rng([settings.seed, 7])
        self.base_strategy = space.strategy(0, 0, 0, 0)
        self.num_stages = space.num_scaling_stages - 1  # M
        self.f0 = self._f0()
        self.genes = [(i, k) for i in range(NUM_STAGES) for k in range(space.max_blocks[i])]

    # === Costs and budgets ===

    def _f0(self) -> float:
        s = self.settings
        if s.f0 is not None:
            return float(s.f0)
        if self.space.f0 is not None:
            return float(self.space.f0) / 1e9
        rng = np.random.default_rng([s.seed, 11])
        mean = np.mean([self.base_cost(self.space.sample_base(rng)) for _ in range(s.budget_samples)])
        return max(1, round(mean / s.budget_step)) * s.budget_step

    def scaled(self, base, strategy) -> ScaleNetArch:
        return ScaleNetArch(tuple(base), *strategy)

    def base_cost(self, base) -> float:
        return _cost(self.cost_of, self.scaled(base, self.base_strategy))

    def base_feasible(self, base) -> bool:
        return abs(self.base_cost(base) - self.f0) <= self.settings.base_tolerance

    def strategy_violation(self, stage, strategy, bases) -> float:
        """Mean |2^j F(base) - F(base x S)| over `bases`, minus the tolerance (<= 0: feasible)."""
        scale = 2**stage
        gaps = [abs(scale * self.base_cost(b) - _cost(self.cost_of, self.scaled(b, strategy))) for b in bases]
        return float(np.mean(gaps)) - self.settings.stage_tolerance * scale

    # === Evaluations ===

    def metric(self, arch) -> float:
        """`evaluate(arch)`, once per arch (SearchExhausted when the budget is spent)."""
        key = arch.hash()
        if key not in self.metrics:
            if self.ledger.done:
                raise SearchExhausted(f"the evaluation budget ({self.ledger.budget}) is spent")
            record = self.ledger.offer(arch)
            self.metrics[key] = record["metric"] if record is not None else float("nan")
        return self.metrics[key]

    def base_score(self, base, strategies) -> float:
        """Mean over j = 1..M of metric(base x S_j); an infeasible base its pseudo-score."""
        if not self.base_feasible(base):
            return pseudo_score(self.base_cost(base), self.f0)
        return float(np.mean([self.metric(self.scaled(base, s)) for s in strategies]))

    def draw_feasible_base(self):
        for _ in range(MAX_DRAWS):
            base = self.space.sample_base(self.rng)
            if self.base_feasible(base):
                return base
        raise SearchExhausted(
            f"no base path within {self.settings.base_tolerance} of f0 = {self.f0:.4g} after {MAX_DRAWS} draws "
            "(set search.f0 or widen search.base_tolerance)"
        )

    # === Strategy grid ===

    def grid(self, stage: int) -> list[tuple[float, float, int]]:
        s = self.space
        return [
            (float(d), float(w), int(px))
            for d in s.depth_multipliers[stage]
            for w in s.width_multipliers[stage]
            for px in s.resolutions[stage]
        ]

    def grid_search(self, stage: int, bases) -> list[dict[str, Any]]:
        """Every strategy of `stage`, best first: feasible ones by mean metric over `bases`, then the
        infeasible ones by pseudo-score."""
        rows = []
        budget = 2**stage * self.f0
        for strategy in self.grid(stage):
            violation = self.strategy_violation(stage, strategy, bases)
            cost = float(np.mean([_cost(self.cost_of, self.scaled(b, strategy)) for b in bases]))
            if violation <= 0:
                score = float(np.mean([self.metric(self.scaled(b, strategy)) for b in bases]))
            else:
                score = pseudo_score(cost, budget)
            rows.append({"strategy": strategy, "score": score, "cost": cost, "feasible": violation <= 0})
        return sorted(rows, key=lambda r: (not r["feasible"], -r["score"]))

    # === Base search ===

    def encode(self, base) -> np.ndarray:
        genes = []
        for i, stage in enumerate(base):
            names = self.space.stage_choices(i)
            ids = [names.index(n) + 1 for n in stage]
            genes.extend(ids + [0] * (self.space.max_blocks[i] - len(ids)))
        return np.asarray(genes, np.int64)

    def decode(self, genes) -> tuple[tuple[str, ...], ...] | None:
        """The base of a genome (empty slots dropped), or None when a stage has too few blocks."""
        base, offset = [], 0
        for i in range(NUM_STAGES):
            names = self.space.stage_choices(i)
            ids = [int(g) for g in genes[offset : offset + self.space.max_blocks[i]] if g]
            if len(ids) < self.space.min_blocks[i]:
                return None
            base.append(tuple(names[g - 1] for g in ids))
            offset += self.space.max_blocks[i]
        return tuple(base)

    def mutate(self, genes) -> np.ndarray:
        rate = self.settings.mutation_prob
        rate = 1.0 / len(genes) if rate is None else rate
        child = genes.copy()
        for g in np.flatnonzero(self.rng.random(len(genes)) < rate):
            stage = self.genes[g][0]
            child[g] = self.rng.integers(0, len(self.space.stage_choices(stage)) + 1)
        return child

    def crossover(self, a, b) -> np.ndarray:
        if self.rng.random() >= self.settings.crossover_prob:
            return a.copy()
        i, j = sorted(self.rng.choice(len(a) + 1, size=2, replace=False))
        return np.concatenate([a[:i], b[i:j], a[j:]])

    def base_search(self, strategies) -> list[dict[str, Any]]:
        """The GA over bases with the stage strategies fixed; the final population, best first."""
        s = self.settings
        population, seen = [], set()
        while len(population) < s.population:
            base = self.draw_feasible_base()
            key = self.scaled(base, self.base_strategy).hash()
            if key in seen:
                continue
            seen.add(key)
            population.append({"base": base, "score": self.base_score(base, strategies)})
        for _ in range(s.generations):
            scores = np.asarray([p["score"] for p in population])
            children = []
            tries = 0
            while len(children) < s.population and tries < MAX_DRAWS:
                tries += 1
                a, b = (self._tournament(scores) for _ in range(2))
                genes = self.mutate(
                    self.crossover(self.encode(population[a]["base"]), self.encode(population[b]["base"]))
                )
                base = self.decode(genes)
                if base is None:
                    continue
                key = self.scaled(base, self.base_strategy).hash()
                if key in seen:
                    continue
                seen.add(key)
                children.append({"base": base, "score": self.base_score(base, strategies)})
            population = sorted(population + children, key=lambda p: -p["score"])[: s.population]
        return sorted(population, key=lambda p: -p["score"])

    def _tournament(self, scores) -> int:
        a, b = self.rng.choice(len(scores), size=2, replace=len(scores) < 2)
        return int(a if scores[a] >= scores[b] else b)


@dataclasses.dataclass
class MCEAResult(SearchResult):
    """What MCEA evaluated (every scaled arch, in order) and what it found: `f0`, the best `base`,
    `strategies` (per stage j = 1..M: d, w, px, mean cost, score), `rounds` (the best base and
    strategies after each round) and `generalized` (the fitted functions and the stages beyond M,
    each with the generated model's cost)."""

    f0: float = 0.0
    base: tuple | None = None
    strategies: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    rounds: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    generalized: dict[str, Any] = dataclasses.field(default_factory=dict)

    def table(self) -> list[list[Any]]:
        """Rows of the strategies per scaling stage: searched (1..M) then generalized (M+1..)."""
        rows = [["stage", "kind", "depth", "width", "resolution", "resolution_multiplier", "cost", "score"]]
        for r in self.strategies:
            rows.append(
                [
                    r["stage"],
                    "searched",
                    r["depth"],
                    r["width"],
                    r["resolution"],
                    r["resolution_multiplier"],
                    f"{r['cost']:.6g}",
                    f"{r['score']:.6g}",
                ]
            )
        for r in self.generalized.get("stages", []):
            rows.append(
                [
                    r["stage"],
                    "generalized",
                    r["depth"],
                    r["width"],
                    r["resolution"],
                    r["resolution_multiplier"],
                    f"{r['cost']:.6g}",
                    "",
                ]
            )
        return rows

    def extra_files(self):
        if not self.strategies:
            return {}
        return {"strategies.csv": self._write_table, "strategies.png": self._plot}

    def _write_table(self, path):
        import csv

        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(self.table())

    def _plot(self, path):
        """d, w and r per scaling stage (searched: markers; generalized: open markers), and each stage's
        cost against its budget 2^j f0."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [r for r in self.table()[1:]]
        stages = [0] + [int(r[0]) for r in rows]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
        for k, (name, colour) in enumerate(
            (("depth", "tab:blue"), ("width", "tab:orange"), ("resolution", "tab:green"))
        ):
            column = 5 if name == "resolution" else 2 + k
            values = [1.0] + [float(r[column]) for r in rows]
            left.plot(stages, values, color=colour, label=name, linewidth=1.2)
            searched = [(s, v) for s, v, r in zip(stages[1:], values[1:], rows) if r[1] == "searched"]
            generalized = [(s, v) for s, v, r in zip(stages[1:], values[1:], rows) if r[1] == "generalized"]
            if searched:
                left.scatter(*zip(*searched), color=colour)
            if generalized:
                left.scatter(*zip(*generalized), facecolors="none", edgecolors=colour)
        left.set_xlabel("scaling stage j")
        left.set_ylabel("multiplier")
        left.legend(fontsize=8)
        left.grid(alpha=0.3)
        costs = [float(r[6]) for r in rows]
        right.semilogy(stages[1:], costs, "o-", label="model cost")
        right.semilogy(stages, [2**j * self.f0 for j in stages], "k--", label="budget 2^j f0")
        right.set_xlabel("scaling stage j")
        right.set_ylabel("cost")
        right.legend(fontsize=8)
        right.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)

    def summary_extras(self, point) -> dict[str, Any]:
        return {
            "f0": self.f0,
            "budgets": [2**j * self.f0 for j in range(len(self.strategies) + 1)],
            "base": [list(stage) for stage in self.base] if self.base else None,
            "strategies": self.strategies,
            "rounds": self.rounds,
            "generalized": self.generalized,
        }


def _strategy_row(stage, row, space):
    d, w, px = row["strategy"]
    return {
        "stage": stage,
        "depth": d,
        "width": w,
        "resolution": px,
        "resolution_multiplier": space.resolution_multiplier(px),
        "cost": row["cost"],
        "score": row["score"],
        "feasible": row["feasible"],
    }


def _generalize(search: _Search, base, strategies) -> dict[str, Any]:
    s = search.settings
    if not strategies or s.generalize_to == 0:
        return {}
    rows = [(r["depth"], r["width"], r["resolution_multiplier"]) for r in strategies]
    fits = generalization.fit_strategies(rows, s.generalization)
    stages = range(len(strategies) + 1, len(strategies) + 1 + s.generalize_to)
    generated = generalization.extrapolate(fits, stages, search.space.base_resolution)
    for row in generated:
        arch = ScaleNetArch(tuple(base), max(1.0, row["depth"]), max(1.0, row["width"]), row["resolution"])
        row["cost"] = _cost(search.cost_of, arch)
        row["budget"] = 2 ** row["stage"] * search.f0
        row["arch"] = arch.to_dict()
    return {"form": s.generalization, "fits": {k: f.to_dict() for k, f in fits.items()}, "stages": generated}


def mcea_search(
    space: ScaleNetSpace,
    evaluate: Callable[[ScaleNetArch], float],
    cost_of: Callable[[ScaleNetArch], float],
    settings: MCEASettings,
) -> MCEAResult:
    """ScaleNet's joint search (see the module docstring). Deterministic from `settings.seed`, so a
    search whose evaluations are cached (the search log) resumes by replaying them.

    Returns:
        An `MCEAResult` (method "mcea"); `stopped_early` says why when the budget ran out first.
    """
    search = _Search(space, evaluate, cost_of, settings)
    m = search.num_stages
    best_base, strategies, rounds = None, [], []

    def result(stopped=None):
        out = MCEAResult("mcea", search.ledger.results, stopped, search.f0, best_base, strategies, rounds)
        if best_base is not None and not stopped:
            out.generalized = _generalize(search, best_base, strategies)
        return out

    try:
        bases = [search.draw_feasible_base() for _ in range(settings.initial_bases)]
        strategies = [_strategy_row(j, search.grid_search(j, bases)[0], space) for j in range(1, m + 1)]
        best_base = bases[0]
        rounds.append({"round": 0, "strategies": strategies})
        for t in range(1, settings.iterations + 1):
            fixed = [(r["depth"], r["width"], r["resolution"]) for r in strategies]
            ranked = search.base_search(fixed)
            best_base = ranked[0]["base"]
            strategies = [_strategy_row(j, search.grid_search(j, [best_base])[0], space) for j in range(1, m + 1)]
            rounds.append(
                {
                    "round": t,
                    "base": [list(stage) for stage in best_base],
                    "base_score": ranked[0]["score"],
                    "strategies": strategies,
                }
            )
    except SearchExhausted as e:
        return result(str(e))
    return result()


def random_search(
    space: ScaleNetSpace,
    evaluate: Callable[[ScaleNetArch], float],
    cost_of: Callable[[ScaleNetArch], float],
    settings: MCEASettings,
    evaluations: int | None = None,
) -> MCEAResult:
    """The baseline: random feasible bases, each with a random stage j = 1..M and a random strategy of
    it, evaluated until `evaluations` (default `settings.evaluations`); per stage the best feasible
    scaled arch found (strategies whose cost misses 2^j F(base) by more than the stage tolerance are
    redrawn)."""
    search = _Search(space, evaluate, cost_of, settings)
    count = settings.evaluations if evaluations is None else int(evaluations)
    best = {}
    stopped = None
    try:
        while len(search.ledger.results) < count:
            base = search.draw_feasible_base()
            stage = int(search.rng.integers(1, search.num_stages + 1))
            grid = search.grid(stage)
            strategy = grid[int(search.rng.integers(len(grid)))]
            if search.strategy_violation(stage, strategy, [base]) > 0:
                continue
            arch = search.scaled(base, strategy)
            metric = search.metric(arch)
            if stage not in best or metric > best[stage]["score"]:
                best[stage] = {"strategy": strategy, "score": metric, "cost": _cost(cost_of, arch), "feasible": True}
    except SearchExhausted as e:
        stopped = str(e)
    strategies = [_strategy_row(j, best[j], space) for j in sorted(best)]
    return MCEAResult("random", search.ledger.results, stopped, search.f0, None, strategies, [])

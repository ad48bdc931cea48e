"""MCEA on synthetic landscapes: budgets and tolerances respected, better than random search at equal
evaluations, deterministic (so a cached log resumes it), and the generalized stages (no TensorFlow)."""

import dataclasses

import numpy as np
import pytest

from scalenas_tf.families.scalenet import cost
from scalenas_tf.families.scalenet import mcea
from scalenas_tf.families.scalenet.space import NUM_STAGES
from scalenas_tf.families.scalenet.space import ScaleNetArch
from scalenas_tf.families.scalenet.space import ScaleNetSpace

SPACE = ScaleNetSpace(
    stem_channels=8,
    stage_channels=(8, 8, 16, 16, 24, 32, 48),
    max_blocks=(1, 3, 3, 3, 3, 3, 1),
    head_channels=64,
    depth_multipliers=((1.0,), (1.1, 1.2), (1.3, 1.4, 1.5)),
    width_multipliers=((1.0,), (1.1, 1.2), (1.3, 1.4, 1.5)),
    resolutions=((32,), (34, 36), (40, 42)),
    resolution_multipliers=((1.0,), (1.0625, 1.125), (1.25, 1.3125)),
    base_resolution=32,
)


def cost_of(arch):
    return cost.count(SPACE, arch, 10, validate=False).gmacs


def landscape(seed):
    """A metric in [0, 1]: half from matching a hidden base (block counts and choices), half from a
    hidden preferred strategy per scaling stage."""
    rng = np.random.default_rng(seed)
    target = SPACE.sample_base(rng)
    preferred = {
        j: (
            rng.choice(SPACE.depth_multipliers[j]),
            rng.choice(SPACE.width_multipliers[j]),
            rng.choice(SPACE.resolutions[j]),
        )
        for j in range(1, SPACE.num_scaling_stages)
    }

    def base_quality(base):
        hits = total = 0
        for i in range(NUM_STAGES):
            for k in range(SPACE.max_blocks[i]):
                total += 1
                mine = base[i][k] if k < len(base[i]) else None
                theirs = target[i][k] if k < len(target[i]) else None
                hits += mine == theirs
        return hits / total

    def evaluate(arch):
        j = SPACE.stage_of(arch)
        if j is None or j == 0:
            return 0.5 * base_quality(arch.base)
        want = preferred[j]
        got = (arch.depth, arch.width, arch.resolution)
        match = sum(a == b for a, b in zip(got, want)) / 3
        return 0.5 * base_quality(arch.base) + 0.5 * match

    return evaluate, target, preferred


LOOSE = mcea.MCEASettings(
    iterations=2, population=10, generations=6, initial_bases=2, f0=0.001, base_tolerance=1.0, stage_tolerance=1.0
)


def test_mcea_beats_random_search_at_equal_evaluations():
    wins = []
    for seed in range(3):
        evaluate, _, _ = landscape(seed)
        found = mcea.mcea_search(SPACE, evaluate, cost_of, dataclasses.replace(LOOSE, seed=seed))
        assert found.stopped_early is None
        n = len(found.results)
        baseline = mcea.random_search(SPACE, evaluate, cost_of, dataclasses.replace(LOOSE, seed=seed), evaluations=n)
        assert len(baseline.results) == n
        best_mcea = np.mean([evaluate(found_arch(found, j)) for j in (1, 2)])
        best_random = np.mean([row["score"] for row in baseline.strategies])
        wins.append(best_mcea - best_random)
    assert np.mean(wins) > 0.05 and min(wins) > 0, wins


def found_arch(result, stage):
    row = result.strategies[stage - 1]
    return ScaleNetArch(result.base, row["depth"], row["width"], row["resolution"])


def test_mcea_finds_the_preferred_strategies_and_records_its_rounds():
    evaluate, _, preferred = landscape(7)
    found = mcea.mcea_search(SPACE, evaluate, cost_of, dataclasses.replace(LOOSE, seed=7))
    for row in found.strategies:
        assert (row["depth"], row["width"], row["resolution"]) == tuple(preferred[row["stage"]])
    assert [r["round"] for r in found.rounds] == [0, 1, 2]
    extras = found.summary_extras(lambda r: r["hash"])
    assert extras["f0"] == 0.001 and extras["budgets"] == [0.001, 0.002, 0.004]
    generated = extras["generalized"]["stages"]
    assert [g["stage"] for g in generated] == [3, 4] and all(g["cost"] > 0 for g in generated)
    assert generated[1]["depth"] >= generated[0]["depth"] >= 1.0


def test_mcea_respects_the_budgets():
    """With real tolerances every evaluated scaled arch has a base within the base tolerance of f0;
    strategies chosen by the grid are feasible for their bases."""
    evaluate, _, _ = landscape(1)
    rng = np.random.default_rng(0)
    mean = np.mean([cost_of(SPACE.sample(rng, 0)) for _ in range(300)])
    settings = mcea.MCEASettings(
        iterations=1,
        population=6,
        generations=2,
        initial_bases=2,
        f0=round(mean, 4),
        base_tolerance=mean / 4,
        stage_tolerance=mean / 2,
        seed=1,
    )
    found = mcea.mcea_search(SPACE, evaluate, cost_of, settings)
    f0 = found.f0
    base_cost = {}
    for record in found.results:
        arch = record["arch"]
        key = arch.base
        if key not in base_cost:
            base_cost[key] = cost_of(dataclasses.replace(arch, depth=1.0, width=1.0, resolution=32))
        assert abs(base_cost[key] - f0) <= settings.base_tolerance
    base = cost_of(ScaleNetArch(found.base, 1.0, 1.0, 32))
    for row in found.strategies:
        j = row["stage"]
        assert row["feasible"] and abs(row["cost"] - 2**j * base) <= settings.stage_tolerance * 2**j


def test_mcea_is_deterministic_so_a_cached_log_resumes_it():
    evaluate, _, _ = landscape(2)
    calls = []

    def counting(arch):
        calls.append(arch.hash())
        return evaluate(arch)

    first = mcea.mcea_search(SPACE, counting, cost_of, LOOSE)
    cache = {h: evaluate(r["arch"]) for h, r in ((r["hash"], r) for r in first.results)}
    replayed = []

    def cached(arch):
        replayed.append(arch.hash() in cache)
        return cache[arch.hash()]

    second = mcea.mcea_search(SPACE, cached, cost_of, LOOSE)
    assert [r["hash"] for r in second.results] == [r["hash"] for r in first.results]
    assert all(replayed) and second.strategies == first.strategies
    assert len(set(calls)) == len(calls)  # every arch evaluated once


def test_budget_stops_the_search_early_with_the_reason():
    evaluate, _, _ = landscape(3)
    found = mcea.mcea_search(SPACE, evaluate, cost_of, dataclasses.replace(LOOSE, budget=15))
    assert len(found.results) == 15 and "budget (15) is spent" in found.stopped_early
    tight = dataclasses.replace(LOOSE, f0=10.0, base_tolerance=0.001)
    found = mcea.mcea_search(SPACE, evaluate, cost_of, tight)
    assert "no base path within 0.001 of f0 = 10" in found.stopped_early and not found.results


def test_f0_is_estimated_when_not_given():
    evaluate, _, _ = landscape(4)
    settings = dataclasses.replace(LOOSE, f0=None, budget_samples=200, budget_step=0.0001, iterations=0)
    found = mcea.mcea_search(SPACE, evaluate, cost_of, settings)
    rng = np.random.default_rng([0, 11])
    mean = np.mean([cost_of(SPACE.sample(rng, 0)) for _ in range(200)])
    assert found.f0 == pytest.approx(round(mean / 0.0001) * 0.0001)
    space_f0 = dataclasses.replace(SPACE, f0=2e6)
    assert mcea.mcea_search(space_f0, evaluate, cost_of, settings).f0 == pytest.approx(0.002)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(population=1), r"search.population must be an int >= 2"),
        (dict(f0=-1), r"search.f0 must be a number > 0 or None"),
        (dict(base_tolerance=0), r"search.base_tolerance must be a number > 0"),
        (dict(mutation_prob=2), r"search.mutation_prob must be in \[0, 1\]"),
        (dict(generalization="cubic"), r"search.generalization must be one of"),
        (dict(budget=0), r"search.budget must be an int >= 1 or None"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        mcea.MCEASettings(**fields)


def test_strategy_table_and_plot(tmp_path):
    evaluate, _, _ = landscape(5)
    found = mcea.mcea_search(SPACE, evaluate, cost_of, dataclasses.replace(LOOSE, seed=5))
    rows = found.table()
    assert rows[0][:5] == ["stage", "kind", "depth", "width", "resolution"]
    assert [r[1] for r in rows[1:]] == ["searched", "searched", "generalized", "generalized"]
    files = found.extra_files()
    assert sorted(files) == ["strategies.csv", "strategies.png"]
    for name, writer in files.items():
        writer(str(tmp_path / name))
    assert (tmp_path / "strategies.csv").read_text().splitlines()[0].startswith("stage,kind,depth")
    assert (tmp_path / "strategies.png").read_bytes()[:4] == b"\x89PNG"
    assert mcea.MCEAResult("mcea", []).extra_files() == {}  # stopped before any strategy: nothing to write

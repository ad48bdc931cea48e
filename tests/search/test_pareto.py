import numpy as np
import pytest

from scalenas_tf.search import pareto


def _dominates(a, b):
    return np.all(a <= b) and np.any(a < b)


def test_fronts_of_a_known_set():
    # (cost, -metric): three on the first front, two behind them, one behind those.
    points = np.array([[1, -1], [2, -3], [3, -4], [2, -2], [3, -3], [4, -2]], float)
    fronts = pareto.non_dominated_fronts(points)
    assert [f.tolist() for f in fronts] == [[0, 1, 2], [3, 4], [5]]
    assert pareto.pareto_front(points).tolist() == [0, 1, 2]


@pytest.mark.parametrize("seed", range(5))
def test_fronts_match_brute_force_dominance(seed):
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 6, size=(80, 3)).astype(float)  # many ties and duplicates
    fronts = pareto.non_dominated_fronts(points)
    assert sorted(np.concatenate(fronts).tolist()) == list(range(len(points)))
    for r, front in enumerate(fronts):
        later = np.concatenate(fronts[r:])
        for i in front:
            assert not any(_dominates(points[j], points[i]) for j in later)
            if r > 0:
                assert any(_dominates(points[j], points[i]) for j in fronts[r - 1])


def test_select_top_k_takes_whole_fronts_then_the_least_crowded():
    points = np.array([[1, -1], [2, -3], [3, -4], [2, -2], [3, -3], [4, -2], [2.1, -2.9]], float)
    fronts = pareto.non_dominated_fronts(points)
    assert fronts[0].tolist() == [0, 1, 2]
    top = pareto.select_top_k(points, 4)
    assert top[:3].tolist() == [0, 1, 2]
    assert top[3] in fronts[1]
    # Within an overflowing front the boundary points (infinite crowding distance) come first.
    top2 = pareto.select_top_k(points, 2)
    assert set(top2.tolist()) == {0, 2}
    assert pareto.select_top_k(points, 100).size == len(points)
    assert pareto.select_top_k(points, 0).size == 0


def test_crowding_distance_and_weights():
    points = np.array([[0, 4], [1, 2], [2, 1], [4, 0]], float)
    d = pareto.crowding_distance(points)
    assert np.isinf(d[0]) and np.isinf(d[3])
    np.testing.assert_allclose(d[1:3], [2 / 4 + 3 / 4, 3 / 4 + 2 / 4])
    weighted = pareto.crowding_distance(points, weights=[1.0, 0.0])
    np.testing.assert_allclose(weighted[1:3], [2 / 4, 3 / 4])
    with pytest.raises(ValueError, match="weights"):
        pareto.crowding_distance(points, weights=[1.0])


def test_hypervolume_2d():
    points = np.array([[1, 3], [2, 2], [3, 1], [2.5, 2.5]], float)  # the last is dominated
    assert pareto.hypervolume_2d(points, (4, 4)) == pytest.approx(3 * 1 + 2 * 1 + 1 * 1)
    assert pareto.hypervolume_2d(points, (1, 1)) == 0.0


def test_objectives_negate_the_metric_and_check_lengths():
    np.testing.assert_array_equal(pareto.objectives([1, 2], [0.5, 0.7]), [[1, -0.5], [2, -0.7]])
    with pytest.raises(ValueError, match="same length"):
        pareto.objectives([1, 2], [0.5])
    with pytest.raises(ValueError, match="finite"):
        pareto.non_dominated_fronts([[np.nan, 1.0]])

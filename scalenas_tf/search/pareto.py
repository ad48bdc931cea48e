"""Pareto dominance over objective vectors: fronts, peeling, crowding distance, hypervolume.

Pure numpy, any number of objectives. Every objective is minimized: pass `-metric` for a metric
that is maximized (`objectives(costs, metrics)` does this for the (cost, metric) pair of a search).
"""

from __future__ import annotations

import numpy as np


def objectives(costs, metrics) -> np.ndarray:
    """`(n, 2)` objectives to minimize: cost, and the metric negated."""
    costs = np.asarray(costs, dtype=np.float64).reshape(-1)
    metrics = np.asarray(metrics, dtype=np.float64).reshape(-1)
    if costs.shape != metrics.shape:
        raise ValueError(f"costs and metrics must have the same length. Received: {costs.size} and {metrics.size}")
    return np.stack([costs, -metrics], axis=1)


def _as_points(points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"Objectives must be a 2-D array (points x objectives). Received shape: {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("Objectives must be finite")
    return points


def dominance_matrix(points) -> np.ndarray:
    """`D[a, b]` is True when point a dominates point b (<= in every objective, < in one)."""
    points = _as_points(points)
    le = np.all(points[:, None, :] <= points[None, :, :], axis=-1)
    lt = np.any(points[:, None, :] < points[None, :, :], axis=-1)
    return le & lt


def non_dominated_fronts(points) -> list[np.ndarray]:
    """Successive Pareto fronts (NSGA-II's non-dominated sort): front 0 is dominated by no point,
    front 1 only by points of front 0, and so on. Returns index arrays, each in increasing order."""
    points = _as_points(points)
    n = len(points)
    if n == 0:
        return []
    dominates = dominance_matrix(points)
    dominated_by = dominates.sum(axis=0)
    fronts, remaining = [], np.ones(n, dtype=bool)
    while remaining.any():
        front = np.flatnonzero(remaining & (dominated_by == 0))
        fronts.append(front)
        remaining[front] = False
        dominated_by = dominated_by - dominates[front].sum(axis=0)
    return fronts


def pareto_front(points) -> np.ndarray:
    """Indices of the non-dominated points (in increasing index order)."""
    fronts = non_dominated_fronts(points)
    return fronts[0] if fronts else np.zeros((0,), dtype=np.int64)


def crowding_distance(points, weights=None) -> np.ndarray:
    """NSGA-II crowding distance of each point within its set; boundary points get `inf`.

    Args:
        points: `(n, m)` objectives.
        weights: optional `m` non-negative weights for the per-objective terms (SCARLET's weighted
            crowding distance); default equal weights of 1.
    """
    points = _as_points(points)
    n, m = points.shape
    weights = np.ones(m) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (m,) or np.any(weights < 0):
        raise ValueError(f"`weights` must be {m} non-negative numbers. Received: {weights}")
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for i in range(m):
        order = np.argsort(points[:, i], kind="stable")
        values = points[order, i]
        span = values[-1] - values[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += weights[i] * (values[2:] - values[:-2]) / span
    return distance


def select_top_k(points, k, weights=None) -> np.ndarray:
    """The best `k` points by peeling fronts: whole fronts in order while they fit, then the rest of
    the front that overflows by decreasing crowding distance (ties: lower index first)."""
    points = _as_points(points)
    if k < 0:
        raise ValueError(f"`k` must be >= 0. Received: k={k}")
    chosen = []
    for front in non_dominated_fronts(points):
        room = k - len(chosen)
        if room <= 0:
            break
        if len(front) <= room:
            chosen.extend(front.tolist())
        else:
            crowd = crowding_distance(points[front], weights)
            order = np.lexsort((front, -crowd))
            chosen.extend(front[order[:room]].tolist())
    return np.asarray(chosen, dtype=np.int64)


def hypervolume_2d(points, reference) -> float:
    """Area dominated by `points` (two objectives, minimized) and bounded by `reference`.

    Points not strictly better than the reference in both objectives add nothing.
    """
    points = _as_points(points)
    if points.shape[1] != 2:
        raise ValueError(f"hypervolume_2d needs 2 objectives. Received: {points.shape[1]}")
    ref = np.asarray(reference, dtype=np.float64)
    inside = points[np.all(points < ref, axis=1)]
    if len(inside) == 0:
        return 0.0
    front = inside[pareto_front(inside)]
    front = front[np.argsort(front[:, 0])]
    area, previous_y = 0.0, ref[1]
    for x, y in front:
        area += (ref[0] - x) * (previous_y - y)
        previous_y = y
    return float(area)

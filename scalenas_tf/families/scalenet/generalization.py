"""Generalization functions: extrapolating searched scaling strategies to larger scaling stages.

ScaleNet searches strategies S_1..S_M (depth, width and resolution multipliers per stage j, with
S_0 = (1, 1, 1)), then fits one function per dimension, f(j) with f(0) = 1 and a leading
coefficient a0 > 0, and evaluates it at j = M+1, M+2, ... (supplement §C, Eq. 9, 12, 13):

    linear    f(j) = a0 j + 1
    squared   f(j) = a0 j^2 + a1 j + 1

fitted by least squares over j = 1..M subject to a0 > 0. The fit is convex in (a0, a1) for these
forms, so it is solved in closed form: if the unconstrained optimum has a0 <= 0 the constraint is
active, a0 is set to 0 and the rest refitted (`Fit.constrained` says so). Any other two-parameter
form `func(j, a0, a1)` with `func(0, ., .) = 1` can be passed (`fit_custom`); it is fitted by
scipy-free bounded least squares on a grid-refined search, since no library here offers it.
The paper's own form (main-body Eq. (8)) is not known (../shared/reference/scalenet.md §8).

Pure Python + numpy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from collections.abc import Sequence

import numpy as np

DIMENSIONS = ("depth", "width", "resolution")


@dataclasses.dataclass(frozen=True)
class Fit:
    """One dimension's fitted function.

    Attributes:
        form: "linear", "squared" or the custom function's name.
        coefficients: (a0,) or (a0, a1).
        constrained: True when the a0 > 0 constraint was active (a0 set to its bound).
        residual: the sum of squared errors over the fitted stages.
        func: `j -> value`.
    """

    form: str
    coefficients: tuple[float, ...]
    constrained: bool
    residual: float
    func: Callable[[float], float] = dataclasses.field(repr=False, compare=False)

    def __call__(self, j: float) -> float:
        return float(self.func(j))

    def to_dict(self) -> dict:
        return {
            "form": self.form,
            "coefficients": [float(c) for c in self.coefficients],
            "constrained": self.constrained,
            "residual": float(self.residual),
        }


def _data(values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """j = 1..M and z_j = y_j - 1 from the searched values y_1..y_M (S_0 = 1 is imposed, not fitted)."""
    y = np.asarray(values, dtype=np.float64).reshape(-1)
    if y.size < 1 or not np.all(np.isfinite(y)):
        raise ValueError(f"A fit needs the searched values of stages 1..M (finite numbers). Received: {list(values)}")
    return np.arange(1, y.size + 1, dtype=np.float64), y - 1.0


def fit_linear(values: Sequence[float]) -> Fit:
    """f(j) = a0 j + 1, a0 = sum(j z_j) / sum(j^2) (0 if that is not positive)."""
    j, z = _data(values)
    a0 = float(j @ z / (j @ j))
    constrained = bool(a0 <= 0)
    if constrained:
        a0 = 0.0
    residual = float(np.sum((z - a0 * j) ** 2))
    return Fit("linear", (a0,), constrained, residual, lambda t, a0=a0: a0 * t + 1.0)


def fit_squared(values: Sequence[float]) -> Fit:
    """f(j) = a0 j^2 + a1 j + 1 by the 2x2 normal equations; with a0 <= 0, a0 = 0 and a1 refitted.

    With one searched stage (M = 1) the system is underdetermined: the minimum-norm solution is used.
    """
    j, z = _data(values)
    design = np.stack([j**2, j], axis=1)
    (a0, a1), *_ = np.linalg.lstsq(design, z, rcond=None)
    constrained = bool(a0 <= 0)
    if constrained:
        a0, a1 = 0.0, float(j @ z / (j @ j))
    a0, a1 = float(a0), float(a1)
    residual = float(np.sum((z - a0 * j**2 - a1 * j) ** 2))
    return Fit("squared", (a0, a1), constrained, residual, lambda t, a0=a0, a1=a1: a0 * t * t + a1 * t + 1.0)


def fit_custom(
    values: Sequence[float],
    func: Callable[[float, float, float], float],
    name: str = "custom",
    a0_range: tuple[float, float] = (1e-6, 10.0),
    a1_range: tuple[float, float] = (-10.0, 10.0),
    rounds: int = 6,
    grid: int = 41,
) -> Fit:
    """Least squares of any two-parameter `func(j, a0, a1)` over a0 in `a0_range` (a0 > 0), a1 in `a1_range`.

    A coarse grid, refined `rounds` times around the best point (each round shrinks the box to 2
    grid steps around it). Raises ValueError if `func(0, a0, a1) != 1` at the solution.
    """
    j, z = _data(values)
    y = z + 1.0
    if not 0 < a0_range[0] < a0_range[1]:
        raise ValueError(f"`a0_range` must be (low, high) with 0 < low < high. Received: {a0_range}")

    def loss(a0, a1):
        try:
            predicted = np.array([func(t, a0, a1) for t in j], dtype=np.float64)
        except (ValueError, OverflowError, ZeroDivisionError):
            return math.inf
        return float(np.sum((y - predicted) ** 2)) if np.all(np.isfinite(predicted)) else math.inf

    lo0, hi0 = a0_range
    lo1, hi1 = a1_range
    best = (math.inf, lo0, lo1)
    for _ in range(int(rounds)):
        for a0 in np.linspace(lo0, hi0, grid):
            for a1 in np.linspace(lo1, hi1, grid):
                value = loss(a0, a1)
                if value < best[0]:
                    best = (value, float(a0), float(a1))
        step0, step1 = (hi0 - lo0) / (grid - 1), (hi1 - lo1) / (grid - 1)
        lo0, hi0 = max(a0_range[0], best[1] - 2 * step0), min(a0_range[1], best[1] + 2 * step0)
        lo1, hi1 = max(a1_range[0], best[2] - 2 * step1), min(a1_range[1], best[2] + 2 * step1)
    residual, a0, a1 = best
    if not math.isfinite(residual):
        raise ValueError(f"`{name}` gave no finite value over the parameter ranges")
    if not math.isclose(float(func(0.0, a0, a1)), 1.0, abs_tol=1e-9):
        raise ValueError(f"`{name}` must satisfy f(0) = 1 (S_0 is the base model). f(0) = {func(0.0, a0, a1)}")
    constrained = math.isclose(a0, a0_range[0])
    return Fit(name, (a0, a1), constrained, residual, lambda t, a0=a0, a1=a1: func(t, a0, a1))


FORMS = {"linear": fit_linear, "squared": fit_squared}


def fit_strategies(searched: Sequence[Sequence[float]], form: str | Callable = "linear") -> dict[str, Fit]:
    """One fit per dimension from the searched (d, w, r) of stages 1..M (S_0 excluded).

    Args:
        searched: `[(d_1, w_1, r_1), ..., (d_M, w_M, r_M)]`.
        form: "linear", "squared", or a callable `func(j, a0, a1)`.
    """
    rows = np.asarray(searched, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != 3:
        raise ValueError(f"`searched` must be (d, w, r) rows for stages 1..M. Received shape {rows.shape}")
    if callable(form):
        name = getattr(form, "__name__", "custom")
        return {dim: fit_custom(rows[:, k], form, name=name) for k, dim in enumerate(DIMENSIONS)}
    if form not in FORMS:
        raise ValueError(f"`form` must be one of {sorted(FORMS)} or a callable. Received: {form!r}")
    return {dim: FORMS[form](rows[:, k]) for k, dim in enumerate(DIMENSIONS)}


def extrapolate(fits: dict[str, Fit], stages: Sequence[int], base_resolution: int = 224) -> list[dict]:
    """`[{"stage", "depth", "width", "resolution_multiplier", "resolution"}]` for each stage j (px = ceil(224 r))."""
    out = []
    for j in stages:
        d, w, r = (fits[dim](j) for dim in DIMENSIONS)
        px = math.ceil(round(base_resolution * r, 9))
        out.append(
            {
                "stage": int(j),
                "depth": round(d, 3),
                "width": round(w, 3),
                "resolution_multiplier": round(r, 3),
                "resolution": px,
            }
        )
    return out

"""Generalization functions fitted on hand-checkable data (supplement §C; no TensorFlow)."""

import math

import pytest

from scalenas_tf.families.scalenet import generalization as gen

# Supplement Table 3's searched S1..S3 (d, w, r).
TABLE3 = [(1.08, 1.04, 1.14), (1.36, 1.2, 1.355), (1.48, 1.4, 1.58)]


def test_linear_fit_by_hand():
    # depth: z = 0.08, 0.36, 0.48; a0 = (1*.08 + 2*.36 + 3*.48) / (1 + 4 + 9) = 2.24 / 14 = 0.16
    fits = gen.fit_strategies(TABLE3, "linear")
    assert fits["depth"].coefficients == pytest.approx((0.16,))
    assert fits["depth"](0) == 1.0 and fits["depth"](4) == pytest.approx(1.64)
    assert fits["resolution"].coefficients == pytest.approx(((0.14 + 0.71 + 1.74) / 14,))
    assert not any(f.constrained for f in fits.values())
    assert fits["depth"].residual == pytest.approx((0.08 - 0.16) ** 2 + (0.36 - 0.32) ** 2 + (0.48 - 0.48) ** 2)


def test_squared_fit_is_exact_on_a_quadratic():
    values = [1 + 0.05 * j * j + 0.1 * j for j in (1, 2, 3)]
    fit = gen.fit_squared(values)
    assert fit.coefficients == pytest.approx((0.05, 0.1))
    assert fit.residual == pytest.approx(0.0, abs=1e-20) and not fit.constrained
    assert fit(5) == pytest.approx(1 + 0.05 * 25 + 0.5)


def test_constraint_a0_positive_becomes_active():
    # A concave series wants a0 < 0: a0 is held at 0 and a1 refitted as the linear slope.
    values = [1.3, 1.5, 1.6]
    fit = gen.fit_squared(values)
    assert fit.constrained and fit.coefficients[0] == 0.0
    assert fit.coefficients[1] == pytest.approx((0.3 + 1.0 + 1.8) / 14)
    shrinking = gen.fit_linear([0.9, 0.8])
    assert shrinking.constrained and shrinking.coefficients == (0.0,) and shrinking(7) == 1.0


def test_custom_two_parameter_function():
    def power(j, a0, a1):
        return 1 + a0 * j**a1

    values = [power(j, 0.2, 1.5) for j in (1, 2, 3)]
    fits = gen.fit_strategies([(v, v, v) for v in values], power)
    assert fits["width"].form == "power"
    assert fits["width"].coefficients == pytest.approx((0.2, 1.5), rel=1e-3)
    with pytest.raises(ValueError, match=r"must satisfy f\(0\) = 1"):
        gen.fit_custom(values, lambda j, a0, a1: 2 + a0 * j + a1)


def test_extrapolation_and_errors():
    fits = gen.fit_strategies(TABLE3, "linear")
    rows = gen.extrapolate(fits, [4, 5])
    assert rows[0]["stage"] == 4 and rows[0]["depth"] == 1.64
    r4 = 1 + 4 * (2.59 / 14)
    assert rows[0]["resolution"] == math.ceil(224 * r4)
    with pytest.raises(ValueError, match="`form` must be one of"):
        gen.fit_strategies(TABLE3, "cubic")
    with pytest.raises(ValueError, match=r"must be \(d, w, r\) rows"):
        gen.fit_strategies([(1.1, 1.1)], "linear")
    with pytest.raises(ValueError, match="finite numbers"):
        gen.fit_linear([float("nan")])
    assert gen.fit_strategies(TABLE3, "squared")["depth"].to_dict()["form"] == "squared"

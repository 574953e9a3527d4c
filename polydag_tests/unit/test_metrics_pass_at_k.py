"""Unbiased pass@k against the binomial definition, edge cases and refusals."""

import math
from fractions import Fraction

import pytest

from polydag.core.evaluation.metrics.pass_at_k import pass_at_k


def _exact(n, c, k):
    if n - c < k:
        return 1.0
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


@pytest.mark.parametrize("n", [1, 2, 5, 10, 37])
def test_matches_exact_binomial_ratio(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_exact(n, c, k), abs=1e-12), (n, c, k)


def test_hand_worked_values():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - math.comb(7, 5) / math.comb(10, 5))  # 11/12
    assert pass_at_k(10, 3, 5) == pytest.approx(11 / 12)


def test_k_equals_n():
    assert pass_at_k(10, 0, 10) == 0.0
    assert pass_at_k(10, 1, 10) == 1.0


def test_c_zero_and_c_n():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 10, 10) == 1.0


def test_large_n_is_finite_where_the_naive_ratio_is_nan():
    from scipy.special import comb

    with pytest.warns(RuntimeWarning):
        naive = 1 - comb(2000 - 3, 1000) / comb(2000, 1000)  # inf / inf
    assert math.isnan(naive)
    value = pass_at_k(2000, 3, 1000)
    assert math.isfinite(value)
    assert value == pytest.approx(_exact(2000, 3, 1000), abs=1e-12)
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "n, c, k, match",
    [
        (10, 0, 11, "larger than the n=10"),
        (5, 5, 10, "larger than the n=5"),
        (10, 1, 0, "k must be"),
        (10, 11, 1, "more than n"),
        (-1, 0, 1, "≥ 0"),
        (10, -1, 1, "≥ 0"),
    ],
)
def test_refusals(n, c, k, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(n, c, k)


def test_non_integers_are_refused():
    with pytest.raises(TypeError):
        pass_at_k(10.0, 1, 1)
    with pytest.raises(TypeError):
        pass_at_k(10, True, 1)

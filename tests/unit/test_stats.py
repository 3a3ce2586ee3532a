"""``finetuner_otel.eval._stats``: the Wilson interval and the paired tests, against published
and hand-computed values (scipy is not a dependency)."""

from __future__ import annotations

import math

import pytest

from finetuner_otel.eval._stats import (
    Z95,
    mcnemar_exact,
    paired_interval,
    sign_flip_test,
    wilson,
)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (8, 10, 0.4902, 0.9433),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_matches_published_intervals(
    successes: int, n: int, low: float, high: float
) -> None:
    got = wilson(successes, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_edges() -> None:
    assert wilson(0, 0) == (0.0, 1.0)  # nothing to estimate from
    assert wilson(3.5, 7) == pytest.approx(_symmetric(7))  # a sum of scores, p = 1/2
    low, high = wilson(30, 100, z=1.0)  # a narrower z, a narrower interval
    wide_low, wide_high = wilson(30, 100)
    assert wide_low < low < 0.3 < high < wide_high


def _symmetric(n: int) -> tuple[float, float]:
    """Wilson of p = 1/2 by hand: centre 1/2, half-width z*sqrt(1/(4n) + z²/(4n²))/(1+z²/n)."""
    z = Z95
    half = z * math.sqrt(1 / (4 * n) + z * z / (4 * n * n)) / (1 + z * z / n)
    return 0.5 - half, 0.5 + half


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (0, 0, 1.0),
        (0, 5, 2 / 32),  # 2 * P(X <= 0), X ~ Bin(5, 1/2)
        (1, 9, 2 * (1 + 10) / 1024),
        (9, 1, 2 * (1 + 10) / 1024),  # symmetric
        (3, 3, 1.0),  # 2 * 42/64 > 1: capped at 1
        (6, 14, 2 * (1 + 20 + 190 + 1140 + 4845 + 15504 + 38760) / 2**20),
    ],
)
def test_mcnemar_exact(b: int, c: int, p: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)


def test_sign_flip_by_hand() -> None:
    assert sign_flip_test([]) == 1.0
    assert sign_flip_test([0, 0.0]) == 1.0
    assert sign_flip_test([0, 1]) == 1.0  # zeros dropped; one pair is as extreme either way
    # |±0.5 ±0.25 + ±1| >= 1.25 for 4 of the 8 sign assignments
    assert sign_flip_test([0.5, -0.25, 1.0]) == 0.5
    assert sign_flip_test([1.0] * 5) == 2 / 32


@pytest.mark.parametrize(("b", "c"), [(1, 0), (4, 1), (2, 7), (5, 5), (0, 16)])
def test_sign_flip_of_pass_fail_pairs_is_mcnemar(b: int, c: int) -> None:
    """On differences of +1 and -1 the exact sign-flip test is the exact McNemar test."""
    assert sign_flip_test([1.0] * b + [-1.0] * c) == pytest.approx(mcnemar_exact(b, c))


def test_sign_flip_past_16_pairs_samples_near_the_exact_value() -> None:
    differences = [1.0] * 14 + [-1.0] * 6
    sampled = sign_flip_test(differences, rounds=20_000, seed=1)
    assert sampled == pytest.approx(mcnemar_exact(14, 6), abs=0.01)  # 0.1153; 5 s.e. = 0.011
    assert sign_flip_test(differences, rounds=2_000, seed=1) == sign_flip_test(
        differences, rounds=2_000, seed=1
    )
    # never 0: the observed assignment counts as one of the rounds
    assert sign_flip_test([1.0] * 20, rounds=100) >= 1 / 101


def test_paired_interval_by_hand() -> None:
    assert paired_interval([]) == (0.0, 0.0)
    assert paired_interval([0.5]) == (0.5, 0.5)
    # mean 2.5, sample sd sqrt(5/3), half-width z * sd / 2
    half = Z95 * math.sqrt(5 / 3) / 2
    assert paired_interval([1, 2, 3, 4]) == pytest.approx((2.5 - half, 2.5 + half))
    assert paired_interval([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2))

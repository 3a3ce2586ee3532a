"""The statistics of evals: Wilson intervals and paired tests, in the standard library."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

Z95 = 1.959963984540054


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (``successes`` may be a sum of scores in
    [0, 1]); (0, 1) when there is nothing to estimate from."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test: ``b`` pairs where only the first passed, ``c`` where only
    the second did. The binomial test of b against Bin(b + c, 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail: float = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def sign_flip_test(differences: Sequence[float], *, rounds: int = 20_000, seed: int = 0) -> float:
    """Two-sided paired permutation test of a mean difference of zero: exact over every sign
    assignment up to 16 non-zero pairs, else ``rounds`` random ones (seeded)."""
    values = [d for d in differences if d != 0]
    if not values:
        return 1.0
    observed = abs(sum(values))
    n = len(values)
    if n <= 16:
        extreme = 0
        for mask in range(2**n):
            total = sum(v if mask >> i & 1 else -v for i, v in enumerate(values))
            extreme += abs(total) >= observed - 1e-12
        exact: float = extreme / 2**n
        return exact
    rng = random.Random(seed)
    extreme = sum(
        abs(sum(v if rng.random() < 0.5 else -v for v in values)) >= observed - 1e-12
        for _ in range(rounds)
    )
    return (extreme + 1) / (rounds + 1)


def paired_interval(differences: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """A normal-approximation interval of the mean of paired differences."""
    n = len(differences)
    if n == 0:
        return 0.0, 0.0
    mean = sum(differences) / n
    if n == 1:
        return mean, mean
    variance = sum((d - mean) ** 2 for d in differences) / (n - 1)
    half = z * math.sqrt(variance / n)
    return mean - half, mean + half

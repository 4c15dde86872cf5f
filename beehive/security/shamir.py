"""Shamir threshold sharing over GF(2^61 - 1): any t of n aggregators suffice.

Additive sharing needs every aggregator (n-of-n): one lost aggregator loses the
round. With Shamir a target's answer v becomes points f(1..n) of a random
polynomial of degree t-1 with f(0) = v; aggregators add points, and because
sharing is linear, any t aggregator sums are points of the polynomial whose value
at 0 is the total. Fewer than t points reveal nothing about v. With more than t
sums the extra points must lie on the same polynomial: a faulty or lying
aggregator shows up as a mismatch instead of a wrong total.

Aggregator i (0-based position in `Computation.aggregators`) holds x = i + 1.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from beehive.core.errors import BeehiveError

#: A Mersenne prime: room for sums of 2^29 answers below 2^32 without wrapping.
PRIME = 2**61 - 1

__all__ = ["PRIME", "Inconsistent", "reconstruct", "split"]


class Inconsistent(BeehiveError, ValueError):
    """More than t sums were given and they do not lie on one polynomial."""


def split(value: int, n: int, t: int, prime: int = PRIME) -> list[int]:
    """Shares f(1), …, f(n) of a random degree t-1 polynomial with f(0) = value."""
    if type(value) is not int or not 0 <= value < prime:
        raise ValueError(f"value must be an int in [0, {prime})")
    if not 1 <= t <= n:
        raise ValueError(f"threshold must be between 1 and the number of shares ({n}), got {t}")
    coefficients = [value, *(secrets.randbelow(prime) for _ in range(t - 1))]
    return [_evaluate(coefficients, x, prime) for x in range(1, n + 1)]


def reconstruct(points: Mapping[int, int], t: int, prime: int = PRIME) -> int:
    """f(0) from at least t points {x: f(x)}; every extra point is checked to agree."""
    if len(points) < t:
        raise ValueError(f"need {t} sums to reconstruct, have {len(points)}")
    xs = sorted(points)
    basis = {x: points[x] % prime for x in xs[:t]}
    for x in xs[t:]:
        if _interpolate(basis, x, prime) != points[x] % prime:
            raise Inconsistent(f"the sum at x={x} does not agree with the other sums")
    return _interpolate(basis, 0, prime)


def _evaluate(coefficients: list[int], x: int, prime: int) -> int:
    result = 0
    for c in reversed(coefficients):
        result = (result * x + c) % prime
    return result


def _interpolate(points: Mapping[int, int], x: int, prime: int) -> int:
    """Lagrange interpolation of the polynomial through `points`, evaluated at x."""
    total = 0
    for xi, yi in points.items():
        num, den = 1, 1
        for xj in points:
            if xj != xi:
                num = num * (x - xj) % prime
                den = den * (xi - xj) % prime
        total = (total + yi * num * pow(den, -1, prime)) % prime
    return total

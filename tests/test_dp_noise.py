"""The distributed discrete Laplace sampler (beehive/security/noise.py), unit.

Goodness of fit: the empirical CDF of N totals is compared with the exact CDF
of the target distribution by the Dvoretzky–Kiefer–Wolfowitz inequality (with
Massart's constant): P(sup |F_N − F| > t) <= 2 exp(−2 N t²) for ANY
distribution, discrete ones included. With N = 20,000 draws and a false-alarm
rate of 1e-6 per test, t = sqrt(ln(2 / 1e-6) / (2 N)) ≈ 0.019: a correct
sampler fails one of these tests about once in a million runs. A power check
shows the same test does reject a miscalibrated sampler, so a pass means
something.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter
from fractions import Fraction

import pytest

from beehive.security import noise

DRAWS = 20_000
FALSE_ALARM = 1e-6
DKW_BOUND = math.sqrt(math.log(2 / FALSE_ALARM) / (2 * DRAWS))

EPSILON, WIDTH = 1.0, 10  # the policy: epsilon 1, range [0, 10]
ALPHA = noise.alpha_for(EPSILON, WIDTH)


def total_noise_cdf(alpha: Fraction, shape: float) -> dict[int, float]:
    """The exact CDF (in floats) of X − Y, X and Y independent negative binomial
    with this shape: the total noise of shape·m contributions calibrated for m."""
    a = float(alpha)
    pmf = [(1 - a) ** shape]
    while pmf[-1] > 1e-17 or len(pmf) < 10:  # the tail beyond weighs < 1e-15
        j = len(pmf)
        pmf.append(pmf[-1] * a * (j - 1 + shape) / j)
    diff: dict[int, float] = {}
    for x, px in enumerate(pmf):
        for y, py in enumerate(pmf):
            diff[x - y] = diff.get(x - y, 0.0) + px * py
    cdf, running = {}, 0.0
    for z in sorted(diff):
        running += diff[z]
        cdf[z] = running
    return cdf


def ks_distance(samples: list[int], cdf: dict[int, float]) -> float:
    counts = Counter(samples)
    worst, seen = 0.0, 0
    for z in sorted(set(cdf) | set(counts)):
        seen += counts.get(z, 0)
        expected = cdf.get(z, 0.0 if z < min(cdf) else 1.0)
        worst = max(worst, abs(seen / len(samples) - expected))
    return worst


def totals(contributors: int, m: int, alpha: Fraction = ALPHA) -> list[int]:
    return [sum(noise.contribution(m, alpha) for _ in range(contributors)) for _ in range(DRAWS)]


def test_the_floor_alone_gives_exactly_the_discrete_laplace() -> None:
    """min_contributors = 3 honest contributors, nobody else: their noise sums to
    the two-sided geometric of epsilon, P(z) = (1−α)/(1+α) α^|z|."""
    m = 3
    a = float(ALPHA)
    laplace = total_noise_cdf(ALPHA, 1.0)
    for z in (-2, 0, 3):  # the tabulated CDF is the closed form
        closed = sum((1 - a) / (1 + a) * a ** abs(k) for k in range(-400, z + 1))
        assert laplace[z] == pytest.approx(closed, abs=1e-9)
    assert ks_distance(totals(m, m), laplace) < DKW_BOUND


def test_more_contributors_than_the_floor_sum_to_the_wider_distribution() -> None:
    """5 contributions calibrated for 2: the difference of two NB(5/2, α)."""
    assert ks_distance(totals(5, 2), total_noise_cdf(ALPHA, 2.5)) < DKW_BOUND


def test_the_fit_test_rejects_a_total_short_of_the_floor() -> None:
    """Power: 2 contributions calibrated for 3 are less noise than the floor's
    guarantee, and the same test sees it (the distance is about 0.04, twice
    the bound)."""
    assert ks_distance(totals(2, 3), total_noise_cdf(ALPHA, 1.0)) > DKW_BOUND


def test_stddev_is_the_distribution_s() -> None:
    cdf = total_noise_cdf(ALPHA, 5 / 3)
    pmf, last = {}, 0.0
    for z, c in cdf.items():
        pmf[z], last = c - last, c
    variance = sum(p * z * z for z, p in pmf.items())
    assert noise.stddev(ALPHA, 5, 3) == pytest.approx(math.sqrt(variance), rel=1e-6)


@pytest.mark.parametrize(("contributors", "m"), [(2, 2), (5, 2), (30, 3)])
def test_interval95_covers_95_percent_and_no_more_than_it_must(contributors: int, m: int) -> None:
    cdf = total_noise_cdf(ALPHA, contributors / m)
    t = noise.interval(ALPHA, contributors, m)

    def inside(t: int) -> float:
        return cdf[t] - cdf.get(-t - 1, 0.0)

    assert inside(t) >= 0.95 > inside(t - 1)


def test_alpha_is_rational_and_never_below_exp_of_minus_epsilon_over_width() -> None:
    for epsilon, width in [(1.0, 10), (0.1, 1000), (5.0, 1), (0.5, 7)]:
        alpha = noise.alpha_for(epsilon, width)
        assert isinstance(alpha, Fraction)
        assert (1 << noise.ALPHA_BITS) % alpha.denominator == 0
        # the effective epsilon, width · ln(1/α), never exceeds the declared one
        assert width * math.log(1 / alpha) <= epsilon
        assert width * math.log(1 / alpha) > epsilon * (1 - 1e-9)


def test_the_walk_asks_for_more_bits_when_the_uniform_sits_on_a_boundary() -> None:
    """U's first 64 bits all ones: no CDF value below 1 can be told apart from it
    at that precision, so the sampler must draw more bits (and still stop)."""
    asked: list[int] = []

    def randbits(n: int) -> int:
        asked.append(n)
        return (1 << n) - 1 if len(asked) == 1 else secrets.randbits(n)

    value = noise.polya(2, ALPHA, randbits)
    assert value >= 0
    assert len(asked) >= 2, "the first 64 bits cannot decide, more must be drawn"


def test_a_uniform_of_zero_gives_zero_and_is_exact() -> None:
    """U = 0 is below CDF(0) = (1−α)^(1/m) at any precision: k = 0, one draw."""
    assert noise.polya(3, ALPHA, lambda n: 0) == 0


def test_iroot_is_exact() -> None:
    for x in [0, 1, 2, 7, 8, 9, 10**40, 3**81 - 1, 3**81, 3**81 + 1]:
        for n in (1, 2, 3, 5):
            r = noise._iroot(x, n)
            assert r**n <= x < (r + 1) ** n


@pytest.mark.parametrize(
    ("epsilon", "width", "why"),
    [(0.0, 10, "epsilon > 0"), (1.0, 0, "sensitivity >= 1"), (1e-16, 10, "too small")],
)
def test_bad_parameters_are_refused(epsilon: float, width: int, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        noise.alpha_for(epsilon, width)

"""Distributed discrete Laplace noise: each contributor adds a little, the total
carries exactly the two-sided geometric ("discrete Laplace") distribution.

The mechanism (Goryczka, Xiong & Sunderam, "Secure multiparty aggregation with
differential privacy: a comparative study", 2013; docs/privacy.md): a
geometric variable is infinitely
divisible, Geom(α) = Σ of m independent Pólya(1/m, α) (negative binomial with
shape 1/m). So if every contributor adds X − Y, with X and Y independent
Pólya(1/m, α), the noise of any m contributors sums to the difference of two
Geom(α): P(Z = z) ∝ α^|z|. With α = exp(−ε/Δ), where Δ bounds how much one
answer can move the total (the width of the clipping range), the total of any m
honest contributors is ε-differentially private (Ghosh, Roughgarden &
Sundararajan 2009). More contributors only add noise: k of them give the
difference of two Pólya(k/m, α).

Exactness (Mironov 2012: floating-point noise leaks through its low bits):
α is a rational (exp(−ε/Δ) rounded *up* to a multiple of 2^-48, so the real
ε is never above the declared one), the uniform variate is a random integer
from `secrets` extended bit by bit when needed, and the inverse CDF is walked
with integer interval arithmetic: every comparison that decides the sample is
exact, and one that the current precision cannot decide draws more bits. No
float touches a sample. (`stddev` and `interval` are floats: they describe the
distribution to a reader, they never draw from it.)
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from fractions import Fraction

__all__ = [
    "MECHANISM",
    "alpha_for",
    "contribution",
    "interval",
    "polya",
    "stddev",
]

MECHANISM = "distributed discrete Laplace"

#: α is a multiple of 2^-ALPHA_BITS: fine enough that ε is kept to ~1e-10.
ALPHA_BITS = 48
#: Bits of the uniform variate drawn at a time (and guard bits of the arithmetic).
_BITS = 64

RandBits = Callable[[int], int]


def alpha_for(epsilon: float, sensitivity: int) -> Fraction:
    """The geometric parameter of ε-DP for answers that move the total by at most
    `sensitivity`: exp(−ε/Δ), rounded up to a rational (more noise, never less).

    math.exp is within an ulp (2^-53 below 1); the +1 at 2^-48 covers it."""
    if not epsilon > 0 or sensitivity < 1:
        raise ValueError(f"need epsilon > 0 and sensitivity >= 1, got {epsilon}, {sensitivity}")
    scale = 1 << ALPHA_BITS
    numerator = math.ceil(math.exp(-epsilon / sensitivity) * scale) + 1
    if numerator >= scale:
        raise ValueError(f"epsilon {epsilon} is too small for a range of width {sensitivity}")
    return Fraction(numerator, scale)


def _iroot(x: int, n: int) -> int:
    """floor(x ** (1/n)) for integers, exactly (Newton's method on ints)."""
    if x < 2:
        return x
    guess = 1 << -(-x.bit_length() // n)  # above the root
    while True:
        better = ((n - 1) * guess + x // guess ** (n - 1)) // n
        if better >= guess:
            return guess
        guess = better


def polya(m: int, alpha: Fraction, randbits: RandBits = secrets.randbits) -> int:
    """One Pólya(1/m, α) variate: P(k) = Γ(k + 1/m) / (k! Γ(1/m)) (1−α)^(1/m) α^k.

    Inverse transform sampling with a lazily refined uniform U: the answer is
    the least k with U < CDF(k) = (1−α)^(1/m) · Σ_{j≤k} t_j, t_0 = 1,
    t_j = t_{j−1} · α (j − 1 + 1/m) / j. Both sides are kept as integer
    intervals at P bits; when U's interval and CDF(k)'s overlap, U gets more bits
    and the walk starts again at more precision (it is the same real U)."""
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    a, d = alpha.numerator, alpha.denominator
    if not 0 < a < d:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    bits, u = _BITS, randbits(_BITS)
    while True:
        k = _walk(u, bits, m, a, d)
        if k is not None:
            return k
        u = (u << _BITS) | randbits(_BITS)
        bits += _BITS


def _walk(u: int, bits: int, m: int, a: int, d: int) -> int | None:
    """The k that U ∈ [u, u+1) / 2^bits maps to, or None if undecidable at this precision."""
    p = bits + _BITS
    one = 1 << p
    # c = (1 − α)^(1/m) at scale 2^p: c_lo ≤ c < c_lo + 1.
    c_lo = _iroot(((d - a) << (p * m)) // d, m)
    c_hi = c_lo + 1
    u_lo, u_hi = u << (p - bits), (u + 1) << (p - bits)
    t_lo = t_hi = s_lo = s_hi = one
    k = 0
    while True:
        cdf_lo = (c_lo * s_lo) >> p
        cdf_hi = -((-c_hi * s_hi) >> p)
        if u_hi <= cdf_lo:
            return k
        if u_lo < cdf_hi:
            return None  # U and CDF(k) overlap: more bits of U, more precision
        # t_{k+1} = t_k · a (k·m + 1) / (d · m · (k + 1)), rounded outwards.
        num, den = a * (k * m + 1), d * m * (k + 1)
        t_lo = (t_lo * num) // den
        t_hi = -((-t_hi * num) // den)
        s_lo += t_lo
        s_hi += t_hi
        k += 1


def contribution(m: int, alpha: Fraction, randbits: RandBits = secrets.randbits) -> int:
    """What one contributor adds to its answer: X − Y, X and Y Pólya(1/m, α).
    The contributions of m contributors sum to a two-sided geometric(α)."""
    return polya(m, alpha, randbits) - polya(m, alpha, randbits)


def stddev(alpha: Fraction, contributors: int, m: int) -> float:
    """Standard deviation of the total noise of `contributors` contributions
    calibrated for m: the difference of two Pólya(k/m, α), variance 2(k/m)α/(1−α)²."""
    a = float(alpha)
    return math.sqrt(2 * (contributors / m) * a) / (1 - a)


def interval(alpha: Fraction, contributors: int, m: int, coverage: float = 0.95) -> int:
    """The least t with P(|noise| <= t) >= coverage, for the total noise of
    `contributors` contributions: `total ± t` covers the clean total that often.

    Computed from the distribution (floats: a description, not a sample); when
    the distribution is too wide to tabulate quickly, a bound from the
    discrete Laplace tail, which is the heaviest of the family."""
    a = float(alpha)
    shape = contributors / m
    mean = shape * a / (1 - a)
    if mean > 500:
        sigma = stddev(alpha, contributors, m)
        return math.ceil(sigma * 3 / math.sqrt(2) * (1 + 1e-9))
    pmf = [(1 - a) ** shape]
    cdf = [pmf[0]]
    j = 0
    while cdf[-1] < 1 - 1e-12 and len(pmf) < 1_000_000:
        j += 1
        pmf.append(pmf[-1] * a * (j - 1 + shape) / j)
        cdf.append(cdf[-1] + pmf[-1])
    last = len(cdf) - 1

    def covered(t: int) -> float:
        # P(|X − Y| <= t) = Σ_x p(x) (F(x + t) − F(x − t − 1)).
        return sum(
            p * (cdf[min(x + t, last)] - (cdf[x - t - 1] if x - t - 1 >= 0 else 0.0))
            for x, p in enumerate(pmf)
        )

    lo, hi = 0, 2 * last + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if covered(mid) >= coverage:
            hi = mid
        else:
            lo = mid + 1
    return lo

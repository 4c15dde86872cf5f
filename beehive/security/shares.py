"""Additive secret sharing over Z/modulus.

A target's answer leaves its machine only as shares: any n-1 of them are uniformly
random and independent of the answer, so an aggregator (or any coalition short of
all of them) learns nothing; only the sum over every share gives the value back.
Shares come from `secrets`, never `random`, because `random` is predictable from
its outputs and would let an aggregator reconstruct the other shares.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from beehive.core.constants import MODULUS

__all__ = ["combine", "split"]


def _check_modulus(modulus: int) -> None:
    if type(modulus) is not int or modulus < 2:
        raise ValueError(f"modulus must be an int >= 2, got {modulus!r}")


def _check_element(x: object, modulus: int, what: str) -> int:
    # bool is an int subclass; a True that slipped in is a bug upstream, not the value 1.
    if type(x) is not int:
        raise TypeError(f"{what} must be an int, got {type(x).__name__}")
    if not 0 <= x < modulus:
        raise ValueError(f"{what} {x} is outside [0, {modulus})")
    return x


def split(value: int, n: int, modulus: int = MODULUS) -> list[int]:
    """Split `value` into `n` shares whose sum mod `modulus` is `value`.

    Out-of-range values are refused rather than reduced: a handler answering
    2**32 + 5 almost certainly has a bug, and silently wrapping it would make the
    aggregate quietly wrong.
    """
    _check_modulus(modulus)
    if type(n) is not int or n < 1:
        raise ValueError(f"number of shares must be an int >= 1, got {n!r}")
    _check_element(value, modulus, "value")
    shares = [secrets.randbelow(modulus) for _ in range(n - 1)]
    shares.append((value - sum(shares)) % modulus)
    return shares


def combine(shares: Iterable[int], modulus: int = MODULUS) -> int:
    """Sum shares (or partial sums of shares) mod `modulus`.

    Each input is range-checked because partial sums arrive from other nodes: an
    out-of-range number is a sign of a faulty or hostile peer and must not be
    folded into a result that looks valid.
    """
    _check_modulus(modulus)
    total = 0
    for i, share in enumerate(shares):
        total += _check_element(share, modulus, f"share #{i}")
    return total % modulus

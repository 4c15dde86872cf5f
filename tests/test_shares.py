"""Additive sharing must reconstruct exactly and reveal nothing per share."""

from __future__ import annotations

import secrets

import pytest

from beehive.core.constants import MODULUS
from beehive.security.shares import combine, split


@pytest.mark.parametrize("n", range(1, 8))
def test_round_trip_random_values(n: int) -> None:
    for _ in range(200):
        value = secrets.randbelow(MODULUS)
        shares = split(value, n)
        assert len(shares) == n
        assert all(type(s) is int and 0 <= s < MODULUS for s in shares)
        assert combine(shares) == value


@pytest.mark.parametrize("value", [0, 1, MODULUS - 1])
def test_edges_round_trip(value: int) -> None:
    for n in (1, 2, 3, 7):
        assert combine(split(value, n)) == value


def test_single_share_is_the_value() -> None:
    assert split(12345, 1) == [12345]


def test_sum_of_many_answers_wraps_mod_2_32() -> None:
    # Aggregators sum shares from several targets; the total wraps like the values do.
    values = [MODULUS - 1, MODULUS - 1, 5, 2**31]
    per_aggregator: list[list[int]] = [[], [], []]
    for v in values:
        for agg, share in zip(per_aggregator, split(v, 3), strict=True):
            agg.append(share)
    sums = [combine(shares) for shares in per_aggregator]
    assert combine(sums) == sum(values) % MODULUS


def test_shares_look_uniform() -> None:
    value = 42
    trials = 2000
    firsts = []
    for _ in range(trials):
        shares = split(value, 3)
        assert all(0 <= s < MODULUS for s in shares)
        firsts.append(shares[0])
    # A share equal to the value would leak it; with uniform shares that is a 1-in-2^32 event.
    assert sum(1 for s in firsts if s == value) <= 1
    assert len(set(firsts)) > trials * 0.99
    # Uniform over [0, 2^32): roughly half the draws fall in the top half.
    top = sum(1 for s in firsts if s >= MODULUS // 2)
    assert 0.4 * trials < top < 0.6 * trials


def test_custom_modulus() -> None:
    for _ in range(50):
        v = secrets.randbelow(97)
        shares = split(v, 4, modulus=97)
        assert all(0 <= s < 97 for s in shares)
        assert combine(shares, modulus=97) == v


@pytest.mark.parametrize(
    ("value", "n"),
    [(-1, 3), (MODULUS, 3), (2**40, 2), (5, 0), (5, -2)],
)
def test_split_rejects_bad_input(value: int, n: int) -> None:
    with pytest.raises(ValueError):
        split(value, n)


def test_split_rejects_non_ints() -> None:
    with pytest.raises(TypeError):
        split(True, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        split(1.0, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        split(1, 2, modulus=1)


def test_combine_rejects_out_of_range_shares() -> None:
    assert combine([]) == 0
    with pytest.raises(ValueError):
        combine([1, MODULUS])
    with pytest.raises(ValueError):
        combine([-1])
    with pytest.raises(TypeError):
        combine(["1"])  # type: ignore[list-item]

"""Threshold sharing: any t sums reconstruct, fewer cannot, extra sums are checked."""

from __future__ import annotations

import itertools
import secrets

import pytest

from beehive.security.shamir import PRIME, Inconsistent, reconstruct, split


@pytest.mark.parametrize(("n", "t"), [(1, 1), (3, 2), (3, 3), (5, 3)])
def test_any_t_of_n_sums_reconstruct_the_total(n: int, t: int):
    values = [secrets.randbelow(2**32) for _ in range(4)]
    per_target = [split(v, n, t) for v in values]
    sums = {x + 1: sum(s[x] for s in per_target) % PRIME for x in range(n)}
    for subset in itertools.combinations(sorted(sums), t):
        assert reconstruct({x: sums[x] for x in subset}, t) == sum(values)
    assert reconstruct(sums, t) == sum(values)  # all n, extras checked


def test_a_wrong_extra_sum_is_reported_not_folded_in():
    shares = split(25, 3, 2)
    points = {1: shares[0], 2: shares[1], 3: (shares[2] + 1) % PRIME}
    with pytest.raises(Inconsistent):
        reconstruct(points, 2)


def test_fewer_than_t_sums_refused():
    with pytest.raises(ValueError, match="need 2"):
        reconstruct({1: split(7, 3, 2)[0]}, 2)


def test_a_single_share_below_threshold_is_uniform_not_the_value():
    seen = {split(42, 3, 2)[0] for _ in range(200)}
    assert 42 not in seen and len(seen) == 200


def test_bad_parameters():
    with pytest.raises(ValueError):
        split(1, 2, 3)
    with pytest.raises(ValueError):
        split(-1, 3, 2)

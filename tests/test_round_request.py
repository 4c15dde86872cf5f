"""RoundRequest: the one shape of a round request, validated once (no processes)."""

from __future__ import annotations

import pytest

from beehive.core.constants import MAX_DEADLINE_SECONDS
from beehive.core.models import RoundError, RoundRequest

DEFAULTS = {"deadline": 30.0, "min_contributors": 2, "sharing": "additive", "threshold": None}


def request(**fields: object) -> RoundRequest:
    return RoundRequest.parse({"query": "q", "aggregators": ["a", "b"], "targets": ["c"], **fields})


def test_names_are_deduplicated_in_order() -> None:
    req = request(aggregators=["b", "a", "b"], targets=["c", "d", "c"])
    assert (req.aggregators, req.targets) == (["b", "a"], ["c", "d"])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"aggregators": []}, "aggregators"),
        ({"targets": []}, "targets"),
        ({"deadline": 0}, "deadline"),
        ({"deadline": -1}, "deadline"),
        ({"deadline": MAX_DEADLINE_SECONDS + 1}, "deadline"),
        ({"min_contributors": 0}, "min_contributors"),
        ({"min_contributors": "2"}, "min_contributors"),
        ({"sharing": "xor"}, "sharing"),
        ({"threshold": 3, "sharing": "shamir"}, "more than the 2 aggregator"),
        ({"threshold": 1, "sharing": "additive"}, "shamir' only"),
        ({"comp_id": "x"}, "comp_id"),
    ],
)
def test_bad_fields_are_refused_naming_them(fields: dict[str, object], field: str) -> None:
    with pytest.raises(RoundError, match=field):
        request(**fields)


def test_defaults_fill_only_what_the_request_leaves_open() -> None:
    full = request(deadline=5.0).with_defaults(**DEFAULTS)
    assert (full.deadline, full.min_contributors, full.sharing, full.threshold) == (
        5.0,
        2,
        "additive",
        None,
    )
    shamir = {**DEFAULTS, "sharing": "shamir", "threshold": 2}
    assert request().with_defaults(**shamir).threshold == 2
    # an explicit scheme does not take the default scheme's threshold
    with pytest.raises(RoundError, match="needs a threshold"):
        request(sharing="shamir").with_defaults(**shamir)
    assert request(sharing="additive").with_defaults(**shamir).threshold is None


def test_the_computation_carries_every_field_and_the_proposer() -> None:
    full = request(min_contributors=3, metadata={"k": "v"}).with_defaults(**DEFAULTS)
    comp = full.computation("alice")
    assert comp.proposer == "alice"
    assert (comp.aggregators, comp.targets, comp.min_contributors, comp.metadata) == (
        ["a", "b"],
        ["c"],
        3,
        {"k": "v"},
    )

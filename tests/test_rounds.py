"""The round rules without a network: when to report, combine, re-sum or fail."""

from __future__ import annotations

import json

import pytest

from beehive.core.constants import MODULUS
from beehive.core.models import Computation
from beehive.flower.rounds import AggregatorRound, Equivocation, ProposerRound, below_policy
from beehive.flower.target import make_shares
from beehive.security import split
from beehive.security.shamir import PRIME


def comp(targets=("c", "d", "e"), aggregators=("a", "b")) -> Computation:
    return Computation(
        query="q", proposer="p", aggregators=list(aggregators), targets=list(targets), deadline=5
    )


def test_aggregator_reports_once_every_target_answered_or_declined():
    rnd = AggregatorRound(comp())
    rnd.add_share("c", 5)
    rnd.decline("d", "handler error")
    assert not rnd.all_in
    rnd.add_share("e", 7)
    assert rnd.all_in
    assert rnd.sum_over() == (12, ["c", "e"])


def test_identical_resend_is_harmless_and_a_different_share_is_equivocation():
    rnd = AggregatorRound(comp())
    assert rnd.add_share("c", 5) is True
    assert rnd.add_share("c", 5) is False
    rnd.add_share("d", 7)
    with pytest.raises(Equivocation):
        rnd.add_share("c", 6)
    # neither share is trusted: the equivocator is out of the round, its slot a decline
    assert rnd.sum_over() == (7, ["d"])
    assert "c" in rnd.declined
    with pytest.raises(Equivocation):
        rnd.add_share("c", 5)  # coming back with the first value does not help
    rnd.decline("c", "changed my mind")
    assert rnd.declined["c"].startswith("excluded")


def test_privacy_policy_refuses_a_total_over_too_few_contributors():
    policy = Computation(query="q", proposer="p", aggregators=["a"], targets=["c", "d"])
    assert policy.min_contributors == 2  # the default
    assert below_policy(policy, 2) is None
    assert "min_contributors" in (below_policy(policy, 1) or "")
    prop = ProposerRound(policy)
    prop.add_report("a", 42, ["c"])
    result = prop.finish()
    assert (result.status, result.result) == ("failed", None)
    assert "privacy policy" in (result.reason or "")
    refused = ProposerRound(policy)
    refused.refusals["a"] = "only 1 contributor(s)"
    assert "aggregator a refused" in (refused.finish().reason or "")


def test_resum_over_a_subset_and_refusal_for_a_share_not_held():
    rnd = AggregatorRound(comp())
    rnd.add_share("c", MODULUS - 1)
    rnd.add_share("d", 3)
    assert rnd.sum_over(["c", "d"]) == (2, ["c", "d"])  # wraps mod 2^32
    assert rnd.sum_over(["d"]) == (3, ["d"])
    with pytest.raises(KeyError):
        rnd.sum_over(["e"])


def _run(values: dict[str, int], reach: dict[str, set[str]]) -> ProposerRound:
    """Each target shares its value; `reach[agg]` says whose shares reached agg."""
    c = comp(targets=tuple(values))
    aggs = {a: AggregatorRound(c) for a in c.aggregators}
    for target, value in values.items():
        for agg, share in zip(c.aggregators, split(value, len(c.aggregators)), strict=True):
            if target in reach[agg]:
                aggs[agg].add_share(target, share)
    prop = ProposerRound(c)
    for name, rnd in aggs.items():
        prop.add_report(name, *rnd.sum_over())
    step = prop.next_step()
    while step and step[0] == "resum":
        for name in step[1]:
            prop.add_report(name, *aggs[name].sum_over(sorted(prop.common_contributors())))
        step = prop.next_step()
    return prop


def test_agreeing_aggregators_combine_to_the_exact_total():
    prop = _run({"c": 25, "d": 25, "e": 25}, {"a": {"c", "d", "e"}, "b": {"c", "d", "e"}})
    result = prop.finish()
    assert (result.status, result.result, result.missing) == ("complete", 75, [])


def test_a_share_that_reached_one_aggregator_only_is_left_out_not_added_wrongly():
    prop = _run({"c": 10, "d": 20, "e": 40}, {"a": {"c", "d", "e"}, "b": {"c", "d"}})
    result = prop.finish()
    assert result.status == "partial"
    assert result.result == 30
    assert result.contributors == ["c", "d"]
    assert result.missing == ["e"]


def test_a_missing_aggregator_fails_the_round_with_a_reason():
    prop = ProposerRound(comp())
    prop.add_report("a", 3, ["c"])
    assert prop.next_step() is None
    result = prop.finish()
    assert result.status == "failed"
    assert result.result is None
    assert "b" in (result.reason or "")


def test_no_contributor_at_all_is_failed_not_a_zero_total():
    prop = ProposerRound(comp())
    prop.add_report("a", 0, [])
    prop.add_report("b", 0, [])
    assert prop.next_step() == ("final", [])
    result = prop.finish()
    assert (result.status, result.result) == ("failed", None)


def shamir_comp(targets=("c", "d", "e"), aggregators=("a", "b", "x"), t=2) -> Computation:
    return Computation(
        query="q", proposer="p", aggregators=list(aggregators), targets=list(targets),
        deadline=5, sharing="shamir", threshold=t,
    )  # fmt: skip


def shamir_reports(c: Computation, values: dict[str, int], reach: dict[str, set[str]]):
    aggs = {a: AggregatorRound(c) for a in c.aggregators}
    for target, value in values.items():
        for agg, share in zip(c.aggregators, make_shares(c, value), strict=True):
            if target in reach.get(agg, set()):
                aggs[agg].add_share(target, share)
    return aggs


def test_shamir_any_two_of_three_give_the_exact_total_and_finish_early_with_all():
    c = shamir_comp()
    everyone = {"c", "d", "e"}
    aggs = shamir_reports(c, {"c": 10, "d": 20, "e": 2**32 - 1}, dict.fromkeys("abx", everyone))
    for pair in (("a", "b"), ("a", "x"), ("b", "x")):
        prop = ProposerRound(c)
        for name in pair:
            prop.add_report(name, *aggs[name].sum_over())
        assert prop.next_step() is None  # may finish early only once everyone reported
        result = prop.finish()  # at the deadline
        assert (result.status, result.result) == ("complete", 30 + 2**32 - 1)
    prop = ProposerRound(c)
    for name in "abx":
        prop.add_report(name, *aggs[name].sum_over())
    assert prop.next_step() == ("final", [])
    assert prop.finish().result == 30 + 2**32 - 1


def test_shamir_below_threshold_fails_and_a_lying_aggregator_is_caught():
    c = shamir_comp()
    aggs = shamir_reports(c, {"c": 1, "d": 2}, {key: {"c", "d"} for key in "abx"})
    prop = ProposerRound(c)
    prop.add_report("a", *aggs["a"].sum_over())
    result = prop.finish()
    assert (result.status, result.result) == ("failed", None)
    assert "threshold 2" in (result.reason or "")

    prop = ProposerRound(c)
    for name in "ab":
        prop.add_report(name, *aggs[name].sum_over())
    total, names = aggs["x"].sum_over()
    prop.add_report("x", (total + 1) % PRIME, names)  # off by one: never a wrong total
    result = prop.finish()
    assert (result.status, result.result) == ("failed", None)
    assert "inconsistent" in (result.reason or "")


def test_shamir_resums_as_soon_as_two_reports_disagree():
    c = shamir_comp()
    aggs = shamir_reports(
        c, {"c": 5, "d": 6, "e": 7}, {"a": {"c", "d", "e"}, "b": {"c", "d"}, "x": set()}
    )
    prop = ProposerRound(c)
    prop.add_report("a", *aggs["a"].sum_over())
    prop.add_report("b", *aggs["b"].sum_over())
    assert prop.next_step() == ("resum", ["a"])  # x may never come: do not wait for it
    prop.add_report("a", *aggs["a"].sum_over(sorted(prop.common_contributors())))
    result = prop.finish()
    assert (result.status, result.result, result.missing) == ("partial", 11, ["e"])


def test_round_state_survives_a_restart():
    c = shamir_comp()
    rnd = AggregatorRound(c)
    rnd.add_share("c", 5)
    rnd.decline("d", "handler error")
    back = AggregatorRound.restore(c, json.loads(json.dumps(rnd.state())))
    assert (back.shares, back.declined, back.reported) == ({"c": 5}, {"d": "handler error"}, False)
    prop = ProposerRound(c)
    prop.add_report("a", 9, ["c"])
    prop.refusals["b"] = "too few"
    again = ProposerRound.restore(c, json.loads(json.dumps(prop.state())))
    assert again.reports == prop.reports and again.refusals == prop.refusals


def test_a_threshold_must_fit_the_aggregators():
    with pytest.raises(ValueError, match="threshold"):
        shamir_comp(t=4)
    with pytest.raises(ValueError, match="'shamir' only"):
        Computation(query="q", proposer="p", aggregators=["a"], targets=["c"], threshold=1)


def test_the_verified_spec_cache_forgets_rounds_long_over_and_keeps_live_ones():
    import time
    from types import SimpleNamespace

    from beehive.flower import node

    now = time.time()
    old = {c.comp_id: c for c in (Computation(query="q", proposer="p", aggregators=["a"],
                                              targets=["t"], deadline=1, timestamp=now - 3600)
                                  for _ in range(node.SPEC_CACHE_PRUNE_AT))}  # fmt: skip
    live = Computation(query="q", proposer="p", aggregators=["a"], targets=["t"], deadline=30)
    fake = SimpleNamespace(specs={**old, live.comp_id: live})
    node.Node._forget_old_specs(fake)  # type: ignore[arg-type]
    assert fake.specs == {live.comp_id: live}


# ── the privacy rules a participant enforces ─────────────────────────────────


def test_a_resum_is_allowed_once_and_only_over_the_agreed_common_set():
    rnd = AggregatorRound(comp())
    for target, share in (("c", 1), ("d", 2), ("e", 3)):
        rnd.add_share(target, share)
    rnd.reported, rnd.reported_set = True, ["c", "d", "e"]
    b_lacked_e = {"b": frozenset({"c", "d"})}
    assert rnd.resum_refusal(["c", "d"], b_lacked_e, "a") is None
    refusals = {
        "repeats": (["c", "c"], b_lacked_e),
        "a subset no one reported": (["c", "d"], {"b": frozenset({"c", "d", "e"})}),
        "no evidence": (["c", "d"], {}),
        "own report as evidence": (["c", "d"], {"a": frozenset({"c", "d"})}),
        "below the floor": (["c"], {"b": frozenset({"c"})}),
    }
    for what, (names, others) in refusals.items():
        assert rnd.resum_refusal(names, others, "a") is not None, what
    rnd.resummed = True
    assert "once per round" in (rnd.resum_refusal(["c", "d"], b_lacked_e, "a") or "")
    assert "before" in (AggregatorRound(comp()).resum_refusal(["c", "d"], b_lacked_e, "a") or "")


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"min_contributors": 1}, "min_contributors 1"),
        ({"aggregators": ["a"]}, "at least 2"),
        ({"sharing": "shamir", "threshold": 1}, "threshold 1"),
    ],
)
def test_the_privacy_floor_refuses_weaker_rounds(fields, why):
    from beehive.core.models import PrivacyFloor

    base = {"query": "q", "proposer": "a", "aggregators": ["a", "b"], "targets": ["c", "d"]}
    weaker = Computation(**{**base, **fields})
    assert why in (PrivacyFloor().refuses(weaker) or "")
    assert PrivacyFloor().refuses(Computation(**base)) is None
    stricter = PrivacyFloor(min_contributors=3)
    assert "floor of 3" in (stricter.refuses(Computation(**base)) or "")

"""Differential privacy policies and budgets, unit: the topology's `dp:` (and a
node's stricter one), what a target refuses, and the budget each target keeps
in its own SQLite store (real files; a second connection and a reopened store
play the CLI and a restarted node)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from beehive.core.models import Computation, DpPolicy, DpRound
from beehive.flower.store import DP_UNITS, Store
from beehive.flower.target import noisy_answer
from beehive.topology import TopologyError, load_topology

HOUR = 3600.0
POLICY = DpPolicy(epsilon=1.0, budget=3.0, window=24 * HOUR, range=(0, 10))


def spend(store: Store, comp_id: str, proposer: str = "alice", at: float = 1000.0,
          epsilon: float = 1.0, policy: DpPolicy = POLICY) -> bool:  # fmt: skip
    return store.spend_dp(comp_id, proposer, epsilon, policy.budget, policy.window, now=at)


# ── spending ────────────────────────────────────────────────────────────────


def test_rounds_spend_until_the_budget_and_the_next_is_declined(tmp_path: Path) -> None:
    store = Store(tmp_path / "local.db")
    assert [spend(store, f"r{i}", at=1000.0 + i) for i in range(4)] == [True, True, True, False]
    assert store.dp_spent("alice", POLICY.window, now=1010.0) == 3 * DP_UNITS
    store.close()


def test_a_round_is_paid_once_however_often_it_comes(tmp_path: Path) -> None:
    """A second task for the same round (failover) or a restart pays nothing more."""
    store = Store(tmp_path / "local.db")
    assert spend(store, "r1") and spend(store, "r1") and spend(store, "r1")
    assert store.dp_spent("alice", POLICY.window, now=1001.0) == DP_UNITS
    store.close()


def test_fractions_of_epsilon_add_up_exactly_to_the_budget(tmp_path: Path) -> None:
    """0.1 + 0.1 + 0.1 > 0.3 in floats: the budget is kept in integer units."""
    policy = DpPolicy(epsilon=0.1, budget=0.3, window=HOUR, range=(0, 1))
    store = Store(tmp_path / "local.db")
    paid = [spend(store, f"r{i}", epsilon=0.1, policy=policy) for i in range(4)]
    assert paid == [True, True, True, False]
    store.close()


def test_the_window_slides_old_spending_stops_counting(tmp_path: Path) -> None:
    store = Store(tmp_path / "local.db")
    for i in range(3):
        assert spend(store, f"day1-{i}", at=1000.0)
    assert not spend(store, "same-day", at=1000.0 + 23 * HOUR)
    assert spend(store, "next-day", at=1000.0 + 24 * HOUR + 1)
    store.close()


def test_each_proposer_has_a_budget_of_its_own(tmp_path: Path) -> None:
    store = Store(tmp_path / "local.db")
    for i in range(3):
        assert spend(store, f"a{i}", proposer="alice")
    assert not spend(store, "a3", proposer="alice")
    assert spend(store, "b0", proposer="bob")
    assert store.dp_spenders(POLICY.window, now=1001.0) == {"alice": 3 * DP_UNITS, "bob": DP_UNITS}
    store.close()


def test_spending_survives_a_restart(tmp_path: Path) -> None:
    """In the node's loop the spend rides in the open transaction; the flush that
    precedes any share commits it, and a reopened store still counts it."""

    async def node_life() -> None:
        store = Store(tmp_path / "local.db")
        assert spend(store, "r1") and spend(store, "r2")
        store.flush()  # what a target does before its first share leaves
        store.close()

    asyncio.run(node_life())
    with sqlite3.connect(tmp_path / "local.db") as db:  # the CLI's view of the file
        assert db.execute("SELECT COUNT(*) FROM dp_spent").fetchone() == (2,)
    restarted = Store(tmp_path / "local.db")
    assert spend(restarted, "r3")
    assert not spend(restarted, "r4")
    restarted.close()


# ── what a target refuses, and what leaves it ───────────────────────────────


def comp(dp: DpRound | None, m: int = 2) -> Computation:
    return Computation(
        query="q", proposer="alice", aggregators=["alice", "bob"], targets=["carol", "dave"],
        min_contributors=m, dp=dp,
    )  # fmt: skip


def test_a_target_refuses_no_dp_a_larger_epsilon_or_a_disjoint_range() -> None:
    assert POLICY.refuses(None) is not None
    assert "epsilon 2.0 is above" in str(POLICY.refuses(DpRound(epsilon=2.0, range=(0, 10))))
    assert "does not overlap" in str(POLICY.refuses(DpRound(epsilon=1.0, range=(20, 30))))
    assert POLICY.refuses(DpRound(epsilon=0.5, range=(0, 10))) is None


def test_answers_are_clipped_into_the_range_before_noise() -> None:
    """Large answers land near the top of the range, never near themselves: with
    epsilon 40 over width 10 the noise is 0 with probability > 0.96."""
    sharp = DpRound(epsilon=40.0, range=(0, 10))
    policy = DpPolicy(epsilon=40.0, budget=40.0, window=HOUR, range=(0, 10))
    answers = [noisy_answer(comp(sharp), 31337, policy) for _ in range(200)]
    assert max(answers) < 100 and sum(a == 10 for a in answers) > 150
    # a stricter participant's narrower range clips further
    narrow = DpPolicy(epsilon=40.0, budget=40.0, window=HOUR, range=(0, 5))
    assert sum(noisy_answer(comp(sharp), 31337, narrow) == 5 for _ in range(200)) > 150
    assert sum(noisy_answer(comp(sharp), -50, policy) == 0 for _ in range(200)) > 150


# ── the topology ────────────────────────────────────────────────────────────

TOPOLOGY = """\
name: dp
defaults:
  min_contributors: 2
  dp:
    epsilon: 1.0
    budget: 3.0
    window: 24h
    range: [0, 10]
handlers:
  h: {{file: h.py}}
nodes:
  alice: {{role: heavy, handler: h}}
  bob:   {{role: heavy, handler: h}}
  eve:   {{role: light, handler: h{eve}}}
"""


def topology(tmp_path: Path, eve: str = "", text: str = TOPOLOGY) -> Path:
    (tmp_path / "h.py").write_text("def handle(q):\n    return 1\n")
    path = tmp_path / "hive.yaml"
    path.write_text(text.format(eve=eve))
    return path


def test_defaults_dp_is_every_node_s_policy(tmp_path: Path) -> None:
    topo = load_topology(topology(tmp_path), env={})
    assert topo.dp_policy("alice") == POLICY
    assert topo.privacy_floor("bob").dp == POLICY


def test_a_node_may_be_stricter_field_by_field(tmp_path: Path) -> None:
    eve = ", dp: {epsilon: 0.5, budget: 2, window: 48h, range: [0, 5]}"
    own = load_topology(topology(tmp_path, eve), env={}).dp_policy("eve")
    assert own == DpPolicy(epsilon=0.5, budget=2.0, window=48 * HOUR, range=(0, 5))


@pytest.mark.parametrize(
    ("eve", "field", "says"),
    [
        (", dp: {epsilon: 2}", "epsilon", "above the topology's 1.0"),
        (", dp: {budget: 9}", "budget", "above the topology's 3.0"),
        (", dp: {window: 1h}", "window", "shorter than the topology's"),
        (", dp: {range: [0, 50]}", "range", "not inside the topology's [0, 10]"),
        (", dp: {range: [-5, 5]}", "range", "not inside"),
        (", dp: {epsilon: 0.5, budget: 0.25}", "", "below epsilon"),
    ],
)
def test_a_looser_node_policy_is_refused_at_its_line(
    tmp_path: Path, eve: str, field: str, says: str
) -> None:
    with pytest.raises(TopologyError) as info:
        load_topology(topology(tmp_path, eve), env={})
    (problem,) = info.value.problems
    assert problem.line == 14
    assert problem.field == "nodes.eve.dp" + (f".{field}" if field else "")
    assert says in problem.message


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("range: [0, 10]", "range: [10, 0]"), "first bound must be below"),
        (("range: [0, 10]", "range: [0, 1000000]"), "narrow the range or raise epsilon"),
        (("budget: 3.0", "budget: 0.5"), "below epsilon"),
        (("epsilon: 1.0", "epsilon: 0"), "greater than 0"),
        (("window: 24h", "window: soon"), "not a duration"),
        (("range: [0, 10]", "range: [0, 1.5]"), "valid integer"),
    ],
)
def test_a_bad_hive_policy_names_the_field(
    tmp_path: Path, change: tuple[str, str], says: str
) -> None:
    with pytest.raises(TopologyError) as info:
        load_topology(topology(tmp_path, text=TOPOLOGY.replace(*change)), env={})
    assert any(
        p.field is not None and p.field.startswith("defaults.dp") and says in p.message
        for p in info.value.problems
    ), info.value.problems


def test_a_node_dp_without_the_hive_s_is_refused(tmp_path: Path) -> None:
    text = TOPOLOGY.replace("  dp:\n    epsilon: 1.0\n    budget: 3.0\n    window: 24h\n"
                            "    range: [0, 10]\n", "")  # fmt: skip
    with pytest.raises(TopologyError) as info:
        load_topology(topology(tmp_path, ", dp: {epsilon: 0.5}", text), env={})
    assert "no defaults.dp" in str(info.value)

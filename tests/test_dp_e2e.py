"""Differential privacy on a real hive: real nodes, NATS, supervisord and crypto.

charlie's handler answers 31337 (its secret), dave 4, eve 7; the topology's
policy clips answers into [0, 10] with epsilon 1 per round and a budget of 6
per proposer per day, with min_contributors 2. The red team's differencing
attack (ask {charlie, dave, eve}, then {dave, eve}, subtract) is run three times
and recovers charlie's answer only up to the noise; then the budget is spent
and every target declines.

Bounds are computed from the noise's exact distribution: each round's total is
checked to lie within a half-width whose failure probability is below 1e-7 (six
rounds: below 1e-6 for the whole test).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from attacker import identity, send_as
from helpers import HiveCLI, make_hive_env, running_hive, wait_until

from beehive.core.models import new_comp_id
from beehive.flower import messages as m
from beehive.security import noise, sign_spec

SECRETS = {"charlie": 31337, "dave": 4, "eve": 7}
LOW, HIGH = 0, 10
EPSILON, BUDGET, M = 1.0, 6.0, 2
CLEAN = {  # the totals the noise hides: answers clipped into [0, 10]
    "charlie,dave,eve": sum(min(max(v, LOW), HIGH) for v in SECRETS.values()),
    "dave,eve": SECRETS["dave"] + SECRETS["eve"],
}
ALPHA = noise.alpha_for(EPSILON, HIGH - LOW)
MISS_RATE = 1e-7  # per round

TOPOLOGY = f"""\
version: 1
name: test
nats:
  host: 127.0.0.1
  port: ${{HIVE_NATS_PORT}}
defaults:
  deadline: 20
  min_contributors: {M}
  dp:
    epsilon: {EPSILON}
    budget: {BUDGET}
    window: 24h
    range: [{LOW}, {HIGH}]
handlers:
  secret: {{file: secret.py}}
nodes:
  alice:   {{role: heavy, handler: secret}}
  bob:     {{role: heavy, handler: secret}}
  charlie: {{role: light, handler: secret}}
  dave:    {{role: light, handler: secret}}
  eve:     {{role: light, handler: secret}}
"""

HANDLER = f"""\
from beehive import Computation, handler

SECRETS = {SECRETS!r}


@handler
def secret(comp: Computation) -> int:
    return SECRETS.get(comp.node, 1)
"""


@pytest.fixture(scope="module")
def hive() -> Iterator[HiveCLI]:
    tmp = Path(tempfile.mkdtemp(prefix="bh-dp-", dir="/tmp"))
    try:
        (tmp / "secret.py").write_text(HANDLER)
        (tmp / "hive.yaml").write_text(TOPOLOGY)
        with running_hive(tmp / "state", make_hive_env(), tmp / "hive.yaml") as running:
            yield running
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def submit(hive: HiveCLI, targets: str) -> dict[str, Any]:
    args = ("--proposer", "alice", "--aggregators", "alice,bob", "--targets", targets)
    proc = hive.run("submit", "how much?", *args, "--json", check=False)
    return json.loads(proc.stdout)


def test_the_differencing_attack_learns_only_noise_and_the_budget_ends_it(
    hive: HiveCLI,
) -> None:
    errors, rounds = [], []
    for _ in range(3):
        both = submit(hive, "charlie,dave,eve")
        rest = submit(hive, "dave,eve")
        for result, targets in ((both, "charlie,dave,eve"), (rest, "dave,eve")):
            assert result["status"] == "complete", result
            contributors = len(targets.split(","))
            assert result["noise"] == {
                "mechanism": noise.MECHANISM,
                "epsilon": EPSILON,
                "stddev": round(noise.stddev(ALPHA, contributors, M), 3),
                "interval95": noise.interval(ALPHA, contributors, M),
            }
            # Within the exact bound of the noise, around the *clipped* total: an
            # unclipped 31337 would be thousands of bounds away.
            bound = noise.interval(ALPHA, contributors, M, coverage=1 - MISS_RATE)
            assert abs(result["result"] - CLEAN[targets]) <= bound, (result, bound)
            rounds.append(result["result"] - CLEAN[targets])
        errors.append(both["result"] - rest["result"] - min(SECRETS["charlie"], HIGH))
    # Noisy: six totals all exactly clean would happen with probability < 1e-7.
    assert any(rounds), f"six rounds without noise: {rounds}"
    print(f"differencing attack, attacker's error on charlie's clipped answer: {errors}")

    # Six rounds of epsilon 1 spent dave's and eve's budget of 6 for alice.
    declined = submit(hive, "dave,eve")
    assert declined["status"] == "failed" and declined["result"] is None
    for target in ("dave", "eve"):
        assert f"{target} (dp budget exhausted)" in declined["reason"], declined
    status = hive.json("status", "--json", check=False)
    for alias, spent in (("charlie", 3.0), ("dave", 6.0), ("eve", 6.0)):
        dp = status["nodes"][alias]["dp"]
        assert (dp["spent"], dp["remaining"]) == ({"alice": spent}, {"alice": BUDGET - spent})
        assert (dp["epsilon"], dp["budget"], dp["range"]) == (EPSILON, BUDGET, [LOW, HIGH])
    human = hive.run("status", check=False).stdout
    assert "dp budget of alice: up to 6 spent" in human and "exhausted on dave, eve" in human


@pytest.mark.parametrize(
    ("what", "dp"),
    [("no dp", None), ("a larger epsilon", {"epsilon": 100.0, "range": [LOW, HIGH]})],
)
def test_a_proposer_cannot_loosen_the_targets_policy(
    hive: HiveCLI, what: str, dp: dict[str, Any] | None
) -> None:
    """alice signs a spec the CLI would never send and tasks the targets herself
    (she is an aggregator of it): each target declines it on its own policy,
    before its handler runs, and spends nothing."""
    before = hive.json("status", "--json", check=False)["nodes"]["dave"]["dp"]["spent"]
    cid = new_comp_id()
    spec = {
        "comp_id": cid,
        "query": "how much?",
        "proposer": "alice",
        "aggregators": ["alice", "bob"],
        "targets": ["charlie", "dave"],
        "deadline": 20.0,
        "timestamp": time.time(),
        "min_contributors": M,
        "dp": dp,
    }
    raw = json.dumps(spec).encode()
    signed = {"spec": raw, "sig": sign_spec(identity(hive, "alice"), raw)}
    send_as(hive, "alice", [(t, m.TASK, cid, m.pack(**signed)) for t in ("charlie", "dave")])
    for target in ("charlie", "dave"):
        log = hive.state_dir / "logs" / f"node-{target}.log"
        wait_until(
            lambda log=log: f"declined {cid}: privacy floor" in log.read_text(errors="replace"),
            10,
            f"{target} to decline the round with {what}",
        )
        assert not (hive.state_dir / "data" / target / "computation" / f"{cid}.pending").exists()
    after = hive.json("status", "--json", check=False)["nodes"]["dave"]["dp"]["spent"]
    assert after == before

"""Attacks by a curious proposer against a real hive: no single answer leaves.

The attacker holds the proposer's own keys and NATS credentials (alice's, read
from the state folder): it can sign any spec and send any message alice may
send. Each test sends what the CLI would refuse straight onto the wire, so it is
the nodes holding the secrets that must refuse it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

import pytest
from attacker import QUERY, identity, rejected, send_as
from helpers import HiveCLI, wait_until

from beehive.core.logs import SafeFormatter
from beehive.core.models import new_comp_id
from beehive.flower import messages as m
from beehive.security import sign_spec

EACH = len(QUERY)


@pytest.fixture(scope="module")
def hive(shared_hive: HiveCLI) -> HiveCLI:
    return shared_hive


# ── shares do not outlive their round ────────────────────────────────────────


def test_aggregators_keep_no_share_once_the_round_is_over(hive: HiveCLI) -> None:
    """First in the module on purpose (see the end)."""
    args = ("--proposer", "alice", "--aggregators", "alice,bob", "--targets", "charlie,eve")
    result = hive.json("submit", QUERY, *args, "--deadline", "2", "--json")
    assert result["status"] == "complete"
    cid = result["comp_id"]

    def shares_gone(alias: str) -> bool:
        db = sqlite3.connect(hive.state_dir / "data" / alias / "local.db")
        try:
            row = db.execute(
                "SELECT open, state FROM rounds WHERE comp_id = ? AND role = 'aggregator'", (cid,)
            ).fetchone()
        finally:
            db.close()
        return row is not None and row[0] == 0 and json.loads(row[1])["shares"] == {}

    for alias in ("alice", "bob"):  # deadline 2 s + grace 2 s + 5 s
        wait_until(lambda a=alias: shares_gone(a), 20, f"{alias} to forget the shares")
    # This is the module's first round, so no other holds shares: none may be left
    # in the files either, in free pages (secure_delete) or old WAL frames.
    for alias in ("alice", "bob"):
        for name in ("local.db", "local.db-wal"):
            path = hive.state_dir / "data" / alias / name
            raw = path.read_bytes() if path.exists() else b""
            assert b'"shares": {"' not in raw, f"a share is still in {alias}'s {name}"


# ── the attacker's tools ─────────────────────────────────────────────────────


def log_of(hive: HiveCLI, alias: str) -> str:
    return (hive.state_dir / "logs" / f"node-{alias}.log").read_text(errors="replace")


def signed_spec(hive: HiveCLI, **fields: Any) -> tuple[str, dict[str, bytes]]:
    """A spec exactly as the attacker writes it (no model to stop it), signed by alice."""
    spec = {
        "comp_id": new_comp_id(),
        "query": QUERY,
        "proposer": "alice",
        "aggregators": ["alice", "bob"],
        "targets": ["charlie", "dave", "eve"],
        "deadline": 20.0,
        "timestamp": time.time(),
        "metadata": {},
        "response_schema": {"type": "integer", "description": "x"},
        "min_contributors": 2,
        "sharing": "additive",
        "threshold": None,
        **fields,
    }
    raw = json.dumps(spec).encode()
    return str(spec["comp_id"]), {"spec": raw, "sig": sign_spec(identity(hive, "alice"), raw)}


def submit(hive: HiveCLI, aggregators: str, targets: str) -> dict[str, Any]:
    args = ("--proposer", "alice", "--aggregators", aggregators, "--targets", targets)
    return hive.json("submit", QUERY, *args, "--deadline", "20", "--json")


def evidence(hive: HiveCLI, comp_id: str) -> dict[str, list[Any]]:
    """The aggregators' signed reports, as the proposer's own store keeps them."""
    db = sqlite3.connect(hive.state_dir / "data" / "alice" / "local.db")
    try:
        (state,) = db.execute(
            "SELECT state FROM rounds WHERE comp_id = ? AND role = 'proposer'", (comp_id,)
        ).fetchone()
    finally:
        db.close()
    reports = json.loads(state)["first_reports"]
    return {a: [r["contributors"], bytes.fromhex(r["attest"])] for a, r in reports.items()}


def refused_resums(hive: HiveCLI, comp_id: str, asks: list[list[str]]) -> None:
    """Send bob each re-sum in `asks` (with the real evidence); each must be refused."""
    before = rejected(hive, "bob").get("resum_refused", 0)
    reports = evidence(hive, comp_id)
    send_as(
        hive,
        "alice",
        [("bob", m.RESUM, comp_id, m.pack(contributors=c, reports=reports)) for c in asks],
    )
    wait_until(
        lambda: rejected(hive, "bob").get("resum_refused", 0) >= before + len(asks),
        10,
        f"bob to refuse {len(asks)} re-sum(s)",
    )
    assert f"re-summed {comp_id}" not in log_of(hive, "bob")


# ── F1: re-sums ──────────────────────────────────────────────────────────────


def test_f1_a_resum_with_repeated_names_is_refused(hive: HiveCLI) -> None:
    result = submit(hive, "alice,bob", "charlie,eve")
    assert (result["status"], result["result"]) == ("complete", 2 * EACH)
    # [charlie, charlie] once summed 2 × charlie's answer: now refused and counted
    refused_resums(hive, result["comp_id"], [["charlie", "charlie"], ["eve", "eve"]])


def test_f1_resums_over_chosen_subsets_are_refused(hive: HiveCLI) -> None:
    result = submit(hive, "alice,bob", "charlie,dave,eve")
    assert result["status"] == "complete"
    # sums over {c,d}, {d,e} and {c,e} would solve for every answer
    pairs = [["charlie", "dave"], ["dave", "eve"], ["charlie", "eve"]]
    refused_resums(hive, result["comp_id"], pairs)


def test_f1_a_resum_without_the_other_aggregators_reports_is_refused(hive: HiveCLI) -> None:
    result = submit(hive, "alice,bob", "charlie,dave,eve")
    before = rejected(hive, "bob").get("resum_refused", 0)
    ask = m.pack(contributors=["charlie", "dave"], reports={})
    forged = m.pack(
        contributors=["charlie", "dave"],
        # alice signs a report she never made as an aggregator of a smaller set...
        reports={"charlie": [["charlie", "dave"], b"\0" * 64]},
    )
    send_as(hive, "alice", [("bob", m.RESUM, result["comp_id"], p) for p in (ask, forged)])
    wait_until(
        lambda: rejected(hive, "bob").get("resum_refused", 0) >= before + 2, 10, "both refused"
    )


# ── F2: the proposer does not set the policy that protects targets ───────────


@pytest.mark.parametrize(
    ("what", "fields"),
    [
        ("min_contributors 1", {"min_contributors": 1}),
        ("one aggregator, the proposer", {"aggregators": ["alice"]}),
        ("shamir threshold 1", {"sharing": "shamir", "threshold": 1}),
    ],
)
def test_f2_weaker_rounds_are_refused_by_targets_and_aggregators(
    hive: HiveCLI, what: str, fields: dict[str, Any]
) -> None:
    cid, signed = signed_spec(hive, **fields)
    # alice is an aggregator of her own spec: she may task targets herself
    messages = [(t, m.TASK, cid, m.pack(**signed)) for t in ("dave", "eve")]
    if "bob" in fields.get("aggregators", ["bob"]):
        messages.append(("bob", m.SPEC, cid, m.pack(**signed)))
    send_as(hive, "alice", messages)
    for target in ("dave", "eve"):
        wait_until(
            lambda t=target: f"declined {cid}: privacy floor" in log_of(hive, t),
            10,
            f"{target} to decline the {what} round",
        )
        assert not (hive.state_dir / "data" / target / "computation" / f"{cid}.pending").exists()
    if "bob" in fields.get("aggregators", ["bob"]):
        wait_until(lambda: f"refused {cid}: privacy floor" in log_of(hive, "bob"), 10, "bob")
    handler_log = (hive.state_dir / "logs" / "handler-query_length.log").read_text()
    assert cid not in handler_log  # no handler ever saw the question


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--min-contributors", "1"], "min_contributors 1"),
        (["--aggregators", "alice"], "at least 2"),
        (["--sharing", "shamir", "--threshold", "1"], "threshold 1"),
    ],
)
def test_f2_the_cli_refuses_weaker_rounds_up_front(
    hive: HiveCLI, args: list[str], why: str
) -> None:
    base = {"--aggregators": "alice,bob"}
    flags = dict(zip(args[::2], args[1::2], strict=True))
    full = {**base, **flags}
    cli = [a for pair in full.items() for a in pair]
    proc = hive.run(
        "submit", QUERY, "--proposer", "alice", "--targets", "dave,eve", *cli, "--json",
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and not proc.stdout
    assert why in proc.stderr and "floor" in proc.stderr and "Traceback" not in proc.stderr


# ── F3/F8/F9: what comes from the wire is checked at the edge ───────────────


def test_f3_a_traversal_comp_id_never_reaches_the_disk(hive: HiveCLI) -> None:
    data = hive.state_dir / "data"
    victim = [data / "important.pending", data / "important.complete"]
    for path in victim:
        path.write_text("precious")
    before = rejected(hive, "eve")
    _, signed = signed_spec(hive, comp_id="../../important", targets=["eve", "dave"])
    spec_ok_cid, _ = signed_spec(hive)
    send_as(
        hive,
        "alice",
        [
            ("eve", m.TASK, "../../important", m.pack(**signed)),  # envelope and spec
            ("eve", m.TASK, spec_ok_cid, m.pack(**signed)),  # the spec alone
        ],
    )
    wait_until(
        lambda: (
            (now := rejected(hive, "eve")).get("malformed", 0) > before.get("malformed", 0)
            and now.get("protocol", 0) > before.get("protocol", 0)
        ),
        10,
        "eve to refuse both",
    )
    assert all(p.read_text() == "precious" for p in victim)
    result = submit(hive, "alice,bob", "dave,eve")  # eve serves the next round at once
    assert (result["status"], result["result"]) == ("complete", 2 * EACH)


def test_f8_a_comp_id_or_reason_with_a_newline_forges_no_log_line(hive: HiveCLI) -> None:
    before = rejected(hive, "eve").get("malformed", 0)
    cid, signed = signed_spec(hive)
    send_as(hive, "alice", [("eve", m.TASK, f"{cid}\nFORGED x", m.pack(**signed))])
    wait_until(lambda: rejected(hive, "eve").get("malformed", 0) > before, 10, "eve to refuse")
    for line in log_of(hive, "eve").splitlines():
        assert not line.startswith("FORGED")
    # and whatever text a message carries, one record stays one line, with no
    # escape sequence for the terminal that shows it
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "declined: %s", ("a\nb\x1b[2J",), None
    )
    line = SafeFormatter("%(message)s").format(record)
    assert line == "declined: a\\nb\\x1b[2J"


@pytest.mark.parametrize("deadline", ["Infinity", "NaN", "1e300", "-5", "0"])
def test_f9_a_spec_with_an_absurd_deadline_is_refused(hive: HiveCLI, deadline: str) -> None:
    cid, signed = signed_spec(hive)
    spec = signed["spec"].replace(b'"deadline": 20.0', f'"deadline": {deadline}'.encode())
    assert spec != signed["spec"]
    signed = {"spec": spec, "sig": sign_spec(identity(hive, "alice"), spec)}
    before = rejected(hive, "bob").get("protocol", 0)
    send_as(hive, "alice", [("bob", m.SPEC, cid, m.pack(**signed))])
    wait_until(lambda: rejected(hive, "bob").get("protocol", 0) > before, 10, "bob to refuse")
    db = sqlite3.connect(hive.state_dir / "data" / "bob" / "local.db")
    try:
        assert db.execute("SELECT 1 FROM rounds WHERE comp_id = ?", (cid,)).fetchone() is None
    finally:
        db.close()


# ── F4: a light node named as an aggregator ──────────────────────────────────


def test_f4_a_light_node_named_aggregator_refuses_and_serves_the_next_round(
    hive: HiveCLI,
) -> None:
    before = rejected(hive, "dave").get("protocol", 0)
    cid, signed = signed_spec(hive, aggregators=["dave", "bob"], targets=["eve", "charlie"])
    send_as(hive, "alice", [("dave", m.SPEC, cid, m.pack(**signed))])
    wait_until(lambda: rejected(hive, "dave").get("protocol", 0) > before, 10, "dave to refuse")
    assert "not a heavy node" in log_of(hive, "dave")
    started = time.monotonic()
    result = submit(hive, "alice,bob", "dave,eve")
    assert (result["status"], result["result"]) == ("complete", 2 * EACH)
    assert time.monotonic() - started < 10  # served at once, not after a jam

"""End to end on real parts: nats-server, supervisord, nodes, a handler daemon.

`hive up topologies/test.yaml` in a temporary state folder, the seed's two
computations, `hive down`, and no process left behind.
"""

from __future__ import annotations

import json

from helpers import HiveCLI, pid_alive, wait_until

SEED_ROUNDS = [
    ("What is your secret value", "alice,bob", "charlie,dave,eve", 75),
    ("Do you have a secret genome?", "alice,bob,charlie", "dave,eve", 56),
]


def test_seed_rounds_give_the_seed_totals_and_down_leaves_nothing(test_hive: HiveCLI):
    status = test_hive.json("status", "--json")
    assert status["healthy"] is True
    assert status["nats_storage"] is None
    assert {p["name"] for p in status["processes"]} == {
        "nats",
        "nats-guard",
        "node-alice",
        "node-bob",
        "node-charlie",
        "node-dave",
        "node-eve",
        "handler-query_length",
    }
    for query, aggregators, targets, expected in SEED_ROUNDS:
        proc = test_hive.run(
            "submit",
            query,
            "--proposer",
            "alice",
            "--aggregators",
            aggregators,
            "--targets",
            targets,
            "--deadline",
            "20",
            "--json",
        )
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1, proc.stdout  # exactly one JSON object
        result = json.loads(lines[0])
        keys = {"comp_id", "status", "result", "contributors", "missing", "reason"}
        keys |= {"missing_reasons"}  # issue 13: target → why it is missing
        keys |= {"noise"}  # issue 17: null without differential privacy
        assert set(result) == keys
        assert result["noise"] is None
        assert (result["status"], result["reason"]) == ("complete", None)
        assert result["result"] == expected
        assert result["contributors"] == sorted(targets.split(","))
        assert result["missing"] == []
        final = test_hive.state_dir / "data" / "alice" / f"final_{result['comp_id']}.json"
        assert json.loads(final.read_text())["result"] == expected
        stored = test_hive.json("results", result["comp_id"], "--json")
        assert stored["result"] == expected

    pids = test_hive.pids()
    assert len(pids) == 9  # supervisord + nats + nats-guard + 5 nodes + 1 handler
    test_hive.run("down")
    wait_until(lambda: not any(pid_alive(p) for p in pids), 10, "every process to exit")
    assert (test_hive.state_dir / "keys" / "alice.key").exists()  # keys survive down


def test_up_twice_changes_nothing(test_hive: HiveCLI):
    before = {p["name"]: p["pid"] for p in test_hive.json("status", "--json")["processes"]}
    proc = test_hive.run("up")
    assert "nothing changed" in proc.stdout
    after = {p["name"]: p["pid"] for p in test_hive.json("status", "--json")["processes"]}
    assert after == before
    # One implicit host: keys, signing and start in one step, all in the state folder.
    assert not (test_hive.topology.parent / "trust").exists()


def test_bad_rounds_are_refused_before_anything_is_sent(test_hive: HiveCLI):
    cases = [
        (["--aggregators", "dave", "--targets", "eve"], "only heavy nodes"),
        (["--aggregators", "alice", "--targets", "mallory"], "unknown node"),
        (["--aggregators", "alice", "--targets", ""], "--targets is empty"),
    ]
    for args, message in cases:
        proc = test_hive.run("submit", "q", "--proposer", "alice", *args, check=False)
        assert proc.returncode != 0
        assert message in proc.stderr
    assert test_hive.json("results", "--json") == []


def test_a_submit_that_times_out_names_its_round_and_a_retry_runs_it_once(test_hive: HiveCLI):
    """The CLI picks the comp_id before it sends anything: a submit the proposer did
    not confirm in time prints it, and sending it again (--comp-id) starts no second
    round."""
    import os
    import signal

    status = test_hive.json("status", "--json")
    alice = next(p["pid"] for p in status["processes"] if p["name"] == "node-alice")
    args = ("--proposer", "alice", "--aggregators", "alice,bob", "--targets", "dave,eve")
    os.kill(alice, signal.SIGSTOP)  # frozen: its socket accepts, nothing answers
    try:
        proc = test_hive.run("submit", "What is your secret value", *args, check=False)
    finally:
        os.kill(alice, signal.SIGCONT)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    cid = proc.stderr.split("did not confirm round ", 1)[1].split()[0]
    assert len(cid) == 32 and f"--comp-id {cid}" in proc.stderr
    # the frozen node took the request when it woke: the round ran, once
    again = test_hive.json("submit", "What is your secret value", *args, "--comp-id", cid, "--json")
    assert (again["comp_id"], again["status"], again["result"]) == (cid, "complete", 50)
    runs = [r for r in test_hive.json("results", "--json") if r["comp_id"] == cid]
    assert len(runs) == 1
    handler_log = (test_hive.state_dir / "logs" / "handler-query_length.log").read_text()
    answered = [
        line for line in handler_log.splitlines() if f"comp {cid} (" in line and " ok " in line
    ]
    assert len(answered) == 2  # dave and eve answered it once each

    bad = test_hive.run("submit", "q", *args, "--comp-id", "../x", check=False)
    assert bad.returncode == 1 and "comp_id" in bad.stderr

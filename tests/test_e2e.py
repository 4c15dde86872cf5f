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
    assert {p["name"] for p in status["processes"]} == {
        "nats",
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
        assert set(result) == {"comp_id", "status", "result", "contributors", "missing"}
        assert result["status"] == "complete"
        assert result["result"] == expected
        assert result["contributors"] == sorted(targets.split(","))
        assert result["missing"] == []
        final = test_hive.state_dir / "data" / "alice" / f"final_{result['comp_id']}.json"
        assert json.loads(final.read_text())["result"] == expected
        stored = test_hive.json("results", result["comp_id"], "--json")
        assert stored["result"] == expected

    pids = test_hive.pids()
    assert len(pids) == 8  # supervisord + nats + 5 nodes + 1 handler
    test_hive.run("down")
    wait_until(lambda: not any(pid_alive(p) for p in pids), 10, "every process to exit")
    assert (test_hive.state_dir / "keys" / "alice.key").exists()  # keys survive down


def test_up_twice_changes_nothing(test_hive: HiveCLI):
    before = {p["name"]: p["pid"] for p in test_hive.json("status", "--json")["processes"]}
    proc = test_hive.run("up")
    assert "nothing changed" in proc.stdout
    after = {p["name"]: p["pid"] for p in test_hive.json("status", "--json")["processes"]}
    assert after == before


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

"""A 200-node packed hive, for real: `hive up`, an exact round over every node,
a packed process SIGKILLed mid-round, `hive down` with nothing left.

Real nats-server, supervisord, keys and shares; 200 nodes in 4 processes
(`runtime.nodes_per_process: 50`), named by two replica sets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REPO, HiveCLI, make_hive_env, running_hive, wait_until

NODES, PER_PROCESS, HEAVY = 200, 50, 3
QUERY = "hello"  # query_length answers 5


@pytest.fixture
def topology(tmp_path: Path) -> Path:
    path = tmp_path / "hive.yaml"
    path.write_text(
        textwrap.dedent(f"""\
            version: 1
            name: scale
            nats:
              host: 127.0.0.1
              port: ${{HIVE_NATS_PORT}}
            runtime: {{nodes_per_process: {PER_PROCESS}}}
            handlers:
              query_length: {{file: {REPO / "handlers" / "query_length.py"}, timeout: 10}}
            nodes:
              agg: {{role: heavy, handler: query_length, replicas: {HEAVY}}}
              bee: {{role: light, handler: query_length, replicas: {NODES - HEAVY}}}
            """)
    )
    return path


def submit(hive: HiveCLI, *extra: str) -> subprocess.Popen[str]:
    """`hive submit --json` over every node, named by its replica sets."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "beehive.cli.main", "submit", QUERY,
            "-f", str(hive.topology), "--state-dir", str(hive.state_dir),
            "--proposer", "agg-1", "--aggregators", "agg", "--targets", "agg,bee",
            "--json", *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=hive.env,
    )  # fmt: skip


def result_of(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=90)
    assert out, err
    return json.loads(out)


def test_a_packed_hive_of_200_answers_exactly_and_survives_a_killed_process(
    tmp_path: Path, topology: Path
) -> None:
    with running_hive(tmp_path / "state", make_hive_env(), topology) as hive:
        status = hive.json("status", "--json")
        assert status["healthy"], status
        packs = sorted(p["name"] for p in status["processes"] if p["name"].startswith("pack-"))
        assert packs == ["pack-1", "pack-2", "pack-3", "pack-4"]
        hosted: dict[str, list[str]] = {}
        for alias, health in status["nodes"].items():
            hosted.setdefault(health["process"], []).append(alias)
        assert len(status["nodes"]) == NODES and {len(a) for a in hosted.values()} == {50}

        # Readable at scale: a row per pack, a line per replica set, counts.
        shown = hive.run("status").stdout
        assert "replica set bee: 197/197 nodes healthy" in shown, shown
        assert "50/50 nodes healthy" in shown and "bee-150" not in shown, shown
        # A node's log is its share of its pack's log.
        lines = hive.run("logs", "bee-7", "-n", "5").stdout.splitlines()
        assert lines and all(" node=bee-7 " in line for line in lines), lines

        every = sorted(status["nodes"])
        first = result_of(submit(hive))
        assert (first["status"], first["result"]) == ("complete", len(QUERY) * NODES), first
        assert sorted(first["contributors"]) == every

        # pack-4 hosts no aggregator (the sorted aliases are dealt in turn, so
        # agg-1..3 are in pack-1..3): kill it while its nodes are answering.
        victim = hosted["pack-4"]
        pid = next(p["pid"] for p in status["processes"] if p["name"] == "pack-4")
        folders = [hive.state_dir / "data" / alias / "computation" for alias in victim]
        before = {f: set(os.listdir(f)) for f in folders}
        second = submit(hive, "--deadline", "20")
        wait_until(
            lambda: any(set(os.listdir(f)) - before[f] for f in folders),
            30,
            "a node of pack-4 to get its task",
            interval=0.005,
        )
        os.kill(pid, signal.SIGKILL)
        result = result_of(second)
        contributors, missing = set(result["contributors"]), set(result["missing"])
        assert result["result"] == len(QUERY) * len(contributors), result
        assert contributors | missing == set(every) and not contributors & missing
        assert missing <= set(victim), missing - set(victim)
        assert result["status"] == ("complete" if not missing else "partial")

        # supervisord brought the process back, with its 50 nodes.
        def back() -> bool:
            now = hive.json("status", "--json", check=False)
            return bool(now["healthy"]) and any(
                p["name"] == "pack-4" and p["pid"] not in (None, pid) for p in now["processes"]
            )

        wait_until(back, 60, "pack-4 to be back and healthy")

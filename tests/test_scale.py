"""A 200-node packed hive, for real: `hive up`, an exact round over every node,
a packed process SIGKILLed mid-round, `hive down` with nothing left.

Real nats-server, supervisord, keys and shares; 200 nodes in 4 processes
(`runtime.nodes_per_process: 50`), named by two replica sets. And
`scripts/scale.py` itself, on a 3-node hive in the folder it is given.
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


def scale_py(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "scale.py"), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=make_hive_env(),
    )


def test_scale_py_measures_a_hive_in_the_folder_it_is_given(short_tmp: Path) -> None:
    """`scripts/scale.py --dir`: the hive lives (and is measured) on that disk,
    every round is exact, and nothing of it is left, running or on disk."""
    done = scale_py("3", "--rounds", "2", "--idle", "0.5", "--dir", str(short_tmp), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["nodes"], len(report["round_s"]), report["left_running"]) == (3, 2, [])
    assert report["rss_total_mib"] > 0 and report["round_p50_s"] > 0, report
    folder = Path(report["folder"])
    assert folder.parent == short_tmp and folder.name.startswith("bh-scale-"), folder
    assert list(short_tmp.iterdir()) == []  # and removed after


def test_scale_py_refuses_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    done = scale_py("3", "--dir", str(tmp_path / "nope"))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"--dir: {tmp_path / 'nope'}: no such folder" in done.stderr

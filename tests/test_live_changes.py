"""A topology edited while it runs: `hive plan` names what `hive up` will do, and
`hive up` does exactly that — on real nats-server, supervisord, nodes and daemons.

Also: a handler that takes its own process down, and a handler with its own
requirements in its own virtual environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, HiveCLI, pid_alive, wait_until

from beehive.flower.control import call

SLOW = """\
import time
from beehive import Computation, handler

@handler
def slow(comp: Computation) -> int:
    time.sleep(3)  # keeps a round in flight while `hive up` applies an edit
    return 7
"""

CRASHER = """\
import os
from beehive import Computation, handler

@handler
def crasher(comp: Computation) -> int:
    if "crash" in comp.query:
        os._exit(1)  # takes the whole daemon down, mid-computation
    return 1
"""

HUMANIZE = """\
import humanize
from beehive import Computation, handler

@handler
def humane(comp: Computation) -> int:
    return len(humanize.intcomma(1234567))  # "1,234,567" -> 9
"""


def write_topology(folder: Path, handlers: dict[str, dict], nodes: dict[str, dict]) -> Path:
    doc = {
        "version": 1,
        "name": "live",
        "nats": {"host": "127.0.0.1", "port": "${HIVE_NATS_PORT}"},
        "handlers": handlers,
        "nodes": nodes,
    }
    path = folder / "hive.yaml"
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return path


@pytest.fixture
def live_hive(short_tmp: Path, hive_env: dict[str, str]):
    hives: list[HiveCLI] = []

    def make(topology: Path) -> HiveCLI:
        hive = HiveCLI(topology, short_tmp / "state", hive_env)
        hives.append(hive)
        return hive

    yield make
    for hive in hives[:1]:
        pids = hive.pids() if (hive.state_dir / "run" / "supervisord.sock").exists() else []
        hive.run("down", check=False)
        wait_until(lambda: not any(pid_alive(p) for p in pids), 15, f"{pids} to exit")  # noqa: B023


def pids_of(hive: HiveCLI) -> dict[str, int]:
    return {p["name"]: p["pid"] for p in hive.json("status", "--json", check=False)["processes"]}


def test_plan_names_exactly_what_up_restarts_and_a_round_in_flight_completes(
    short_tmp: Path, live_hive
):
    (short_tmp / "slow.py").write_text(SLOW)
    fast = {"file": str(REPO / "handlers" / "answer_42.py")}
    slow = {"file": str(short_tmp / "slow.py")}
    before_file = write_topology(
        short_tmp,
        {"slow": slow},
        {
            "alice": {"role": "heavy", "handler": "slow"},
            "bob": {"role": "heavy", "handler": "slow"},
            "hank": {"role": "heavy"},  # a second aggregator: no round has fewer
            "carol": {"role": "light", "handler": "slow"},
            "erin": {"role": "light", "handler": "slow"},
        },
    )
    hive = live_hive(before_file)
    hive.run("up", "--timeout", "60")
    before = pids_of(hive)

    # The edit: add dave, rebind carol to another handler, remove bob.
    write_topology(
        short_tmp,
        {"slow": slow, "fast": fast},
        {
            "alice": {"role": "heavy", "handler": "slow"},
            "hank": {"role": "heavy"},
            "carol": {"role": "light", "handler": "fast"},
            "dave": {"role": "light", "handler": "fast"},
            "erin": {"role": "light", "handler": "slow"},
        },
    )
    plan = hive.json("plan", "--json")
    assert plan["start"] == ["handler-fast", "node-dave"]
    assert plan["restart"] == {}
    assert plan["remove"] == ["node-bob"]
    assert plan["keys_to_generate"] == ["dave"]
    assert "re-attaches (-bob -carol)" in plan["live"]["handler-slow"]
    assert set(plan["live"]) >= {"nats", "node-alice", "node-carol", "node-erin"}
    assert not (hive.state_dir / "keys" / "dave.key").exists()  # plan wrote nothing
    human = hive.run("plan").stdout
    assert "node-dave" in human and "node-bob" in human and "to be generated: dave" in human

    # A round in flight across the change (the slow handler answers after 3 s).
    comp_id = hive.run(
        "submit", "q", "--proposer", "alice", "--aggregators", "alice,hank", "--targets",
        "alice,erin", "--deadline", "30",
    ).stdout.strip()  # fmt: skip
    hive.run("up", "--timeout", "60")

    after = pids_of(hive)
    started = {n for n in after if n not in before}
    assert started == {"handler-fast", "node-dave"}
    assert set(before) - set(after) == {"node-bob"}
    for name in set(before) & set(after):
        assert after[name] == before[name], f"{name} was restarted"
    reply = call(
        hive.state_dir / "run" / "alice.sock", {"op": "wait", "comp_id": comp_id}, timeout=40
    )
    assert reply["result"]["status"] == "complete"
    assert reply["result"]["result"] == 14

    # The new node and the rebound one work with peers that were never restarted.
    result = hive.json(
        "submit", "q", "--proposer", "alice", "--aggregators", "alice,hank",
        "--targets", "carol,dave", "--deadline", "20", "--json",
    )  # fmt: skip
    assert (result["status"], result["result"]) == ("complete", 84)
    assert hive.json("plan", "--json")["changes"] is False

    assert (hive.state_dir / "keys" / "bob.key").exists()  # kept without --purge
    hive.run("up", "--purge")
    assert not (hive.state_dir / "keys" / "bob.key").exists()


def test_handler_that_kills_its_process_costs_only_its_answer(short_tmp: Path, live_hive):
    (short_tmp / "crasher.py").write_text(CRASHER)
    topology = write_topology(
        short_tmp,
        {
            "crasher": {"file": str(short_tmp / "crasher.py")},
            "fixed": {"file": str(REPO / "handlers" / "answer_42.py")},
        },
        {
            "alice": {"role": "heavy", "handler": "fixed"},
            "hank": {"role": "heavy"},  # a second aggregator: no round has fewer
            "bob": {"role": "light", "handler": "crasher"},
            "carol": {"role": "light", "handler": "fixed"},
        },
    )
    hive = live_hive(topology)
    hive.run("up", "--timeout", "60")
    before = pids_of(hive)

    crashed = hive.run(
        "submit", "please crash", "--proposer", "alice", "--aggregators", "alice,hank",
        "--targets", "alice,bob,carol", "--deadline", "8", "--json", check=False,
    )  # fmt: skip
    result = json.loads(crashed.stdout)
    assert result["status"] == "partial"
    assert result["result"] == 84
    assert (result["contributors"], result["missing"]) == (["alice", "carol"], ["bob"])
    assert "bob" in result["reason"]  # `submit --json` says why it is partial

    def handler_back() -> bool:
        now = pids_of(hive)
        status = hive.json("status", "--json", check=False)
        states = {p["name"]: p["state"] for p in status["processes"]}
        return now["handler-crasher"] != before["handler-crasher"] and (
            states["handler-crasher"] == "RUNNING"
        )

    wait_until(handler_back, 10, "supervisord to bring the crashed handler back")
    after = pids_of(hive)
    for name in ("nats", "node-alice", "node-bob", "node-carol", "handler-fixed"):
        assert after[name] == before[name], f"{name} was disturbed by the crash"
    fine = hive.json(
        "submit", "fine", "--proposer", "alice", "--aggregators", "alice,hank", "--targets",
        "alice,bob,carol", "--deadline", "10", "--json",
    )  # fmt: skip
    assert (fine["status"], fine["result"], fine["reason"]) == ("complete", 85, None)


@pytest.fixture(params=["pip", "uv"])
def installer(request: pytest.FixtureRequest, hive_env: dict[str, str]) -> str:
    """Both installers a handler environment can be built with (uv comes with the
    test extras; without it, `auto` means pip)."""
    hive_env["BEEHIVE_HANDLER_INSTALLER"] = request.param
    return request.param


def test_handler_requirements_get_their_own_environment(short_tmp: Path, live_hive, installer: str):
    probe = subprocess.run([sys.executable, "-c", "import humanize"], capture_output=True)
    assert probe.returncode != 0, "humanize must not be installed in the hive's environment"
    (short_tmp / "humane.py").write_text(HUMANIZE)
    (short_tmp / "reqs.txt").write_text("humanize\n")
    handlers = {"humane": {"file": str(short_tmp / "humane.py"), "requirements": "reqs.txt"}}
    nodes = {
        "alice": {"role": "heavy", "handler": "humane"},
        "hank": {"role": "heavy"},  # a second aggregator: no round has fewer
        "bob": {"role": "light", "handler": "humane"},
    }
    topology = write_topology(short_tmp, handlers, nodes)
    hive = live_hive(topology)
    plan = hive.json("plan", "--json")
    assert list(plan["environments_to_build"].values()) == [["humane"]]
    up = hive.run("up", "--timeout", "60")
    assert "installing -r" in up.stderr  # progress is shown while it builds
    assert f"({installer})" in up.stderr
    result = hive.json(
        "submit", "q", "--proposer", "alice", "--aggregators", "alice,hank", "--targets",
        "alice,bob", "--deadline", "20", "--json",
    )  # fmt: skip
    assert (result["status"], result["result"]) == ("complete", 18)
    assert hive.json("plan", "--json")["changes"] is False  # built once, then cached


def test_failed_install_fails_up_with_the_installer_message_and_starts_nothing(
    short_tmp: Path, live_hive, installer: str
):
    (short_tmp / "humane.py").write_text(HUMANIZE)
    handlers = {
        "humane": {
            "file": str(short_tmp / "humane.py"),
            "requirements": ["beehive-no-such-package-xyz==0.0.1"],
        }
    }
    nodes = {
        "alice": {"role": "heavy", "handler": "humane"},
        "bob": {"role": "light", "handler": "humane"},
    }
    topology = write_topology(short_tmp, handlers, nodes)
    hive = live_hive(topology)
    proc = hive.run("up", "--timeout", "30", check=False)
    assert proc.returncode == 1
    assert "handler humane failed" in proc.stderr
    assert "beehive-no-such-package-xyz" in proc.stderr  # the installer's own words
    assert f"{installer} exited" in proc.stderr
    assert not (hive.state_dir / "run" / "supervisord.pid").exists()
    assert not list((hive.state_dir / "venvs").iterdir())


def test_requirement_lines_are_checked_by_the_loader(short_tmp: Path, hive_env):
    topology = write_topology(
        short_tmp,
        {"h": {"file": str(REPO / "handlers" / "answer_42.py"), "requirements": "missing.txt"}},
        {"alice": {"role": "heavy", "handler": "h"}},
    )
    proc = HiveCLI(topology, short_tmp / "state", hive_env).run("validate", check=False)
    assert proc.returncode == 1
    assert "handlers.h.requirements" in proc.stderr and "missing.txt" in proc.stderr

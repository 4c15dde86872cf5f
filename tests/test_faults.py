"""Fault injection on real processes: every fault, an exact total (or an honest failure).

One hive for the module, shaped like topologies/test.yaml (alice, bob, charlie
heavy; dave, eve light) but with a handler that takes a moment when the query
says "slow", so a kill lands mid-round. Processes are killed with SIGKILL by the
PID supervisord reports, or stopped through supervisord's XML-RPC; never by name.
Each test starts from a hive where every program runs (the autouse fixture).

Node eve runs through tests/fault_node.py: the real node with `HookFaults`, so a
test can make her crash or lose a share between two shares (a `test-hook` file in
her data folder). Production nodes carry no such hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import HiveCLI, hive_down, make_hive_env, pid_alive, running_hive, wait_until

from beehive.core.configs import NodeConfig
from beehive.core.models import new_comp_id
from beehive.flower.control import ControlError, ControlTimeout, call, request
from beehive.orchestrator import apply_plan, state_processes, supervisor
from beehive.orchestrator.prepare import prepare
from beehive.topology import load_topology
from beehive.topology.compiler import (
    PRIORITY_GUARD,
    PRIORITY_HANDLER,
    PRIORITY_NATS,
    PRIORITY_NODE,
    config_hash,
    render_supervisord_conf,
)
from beehive.topology.plan import Artifact, Plan, Program

SLOW_HANDLER = """\
import time
from beehive import Computation, handler

@handler
def slow(comp: Computation) -> int:
    if "slow" in comp.query:
        time.sleep(1.0)  # keeps the round in flight long enough to kill something
    return min(len(comp.query), 100)
"""

NODES = ("alice", "bob", "charlie", "dave", "eve")
SLOW = "slow query"  # 10 characters: each target answers 10
FAST = "fast"  # 4
DEADLINE = 5.0
FAULT_NODE = Path(__file__).resolve().parent / "fault_node.py"
#: The node whose faults a test can trigger (tests/fault_node.py runs it).
FAULTY = "eve"


def topology(folder: Path) -> Path:
    (folder / "slow.py").write_text(SLOW_HANDLER)
    handler = {"file": str(folder / "slow.py"), "timeout": 10}
    doc = {
        "version": 1,
        "name": "faults",
        "nats": {"host": "127.0.0.1", "port": "${HIVE_NATS_PORT}"},
        "defaults": {"deadline": DEADLINE},
        # eve has a handler daemon of her own, so killing it touches no one else
        "handlers": {"slow": handler, "slow_eve": handler},
        "nodes": {
            "alice": {"role": "heavy", "handler": "slow"},
            "bob": {"role": "heavy", "handler": "slow"},
            "charlie": {"role": "heavy", "handler": "slow"},
            "dave": {"role": "light", "handler": "slow"},
            "eve": {"role": "light", "handler": "slow_eve"},
        },
    }
    path = folder / "hive.yaml"
    path.write_text(json.dumps(doc, indent=2))
    return path


def with_fault_node(plan: Plan, name: str, alias: str) -> Plan:
    """`plan` with node `alias` run by tests/fault_node.py instead of `-m beehive.flower.node`.

    Same interpreter, same `--config`. Its config hash is recomputed the way the
    compiler computes it (the command + the config's hashed bytes): it is what
    supervisord.conf hands the program as BEEHIVE_CONFIG_HASH and what `hive plan`
    and `hive up` compare, so it must describe the command that really runs. Then
    supervisord.conf (of topology `name`) is re-rendered by the compiler's own
    renderer with the compiler's priorities.
    """
    layout = plan.layout
    node = plan.program(layout.node_program(alias))
    config = layout.node_config(alias)
    assert node.command[1:] == ("-m", "beehive.flower.node", "--config", str(config))
    command = (node.command[0], str(FAULT_NODE), "--config", str(config))
    hashed = NodeConfig.model_validate_json(plan.artifact(layout.rel(config)).content).hashed_json()
    faulty = dataclasses.replace(node, command=command, config_hash=config_hash(command, hashed))
    priority = {
        "nats": PRIORITY_NATS,
        "guard": PRIORITY_GUARD,
        "handler": PRIORITY_HANDLER,
        "node": PRIORITY_NODE,
    }

    def supervisord_conf(programs: tuple[Program, ...]) -> Artifact:
        priorities = {p.name: priority[layout.program_of(p.name)[0]] for p in programs}
        return render_supervisord_conf(name, plan.state_dir, programs, priorities=priorities)

    compiled = plan.artifact(layout.rel(layout.supervisord_conf))
    assert supervisord_conf(plan.programs) == compiled  # so only eve's command changes
    programs = tuple(faulty if p.name == node.name else p for p in plan.programs)
    artifacts = tuple(supervisord_conf(programs) if a == compiled else a for a in plan.artifacts)
    return dataclasses.replace(plan, programs=programs, artifacts=artifacts)


@pytest.fixture(scope="module")
def hive() -> Iterator[HiveCLI]:
    """The hive, eve run through tests/fault_node.py; `hive down` at the end."""
    tmp = Path(tempfile.mkdtemp(prefix="bh-", dir="/tmp"))
    # Its HIVE_NATS_PORT is resolved into the plan's configs, so supervisord and
    # its programs need nothing from it (apply_plan starts them with os.environ).
    env = make_hive_env()
    cli = HiveCLI(topology(tmp), (tmp / "state").resolve(), env)
    try:
        topo = load_topology(cli.topology, env=env)
        apply_plan(with_fault_node(prepare(topo, cli.state_dir), topo.name, FAULTY), timeout=60)
        yield cli
    finally:
        hive_down(cli)
        if not os.environ.get("BEEHIVE_KEEP_TEST_STATE"):  # keep logs to debug a failure
            shutil.rmtree(tmp, ignore_errors=True)


# ── helpers ──────────────────────────────────────────────────────────────────


def rpc(hive: HiveCLI) -> Any:
    return supervisor.client(hive.state_dir)


def pid_of(hive: HiveCLI, program: str) -> int:
    return int(rpc(hive).supervisor.getProcessInfo(program)["pid"])


def sigkill(hive: HiveCLI, program: str) -> int:
    pid = pid_of(hive, program)
    assert pid > 0, f"{program} is not running"
    os.kill(pid, signal.SIGKILL)
    return pid


def health(hive: HiveCLI, alias: str) -> dict[str, Any] | None:
    try:
        return call(hive.state_dir / "run" / f"{alias}.sock", {"op": "health"}, timeout=1)
    except (ControlError, OSError):
        return None


def node_ready(hive: HiveCLI, alias: str) -> bool:
    h = health(hive, alias)
    return bool(h and h["connected"] and h["subscribed"])


def rejected(hive: HiveCLI, alias: str) -> dict[str, int]:
    h = health(hive, alias)
    assert h is not None
    return dict(h["rejected"])


@pytest.fixture(autouse=True)
def everything_running(hive: HiveCLI) -> None:
    """Every program running and every node connected, whatever the last test did."""
    server = rpc(hive).supervisor
    for info in server.getAllProcessInfo():
        if info["statename"] not in ("RUNNING", "STARTING"):
            server.startProcess(info["name"], True)
    wait_until(lambda: all(node_ready(hive, a) for a in NODES), 30, "every node to be ready")
    for name in ("handler-slow", "handler-slow_eve"):
        ready = hive.state_dir / "run" / f"{name}.ready"
        wait_until(
            lambda r=ready, n=name: (
                r.exists() and json.loads(r.read_text())["pid"] == pid_of(hive, n)
            ),
            20,
            f"{name} to be ready",
        )


def submit(hive: HiveCLI, query: str, aggregators: str, targets: str, **extra: Any) -> str:
    req = {
        "op": "submit",
        "query": query,
        "aggregators": aggregators.split(","),
        "targets": targets.split(","),
        "deadline": DEADLINE,
        **extra,
    }
    proposer = req.pop("proposer", "alice")
    return call(hive.state_dir / "run" / f"{proposer}.sock", req, timeout=10)["comp_id"]


def result(hive: HiveCLI, comp_id: str, proposer: str = "alice") -> dict[str, Any]:
    """Wait for the final result on the proposer's control socket (it may restart)."""
    sock = hive.state_dir / "run" / f"{proposer}.sock"
    end = time.monotonic() + DEADLINE + 20
    while True:
        try:
            reply = call(sock, {"op": "wait", "comp_id": comp_id}, timeout=DEADLINE + 20)
            return reply["result"]
        except ControlError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)  # the proposer is restarting: its socket comes back


def pending(hive: HiveCLI, alias: str, comp_id: str) -> Path:
    return hive.state_dir / "data" / alias / "computation" / f"{comp_id}.pending"


def exact(res: dict[str, Any], status: str, contributors: list[str], each: int) -> None:
    assert (res["status"], res["contributors"]) == (status, contributors), res
    assert res["result"] == each * len(contributors), res


# ── targets ──────────────────────────────────────────────────────────────────


def test_light_target_stopped_mid_round_is_named_missing(hive: HiveCLI) -> None:
    cid = submit(hive, SLOW, "alice,bob", "charlie,dave,eve")
    wait_until(lambda: pending(hive, "eve", cid).exists(), 5, "eve to start answering")
    rpc(hive).supervisor.stopProcess("node-eve", True)  # and kept down past the deadline
    res = result(hive, cid)
    exact(res, "partial", ["charlie", "dave"], 10)
    assert res["missing"] == ["eve"]


def test_light_target_killed_mid_round_recovers_and_contributes_once(hive: HiveCLI) -> None:
    before = {a: rejected(hive, a) for a in ("alice", "bob")}
    cid = submit(hive, SLOW, "alice,bob", "charlie,dave,eve")
    wait_until(lambda: pending(hive, "eve", cid).exists(), 5, "eve to start answering")
    old = sigkill(hive, "node-eve")  # supervisord brings it back; SQLite has its round
    res = result(hive, cid)
    exact(res, "complete", ["charlie", "dave", "eve"], 10)
    assert pid_of(hive, "node-eve") != old
    for a in ("alice", "bob"):  # exactly once: no second, different share anywhere
        assert rejected(hive, a).get("equivocation", 0) == before[a].get("equivocation", 0)


def test_a_share_that_reached_one_aggregator_only_is_left_out(hive: HiveCLI) -> None:
    (hive.state_dir / "data" / "eve" / "test-hook").write_text("drop-after-first-share")
    cid = submit(hive, FAST, "alice,bob", "charlie,dave,eve")
    res = result(hive, cid)
    exact(res, "partial", ["charlie", "dave"], 4)  # what both aggregators hold
    assert res["missing"] == ["eve"]


def test_a_target_crashing_between_its_shares_resends_the_same_ones(hive: HiveCLI) -> None:
    before = {a: rejected(hive, a) for a in ("alice", "bob")}
    old = pid_of(hive, "node-eve")
    (hive.state_dir / "data" / "eve" / "test-hook").write_text("crash-after-first-share")
    cid = submit(hive, FAST, "alice,bob", "charlie,dave,eve")
    res = result(hive, cid)
    exact(res, "complete", ["charlie", "dave", "eve"], 4)
    assert pid_of(hive, "node-eve") != old  # it did crash, and came back
    for a in ("alice", "bob"):  # fresh shares would have been equivocation
        assert rejected(hive, a).get("equivocation", 0) == before[a].get("equivocation", 0)


def test_a_node_down_when_the_computation_is_sent_contributes_when_back(hive: HiveCLI) -> None:
    rpc(hive).supervisor.stopProcess("node-eve", True)
    cid = submit(hive, FAST, "alice,bob", "charlie,dave,eve", deadline=8.0)
    # the tasks have been sent once dave got his (the same aggregators send eve's)
    done = hive.state_dir / "logs" / "node-dave.log"
    wait_until(lambda: f"answered {cid}" in done.read_text(), 5, "dave to answer")
    rpc(hive).supervisor.startProcess("node-eve", True)
    exact(result(hive, cid), "complete", ["charlie", "dave", "eve"], 4)


def test_handler_killed_while_a_computation_is_pending(hive: HiveCLI) -> None:
    cid = submit(hive, SLOW, "alice,bob", "charlie,dave,eve")
    running = pending(hive, "eve", cid).with_suffix(".running")
    wait_until(running.exists, 5, "eve's handler to be running the computation")
    started = time.monotonic()
    old = sigkill(hive, "handler-slow_eve")
    res = result(hive, cid)
    # supervisord restarts the daemon, which finds the .pending (and the .running
    # marker of its dead predecessor) and runs it once more: the round completes,
    # before the deadline. (A handler that kills its process on every attempt is
    # answered as failed after MAX_ATTEMPTS: test_live_changes.py.)
    exact(res, "complete", ["charlie", "dave", "eve"], 10)
    assert time.monotonic() - started < DEADLINE
    assert pid_of(hive, "handler-slow_eve") != old


# ── aggregators (shamir) ─────────────────────────────────────────────────────


def test_shamir_survives_any_one_aggregator_lost(hive: HiveCLI) -> None:
    shamir = {"sharing": "shamir", "threshold": 2}
    # killed before the round (kept down)
    rpc(hive).supervisor.stopProcess("node-charlie", True)
    cid = submit(hive, FAST, "alice,bob,charlie", "dave,eve", **shamir)
    exact(result(hive, cid), "complete", ["dave", "eve"], 4)
    rpc(hive).supervisor.startProcess("node-charlie", True)
    wait_until(lambda: node_ready(hive, "charlie"), 20, "charlie back")

    # killed mid-round (SIGKILL; supervisord restarts it, whatever it then does)
    cid = submit(hive, SLOW, "alice,bob,charlie", "dave,eve", proposer="dave", **shamir)
    wait_until(lambda: pending(hive, "eve", cid).exists(), 5, "eve to start answering")
    sigkill(hive, "node-bob")
    exact(result(hive, cid, "dave"), "complete", ["dave", "eve"], 10)

    # the coordinator (first aggregator) killed right after the spec reached it
    cid = submit(hive, SLOW, "alice,bob,charlie", "dave,eve", proposer="dave", **shamir)
    sigkill(hive, "node-alice")
    exact(result(hive, cid, "dave"), "complete", ["dave", "eve"], 10)


def test_shamir_with_two_of_three_aggregators_lost_fails_and_says_why(hive: HiveCLI) -> None:
    for name in ("node-bob", "node-charlie"):
        rpc(hive).supervisor.stopProcess(name, True)
    started = time.monotonic()
    cid = submit(hive, FAST, "alice,bob,charlie", "dave,eve", sharing="shamir", threshold=2)
    res = result(hive, cid)
    assert (res["status"], res["result"]) == ("failed", None), res
    assert time.monotonic() - started < DEADLINE + 4  # deadline + report grace
    stored = hive.json("results", cid, "--json")
    assert "threshold 2" in stored["reason"]


# ── proposer and server ──────────────────────────────────────────────────────


def test_proposer_killed_after_submitting_still_writes_the_result(hive: HiveCLI) -> None:
    cid = submit(hive, SLOW, "bob,charlie", "charlie,dave,eve")
    sigkill(hive, "node-alice")
    final = hive.state_dir / "data" / "alice" / f"final_{cid}.json"
    wait_until(final.exists, DEADLINE + 15, "the restarted proposer to write the result")
    exact(json.loads(final.read_text()), "complete", ["charlie", "dave", "eve"], 10)
    exact(hive.json("results", cid, "--json"), "complete", ["charlie", "dave", "eve"], 10)


def test_nats_server_killed_mid_round_the_round_completes(hive: HiveCLI) -> None:
    cid = submit(hive, SLOW, "alice,bob", "charlie,dave,eve", deadline=10.0)
    wait_until(lambda: pending(hive, "eve", cid).exists(), 5, "the targets to start answering")
    old = sigkill(hive, "nats")
    res = result(hive, cid)
    exact(res, "complete", ["charlie", "dave", "eve"], 10)
    assert pid_of(hive, "nats") != old


def test_an_aggregator_frozen_past_its_deadline_counts_shares_that_reached_it_in_time(
    hive: HiveCLI,
) -> None:
    """bob holds the round (its deadline timer armed) and is frozen (SIGSTOP)
    before the shares come; thawed after the deadline, its timer fires at once,
    but it reads its inbox first: the shares that reached the stream in time
    count and the round completes."""
    bob = pid_of(hive, "node-bob")
    started = time.time()
    cid = submit(hive, SLOW, "alice,bob", "charlie,dave,eve")
    wait_until(lambda: pending(hive, "eve", cid).exists(), 5, "the targets to start answering")
    os.kill(bob, signal.SIGSTOP)
    try:
        past = started + DEADLINE + 0.3
        wait_until(lambda: time.time() > past, DEADLINE + 5, "bob's deadline to pass")
    finally:
        os.kill(bob, signal.SIGCONT)
    exact(result(hive, cid), "complete", ["charlie", "dave", "eve"], 10)


def test_a_round_below_the_floor_says_who_did_not_answer(hive: HiveCLI) -> None:
    server = rpc(hive).supervisor
    for alias in ("dave", "eve"):
        server.stopProcess(f"node-{alias}", True)
    res = result(hive, submit(hive, FAST, "alice,bob", "charlie,dave,eve"))
    assert res["status"] == "failed", res
    assert "only 1 contributor(s)" in res["reason"], res
    assert "no answer from dave, eve before the deadline" in res["reason"], res


# ── load ─────────────────────────────────────────────────────────────────────


def test_two_hundred_rounds_at_once_all_complete_exactly(hive: HiveCLI) -> None:
    sock = hive.state_dir / "run" / "alice.sock"

    async def one() -> dict[str, Any]:
        req = {
            "op": "submit",
            "query": "What is your secret value",
            "aggregators": ["alice", "bob"],
            "targets": ["charlie", "dave", "eve"],
            "deadline": 60,
        }
        cid = (await request(sock, req, timeout=60))["comp_id"]
        return (await request(sock, {"op": "wait", "comp_id": cid}, timeout=90))["result"]

    async def burst() -> list[dict[str, Any]]:
        return await asyncio.gather(*(one() for _ in range(200)))

    results = asyncio.run(burst())
    assert len({r["comp_id"] for r in results}) == 200
    for res in results:
        exact(res, "complete", ["charlie", "dave", "eve"], 25)


def test_cli_submit_with_shamir_gives_the_exact_total(hive: HiveCLI) -> None:
    res = hive.json(
        "submit", FAST, "--proposer", "alice", "--aggregators", "alice,bob,charlie",
        "--targets", "charlie,dave,eve", "--sharing", "shamir", "--threshold", "2",
        "--deadline", "10", "--json",
    )  # fmt: skip
    exact(res, "complete", ["charlie", "dave", "eve"], 4)


# ── supervision: orphans, runaway handlers, what handlers start ──────────────
# Each test here brings up a hive of its own: they kill supervisord, replace
# handler daemons, and check what is left afterwards.

UNRULY_HANDLER = """\
import os
import subprocess
import sys
from pathlib import Path

from beehive import Computation, handler


@handler
def unruly(comp: Computation) -> int:
    if comp.query == "spin":  # a CPU loop: no timeout can stop this thread
        while True:
            pass
    if comp.query == "hog":  # 150 MiB, really written, then a failure
        ballast = b"x" * (150 * 2**20)
        raise ValueError(f"out of patience after {len(ballast)} bytes")
    if comp.query == "spawn":  # a child in its own session, outliving the call
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
        )
        (Path(os.environ["SPAWN_RECORD"]) / str(child.pid)).touch()
    return len(comp.query)
"""


@pytest.fixture
def unruly_hive(short_tmp: Path, hive_env: dict[str, str]) -> Iterator[HiveCLI]:
    (short_tmp / "unruly.py").write_text(UNRULY_HANDLER)
    (short_tmp / "spawned").mkdir()
    doc = {
        "version": 1,
        "name": "unruly",
        "nats": {"host": "127.0.0.1", "port": "${HIVE_NATS_PORT}"},
        "defaults": {"deadline": 8},
        "handlers": {
            "unruly": {
                "file": str(short_tmp / "unruly.py"),
                "timeout": 1,
                "env": {"SPAWN_RECORD": "${SPAWN_RECORD}"},  # a handler gets only what is declared
            }
        },
        "nodes": {
            "alice": {"role": "heavy", "handler": "unruly"},
            "bob": {"role": "heavy", "handler": "unruly"},
            "carol": {"role": "light", "handler": "unruly"},
        },
    }
    path = short_tmp / "hive.yaml"
    path.write_text(json.dumps(doc))
    env = {**hive_env, "SPAWN_RECORD": str(short_tmp / "spawned")}
    with running_hive(short_tmp / "state", env, topology=path) as cli:
        yield cli


def ask(hive: HiveCLI, query: str) -> dict[str, Any]:
    return hive.json(
        "submit", query, "--proposer", "alice", "--aggregators", "alice,bob",
        "--targets", "alice,bob,carol", "--json", check=False,
    )  # fmt: skip


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_a_runaway_handler_is_reclaimed_by_replacing_its_daemon(unruly_hive: HiveCLI) -> None:
    before = pid_of(unruly_hive, "handler-unruly")
    res = ask(unruly_hive, "spin")
    assert res["status"] == "failed", res  # every target timed out and declined
    wait_until(lambda: not pid_alive(before), 15, "the spinning daemon to be replaced")
    wait_until(lambda: node_ready(unruly_hive, "carol"), 15, "the hive to settle")
    new = wait_until(
        lambda: (p := pid_of(unruly_hive, "handler-unruly")) != before and p, 15, "a new daemon"
    )
    wait_until(lambda: ask(unruly_hive, "fine")["status"] == "complete", 30, "a round to work")
    spent, start = cpu_seconds(new), time.monotonic()
    time.sleep(1.0)  # measuring an idle second: nothing to await (a spinning thread burns ~1 s)
    assert cpu_seconds(new) - spent < 0.3 * (time.monotonic() - start)
    log = (unruly_hive.state_dir / "logs" / "handler-unruly.log").read_text()
    assert "replacing the daemon" in log


def test_a_failed_call_gives_its_memory_back(unruly_hive: HiveCLI) -> None:
    daemon = pid_of(unruly_hive, "handler-unruly")
    baseline = rss_mib(daemon)
    res = ask(unruly_hive, "hog")
    assert res["status"] == "failed", res
    wait_until(lambda: rss_mib(daemon) < baseline + 60, 10, "the daemon's memory to be freed")
    assert pid_of(unruly_hive, "handler-unruly") == daemon  # freed, not replaced


def test_what_a_handler_starts_does_not_outlive_down(unruly_hive: HiveCLI) -> None:
    record = unruly_hive.state_dir.parent / "spawned"
    res = ask(unruly_hive, "spawn")
    assert res["status"] == "complete", res
    children = [int(p.name) for p in record.iterdir()]
    assert len(children) == 3 and all(pid_alive(c) for c in children)
    sigkill(unruly_hive, "handler-unruly")  # their daemon dies: they are orphans now
    unruly_hive.run("down")
    wait_until(lambda: not any(pid_alive(c) for c in children), 10, "the handler's children")
    assert state_processes.marked_pids(unruly_hive.state_dir) == []


def _copies(state: Path) -> dict[str, int]:
    """How many processes run each node of `state` (by their config on the command line)."""
    counts: dict[str, int] = {}
    for pid in state_processes.marked_pids(state):
        with contextlib.suppress(OSError):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            for arg in args:
                if arg.startswith(str(state / "nodes").encode()):
                    alias = Path(arg.decode()).stem
                    counts[alias] = counts.get(alias, 0) + 1
    return counts


def test_supervisord_killed_leaves_orphans_that_status_names_and_up_replaces(
    test_hive: HiveCLI,
) -> None:
    state = test_hive.state_dir
    sup = supervisor.read_pid(state)
    assert sup is not None
    children = state_processes.marked_pids(state)
    os.kill(sup, signal.SIGKILL)
    wait_until(lambda: not pid_alive(sup), 10, "supervisord to die")
    status = test_hive.run("status", check=False)
    assert status.returncode == 1 and "orphaned process(es)" in status.stdout, status.stdout
    orphans = test_hive.json("status", "--json", check=False)["orphans"]
    assert sorted(orphans) == sorted(c for c in children if c != sup)
    up = test_hive.run("up", "--timeout", "60")
    assert "stopped orphaned pids" in up.stdout, up.stdout
    assert not any(pid_alive(p) for p in orphans)
    assert _copies(state) == dict.fromkeys(NODES, 1)  # every alias runs once
    res = test_hive.json(
        "submit", "once each", "--proposer", "alice", "--aggregators", "alice,bob",
        "--targets", "charlie,dave,eve", "--json",
    )  # fmt: skip
    assert res["status"] == "complete" and res["result"] == 3 * len("once each"), res
    # Killed again, `down` alone cleans up.
    os.kill(supervisor.read_pid(state) or 0, signal.SIGKILL)
    down = test_hive.run("down")
    assert "stopped" in down.stdout
    assert state_processes.marked_pids(state) == []


def test_a_node_refuses_to_run_twice(test_hive: HiveCLI) -> None:
    config = test_hive.state_dir / "nodes" / "alice.json"
    running = pid_of(test_hive, "node-alice")
    second = subprocess.run(
        [sys.executable, "-m", "beehive.flower.node", "--config", str(config)],
        capture_output=True, text=True, timeout=30, env=test_hive.env,
    )  # fmt: skip
    assert second.returncode == 75, second.stderr
    assert f"already running as pid {running}" in second.stderr
    assert pid_of(test_hive, "node-alice") == running


@contextlib.contextmanager
def small_disk(folder: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs at `folder` that a test can fill (`fill`); unmounted
    afterwards. Needs root (CI runs as root)."""
    folder.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill(disk: Path) -> Path:
    """Write `disk/ballast` until the disk is full; the caller unlinks it."""
    ballast = disk / "ballast"
    with ballast.open("wb", buffering=0) as fh, contextlib.suppress(OSError):  # until ENOSPC
        while True:
            fh.write(b"\0" * 65536)
    return ballast


def rounds_complete_again(hive: HiveCLI) -> None:
    """Within 30 s of a disk having room again, a round completes exactly."""
    again = wait_until(
        lambda: (
            (r := result(hive, submit(hive, FAST, "bob,charlie", "charlie,dave,eve")))
            and r["status"] == "complete"
            and r
        ),
        30,
        "a round to complete once the disk has room",
    )
    exact(again, "complete", ["charlie", "dave", "eve"], 4)


@pytest.fixture
def full_disk_hive(short_tmp: Path, hive_env: dict[str, str]) -> Iterator[tuple[HiveCLI, Path]]:
    """A hive whose proposer alice keeps its data on a small disk."""
    with (
        small_disk(short_tmp / "state" / "data" / "alice") as disk,
        running_hive(short_tmp / "state", hive_env, topology=topology(short_tmp)) as cli,
    ):
        yield cli, disk


@pytest.fixture
def full_nats_disk_hive(
    short_tmp: Path, hive_env: dict[str, str]
) -> Iterator[tuple[HiveCLI, Path]]:
    """A hive whose nats-server keeps its JetStream store on a small disk."""
    with (
        small_disk(short_tmp / "state" / "nats" / "jetstream") as disk,
        running_hive(short_tmp / "state", hive_env, topology=topology(short_tmp)) as cli,
    ):
        yield cli, disk


def test_a_disk_that_fills_mid_round_fails_it_with_that_reason_and_recovers(
    full_disk_hive: tuple[HiveCLI, Path],
) -> None:
    hive, data = full_disk_hive
    cid = submit(hive, SLOW, "bob,charlie", "charlie,dave,eve")
    wait_until(lambda: pending(hive, "eve", cid).exists(), 5, "the targets to start answering")
    ballast = fill(data)
    res = result(hive, cid)
    assert res["status"] == "failed" and "storage error" in res["reason"], res
    status = hive.run("status", check=False)
    assert status.returncode == 1 and "storage error" in status.stdout, status.stdout
    ballast.unlink()  # space is back: no restart, the next round works
    rounds_complete_again(hive)
    assert hive.run("status", check=False).returncode == 0


def test_a_disk_that_fills_under_nats_server_is_named_and_recovered_once_freed(
    full_nats_disk_hive: tuple[HiveCLI, Path],
) -> None:
    """JetStream stays stuck on a failed write until its server restarts: status
    names the error, no round hangs, and once the disk has room the guard
    restarts nats-server and rounds complete again (no restart by the user)."""
    hive, store = full_nats_disk_hive
    nats_before = pid_of(hive, "nats")
    ballast = fill(store)
    cid = new_comp_id()
    with contextlib.suppress(ControlTimeout):  # alice retries the spec's publish meanwhile
        submit(hive, FAST, "bob,charlie", "charlie,dave,eve", comp_id=cid)  # meets the full disk

    def storage_error() -> dict[str, Any] | None:
        report = json.loads(hive.run("status", "--json", check=False).stdout)
        return report if report["nats_storage"] else None

    report = wait_until(storage_error, 20, "status to name nats-server's storage error")
    assert "no space left on device" in report["nats_storage"], report
    assert not report["healthy"]
    stuck = result(hive, cid)  # the deadline ends it, with the reason
    assert stuck["status"] == "failed" and "NATS never stored its spec" in stuck["reason"], stuck
    ballast.unlink()  # room again: the guard restarts nats-server by itself
    freed = time.monotonic()
    rounds_complete_again(hive)
    recovered = time.monotonic() - freed
    print(
        f"\nnats {report['nats_storage']}; the round sent meanwhile: {stuck['status']} "
        f"({stuck['reason']}); a round complete {recovered:.1f}s after the disk had room"
    )
    assert pid_of(hive, "nats") != nats_before
    assert "restarting nats-server" in (hive.state_dir / "logs" / "nats-guard.log").read_text()
    assert hive.run("status", check=False).returncode == 0

#!/usr/bin/env python3
"""Benchmark the hive on the test topology, in a temporary folder on free ports.

Reports medians (never asserts): `hive up` to healthy and `hive down` (as a user
runs them), round latency submit → final result (p50/p95 over sequential rounds,
through the proposer's control socket, so CLI start-up is not counted), throughput
with many rounds submitted at once (every total checked), resident memory per
process kind, CPU per round over every process of the hive (from /proc: user +
system time, so whatever a process does between rounds counts too), the CPU the
hive uses at rest, one dispatch hop (a `.pending` written into a node's folder
→ its `.complete` seen, minus the handler's own time) as a node sees it, and the
CPU the `hive` command itself costs to run `--help`, `status` and `submit --json`
(its start-up: user + system time of the process, as a user runs it).

    .venv/bin/python scripts/bench.py [--repeats 3] [--rounds 50] [--burst 50] [--json]
    .venv/bin/python scripts/bench.py --nodes 50 --repeats 1   # a generated 50-node hive
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TOPOLOGY = REPO / "topologies" / "test.yaml"
QUERY = "What is your secret value"  # 25 characters
AGGREGATORS = ["alice", "bob"]
TARGETS = ["charlie", "dave", "eve"]
#: Seconds the hive is left alone after `hive up` before its idle CPU is measured
#: (supervisord's start-up checks and the first connections are over by then).
SETTLE_S = 2.0
#: Dispatch hops measured per cycle.
HOPS = 50
#: Runs of each CLI command whose CPU is measured, per cycle.
CLI_RUNS = 5
#: The console script a user runs (installed beside the interpreter).
HIVE = Path(sys.executable).parent / "hive"

sys.path.insert(0, str(REPO))
from beehive.core.dispatch import read_complete, write_pending  # noqa: E402
from beehive.core.models import Computation  # noqa: E402
from beehive.core.processes import cpu_seconds as process_cpu  # noqa: E402
from beehive.core.processes import rss_bytes  # noqa: E402
from beehive.core.watch import FolderWatch  # noqa: E402
from beehive.flower.control import request  # noqa: E402
from beehive.topology.layout import StateLayout  # noqa: E402


def generated_topology(folder: Path, nodes: int) -> Path:
    """test.yaml's shape with `nodes` nodes (3 heavy): for idle cost at scale."""
    global TOPOLOGY, AGGREGATORS, TARGETS
    names = [f"n{i}" for i in range(1, nodes + 1)]
    lines = [
        "version: 1",
        f"name: bench{nodes}",
        "nats:",
        "  host: 127.0.0.1",
        "  port: ${HIVE_NATS_PORT}",
        "defaults: {deadline: 30}",
        "handlers:",
        f"  query_length: {{file: {REPO / 'handlers' / 'query_length.py'}, timeout: 10}}",
        "nodes:",
        *(
            f"  {n}: {{role: {'heavy' if i < 3 else 'light'}, handler: query_length}}"
            for i, n in enumerate(names)
        ),
    ]
    TOPOLOGY = folder / "hive.yaml"
    TOPOLOGY.write_text("\n".join(lines) + "\n")
    AGGREGATORS, TARGETS = names[:2], names[2:]
    return TOPOLOGY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hive(state: Path, env: dict[str, str], *args: str) -> float:
    """Run one `hive` command; return its wall time in seconds."""
    cmd = [
        sys.executable,
        "-m",
        "beehive.cli.main",
        args[0],
        "-f",
        str(TOPOLOGY),
        "--state-dir",
        str(state),
        *args[1:],
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return took


async def one_round(
    sock: Path,
    aggregators: list[str] | None = None,
    targets: list[str] | None = None,
    deadline: float = 30.0,
) -> float:
    """One round through the proposer's control socket, submit → final result;
    its total checked (every target answers 25). Seconds."""
    targets = TARGETS if targets is None else targets
    start = time.perf_counter()
    reply = await request(
        sock,
        {
            "op": "submit",
            "query": QUERY,
            "aggregators": AGGREGATORS if aggregators is None else aggregators,
            "targets": targets,
            "deadline": deadline,
        },
        timeout=deadline,
    )
    done = await request(sock, {"op": "wait", "comp_id": reply["comp_id"]}, timeout=deadline + 30)
    took = time.perf_counter() - start
    result = done["result"]
    if result["status"] != "complete" or result["result"] != len(QUERY) * len(targets):
        missing = result.get("missing") or []
        raise SystemExit(
            f"wrong result: {result['status']} {result['result']} ({len(missing)} missing: "
            f"{', '.join(missing[:10])})"
        )
    return took


async def sequential(sock: Path, rounds: int) -> list[float]:
    return [await one_round(sock) for _ in range(rounds)]


async def burst(sock: Path, count: int) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(one_round(sock) for _ in range(count)))
    return count / (time.perf_counter() - start)


def _kind(program: str) -> str:
    """`node-alice` → node, `nats-guard` → guard (StateLayout's program kinds)."""
    found = StateLayout.program_of(program)
    return found[0] if found else program


def processes(state: Path) -> list[tuple[str, int]]:
    """(kind, pid) of every process of the hive, supervisord included."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "beehive.cli.main",
            "status",
            "-f",
            str(TOPOLOGY),
            "--state-dir",
            str(state),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    status = json.loads(out.stdout)
    pids = [(_kind(p["name"]), p["pid"]) for p in status["processes"] if p["pid"]]
    pids.append(("supervisord", int((state / "run" / "supervisord.pid").read_text())))
    return pids


def cpu_seconds(procs: list[tuple[str, int]]) -> dict[str, float]:
    """User + system CPU seconds per process kind so far (/proc/<pid>/stat)."""
    used: dict[str, float] = {}
    for kind, pid in procs:
        used[kind] = used.get(kind, 0.0) + (process_cpu(pid) or 0.0)
    return used


class CpuMeter:
    """CPU the hive's processes used between `start()` and `stop()`."""

    def __init__(self, procs: list[tuple[str, int]]) -> None:
        self.procs = procs

    def start(self) -> None:
        self._before, self._wall = cpu_seconds(self.procs), time.perf_counter()

    def stop(self) -> tuple[dict[str, float], float]:
        """(CPU seconds by kind, wall seconds) since start()."""
        after = cpu_seconds(self.procs)
        wall = time.perf_counter() - self._wall
        return {k: after[k] - self._before.get(k, 0.0) for k in after}, wall


async def dispatch_hops(state: Path, alias: str, count: int) -> list[float]:
    """Milliseconds from a `.pending` written into `alias`'s folder to its
    `.complete` seen by a watcher, minus the handler's own time: one node →
    handler → node hop, with the code's own watcher on both ends."""
    folder = StateLayout(state).computation_dir(alias)
    arrived: dict[str, asyncio.Future[float]] = {}

    def seen(_change: object, path: Path) -> None:
        future = arrived.get(path.name.removesuffix(".complete"))
        if future is not None and not future.done() and path.exists():
            future.set_result(time.perf_counter())

    watch = FolderWatch([folder], seen, lambda _c, p: p.endswith(".complete"))
    await watch.start()
    hops = []
    try:
        for _ in range(count):
            comp = Computation(query=QUERY, proposer=alias, aggregators=[alias], targets=[alias])
            future = arrived[comp.comp_id] = asyncio.get_running_loop().create_future()
            start = time.perf_counter()
            write_pending(folder, comp)
            took = (await asyncio.wait_for(future, 10)) - start
            record = read_complete(folder / f"{comp.comp_id}.complete")
            hops.append(took * 1000 - record.elapsed_ms)
            for suffix in (".pending", ".complete"):
                (folder / f"{comp.comp_id}{suffix}").unlink(missing_ok=True)
    finally:
        await watch.stop()
    return hops


def rss_by_kind(procs: list[tuple[str, int]]) -> dict[str, float]:
    """Median resident memory (MiB) per process kind, read from /proc."""
    kinds: dict[str, list[float]] = {}
    for kind, pid in procs:
        rss = rss_bytes(pid)
        if rss is not None:
            kinds.setdefault(kind, []).append(rss / 2**20)
    return {k: round(statistics.median(v), 1) for k, v in sorted(kinds.items())}


def cli_cpu(env: dict[str, str], *args: str) -> float:
    """CPU seconds (user + system) one `hive` command costs, start-up included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([str(HIVE), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"hive {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def cli_start(state: Path, env: dict[str, str]) -> dict[str, float]:
    """Median CPU of `hive --help`, `hive status` and `hive submit --json` (a
    round over the test topology) on the running hive, as a user's second run
    costs: Python's bytecode cache on (PYTHONDONTWRITEBYTECODE, which some
    sandboxes set, would recompile every beehive module on every run) and one
    uncounted run first, which fills it for a source checkout."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    where = ["-f", str(TOPOLOGY), "--state-dir", str(state)]
    commands = {
        "help": ["--help"],
        "status": ["status", *where],
        "submit": [
            "submit", QUERY, *where, "--proposer", AGGREGATORS[0],
            "--aggregators", ",".join(AGGREGATORS), "--targets", ",".join(TARGETS), "--json",
        ],
    }  # fmt: skip
    cli_cpu(env, *commands["status"])  # warm-up: writes the bytecode cache
    return {
        name: statistics.median(cli_cpu(env, *args) for _ in range(CLI_RUNS))
        for name, args in commands.items()
    }


def add_dir_option(parser: argparse.ArgumentParser) -> None:
    """`--dir`: where the run's temporary folder (the hive's state, its NATS store
    and its dispatch folders) is made. Its filesystem decides much of what a round
    costs (fsyncs, and creating and deleting a few files per answer: see the ext4
    note in docs/performance.md), so measure on the disk the hive will live on."""
    parser.add_argument(
        "--dir",
        type=_existing_folder,
        default=Path("/tmp"),
        help="make the hive's temporary folder here, on the disk to measure; a short "
        "path (the hive's Unix sockets go under it) [/tmp]",
    )


def _existing_folder(value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value}: no such folder")
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


ENV = dict(os.environ)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="up/down cycles (medians)")
    parser.add_argument("--rounds", type=int, default=50, help="sequential rounds per cycle")
    parser.add_argument("--burst", type=int, default=50, help="rounds submitted at once")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--idle", type=float, default=10.0, help="seconds over which idle CPU is measured"
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=0,
        help="measure a generated hive of this many nodes (3 heavy) instead of test.yaml",
    )
    add_dir_option(parser)
    args = parser.parse_args()

    ups, downs, p50s, p95s, rates, idles, cpus, burst_cpus, hops = ([] for _ in range(9))
    starts: list[dict[str, float]] = []
    memory: dict[str, float] = {}
    cpu_kinds: dict[str, float] = {}
    for cycle in range(args.repeats):
        tmp = Path(tempfile.mkdtemp(prefix="bh-bench-", dir=args.dir))
        if args.nodes:
            generated_topology(tmp, args.nodes)
        state = tmp / "state"
        ENV["HIVE_NATS_PORT"] = str(free_port())
        try:
            ups.append(hive(state, ENV, "up"))
            sock = state / "run" / f"{AGGREGATORS[0]}.sock"
            meter = CpuMeter(processes(state))
            time.sleep(SETTLE_S)
            meter.start()
            time.sleep(args.idle)
            used, wall = meter.stop()
            idles.append(100 * sum(used.values()) / wall)
            asyncio.run(one_round(sock))  # warm-up, not counted
            meter.start()
            latencies = asyncio.run(sequential(sock, args.rounds))
            used, _ = meter.stop()
            cpus.append(1000 * sum(used.values()) / args.rounds)
            if cycle == 0:
                cpu_kinds = {k: round(1000 * v / args.rounds, 1) for k, v in sorted(used.items())}
            p50s.append(percentile(latencies, 0.5) * 1000)
            p95s.append(percentile(latencies, 0.95) * 1000)
            meter.start()
            rates.append(asyncio.run(burst(sock, args.burst)))
            used, _ = meter.stop()
            burst_cpus.append(1000 * sum(used.values()) / args.burst)
            hops.append(statistics.median(asyncio.run(dispatch_hops(state, TARGETS[0], HOPS))))
            if cycle == 0:
                memory = rss_by_kind(meter.procs)
            starts.append(cli_start(state, ENV))
        finally:
            downs.append(hive(state, ENV, "down"))
            shutil.rmtree(tmp, ignore_errors=True)
        print(
            f"cycle {cycle + 1}/{args.repeats}: up {ups[-1]:.2f}s, p50 {p50s[-1]:.1f} ms, "
            f"p95 {p95s[-1]:.1f} ms, {rates[-1]:.1f} rounds/s, down {downs[-1]:.2f}s, "
            f"idle {idles[-1]:.2f}% of a core, {cpus[-1]:.1f} ms CPU a round "
            f"({burst_cpus[-1]:.1f} in the burst), hop {hops[-1]:.2f} ms",
            file=sys.stderr,
        )

    report: dict[str, Any] = {
        "cycles": args.repeats,
        "up_to_healthy_s": round(statistics.median(ups), 2),
        "down_s": round(statistics.median(downs), 2),
        "round_latency_p50_ms": round(statistics.median(p50s), 1),
        "round_latency_p95_ms": round(statistics.median(p95s), 1),
        "rounds": args.rounds,
        "burst": args.burst,
        "burst_rounds_per_s": round(statistics.median(rates), 1),
        "rss_mib_by_kind": memory,
        "nodes": len(AGGREGATORS) + len(TARGETS),
        "idle_cpu_percent": round(statistics.median(idles), 2),
        "idle_cpu_percent_per_node": round(
            statistics.median(idles) / (len(AGGREGATORS) + len(TARGETS)), 3
        ),
        "cpu_ms_per_round": round(statistics.median(cpus), 1),
        "cpu_ms_per_round_burst": round(statistics.median(burst_cpus), 1),
        "cpu_ms_per_round_by_kind": cpu_kinds,
        "dispatch_hop_ms": round(statistics.median(hops), 2),
        "cli_start_cpu_s": {
            name: round(statistics.median(s[name] for s in starts), 3) for name in starts[0]
        },
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return
    print(f"hive up → healthy      {report['up_to_healthy_s']:>8} s   (median of {args.repeats})")
    print(f"hive down              {report['down_s']:>8} s")
    print(
        f"round latency p50      {report['round_latency_p50_ms']:>8} ms  "
        f"({args.rounds} sequential rounds)"
    )
    print(f"round latency p95      {report['round_latency_p95_ms']:>8} ms")
    print(
        f"throughput             {report['burst_rounds_per_s']:>8} rounds/s "
        f"({args.burst} submitted at once)"
    )
    print(f"CPU per round          {report['cpu_ms_per_round']:>8} ms  (all processes)")
    print(f"CPU per round, burst   {report['cpu_ms_per_round_burst']:>8} ms")
    print(
        f"idle CPU               {report['idle_cpu_percent']:>8} % of a core "
        f"({report['nodes']} nodes, {args.idle:g} s)"
    )
    print(f"dispatch hop           {report['dispatch_hop_ms']:>8} ms  (node → handler → node)")
    for kind, mib in memory.items():
        print(f"RSS {kind:<18} {mib:>8} MiB")
    for name, cpu in report["cli_start_cpu_s"].items():
        print(f"CLI CPU, hive {name:<8} {cpu:>8} s")


if __name__ == "__main__":
    main()

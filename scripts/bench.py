#!/usr/bin/env python3
"""Benchmark the hive on the test topology, in a temporary folder on free ports.

Reports medians (never asserts): `hive up` to healthy and `hive down` (as a user
runs them), round latency submit → final result (p50/p95 over sequential rounds,
through the proposer's control socket, so CLI start-up is not counted), throughput
with many rounds submitted at once (every total checked), and resident memory per
process kind.

    .venv/bin/python scripts/bench.py [--repeats 3] [--rounds 50] [--burst 50] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
EXPECTED = 75

sys.path.insert(0, str(REPO))
from beehive.flower.control import request  # noqa: E402
from beehive.topology.layout import StateLayout  # noqa: E402


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


async def one_round(sock: Path) -> float:
    start = time.perf_counter()
    reply = await request(
        sock,
        {
            "op": "submit",
            "query": QUERY,
            "aggregators": AGGREGATORS,
            "targets": TARGETS,
            "deadline": 30,
        },
        timeout=60,
    )
    done = await request(sock, {"op": "wait", "comp_id": reply["comp_id"]}, timeout=60)
    took = time.perf_counter() - start
    result = done["result"]
    if result["status"] != "complete" or result["result"] != EXPECTED:
        raise SystemExit(f"wrong result: {result}")
    return took


async def sequential(sock: Path, rounds: int) -> list[float]:
    await one_round(sock)  # warm-up, not counted
    return [await one_round(sock) for _ in range(rounds)]


async def burst(sock: Path, count: int) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(one_round(sock) for _ in range(count)))
    return count / (time.perf_counter() - start)


def _kind(program: str) -> str:
    """`node-alice` → node, `nats-guard` → guard (StateLayout's program kinds)."""
    found = StateLayout.program_of(program)
    return found[0] if found else program


def rss_by_kind(state: Path) -> dict[str, float]:
    """Median resident memory (MiB) per process kind, read from /proc."""
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
    kinds: dict[str, list[float]] = {}
    pids = [(_kind(p["name"]), p["pid"]) for p in status["processes"]]
    pids.append(("supervisord", int((state / "run" / "supervisord.pid").read_text())))
    for kind, pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                kinds.setdefault(kind, []).append(int(line.split()[1]) / 1024)
    return {k: round(statistics.median(v), 1) for k, v in sorted(kinds.items())}


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
    args = parser.parse_args()

    ups, downs, p50s, p95s, rates = [], [], [], [], []
    memory: dict[str, float] = {}
    for cycle in range(args.repeats):
        tmp = Path(tempfile.mkdtemp(prefix="bh-bench-", dir="/tmp"))
        state = tmp / "state"
        ENV["HIVE_NATS_PORT"] = str(free_port())
        try:
            ups.append(hive(state, ENV, "up"))
            sock = state / "run" / "alice.sock"
            latencies = asyncio.run(sequential(sock, args.rounds))
            p50s.append(percentile(latencies, 0.5) * 1000)
            p95s.append(percentile(latencies, 0.95) * 1000)
            rates.append(asyncio.run(burst(sock, args.burst)))
            if cycle == 0:
                memory = rss_by_kind(state)
        finally:
            downs.append(hive(state, ENV, "down"))
            shutil.rmtree(tmp, ignore_errors=True)
        print(
            f"cycle {cycle + 1}/{args.repeats}: up {ups[-1]:.2f}s, p50 {p50s[-1]:.1f} ms, "
            f"p95 {p95s[-1]:.1f} ms, {rates[-1]:.1f} rounds/s, down {downs[-1]:.2f}s",
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
    for kind, mib in memory.items():
        print(f"RSS {kind:<18} {mib:>8} MiB")


if __name__ == "__main__":
    main()

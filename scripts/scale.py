#!/usr/bin/env python3
"""Size a hive before deploying it: N nodes on this machine, with the real protocol.

Generates a topology of N nodes (3 heavy: replica set `agg`, the rest replica set
`bee`) in a temporary folder, on a free port, with `runtime: {nodes_per_process:
K}`; brings it up with `hive up` (timed as a user runs it, and the CPU each kind
of process spent getting there), then reports the total resident memory of every
process of the hive (supervisord included), the CPU the hive uses at rest, and
the latency of ROUNDS sequential rounds over all N targets (aggregated by the 3
heavy nodes, or 2 of them; every total checked exactly) with the CPU each kind
of process spent on a round; then takes it down with `hive down` (timed) and
checks that no process of it is left. Medians, never asserted: performance is
recorded in docs/performance.md.

    .venv/bin/python scripts/scale.py 1000 --per-process 50 [--json]
    .venv/bin/python scripts/scale.py 100            # one process per node
    .venv/bin/python scripts/scale.py 1000 --per-process 50 --dir /srv/hive  # on that disk
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # scripts/bench.py: the same process and CPU readings

from beehive.core.processes import pid_alive, rss_bytes

HEAVY = 3
#: Seconds a round may take; each is awaited up to this plus a margin.
DEADLINE = 60.0


def topology(folder: Path, nodes: int, per_process: int) -> Path:
    """N nodes as two replica sets: `agg` (3 heavy) and `bee` (the rest)."""
    lines = [
        "version: 1",
        f"name: scale{nodes}",
        "nats:",
        "  host: 127.0.0.1",
        "  port: ${HIVE_NATS_PORT}",
        f"defaults: {{deadline: {DEADLINE:g}}}",
        f"runtime: {{nodes_per_process: {per_process}}}",
        "handlers:",
        f"  query_length: {{file: {bench.REPO / 'handlers' / 'query_length.py'}, timeout: 10}}",
        "nodes:",
        f"  agg: {{role: heavy, handler: query_length, replicas: {HEAVY}}}",
    ]
    if nodes > HEAVY:
        lines.append(f"  bee: {{role: light, handler: query_length, replicas: {nodes - HEAVY}}}")
    path = folder / "hive.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def total_rss_mib(pids: list[int]) -> float:
    return sum(rss_bytes(pid) or 0 for pid in pids) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("nodes", type=int, help=f"how many nodes ({HEAVY} of them heavy)")
    parser.add_argument("--per-process", type=int, default=1, help="runtime.nodes_per_process [1]")
    parser.add_argument("--rounds", type=int, default=5, help="sequential rounds [5]")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measured [10]")
    parser.add_argument(
        "--aggregators",
        type=int,
        default=HEAVY,
        choices=range(2, HEAVY + 1),
        help=f"heavy nodes that aggregate each round [{HEAVY}]",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_dir_option(parser)
    args = parser.parse_args()
    if args.nodes < HEAVY:
        parser.error(f"at least {HEAVY} nodes (the heavy ones)")

    tmp = Path(tempfile.mkdtemp(prefix="bh-scale-", dir=args.dir))
    bench.TOPOLOGY = topology(tmp, args.nodes, args.per_process)
    state = tmp / "state"
    env = dict(os.environ, HIVE_NATS_PORT=str(bench.free_port()))
    bench.ENV = env
    heavy = [f"agg-{i}" for i in range(1, HEAVY + 1)]
    aggregators = heavy[: args.aggregators]
    targets = [*heavy, *(f"bee-{i}" for i in range(1, args.nodes - HEAVY + 1))]
    say = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    pids: list[int] = []
    try:
        say(f"hive up: {args.nodes} nodes, {args.per_process} per process …")
        up = bench.hive(state, env, "up", "--timeout", "600")
        procs = bench.processes(state)
        pids = [pid for _, pid in procs]
        # Everything these processes did so far was starting up: on a shared
        # machine this is steadier than the wall time of `hive up`.
        up_cpu = {kind: round(s, 1) for kind, s in sorted(bench.cpu_seconds(procs).items())}
        rss = total_rss_mib(pids)
        say(f"  up in {up:.1f}s, {len(pids)} processes, {rss:.0f} MiB RSS; idle {args.idle:g}s …")
        meter = bench.CpuMeter(procs)
        time.sleep(bench.SETTLE_S)
        meter.start()
        time.sleep(args.idle)
        used, wall = meter.stop()
        idle = 100 * sum(used.values()) / wall
        sock = state / "run" / f"{aggregators[0]}.sock"
        latencies = []
        meter.start()
        for i in range(args.rounds):
            latencies.append(asyncio.run(bench.one_round(sock, aggregators, targets, DEADLINE)))
            say(f"  round {i + 1}/{args.rounds}: {latencies[-1]:.2f}s")
        used, _ = meter.stop()
        cpu = {kind: round(seconds / args.rounds, 2) for kind, seconds in sorted(used.items())}
    finally:
        down = bench.hive(state, env, "down")
        left = [pid for pid in pids if pid_alive(pid)]
        shutil.rmtree(tmp, ignore_errors=True)
    report: dict[str, Any] = {
        "nodes": args.nodes,
        "nodes_per_process": args.per_process,
        "aggregators": args.aggregators,
        "folder": str(tmp),  # the hive's, under --dir: the disk measured (removed after)
        "processes": len(pids),
        "up_s": round(up, 1),
        "up_cpu_s_by_kind": up_cpu,
        "rss_total_mib": round(rss),
        "idle_cpu_percent": round(idle, 2),
        "round_p50_s": round(statistics.median(latencies), 2),
        "round_s": [round(t, 2) for t in latencies],
        "cpu_s_per_round_by_kind": cpu,
        "down_s": round(down, 1),
        "left_running": left,
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for key, value in report.items():
            print(f"{key:<18} {value}")
    if left:
        raise SystemExit(f"processes left running after `hive down`: {left}")


if __name__ == "__main__":
    main()

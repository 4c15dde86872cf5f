#!/usr/bin/env python3
"""Soak the hive: many rounds on the test topology, watching what grows.

Brings up a copy of topologies/test.yaml (with `defaults: {keep_results: N}`, so
pruning is seen within the run) in a temporary folder on a free port, runs
`--rounds` rounds through alice's control socket with `--concurrency` in flight
(every total checked), and every `--sample-every` rounds records, per node: its
resident memory (/proc), the row count of each table of its local.db, the size of
its WAL and its number of final_*.json. Prints a table (or `--json`); the hive is
always taken down. Bounded in time by `--time-limit` (rounds stop being submitted).

    .venv/bin/python scripts/soak.py [--rounds 5000] [--keep-results 60] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TABLES = ("results", "rounds", "seen_messages")

# The benchmark's round (same query, aggregators, targets, checked total) and
# helpers: one definition of "a round" for both scripts.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import REPO, TOPOLOGY, free_port, one_round  # noqa: E402


def write_topology(folder: Path, keep_results: str | None) -> Path:
    """test.yaml with absolute handler paths and, if given, `keep_results`."""
    text = TOPOLOGY.read_text().replace("file: ../handlers/", f"file: {REPO / 'handlers'}/")
    if keep_results is not None:
        text = text.replace("defaults:\n", f"defaults:\n  keep_results: {keep_results}\n", 1)
    path = folder / "test.yaml"
    path.write_text(text)
    return path


def hive(topology: Path, state: Path, env: dict[str, str], *args: str) -> str:
    cmd = [sys.executable, "-m", "beehive.cli.main", args[0], "-f", str(topology)]
    cmd += ["--state-dir", str(state), *args[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    if proc.returncode != 0:
        raise SystemExit(f"hive {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def node_pids(topology: Path, state: Path, env: dict[str, str]) -> dict[str, int]:
    status = json.loads(hive(topology, state, env, "status", "--json"))
    return {
        p["name"].removeprefix("node-"): p["pid"]
        for p in status["processes"]
        if p["name"].startswith("node-")
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def store_figures(data: Path) -> dict[str, Any]:
    db_path = data / "local.db"
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        rows = {t: int(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in TABLES}
    finally:
        db.close()
    wal = db_path.with_name("local.db-wal")
    return {
        "rows": rows,
        "db_kib": round(db_path.stat().st_size / 1024, 1),
        "wal_kib": round(wal.stat().st_size / 1024, 1) if wal.exists() else 0.0,
        "final_files": sum(1 for _ in data.glob("final_*.json")),
    }


def sample(state: Path, pids: dict[str, int], done: int, started: float) -> dict[str, Any]:
    nodes = {
        alias: {"rss_mib": rss_mib(pid), **store_figures(state / "data" / alias)}
        for alias, pid in sorted(pids.items())
    }
    return {"rounds": done, "elapsed_s": round(time.monotonic() - started, 1), "nodes": nodes}


async def soak(
    state: Path, pids: dict[str, int], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], bool]:
    sock = state / "run" / "alice.sock"
    started = time.monotonic()
    end = started + args.time_limit
    samples: list[dict[str, Any]] = []
    done = submitted = 0
    gate = asyncio.Semaphore(args.concurrency)

    async def worker() -> None:
        nonlocal done, submitted
        while submitted < args.rounds and time.monotonic() < end:
            submitted += 1
            async with gate:
                await one_round(sock)
            done += 1
            if done % args.sample_every == 0:
                samples.append(sample(state, pids, done, started))
                print(f"{done} rounds, {samples[-1]['elapsed_s']} s", file=sys.stderr)

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    timed_out = done < args.rounds
    if timed_out or done % args.sample_every:
        samples.append(sample(state, pids, done, started))
    return samples, timed_out


def print_table(report: dict[str, Any]) -> None:
    print(
        f"{report['rounds_done']} rounds in {report['elapsed_s']} s, keep_results "
        f"{report['keep_results']}, {report['concurrency']} in flight"
        + (" (stopped by --time-limit)" if report["timed_out"] else "")
    )
    head = f"{'rounds':>7} {'node':<8} {'RSS MiB':>8} "
    head += " ".join(f"{t:>13}" for t in TABLES)
    print(head + f" {'db KiB':>8} {'WAL KiB':>8} {'finals':>7}")
    for s in report["samples"]:
        for alias, n in s["nodes"].items():
            rows = " ".join(f"{n['rows'][t]:>13}" for t in TABLES)
            print(
                f"{s['rounds']:>7} {alias:<8} {n['rss_mib']:>8} {rows} {n['db_kib']:>8} "
                f"{n['wal_kib']:>8} {n['final_files']:>7}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=20, help="rounds in flight")
    parser.add_argument("--sample-every", type=int, default=500, help="rounds between samples")
    parser.add_argument(
        "--keep-results",
        default="60",
        help="defaults.keep_results of the copy (a duration); 'default' keeps the topology's",
    )
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds, at most")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bh-soak-", dir="/tmp"))
    state = tmp / "state"
    keep = None if args.keep_results == "default" else args.keep_results
    topology = write_topology(tmp, keep)
    env = dict(os.environ, HIVE_NATS_PORT=str(free_port()))
    env.pop("BEEHIVE_STATE_DIR", None)
    started = time.monotonic()
    try:
        hive(topology, state, env, "up", "--timeout", "60")
        pids = node_pids(topology, state, env)
        samples, timed_out = asyncio.run(soak(state, pids, args))
        restarted = node_pids(topology, state, env) != pids
    finally:
        try:
            hive(topology, state, env, "down")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    report: dict[str, Any] = {
        "rounds_done": samples[-1]["rounds"] if samples else 0,
        "rounds_asked": args.rounds,
        "elapsed_s": round(time.monotonic() - started, 1),
        "timed_out": timed_out,
        "keep_results": keep or "default",
        "concurrency": args.concurrency,
        "nodes_restarted": restarted,
        "samples": samples,
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print_table(report)


if __name__ == "__main__":
    main()

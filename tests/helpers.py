"""Helpers the tests share (not fixtures: those are in conftest.py).

    from helpers import REPO, HiveCLI, wait_until, …

tests/ is on sys.path because pytest (import mode `prepend`, its default) puts
the folder of tests/conftest.py there when it loads it: tests/ has no __init__.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from beehive.orchestrator.supervisor import pid_alive  # zombies count as gone

__all__ = [
    "REPO",
    "TEST_TOPOLOGY",
    "HiveCLI",
    "free_port",
    "hive_down",
    "make_hive_env",
    "pid_alive",
    "running_hive",
    "wait_until",
]

REPO = Path(__file__).resolve().parent.parent
TEST_TOPOLOGY = REPO / "topologies" / "test.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):
    """Await a condition on another process, bounded; the reason is in the failure."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class HiveCLI:
    """Runs the real `hive` entry point in a subprocess, against one topology/state."""

    def __init__(self, topology: Path, state_dir: Path, env: dict[str, str]) -> None:
        self.topology, self.state_dir, self.env = topology, state_dir, env

    def run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            "-m",
            "beehive.cli.main",
            args[0],
            "-f",
            str(self.topology),
            "--state-dir",
            str(self.state_dir),
            *args[1:],
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def json(self, *args: str, check: bool = True) -> dict:
        return json.loads(self.run(*args, check=check).stdout)

    def pids(self) -> list[int]:
        """supervisord's PID and every PID it runs: what `down` must leave dead."""
        status = self.json("status", "--json", check=False)
        pids = [p["pid"] for p in status["processes"] if p["pid"]]
        pidfile = self.state_dir / "run" / "supervisord.pid"
        if pidfile.exists():
            pids.append(int(pidfile.read_text()))
        return pids


def make_hive_env() -> dict[str, str]:
    env = dict(os.environ)
    env["HIVE_NATS_PORT"] = str(free_port())
    env.pop("BEEHIVE_STATE_DIR", None)
    return env


@contextlib.contextmanager
def running_hive(
    state_dir: Path, env: dict[str, str], topology: Path = TEST_TOPOLOGY
) -> Iterator[HiveCLI]:
    """`topology` up in `state_dir`, always taken down, no process left."""
    hive = HiveCLI(topology, state_dir, env)
    try:
        hive.run("up", "--timeout", "60")
        yield hive
    finally:
        hive_down(hive)


def hive_down(hive: HiveCLI) -> None:
    """`hive down`, then wait until supervisord and every process it ran are gone."""
    pids = hive.pids() if (hive.state_dir / "run" / "supervisord.sock").exists() else []
    hive.run("down", check=False)
    wait_until(lambda: not any(pid_alive(p) for p in pids), 15, f"processes {pids} to exit")

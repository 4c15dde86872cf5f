"""Shared fixtures: free ports, short temporary state folders, the `hive` CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from beehive.orchestrator.supervisor import pid_alive  # zombies count as gone

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


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A state folder under /tmp: Unix socket paths must stay under ~107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="bh-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


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


@pytest.fixture
def hive_env() -> dict[str, str]:
    return make_hive_env()


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
        pids = hive.pids() if (hive.state_dir / "run" / "supervisord.sock").exists() else []
        hive.run("down", check=False)
        wait_until(lambda: not any(pid_alive(p) for p in pids), 15, f"processes {pids} to exit")


@pytest.fixture
def test_hive(short_tmp: Path, hive_env: dict[str, str]) -> Iterator[HiveCLI]:
    """topologies/test.yaml brought up in a temporary state folder, always taken down."""
    with running_hive(short_tmp / "state", hive_env) as hive:
        yield hive


@pytest.fixture(scope="module")
def shared_hive() -> Iterator[HiveCLI]:
    """One test hive for a whole module (tests that only read it or add rounds)."""
    tmp = Path(tempfile.mkdtemp(prefix="bh-", dir="/tmp"))
    try:
        with running_hive(tmp / "state", make_hive_env()) as hive:
            yield hive
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

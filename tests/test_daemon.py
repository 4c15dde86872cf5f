"""The real handler daemon, as supervisord runs it: a subprocess on a config file.

Waits are conditions with deadlines (a short bounded poll of a file), never fixed
sleeps, so the tests are as fast as the daemon and fail with its log when it is not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, wait_until

from beehive.core.dispatch import CompleteRecord, read_complete, write_pending
from beehive.core.files import write_atomic
from beehive.core.models import Computation

SECRET = 31337  # an answer distinctive enough to grep the log for

HANDLER_SOURCE = f"""
import time
from beehive import handler, Computation

@handler
def probe(comp: Computation) -> int:
    if comp.query == "raise":
        raise ValueError("the handler refused")
    if comp.query == "slow":
        if comp.metadata.get("marker"):
            open(comp.metadata["marker"], "w").close()
        time.sleep(30)
    if comp.query == "bad":
        return -5
    return {SECRET} if comp.query == "secret" else len(comp.query)
"""


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """`wait_until` with this module's argument order and a finer poll."""
    return wait_until(condition, timeout, what, interval=0.005)


class Daemon:
    """A running `python -m beehive.nectar.daemon` and the files it works on."""

    def __init__(self, tmp_path: Path, attachments: dict[str, Path], timeout: float = 1.0):
        self.tmp = tmp_path
        self.handler_file = tmp_path / "probe_handler.py"
        self.handler_file.write_text(textwrap.dedent(HANDLER_SOURCE))
        self.config_path = tmp_path / "state" / "handlers" / "probe.json"
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.ready_file = tmp_path / "state" / "run" / "handler-probe.ready"
        self.log_path = tmp_path / "daemon.log"
        self.timeout = timeout
        self.write_config(attachments)
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, attachments: dict[str, Path]) -> None:
        config = {
            "name": "probe",
            "file": str(self.handler_file),
            "timeout": self.timeout,
            "attachments": {alias: str(path) for alias, path in attachments.items()},
            "ready_file": str(self.ready_file),
        }
        write_atomic(self.config_path, json.dumps(config).encode())

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.pop("BEEHIVE_LOG_LEVEL", None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "beehive.nectar.daemon", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.tmp,
            )

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def ready(self, watching: list[str] | None = None, timeout: float = 15.0) -> dict:
        def check() -> dict | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            try:
                body = json.loads(self.ready_file.read_text())
            except (OSError, ValueError):
                return None
            if watching is not None and body.get("watching") != watching:
                return None
            return body

        try:
            return wait_for(check, f"ready file watching {watching}", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- daemon log ---\n{self.log()}") from None

    def complete(self, folder: Path, comp_id: str, timeout: float = 10.0) -> CompleteRecord:
        path = folder / f"{comp_id}.complete"
        try:
            wait_for(path.exists, f"{path.name}", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- daemon log ---\n{self.log()}") from None
        return read_complete(path)


def comp(query: str) -> Computation:
    return Computation(query=query, proposer="p", aggregators=["h"], targets=["alice"])


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    return {
        "alice": tmp_path / "state" / "data" / "alice" / "computation",
        "bob": tmp_path / "state" / "data" / "bob" / "computation",
    }


@pytest.fixture
def daemon(tmp_path: Path, folders: dict[str, Path]) -> Iterator[Daemon]:
    d = Daemon(tmp_path, {"alice": folders["alice"]})
    try:
        yield d
    finally:
        d.stop()


def test_answers_ok_error_timeout_and_garbage(daemon: Daemon, folders: dict[str, Path]) -> None:
    alice = folders["alice"]
    daemon.start()
    assert daemon.ready() == {"pid": daemon.proc.pid, "watching": ["alice"]}
    # The folder did not exist: the daemon created it, owner-only.
    assert alice.stat().st_mode & 0o777 == 0o700

    ok = comp("hello")
    write_pending(alice, ok)
    rec = daemon.complete(alice, ok.comp_id)
    assert (rec.status, rec.result, rec.handler) == ("ok", 5, "probe")

    raising = comp("raise")
    write_pending(alice, raising)
    rec = daemon.complete(alice, raising.comp_id)
    assert rec.status == "error" and rec.result is None
    assert "ValueError: the handler refused" in rec.error

    bad = comp("bad")
    write_pending(alice, bad)
    rec = daemon.complete(alice, bad.comp_id)
    assert rec.status == "error" and "outside [0, 2^32)" in rec.error

    slow = comp("slow")
    write_pending(alice, slow)
    rec = daemon.complete(alice, slow.comp_id)
    assert rec.status == "error" and "did not answer within 1s" in rec.error

    write_atomic(alice / "garbage.pending", b"{not json")
    rec = daemon.complete(alice, "garbage")
    assert rec.status == "error" and "unreadable .pending" in rec.error

    after = comp("still serving")
    write_pending(alice, after)
    assert daemon.complete(alice, after.comp_id).result == len("still serving")


def test_concurrent_computations(daemon: Daemon, folders: dict[str, Path]) -> None:
    """A slow computation does not hold up the next one."""
    alice = folders["alice"]
    daemon.start()
    daemon.ready()
    slow, quick = comp("slow"), comp("quick")
    write_pending(alice, slow)
    write_pending(alice, quick)
    assert daemon.complete(alice, quick.comp_id, timeout=0.9).result == 5
    assert daemon.complete(alice, slow.comp_id).status == "error"


def test_pending_before_start_is_answered(daemon: Daemon, folders: dict[str, Path]) -> None:
    alice = folders["alice"]
    alice.mkdir(parents=True)
    early = comp("early bird")
    write_pending(alice, early)
    answered = comp("answered")
    write_pending(alice, answered)
    stale = CompleteRecord.ok(answered.comp_id, 99, "earlier-run")
    (alice / f"{answered.comp_id}.complete").write_text(stale.model_dump_json())

    daemon.start()
    daemon.ready()
    assert daemon.complete(alice, early.comp_id).result == len("early bird")
    # An answered computation is not answered again.
    assert read_complete(alice / f"{answered.comp_id}.complete").handler == "earlier-run"


def test_a_computation_its_process_died_on_is_run_once_more_then_failed(
    daemon: Daemon, folders: dict[str, Path]
) -> None:
    """A `.running` marker left by a dead daemon (pid 1 is never ours): the first
    death may have been a kill from outside, so the computation runs again; after
    a second death on it, it is answered as failed instead of crash-looping."""
    alice = folders["alice"]
    alice.mkdir(parents=True)
    once, twice = comp("died once"), comp("died twice")
    for c, attempts in ((once, 1), (twice, 2)):
        write_pending(alice, c)
        (alice / f"{c.comp_id}.running").write_text(f"1 {attempts}")

    daemon.start()
    daemon.ready()
    assert daemon.complete(alice, once.comp_id).result == len("died once")
    failed = daemon.complete(alice, twice.comp_id)
    assert failed.status == "error" and "2 times" in (failed.error or "")
    assert not list(alice.glob("*.running"))


def test_live_attach_and_detach(daemon: Daemon, folders: dict[str, Path]) -> None:
    alice, bob = folders["alice"], folders["bob"]
    daemon.start()
    pid = daemon.ready()["pid"]

    daemon.write_config({"alice": alice, "bob": bob})
    assert daemon.ready(watching=["alice", "bob"])["pid"] == pid
    for folder in (alice, bob):
        c = comp("attached")
        write_pending(folder, c)
        assert daemon.complete(folder, c.comp_id).result == len("attached")

    daemon.write_config({"bob": bob})
    assert daemon.ready(watching=["bob"])["pid"] == pid
    assert daemon.proc.poll() is None
    c = comp("still bob")
    write_pending(bob, c)
    assert daemon.complete(bob, c.comp_id).result == len("still bob")


def test_log_names_comp_but_never_the_answer(daemon: Daemon, folders: dict[str, Path]) -> None:
    alice = folders["alice"]
    daemon.start()
    daemon.ready()
    c = comp("secret")
    write_pending(alice, c)
    assert daemon.complete(alice, c.comp_id).result == SECRET
    wait_for(lambda: c.comp_id in daemon.log(), "the log line of the computation")
    assert str(SECRET) not in daemon.log()


def test_sigterm_exits_cleanly(daemon: Daemon, folders: dict[str, Path]) -> None:
    daemon.start()
    daemon.ready()
    marker = daemon.tmp / "running"
    stuck = Computation(
        query="slow",
        proposer="p",
        aggregators=["h"],
        targets=["alice"],
        metadata={"marker": str(marker)},
    )
    write_pending(folders["alice"], stuck)
    wait_for(marker.exists, "the handler to be running")  # a sync handler stuck in a thread
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0, daemon.log()
    assert not daemon.ready_file.exists()


def test_bad_handler_file_exits_with_message(tmp_path: Path, folders: dict[str, Path]) -> None:
    d = Daemon(tmp_path, {"alice": folders["alice"]})
    d.handler_file.write_text("def nothing(comp):\n    return 1\n")
    d.start()
    try:
        assert d.proc is not None
        assert d.proc.wait(timeout=15) == 2
        assert "no handler found" in d.log()
    finally:
        d.stop()

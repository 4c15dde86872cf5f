"""A small client for the topology's own supervisord, over its Unix XML-RPC socket.

supervisord restarts crashed programs and isolates them from each other; we only
start it, tell it the config changed, ask it what runs, and shut it down. Talking
XML-RPC directly (rather than shelling out to supervisorctl) gives structured
answers and exact error codes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beehive.core.errors import BeehiveError
from beehive.orchestrator import state_processes, supervisor_auth
from beehive.orchestrator.state_processes import pid_alive, wait_pids_gone
from beehive.topology.layout import NATS_PROGRAM, SUPERVISORD, StateLayout

POLL_INTERVAL = 0.05

#: Longer than a program's stopwaitsecs (5), after which supervisord SIGKILLs it.
STOP_TIMEOUT = 15.0

#: Process states after which a program will not become healthy without help.
FAILED_STATES = frozenset({"FATAL", "BACKOFF", "EXITED", "STOPPED", "UNKNOWN"})

#: Failed states `hive up` starts a program again from (`restart_program`):
#: supervisord gave up on it (FATAL), it exited or was stopped, or it is between
#: retries (BACKOFF). UNKNOWN is supervisord's own confusion: not ours to fix.
RESTARTABLE_STATES = FAILED_STATES - {"UNKNOWN"}


class Faults:
    """The XML-RPC fault codes of supervisord we act on (supervisor.xmlrpc.Faults,
    part of its documented API; copied so `hive status` need not import supervisor)."""

    BAD_NAME = 10
    SPAWN_ERROR = 50
    ALREADY_STARTED = 60
    NOT_RUNNING = 70


class SupervisorError(BeehiveError, RuntimeError):
    """supervisord could not be started, reached or stopped."""


@dataclass(frozen=True)
class UpdateResult:
    added: list[str]
    changed: list[str]
    removed: list[str]


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    state: str
    pid: int
    uptime: float
    description: str = ""
    exitstatus: int = 0


def socket_path(state_dir: Path) -> Path:
    return StateLayout(Path(state_dir)).supervisord_socket


def pid_path(state_dir: Path) -> Path:
    return StateLayout(Path(state_dir)).supervisord_pid


def client(state_dir: Path, timeout: float = 10.0) -> Any:
    """An XML-RPC proxy bound to this state folder's supervisord socket (with its
    credentials, `supervisor_auth`)."""
    layout = StateLayout(Path(state_dir))
    return supervisor_auth.rpc(layout.supervisord_socket, layout.supervisord_auth, timeout)


def is_running(state_dir: Path) -> bool:
    """True when a supervisord answers on the state folder's socket.

    A leftover socket file from a crashed supervisord does not count: we ask.
    """
    if not socket_path(state_dir).exists():
        return False
    try:
        state = client(state_dir, timeout=2.0).supervisor.getState()
    except (OSError, xmlrpc.client.Error):
        return False
    return state.get("statename") in {"RUNNING", "RESTARTING"}


def supervisord_binary() -> str:
    """supervisord beside the running interpreter (the venv), else from PATH."""
    beside = Path(sys.executable).parent / "supervisord"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("supervisord")
    if found is None:
        raise SupervisorError("supervisord not found beside the interpreter or on PATH")
    return found


def start_supervisord(state_dir: Path, timeout: float = 10.0) -> None:
    """Start supervisord on `<state>/supervisord.conf` and wait until it answers.

    supervisord daemonizes: the launched process exits once the daemon has forked,
    and a non-zero exit (bad config, socket in use) is reported with its stderr.
    """
    state = Path(state_dir)
    layout = StateLayout(state)
    conf = layout.supervisord_conf
    supervisor_auth.ensure_credentials(layout.supervisord_auth)  # supervisord.conf includes it
    # A file, not a pipe: the daemon closes its inherited stdio, but a pipe would
    # still tie our read to its lifetime if it ever did not.
    with tempfile.TemporaryFile() as err:
        proc = subprocess.run(
            [supervisord_binary(), "-c", str(conf)],
            cwd=state,
            # Inherited by every process below it: how `processes` finds them all.
            env={**os.environ, **state_processes.mark(state)},
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            timeout=timeout,
            check=False,
        )
        err.seek(0)
        output = err.read().decode(errors="replace").strip()
    if proc.returncode != 0:
        raise SupervisorError(f"supervisord failed to start (exit {proc.returncode}): {output}")
    deadline = time.monotonic() + timeout
    while not is_running(state):
        if time.monotonic() > deadline:
            log = layout.log(SUPERVISORD)
            tail = _tail_file(log, 20) if log.exists() else output
            raise SupervisorError(f"supervisord did not answer within {timeout}s:\n{tail}")
        time.sleep(POLL_INTERVAL)


def update(state_dir: Path, before_start: Callable[[], object] | None = None) -> UpdateResult:
    """Apply a rewritten supervisord.conf, like `supervisorctl update`.

    Only groups whose config differs (the BEEHIVE_CONFIG_HASH in their
    environment makes any config change a difference) are stopped and re-added;
    everything else keeps running untouched. `before_start` runs once removed
    programs are stopped and before anything (re)starts: the moment to make
    running programs reload (nats-server forgetting a removed node's user only
    after that node has left, and knowing a new node's user before it connects).
    """
    rpc = client(state_dir)
    [[added, changed, removed]] = rpc.supervisor.reloadConfig()
    for name in removed:
        _stop_group(rpc, name)
        rpc.supervisor.removeProcessGroup(name)
    if before_start is not None:
        before_start()
    for name in changed:
        _stop_group(rpc, name)
        rpc.supervisor.removeProcessGroup(name)
        rpc.supervisor.addProcessGroup(name)
    for name in added:
        rpc.supervisor.addProcessGroup(name)
    return UpdateResult(added=sorted(added), changed=sorted(changed), removed=sorted(removed))


def signal_program(state_dir: Path, name: str, sig: str) -> bool:
    """Send `sig` (e.g. "HUP") to a running program; False if it is not running."""
    try:
        client(state_dir).supervisor.signalProcess(name, sig)
    except xmlrpc.client.Fault as fault:
        if fault.faultCode in (Faults.NOT_RUNNING, Faults.BAD_NAME):
            return False
        raise
    return True


def restart_program(state_dir: Path, name: str) -> bool:
    """Stop `name` if it runs (or waits between retries), then start it again,
    without waiting for it to be up: the health wait does that, and names the
    program if it fails again. False if supervisord could not spawn it (the
    health wait reports why) or it was already starting on its own."""
    _stop_group(client(state_dir), name)
    return start_program(state_dir, name)


def start_program(state_dir: Path, name: str) -> bool:
    """Start `name` without waiting (the health wait does); False when it was
    already running or starting."""
    try:
        client(state_dir).supervisor.startProcess(name, False)
    except xmlrpc.client.Fault as fault:
        if fault.faultCode in (Faults.ALREADY_STARTED, Faults.SPAWN_ERROR):
            return False
        raise
    return True


def stop_programs(state_dir: Path, names: list[str]) -> None:
    """Stop each of `names` (a stopped one stays stopped) and wait until none is
    STOPPING. Supervisord will not restart them until asked: `hive start` or
    `hive up`."""
    rpc = client(state_dir)
    for name in names:
        _ask_to_stop(rpc, name)
    _await_stopped(rpc, None, STOP_TIMEOUT)


def _stop_group(rpc: Any, name: str, timeout: float = STOP_TIMEOUT) -> None:
    _ask_to_stop(rpc, name)
    _await_stopped(rpc, name, timeout)


def _ask_to_stop(rpc: Any, name: str) -> None:
    try:
        rpc.supervisor.stopProcessGroup(name, False)
    except xmlrpc.client.Fault as fault:
        if fault.faultCode != Faults.NOT_RUNNING:
            raise


def _await_stopped(rpc: Any, group: str | None, timeout: float) -> None:
    """Poll until no process (of `group`, or at all) is STOPPING.

    We ask supervisord to stop without waiting and poll ourselves, because its own
    `wait=True` answers only on its next 1-second main-loop tick: a second lost
    per restarted program and per `hive down`.
    """
    deadline = time.monotonic() + timeout
    while True:
        stopping = [
            info["name"]
            for info in rpc.supervisor.getAllProcessInfo()
            if info["statename"] == "STOPPING" and group in (None, info["group"])
        ]
        if not stopping:
            return
        if time.monotonic() > deadline:
            raise SupervisorError(f"still stopping after {timeout}s: {', '.join(stopping)}")
        time.sleep(POLL_INTERVAL)


def processes(state_dir: Path) -> list[ProcessInfo]:
    """Every supervised process, with its state and (if running) pid and uptime."""
    out = []
    for info in client(state_dir).supervisor.getAllProcessInfo():
        running = info["pid"] != 0 and info["start"] > 0
        out.append(
            ProcessInfo(
                name=info["name"],
                state=info["statename"],
                pid=int(info["pid"]),
                uptime=float(info["now"] - info["start"]) if running else 0.0,
                description=info.get("description", ""),
                exitstatus=int(info.get("exitstatus", 0)),
            )
        )
    return out


def read_pid(state_dir: Path) -> int | None:
    try:
        return int(pid_path(state_dir).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def shutdown(state_dir: Path, timeout: float = 10.0) -> list[int]:
    """Stop every program, then supervisord; wait until all of those pids are gone.

    Returns the pids that were stopped (supervisord's included). If supervisord no
    longer answers but its pidfile names a live supervisord for this state folder,
    it gets SIGTERM, which makes it stop its children the same way.
    """
    state = Path(state_dir)
    sup_pid = read_pid(state)
    child_pids: list[int] = []
    if is_running(state):
        rpc = client(state, timeout=timeout)
        child_pids = [p.pid for p in processes(state) if p.pid]
        # Nodes and handlers first, NATS last: a node leaving cleanly needs its server.
        for group in {p.name for p in processes(state)} - {NATS_PROGRAM}:
            rpc.supervisor.stopProcessGroup(group, False)
        _await_stopped(rpc, None, timeout)
        rpc.supervisor.stopAllProcesses(False)
        _await_stopped(rpc, None, timeout)
        # It may close the socket while answering: the pid wait below is the proof.
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            rpc.supervisor.shutdown()
    elif sup_pid is not None and _is_our_supervisord(sup_pid, state):
        os.kill(sup_pid, signal.SIGTERM)
    else:
        return []
    pids = [*child_pids, *([sup_pid] if sup_pid else [])]
    left = wait_pids_gone(pids, timeout)
    if left:
        raise SupervisorError(f"processes still running after {timeout}s: {left}")
    return pids


def orphans(state_dir: Path) -> list[int]:
    """Processes of `state_dir` that its supervisord (if it runs) does not supervise."""
    return state_processes.orphans(
        state_dir, read_pid(state_dir) if is_running(state_dir) else None
    )


def _is_our_supervisord(pid: int, state_dir: Path) -> bool:
    """Guard against pid reuse: only signal a supervisord started on our config."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    conf = os.fsencode(StateLayout(Path(state_dir)).supervisord_conf)
    return any(b"supervisord" in arg for arg in cmdline) and conf in cmdline


def tail_log(state_dir: Path, program: str, lines: int = 20) -> str:
    """The last `lines` lines of a program's log, read from disk so it works after
    supervisord is gone too."""
    return _tail_file(StateLayout(Path(state_dir)).log(program), lines)


def _tail_file(path: Path, lines: int, max_bytes: int = 64 * 1024) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])

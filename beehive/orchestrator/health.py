"""Readiness probes: is every program not just running but doing its job?

supervisord's RUNNING only means "alive for startsecs". `hive up` must return when
the hive can take a query, so each program declares how to tell (Readiness in the
plan) and we wait for that — failing fast, with the program's log, when
supervisord says a program died instead of making the user wait for a timeout.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Collection
from pathlib import Path

from beehive.core.errors import BeehiveError
from beehive.core.processes import read_ready
from beehive.flower.control import ControlError, call
from beehive.orchestrator import supervisor
from beehive.security.tls_client import client_context
from beehive.topology.plan import Plan, Readiness

POLL_INTERVAL = 0.05
#: The count of ready nodes is reported at most this often (and when complete).
COUNT_EVERY = 1.0
PROBE_TIMEOUT = 1.0


class UnhealthyError(BeehiveError, RuntimeError):
    """A program died or never became ready; carries its last log lines."""

    def __init__(self, program: str, state: str, log_tail: str, reason: str = "") -> None:
        self.program = program
        self.state = state
        self.log_tail = log_tail
        message = f"{program} is not healthy ({state})"
        if reason:
            message += f": {reason}"
        if log_tail:
            message += f"\n--- last lines of logs/{program}.log ---\n{log_tail}"
        super().__init__(message)


def probe_nats(target: str, ca_file: str | None = None, timeout: float = PROBE_TIMEOUT) -> bool:
    """Does a NATS server answer at "host:port" as a node would need it to?

    It must send its INFO line and, with `ca_file`, complete a TLS handshake with
    a certificate that CA signed (the nodes' own context, `client_context`).

    Not a bare TCP connect: nats-server waits for the TLS handshake after INFO,
    and a client that hangs up before it is logged as `[ERR] … TLS handshake
    error` on every healthy `hive up`. A handshake that completes and closes is
    logged by nothing, and it proves more (the server's certificate verifies),
    for no more than one round trip. Credentials are not needed, and not sent:
    CONNECT without them would be an authorization error in the log instead.
    """
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as raw:
            with raw.makefile("rb") as f:
                if not f.readline(64 * 1024).startswith(b"INFO "):
                    return False
            if ca_file is None:
                return True
            with client_context(Path(ca_file)).wrap_socket(raw, server_hostname=host):
                return True
    except (OSError, ValueError):  # ssl.SSLError is an OSError; ValueError: a bad port
        return False


def probe_control_socket(path: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Ask a node `{"op": "health"}`; ready when it is connected and subscribed."""
    try:
        answer = call(Path(path), {"op": "health"}, timeout=timeout)
    except ControlError:
        return False
    return answer.get("connected") is True and answer.get("subscribed") is True


def probe_ready_file(path: str, pid: int, watching: tuple[str, ...] | None = None) -> bool:
    """Ready when the file names the live process: a stale file left by an earlier
    run (another pid) does not count. With `watching`, the daemon must also report
    exactly those aliases (a live re-attach is done only once it says so)."""
    found = read_ready(Path(path))
    if found is None or found[0] != pid:
        return False
    return watching is None or sorted(found[1]) == sorted(watching)


def probe(readiness: Readiness, pid: int, ready_sockets: set[str] | None = None) -> bool:
    """Does `readiness` hold? For control sockets every one must answer; those
    that did are added to `ready_sockets` (when given) and not asked again."""
    if readiness.kind == "nats":
        return probe_nats(readiness.target, readiness.ca_file)
    if readiness.kind == "control_socket":
        done = set() if ready_sockets is None else ready_sockets
        for path in readiness.targets:
            if path not in done and probe_control_socket(path):
                done.add(path)
        return all(path in done for path in readiness.targets)
    if readiness.kind == "ready_file":
        return probe_ready_file(readiness.target, pid, readiness.watching)
    raise ValueError(f"unknown readiness kind {readiness.kind!r}")


def wait_healthy(
    plan: Plan,
    timeout: float = 30.0,
    on_progress: Callable[[str], None] | None = None,
    *,
    only: Collection[str] | None = None,
    already_ready: Collection[str] = (),
) -> None:
    """Return once every program of `plan` (or those named in `only`) is RUNNING
    and its readiness holds.

    Raises UnhealthyError as soon as any program is FATAL/BACKOFF/EXITED/STOPPED
    (a program ready earlier that dies meanwhile counts too), or at `timeout`
    naming the first program still not ready. Programs in `already_ready` were
    found ready by an earlier call: only watched for dying, not probed again.

    Progress names each other program as it gets ready, but counts nodes
    ("312/402 nodes ready"): one line, however many there are.
    """
    report = on_progress or (lambda _msg: None)
    deadline = time.monotonic() + timeout
    programs = [p for p in plan.programs if only is None or p.name in only]
    ready: set[str] = {p.name for p in programs if p.name in already_ready}
    sockets = [
        s for p in programs if p.readiness.kind == "control_socket" for s in p.readiness.targets
    ]
    ready_sockets = {
        s
        for p in programs
        if p.name in ready and p.readiness.kind == "control_socket"
        for s in p.readiness.targets
    }
    last_state: dict[str, str] = {}
    told, next_count = (-1, -1), 0.0
    while True:
        infos = {p.name: p for p in supervisor.processes(plan.state_dir)}
        for program in programs:
            info = infos.get(program.name)
            state = info.state if info else "MISSING"
            if info is None or state in supervisor.FAILED_STATES:
                raise UnhealthyError(
                    program.name,
                    state,
                    _log_tail(plan.state_dir, program.name),
                    info.description if info else "supervisord does not know it",
                )
            if program.name in ready:
                continue
            nodes = program.readiness.kind == "control_socket"
            if state == "RUNNING" and probe(program.readiness, info.pid, ready_sockets):
                ready.add(program.name)
                if not nodes:
                    report(f"{program.name} ready (pid {info.pid})")
            elif last_state.get(program.name) != state and not nodes:
                report(f"{program.name} {state.lower()}, waiting for {program.readiness.kind}")
            last_state[program.name] = state
        counted = len(ready_sockets), len(sockets)
        if (
            sockets
            and counted != told
            and (counted[0] == counted[1] or time.monotonic() >= next_count)
        ):
            report(f"{counted[0]}/{counted[1]} nodes ready")
            told, next_count = counted, time.monotonic() + COUNT_EVERY
        if len(ready) == len(programs):
            return
        if time.monotonic() > deadline:
            waiting = next(p for p in programs if p.name not in ready)
            raise UnhealthyError(
                waiting.name,
                last_state.get(waiting.name, "UNKNOWN"),
                _log_tail(plan.state_dir, waiting.name),
                f"not ready within {timeout:g}s ({waiting.readiness.kind} "
                f"{', '.join(t for t in waiting.readiness.targets if t not in ready_sockets)})",
            )
        time.sleep(POLL_INTERVAL)


def _log_tail(state_dir: Path, program: str) -> str:
    return supervisor.tail_log(state_dir, program, lines=20)

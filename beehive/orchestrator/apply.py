"""Apply a Plan to its state folder: write what differs, start or update
supervisord, wait until healthy. And take it all down again.

Idempotent by construction: only artifacts whose bytes differ are written, and
supervisord restarts only programs whose config hash changed, so a second
`hive up` with the same topology writes nothing and restarts nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from beehive.core.files import write_atomic
from beehive.orchestrator import state_processes, supervisor
from beehive.orchestrator.environments import ensure_environments
from beehive.orchestrator.health import UnhealthyError, wait_healthy
from beehive.orchestrator.lock import state_lock
from beehive.orchestrator.stream import StreamError, create_stream
from beehive.security.nats_auth import stream_name
from beehive.topology.plan import Plan

DIR_MODE = 0o700


@dataclass(frozen=True)
class ApplyResult:
    written: list[PurePosixPath] = field(default_factory=list)
    removed_files: list[PurePosixPath] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    started_supervisord: bool = False
    reloaded: list[str] = field(default_factory=list)


def apply_plan(
    plan: Plan,
    *,
    timeout: float = 30.0,
    on_progress: Callable[[str], None] | None = None,
) -> ApplyResult:
    """Bring the state folder and its processes to `plan`, then wait until healthy:
    `write_state`, then `converge`, then `await_ready`.

    Raises health.UnhealthyError naming the first program that failed; the rest
    keep running so its log and status can be inspected (`hive down` cleans up).
    Raises environments.EnvironmentBuildError before anything is written or
    started when a handler's requirements do not install.
    """
    report = on_progress or (lambda _msg: None)
    written, stale = write_state(plan, report)
    result = converge(plan, written, stale, report, timeout=timeout)
    await_ready(plan, report, timeout=timeout)
    return result


def write_state(
    plan: Plan, report: Callable[[str], None]
) -> tuple[list[PurePosixPath], list[PurePosixPath]]:
    """The state folder as the plan says: folders, handler environments, every
    artifact whose bytes differ, stale configs deleted. Returns (written, removed).

    Handler environments come first: a failed install leaves everything as it was.
    """
    state = Path(plan.state_dir)
    ensure_layout(plan)
    ensure_environments(plan, report)
    written = write_artifacts(plan)
    stale = plan.stale_files(state)
    for rel in stale:
        (state / rel).unlink(missing_ok=True)
    report_each(report, "wrote", [str(rel) for rel in written])
    report_each(report, "removed", [str(rel) for rel in stale])
    return written, stale


#: Beyond this many items, progress gives a count instead of a line each.
EACH_AT_MOST = 10


def report_each(report: Callable[[str], None], verb: str, items: list[str]) -> None:
    """`<verb> <item>` per item; for more than EACH_AT_MOST one line with the
    count: `hive up` stays readable at a thousand nodes."""
    if len(items) > EACH_AT_MOST:
        report(f"{verb} {len(items)}: {items[0]} … {items[-1]}")
        return
    for item in items:
        report(f"{verb} {item}")


def converge(
    plan: Plan,
    written: list[PurePosixPath],
    stale: list[PurePosixPath],
    report: Callable[[str], None],
    *,
    timeout: float,
) -> ApplyResult:
    """Start supervisord on the written config, or have the running one restart
    exactly the programs whose config hash changed (and signal live reloads)."""
    state = Path(plan.state_dir)
    if not supervisor.is_running(state):
        report("starting supervisord")
        supervisor.start_supervisord(state, timeout=timeout)
        return ApplyResult(
            written=written,
            removed_files=stale,
            added=sorted(p.name for p in plan.programs),
            started_supervisord=True,
        )
    reloaded: list[str] = []

    def reload_running() -> None:
        reloaded.extend(signal_reloads(plan, written))
        for name in reloaded:
            report(f"{name} reloading its config")

    update = supervisor.update(state, before_start=reload_running)
    for verb, names in (
        ("added", update.added),
        ("restarting", update.changed),
        ("removed", update.removed),
    ):
        report_each(report, verb, list(names))
    return ApplyResult(
        written=written,
        removed_files=stale,
        added=update.added,
        changed=update.changed,
        removed=update.removed,
        reloaded=[n for n in reloaded if n not in update.changed],
    )


def await_ready(plan: Plan, report: Callable[[str], None], *, timeout: float) -> None:
    """Wait until every program is ready. With the embedded server, the network's
    stream is created (idempotently) as the admin user once the server is ready
    and before the nodes' health: a node reports itself subscribed only once the
    stream exists."""
    already_ready: tuple[str, ...] = ()
    if plan.stream is not None:
        setup = plan.stream
        wait_healthy(plan, timeout=timeout, on_progress=report, only=(setup.program,))
        already_ready = (setup.program,)
        name = stream_name(setup.network)
        report(f"creating stream {name}")
        try:
            outcome = create_stream(setup, timeout=timeout)
        except StreamError as exc:
            raise UnhealthyError(
                setup.program,
                "RUNNING",
                supervisor.tail_log(Path(plan.state_dir), setup.program),
                str(exc),
            ) from exc
        report(f"stream {name} {outcome}")
    wait_healthy(plan, timeout=timeout, on_progress=report, already_ready=already_ready)


def signal_reloads(plan: Plan, written: list[PurePosixPath]) -> list[str]:
    """Signal running programs that re-read a just-written file (nats-server's users).

    Sent after removed programs stopped and before new ones start, so a node
    added in this same apply finds its NATS user already known and a removed one
    is gone before its user is. Should the program also restart, the signal was
    merely early.
    """
    changed = set(written)
    return [
        prog.name
        for prog in plan.programs
        if prog.reload_signal
        and changed.intersection(prog.reload_on)
        and supervisor.signal_program(Path(plan.state_dir), prog.name, prog.reload_signal)
    ]


def ensure_layout(plan: Plan) -> None:
    """Create the state folder tree owner-only (0700), fixing the mode if needed:
    it holds private keys and sockets that accept commands."""
    state = Path(plan.state_dir)
    state.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(state, DIR_MODE)
    layout = plan.layout
    folders = {*plan.directories, layout.rel(layout.run_dir), layout.rel(layout.logs_dir)}
    folders |= {art.path.parent for art in plan.artifacts if art.path.parent != PurePosixPath(".")}
    for rel in sorted(folders):
        _mkdirs(state, rel)


def _mkdirs(state: Path, rel: PurePosixPath) -> None:
    path = state
    for part in rel.parts:
        path = path / part
        if not path.is_dir():
            path.mkdir(mode=DIR_MODE)
            os.chmod(path, DIR_MODE)  # mkdir's mode is masked by the umask


def write_artifacts(plan: Plan) -> list[PurePosixPath]:
    """Write every artifact whose bytes differ from the disk; return their paths."""
    diff = plan.diff(plan.state_dir)
    todo = {*diff.created, *diff.changed}
    written = []
    for art in plan.artifacts:
        if art.path in todo:
            write_atomic(Path(plan.state_dir) / art.path, art.content, mode=art.mode, durable=True)
            written.append(art.path)
        else:
            # Bytes equal, but the mode may have been loosened by hand.
            target = Path(plan.state_dir) / art.path
            if (target.stat().st_mode & 0o777) != art.mode:
                os.chmod(target, art.mode)
    return written


def down(state_dir: Path, purge: bool = False, timeout: float = 10.0) -> list[int]:
    """Stop supervisord and every process it ran, waiting until all are gone; then
    every other process of this state folder (`processes`: what a handler started,
    orphans of a supervisord that died), by PID.

    `purge` then removes the whole state folder (keys included). Returns the pids
    that were stopped; an already stopped hive is not an error.
    """
    state = Path(state_dir)
    if not state.exists():
        return []
    with state_lock(state, "hive down", on_wait=lambda msg: print(msg, file=sys.stderr)):
        pids = supervisor.shutdown(state, timeout=timeout)
        pids += state_processes.stop(state_processes.marked_pids(state))
        if purge:
            shutil.rmtree(state)
    return pids

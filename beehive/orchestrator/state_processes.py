"""Every process of one state folder, found by the mark it inherits, never by name.

`hive up` starts supervisord with `BEEHIVE_HIVE=<state folder>` in its
environment, and every process below it inherits the mark: nats-server, the
nodes, the handler daemons and whatever a handler starts, including a child that
left its session (`setsid`) or outlived the daemon that forked it. So a process
of this hive is found by reading `/proc/<pid>/environ`, even after its
supervisord died (SIGKILL, OOM) and it was re-parented to init.

- `orphans`: marked processes that no live supervisord of this folder supervises
  (directly or as a descendant). `hive status` reports them, `hive up` stops them
  before it starts anything (no second copy of any program), `hive down` stops
  them with the rest.
- `stop`: SIGTERM, a grace period, then SIGKILL, by PID.

A process that deliberately rewrites its own environment (`env={}` for a child)
drops the mark; only a cgroup would catch that (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from beehive.core.processes import pid_alive

__all__ = [
    "MARK",
    "descendants",
    "mark",
    "marked_pids",
    "orphans",
    "pid_alive",
    "stop",
    "wait_pids_gone",
]

MARK = "BEEHIVE_HIVE"
_PROC = Path("/proc")
POLL_INTERVAL = 0.02


def mark(state_dir: Path) -> dict[str, str]:
    """The environment entry every process of `state_dir` carries."""
    return {MARK: str(Path(state_dir).resolve())}


def wait_pids_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until every pid has exited; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if p > 0]
    while True:
        alive = [p for p in alive if pid_alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(POLL_INTERVAL)


def marked_pids(state_dir: Path) -> list[int]:
    """Every live process (but this one) whose environment carries `state_dir`'s mark."""
    needle = f"{MARK}={Path(state_dir).resolve()}".encode()
    found = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        if needle in environ.split(b"\0") and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def descendants(root: int) -> set[int]:
    """`root`'s children, their children, and so on (from /proc's parent pids)."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[-1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def orphans(state_dir: Path, supervisord: int | None) -> list[int]:
    """Marked processes of `state_dir` outside the tree of `supervisord` (its live
    pid, or None when it is not running: then every marked process is one)."""
    supervised = {supervisord, *descendants(supervisord)} if supervisord else set()
    return [pid for pid in marked_pids(state_dir) if pid not in supervised]


def stop(pids: list[int], timeout: float = 5.0) -> list[int]:
    """SIGTERM each of `pids`, SIGKILL what is left after `timeout`; returns the
    pids that were running. Waits until every one is gone (or a zombie)."""
    running = [pid for pid in pids if pid_alive(pid)]
    left = running
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        left = wait_pids_gone(left, wait)
        if not left:
            break
    return running

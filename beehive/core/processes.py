"""Facts about local processes that several parts of the hive ask: is a pid
alive, what has it cost so far (`hive top`, scripts/bench.py), and which nodes
does a live handler daemon say it serves.

A handler daemon's ready file (`run/handler-<name>.ready`, written by
beehive/nectar/daemon.py) holds `{"pid": …, "watching": [aliases]}`: the health
check reads it to know the daemon is ready, a target node to know whether any
handler serves it at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["cpu_seconds", "pid_alive", "read_ready", "rss_bytes", "served"]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie.

    A zombie has exited; it lingers only until its parent (for a daemonized
    supervisord, whatever init this machine has) reaps it, which some container
    inits never do.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds `pid` has used so far (None: it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def rss_bytes(pid: int) -> int | None:
    """Resident memory of `pid` (None: it is gone). Shared pages count in every
    process that maps them, so a sum over processes overstates."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def read_ready(path: Path) -> tuple[int, tuple[str, ...]] | None:
    """A ready file's (pid, watched aliases); None if missing or not one."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or data["pid"] <= 0:
        return None
    watching = data.get("watching") or []
    if not isinstance(watching, list):
        return None
    return data["pid"], tuple(str(a) for a in watching)


def served(run_dir: Path, alias: str) -> bool:
    """Whether a live handler daemon of this state folder says it watches `alias`."""
    for ready in run_dir.glob("handler-*.ready"):
        found = read_ready(ready)
        if found is not None and alias in found[1] and pid_alive(found[0]):
            return True
    return False

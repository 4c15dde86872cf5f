"""One `hive up` or `hive down` at a time per state folder.

Two commands applying to one state folder at once race on supervisord's socket
and config (one of them printed supervisord's raw "already listening", a `down`
during an `up` printed `[Errno 32] Broken pipe`). Every command that changes what
runs takes an exclusive lock on `<state>/.lock` (flock: released by the kernel
if the holder dies, so a crash never leaves it held). A second command waits,
saying who holds the lock, up to a bound, then fails naming the holder.

Re-entrant within one process: `hive up` that fails on a first start takes the
hive down under the lock it already holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from beehive.core.errors import BeehiveError

__all__ = ["LOCK_WAIT_SECONDS", "StateLocked", "state_lock"]

#: How long a second command waits for the first before giving up.
LOCK_WAIT_SECONDS = 300.0
_POLL = 0.1

_held: dict[Path, int] = {}  # state folder → depth, for re-entry in this process


class StateLocked(BeehiveError):
    """Another command holds the state folder's lock for too long."""


@contextlib.contextmanager
def state_lock(
    state_dir: Path,
    purpose: str,
    *,
    timeout: float = LOCK_WAIT_SECONDS,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold `<state_dir>/.lock` exclusively for the block (creating the folder
    0700 if needed), as `purpose` ("hive up"): what a waiting command is told,
    once, through `on_wait`."""
    key = Path(os.path.abspath(state_dir))
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    key.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(key / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _acquire(fd, key, timeout, on_wait)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {purpose}\n".encode())
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def _acquire(fd: int, key: Path, timeout: float, on_wait: Callable[[str], None] | None) -> None:
    give_up = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = _holder(key)
        if time.monotonic() > give_up:
            raise StateLocked(
                f"{key} is in use by {holder} for more than {timeout:g}s",
                hint="wait for it to finish, or stop it; then run the command again",
            )
        if not told and on_wait is not None:
            on_wait(f"waiting for {holder} to finish with {key}")
            told = True
        time.sleep(_POLL)


def _holder(key: Path) -> str:
    try:
        pid, _, command = (key / ".lock").read_text().strip().partition(" ")
    except OSError:
        return "another command"
    return f"`{command}` (pid {pid})" if pid else "another command"

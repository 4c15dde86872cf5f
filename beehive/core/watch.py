"""Folder watching that knows when it is live, and costs nothing at rest.

It reports files that arrive: renamed into a folder (every Bee-Hive write,
`write_atomic`) or written there and closed. Deletions are not reported: no
reader needs them, and each would wake the watcher's process for nothing.

Both sides of the dispatch folder (node and handler daemon) must not miss a file
written while their watcher starts: `FolderWatch.start()` returns only once the
watch is installed, so a scan done after `start()` plus the events after it cover
every file.

On Linux the watch is inotify, read through the event loop (`add_reader` on the
inotify descriptor): no thread and no polling step, so an idle watcher never
wakes, and a file renamed into a folder is handed on within the loop iteration
that sees it (node → handler → node measured 1.4–1.9 ms in all, against 4.5 ms
with watchfiles' 1 ms step: docs/performance.md). Elsewhere it falls
back to watchfiles, whose thread wakes every WATCH_STEP_MS and whose own start is
proven by a probe file the watcher must report.

If the kernel's event queue overflows (more than `max_queued_events` changes
unread), events are lost; the watcher then reports every file of its folders as
modified, so a reader that is idempotent (both dispatch readers are) misses
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

__all__ = ["Change", "FolderWatch", "OnChange", "WatchFilter"]

log = logging.getLogger("beehive.watch")


class Change(enum.IntEnum):
    """What happened to a file (the values are watchfiles' own)."""

    added = 1
    modified = 2
    deleted = 3


OnChange = Callable[[Change, Path], None]
WatchFilter = Callable[[Change, str], bool]

#: watchfiles (the fallback) yields a batch `step` ms after the last change, and its
#: thread wakes every step: ~2x this is a hop's latency there.
WATCH_STEP_MS = 1
#: watchfiles: never hold a batch of changes longer than this, however busy the folder.
WATCH_DEBOUNCE_MS = 50
#: watchfiles: re-touch an unreported probe this often (its inotify watch is
#: installed inside its first step, possibly after our first probe was written).
PROBE_RETRY_S = 0.05
PROBE_PREFIX = ".watch-probe-"

# inotify masks (linux/inotify.h).
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_TO = 0x080
_IN_Q_OVERFLOW = 0x4000
_IN_ISDIR = 0x40000000
#: A file has arrived when it is renamed in (every Bee-Hive write: write_atomic)
#: or closed after writing (someone else's in-place write).
_IN_MASK = _IN_CLOSE_WRITE | _IN_MOVED_TO


def _inotify_available() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import inotify_simple  # noqa: F401
    except ImportError:
        return False
    return True


class FolderWatch:
    """Watch `folders` (not recursively); call `on_change` for each arrival that
    `watch_filter` accepts, from the event loop."""

    def __init__(
        self,
        folders: Sequence[Path],
        on_change: OnChange,
        watch_filter: WatchFilter | None = None,
        *,
        backend: Literal["auto", "inotify", "watchfiles"] = "auto",
    ) -> None:
        if not folders:
            raise ValueError("FolderWatch needs at least one folder")
        self.folders = sorted({Path(f) for f in folders})
        self.on_change = on_change
        self.watch_filter = watch_filter
        if backend == "auto":
            backend = "inotify" if _inotify_available() else "watchfiles"
        self._backend: _Inotify | _Watchfiles = (
            _Inotify(self) if backend == "inotify" else _Watchfiles(self)
        )

    async def start(self, timeout: float = 10.0) -> None:
        """Start watching; return once no change in any folder can be missed."""
        for folder in self.folders:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self._backend.start(timeout)

    async def wait(self) -> None:
        """Return when the watcher stops; raise what stopped it if it failed."""
        await self._backend.wait()

    async def stop(self) -> None:
        await self._backend.stop()

    def _deliver(self, change: Change, path: Path) -> None:
        """One arrival to `on_change`; what it raises is logged, so the rest of
        the batch is still delivered."""
        try:
            if self.watch_filter is None or self.watch_filter(change, str(path)):
                self.on_change(change, path)
        except Exception:
            log.exception("handling %s failed", path)

    def _rescan(self) -> None:
        """Report every file as modified: after lost events, whatever may have changed."""
        for folder in self.folders:
            with contextlib.suppress(OSError):
                for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                    self._deliver(Change.modified, Path(entry.path))


class _Inotify:
    """inotify on the event loop: the kernel queues events from `add_watch` on, so
    the watch is live as soon as `start()` has installed it."""

    def __init__(self, owner: FolderWatch) -> None:
        self.owner = owner
        self._inotify: Any = None
        self._folders: dict[int, Path] = {}
        self._done: asyncio.Future[None] | None = None

    async def start(self, timeout: float) -> None:
        from inotify_simple import INotify

        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._inotify = INotify(nonblocking=True)
        try:
            for folder in self.owner.folders:
                self._folders[self._inotify.add_watch(folder, _IN_MASK)] = folder
        except OSError:
            self._inotify.close()
            raise
        loop.add_reader(self._inotify.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            events = self._inotify.read(timeout=0)
        except OSError as exc:
            self._close()
            if self._done is not None and not self._done.done():
                self._done.set_exception(exc)
            return
        for event in events:
            if event.mask & _IN_Q_OVERFLOW:
                log.warning("inotify event queue overflowed: rescanning %d folder(s)",
                            len(self._folders))  # fmt: skip
                self.owner._rescan()
                continue
            folder = self._folders.get(event.wd)
            if folder is None or not event.name or event.mask & _IN_ISDIR:
                continue
            self.owner._deliver(Change.added, folder / event.name)

    def _close(self) -> None:
        if self._inotify is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._inotify.fileno())
            self._inotify.close()
            self._inotify = None

    async def wait(self) -> None:
        if self._done is not None:
            await self._done

    async def stop(self) -> None:
        self._close()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)


class _Watchfiles:
    """watchfiles' thread, for systems without inotify: live once it reported a
    probe file written into every watched folder."""

    def __init__(self, owner: FolderWatch) -> None:
        self.owner = owner
        self._stop = asyncio.Event()
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        # By name: the watcher reports resolved paths, which may differ from ours.
        self._probes = {f"{PROBE_PREFIX}{token}-{i}": f for i, f in enumerate(owner.folders)}
        self._seen = {name: asyncio.Event() for name in self._probes}
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watch {self.owner.folders[0]}")
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        try:
            while missing := [n for n, seen in self._seen.items() if not seen.is_set()]:
                if self._task.done():
                    self._task.result()  # re-raise why the watcher died
                    raise RuntimeError("file watcher stopped before it was live")
                if loop.time() > give_up:
                    raise TimeoutError(
                        "file watcher never reported changes in "
                        + ", ".join(str(self._probes[n]) for n in missing)
                        + " (a filesystem without change notification?)"
                    )
                for name in missing:
                    (self._probes[name] / name).write_bytes(b"")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._seen[missing[0]].wait(), PROBE_RETRY_S)
        finally:
            for name, folder in self._probes.items():
                (folder / name).unlink(missing_ok=True)

    async def wait(self) -> None:
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        self._stop.set()  # awatch returns within WATCH_STEP_MS
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _accept(self, change: Any, path: str) -> bool:
        if os.path.basename(path).startswith(PROBE_PREFIX):
            return True
        if int(change) == Change.deleted:
            return False  # arrivals only, as with inotify
        filt = self.owner.watch_filter
        return filt is None or filt(Change(int(change)), path)

    async def _run(self) -> None:
        from watchfiles import awatch

        # watchfiles logs every batch ("N changes detected") at INFO.
        logging.getLogger("watchfiles.main").setLevel(logging.WARNING)
        async for changes in awatch(
            *self.owner.folders,
            watch_filter=self._accept,
            step=WATCH_STEP_MS,
            debounce=WATCH_DEBOUNCE_MS,
            stop_event=self._stop,
            recursive=False,
        ):
            for change, raw in sorted(changes, key=lambda c: c[1]):
                path = Path(raw)
                if path.name.startswith(PROBE_PREFIX):
                    seen = self._seen.get(path.name)
                    if seen is not None:
                        seen.set()
                    continue
                self.owner.on_change(Change(int(change)), path)

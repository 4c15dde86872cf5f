"""Folder watching that knows when it is live.

Both sides of the dispatch folder (node and handler daemon) must not miss a file
written while their watcher starts. `FolderWatch.start()` returns only once the
watcher has reported a probe file it wrote itself, so a scan done after `start()`
plus the events after it cover every file. No polling loop: inotify via watchfiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from watchfiles import Change, awatch

#: watchfiles yields a batch `step` ms after the last change; ~2x this is the latency
#: of one hop (measured: step 2 → ~4 ms, step 5 → ~9 ms). Idle cost grows as it shrinks.
WATCH_STEP_MS = 2
WATCH_DEBOUNCE_MS = 50

OnChange = Callable[[Change, Path], None]


class FolderWatch:
    def __init__(self, folders: Sequence[Path], on_change: OnChange) -> None:
        if not folders:
            raise ValueError("FolderWatch needs at least one folder")
        self.folders = [Path(f) for f in folders]
        self.on_change = on_change
        self._stop = asyncio.Event()
        self._live = asyncio.Event()
        self._probe = self.folders[0] / f".watch-probe-{os.getpid()}-{secrets.token_hex(4)}"
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        """Start watching; return once events are known to flow."""
        for folder in self.folders:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._task = asyncio.create_task(self._run(), name=f"watch {self.folders[0]}")
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        try:
            while not self._live.is_set():
                if self._task.done():
                    self._task.result()  # re-raise why the watcher died
                if loop.time() > give_up:
                    raise TimeoutError(f"watcher on {self.folders[0]} did not start")
                self._probe.write_bytes(b"probe")  # rewrite until the watcher sees one
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._live.wait(), 0.1)
        finally:
            self._probe.unlink(missing_ok=True)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async for changes in awatch(
            *self.folders,
            watch_filter=None,
            step=WATCH_STEP_MS,
            debounce=WATCH_DEBOUNCE_MS,
            stop_event=self._stop,
            recursive=False,
        ):
            for change, raw in sorted(changes, key=lambda c: c[1]):
                path = Path(raw)
                if path.name.startswith(".watch-probe-"):
                    if path == self._probe:
                        self._live.set()
                    continue
                self.on_change(change, path)

"""FolderWatch on real folders, with both of its backends.

inotify (Linux, the default here) reads through the event loop; watchfiles is the
fallback for systems without inotify and is exercised here by asking for it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from beehive.core.files import write_atomic
from beehive.core.watch import Change, FolderWatch

BACKENDS = ["inotify", "watchfiles"]


class Seen:
    """Changes reported, and a way to await one."""

    def __init__(self) -> None:
        self.changes: list[tuple[Change, Path]] = []
        self._event = asyncio.Event()

    def __call__(self, change: Change, path: Path) -> None:
        self.changes.append((change, path))
        self._event.set()

    async def until(self, predicate, timeout: float = 5.0) -> None:
        async def wait() -> None:
            while not predicate():
                self._event.clear()
                await self._event.wait()

        await asyncio.wait_for(wait(), timeout)

    def names(self, change: Change | None = None) -> set[str]:
        return {p.name for c, p in self.changes if change is None or c == change}


@pytest.mark.parametrize("backend", BACKENDS)
def test_reports_arrivals_through_the_filter_and_no_deletions(tmp_path: Path, backend):
    async def main() -> None:
        seen = Seen()
        watch = FolderWatch(
            [tmp_path / "a", tmp_path / "b"],
            seen,
            lambda _change, path: not os.path.basename(path).startswith("."),
            backend=backend,
        )
        await watch.start()
        try:
            write_atomic(tmp_path / "a" / "one.pending", b"1")  # a rename, as every writer here
            (tmp_path / "b" / "two.complete").write_bytes(b"2")  # written in place
            (tmp_path / "b" / ".hidden").write_bytes(b"")  # refused by the filter
            await seen.until(lambda: {"one.pending", "two.complete"} <= seen.names())
            (tmp_path / "a" / "one.pending").unlink()
            write_atomic(tmp_path / "a" / "after.pending", b"")  # reported after the unlink
            await seen.until(lambda: "after.pending" in seen.names())
        finally:
            await watch.stop()
        assert not seen.names(Change.deleted)
        assert ".hidden" not in seen.names()
        assert not any(n.endswith(".tmp") for n in seen.names())  # write_atomic's temp file
        paths = {p for _, p in seen.changes}
        assert tmp_path / "a" / "one.pending" in paths
        assert tmp_path / "b" / "two.complete" in paths

    asyncio.run(main())


def test_inotify_is_live_when_start_returns_and_needs_no_thread(tmp_path: Path):
    """A file written right after start() is reported: no probe, no warm-up; and
    nothing runs at rest but the event loop itself."""

    async def main() -> None:
        seen = Seen()
        before = set(threading.enumerate())
        watch = FolderWatch([tmp_path], seen, backend="inotify")
        await watch.start()
        try:
            # New threads only: an earlier test's thread may still be ending.
            assert set(threading.enumerate()) - before == set()
            write_atomic(tmp_path / "right-away.pending", b"")
            await seen.until(lambda: "right-away.pending" in seen.names())
        finally:
            await watch.stop()

    asyncio.run(main())


def test_inotify_overflow_rescans_every_file(tmp_path: Path, caplog):
    """More changes than the kernel queues before the loop reads any: events are
    lost, and the watcher reports every file instead, so none is missed."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 100_000:
        pytest.skip(f"max_queued_events is {limit}: too many files to overflow it here")

    async def main() -> None:
        seen = Seen()
        watch = FolderWatch([tmp_path], seen, backend="inotify")
        await watch.start()
        names = {f"{i}.pending" for i in range(limit + 100)}
        try:
            for name in names:  # no await: the loop reads nothing meanwhile
                (tmp_path / name).write_bytes(b"")
            await seen.until(lambda: names <= seen.names(), timeout=30)
        finally:
            await watch.stop()

    asyncio.run(main())
    assert "inotify event queue overflowed" in caplog.text


def test_a_callback_that_raises_does_not_stop_the_watch(tmp_path: Path, caplog):
    async def main() -> None:
        seen = Seen()

        def picky(change: Change, path: Path) -> None:
            seen(change, path)
            if path.name == "bad.pending":
                raise ValueError("cannot handle this one")

        watch = FolderWatch([tmp_path], picky, backend="inotify")
        await watch.start()
        try:
            write_atomic(tmp_path / "bad.pending", b"")
            write_atomic(tmp_path / "good.pending", b"")
            await seen.until(lambda: "good.pending" in seen.names())
        finally:
            await watch.stop()

    asyncio.run(main())
    assert "handling" in caplog.text and "bad.pending" in caplog.text

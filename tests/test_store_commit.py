"""The node store's group commit (beehive/flower/store.py), on real SQLite files.

A second connection plays the part of anyone reading the file (the CLI, a
restarted node): it sees only what was committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from beehive.flower.store import Store, storage_failure


def rounds_on_disk(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT comp_id FROM rounds")}


def begin(store: Store, comp_id: str, spec: bytes = b"{}") -> bool:
    return store.begin_round("target", comp_id, spec, b"sig", {"phase": "pending"}, time.time())


def test_outside_a_loop_every_write_commits_at_once(tmp_path: Path):
    store = Store(tmp_path / "local.db")
    assert begin(store, "a")
    assert rounds_on_disk(store.path) == {"a"}
    store.close()


def test_in_a_loop_writes_share_one_commit_that_flushed_awaits(tmp_path: Path):
    async def main() -> None:
        store = Store(tmp_path / "local.db")
        assert begin(store, "a") and begin(store, "b")
        assert not begin(store, "a")  # the open transaction already holds it
        assert rounds_on_disk(store.path) == set()  # nothing committed yet
        await store.flushed()
        assert rounds_on_disk(store.path) == {"a", "b"}
        store.close()

    asyncio.run(main())


def test_a_write_nobody_waits_for_is_committed_lazily(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("beehive.flower.store.LAZY_COMMIT_SECONDS", 0.01)

    async def main() -> None:
        store = Store(tmp_path / "local.db")
        begin(store, "a")
        deadline = time.monotonic() + 5
        while rounds_on_disk(store.path) != {"a"}:
            assert time.monotonic() < deadline, "the lazy commit never ran"
            await asyncio.sleep(0.01)
        store.close()

    asyncio.run(main())


def test_a_refused_write_keeps_the_transaction_for_the_next_flush(tmp_path: Path):
    """A full disk (here: SQLite's own page limit) refuses a write: it raises a
    storage failure, the open transaction is rolled back, and its earlier
    statements are replayed by the next flush once there is room."""

    async def main() -> None:
        store = Store(tmp_path / "local.db")
        begin(store, "small")
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(sqlite3.OperationalError) as refused:
            begin(store, "large", spec=b"x" * 1_000_000)
        assert storage_failure(refused.value) is not None
        assert not store.db.in_transaction
        assert rounds_on_disk(store.path) == set()
        store.db.execute("PRAGMA max_page_count = 1073741823")
        await store.flushed()
        assert rounds_on_disk(store.path) == {"small"}  # replayed; the caller redoes "large"
        store.close()

    asyncio.run(main())

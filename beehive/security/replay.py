"""Replay windows: which (sender, message id) pairs a node has already accepted.

Two implementations of one small interface: in memory (tests, tools) and SQLite
(the node), so a restarted node does not reopen the window and accept an envelope
it took before the restart.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

__all__ = ["MemoryReplayWindow", "ReplayWindow", "SqliteReplayWindow"]


class ReplayWindow(Protocol):
    def remember(self, sender: str, msg_id: bytes, expires_at: float, now: float) -> bool:
        """Record the id until `expires_at`; False if it is already held (a replay)."""
        ...

    def expire(self, now: float) -> int:
        """Forget every id whose time has passed; how many went."""
        ...

    def __len__(self) -> int: ...


class MemoryReplayWindow:
    """In-process window; forgets everything when the process ends."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, bytes], float] = {}
        self._heap: list[tuple[float, tuple[str, bytes]]] = []

    def remember(self, sender: str, msg_id: bytes, expires_at: float, now: float) -> bool:
        self.expire(now)
        key = (sender, msg_id)
        if key in self._seen:
            return False
        self._seen[key] = expires_at
        heapq.heappush(self._heap, (expires_at, key))
        return True

    def expire(self, now: float) -> int:
        before = len(self._seen)
        while self._heap and self._heap[0][0] < now:
            expiry, key = heapq.heappop(self._heap)
            if self._seen.get(key) == expiry:
                del self._seen[key]
        return before - len(self._seen)

    def __len__(self) -> int:
        return len(self._seen)


class SqliteReplayWindow:
    """Window persisted in the node's SQLite store.

    Check and insert are one statement (INSERT OR IGNORE on the primary key), so
    there is no window between "not seen" and "now seen". Expired ids are
    deleted at most once a minute: the table stays small without a write per
    message spent on housekeeping.
    """

    PRUNE_EVERY = 60.0

    def __init__(
        self,
        db: sqlite3.Connection | Path,
        *,
        synchronous: str = "FULL",
        write: Callable[[str, tuple[Any, ...]], sqlite3.Cursor] | None = None,
    ) -> None:
        """`db` is a connection to share or a database file to open (WAL) on a
        connection of the window's own, with the given `synchronous` level.

        `write` runs the window's writes; by default each commits at once. A node
        passes its store's (`Store.write`, on the store's own connection): an id
        is then committed in the same transaction as the effects of the message
        it names, and that commit comes before the message is acknowledged; an
        id and its effects are on disk together or not at all (then the message
        is delivered again, and handled as the first time).
        """
        if isinstance(db, sqlite3.Connection):
            self.db = db
        else:
            self.db = sqlite3.connect(db, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS seen_messages ("
            " sender TEXT NOT NULL, msg_id BLOB NOT NULL, expires_at REAL NOT NULL,"
            " PRIMARY KEY (sender, msg_id))"
        )
        self._pruned_at = 0.0
        self._write = write or (lambda sql, params: self.db.execute(sql, params))

    def expire(self, now: float) -> int:
        """Delete every id past its TTL (one statement, one transaction); how many
        went. `remember` calls it at most once a minute; a node also calls it on its
        own timer, so an idle window shrinks too: the table holds at most the ids of
        the last TTL, whatever the traffic."""
        cur = self._write("DELETE FROM seen_messages WHERE expires_at < ?", (now,))
        self._pruned_at = now
        return max(cur.rowcount, 0)

    def remember(self, sender: str, msg_id: bytes, expires_at: float, now: float) -> bool:
        if now - self._pruned_at >= self.PRUNE_EVERY:
            self.expire(now)
        else:
            # An expired row for this very id must not count as a replay.
            self._write(
                "DELETE FROM seen_messages WHERE sender = ? AND msg_id = ? AND expires_at < ?",
                (sender, msg_id, now),
            )
        cur = self._write(
            "INSERT OR IGNORE INTO seen_messages VALUES (?, ?, ?)", (sender, msg_id, expires_at)
        )
        return cur.rowcount == 1

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM seen_messages").fetchone()[0])

"""A node's SQLite store: results it proposed, and the state of every open round.

One small database per node (`<data>/local.db`, WAL) so the CLI can read results
while the node writes. Every role writes its round state here *before* the
JetStream message that changed it is acknowledged (synchronous=FULL: a commit is
on disk, as the stream's own `sync_interval: always` is), so a restarted node
resumes its rounds and a target never answers a round twice.

Group commit: inside a running event loop, writes go into one open transaction
that is committed (one fsync) by `flush()`: at once where something must be on
disk before it happens (a share leaving, a result released), or by `flushed()`,
which the node awaits before it acknowledges a message (the commit runs after
the current loop iteration, so the messages handled in it share it). A write
nobody waits for (a target's round marked done after its shares left) rides
with the next commit, or is committed LAZY_COMMIT_SECONDS later: losing it to a
crash only repeats an idempotent step (the same shares sent again). So nothing is
acknowledged, sent or released before what it depends on is stored. A commit
the disk refuses is rolled back and its statements are kept: every write here
is idempotent (INSERT OR IGNORE, whole-state UPDATE, INSERT OR REPLACE, DELETE),
so the next flush replays them, in order, once the disk takes writes again.
Outside a loop (the CLI, tools) every write commits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from beehive.core.dispatch import result_path
from beehive.core.errors import BeehiveError
from beehive.core.models import ComputationResult

Role = Literal["proposer", "aggregator", "target"]

log = logging.getLogger("beehive.node")

#: The longest a write nobody waits for stays uncommitted (see the module doc).
LAZY_COMMIT_SECONDS = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    comp_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    finished_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    comp_id TEXT NOT NULL,
    role TEXT NOT NULL,
    spec BLOB NOT NULL,
    sig BLOB NOT NULL,
    state TEXT NOT NULL,
    expires_at REAL NOT NULL,
    open INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (comp_id, role)
);
CREATE INDEX IF NOT EXISTS rounds_open ON rounds (role, open);
CREATE TABLE IF NOT EXISTS dp_spent (
    comp_id TEXT PRIMARY KEY,
    proposer TEXT NOT NULL,
    epsilon_nano INTEGER NOT NULL,
    spent_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dp_spent_by ON dp_spent (proposer, spent_at);
"""

#: Privacy budgets are counted in integer units of 1e-9 epsilon: sums of floats
#: drift (0.1 + 0.1 + 0.1 > 0.3), and a budget must decline at exactly its limit.
DP_UNITS = 1_000_000_000


def dp_units(epsilon: float) -> int:
    return round(epsilon * DP_UNITS)


#: Closed rounds are kept this long (seconds) past their deadline, then deleted:
#: long enough that a late duplicate still finds "already done".
KEEP_CLOSED = 86400.0


@dataclass(frozen=True)
class StoredRound:
    """One role's persisted round: the signed spec exactly as received, and its state."""

    comp_id: str
    spec: bytes
    sig: bytes
    state: dict[str, Any]


class StoreError(BeehiveError):
    """A node's store that cannot be used: corrupt, or truncated to nothing."""


#: SQLite primary result codes that mean the disk, not the data: SQLITE_READONLY,
#: SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
_STORAGE_CODES = {8, 10, 13, 14}
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS}


def storage_failure(exc: BaseException) -> str | None:
    """What is wrong with the disk when `exc` is a write the disk refused (full,
    read-only, an I/O error), else None. Such a write is worth retrying once
    the disk has room again; any other error is not."""
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _STORAGE_CODES:
            return f"storage error: {exc}"
        return None
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return f"storage error: {exc.strerror or exc}" + (
            f" ({exc.filename})" if exc.filename else ""
        )
    return None


def _damaged(path: Path, why: object) -> StoreError:
    return StoreError(
        f"{path} is not a usable node store ({why})",
        hint="restore it from a backup; or move it away to start this node with no history "
        "(its open rounds and past results are then lost)",
    )


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        #: The last write the disk refused (`storage_failure`), until one succeeds:
        #: the node's health reports it, so `hive status` names the cause.
        self.failure: str | None = None
        #: The statements of the open transaction, or of one whose commit the
        #: disk refused (replayed by the next flush).
        self._unflushed: list[tuple[str, tuple[Any, ...]]] = []
        #: Writes whose content is taken when the next commit runs (`write_later`).
        self._deferred: dict[Hashable, Callable[[], tuple[str, tuple[Any, ...]]]] = {}
        self._flush_soon: asyncio.Handle | None = None  # for whoever awaits flushed()
        self._flush_lazily: asyncio.TimerHandle | None = None  # for writes nobody awaits
        self._flushed: asyncio.Future[None] | None = None
        if self.path.exists() and self.path.stat().st_size == 0:
            # A store is never empty once opened (WAL header, schema): this one was
            # truncated, and opening it would silently start a new history.
            raise _damaged(self.path, "0 bytes: it was truncated")
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self._open()
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from exc

    def _open(self) -> None:
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        # Round state holds shares until a round ends; what is deleted or replaced
        # is overwritten on disk, not left in free pages for a reader of the file.
        self.db.execute("PRAGMA secure_delete=ON")
        self.db.executescript(_SCHEMA)
        self.prune_rounds()

    # ── group commit ─────────────────────────────────────────────────────────

    def write(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """Execute one write in the open transaction (opened, and the refused
        statements replayed, if there is none); commit it now outside a loop."""
        cur = self._execute(sql, params)
        self._commit_later()
        return cur

    def write_later(
        self, key: Hashable, statement: Callable[[], tuple[str, tuple[Any, ...]]]
    ) -> None:
        """A write made when the next commit runs, from what `statement()` returns
        then; a later call with the same `key` replaces it. So a state saved after
        each of many messages (an aggregator's round, share after share) is
        encoded and written once per commit, not once per message; it is in the
        very commit an acknowledgement waits for (`flushed`)."""
        self._deferred[key] = statement
        self._commit_later()

    def _execute(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        self._begin()
        try:
            cur = self.db.execute(sql, params)
        except sqlite3.Error:
            self._rollback()
            raise
        self._unflushed.append((sql, params))
        return cur

    def _commit_later(self) -> None:
        """Commit within LAZY_COMMIT_SECONDS (at once outside an event loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._flush_lazily is None:
            self._flush_lazily = loop.call_later(LAZY_COMMIT_SECONDS, self._flush_quietly)

    def _begin(self) -> None:
        if self.db.in_transaction:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in self._unflushed:
                self.db.execute(sql, params)
        except sqlite3.Error:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def flush(self) -> None:
        """Commit every write so far: one fsync. Raises what the disk said (the
        writes are then kept, and replayed by the next flush)."""
        for handle in (self._flush_soon, self._flush_lazily):
            if handle is not None:
                handle.cancel()
        self._flush_soon = self._flush_lazily = None
        waiter, self._flushed = self._flushed, None
        try:
            while self._deferred:  # one refused stays, for the next flush
                key, statement = next(iter(self._deferred.items()))
                self._execute(*statement())
                del self._deferred[key]
            if self._unflushed:
                self._begin()
                self.db.execute("COMMIT")
                self._unflushed.clear()
        except sqlite3.Error as exc:
            self._rollback()
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()  # retrieved: whoever awaits it sees it anyway
            raise
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def flushed(self) -> None:
        """Return once every write made so far is committed (with whatever else
        is written before the commit runs); raise what the disk said if it refused."""
        if not self._unflushed and not self._deferred:
            return
        loop = asyncio.get_running_loop()
        if self._flushed is None:
            self._flushed = loop.create_future()
        if self._flush_soon is None:
            self._flush_soon = loop.call_soon(self._flush_quietly)
        await asyncio.shield(self._flushed)

    def _flush_quietly(self) -> None:
        """A scheduled commit: a refusal is reported, not raised (the statements
        wait for the next flush)."""
        try:
            self.flush()
        except sqlite3.Error as exc:
            why = storage_failure(exc)
            if why is None:
                log.exception("cannot commit the node's store")
                return
            self.failure = why
            log.warning("%s: the store's latest writes wait for the next commit", why)

    def save_result(self, result: ComputationResult) -> None:
        self.write(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
            (result.comp_id, result.status, result.finished_at, result.model_dump_json()),
        )

    def result(self, comp_id: str) -> ComputationResult | None:
        row = self.db.execute("SELECT body FROM results WHERE comp_id = ?", (comp_id,)).fetchone()
        return ComputationResult.model_validate_json(row[0]) if row else None

    def results(self) -> list[ComputationResult]:
        rows = self.db.execute("SELECT body FROM results ORDER BY finished_at").fetchall()
        return [ComputationResult.model_validate_json(r[0]) for r in rows]

    def begin_round(
        self,
        role: Role,
        comp_id: str,
        spec: bytes,
        sig: bytes,
        state: dict[str, Any],
        expires_at: float,
    ) -> bool:
        """Record a new round; False if this role already holds (or held) it.

        One statement, so "not seen" and "now seen" have no gap between them: it is
        how a target answers a computation once, whichever aggregator's task comes first.
        """
        cur = self.write(
            "INSERT OR IGNORE INTO rounds VALUES (?, ?, ?, ?, ?, ?, 1)",
            (comp_id, role, spec, sig, json.dumps(state), expires_at),
        )
        return cur.rowcount == 1

    def save_round(self, role: Role, comp_id: str, state: dict[str, Any]) -> None:
        self.write(
            "UPDATE rounds SET state = ? WHERE comp_id = ? AND role = ?",
            (json.dumps(state), comp_id, role),
        )

    def save_round_later(
        self, role: Role, comp_id: str, state: Callable[[], dict[str, Any]]
    ) -> None:
        """`save_round` with the state `state()` returns at the next commit."""
        self.write_later(
            ("round", role, comp_id),
            lambda: (
                "UPDATE rounds SET state = ? WHERE comp_id = ? AND role = ?",
                (json.dumps(state()), comp_id, role),
            ),
        )

    def close_round(self, role: Role, comp_id: str, state: dict[str, Any] | None = None) -> None:
        """The round needs nothing more from this role (kept a while as a tombstone)."""
        if state is None:
            self.write("UPDATE rounds SET open = 0 WHERE comp_id = ? AND role = ?", (comp_id, role))
        else:
            self.write(
                "UPDATE rounds SET open = 0, state = ? WHERE comp_id = ? AND role = ?",
                (json.dumps(state), comp_id, role),
            )

    def open_rounds(self, role: Role) -> list[StoredRound]:
        rows = self.db.execute(
            "SELECT comp_id, spec, sig, state FROM rounds WHERE role = ? AND open = 1 "
            "ORDER BY expires_at",
            (role,),
        ).fetchall()
        return [StoredRound(r[0], bytes(r[1]), bytes(r[2]), json.loads(r[3])) for r in rows]

    def spend_dp(
        self,
        comp_id: str,
        proposer: str,
        epsilon: float,
        budget: float,
        window: float,
        now: float | None = None,
    ) -> bool:
        """Spend `epsilon` of `proposer`'s `budget` for round `comp_id`, if the
        spending of the last `window` seconds leaves room; False if it does not.

        Once per round: a round already paid for is True again (a restart, a
        second task for the same round). The row is written in the open
        transaction, so it is on disk before any share of the round leaves (the
        share's own flush commits it). Rows are never deleted: a window made
        longer later still sees every spend."""
        now = time.time() if now is None else now
        if self.db.execute("SELECT 1 FROM dp_spent WHERE comp_id = ?", (comp_id,)).fetchone():
            return True
        if self.dp_spent(proposer, window, now) + dp_units(epsilon) > dp_units(budget):
            return False
        self.write(
            "INSERT OR IGNORE INTO dp_spent VALUES (?, ?, ?, ?)",
            (comp_id, proposer, dp_units(epsilon), now),
        )
        return True

    def dp_spent(self, proposer: str, window: float, now: float | None = None) -> int:
        """What `proposer`'s rounds spent in the last `window` seconds, in DP_UNITS."""
        since = (time.time() if now is None else now) - window
        row = self.db.execute(
            "SELECT COALESCE(SUM(epsilon_nano), 0) FROM dp_spent "
            "WHERE proposer = ? AND spent_at > ?",
            (proposer, since),
        ).fetchone()
        return int(row[0])

    def dp_spenders(self, window: float, now: float | None = None) -> dict[str, int]:
        """Every proposer that spent in the last `window` seconds, with what (DP_UNITS)."""
        since = (time.time() if now is None else now) - window
        rows = self.db.execute(
            "SELECT proposer, SUM(epsilon_nano) FROM dp_spent WHERE spent_at > ? "
            "GROUP BY proposer ORDER BY proposer",
            (since,),
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def prune_rounds(self, now: float | None = None) -> int:
        """Delete the closed rounds whose deadline passed more than KEEP_CLOSED ago
        (at start-up and periodically while running); how many went."""
        horizon = (time.time() if now is None else now) - KEEP_CLOSED
        with self._transaction():
            cur = self.db.execute(
                "DELETE FROM rounds WHERE open = 0 AND expires_at < ?", (horizon,)
            )
        return max(cur.rowcount, 0)

    def prune_results(self, keep: float, data_dir: Path, now: float | None = None) -> int:
        """Delete the results that finished more than `keep` seconds ago, and their
        `final_<comp_id>.json` in `data_dir`, in one transaction; how many went.
        Files go before the commit: if it fails, the next pass finds the rows again."""
        horizon = (time.time() if now is None else now) - keep
        with self._transaction():
            old = [
                r[0]
                for r in self.db.execute(
                    "SELECT comp_id FROM results WHERE finished_at < ?", (horizon,)
                )
            ]
            if not old:
                return 0
            self.db.execute("DELETE FROM results WHERE finished_at < ?", (horizon,))
            for comp_id in old:
                with contextlib.suppress(ValueError):  # not an id a file has
                    result_path(data_dir, comp_id).unlink(missing_ok=True)
        return len(old)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """A transaction of its own (housekeeping), after the open one is committed."""
        self.flush()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def wal_bytes(self) -> int:
        wal = self.path.with_name(self.path.name + "-wal")
        return wal.stat().st_size if wal.exists() else 0

    def checkpoint(self) -> None:
        """Copy the WAL into the database and empty it: deleted state (shares) must
        not linger in old WAL frames either. Best effort: a busy reader skips it."""
        self.flush()
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Commit what is open (a disk that refuses it loses nothing: every such
        write is redone from the messages it left unacknowledged) and close."""
        with contextlib.suppress(sqlite3.Error):
            self.flush()
        self.db.close()


def read_results(db_path: Path) -> list[ComputationResult]:
    """Results from a node's database, read-only, for the CLI (the node may be down)."""
    if not db_path.exists():
        return []
    if db_path.stat().st_size == 0:
        raise _damaged(db_path, "0 bytes: it was truncated")
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        raise _damaged(db_path, exc) from exc
    try:
        rows = db.execute("SELECT body FROM results ORDER BY finished_at").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # created, never written to
        raise _damaged(db_path, exc) from exc
    except sqlite3.DatabaseError as exc:
        raise _damaged(db_path, exc) from exc
    finally:
        db.close()
    return [ComputationResult.model_validate_json(r[0]) for r in rows]


def result_json(result: ComputationResult) -> str:
    """`final_<comp_id>.json`: the result, plus the seed's names for three of its
    fields (`computation_id`, `final_result`, `timestamp`: when it finished) so the
    seed's scripts read it unchanged. The aggregators' individual sums are not in it:
    each is a share, and with the total and all but one the last is known."""
    doc = result.model_dump(mode="json")
    doc |= {
        "computation_id": result.comp_id,
        "final_result": result.result,
        "timestamp": result.finished_at,
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"

"""A node's SQLite store: results it proposed and computations it answered.

One small database per node (`<data>/local.db`, WAL) so the CLI can read results
while the node writes, and a restarted target never answers a round twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from beehive.core.models import ComputationResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    comp_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    finished_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS answered (
    comp_id TEXT PRIMARY KEY,
    outcome TEXT NOT NULL,
    at REAL NOT NULL
);
"""


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def save_result(self, result: ComputationResult) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
            (result.comp_id, result.status, result.finished_at, result.model_dump_json()),
        )

    def result(self, comp_id: str) -> ComputationResult | None:
        row = self.db.execute("SELECT body FROM results WHERE comp_id = ?", (comp_id,)).fetchone()
        return ComputationResult.model_validate_json(row[0]) if row else None

    def results(self) -> list[ComputationResult]:
        rows = self.db.execute("SELECT body FROM results ORDER BY finished_at").fetchall()
        return [ComputationResult.model_validate_json(r[0]) for r in rows]

    def mark_answered(self, comp_id: str, outcome: str) -> bool:
        """Record that this target answered; False if it already had (answer once only)."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO answered VALUES (?, ?, ?)", (comp_id, outcome, time.time())
        )
        return cur.rowcount == 1

    def close(self) -> None:
        self.db.close()


def read_results(db_path: Path) -> list[ComputationResult]:
    """Results from a node's database, read-only, for the CLI (the node may be down)."""
    if not db_path.exists():
        return []
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT body FROM results ORDER BY finished_at").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()
    return [ComputationResult.model_validate_json(r[0]) for r in rows]


def result_json(result: ComputationResult) -> str:
    return json.dumps(result.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

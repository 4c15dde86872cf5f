"""The nats-guard's verdict on the server, `run/nats-storage.json`: written by the
guard (beehive/orchestrator/nats_guard.py), read by `hive status`, which so
imports this small module and none of the guard."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StuckServer", "stuck_server"]


@dataclass(frozen=True)
class StuckServer:
    """A nats-server (its pid) whose JetStream refuses writes, and its own words why."""

    pid: int
    error: str
    since: float

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()


def stuck_server(storage_file: Path, nats_pid: int | None) -> StuckServer | None:
    """The guard's verdict, if it concerns the server running as `nats_pid`."""
    try:
        found = StuckServer(**json.loads(storage_file.read_bytes()))
    except (OSError, ValueError, TypeError):
        return None
    return found if found.pid == nats_pid else None

"""Turn a compiled Plan into running processes under the topology's own supervisord.

`apply_plan` writes the state folder and starts or updates supervisord, then waits
until every program is ready; `down` stops it all. Health probes live in `health`,
the supervisord XML-RPC client in `supervisor`.

The names below are imported on first use (PEP 562): a small program of the
hive (the nats-guard) imports one submodule without paying for all of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from beehive.orchestrator.apply import ApplyResult, apply_plan, down
    from beehive.orchestrator.health import UnhealthyError, wait_healthy
    from beehive.orchestrator.supervisor import (
        ProcessInfo,
        SupervisorError,
        UpdateResult,
        is_running,
        processes,
        tail_log,
    )

_HOME = {
    "ApplyResult": "apply",
    "apply_plan": "apply",
    "down": "apply",
    "UnhealthyError": "health",
    "wait_healthy": "health",
    "ProcessInfo": "supervisor",
    "SupervisorError": "supervisor",
    "UpdateResult": "supervisor",
    "is_running": "supervisor",
    "processes": "supervisor",
    "tail_log": "supervisor",
}

__all__ = [
    "ApplyResult",
    "ProcessInfo",
    "SupervisorError",
    "UnhealthyError",
    "UpdateResult",
    "apply_plan",
    "down",
    "is_running",
    "processes",
    "tail_log",
    "wait_healthy",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)

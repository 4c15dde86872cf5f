"""Turn a compiled Plan into running processes under the topology's own supervisord.

`apply_plan` writes the state folder and starts or updates supervisord, then waits
until every program is ready; `down` stops it all. Health probes live in `health`,
the supervisord XML-RPC client in `supervisor`.
"""

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

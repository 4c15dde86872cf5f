"""`hive up` and `hive plan` as services: load → compile → apply, returning results.

The CLI renders what these return; the seed commands (`nectar`, `bee-hive`) call
the same `bring_up` after editing their generated topology, so there is one
apply path. `preview_up` compiles the same plan without writing anything (no key
is generated: new nodes' keys show as "to be generated") and compares it with
the state folder and with what supervisord runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from beehive.orchestrator import supervisor
from beehive.orchestrator.apply import ApplyResult, apply_plan, down
from beehive.orchestrator.health import UnhealthyError
from beehive.orchestrator.prepare import missing_keys, orphaned_keys, prepare, purge_orphans
from beehive.orchestrator.preview import Preview, preview
from beehive.topology.layout import StateLayout
from beehive.topology.schema import Topology

__all__ = ["UpResult", "bring_up", "preview_up"]


@dataclass(frozen=True)
class UpResult:
    """What one `hive up` did."""

    name: str
    seconds: float
    programs: int
    applied: ApplyResult
    #: Removed nodes whose keys and data `--purge` deleted.
    purged: list[str] = field(default_factory=list)
    #: Removed nodes whose keys are kept (no `--purge`).
    kept: list[str] = field(default_factory=list)

    @property
    def changed_anything(self) -> bool:
        a = self.applied
        return bool(
            a.added or a.changed or a.removed or a.written or a.started_supervisord or self.purged
        )


def bring_up(
    topology: Topology,
    state_dir: Path,
    *,
    timeout: float = 30.0,
    purge: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> UpResult:
    """Compile `topology` and apply it to `state_dir`; only programs whose config
    hash changed restart. `purge` also deletes the keys and data of nodes no longer
    in the topology (after they stopped).

    A first start that fails takes down what it started (logs kept); a failed
    update leaves the other programs running. Either way the UnhealthyError says
    which, in its hint.
    """
    started = time.monotonic()
    plan = prepare(topology, state_dir)
    was_running = supervisor.is_running(state_dir)
    try:
        applied = apply_plan(plan, timeout=timeout, on_progress=on_progress)
    except UnhealthyError as exc:
        if was_running:
            exc.hint = "the other processes keep running; see `hive status` and `hive logs`"
        else:
            down(state_dir)
            exc.hint = f"stopped what was started; logs kept in {StateLayout(state_dir).logs_dir}"
        raise
    purged = purge_orphans(topology, state_dir) if purge else []
    kept = [] if purge else orphaned_keys(topology, state_dir)
    return UpResult(
        name=topology.name,
        seconds=time.monotonic() - started,
        programs=len(plan.programs),
        applied=applied,
        purged=purged,
        kept=kept,
    )


def preview_up(topology: Topology, state_dir: Path) -> Preview:
    """What `hive up` would do now, without writing a byte."""
    plan = prepare(topology, state_dir, dry_run=True)
    return preview(
        plan,
        keys_to_generate=missing_keys(topology, state_dir),
        keys_kept=orphaned_keys(topology, state_dir),
    )

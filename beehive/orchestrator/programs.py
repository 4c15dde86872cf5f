"""Start, stop and restart named programs of a running hive (`hive start|stop|restart`).

A user names what they think of (a node, a replica set, a handler, `nats`); the
hive runs programs (`node-alice` or the `pack-3` hosting her, `handler-llm` and
any `handler-llm@<alias>`, `nats`). `resolve` maps one to the other, and
`control` acts through supervisord under the state folder's lock (so it never
races a `hive up`), then waits for each started program's own readiness, as
`hive up` does.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from beehive.core.errors import BeehiveError
from beehive.orchestrator import supervisor
from beehive.orchestrator.health import wait_healthy
from beehive.orchestrator.lock import state_lock
from beehive.topology.layout import StateLayout

if TYPE_CHECKING:
    from beehive.orchestrator.trust import HostShare
    from beehive.topology.schema import Topology

Action = Literal["start", "stop", "restart"]


class UnknownProgram(BeehiveError):
    """A name that is no program, node, replica set or handler of this hive."""


def resolve(
    names: Iterable[str],
    topology: Topology,
    programs: Collection[str],
    hosting: dict[str, list[str]],
) -> dict[str, list[str]]:
    """Each name → the programs it means, in the order given.

    `programs` are what supervisord runs; `hosting` maps each node program to the
    nodes it hosts (a packed node's program is its pack: restarting her restarts
    her pack-mates too).
    """
    host_of = {alias: program for program, aliases in hosting.items() for alias in aliases}
    sets = topology.replica_sets()
    found: dict[str, list[str]] = {}
    for name in names:
        if name in programs:
            found[name] = [name]
        elif name in host_of:
            found[name] = [host_of[name]]
        elif name in sets:
            found[name] = list(dict.fromkeys(host_of[a] for a in sets[name] if a in host_of))
        elif name in topology.handlers:
            found[name] = sorted(p for p in programs if _serves_handler(p, name))
        else:
            found[name] = []
        if not found[name]:
            raise UnknownProgram(
                f"{name!r} is no program, node, replica set or handler of this hive",
                hint=f"programs: {', '.join(sorted(programs)) or 'none (is the hive up?)'}",
            )
    return found


def _serves_handler(program: str, handler: str) -> bool:
    kind = StateLayout.program_of(program)
    return kind is not None and kind[0] == "handler" and kind[1].split("@")[0] == handler


def control(
    topology: Topology,
    state_dir: Path,
    action: Action,
    programs: list[str],
    *,
    share: HostShare | None = None,
    timeout: float = 30.0,
    on_progress: Callable[[str], None] | None = None,
) -> None:
    """Stop, start or restart `programs`; a start or restart returns once each
    is ready (its readiness as `hive up` compiles it now), and raises
    UnhealthyError naming the one that is not."""
    from beehive.orchestrator.prepare import prepare
    from beehive.orchestrator.trust import prepare_host

    report = on_progress or (lambda _msg: None)
    with state_lock(state_dir, f"hive {action}", on_wait=report):
        if not supervisor.is_running(state_dir):
            raise BeehiveError(
                f"the hive in {state_dir} is not running", hint="bring it up with `hive up`"
            )
        if action == "stop":
            supervisor.stop_programs(state_dir, programs)
            return
        plan = (
            prepare(topology, state_dir, dry_run=True)
            if share is None
            else prepare_host(topology, state_dir, share)[0]
        )
        for program in programs:
            if action == "restart":
                supervisor.restart_program(state_dir, program)
            else:
                supervisor.start_program(state_dir, program)
            report(f"{program} {action}ed")
        wait_healthy(plan, timeout=timeout, on_progress=report, only=programs)

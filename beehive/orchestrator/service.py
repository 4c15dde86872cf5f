"""`hive up` and `hive plan` as services: load → compile → apply, returning results.

The CLI renders what these return; the seed commands (`nectar`, `bee-hive`) call
the same `bring_up` after editing their generated topology, so there is one
apply path. `preview_up` compiles the same plan without writing anything (no key
is generated: new nodes' keys show as "to be generated") and compares it with
the state folder and with what supervisord runs.

`bring_up` runs the steps of `apply_plan` itself (`write_state` → `converge` →
`await_ready`) because two things happen between converging and the health
wait: nodes whose keys `--rotate-keys` replaced are restarted (their config hash
does not cover key bytes, so supervisord would not), and programs of the plan
that supervisord left FATAL (or EXITED, STOPPED, BACKOFF) with an unchanged
config are started again.
"""

from __future__ import annotations

import errno
import socket
import time
import xmlrpc.client
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from beehive.core.errors import BeehiveError
from beehive.core.files import write_atomic
from beehive.orchestrator import state_processes, supervisor
from beehive.orchestrator.apply import (
    ApplyResult,
    await_ready,
    converge,
    down,
    report_each,
    write_state,
)
from beehive.orchestrator.health import UnhealthyError, probe_nats
from beehive.orchestrator.lock import state_lock
from beehive.orchestrator.prepare import (
    missing_keys,
    orphaned_keys,
    prepare,
    purge_orphans,
    rotation_targets,
)
from beehive.orchestrator.preview import Preview, preview
from beehive.orchestrator.trust import HostShare, prepare_host
from beehive.security.directory import Directory, DirectoryError
from beehive.topology.layout import NATS_PROGRAM, StateLayout
from beehive.topology.plan import Plan
from beehive.topology.schema import Topology

__all__ = ["NatsPortTaken", "UpResult", "bring_up", "check_nats_port", "preview_up"]


class NatsPortTaken(BeehiveError):
    """The embedded nats-server's port is held by another program: nothing was started."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(
            f"NATS port {port} on {host} is already in use by another program ({reason}): "
            "nothing was started",
            hint=f"choose another port: `nats.port` in the topology, or HIVE_NATS_PORT=<port> "
            f"(the seed commands also take `bee-hive register --nats-url` for an external "
            f"server); or stop the program on port {port}",
        )
        self.host, self.port = host, port


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
    #: Nodes that got new keys (`--rotate-keys`).
    rotated: list[str] = field(default_factory=list)
    #: Their programs, restarted so they load the new keys (those that supervisord
    #: started or restarted anyway in this run are not repeated here).
    key_restarts: list[str] = field(default_factory=list)
    #: Programs found failed with an unchanged config and started again → the
    #: state supervisord reported (FATAL, EXITED, STOPPED, BACKOFF).
    revived: dict[str, str] = field(default_factory=dict)
    #: Processes of this state folder no supervisord supervised (their
    #: supervisord died), stopped before anything started.
    orphans: list[int] = field(default_factory=list)
    #: Multi-host: the host brought up, and the fingerprint of the operator key it
    #: pinned in this run (its first `up`, or `--pin-operator`).
    host: str | None = None
    pinned: str | None = None

    @property
    def changed_anything(self) -> bool:
        a = self.applied
        return bool(
            a.added
            or a.changed
            or a.removed
            or a.written
            or a.started_supervisord
            or self.purged
            or self.rotated
            or self.revived
            or self.orphans
        )


def bring_up(
    topology: Topology,
    state_dir: Path,
    *,
    timeout: float = 30.0,
    purge: bool = False,
    rotate_keys: Collection[str] = (),
    on_progress: Callable[[str], None] | None = None,
    share: HostShare | None = None,
) -> UpResult:
    """Compile `topology` and apply it to `state_dir`; only programs whose config
    hash changed restart.

    With `share` (a multi-host topology), only that host's share, from the
    signed material in its trust folder (see `prepare_host`; `share.pin_operator`
    re-pins the operator key on purpose): refuses unless the directory verifies,
    the host's keys are the ones signed, and the NATS servers it needs are
    reachable. A node whose signed keys changed (`hive keys --rotate-keys`, then
    `hive trust sign`) restarts to load them. `purge` also deletes the keys and
    data of nodes no longer in the topology (after they stopped).

    Refuses (prepare.KeyChanged, nothing written) when a node's key file no longer
    matches the last signed directory, unless `rotate_keys` names it: those nodes
    get new keys and are restarted to load them. Programs of the plan that
    supervisord reports failed (FATAL, EXITED, STOPPED, BACKOFF) and that this run
    did not just (re)start are started again, before the health wait.

    Refuses (NatsPortTaken, nothing written or started) when the embedded
    nats-server's port is held by another program.

    A first start that fails takes down what it started (logs kept); a failed
    update leaves the other programs running. Either way the UnhealthyError says
    which, in its hint.
    """
    report = on_progress or (lambda _msg: None)
    if share is not None and rotate_keys:  # refused before anything is locked or read
        host = share.host
        raise BeehiveError(
            "--rotate-keys: on a multi-host hive keys are rotated where they live",
            hint=f"run `hive keys --host {host} --rotate-keys ALIAS`, then the operator "
            f"runs `hive trust sign`, then `hive up --host {host}`",
        )
    with state_lock(state_dir, "hive up", on_wait=report):
        return _bring_up(topology, state_dir, timeout, purge, rotate_keys, report, share)


def _bring_up(
    topology: Topology,
    state_dir: Path,
    timeout: float,
    purge: bool,
    rotate_keys: Collection[str],
    report: Callable[[str], None],
    share: HostShare | None,
) -> UpResult:
    """`bring_up`'s work, under the state folder's lock."""
    started = time.monotonic()
    rotating = rotation_targets(topology, rotate_keys)
    was_running = supervisor.is_running(state_dir)
    stray = supervisor.orphans(state_dir)
    if stray:  # before the port check: an orphaned nats-server holds the port
        pids = ", ".join(map(str, stray))
        report(f"stopping {len(stray)} orphaned process(es) (pids {pids}): no supervisor")
        state_processes.stop(stray)
    own_nats = _own_nats_running(state_dir, was_running)
    pinned = None
    if share is None:
        if topology.nats.embedded and not own_nats:
            check_nats_port(topology.nats.host, topology.nats.port)  # before any key or file
        plan = prepare(topology, state_dir, rotate_keys=rotating)
    else:
        plan, admission = prepare_host(topology, state_dir, share)
        check_reachable(topology, share.host, own_nats, share.trust.ca_pem)
        rotating = _rekeyed(state_dir, admission.directory, topology.nodes_on(share.host))
        if admission.pins:
            write_atomic(
                StateLayout(state_dir).pinned_operator,
                admission.operator_key.encode() + b"\n",
                mode=0o644,
                durable=True,
            )
            pinned = admission.fingerprint
            report(f"pinned operator key {pinned}")
    report_each(report, "new keys for", rotating)
    try:
        written, stale = write_state(plan, report)
        applied = converge(plan, written, stale, report, timeout=timeout)
        key_restarts = _restart_rotated(plan, applied, rotating, report)
        revived = _revive_failed(plan, applied, key_restarts, report)
        await_ready(plan, report, timeout=timeout)
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
        rotated=rotating,
        key_restarts=key_restarts,
        revived=revived,
        orphans=stray,
        host=share.host if share else None,
        pinned=pinned,
    )


def _rekeyed(state_dir: Path, signed: Directory, aliases: list[str]) -> list[str]:
    """Nodes of `aliases` whose keys in the newly signed directory differ from the
    directory this state folder holds now: running, they hold the old keys."""
    current = StateLayout(state_dir).directory_json
    try:
        before = Directory.from_json(current.read_bytes())
    except (OSError, DirectoryError):
        return []
    return [a for a in aliases if a in before and a in signed and before[a] != signed[a]]


class Unreachable(BeehiveError):
    """A multi-host host cannot serve: its own address is not its, or no NATS
    server it needs answers."""


def check_reachable(topology: Topology, host: str, own_nats_running: bool, ca_file: Path) -> None:
    """Refuse before anything starts when `host` cannot work: a host that runs a
    nats-server must hold its declared address (and the port must be free); one
    that runs none must reach at least one server (the others are named), with a
    certificate `ca_file` (the hive's CA) verifies: `probe_nats`, which leaves
    nothing in the server's log."""
    port = topology.nats.port
    if not topology.nats.embedded:
        return
    if host in topology.nats_hosts():
        if not own_nats_running:
            address = topology.address(host)
            try:
                check_nats_port(address, port)
            except OSError as exc:
                if exc.errno != errno.EADDRNOTAVAIL:
                    raise
                raise Unreachable(
                    f"hosts.{host}.address {address} is not an address of this machine: "
                    "nothing was started",
                    hint=f"run `hive up --host {host}` on {host} itself, or fix its address "
                    "in the topology",
                ) from None
        return
    servers = [(h, topology.address(h)) for h in topology.nats_hosts()]
    reachable = [h for h, address in servers if probe_nats(f"{address}:{port}", str(ca_file))]
    if not reachable:
        where = ", ".join(f"{h} at {a}:{port}" for h, a in servers)
        raise Unreachable(
            f"cannot reach the NATS server{'s' if len(servers) > 1 else ''} ({where}) from "
            f"host {host}: nothing was started",
            hint=f"bring the server host up first (`hive up --host {servers[0][0]}` there), "
            f"and let host {host} reach TCP port {port} on it",
        )


def _own_nats_running(state_dir: Path, supervisord_up: bool) -> bool:
    """True when this state folder's supervisord runs its nats program (so the port
    is ours): only then is the port check skipped."""
    if not supervisord_up:
        return False
    try:
        return any(
            p.name == NATS_PROGRAM and p.state in ("RUNNING", "STARTING")
            for p in supervisor.processes(state_dir)
        )
    except (OSError, xmlrpc.client.Error, supervisor.SupervisorError):
        return False


def check_nats_port(host: str, port: int) -> None:
    """Refuse (NatsPortTaken) when `host:port` cannot be bound: another program
    listens there. Checked before anything is written or started, so a taken port
    leaves no half-started hive behind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As nats-server does: a port in TIME_WAIT is free, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise NatsPortTaken(host, port, exc.strerror or str(exc)) from None
            raise


def _fresh(applied: ApplyResult) -> set[str]:
    """Programs supervisord (re)started in this run: they load whatever is on disk."""
    return {*applied.added, *applied.changed}


def _restart_rotated(
    plan: Plan, applied: ApplyResult, rotating: list[str], report: Callable[[str], None]
) -> list[str]:
    """Restart the nodes whose keys were just replaced: a running node holds the
    key it loaded at start, and its config hash does not cover key bytes."""
    if applied.started_supervisord or not rotating:
        return []
    state = Path(plan.state_dir)
    fresh = _fresh(applied)
    restarted = []
    for program in plan.programs:
        name = program.name
        if set(program.nodes) & set(rotating) and name not in fresh:
            report(f"{name} restarting (keys rotated)")
            supervisor.restart_program(state, name)
            restarted.append(name)
    return restarted


def _revive_failed(
    plan: Plan, applied: ApplyResult, skip: list[str], report: Callable[[str], None]
) -> dict[str, str]:
    """Start again every program of the plan that supervisord left failed (it gave
    up after its retries: FATAL; or it exited or was stopped) although its config
    did not change: `hive up` brings the hive to the plan, and the plan runs it.
    Should it fail again, the health wait that follows names it with its log."""
    if applied.started_supervisord:
        return {}
    state = Path(plan.state_dir)
    ignore = _fresh(applied) | set(skip)
    planned = {p.name for p in plan.programs}
    revived: dict[str, str] = {}
    for info in supervisor.processes(state):
        if (
            info.name in planned
            and info.name not in ignore
            and info.state in supervisor.RESTARTABLE_STATES
        ):
            report(f"{info.name} was {info.state}: starting it again")
            supervisor.restart_program(state, info.name)
            revived[info.name] = info.state
    return revived


def preview_up(
    topology: Topology,
    state_dir: Path,
    *,
    share: HostShare | None = None,
) -> Preview:
    """What `hive up` (`--host`) would do now, without writing a byte."""
    if share is not None:
        plan, _ = prepare_host(topology, state_dir, share)
        return preview(plan, keys_to_generate=[], keys_kept=[])
    plan = prepare(topology, state_dir, dry_run=True)
    return preview(
        plan,
        keys_to_generate=missing_keys(topology, state_dir),
        keys_kept=orphaned_keys(topology, state_dir),
    )

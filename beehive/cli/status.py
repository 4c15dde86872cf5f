"""`hive status` (alias `hive ps`): every process and each node's health.

`gather` asks supervisord and every node's control socket once and returns a
`Status`; `render` turns it into the table a person reads, `Status.to_json` into
the object a script reads. `--watch` repeats both until Ctrl-C, redrawing in
place on a terminal.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from beehive.cli.common import Hive, hive_options, host_option, name_list, out
from beehive.topology.layout import NATS_PROGRAM, StateLayout

if TYPE_CHECKING:
    from rich.console import RenderableType

    from beehive.orchestrator.supervisor import ProcessInfo

#: `hive status` shows one row per node process up to this many; beyond, only
#: the unhealthy ones (with counts), so a thousand nodes stay one screen.
MAX_NODE_ROWS = 40


@dataclass
class Status:
    """What `hive status` found, at one moment."""

    hive: Hive
    running: bool
    procs: list[ProcessInfo]
    orphans: list[int]
    hosting: dict[str, list[str]]
    nodes: dict[str, Any]
    unserved: dict[str, list[str]]
    nats_storage: str | None

    @property
    def healthy(self) -> bool:
        return bool(
            self.running
            and not self.orphans
            and not self.nats_storage
            and all(p.state == "RUNNING" for p in self.procs)
            and all(node_healthy(n) for n in self.nodes.values())
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.hive.topology.name,
            "host": self.hive.host,
            "state_dir": str(self.hive.state_dir),
            "running": self.running,
            "healthy": self.healthy,
            "processes": [p.__dict__ for p in self.procs],
            "orphans": self.orphans,
            "nats_storage": self.nats_storage,
            "unserved": self.unserved,
            "nodes": self.nodes,
        }


def gather(hive: Hive) -> Status:
    from beehive.flower.control import ControlError, call
    from beehive.orchestrator import supervisor
    from beehive.orchestrator.nats_verdict import stuck_server

    running = supervisor.is_running(hive.state_dir)
    procs = supervisor.processes(hive.state_dir) if running else []
    orphans = supervisor.orphans(hive.state_dir)
    nodes: dict[str, Any] = {}
    hosting = hive.node_processes()
    for program, aliases in hosting.items():
        for alias in aliases:
            try:
                nodes[alias] = call(hive.control_socket(alias), {"op": "health"}, timeout=2)
            except ControlError as exc:
                nodes[alias] = {"ok": False, "error": str(exc)}
            nodes[alias]["process"] = program
    nats_pid = next((p.pid for p in procs if p.name == NATS_PROGRAM), None)
    stuck = stuck_server(hive.layout.nats_storage, nats_pid) if nats_pid else None
    return Status(
        hive=hive,
        running=running,
        procs=procs,
        orphans=orphans,
        hosting=hosting,
        nodes=nodes,
        unserved=_unserved(hive.layout, procs),
        nats_storage=f"storage error: {stuck.error}" if stuck else None,
    )


def render(found: Status) -> list[RenderableType]:
    """The table and summary lines a person reads."""
    from rich.markup import escape
    from rich.table import Table

    hive, nodes, hosting = found.hive, found.nodes, found.hosting
    title = hive.topology.name + (f" on {hive.host}" if hive.host else "")
    stray = (
        f"{len(found.orphans)} orphaned process(es) of this state folder still run, "
        f"supervised by no one (pids {', '.join(map(str, found.orphans))}): `hive down` "
        "stops them, `hive up` replaces them"
    )
    if not found.running:
        lines: list[RenderableType] = [f"{title}: down (state in {hive.state_dir})"]
        if found.orphans:
            lines.append(f"[red]but {stray}[/red]")
        return lines
    table = Table(title=f"{title} — {hive.state_dir}")
    for col in ("process", "state", "pid", "uptime", "detail"):
        table.add_column(col)
    # Beyond a screenful of per-node processes, only the unhealthy get a row.
    many = len(hosting) > MAX_NODE_ROWS
    for p in found.procs:
        detail = ""
        kind, alias = StateLayout.program_of(p.name) or ("", "")
        if kind == "node" and alias in nodes:
            h = nodes[alias]
            if many and p.state == "RUNNING" and node_healthy(h):
                continue
            detail = node_detail(h)
        elif kind == "pack":
            hosted = [a for a in hosting.get(p.name, []) if a in nodes]
            sick = [a for a in hosted if not node_healthy(nodes[a])]
            detail = f"{len(hosted) - len(sick)}/{len(hosted)} nodes healthy" + (
                f"; [red]{name_list([f'{a}: {node_detail(nodes[a])}' for a in sick], 5)}[/red]"
                if sick
                else f" ({name_list(hosted, 3)})"
            )
        elif kind == "handler" and p.name in found.unserved:
            detail = f"[red]leaves {name_list(found.unserved[p.name])} unserved[/red]"
        elif kind == "nats" and found.nats_storage:
            detail = f"[red]{escape(found.nats_storage)}[/red] (restarted once the disk has room)"
        table.add_row(p.name, p.state, str(p.pid or "-"), f"{p.uptime:.0f}s", detail)
    shown: list[RenderableType] = [table]
    for name, replicas in hive.topology.replica_sets().items():
        here = [a for a in replicas if a in nodes]
        sick = [a for a in here if not node_healthy(nodes[a])]
        shown.append(
            f"replica set {name}: {len(here) - len(sick)}/{len(here)} nodes healthy"
            + (f"; [red]unhealthy: {escape(name_list(sick))}[/red]" if sick else "")
        )
    shown += dp_lines(nodes)
    if many:
        well = sum(node_healthy(n) for n in nodes.values())
        shown.append(f"nodes: {well}/{len(nodes)} healthy (rows only for the others)")
    for program, aliases in sorted(found.unserved.items()):
        shown.append(
            f"[red]unhealthy: {program} is not running, so no handler answers for "
            f"{name_list(aliases)}: see `hive logs {program}`[/red]"
        )
    if found.orphans:
        shown.append(f"[red]unhealthy: {stray}[/red]")
    return shown


def dp_lines(nodes: dict[str, Any]) -> list[str]:
    """Each proposer's differential-privacy spending, summed up over the nodes
    (one line per proposer, naming only the nodes whose budget it has used up)."""
    budgets = {a: h["dp"] for a, h in nodes.items() if h.get("dp")}
    if not budgets:
        return []
    proposers = sorted({p for b in budgets.values() for p in b["spent"]})
    lines = [
        f"dp: {len(budgets)} node(s) enforce a budget per proposer per window; "
        + ("nothing spent yet" if not proposers else f"spent by {len(proposers)} proposer(s)")
    ]
    for p in proposers:
        spent = [(a, b["spent"].get(p, 0.0), b["budget"]) for a, b in budgets.items()]
        done = [a for a, s, total in spent if s >= total - 1e-9]
        most = max(s for _, s, _ in spent)
        lines.append(
            f"dp budget of {p}: up to {most:g} spent"
            + (f"; [yellow]exhausted on {name_list(done)}[/yellow]" if done else "")
        )
    return lines


def node_healthy(health: dict[str, Any]) -> bool:
    return bool(health.get("connected") and health.get("subscribed") and not health.get("storage"))


def node_detail(h: dict[str, Any]) -> str:
    """One node's health in a few words."""
    from rich.markup import escape

    if not h.get("ok"):
        return str(h.get("error", ""))
    return (
        f"{h.get('role', '?')}, {'connected' if h.get('connected') else 'DISCONNECTED'}"
        f", {rejections(h.get('rejected', {}))}"
        + (f", [red]{escape(h['storage'])}[/red]" if h.get("storage") else "")
        + (f", {dp_spent(h['dp'])}" if h.get("dp") else "")
    )


def dp_spent(dp: dict[str, Any]) -> str:
    """'dp 2/3 alice': what each proposer spent of this node's budget."""
    spent = dp.get("spent", {})
    if not spent:
        return f"dp 0/{dp['budget']:g}"
    return "dp " + ", ".join(f"{s:g}/{dp['budget']:g} {p}" for p, s in sorted(spent.items()))


def rejections(counts: dict[str, int]) -> str:
    """'rejected 3 (replay 1, stale 2)': per reason, so an attack shows what it tried."""
    total = sum(counts.values())
    if not total:
        return "rejected 0"
    parts = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()) if n)
    return f"rejected {total} ({parts})"


def _unserved(layout: StateLayout, procs: list[ProcessInfo]) -> dict[str, list[str]]:
    """Handler programs that are not running (crashing, given up), with the nodes
    they leave without an answer: from their configs' attachments."""
    found: dict[str, list[str]] = {}
    for p in procs:
        kind, name = StateLayout.program_of(p.name) or ("", "")
        if kind != "handler" or p.state in ("RUNNING", "STARTING"):
            continue
        from beehive.core.configs import ConfigError, HandlerConfig

        try:
            attached = HandlerConfig.load(layout.handler_config(name)).attachments
        except ConfigError:
            continue
        if attached:
            found[p.name] = sorted(attached)
    return found


def watch(hive: Hive, interval: float, as_json: bool) -> int:
    """Gather and show until Ctrl-C; the exit status of the last look.

    On a terminal the picture is redrawn in place (rich's Live); piped, or with
    --json, each look is printed after the last (JSON: one object per line).
    """
    from rich.console import Group
    from rich.live import Live

    found = gather(hive)
    try:
        if as_json or not out.is_terminal:
            while True:
                if as_json:
                    print(json.dumps(found.to_json(), sort_keys=True), flush=True)
                else:
                    for part in render(found):
                        out.print(part)
                time.sleep(interval)
                found = gather(hive)
        with Live(Group(*render(found)), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                found = gather(hive)
                live.update(Group(*render(found)), refresh=True)
    except KeyboardInterrupt:
        return 0 if found.healthy else 1


@click.command()
@hive_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--watch",
    "-w",
    "watching",
    is_flag=True,
    help="Redraw every --interval seconds until Ctrl-C (with --json: one object per line).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between looks with --watch.",
)
@host_option
def status(
    topology_file: Path,
    state_dir: Path | None,
    as_json: bool,
    watching: bool,
    interval: float,
    host: str | None,
) -> None:
    """Show every process and each node's health. Exit 0 only when all are healthy.

    Multi-host: `--host H` shows H's share (its processes and its nodes)."""
    hive = Hive.open(topology_file, state_dir, host)
    hive.need_host("status")
    if watching:
        sys.exit(watch(hive, interval, as_json))
    found = gather(hive)
    if as_json:
        print(json.dumps(found.to_json(), sort_keys=True))
    else:
        for part in render(found):
            out.print(part)
    sys.exit(0 if found.healthy else 1)


#: `hive ps`, as compose users type it: the same command.
ps = click.Command(
    "ps",
    callback=status.callback,
    params=status.params,
    help="Alias of `hive status`.",
    short_help="Alias of `hive status`.",
)


def register(group: click.Group) -> None:
    group.add_command(status)
    group.add_command(ps)

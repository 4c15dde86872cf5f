"""Looking at a running (or stopped) hive: status, logs, results."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from beehive.cli.common import Fail, Hive, err, hive_options, host_option, name_list, out
from beehive.core.configs import ConfigError, HandlerConfig
from beehive.core.models import ComputationResult
from beehive.core.names import printable
from beehive.flower.control import ControlError, call
from beehive.flower.store import StoreError, read_results
from beehive.orchestrator import supervisor
from beehive.orchestrator.nats_guard import stuck_server
from beehive.topology.layout import NATS_PROGRAM, StateLayout


def print_result(result: ComputationResult) -> None:
    colour = {"complete": "green", "partial": "yellow", "failed": "red"}[result.status]
    out.print(
        f"[{colour}]{result.status}[/{colour}] {result.comp_id}: "
        f"[bold]{result.result if result.result is not None else '—'}[/bold]"
    )
    out.print(f"  query:        {result.query!r}")
    out.print(f"  contributors: {', '.join(result.contributors) or 'none'}")
    if result.missing:
        out.print(f"  missing:      {', '.join(result.missing)}")
    if result.reason:
        out.print(f"  reason:       {result.reason}")


def rejections(counts: dict[str, int]) -> str:
    """'rejected 3 (replay 1, stale 2)': per reason, so an attack shows what it tried."""
    total = sum(counts.values())
    if not total:
        return "rejected 0"
    parts = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()) if n)
    return f"rejected {total} ({parts})"


@click.command()
@hive_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@host_option
def status(topology_file: Path, state_dir: Path | None, as_json: bool, host: str | None) -> None:
    """Show every process and each node's health. Exit 0 only when all are healthy.

    Multi-host: `--host H` shows H's share (its processes and its nodes)."""
    hive = Hive.open(topology_file, state_dir, host)
    hive.need_host("status")
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
    unserved = _unserved(hive.layout, procs)
    nats_pid = next((p.pid for p in procs if p.name == NATS_PROGRAM), None)
    stuck = stuck_server(hive.layout.nats_storage, nats_pid) if nats_pid else None
    nats_storage = f"storage error: {stuck.error}" if stuck else None
    healthy = (
        running
        and not orphans
        and not stuck
        and all(p.state == "RUNNING" for p in procs)
        and all(_node_healthy(n) for n in nodes.values())
    )
    if as_json:
        print(
            json.dumps(
                {
                    "name": hive.topology.name,
                    "host": hive.host,
                    "state_dir": str(hive.state_dir),
                    "running": running,
                    "healthy": bool(healthy),
                    "processes": [p.__dict__ for p in procs],
                    "orphans": orphans,
                    "nats_storage": nats_storage,
                    "unserved": unserved,
                    "nodes": nodes,
                },
                sort_keys=True,
            )
        )
        sys.exit(0 if healthy else 1)
    title = hive.topology.name + (f" on {hive.host}" if hive.host else "")
    stray = (
        f"{len(orphans)} orphaned process(es) of this state folder still run, supervised by "
        f"no one (pids {', '.join(map(str, orphans))}): `hive down` stops them, `hive up` "
        "replaces them"
    )
    if not running:
        out.print(f"{title}: down (state in {hive.state_dir})")
        if orphans:
            out.print(f"[red]but {stray}[/red]")
        sys.exit(1)
    table = Table(title=f"{title} — {hive.state_dir}")
    for col in ("process", "state", "pid", "uptime", "detail"):
        table.add_column(col)
    # Beyond a screenful of per-node processes, only the unhealthy get a row.
    many = len(hosting) > MAX_NODE_ROWS
    for p in procs:
        detail = ""
        kind, alias = StateLayout.program_of(p.name) or ("", "")
        if kind == "node" and alias in nodes:
            h = nodes[alias]
            if many and p.state == "RUNNING" and _node_healthy(h):
                continue
            detail = _node_detail(h)
        elif kind == "pack":
            hosted = [a for a in hosting.get(p.name, []) if a in nodes]
            sick = [a for a in hosted if not _node_healthy(nodes[a])]
            detail = f"{len(hosted) - len(sick)}/{len(hosted)} nodes healthy" + (
                f"; [red]{name_list([f'{a}: {_node_detail(nodes[a])}' for a in sick], 5)}[/red]"
                if sick
                else f" ({name_list(hosted, 3)})"
            )
        elif kind == "handler" and p.name in unserved:
            detail = f"[red]leaves {name_list(unserved[p.name])} unserved[/red]"
        elif kind == "nats" and nats_storage:
            detail = f"[red]{escape(nats_storage)}[/red] (restarted once the disk has room)"
        table.add_row(p.name, p.state, str(p.pid or "-"), f"{p.uptime:.0f}s", detail)
    out.print(table)
    for name, replicas in hive.topology.replica_sets().items():
        here = [a for a in replicas if a in nodes]
        sick = [a for a in here if not _node_healthy(nodes[a])]
        out.print(
            f"replica set {name}: {len(here) - len(sick)}/{len(here)} nodes healthy"
            + (f"; [red]unhealthy: {escape(name_list(sick))}[/red]" if sick else "")
        )
    if many:
        well = sum(_node_healthy(n) for n in nodes.values())
        out.print(f"nodes: {well}/{len(nodes)} healthy (rows only for the others)")
    for program, aliases in sorted(unserved.items()):
        out.print(
            f"[red]unhealthy: {program} is not running, so no handler answers for "
            f"{name_list(aliases)}: see `hive logs {program}`[/red]"
        )
    if orphans:
        out.print(f"[red]unhealthy: {stray}[/red]")
    sys.exit(0 if healthy else 1)


#: `hive status` shows one row per node process up to this many; beyond, only
#: the unhealthy ones (with counts), so a thousand nodes stay one screen.
MAX_NODE_ROWS = 40


def _node_healthy(health: dict[str, Any]) -> bool:
    return bool(health.get("connected") and health.get("subscribed") and not health.get("storage"))


def _node_detail(h: dict[str, Any]) -> str:
    """One node's health in a few words."""
    if not h.get("ok"):
        return str(h.get("error", ""))
    return (
        f"{h.get('role', '?')}, {'connected' if h.get('connected') else 'DISCONNECTED'}"
        f", {rejections(h.get('rejected', {}))}"
        + (f", [red]{escape(h['storage'])}[/red]" if h.get("storage") else "")
    )


def _unserved(layout: StateLayout, procs: list[Any]) -> dict[str, list[str]]:
    """Handler programs that are not running (crashing, given up), with the nodes
    they leave without an answer: from their configs' attachments."""
    found: dict[str, list[str]] = {}
    for p in procs:
        kind, name = StateLayout.program_of(p.name) or ("", "")
        if kind != "handler" or p.state in ("RUNNING", "STARTING"):
            continue
        try:
            attached = HandlerConfig.load(layout.handler_config(name)).attachments
        except ConfigError:
            continue
        if attached:
            found[p.name] = sorted(attached)
    return found


@click.command()
@click.argument("name", required=False)
@hive_options
@click.option("--follow", "-F", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@click.option("-n", "--lines", default=40, show_default=True, help="Lines of history per log.")
@host_option
def logs(
    name: str | None,
    topology_file: Path,
    state_dir: Path | None,
    follow: bool,
    lines: int,
    host: str | None,
) -> None:
    """Show logs: NAME is a node alias, a handler name, `nats` or `supervisord`; all if omitted.

    Multi-host: a node's logs are on its host (found from the topology); for the
    others say which host with --host."""
    hive = Hive.open(topology_file, state_dir, host, for_node=name)
    hive.need_host("logs")
    log_dir = hive.layout.logs_dir
    files = _log_files(log_dir, name, hive)
    prefix = len(files) > 1
    # A node in a pack shares its process's log: its own lines carry `node=<alias>`.
    found = StateLayout.program_of(files[0].stem)
    packed = name in hive.topology.nodes and found is not None and found[0] == "pack"
    tag = f" node={name} " if packed else ""  # "" is in every line
    offsets: dict[Path, int] = {}
    for path in files:
        text = path.read_text(errors="replace") if path.exists() else ""
        offsets[path] = len(text.encode())
        for line in [line for line in text.splitlines() if tag in line][-lines:]:
            _emit(path, line, prefix)
    if follow:
        _follow(log_dir, files, offsets, prefix, tag)


def _log_files(log_dir: Path, name: str | None, hive: Hive) -> list[Path]:
    if name is None:
        found = sorted(log_dir.glob("*.log"))
        if not found:
            raise Fail(f"no logs in {log_dir}: has `hive up` run with this state folder?")
        return found
    candidates = hive.layout.log_candidates(name)
    hosts = [p for p, nodes in hive.node_processes().items() if name in nodes]
    for path in [*candidates, *(hive.layout.log(p) for p in hosts)]:
        if path.exists():
            return [path]
    known = sorted(p.stem for p in log_dir.glob("*.log"))
    raise Fail(f"no log named {name!r} in {log_dir} (have: {', '.join(known) or 'none'})")


def _emit(path: Path, line: str, prefix: bool) -> None:
    """One log line to the terminal, control characters escaped (a handler may
    print anything; nothing it printed drives the terminal)."""
    line = printable(line)
    print(f"{path.stem:>20} | {line}" if prefix else line, flush=True)


def _follow(
    log_dir: Path,
    files: list[Path],
    offsets: dict[Path, int],
    prefix: bool,
    tag: str,
) -> None:
    from watchfiles import watch

    wanted = set(files)
    try:
        for changes in watch(log_dir, recursive=False, debounce=200):
            for _, raw in sorted(changes):
                path = Path(raw)
                if path not in wanted or not path.exists():
                    continue
                with path.open("rb") as fh:
                    fh.seek(
                        offsets.get(path, 0) if path.stat().st_size >= offsets.get(path, 0) else 0
                    )
                    chunk = fh.read()
                    offsets[path] = fh.tell()
                for line in chunk.decode(errors="replace").splitlines():
                    if tag in line:
                        _emit(path, line, prefix)
    except KeyboardInterrupt:
        return


@click.command()
@click.argument("comp_id", required=False)
@hive_options
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (an object for COMP_ID, else a list)."
)
@host_option
def results(
    comp_id: str | None,
    topology_file: Path,
    state_dir: Path | None,
    as_json: bool,
    host: str | None,
) -> None:
    """Show final results stored by the proposers (all, or one COMP_ID).

    Multi-host: the results of the proposers whose state folder is on this machine."""
    hive = Hive.open(topology_file, state_dir, host)
    stored: list[ComputationResult] = []
    for alias in hive.local_nodes():
        try:
            stored += read_results(hive.layout_of(alias).store(alias))
        except StoreError as exc:  # one damaged store must not hide the others' results
            err.print(f"warning: {exc}", markup=False, style="yellow")
    found = sorted(stored, key=lambda r: r.finished_at)
    if comp_id is not None:
        match = [r for r in found if r.comp_id == comp_id or r.comp_id.startswith(comp_id)]
        if len(match) != 1:
            raise Fail(f"no result {comp_id!r}" if not match else f"{comp_id!r} is ambiguous")
        result = match[0]
        if as_json:
            print(json.dumps(_result_obj(result)))
        else:
            print_result(result)
        return
    if as_json:
        print(json.dumps([_result_obj(r) for r in found]))
        return
    if not found:
        out.print("no results yet")
        return
    table = Table()
    for col in ("comp_id", "status", "result", "contributors", "missing", "finished", "query"):
        table.add_column(col)
    for r in found:
        table.add_row(
            r.comp_id,
            r.status,
            str(r.result),
            ",".join(r.contributors),
            ",".join(r.missing),
            time.strftime("%H:%M:%S", time.localtime(r.finished_at)),
            r.query[:40],
        )
    out.print(table)


def _result_obj(result: ComputationResult) -> dict[str, Any]:
    """The submit contract's object plus context fields (added, never renamed)."""
    obj = result.public_json()
    obj.update(
        query=result.query,
        proposer=result.proposer,
        reason=result.reason,
        finished_at=result.finished_at,
    )
    return obj


def register(group: click.Group) -> None:
    for command in (status, logs, results):
        group.add_command(command)


__all__ = ["print_result", "register"]

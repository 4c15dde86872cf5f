"""`hive restart|stop|start NAME…` and `hive top`: one program at a time, as
compose users expect.

NAME is a node alias, a replica set, a handler name, `nats`, or a program as
`hive status` lists it (`pack-3`, `handler-llm@eve`). A node hosted in a pack is
restarted with its pack (the command says which nodes that takes along).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from beehive.cli.common import Fail, Hive, hive_options, host_option, name_list, out
from beehive.cli.completion import PROGRAM_NAMES
from beehive.cli.progress import progress

if TYPE_CHECKING:
    from beehive.orchestrator.programs import Action


def _programs(hive: Hive, names: tuple[str, ...]) -> list[str]:
    """The programs NAMEs mean (each once), or a Fail naming what exists."""
    from beehive.orchestrator import supervisor
    from beehive.orchestrator.programs import UnknownProgram, resolve

    if not supervisor.is_running(hive.state_dir):
        raise Fail(f"{hive.topology.name} is not running (state in {hive.state_dir}): `hive up`")
    running = [p.name for p in supervisor.processes(hive.state_dir)]
    try:
        found = resolve(names, hive.topology, running, hive.node_processes())
    except UnknownProgram as exc:
        raise Fail(str(exc)) from exc
    return list(dict.fromkeys(p for programs in found.values() for p in programs))


def _act(action: Action, names: tuple[str, ...], hive: Hive, timeout: float) -> None:
    from beehive.orchestrator.programs import control

    hive.need_host(action)
    programs = _programs(hive, names)
    hosting, named = hive.node_processes(), set(hive.topology.expand(list(names)))
    along = [a for p in programs for a in hosting.get(p, []) if a not in named]
    if along:  # a packed node's process hosts others too
        out.print(f"{action}: the packs of these nodes also host {name_list(along)}")
    started = time.monotonic()
    with progress(f"{action} {name_list(programs)}") as update:
        control(
            hive.topology,
            hive.state_dir,
            action,
            programs,
            share=hive.share(),
            timeout=timeout,
            on_progress=update,
        )
    done = {"start": "started", "stop": "stopped", "restart": "restarted"}[action]
    took = time.monotonic() - started
    ready = "" if action == "stop" else ", ready"
    out.print(f"{hive.topology.name}: {done} {name_list(programs)}{ready} ({took:.1f}s)")


_NAMES = """\b
NAME: a node alias, a replica set, a handler name, `nats`, or a program as
`hive status` lists it (`pack-3`, `handler-llm@eve`). A packed node goes with
its whole pack. Multi-host: on the host that runs them (`--host`)."""


def _process_command(action: Action, summary: str) -> click.Command:
    @click.command(action, help=summary + _NAMES)
    @click.argument(
        "names", metavar="NAME...", nargs=-1, required=True, shell_complete=PROGRAM_NAMES
    )
    @hive_options
    @click.option(
        "--timeout",
        type=float,
        default=30.0,
        show_default=True,
        help="Seconds to wait for the programs to be ready again.",
    )
    @host_option
    def command(
        names: tuple[str, ...],
        topology_file: Path,
        state_dir: Path | None,
        timeout: float,
        host: str | None,
    ) -> None:
        _act(action, names, Hive.open(topology_file, state_dir, host), timeout)

    return command


restart = _process_command(
    "restart", "Restart NAMEs through supervisord and wait until they are ready.\n\n"
)
stop = _process_command(
    "stop",
    "Stop NAMEs; they stay stopped (`hive status` shows them) until `hive start` or `hive up`.\n\n",
)
start = _process_command("start", "Start stopped NAMEs and wait until they are ready.\n\n")


@click.command()
@hive_options
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds over which CPU is measured.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Rows shown, busiest first (--json lists every process).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@host_option
def top(
    topology_file: Path,
    state_dir: Path | None,
    interval: float,
    limit: int,
    as_json: bool,
    host: str | None,
) -> None:
    """CPU (% of one core, over --interval) and resident memory of each process
    of the hive, supervisord included; busiest first.

    Each program's own process is measured (not processes a handler may start)."""
    from beehive.core.processes import cpu_seconds, rss_bytes
    from beehive.orchestrator import supervisor

    hive = Hive.open(topology_file, state_dir, host)
    hive.need_host("top")
    if not supervisor.is_running(hive.state_dir):
        raise Fail(f"{hive.topology.name} is not running (state in {hive.state_dir}): `hive up`")
    pids = {p.name: p.pid for p in supervisor.processes(hive.state_dir) if p.pid}
    own = supervisor.read_pid(hive.state_dir)
    if own:
        pids["supervisord"] = own
    before, t0 = {n: cpu_seconds(pid) for n, pid in pids.items()}, time.monotonic()
    time.sleep(interval)
    after, wall = {n: cpu_seconds(pid) for n, pid in pids.items()}, time.monotonic() - t0
    rows: list[dict[str, Any]] = []
    for name, pid in pids.items():
        used, start = after[name], before[name]
        rss = rss_bytes(pid)
        if used is None or start is None or rss is None:
            continue  # it exited meanwhile
        rows.append(
            {
                "name": name,
                "pid": pid,
                "cpu_percent": round(100 * (used - start) / wall, 1),
                "rss_mib": round(rss / 2**20, 1),
            }
        )
    rows.sort(key=lambda r: (-r["cpu_percent"], -r["rss_mib"], r["name"]))
    total_cpu = round(sum(r["cpu_percent"] for r in rows), 1)
    total_rss = round(sum(r["rss_mib"] for r in rows), 1)
    if as_json:
        doc = {"name": hive.topology.name, "interval_s": interval, "processes": rows}
        print(json.dumps({**doc, "cpu_percent": total_cpu, "rss_mib": total_rss}))
        return
    from rich.table import Table

    table = Table(title=f"{hive.topology.name} — CPU over {interval:g}s")
    for col in ("process", "pid", "cpu %", "rss MiB"):
        table.add_column(col, justify="left" if col == "process" else "right")
    for r in rows[:limit]:
        table.add_row(r["name"], str(r["pid"]), f"{r['cpu_percent']:.1f}", f"{r['rss_mib']:.1f}")
    out.print(table)
    more = f" ({len(rows) - limit} quieter not shown)" if len(rows) > limit else ""
    out.print(f"total: {total_cpu:.1f}% CPU, {total_rss:.1f} MiB over {len(rows)} processes{more}")


def register(group: click.Group) -> None:
    for command in (restart, stop, start, top):
        group.add_command(command)

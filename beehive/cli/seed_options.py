"""What the seed's `nectar` and `bee-hive` commands share: their group (errors as
the seed's `❌ …` lines on stderr), `--data-dir`, and the way a command changes the
ad-hoc hive and reports it (`✅ …`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from beehive.cli import logs as log_cmds
from beehive.cli.adhoc import DEFAULT_DATA_DIR, LocalHive
from beehive.cli.common import HiveGroup
from beehive.orchestrator import supervisor


class SeedGroup(HiveGroup):
    """HiveGroup with the seed's error lines: `❌ <message>` on stderr, exit 1."""

    error_prefix = "❌"


def data_dir_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--data-dir` on the group, as in the seed (`bee-hive --data-dir ./sandbox list`)."""
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        envvar="BEEHIVE_DATA_DIR",
        default=DEFAULT_DATA_DIR,
        show_default=True,
        help="Folder of the local hive: its registry, generated hive.yaml, keys, logs and "
        "data [env BEEHIVE_DATA_DIR].",
    )(func)


def data_dir(ctx: click.Context) -> Path:
    return Path(ctx.obj["data_dir"]).expanduser().absolute()


def apply_and_report(local: LocalHive, done: str, *, purge: bool = False) -> None:
    """Apply the edited registry (`hive up` semantics) and say what happened."""
    why = local.apply(purge=purge)
    click.echo(f"✅ {done}")
    if why is not None:
        click.echo(f"⚠️  the local hive is stopped: {why}; it starts once one is registered")


def state_line(running: bool) -> str:
    """The seed's `🟢 running` / `⚫ stopped` (anything but RUNNING is stopped)."""
    return "🟢 running" if running else "⚫ stopped"


def process_fields(proc: supervisor.ProcessInfo | None) -> dict[str, Any]:
    """A program's state, as `list --json` and `view --json` give it."""
    return {
        "state": proc.state if proc else "STOPPED",
        "running": proc is not None and proc.state == "RUNNING",
        "pid": proc.pid if proc and proc.pid else None,
    }


def processes(local: LocalHive) -> dict[str, supervisor.ProcessInfo]:
    """Supervised programs of the local hive by name (none when it is down)."""
    state = local.state_dir()
    if not supervisor.is_running(state):
        return {}
    return {p.name: p for p in supervisor.processes(state)}


def log_command(
    program: Callable[[str], str], what: str, metavar: str = "NAME"
) -> Callable[..., Any]:
    """A seed `logs NAME [--follow]` command: `hive logs <program(NAME)>` on the local
    hive (`program` is StateLayout.node_program or .handler_program)."""

    @click.argument("name", metavar=metavar)
    @click.option("--follow", "-F", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
    @click.option("-n", "--lines", default=40, show_default=True, help="Lines of history.")
    @click.pass_context
    def logs(ctx: click.Context, name: str, follow: bool, lines: int) -> None:
        local = LocalHive(data_dir(ctx))
        ctx.invoke(
            log_cmds.logs,
            names=(program(name),),
            topology_file=local.topology_file,
            state_dir=None,
            follow=follow,
            tail=str(lines),
        )

    logs.__doc__ = f"Show {what} {metavar}'s log (`hive logs {program(metavar)}`)."
    return logs

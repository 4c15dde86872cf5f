"""What the seed's `nectar` and `bee-hive` commands share: `--data-dir` and the
way a command changes the ad-hoc hive and reports it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from beehive.cli.adhoc import DEFAULT_DATA_DIR, LocalHive
from beehive.cli.common import out
from beehive.orchestrator import supervisor


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
    out.print(done)
    if why is not None:
        out.print(f"the local hive is stopped: {why}; it starts once one is registered")


def processes(local: LocalHive) -> dict[str, supervisor.ProcessInfo]:
    """Supervised programs of the local hive by name (none when it is down)."""
    state = local.state_dir()
    if not supervisor.is_running(state):
        return {}
    return {p.name: p for p in supervisor.processes(state)}

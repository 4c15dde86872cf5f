"""What every `hive` subcommand shares: where the topology and state are, and errors.

Every subcommand takes `-f/--file` and `--state-dir` after its name (a contract:
scripts call `hive submit -f topologies/test.yaml …`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from beehive.core.errors import BeehiveError
from beehive.orchestrator.prepare import default_state_dir
from beehive.topology import Topology, TopologyError, load_topology
from beehive.topology.layout import StateLayout

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 160  # piped or logged: rich's 80 columns would fold every table row

F = TypeVar("F", bound=Callable[..., Any])


class Fail(click.ClickException):
    """An error the user can act on: printed without a traceback, exit 1.

    `prefix` starts the line (`error:`; the seed commands' groups set `❌`).
    """

    prefix = "[red]error:[/red]"

    def show(self, file: Any = None) -> None:
        err.print(f"{self.prefix} {self.message}", markup=True)


def hive_options(func: F) -> F:
    """-f/--file and --state-dir, in that spelling, on every subcommand."""
    func = click.option(
        "--state-dir",
        type=click.Path(path_type=Path, file_okay=False),
        envvar="BEEHIVE_STATE_DIR",
        help="Where keys, configs, logs and data live "
        "[env BEEHIVE_STATE_DIR; default: .hive/<name>/ beside the topology file].",
    )(func)
    func = click.option(
        "-f",
        "--file",
        "topology_file",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar="HIVE_FILE",
        default=Path("hive.yaml"),
        show_default=True,
        help="The topology file [env HIVE_FILE].",
    )(func)
    return func


@dataclass
class Hive:
    """A loaded topology and the state folder it runs in."""

    file: Path
    topology: Topology
    state_dir: Path

    @classmethod
    def open(cls, topology_file: Path, state_dir: Path | None) -> Hive:
        try:
            topology = load_topology(topology_file)
        except TopologyError as exc:
            raise Fail(str(exc)) from exc
        state = state_dir or default_state_dir(topology_file, topology)
        return cls(topology_file, topology, state.resolve())

    @property
    def layout(self) -> StateLayout:
        return StateLayout(self.state_dir)

    def control_socket(self, alias: str) -> Path:
        return self.layout.control_socket(alias)


class HiveGroup(click.Group):
    """A command group whose commands' expected failures end as one clear line.

    The one place the CLI turns a `BeehiveError` (or an `OSError` from the machine:
    a full disk, a permission) into `error: …` and exit 1, instead of a traceback.
    `--debug` or BEEHIVE_DEBUG=1 lets the traceback through. Sub-groups are of the
    same class, so every command of `hive`, `nectar` and `bee-hive` is covered.
    """

    group_class = type  # `@group.group()` makes another HiveGroup
    #: What starts an error line (None: Fail's own `error:`); the seed groups say `❌`.
    error_prefix: str | None = None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            except (BeehiveError, OSError) as exc:
                if ctx.params.get("debug") or debug_from_env():
                    raise
                raise Fail(str(exc)) from exc
        except Fail as exc:
            if self.error_prefix is not None:
                exc.prefix = self.error_prefix
            raise
        except KeyboardInterrupt:
            err.print("interrupted")
            sys.exit(130)


def debug_from_env() -> bool:
    return os.environ.get("BEEHIVE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def split_aliases(value: str | None) -> list[str]:
    return [a.strip() for a in (value or "").split(",") if a.strip()]

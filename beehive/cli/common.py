"""What every `hive` subcommand shares: where the topology and state are, and errors.

Every subcommand takes `-f/--file` and `--state-dir` after its name (a contract:
scripts call `hive submit -f topologies/test.yaml …`).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from beehive.orchestrator.prepare import default_state_dir
from beehive.topology import Topology, TopologyError, load_topology

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 160  # piped or logged: rich's 80 columns would fold every table row

F = TypeVar("F", bound=Callable[..., Any])


class Fail(click.ClickException):
    """An error the user can act on: printed without a traceback, exit 1."""

    def show(self, file: Any = None) -> None:
        err.print(f"[red]error:[/red] {self.message}", markup=True)


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

    def node_data(self, alias: str) -> Path:
        return self.state_dir / "data" / alias

    def control_socket(self, alias: str) -> Path:
        return self.state_dir / "run" / f"{alias}.sock"


def friendly_errors(func: F) -> F:
    """Turn expected failures into one clear line and a non-zero exit, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            err.print("interrupted")
            sys.exit(130)
        except (OSError, ValueError, RuntimeError) as exc:
            if os.environ.get("BEEHIVE_DEBUG"):
                raise
            raise Fail(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def split_aliases(value: str | None) -> list[str]:
    return [a.strip() for a in (value or "").split(",") if a.strip()]

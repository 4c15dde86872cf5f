"""What every `hive` subcommand shares: where the topology and state are, and errors.

Every subcommand takes `-f/--file` and `--state-dir` after its name (a contract:
scripts call `hive submit -f topologies/test.yaml …`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

from beehive.core.errors import BeehiveError
from beehive.topology.layout import StateLayout, TrustLayout, default_state_dir

if TYPE_CHECKING:
    from beehive.orchestrator.trust import HostShare
    from beehive.topology import Topology

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


#: What `hive` looks for, in the current folder and then each one above it, when
#: neither -f nor HIVE_FILE names the topology (as compose looks for compose.yaml).
TOPOLOGY_NAMES = ("hive.yaml", "hive.yml")
_LOOKED_FROM = "beehive.looked_from"


def find_topology(start: Path) -> Path | None:
    """The nearest `hive.yaml` (or `hive.yml`) in `start` or a folder above it."""
    for folder in (start, *start.parents):
        for name in TOPOLOGY_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def _topology_file(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path:
    """-f/HIVE_FILE as given; else the nearest hive.yaml, shown relative to here."""
    if value is not None:
        return value
    here = Path.cwd()
    found = find_topology(here)
    if found is None:
        ctx.meta[_LOOKED_FROM] = here  # for the error, once a command needs the file
        return Path(TOPOLOGY_NAMES[0])
    return Path(os.path.relpath(found, here))


def not_found(topology_file: Path) -> Fail | None:
    """When no -f or HIVE_FILE was given and no hive.yaml was found: the error
    saying where `hive` looked and how to name the file. None otherwise (a named
    file that is missing is the loader's error, naming it)."""
    ctx = click.get_current_context(silent=True)
    looked = ctx.meta.get(_LOOKED_FROM) if ctx is not None else None
    if looked is None or topology_file.exists():
        return None
    return Fail(
        f"no {' or '.join(TOPOLOGY_NAMES)} in {looked} or any folder above it: name the "
        "topology file with -f FILE (or HIVE_FILE=FILE)"
    )


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
        callback=_topology_file,
        help="The topology file [env HIVE_FILE; default: the nearest hive.yaml here or in "
        "a folder above].",
    )(func)
    return func


def host_option(func: F) -> F:
    """--host: which host of a multi-host topology this command acts on."""
    return click.option(
        "--host",
        envvar="HIVE_HOST",
        metavar="HOST",
        help="Act on this host's share of a multi-host topology (its nats-server, its "
        "nodes, their handlers) [env HIVE_HOST; state: .hive/<name>/hosts/HOST/].",
    )(func)


@dataclass
class Hive:
    """A loaded topology and the state folder it runs in.

    In a multi-host topology a state folder is one host's (`host`); without
    `--host` or `--state-dir` a command that names a node (`submit --proposer`,
    `logs ALIAS`) uses that node's host.
    """

    file: Path
    topology: Topology
    state_dir: Path
    host: str | None = None

    @classmethod
    def open(
        cls,
        topology_file: Path,
        state_dir: Path | None,
        host: str | None = None,
        *,
        for_node: str | None = None,
    ) -> Hive:
        from beehive.topology import TopologyError, load_topology

        missing = not_found(topology_file)
        if missing is not None:
            raise missing
        try:
            topology = load_topology(topology_file)
        except TopologyError as exc:
            raise Fail(str(exc)) from exc
        if topology.hosts is not None:
            if host is None and state_dir is not None:
                host = _marked_host(state_dir, topology.name)
            if host is None and for_node in topology.nodes:
                host = topology.nodes[for_node].host
            if host is not None and host not in topology.hosts:
                raise Fail(
                    f"--host {host}: not a host of topology {topology.name!r} "
                    f"(declared: {', '.join(sorted(topology.hosts))})"
                )
        elif host is not None:
            raise Fail(
                f"--host {host}: topology {topology.name!r} declares no hosts (it is one "
                "implicit host): leave --host out"
            )
        state = state_dir or default_state_dir(topology_file, topology, host)
        return cls(topology_file, topology, state.resolve(), host)

    def need_host(self, command: str) -> None:
        """A multi-host topology's command that acts on one host's share needs to
        know which: refuse with the command to run."""
        if self.topology.hosts is not None and self.host is None:
            hosts = sorted(self.topology.hosts)
            raise Fail(
                f"topology {self.topology.name!r} spans hosts ({', '.join(hosts)}): say which "
                f"one this is, e.g. `hive {command} --host {hosts[0]}` (or HIVE_HOST)"
            )

    @property
    def layout(self) -> StateLayout:
        return StateLayout(self.state_dir)

    @property
    def trust(self) -> TrustLayout:
        return TrustLayout.beside(self.file)

    def share(self, pin_operator: str | None = None) -> HostShare | None:
        """This host's share of a multi-host topology (None: the whole hive)."""
        from beehive.orchestrator.trust import HostShare

        if self.host is None:
            return None
        return HostShare(self.host, self.trust, pin_operator)

    def local_nodes(self) -> list[str]:
        """The nodes this state folder runs: all, or this host's."""
        return self.topology.nodes_on(self.host)

    def node_processes(self) -> dict[str, list[str]]:
        """Each program of this state folder that runs nodes → the nodes it hosts."""
        return StateLayout.node_processes(
            self.local_nodes(), self.topology.runtime.nodes_per_process
        )

    def layout_of(self, alias: str) -> StateLayout:
        """The state folder `alias` runs in, as far as this machine can tell."""
        node = self.topology.nodes[alias]

        if self.host is not None or self.topology.hosts is None or node.host is None:
            return self.layout
        return StateLayout(default_state_dir(self.file, self.topology, node.host))

    def control_socket(self, alias: str) -> Path:
        return self.layout_of(alias).control_socket(alias)


def _marked_host(state_dir: Path, network: str) -> str | None:
    """The host a state folder was made for (`host.json`, by `hive keys`)."""
    try:
        marker = json.loads(StateLayout(state_dir).host_marker.read_bytes())
    except (OSError, ValueError):
        return None
    if isinstance(marker, dict) and marker.get("network") == network:
        host = marker.get("host")
        return host if isinstance(host, str) else None
    return None


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


def name_list(names: list[str], limit: int = 12) -> str:
    """`names` comma-separated, or the first `limit` and how many more: a line
    that stays readable at a thousand nodes."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} … and {len(names) - limit} more"


def split_aliases(value: str | None) -> list[str]:
    return [a.strip() for a in (value or "").split(",") if a.strip()]

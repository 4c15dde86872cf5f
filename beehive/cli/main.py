"""`hive`: declare a network in hive.yaml, bring it up, ask it, take it down.

hive init | validate | config | plan | up | down | handler test       (this module)
hive status/ps (status.py) | logs (logs.py) | submit (submit.py) | results (results.py)
hive restart | stop | start | top (programs.py) | graph (graph.py) | completion (completion.py)
multi-host: hive keys --host H | trust sign (hosts.py) | up/down/status --host H

Each command module imports at its top only click, rich and light parts of
beehive; what a command needs beyond (pydantic, the orchestrator, nats-py) it
imports when it runs, so `hive --help` starts fast.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from beehive.cli import changes as change_cmds
from beehive.cli import completion as completion_cmds
from beehive.cli import graph as graph_cmds
from beehive.cli import hosts as host_cmds
from beehive.cli import init as init_cmds
from beehive.cli import logs as log_cmds
from beehive.cli import programs as program_cmds
from beehive.cli import results as result_cmds
from beehive.cli import status as status_cmds
from beehive.cli import submit as submit_cmds
from beehive.cli.common import (
    Fail,
    Hive,
    HiveGroup,
    err,
    hive_options,
    host_option,
    out,
    split_aliases,
)
from beehive.cli.completion import names
from beehive.core.names import check_name

if TYPE_CHECKING:
    from beehive.topology import Topology


@click.group(cls=HiveGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bee-hive")
@click.option(
    "--debug",
    is_flag=True,
    help="Show the full traceback of an error instead of one line [env BEEHIVE_DEBUG=1].",
)
def cli(debug: bool) -> None:
    """Bee-Hive: a private, distributed computation network declared in hive.yaml.

    Nodes answer a proposer's query with an integer; answers leave a node only as
    encrypted secret shares, summed by aggregator (heavy) nodes, so the proposer
    learns the total and nothing else.
    """


@cli.command()
@hive_options
@click.option(
    "--import-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds one handler file may take to import before it counts as hanging.",
)
def validate(topology_file: Path, state_dir: Path | None, import_timeout: float) -> None:
    """Check the topology file and every handler file, and say what they declare.

    Each handler file is imported in a process of its own, with the interpreter
    and settings its daemon will have (its `requirements:` environment once
    `hive up` has built it; until then only its syntax and signature are checked,
    and the output says so), so its import code never runs inside `hive` and a
    hanging import is stopped. Any error names the file and line; nothing is
    written.
    """
    from beehive.cli.handler_checks import check_handlers

    hive = Hive.open(topology_file, state_dir)
    handler_lines = check_handlers(hive, import_timeout)
    topo = hive.topology
    heavy = topo.heavy()
    out.print(
        f"{topology_file}: ok — topology {topo.name!r}: {len(topo.nodes)} node(s) "
        f"({len(heavy)} heavy: {', '.join(heavy)}), {len(topo.handlers)} handler(s), "
        f"NATS {'embedded at ' if topo.nats.embedded else 'external at '}{_nats_where(topo)}"
    )
    if topo.hosts is not None:
        for name in topo.hosts:
            nodes = topo.nodes_on(name)
            server = " + nats-server" if name in topo.nats_hosts() else ""
            out.print(
                f"host {name} ({topo.address(name)}): {len(nodes)} node(s)"
                f"{': ' + ', '.join(nodes) if nodes else ''}{server}"
            )
    for line in handler_lines:
        out.print(line, markup=False)
    out.print(privacy_line(topo.defaults.sharing, topo.defaults.threshold))
    for line in dp_lines(topo):
        out.print(line, markup=False)


def _nats_where(topo: Topology) -> str:
    servers = topo.nats_hosts()
    if not servers:
        return topo.nats.client_url
    return ", ".join(f"{h} ({topo.address(h)}:{topo.nats.port})" for h in servers)


def privacy_line(sharing: str, threshold: int | None) -> str:
    """The privacy/availability trade-off of a sharing scheme, in one line."""
    if sharing == "shamir":
        return (
            f"privacy: shamir threshold {threshold} over GF(2^61-1) — any {threshold} "
            f"aggregators of a round give the total (the others may fail); any "
            f"{threshold} of them together could also learn a single answer, fewer learn "
            "nothing"
        )
    return (
        "privacy: additive shares mod 2^32 — a total needs every aggregator of a round; "
        "no coalition smaller than all of them learns any single answer (one lost "
        "aggregator fails the round: `sharing: shamir` trades some privacy for that)"
    )


@cli.command()
@hive_options
def config(topology_file: Path, state_dir: Path | None) -> None:
    """Print the resolved topology (defaults filled, variables interpolated).

    Handler settings are masked: an `env:` value written with `${…}` is shown as
    written, and an `env_file`'s keys are listed with `***` for their values."""
    from beehive.core.handler_env import EnvFileError, read_env_file
    from beehive.topology import topology_to_yaml

    topology = Hive.open(topology_file, state_dir).topology
    out.print(topology_to_yaml(topology), end="", markup=False, highlight=False)
    for name, spec in sorted(topology.handlers.items()):
        if spec.env_file is None:
            continue
        try:
            keys = ", ".join(f"{k}=***" for k in sorted(read_env_file(spec.env_file)))
        except EnvFileError as exc:
            keys = f"unreadable: {exc}"
        out.print(f"# handlers.{name}.env_file {spec.env_file}: {keys or 'empty'}", markup=False)


def dp_lines(topo: Topology) -> list[str]:
    """The differential privacy the targets enforce, and the noise it puts on a
    total: with the fewest contributors a total may have, and with every node."""
    from beehive.security import noise

    hive = topo.defaults.dp
    if hive is None:
        return [
            "dp: none — a total is exact; a proposer who asks overlapping target sets "
            "can subtract two totals (docs/privacy.md)"
        ]
    m = topo.defaults.min_contributors
    alpha = noise.alpha_for(hive.epsilon, hive.range[1] - hive.range[0])
    lines = [
        f"dp: {noise.MECHANISM}, epsilon {hive.epsilon:g} per round, budget {hive.budget:g} "
        f"per proposer per {_duration(hive.window)}, answers clipped into "
        f"[{hive.range[0]}, {hive.range[1]}]",
        f"dp noise on a total: stddev {noise.stddev(alpha, m, m):.1f} with {m} contributor(s) "
        f"(95 % within ±{noise.interval(alpha, m, m)}), "
        f"{noise.stddev(alpha, len(topo.nodes), m):.1f} with all {len(topo.nodes)}",
    ]
    for alias, node in topo.nodes.items():
        own = topo.dp_policy(alias)
        if node.dp is not None and own is not None:
            lines.append(
                f"dp: {alias} is stricter: epsilon {own.epsilon:g}, budget {own.budget:g} per "
                f"{_duration(own.window)}, range [{own.range[0]}, {own.range[1]}]"
            )
    return lines


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@cli.command()
@click.argument("topology", required=False, type=click.Path(path_type=Path, dir_okay=False))
@hive_options
@click.option(
    "--timeout",
    type=float,
    help="Seconds to wait for health [30, plus 0.1 per node beyond 100: a thousand "
    "nodes take a while to start].",
)
@click.option(
    "--purge",
    is_flag=True,
    help="Also delete the keys and data of nodes removed from the topology (kept by default).",
)
@click.option(
    "--rotate-keys",
    "rotate_keys",
    metavar="ALIAS[,ALIAS…]",
    shell_complete=names("node", comma_list=True),
    multiple=True,
    help="Give these nodes NEW keys: a new signing + encryption key pair in "
    "keys/ALIAS.key (and, with the embedded NATS server, a new nkey in keys/ALIAS.nk), "
    "replacing whatever those files hold; the directory is re-signed with them and the "
    "nodes restart to load them. Repeatable. Without it, `hive up` refuses to run when a "
    "node's key file no longer matches the signed directory.",
)
@host_option
@click.option(
    "--pin-operator",
    metavar="FINGERPRINT",
    help="Multi-host: pin the operator key of trust/operator.pub although this host "
    "pinned another one before (the operator changed keys); FINGERPRINT must be the new "
    "key's, as `hive trust sign` printed it.",
)
def up(
    topology: Path | None,
    topology_file: Path,
    state_dir: Path | None,
    timeout: float | None,
    purge: bool,
    rotate_keys: tuple[str, ...],
    host: str | None,
    pin_operator: str | None,
) -> None:
    """Compile the topology and bring it up; exit 0 only once every process is healthy.

    Running it again on an unchanged file changes nothing; after an edit only the
    processes whose configuration changed are restarted (see `hive plan` first):
    an added node starts and its peers adopt the new directory live, a rebound
    node is re-attached live, a removed node is stopped (its keys kept unless
    --purge). A handler with `requirements` gets its own environment, built first.
    A program supervisord gave up on (FATAL) is started again.

    A node whose key file no longer holds the keys the signed directory pins (the
    file was replaced or deleted) is refused, naming it: nothing is written or
    started. Restore the file, or run `hive up --rotate-keys ALIAS` to give the
    node new keys.

    Multi-host (`hosts:` in the topology): `hive up --host H`, on H, brings up H's
    share only, from the operator-signed `trust/` folder; see docs/multi-host.md.
    """
    hive = Hive.open(topology or topology_file, state_dir, host)
    hive.need_host("up")
    if timeout is None:
        timeout = 30.0 + 0.1 * max(0, len(hive.local_nodes()) - 100)
    change_cmds.bring_up(
        hive,
        timeout=timeout,
        purge=purge,
        rotate_keys=[a for value in rotate_keys for a in split_aliases(value)],
        pin_operator=pin_operator,
    )


@cli.command()
@click.argument("topology", required=False, type=click.Path(path_type=Path, dir_okay=False))
@hive_options
@click.option("--purge", is_flag=True, help="Also delete the state folder (keys included).")
@host_option
def down(
    topology: Path | None,
    topology_file: Path,
    state_dir: Path | None,
    purge: bool,
    host: str | None,
) -> None:
    """Stop every process of the topology and supervisord itself. Keys survive unless --purge.

    It works even when the topology file no longer loads (an edit in progress, or
    it is gone): what runs is known from the state folder, not from the file, so
    it takes down --state-dir, or else the one state folder in `.hive/` beside
    the file, and says so.
    """
    file = topology or topology_file
    try:
        hive = Hive.open(file, state_dir, host)
        hive.need_host("down")
        name, state = hive.topology.name, hive.state_dir
        if hive.host is not None:
            name = f"{name} on {hive.host}"
    except Fail as exc:
        if state_dir is None:
            state_dir = _state_beside(file, exc)
            why = exc.message.splitlines()[0]
            err.print(
                f"{why}\n  so taking down the state folder found beside it: {state_dir}",
                markup=False,
            )
        name, state = state_dir.name, state_dir.resolve()
    from beehive.orchestrator import down as take_down

    started = time.monotonic()
    stopped = take_down(state, purge=purge)
    took = time.monotonic() - started
    what = "stopped" if stopped else "was not running"
    out.print(f"{name}: {what}{', state purged' if purge else ''} ({took:.1f}s)")


def _state_beside(file: Path, failed: Fail) -> Path:
    """The one state folder of `.hive/` beside a topology file that no longer
    loads (`hive down` must still work after a bad edit); `failed` if none."""
    root = file.resolve().parent / ".hive"
    found = sorted(
        conf.parent
        for pattern in ("*/supervisord.conf", "*/hosts/*/supervisord.conf")
        for conf in root.glob(pattern)
    )
    if not found:
        raise failed
    if len(found) > 1:
        raise Fail(
            f"{failed.message.splitlines()[0]}\n  and {root} holds several state folders "
            f"({', '.join(str(f.relative_to(root)) for f in found)}): name one with --state-dir"
        )
    return found[0]


@cli.group()
def handler() -> None:
    """Work with handler files."""


@handler.command("test")
@click.argument(
    "file", required=False, type=click.Path(path_type=Path, dir_okay=False, exists=True)
)
@hive_options
@click.option("--query", default="What is your secret value", show_default=True)
@click.option(
    "--handler",
    "handler_name",
    metavar="NAME",
    shell_complete=names("handler"),
    help="Run it as handler NAME of the topology (-f) runs: in its environment "
    "(`requirements:`, built by `hive up`), with its settings and timeout. FILE "
    "defaults to that handler's file.",
)
@click.option(
    "--node",
    metavar="ALIAS",
    shell_complete=names("node"),
    callback=lambda _ctx, _param, value: value and check_name(value, "--node"),
    help="Answer as node ALIAS (`comp.node`); with --handler, with that node's own "
    "settings (nodes.ALIAS.env) too.",
)
@click.option(
    "--metadata",
    "metadata_items",
    metavar="KEY=VALUE",
    multiple=True,
    help="Put KEY=VALUE into `comp.metadata`. Repeatable.",
)
@click.option(
    "--traceback",
    "show_traceback",
    is_flag=True,
    help="On an error, also show its traceback (the handler's own frames only).",
)
def handler_test(
    file: Path | None,
    topology_file: Path,
    state_dir: Path | None,
    query: str,
    handler_name: str | None,
    node: str | None,
    metadata_items: tuple[str, ...],
    show_traceback: bool,
) -> None:
    """Run a handler on a sample computation, with no network (the seed's `nectar test`).

    It runs in a process of its own and prints one line: the answer, or the
    error as `file:line: …` (the line of the handler that failed).
    """
    from beehive.cli.handler_checks import run_handler_test

    run_handler_test(
        file,
        topology_file,
        state_dir,
        query,
        handler_name,
        show_traceback,
        node=node,
        metadata=submit_cmds.parse_metadata(metadata_items),
    )


status_cmds.register(cli)
submit_cmds.register(cli)
program_cmds.register(cli)
completion_cmds.register(cli)
graph_cmds.register(cli)
log_cmds.register(cli)
result_cmds.register(cli)
change_cmds.register(cli)
host_cmds.register(cli)
init_cmds.register(cli)


def main() -> None:
    cli(prog_name="hive")


if __name__ == "__main__":
    main()

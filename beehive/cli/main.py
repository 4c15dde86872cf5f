"""`hive`: declare a network in hive.yaml, bring it up, ask it, take it down.

hive validate | config | plan | up | down | status | logs | submit | results | handler test
multi-host: hive keys --host H | trust sign | up/down/status --host H
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from beehive.cli import changes as change_cmds
from beehive.cli import hosts as host_cmds
from beehive.cli import init as init_cmds
from beehive.cli import inspect as inspect_cmds
from beehive.cli.common import (
    Fail,
    Hive,
    HiveGroup,
    hive_options,
    host_option,
    name_list,
    out,
    split_aliases,
)
from beehive.cli.progress import progress
from beehive.core.constants import REPORT_GRACE_SECONDS
from beehive.core.handler_env import EnvFileError, read_env_file
from beehive.core.models import Computation, ComputationResult, RoundRequest, new_comp_id
from beehive.core.names import check_name
from beehive.flower.control import ControlError, ControlTimeout, call
from beehive.orchestrator import down as take_down
from beehive.topology import Topology, topology_to_yaml

EXIT_PARTIAL = 2


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

    With --state-dir it works even when the topology file no longer loads (an edit
    in progress): what runs is known from the state folder, not from the file.
    """
    try:
        hive = Hive.open(topology or topology_file, state_dir, host)
        hive.need_host("down")
        name, state = hive.topology.name, hive.state_dir
        if hive.host is not None:
            name = f"{name} on {hive.host}"
    except Fail:
        if state_dir is None:
            raise
        name, state = state_dir.name, state_dir.resolve()
    started = time.monotonic()
    stopped = take_down(state, purge=purge)
    took = time.monotonic() - started
    what = "stopped" if stopped else "was not running"
    out.print(f"{name}: {what}{', state purged' if purge else ''} ({took:.1f}s)")


def _metadata(items: tuple[str, ...]) -> dict[str, str]:
    """`--metadata KEY=VALUE …` as a dict (strings; a later KEY wins)."""
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: write KEY=VALUE", param_hint="--metadata")
        found[key.strip()] = value
    return found


@cli.command()
@click.argument("query")
@hive_options
@click.option("--proposer", required=True, help="Node that proposes and learns the total.")
@click.option(
    "--aggregators",
    required=True,
    help="Comma-separated heavy nodes that sum shares (a replica set's name: all of it).",
)
@click.option(
    "--targets",
    required=True,
    help="Comma-separated nodes that answer (a replica set's name: all of its replicas).",
)
@click.option(
    "--deadline", type=float, help="Seconds; upper bound of the round [topology default]."
)
@click.option(
    "--min-contributors",
    type=click.IntRange(min=1),
    help="Privacy policy: aggregators release no sum over fewer answers "
    "[topology defaults.min_contributors, 2].",
)
@click.option(
    "--sharing",
    type=click.Choice(["additive", "shamir"]),
    help="How answers are split among aggregators [topology defaults.sharing, additive].",
)
@click.option(
    "--threshold",
    type=click.IntRange(min=1),
    help="With --sharing shamir: how many aggregators' sums make the total "
    "[topology defaults.threshold].",
)
@click.option(
    "--comp-id",
    help="The round's id (32 hex digits) [a new one]. Sending the same id again starts "
    "no second round: safe to retry a submit that timed out.",
)
@click.option(
    "--metadata",
    "metadata_items",
    metavar="KEY=VALUE",
    multiple=True,
    help="Put KEY=VALUE into the computation's metadata (`comp.metadata` in a handler), "
    "signed with the query. Repeatable.",
)
@click.option("--wait", is_flag=True, help="Block until the result, showing progress.")
@host_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Wait, then print exactly one JSON object (comp_id, status, result, "
    "contributors, missing, reason).",
)
def submit(
    query: str,
    topology_file: Path,
    state_dir: Path | None,
    proposer: str,
    aggregators: str,
    targets: str,
    deadline: float | None,
    min_contributors: int | None,
    sharing: str | None,
    threshold: int | None,
    comp_id: str | None,
    metadata_items: tuple[str, ...],
    wait: bool,
    host: str | None,
    as_json: bool,
) -> None:
    """Ask QUERY of the targets; the proposer learns only the total.

    Exit status with --wait/--json: 0 complete, 2 partial, 1 failed. Multi-host:
    run it on the proposer's host (its state folder is found from the topology).
    """
    hive = Hive.open(topology_file, state_dir, host, for_node=proposer)
    # A replica set's name stands for all of its replicas.
    aggs = hive.topology.expand(split_aliases(aggregators))
    tgts = hive.topology.expand(split_aliases(targets))
    _check_round(hive, proposer, aggs, tgts)
    defaults = hive.topology.defaults
    request = RoundRequest.parse(
        {
            "comp_id": comp_id or new_comp_id(),  # known before anything is sent
            "query": query,
            "aggregators": aggs,
            "targets": tgts,
            "metadata": _metadata(metadata_items),
            "deadline": deadline,
            "min_contributors": min_contributors,
            "sharing": sharing,
            "threshold": threshold,
        }
    ).with_defaults(
        deadline=defaults.deadline,
        min_contributors=defaults.min_contributors,
        sharing=defaults.sharing,
        threshold=defaults.threshold,
    )
    _check_privacy(hive, request.computation(proposer))
    sock = hive.control_socket(proposer)
    try:
        reply = call(sock, {"op": "submit", **request.model_dump(mode="json")})
    except ControlTimeout as exc:
        cid = request.comp_id
        raise Fail(
            f"{proposer} did not confirm round {cid} in time ({exc}); it may still run. "
            f"Check with `hive results {cid}`; sending it again with `--comp-id {cid}` "
            "is safe (one round per id)"
        ) from exc
    except ControlError as exc:
        raise Fail(f"{exc} — is the hive up? (`hive up -f {topology_file}`)") from exc
    comp_id = reply["comp_id"]
    if not (wait or as_json):
        out.print(comp_id)
        return
    assert request.deadline is not None  # with_defaults filled it
    result = _wait_for(sock, comp_id, request.deadline, quiet=as_json)
    if as_json:
        print(json.dumps(result.public_json()))
    else:
        inspect_cmds.print_result(result)
    sys.exit(
        0 if result.status == "complete" else EXIT_PARTIAL if result.status == "partial" else 1
    )


def _check_round(hive: Hive, proposer: str, aggs: list[str], tgts: list[str]) -> None:
    """Refuse a round that cannot work before anything is sent."""
    nodes = hive.topology.nodes
    problems = []
    unknown = [a for a in dict.fromkeys([proposer, *aggs, *tgts]) if a not in nodes]
    if unknown:
        sets = hive.topology.replica_sets()
        replicas = {a for members in sets.values() for a in members}
        declared = [*sets, *(a for a in nodes if a not in replicas)]
        problems.append(f"unknown node(s) {name_list(unknown)} (declared: {name_list(declared)})")
    light = [a for a in aggs if a in nodes and nodes[a].role != "heavy"]
    if light:
        problems.append(f"{name_list(light)} cannot aggregate: only heavy nodes can")
    if not aggs:
        problems.append("--aggregators is empty: name at least one heavy node")
    if not tgts:
        problems.append("--targets is empty: name at least one node to answer")
    if problems:
        raise Fail("; ".join(problems))


def _check_privacy(hive: Hive, comp: Computation) -> None:
    """Refuse up front a round the participants' floors would refuse: with the
    reason, before anything is sent. (The nodes enforce it; this only saves a
    round that could not succeed.)"""
    for alias in dict.fromkeys([comp.proposer, *comp.aggregators, *comp.targets]):
        why = hive.topology.privacy_floor(alias).refuses(comp)
        if why is not None:
            raise Fail(f"refused: {why} (the privacy floor of {alias})")


def _wait_for(sock: Path, comp_id: str, deadline: float, *, quiet: bool) -> ComputationResult:
    bound = deadline + REPORT_GRACE_SECONDS + 10

    def show(update: Any) -> Any:
        def on_event(event: dict[str, Any]) -> None:
            reported, waiting = event.get("reported", []), event.get("waiting", [])
            update(
                f"{len(reported)}/{len(reported) + len(waiting)} aggregator(s) reported"
                + (f", waiting for {', '.join(waiting)}" if waiting else "")
            )

        return on_event

    try:
        if quiet:
            reply = call(sock, {"op": "wait", "comp_id": comp_id}, timeout=bound)
        else:
            with progress(f"round {comp_id}") as update:
                reply = call(
                    sock, {"op": "wait", "comp_id": comp_id}, timeout=bound, on_event=show(update)
                )
    except ControlError as exc:
        raise Fail(f"waiting for {comp_id}: {exc}") from exc
    return ComputationResult.model_validate(reply["result"])


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
    help="Run it as handler NAME of the topology (-f) runs: in its environment "
    "(`requirements:`, built by `hive up`), with its settings and timeout. FILE "
    "defaults to that handler's file.",
)
@click.option(
    "--node",
    metavar="ALIAS",
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
        metadata=_metadata(metadata_items),
    )


inspect_cmds.register(cli)
change_cmds.register(cli)
host_cmds.register(cli)
init_cmds.register(cli)


def main() -> None:
    cli(prog_name="hive")


if __name__ == "__main__":
    main()

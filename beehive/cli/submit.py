"""`hive submit QUERY`: ask the hive, as one of its nodes; the proposer learns the total.

With no `--proposer`, `--aggregators` or `--targets`, the obvious round is
asked: proposed by the first heavy node this machine runs, aggregated by every
heavy node, answered by every node the topology declares (replica sets
included). What was filled in is said on stderr before anything is sent, so
`--json`'s stdout stays one object.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from beehive.cli.common import (
    Fail,
    Hive,
    err,
    hive_options,
    host_option,
    name_list,
    out,
    split_aliases,
)
from beehive.cli.completion import names
from beehive.cli.progress import progress
from beehive.cli.results import print_result
from beehive.core.constants import REPORT_GRACE_SECONDS

if TYPE_CHECKING:
    from beehive.core.models import Computation, ComputationResult, DpRound
    from beehive.topology import Topology

EXIT_PARTIAL = 2


def parse_metadata(items: tuple[str, ...]) -> dict[str, str]:
    """`--metadata KEY=VALUE …` as a dict (strings; a later KEY wins)."""
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: write KEY=VALUE", param_hint="--metadata")
        found[key.strip()] = value
    return found


@click.command()
@click.argument("query")
@hive_options
@click.option(
    "--proposer",
    shell_complete=names("heavy"),
    help="Node that proposes and learns the total [the first heavy node this machine runs].",
)
@click.option(
    "--aggregators",
    shell_complete=names("set", "heavy", comma_list=True),
    help="Comma-separated heavy nodes that sum shares (a replica set's name: all of it) "
    "[every heavy node].",
)
@click.option(
    "--targets",
    shell_complete=names("set", "node", comma_list=True),
    help="Comma-separated nodes that answer (a replica set's name: all of its replicas) "
    "[every node].",
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
    proposer: str | None,
    aggregators: str | None,
    targets: str | None,
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
    from beehive.core.models import RoundRequest, new_comp_id
    from beehive.flower.control import ControlError, ControlTimeout, call

    hive = Hive.open(topology_file, state_dir, host, for_node=proposer)
    chosen = []  # what this command filled in, said before anything is sent
    if proposer is None:
        proposer = _default_proposer(hive)
        chosen.append(f"proposer {proposer}")
        if hive.topology.hosts is not None and hive.host is None:  # its host's state folder
            hive = Hive.open(topology_file, state_dir, host, for_node=proposer)
    topo = hive.topology
    # A replica set's name stands for all of its replicas.
    if aggregators is None:
        aggs = topo.heavy()
        chosen.append(f"aggregators {_folded(topo, aggs)} (every heavy node)")
    else:
        aggs = topo.expand(split_aliases(aggregators))
    if targets is None:
        tgts = list(topo.nodes)
        chosen.append(f"targets {_folded(topo, tgts)} (every node)")
    else:
        tgts = topo.expand(split_aliases(targets))
    _check_round(hive, proposer, aggs, tgts)
    dp = _round_dp(topo, tgts)
    if dp is not None:
        chosen.append(
            f"dp epsilon {dp.epsilon:g}, answers clipped into [{dp.range[0]}, {dp.range[1]}]"
        )
    defaults = topo.defaults
    request = RoundRequest.parse(
        {
            "comp_id": comp_id or new_comp_id(),  # known before anything is sent
            "query": query,
            "aggregators": aggs,
            "targets": tgts,
            "metadata": parse_metadata(metadata_items),
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
        dp=dp,
    )
    comp = request.computation(proposer)
    if len(comp.targets) < comp.min_contributors:
        raise Fail(
            f"{len(comp.targets)} target(s), but a total is released only over at least "
            f"min_contributors {comp.min_contributors} answers: name more --targets"
        )
    _check_privacy(hive, comp)
    if chosen:
        err.print("round: " + "; ".join(chosen), markup=False)
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
        print_result(result)
    sys.exit(
        0 if result.status == "complete" else EXIT_PARTIAL if result.status == "partial" else 1
    )


def _default_proposer(hive: Hive) -> str:
    """The first heavy node (as declared) this machine runs: it can propose, and
    as an aggregator of its own round it sees no more than the total."""
    topo = hive.topology
    heavy = [a for a in hive.local_nodes() if topo.nodes[a].role == "heavy"]
    if not heavy:
        raise Fail(
            f"no heavy node of {topo.name!r} runs here to propose the round: name --proposer"
        )
    return heavy[0]


def _folded(topo: Topology, names: list[str]) -> str:
    """`names` for a person: a replica set that is all there is one word."""
    shown: list[str] = []
    covered: set[str] = set()
    present = set(names)
    for set_name, replicas in topo.replica_sets().items():
        if present.issuperset(replicas):
            shown.append(f"{set_name} (×{len(replicas)})")
            covered.update(replicas)
    shown += [a for a in names if a not in covered]
    return f"{name_list(shown)} — {len(names)} node(s)"


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


def _round_dp(topo: Topology, targets: list[str]) -> DpRound | None:
    """The round's differential privacy: the topology's range, and the smallest
    epsilon any target's policy allows (each target declines a larger one)."""
    from beehive.core.models import DpRound

    hive = topo.defaults.dp
    if hive is None:
        return None
    policies = [p for p in (topo.dp_policy(t) for t in targets) if p is not None]
    epsilon = min((p.epsilon for p in policies), default=hive.epsilon)
    return DpRound(epsilon=epsilon, range=hive.range)


def _check_privacy(hive: Hive, comp: Computation) -> None:
    """Refuse up front a round the participants' floors would refuse: with the
    reason, before anything is sent. (The nodes enforce it; this only saves a
    round that could not succeed. A spent DP budget only the node knows.)"""
    for alias in dict.fromkeys([comp.proposer, *comp.aggregators, *comp.targets]):
        floor = hive.topology.privacy_floor(alias)
        why = floor.refuses(comp)
        if why is None and floor.dp is not None and alias in comp.targets:
            why = floor.dp.refuses(comp.dp)
        if why is not None:
            raise Fail(f"refused: {why} (the privacy floor of {alias})")


def _wait_for(sock: Path, comp_id: str, deadline: float, *, quiet: bool) -> ComputationResult:
    from beehive.core.models import ComputationResult
    from beehive.flower.control import ControlError, call

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


def register(group: click.Group) -> None:
    group.add_command(submit)

"""`hive results [COMP_ID]`: the final results the proposers stored."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from beehive.cli.common import Fail, Hive, err, hive_options, host_option, out

if TYPE_CHECKING:
    from beehive.core.models import ComputationResult


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
    if result.noise is not None and result.result is not None:
        n = result.noise
        out.print(
            f"  noise:        {n.mechanism}, epsilon {n.epsilon:g}, stddev {n.stddev:g}: "
            f"95 % interval for the clean total [{result.result - n.interval95}, "
            f"{result.result + n.interval95}]"
        )


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
    from rich.table import Table

    from beehive.flower.store import StoreError, read_results

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
    group.add_command(results)

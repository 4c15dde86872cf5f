"""`hive graph`: a picture of the hive, as SVG, Graphviz dot or Mermaid.

Hosts as boxes, nodes inside them by role, the handler daemons they are bound to
and the NATS server(s) they dial; `--round COMP_ID` marks that round's proposer,
aggregators and targets. The SVG is laid out in pure Python
(`beehive.topology.graph`), so no system Graphviz is needed.

Only click and `beehive.cli.common` are imported at the top: the topology
(pydantic), sqlite and the store are imported when the command runs, so
registering it costs `hive --help` nothing.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import click

from beehive.cli.common import Fail, Hive, err, hive_options

if TYPE_CHECKING:
    from beehive.topology.graph import Round

FORMATS = ("svg", "dot", "mermaid")
#: What `-o FILE`'s suffix says the format is, when --format does not.
SUFFIX_FORMATS = {
    ".svg": "svg",
    ".dot": "dot",
    ".gv": "dot",
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
}


def format_for(given: str | None, output: Path | None) -> str:
    """--format if given, else what `-o`'s suffix says, else svg."""
    if given is not None:
        return given
    suffix = output.suffix.lower() if output is not None else ""
    return SUFFIX_FORMATS.get(suffix, "svg")


@click.command()
@hive_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="What to write [default: from -o's suffix (.svg, .dot/.gv, .mmd/.mermaid), else svg].",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the picture to FILE (atomically) instead of standard output.",
)
@click.option(
    "--round",
    "comp_id",
    metavar="COMP_ID",
    default=None,
    help="Mark this round's proposer, aggregators and targets (a unique prefix will do).",
)
def graph(
    topology_file: Path,
    state_dir: Path | None,
    fmt: str | None,
    output: Path | None,
    comp_id: str | None,
) -> None:
    """Draw the hive: hosts, nodes by role, handlers and NATS server(s).

    Needs no running hive and no Graphviz; with --round, reads the round from the
    nodes' stores in the state folder. A replica set is drawn once (`bee ×997`).
    """
    from beehive.topology import graph as pictures

    hive = Hive.open(topology_file, state_dir)
    round_ = find_round(hive, comp_id) if comp_id is not None else None
    pic = pictures.picture(hive.topology, round_)
    render = {"svg": pictures.to_svg, "dot": pictures.to_dot, "mermaid": pictures.to_mermaid}
    text = render[format_for(fmt, output)](pic)
    if output is None:
        click.echo(text, nl=False)
        return
    from beehive.core.files import write_atomic

    try:  # rendered in full first, then replaced in one step: never half a picture
        write_atomic(output, text.encode(), mode=0o644)
    except OSError as exc:
        raise Fail(f"-o {output}: cannot write it: {exc.strerror or exc}") from exc
    err.print(f"wrote {output}", markup=False)


def find_round(hive: Hive, comp_id: str) -> Round:
    """The round `comp_id` (or the one round whose id starts with it), from the
    stores of this machine's nodes: the proposer's stored result if the round
    finished, else the signed spec every participant keeps while it is open."""
    import sqlite3

    from beehive.core.models import Computation
    from beehive.flower.store import StoreError, read_results
    from beehive.topology.graph import Round

    if not comp_id.strip():
        raise Fail("--round: empty: give a round's id, or a unique prefix of it")
    finished: dict[str, Round] = {}
    running: dict[str, Round] = {}
    for alias in hive.local_nodes():
        path = hive.layout_of(alias).store(alias)
        if not path.exists():
            continue
        try:
            for r in read_results(path):
                if r.comp_id.startswith(comp_id):
                    targets = tuple(sorted({*r.contributors, *r.missing}))
                    finished[r.comp_id] = Round(
                        r.comp_id, r.status, r.proposer, tuple(r.aggregators), targets
                    )
            for spec in _open_specs(path, comp_id):
                c = Computation.model_validate_json(spec)
                running[c.comp_id] = Round(
                    c.comp_id, "open", c.proposer, tuple(c.aggregators), tuple(c.targets)
                )
        # One damaged store must not hide the round the others know.
        except StoreError as exc:  # names the file itself
            err.print(f"warning: {exc}", markup=False, style="yellow")
        except (sqlite3.Error, ValueError) as exc:
            err.print(f"warning: {path}: {exc}", markup=False, style="yellow")
    found = running | finished
    if len(found) == 1:
        return next(iter(found.values()))
    where = f"the node stores under {hive.state_dir}"
    if not found:
        raise Fail(
            f"--round {comp_id}: no round with that id in {where} (topology "
            f"{hive.file}); `hive results -f {hive.file}` lists the finished ones"
        )
    raise Fail(
        f"--round {comp_id}: ambiguous, {len(found)} rounds in {where} start with it "
        f"({', '.join(sorted(found)[:5])}{', …' if len(found) > 5 else ''}): give more of the id"
    )


def _open_specs(db_path: Path, prefix: str) -> list[bytes]:
    """The signed specs of the rounds in a node's store whose id starts with
    `prefix`, read-only (the node may be writing): each role keeps the spec while
    the round is open, and a day after (`KEEP_CLOSED`)."""
    import sqlite3

    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        try:
            rows = db.execute(
                "SELECT DISTINCT spec FROM rounds WHERE substr(comp_id, 1, ?) = ?",
                (len(prefix), prefix),
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # created, never written to
            raise
    return [bytes(r[0]) for r in rows]


def register(group: click.Group) -> None:
    group.add_command(graph)

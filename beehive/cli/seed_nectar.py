"""`nectar`: the seed's handler commands, on the same runtime as `hive`.

    nectar test FILE | launch FILE NAME | stop NAME | view
    nectar attach NAME ALIAS | detach NAME ALIAS | logs NAME [--follow]

Each command edits the local hive's registry (see beehive.cli.adhoc) and applies
it like `hive up`: a launched handler is a supervised daemon; attach and detach
only rewrite its config, which the daemon re-reads live — no node and no handler
restarts. One handler per node; one handler may serve many nodes.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from beehive.cli.adhoc import LocalHive
from beehive.cli.common import Fail
from beehive.cli.seed_options import (
    SeedGroup,
    apply_and_report,
    data_dir,
    data_dir_option,
    log_command,
    process_fields,
    processes,
    state_line,
)
from beehive.core.errors import BeehiveError
from beehive.core.names import check_name
from beehive.topology.layout import StateLayout


@click.group(cls=SeedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@data_dir_option
@click.pass_context
def cli(ctx: click.Context, data_dir: Path) -> None:
    """Handlers for the local hive (the seed's `nectar`; same runtime as `hive`).

    A handler is a Python file with a @handler function returning an int. Launch
    it once, attach it to the nodes it should answer for; a node without a
    handler keeps its computations (.pending) until one is attached.
    """
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir


@cli.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--query", default="What is your secret value", show_default=True)
def test(file: Path, query: str) -> None:
    """Run the handler in FILE on a sample computation, with no network
    (`hive handler test`)."""
    from beehive.nectar import load_handler
    from beehive.nectar.harness import run_sample

    try:
        value = run_sample(load_handler(file), query=query)
    except BeehiveError as exc:  # HandlerError, or a file that is no handler
        raise Fail(f"Handler test failed: {exc}") from exc
    click.echo(f"✅ Handler test passed! Result: {value}")


@cli.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("name")
@click.pass_context
def launch(ctx: click.Context, file: Path, name: str) -> None:
    """Start the handler in FILE as a supervised daemon called NAME."""
    check_name(name, "handler name")
    file = file.resolve()
    with LocalHive.edit(data_dir(ctx)) as local:
        known = local.registry.handlers.get(name)
        if known is not None and known["file"] != str(file):
            raise Fail(
                f"a handler named {name!r} already runs {known['file']}: "
                f"`nectar stop {name}` first, or choose another name"
            )
        local.registry.handlers[name] = {"file": str(file)}
        apply_and_report(local, f"Handler {name!r} launched from {file}")


@cli.command()
@click.argument("name")
@click.pass_context
def stop(ctx: click.Context, name: str) -> None:
    """Stop handler NAME and detach it from every node it served."""
    with LocalHive.edit(data_dir(ctx)) as local:
        if name not in local.registry.handlers:
            raise Fail(f"no handler named {name!r} (launched: {_names(local)})")
        served = local.registry.served_by(name)
        for alias in served:
            local.registry.nodes[alias]["handler"] = None
        del local.registry.handlers[name]
        detached = f"; detached from {', '.join(served)}" if served else ""
        apply_and_report(local, f"Handler {name!r} stopped{detached}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
@click.pass_context
def view(ctx: click.Context, as_json: bool) -> None:
    """List launched handlers: one line each with its state, then the nodes it
    serves, its pid and file."""
    local = LocalHive(data_dir(ctx))
    procs = processes(local)
    handlers = []
    for name, spec in sorted(local.registry.handlers.items()):
        proc = procs.get(StateLayout.handler_program(name))
        handlers.append(
            {
                "name": name,
                **process_fields(proc),
                "serves": local.registry.served_by(name),
                "file": spec["file"],
            }
        )
    if as_json:
        click.echo(json.dumps({"handlers": handlers, "total": len(handlers)}))
        return
    if not handlers:
        click.echo("No handlers launched (`nectar launch FILE NAME`)")
        return
    for row in handlers:
        click.echo(f"  {state_line(bool(row['running']))}  {row['name']}")
        click.echo(f"     Serves: {', '.join(map(str, row['serves'])) or 'none'}")
        click.echo(f"     PID: {row['pid'] or '-'}")
        click.echo(f"     File: {row['file']}")
    click.echo(f"Total: {len(handlers)} handler(s)")


@cli.command()
@click.argument("name")
@click.argument("alias")
@click.pass_context
def attach(ctx: click.Context, name: str, alias: str) -> None:
    """Make handler NAME answer node ALIAS's computations (live: nothing restarts)."""
    with LocalHive.edit(data_dir(ctx)) as local:
        _check(local, name, alias)
        current = local.registry.nodes[alias]["handler"]
        if current == name:
            click.echo(f"✅ Handler {name!r} is already attached to {alias!r}")
            return
        if current is not None:
            raise Fail(
                f"{alias!r} is already served by handler {current!r}: one handler per node — "
                f"run `nectar detach {current} {alias}` first"
            )
        local.registry.nodes[alias]["handler"] = name
        apply_and_report(local, f"Handler {name!r} attached to {alias!r}")


@cli.command()
@click.argument("name")
@click.argument("alias")
@click.pass_context
def detach(ctx: click.Context, name: str, alias: str) -> None:
    """Stop handler NAME answering for ALIAS; ALIAS keeps its computations pending."""
    with LocalHive.edit(data_dir(ctx)) as local:
        _check(local, name, alias)
        if local.registry.nodes[alias]["handler"] != name:
            raise Fail(f"handler {name!r} is not attached to {alias!r}")
        local.registry.nodes[alias]["handler"] = None
        apply_and_report(local, f"Handler {name!r} detached from {alias!r}")


cli.command("logs")(log_command(StateLayout.handler_program, "handler"))


def _check(local: LocalHive, name: str, alias: str) -> None:
    if name not in local.registry.handlers:
        raise Fail(
            f"no handler named {name!r} (launched: {_names(local)}): "
            f"`nectar launch FILE {name}` first"
        )
    if alias not in local.registry.nodes:
        known = ", ".join(sorted(local.registry.nodes)) or "none"
        raise Fail(f"no node {alias!r} is registered (registered: {known}): `bee-hive register`")


def _names(local: LocalHive) -> str:
    return ", ".join(sorted(local.registry.handlers)) or "none"


def main() -> None:
    cli(prog_name="nectar")


if __name__ == "__main__":
    main()

"""`bee-hive`: the seed's node commands, on the same runtime as `hive`.

    bee-hive register | list | submit QUERY … | peers ALIAS | logs ALIAS | deregister ALIAS

Registering a node adds it to the local hive's registry and applies it like
`hive up`: the node gets keys, a supervised process, and every peer adopts the
new directory live. `deregister` stops the node and deletes its keys and data.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import click
from rich.table import Table

from beehive.cli import main as hive_main
from beehive.cli.adhoc import LocalHive, check_password, hash_password
from beehive.cli.common import Fail, HiveGroup, out
from beehive.cli.seed_options import (
    apply_and_report,
    data_dir,
    data_dir_option,
    log_command,
    processes,
)
from beehive.core.names import check_name
from beehive.topology.layout import StateLayout


@click.group(cls=HiveGroup, context_settings={"help_option_names": ["-h", "--help"]})
@data_dir_option
@click.pass_context
def cli(ctx: click.Context, data_dir: Path) -> None:
    """Nodes of the local hive (the seed's `bee-hive`; same runtime as `hive`).

    Heavy nodes aggregate shares (and may answer); light nodes only answer.
    Attach a handler to a node with `nectar attach` so it can answer.
    """
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir


@cli.command()
@click.option(
    "--node-type",
    type=click.Choice(["heavy", "light"]),
    prompt="Node type (heavy aggregates, light only answers)",
    help="heavy: aggregates shares and may answer; light: only answers.",
)
@click.option("--alias", prompt="Alias", help="The node's name (lowercase, e.g. alice).")
@click.option("--email", prompt="E-mail", help="Contact of the node's owner.")
@click.option(
    "--password",
    prompt="Password",
    hide_input=True,
    confirmation_prompt=True,
    help="Needed to deregister the node; only a salted hash is kept.",
)
@click.pass_context
def register(ctx: click.Context, node_type: str, alias: str, email: str, password: str) -> None:
    """Register a node and start it (prompts for anything not given)."""
    check_name(alias, "alias")
    if not password:
        raise Fail("the password is empty: it is needed to deregister the node")
    with LocalHive.edit(data_dir(ctx)) as local:
        if alias in local.registry.nodes:
            raise Fail(f"{alias!r} is already registered (`bee-hive deregister {alias}` first)")
        local.registry.nodes[alias] = {
            "role": node_type,
            "email": email,
            "password": hash_password(password),
            "handler": None,
        }
        apply_and_report(local, f"registered {node_type} node {alias!r}")


@cli.command("list")
@click.pass_context
def list_nodes(ctx: click.Context) -> None:
    """List registered nodes, their state and handler."""
    local = LocalHive(data_dir(ctx))
    if not local.registry.nodes:
        out.print("no nodes registered (`bee-hive register`)")
        return
    procs = processes(local)
    table = Table(title=f"nodes — {local.data_dir}")
    for col in ("alias", "type", "state", "pid", "handler", "email"):
        table.add_column(col)
    for alias, node in sorted(local.registry.nodes.items()):
        proc = procs.get(StateLayout.node_program(alias))
        table.add_row(
            alias,
            node["role"],
            proc.state if proc else "stopped",
            str(proc.pid) if proc and proc.pid else "-",
            node["handler"] or "-",
            node["email"],
        )
    out.print(table)


@cli.command()
@click.argument("query")
@click.option("--proposer", required=True, help="Node that proposes and learns the total.")
@click.option("--aggregators", required=True, help="Comma-separated heavy nodes that sum shares.")
@click.option("--targets", required=True, help="Comma-separated nodes that answer.")
@click.option("--deadline", type=float, default=30.0, show_default=True, help="Seconds.")
@click.option("--wait", is_flag=True, help="Block until the result, showing progress.")
@click.option("--json", "as_json", is_flag=True, help="Wait, then print one JSON object.")
@click.pass_context
def submit(ctx: click.Context, **kwargs: object) -> None:
    """Ask QUERY of the targets (`hive submit`); the result also lands in
    <data-dir>/.hive/bee-hive/data/<proposer>/final_<comp_id>.json."""
    local = LocalHive(data_dir(ctx))
    ctx.invoke(hive_main.submit, topology_file=local.topology_file, state_dir=None, **kwargs)


@cli.command()
@click.argument("alias")
@click.pass_context
def peers(ctx: click.Context, alias: str) -> None:
    """The peers ALIAS trusts: the pinned directory, with key fingerprints."""
    local = LocalHive(data_dir(ctx))
    if alias not in local.registry.nodes:
        raise Fail(f"no node {alias!r} is registered")
    path = StateLayout(local.state_dir()).directory_json
    try:
        members = json.loads(path.read_bytes())["members"]
    except (OSError, ValueError, KeyError) as exc:
        raise Fail(f"no directory yet ({path}): is the hive up? ({exc})") from exc
    table = Table(title=f"peers pinned by {alias}")
    for col in ("alias", "type", "signing key (sha256)", "encryption key (sha256)"):
        table.add_column(col)
    for peer, keys in sorted(members.items()):
        if peer == alias:
            continue
        role = local.registry.nodes.get(peer, {}).get("role", "?")
        table.add_row(peer, role, _fingerprint(keys["signing_key"]), _fingerprint(keys["hpke_key"]))
    out.print(table)


cli.command("logs")(log_command(StateLayout.node_program, "node", "ALIAS"))


@cli.command()
@click.argument("alias")
@click.option("--password", help="The node's password (asked for when not given).")
@click.pass_context
def deregister(ctx: click.Context, alias: str, password: str | None) -> None:
    """Stop node ALIAS and delete its keys and data (asks for its password)."""
    with LocalHive.edit(data_dir(ctx)) as local:
        node = local.registry.nodes.get(alias)
        if node is None:
            raise Fail(f"no node {alias!r} is registered")
        if password is None:
            password = click.prompt(f"Password of {alias}", hide_input=True)
        if not check_password(password, node["password"]):
            raise Fail(f"wrong password for {alias!r}: nothing changed")
        del local.registry.nodes[alias]
        apply_and_report(
            local, f"deregistered {alias!r}: stopped, keys and data deleted", purge=True
        )


def _fingerprint(b64_key: str) -> str:
    return hashlib.sha256(base64.b64decode(b64_key)).hexdigest()[:16]


def main() -> None:
    cli(prog_name="bee-hive")


if __name__ == "__main__":
    main()

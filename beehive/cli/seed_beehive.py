"""`bee-hive`: the seed's node commands, on the same runtime as `hive`.

    bee-hive register | list | submit QUERY … | peers ALIAS | logs ALIAS | deregister ALIAS

Registering a node adds it to the local hive's registry and applies it like
`hive up`: the node gets keys, a supervised process, and every peer adopts the
new directory live. `deregister` stops the node and deletes its keys and data.

The lines scripts read are the seed's (`  🟢 running  @alice`, `Total: N node(s)`,
`   ID: <comp_id>`, `❌ …` on stderr), and so are the paths: `<data-dir>/<alias>/keys/`
and `<data-dir>/<alias>/data/final_<comp_id>.json` (links into the state folder).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
from pathlib import Path

import click
from rich.table import Table

from beehive.cli import submit as submit_cmds
from beehive.cli.adhoc import SEED_NECTAR, LocalHive, check_password, hash_password
from beehive.cli.common import Fail, out, split_aliases
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
from beehive.core.names import check_name
from beehive.topology.layout import StateLayout
from beehive.topology.schema import check_nats_url


@click.group(cls=SeedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@data_dir_option
@click.pass_context
def cli(ctx: click.Context, data_dir: Path) -> None:
    """Nodes of the local hive (the seed's `bee-hive`; same runtime as `hive`).

    Heavy nodes aggregate shares (and may answer); light nodes only answer.
    Attach a handler to a node with `nectar attach` so it can answer.
    """
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir


# The prompts come in the seed's order (node type, alias, email, password): click
# asks for missing options in the order they are declared here.
@cli.command()
@click.option(
    "--node-type",
    type=click.Choice(["heavy", "light"]),
    prompt="Node type (heavy aggregates, light only answers)",
    help="heavy: aggregates shares and may answer; light: only answers.",
)
@click.option("--alias", prompt="Alias", help="The node's name (lowercase, e.g. alice).")
@click.option("--email", prompt="Email", help="Contact of the node's owner.")
@click.option(
    "--password",
    prompt="Password",
    hide_input=True,
    confirmation_prompt=True,
    help="Needed to deregister the node; only a salted hash is kept.",
)
@click.option(
    "--nats-url",
    help="An external NATS server (nats://host:port or tls://…) for the whole local hive "
    "[default: the hive's own nats-server on 127.0.0.1:HIVE_NATS_PORT, 4222].",
)
@click.pass_context
def register(
    ctx: click.Context,
    node_type: str,
    alias: str,
    email: str,
    password: str,
    nats_url: str | None,
) -> None:
    """Register a node and start it (prompts for anything not given)."""
    check_name(alias, "alias")
    if alias == SEED_NECTAR:
        raise Fail(f"{alias!r} is the handlers' folder in the data folder: choose another alias")
    if not password:
        raise Fail("the password is empty: it is needed to deregister the node")
    if nats_url is not None:
        try:
            nats_url = check_nats_url(nats_url)
        except ValueError as exc:
            raise Fail(f"--nats-url: {exc}") from exc
    with LocalHive.edit(data_dir(ctx)) as local:
        if alias in local.registry.nodes:
            raise Fail(f"{alias!r} is already registered (`bee-hive deregister {alias}` first)")
        if nats_url is not None and nats_url != local.registry.nats_url:
            if local.registry.nodes:
                now = local.registry.nats_url or "the hive's own nats-server"
                raise Fail(
                    f"the local hive's nodes already meet on {now}: every node of it uses "
                    "one NATS server (deregister them all to change it)"
                )
            local.registry.nats_url = nats_url
        local.registry.nodes[alias] = {
            "role": node_type,
            "email": email,
            "password": hash_password(password),
            "handler": None,
        }
        apply_and_report(local, f"Node {alias!r} registered ({node_type})")


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
@click.pass_context
def list_nodes(ctx: click.Context, as_json: bool) -> None:
    """List registered nodes: state, type, e-mail and handler (the seed's lines)."""
    local = LocalHive(data_dir(ctx))
    procs = processes(local)
    nodes = []
    for alias, node in sorted(local.registry.nodes.items()):
        proc = procs.get(StateLayout.node_program(alias))
        nodes.append(
            {
                "alias": alias,
                "type": node["role"],
                **process_fields(proc),
                "email": node["email"],
                "handler": node["handler"],
            }
        )
    if as_json:
        click.echo(json.dumps({"nodes": nodes, "total": len(nodes)}))
        return
    if not nodes:
        click.echo("No nodes registered (`bee-hive register`)")
    else:
        click.echo(f"📋 Registered nodes ({local.data_dir}):")
        click.echo()
    for row in nodes:
        # Scripts parse these lines: `grep '  @' | sed -E 's/^[^@]*@([a-zA-Z0-9_-]+).*/\1/'`.
        click.echo(f"  {state_line(bool(row['running']))}  @{row['alias']}")
        click.echo(f"     Type: {row['type']}")
        click.echo(f"     Email: {row['email']}")
        click.echo(f"     Handler: {row['handler'] or 'none'}")
        click.echo()
    click.echo(f"Total: {len(nodes)} node(s)")


@cli.command()
@click.argument("query")
@click.option("--proposer", required=True, help="Node that proposes and learns the total.")
@click.option("--aggregators", required=True, help="Comma-separated heavy nodes that sum shares.")
@click.option("--targets", required=True, help="Comma-separated nodes that answer.")
@click.option("--deadline", type=float, default=30.0, show_default=True, help="Seconds.")
@click.option("--wait", is_flag=True, help="Block until the result, showing progress.")
@click.option("--json", "as_json", is_flag=True, help="Wait, then print one JSON object.")
@click.pass_context
def submit(
    ctx: click.Context,
    query: str,
    proposer: str,
    aggregators: str,
    targets: str,
    deadline: float,
    wait: bool,
    as_json: bool,
) -> None:
    """Ask QUERY of the targets (`hive submit`) and print its ID; the result lands in
    <data-dir>/<proposer>/data/final_<comp_id>.json (--wait/--json: wait for it)."""
    local = LocalHive(data_dir(ctx))
    args = {
        "query": query,
        "topology_file": local.topology_file,
        "state_dir": None,
        "proposer": proposer,
        "aggregators": aggregators,
        "targets": targets,
        "deadline": deadline,
    }
    if wait or as_json:
        ctx.invoke(submit_cmds.submit, wait=wait, as_json=as_json, **args)
        return
    # `hive submit` without --wait prints exactly the comp_id (its contract).
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        ctx.invoke(submit_cmds.submit, wait=False, as_json=False, **args)
    comp_id = printed.getvalue().strip()
    click.echo("✅ Computation submitted")
    click.echo(f"   ID: {comp_id}")
    click.echo(f"   Proposer: {proposer}")
    click.echo(f"   Aggregators: {', '.join(split_aliases(aggregators))}")
    click.echo(f"   Targets: {', '.join(split_aliases(targets))}")
    click.echo(f"   Deadline: {deadline:g}s")
    click.echo(f"   Result: {local.data_dir / proposer / 'data' / f'final_{comp_id}.json'}")


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
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def deregister(ctx: click.Context, alias: str, password: str | None, yes: bool) -> None:
    """Stop node ALIAS and delete its keys and data (asks for its password, and
    for confirmation unless --yes)."""
    with LocalHive.edit(data_dir(ctx)) as local:
        node = local.registry.nodes.get(alias)
        if node is None:
            raise Fail(f"no node {alias!r} is registered")
        if password is None:
            password = click.prompt(f"Password of {alias}", hide_input=True)
        if not check_password(password, node["password"]):
            raise Fail(f"wrong password for {alias!r}: nothing changed")
        if not yes and not click.confirm(
            f"Deregister {alias!r}? Its node stops and its keys and data are deleted",
            default=False,
        ):
            raise Fail("cancelled: nothing changed")
        del local.registry.nodes[alias]
        apply_and_report(
            local, f"Node {alias!r} deregistered: stopped, keys and data deleted", purge=True
        )


def _fingerprint(b64_key: str) -> str:
    return hashlib.sha256(base64.b64decode(b64_key)).hexdigest()[:16]


def main() -> None:
    cli(prog_name="bee-hive")


if __name__ == "__main__":
    main()

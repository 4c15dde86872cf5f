"""Multi-host commands: `hive keys --host H` (on H) and `hive trust sign` (the operator).

The work is `beehive.orchestrator.trust`; this renders it. See docs/multi-host.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from beehive.cli.common import Fail, Hive, HiveGroup, hive_options, out, split_aliases
from beehive.topology.layout import operator_state_dir


@click.command("keys")
@hive_options
@click.option(
    "--host",
    required=True,
    envvar="HIVE_HOST",
    metavar="HOST",
    help="The host this is (run it on that host) [env HIVE_HOST].",
)
@click.option(
    "--rotate-keys",
    "rotate_keys",
    metavar="ALIAS[,ALIAS…]",
    multiple=True,
    help="Give these nodes of HOST NEW keys (replacing their key files); the operator "
    "then signs again, and `hive up --host HOST` restarts them on the new keys.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def keys_cmd(
    topology_file: Path,
    state_dir: Path | None,
    host: str,
    rotate_keys: tuple[str, ...],
    as_json: bool,
) -> None:
    """Make HOST's private keys (once) and publish their public halves.

    Generates, in HOST's state folder (0600), the keys of every node the topology
    places on HOST, and the TLS key of its nats-server if it runs one. Writes only
    public keys, each with a proof that this host holds it, to
    trust/hosts/HOST.json beside the topology: commit that file, for the operator
    to review and `hive trust sign`. Running it again changes nothing.
    """
    from beehive.orchestrator import trust as trust_steps

    hive = Hive.open(topology_file, state_dir, host)
    result = trust_steps.make_host_keys(
        hive.topology,
        host,
        hive.state_dir,
        hive.trust,
        rotate=[a for value in rotate_keys for a in split_aliases(value)],
    )
    if as_json:
        doc = {
            "host": host,
            "host_file": str(result.host_file),
            "changed": result.changed,
            "generated": result.generated,
            "state_dir": str(hive.state_dir),
        }
        print(json.dumps(doc, sort_keys=True))
        return
    nodes = hive.topology.nodes_on(host)
    if result.generated:
        out.print(f"{host}: generated {', '.join(result.generated)} in {hive.state_dir}")
    what = "wrote" if result.changed else "unchanged:"
    out.print(f"{host}: {what} {result.host_file} ({len(nodes)} node(s), public keys only)")
    if result.changed:
        out.print(
            f"  next: commit {result.host_file.name}; the operator runs `hive trust sign`, "
            f"then `hive up --host {host}` here"
        )


@click.group("trust", cls=HiveGroup)
def trust_group() -> None:
    """The operator's side of a multi-host hive: sign the hosts' public keys."""


@trust_group.command("sign")
@hive_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sign_cmd(topology_file: Path, state_dir: Path | None, as_json: bool) -> None:
    """Check every trust/hosts/*.json against the topology and sign the directory.

    Run by the operator, on any machine with the topology and its trust/ folder.
    On its first run it creates the operator key and the hive's CA in the state
    folder (default .hive/<name>/operator/). Each node's keys must come from its
    own host's file with valid proofs, and nothing may be missing or extra; every
    failure is named and then nothing is written. It writes trust/directory.json,
    trust/directory.sig, trust/ca.pem, trust/nats/<host>.pem and
    trust/operator.pub: commit them, then run `hive up --host H` on every host. It
    never reads a host's private key.
    """
    hive = Hive.open(topology_file, state_dir)
    if hive.topology.hosts is None:
        raise Fail(
            f"topology {hive.topology.name!r} declares no hosts: `hive up` signs its "
            "directory itself (add a 'hosts:' section to spread the hive over machines)"
        )
    from beehive.orchestrator import trust as trust_steps

    operator = state_dir.resolve() if state_dir else operator_state_dir(hive.file, hive.topology)
    result = trust_steps.sign_trust(hive.topology, hive.trust, operator)
    members = len(result.directory)
    if as_json:
        doc = {
            "fingerprint": result.fingerprint,
            "members": members,
            "written": [str(p) for p in result.written],
            "operator_state_dir": str(operator),
        }
        print(json.dumps(doc, sort_keys=True))
        return
    hosts = len(result.directory.hosts or ())
    out.print(
        f"{hive.topology.name}: signed {members} node(s) on {hosts} host(s) with "
        f"operator key {result.fingerprint}"
    )
    if result.written:
        for path in result.written:
            out.print(f"  wrote {path}")
        out.print(f"  next: commit {hive.trust.root}, then `hive up --host H` on every host")
    else:
        out.print("  unchanged: trust/ already holds this signed directory")


def register(group: click.Group) -> None:
    group.add_command(keys_cmd)
    group.add_command(trust_group)


__all__ = ["register"]

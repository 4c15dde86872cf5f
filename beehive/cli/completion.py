"""`hive completion bash|zsh|fish`, and what a Tab offers: the topology's own names.

The script is click's own (it calls `hive` back with `_HIVE_COMPLETE` set);
what it offers for a NAME, `--proposer`, `--targets` or `--handler` comes from
the topology the command line names (or the nearest hive.yaml): node aliases,
replica sets, handler names and program names. A topology that does not load
offers nothing rather than an error: a Tab must never print a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import click
from click.shell_completion import CompletionItem, get_completion_class

from beehive.cli.common import TOPOLOGY_NAMES, find_topology

Kind = Literal["node", "heavy", "set", "handler", "program"]
Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]

SHELLS = ("bash", "zsh", "fish")


def names(*kinds: Kind, comma_list: bool = False) -> Completer:
    """A `shell_complete` for a parameter that takes the topology's names of
    `kinds`; with `comma_list`, the last item of `a,b,c` is completed."""

    def complete(
        ctx: click.Context, _param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        head, _, last = incomplete.rpartition(",") if comma_list else ("", "", incomplete)
        prefix = f"{head}," if head else ""
        return [
            CompletionItem(prefix + name, help=kind)
            for name, kind in _known(ctx, kinds)
            if name.startswith(last)
        ]

    return complete


def _known(ctx: click.Context, kinds: tuple[Kind, ...]) -> list[tuple[str, str]]:
    """(name, kind) of every name of `kinds` the topology declares."""
    from beehive.topology import TopologyError, load_topology
    from beehive.topology.layout import NATS_GUARD_PROGRAM, NATS_PROGRAM, StateLayout

    file = ctx.params.get("topology_file") or find_topology(Path.cwd())
    try:
        topo = load_topology(Path(file or TOPOLOGY_NAMES[0]))
    except (TopologyError, OSError):
        return []
    sets = topo.replica_sets()
    found: list[tuple[str, str]] = []
    if "set" in kinds:
        found += [(name, "replica set") for name in sets]
    if "node" in kinds or "heavy" in kinds:
        found += [
            (alias, node.role)
            for alias, node in topo.nodes.items()
            if "node" in kinds or node.role == "heavy"
        ]
    if "handler" in kinds:
        found += [(name, "handler") for name in topo.handlers]
    if "program" in kinds:
        programs = StateLayout.node_processes(list(topo.nodes), topo.runtime.nodes_per_process)
        found += [(p, "program") for p in programs if p.startswith("pack-")]
        found += [(StateLayout.handler_program(h), "program") for h in topo.handlers]
        if topo.nats.embedded:
            found += [(NATS_PROGRAM, "program"), (NATS_GUARD_PROGRAM, "program")]
    return list(dict.fromkeys(found))


#: What a NAME of `hive logs|restart|stop|start` may be.
PROGRAM_NAMES = names("set", "node", "handler", "program")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash:  echo 'eval "$(hive completion bash)"' >> ~/.bashrc
    zsh:   echo 'eval "$(hive completion zsh)"' >> ~/.zshrc
    fish:  hive completion fish > ~/.config/fish/completions/hive.fish
    """
    from beehive.cli.main import cli

    script = get_completion_class(shell)
    assert script is not None  # every one of SHELLS is click's own
    click.echo(script(cli, {}, "hive", "_HIVE_COMPLETE").source())


def register(group: click.Group) -> None:
    group.add_command(completion)

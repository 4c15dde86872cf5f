"""Rendering `hive up` and `hive plan`: the work is `beehive.orchestrator.service`.

`bring_up` here is what `hive up` prints; the seed's `nectar` and `bee-hive`
commands call it too after they edit their generated topology, so there is one
apply path and one way of reporting it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from beehive.cli.common import Hive, hive_options, host_option, name_list, out
from beehive.cli.progress import progress

if TYPE_CHECKING:
    from beehive.orchestrator.preview import Preview


def bring_up(
    hive: Hive,
    *,
    timeout: float = 30.0,
    purge: bool = False,
    rotate_keys: Sequence[str] = (),
    pin_operator: str | None = None,
) -> None:
    """`hive up` for `hive`, with progress, and one line saying what changed."""
    from beehive.orchestrator import service

    what = hive.topology.name + (f" on host {hive.host}" if hive.host else "")
    with progress(f"bringing up {what!r} in {hive.state_dir}") as update:
        result = service.bring_up(
            hive.topology,
            hive.state_dir,
            timeout=timeout,
            purge=purge,
            rotate_keys=rotate_keys,
            on_progress=update,
            share=hive.share(pin_operator),
        )
    if result.pinned:
        out.print(
            f"{result.name}: host {result.host} pinned operator key {result.pinned} "
            "(compare it with the operator's: a directory signed by another key is refused)"
        )
    took, applied = result.seconds, result.applied
    if not result.changed_anything:
        out.print(f"{result.name}: up to date, nothing changed ({took:.1f}s)")
        return
    restarted_anyway = set(applied.added) | set(applied.changed) | set(result.key_restarts)
    host_of = {a: program for program, nodes in hive.node_processes().items() for a in nodes}
    rotated_only = [a for a in result.rotated if host_of.get(a) not in restarted_anyway]
    revived = [f"{name} (was {state})" for name, state in result.revived.items()]
    parts = [f"{result.programs} process(es) healthy"]
    for label, names in (
        ("started", applied.added),
        ("restarted", [*applied.changed, *revived]),
        ("restarted (keys rotated)", result.key_restarts),
        ("new keys for", rotated_only),
        ("removed", applied.removed),
        ("reloaded live", applied.reloaded),
        ("purged keys and data of", result.purged),
        ("stopped orphaned pids", [str(pid) for pid in result.orphans]),
    ):
        if names:
            parts.append(f"{label}: {name_list(list(names))}")
    out.print(f"{result.name}: up in {took:.1f}s — " + "; ".join(parts))
    if applied.removed and result.kept:
        out.print(
            f"  keys kept for {name_list(list(result.kept))} (`hive up --purge` deletes them)"
        )


@click.command("plan")
@hive_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
@host_option
def plan_cmd(topology_file: Path, state_dir: Path | None, as_json: bool, host: str | None) -> None:
    """Show what `hive up` would start, restart, remove and change — without doing it.

    A program restarts only when its own config changed (its BEEHIVE_CONFIG_HASH
    differs from the running one). Nodes reload directory.json and handler daemons
    re-attach live; those appear as `live`, not as restarts. Nothing is written,
    and no key is generated (new nodes show as "to be generated").

    A node whose key file no longer matches the signed directory is refused with
    the same error as `hive up` (exit 1): see `hive up --rotate-keys`.
    """
    from beehive.orchestrator import service

    hive = Hive.open(topology_file, state_dir, host)
    hive.need_host("plan")
    found = service.preview_up(hive.topology, hive.state_dir, share=hive.share())
    if as_json:
        print(json.dumps({"name": hive.topology.name, **found.to_json()}, sort_keys=True))
        return
    show_preview(hive, found)


def show_preview(hive: Hive, found: Preview) -> None:
    where = "supervisord running" if found.supervisord_running else "not running"
    out.print(f"plan for {hive.topology.name!r} in {hive.state_dir} ({where}):")
    if found.empty:
        out.print("  no changes: `hive up` would do nothing")
        return
    rows: list[tuple[str, str, str]] = [(" + start", n, "") for n in found.start]
    rows += [(" ~ restart", n, why) for n, why in found.restart.items()]
    rows += [(" - remove", n, "stopped and removed") for n in found.remove]
    rows += [(" ↻ live", n, what) for n, what in found.live.items()]
    width = max((len(n) for _, n, _ in rows), default=0)
    for label, name, note in rows:
        out.print(f" {label:<10} {name:<{width}}  {note}".rstrip())
    if found.unchanged:
        untouched = [n for n in found.unchanged if n not in found.live]
        if untouched:
            out.print(f"   unchanged  {', '.join(untouched)}")
    if found.keys_to_generate:
        out.print(f"  keys to be generated: {', '.join(found.keys_to_generate)}")
    if found.keys_kept:
        out.print(
            f"  keys kept for nodes not in the topology: {', '.join(found.keys_kept)} "
            "(`hive up --purge` deletes them)"
        )
    for env, handlers in found.environments_to_build.items():
        out.print(f"  environment to build: {env} (handler {', '.join(handlers)})")
    files = found.files
    summary = [
        f"{len(v)} to {k}"
        for k, v in (
            ("create", files.created),
            ("change", files.changed),
            ("remove", files.removed),
        )
        if v
    ]
    if summary:
        out.print("  files: " + ", ".join(summary))
        for label, paths in (("+", files.created), ("~", files.changed), ("-", files.removed)):
            for path in paths:
                out.print(f"    {label} {path}")


def register(group: click.Group) -> None:
    group.add_command(plan_cmd)


__all__ = ["bring_up", "register"]

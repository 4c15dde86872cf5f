"""`hive up`'s apply path and `hive plan`, its dry run.

`bring_up` is the one load → compile → apply path: `hive up` calls it, and so do
the seed's `nectar` and `bee-hive` commands after they edit their generated
topology. `hive plan` compiles the same plan without writing anything (no key is
generated: new nodes' keys show as "to be generated") and compares it with the
state folder and with what supervisord runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from beehive.cli.common import Fail, Hive, hive_options, out
from beehive.cli.progress import progress
from beehive.orchestrator import UnhealthyError, apply_plan, supervisor
from beehive.orchestrator import down as take_down
from beehive.orchestrator.prepare import missing_keys, orphaned_keys, prepare, purge_orphans
from beehive.orchestrator.preview import Preview, preview


def bring_up(hive: Hive, *, timeout: float = 30.0, purge: bool = False) -> None:
    """Compile the hive's topology and apply it; print what changed.

    Only programs whose config hash changed restart. `purge` also deletes the keys
    and data of nodes that are no longer in the topology (after they stopped).
    """
    started = time.monotonic()
    plan = prepare(hive.topology, hive.state_dir)
    was_running = supervisor.is_running(hive.state_dir)
    with progress(f"bringing up {hive.topology.name!r} in {hive.state_dir}") as update:
        try:
            result = apply_plan(plan, timeout=timeout, on_progress=update)
        except UnhealthyError as exc:
            if was_running:
                hint = "the other processes keep running; see `hive status` and `hive logs`"
            else:  # a first start that failed leaves nothing behind but its logs
                take_down(hive.state_dir)
                hint = f"stopped what was started; logs kept in {hive.layout.logs_dir}"
            raise Fail(f"{exc}\n{hint}") from exc
    purged = purge_orphans(hive.topology, hive.state_dir) if purge else []
    kept = [] if purge else orphaned_keys(hive.topology, hive.state_dir)
    took = time.monotonic() - started
    changed = result.added + result.changed + result.removed
    if not (changed or result.written or result.started_supervisord or purged):
        out.print(f"{hive.topology.name}: up to date, nothing changed ({took:.1f}s)")
        return
    parts = [f"{len(plan.programs)} process(es) healthy"]
    for label, names in (
        ("started", result.added),
        ("restarted", result.changed),
        ("removed", result.removed),
        ("reloaded live", result.reloaded),
        ("purged keys and data of", purged),
    ):
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    out.print(f"{hive.topology.name}: up in {took:.1f}s — " + "; ".join(parts))
    if result.removed and kept:
        out.print(f"  keys kept for {', '.join(kept)} (`hive up --purge` deletes them)")


def compute_preview(hive: Hive) -> Preview:
    """What `hive up` would do now, without writing a byte."""
    plan = prepare(hive.topology, hive.state_dir, dry_run=True)
    return preview(
        plan,
        keys_to_generate=missing_keys(hive.topology, hive.state_dir),
        keys_kept=orphaned_keys(hive.topology, hive.state_dir),
    )


@click.command("plan")
@hive_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
def plan_cmd(topology_file: Path, state_dir: Path | None, as_json: bool) -> None:
    """Show what `hive up` would start, restart, remove and change — without doing it.

    A program restarts only when its own config changed (its BEEHIVE_CONFIG_HASH
    differs from the running one). Nodes reload directory.json and handler daemons
    re-attach live; those appear as `live`, not as restarts. Nothing is written,
    and no key is generated (new nodes show as "to be generated").
    """
    hive = Hive.open(topology_file, state_dir)
    found = compute_preview(hive)
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


__all__ = ["bring_up", "compute_preview", "register"]

"""What `hive up` would do, computed without doing it: the heart of `hive plan`.

The compiled Plan is compared with two things: the state folder's files
(Plan.diff) and the programs supervisord runs. A running program is restarted
exactly when its BEEHIVE_CONFIG_HASH differs from the plan's (that is the rule
supervisord's reloadConfig applies), so the hash is read where it is certain —
the live process's environment — and from the last supervisord.conf otherwise.

Some changes need no restart: a node adopts a rewritten directory.json live and a
handler daemon re-attaches when only its attachments change. Those are listed as
`live` so the person reading the plan sees why a peer is not restarted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from beehive.orchestrator import supervisor
from beehive.orchestrator.environments import is_built
from beehive.topology.layout import StateLayout
from beehive.topology.plan import Plan, PlanDiff, Program

_SECTION = re.compile(r"^\[program:([^\]]+)\]\s*$")
_HASH = re.compile(r'BEEHIVE_CONFIG_HASH="([0-9a-f]+)"')


@dataclass(frozen=True)
class Preview:
    """Everything `hive plan` reports; `to_json()` is the `--json` contract."""

    supervisord_running: bool
    start: list[str]
    restart: dict[str, str]
    remove: list[str]
    unchanged: list[str]
    live: dict[str, str]
    files: PlanDiff
    keys_to_generate: list[str] = field(default_factory=list)
    keys_kept: list[str] = field(default_factory=list)
    environments_to_build: dict[str, list[str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (
            self.start
            or self.restart
            or self.remove
            or self.live
            or self.files.created
            or self.files.changed
            or self.files.removed
            or self.keys_to_generate
            or self.environments_to_build
        )

    def to_json(self) -> dict[str, Any]:
        files = {k: [str(p) for p in v] for k, v in asdict(self.files).items() if k != "unchanged"}
        return {
            "supervisord_running": self.supervisord_running,
            "start": self.start,
            "restart": self.restart,
            "remove": self.remove,
            "unchanged": self.unchanged,
            "live": self.live,
            "files": files,
            "keys_to_generate": self.keys_to_generate,
            "keys_kept": self.keys_kept,
            "environments_to_build": self.environments_to_build,
            "changes": not self.empty,
        }


def running_hashes(state_dir: Path) -> dict[str, str | None]:
    """Program name → the config hash it runs with (None if it cannot be told)."""
    from_conf = _conf_hashes(StateLayout(Path(state_dir)).supervisord_conf)
    out: dict[str, str | None] = {}
    for proc in supervisor.processes(state_dir):
        live = _environ_hash(proc.pid) if proc.pid else None
        out[proc.name] = live or from_conf.get(proc.name)
    return out


def _environ_hash(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(b"BEEHIVE_CONFIG_HASH="):
            return entry.split(b"=", 1)[1].decode()
    return None


def _conf_hashes(conf: Path) -> dict[str, str]:
    hashes: dict[str, str] = {}
    current = None
    try:
        lines = conf.read_text().splitlines()
    except OSError:
        return hashes
    for line in lines:
        section = _SECTION.match(line)
        if section:
            current = section.group(1)
            continue
        found = _HASH.search(line)
        if found and current:
            hashes[current] = found.group(1)
    return hashes


def preview(
    plan: Plan, *, keys_to_generate: Sequence[str] = (), keys_kept: Sequence[str] = ()
) -> Preview:
    """Compare `plan` with the state folder and the running supervisord (read only)."""
    state = Path(plan.state_dir)
    files = plan.diff(state)
    running = supervisor.is_running(state)
    current = running_hashes(state) if running else {}
    start, unchanged, remove = [], [], sorted(set(current) - {p.name for p in plan.programs})
    restart: dict[str, str] = {}
    for program in plan.programs:
        if program.name not in current:
            start.append(program.name)
        elif current[program.name] != program.config_hash:
            restart[program.name] = _why(StateLayout(state), program, files)
        else:
            unchanged.append(program.name)
    live = _live_changes(plan, files, unchanged)
    envs = {
        str(env.path): list(env.handlers) for env in plan.environments if not is_built(state, env)
    }
    return Preview(
        supervisord_running=running,
        start=start,
        restart=restart,
        remove=remove,
        unchanged=unchanged,
        live=live,
        files=files,
        keys_to_generate=list(keys_to_generate),
        keys_kept=list(keys_kept),
        environments_to_build=envs,
    )


def _own_config(layout: StateLayout, program: Program) -> PurePosixPath | None:
    own = layout.program_config(program.name)
    return layout.rel(own) if own is not None else None


def _kind(program: str) -> str | None:
    found = StateLayout.program_of(program)
    return found[0] if found else None


def _why(layout: StateLayout, program: Program, files: PlanDiff) -> str:
    own = _own_config(layout, program)
    if own is not None and own in files.changed:
        return f"{own} changed"
    return "command or environment changed"


def _live_changes(plan: Plan, files: PlanDiff, unchanged: list[str]) -> dict[str, str]:
    """Running programs that will pick a change up without a restart."""
    layout = StateLayout(Path(plan.state_dir))
    live: dict[str, str] = {}
    directory = layout.rel(layout.directory_json)
    if directory in files.changed:
        before, after = _members(layout.directory_json), _members_bytes(plan, directory)
        delta = _delta(before, after)
        for name in unchanged:
            if _kind(name) in ("node", "pack"):
                live[name] = f"reloads {directory} ({delta})"
    for name in unchanged:
        own = next((p for p in plan.programs if p.name == name), None)
        reread = sorted(str(f) for f in (own.reload_on if own else ()) if f in files.changed)
        if own and own.reload_signal and reread:
            live[name] = f"reloads {', '.join(reread)} (SIG{own.reload_signal})"
        path = _own_config(layout, own) if own else None
        if _kind(name) == "handler" and path is not None and path in files.changed:
            before = set(_attachments(layout.root / path))
            after = set(json.loads(plan.artifact(path).content).get("attachments", {}))
            live[name] = f"re-attaches ({_delta(before, after)})"
    return live


def _delta(before: set[str], after: set[str]) -> str:
    parts = [f"+{a}" for a in sorted(after - before)] + [f"-{a}" for a in sorted(before - after)]
    return " ".join(parts) or "keys changed"


def _members(path: Path) -> set[str]:
    try:
        return set(json.loads(path.read_bytes()).get("members", {}))
    except (OSError, ValueError, AttributeError):
        return set()


def _members_bytes(plan: Plan, rel: PurePosixPath) -> set[str]:
    try:
        return set(json.loads(plan.artifact(rel).content).get("members", {}))
    except (KeyError, ValueError, AttributeError):
        return set()


def _attachments(path: Path) -> dict[str, str]:
    try:
        return dict(json.loads(path.read_bytes()).get("attachments", {}))
    except (OSError, ValueError, AttributeError):
        return {}

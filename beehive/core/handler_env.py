"""A handler process's environment: a minimal base plus its declared settings.

A handler often holds an API key or reads a participant's own data, and it runs
whatever code its author wrote, so it gets only what the topology declares for
it (`handlers.<name>.env`, `env_file`, `nodes.<alias>.env`) on top of what any
program needs to run (BASE_NAMES, the virtual environment it runs in, and the
marks the hive itself uses to find its processes). Nothing else of the
environment of whoever ran `hive up` reaches it: not their `OPENAI_API_KEY`,
not their cloud credentials.

The declared values are part of the handler's config, so a change restarts the
handler (its config hash covers them; an `env_file` by the sha256 of its bytes).
An `env_file` is read by the handler daemon itself when it starts, so a secret in
it is never copied into the state folder.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from beehive.core.errors import BeehiveError

__all__ = ["BASE_NAMES", "EnvFileError", "env_file_digest", "handler_environment", "read_env_file"]

#: What every program needs, passed on from the daemon's own environment.
BASE_NAMES = ("PATH", "HOME", "LANG")
#: The hive's own marks (beehive/orchestrator/state_processes.py finds a state
#: folder's processes by BEEHIVE_HIVE; supervisord sets the others per program).
_HIVE_NAMES = ("BEEHIVE_HIVE", "BEEHIVE_CONFIG_HASH", "PYTHONUNBUFFERED")


class EnvFileError(BeehiveError, ValueError):
    """An `env_file` that cannot be read or has a line that is not KEY=VALUE."""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (dotenv): `#` comments and blank lines skipped, `export `
    allowed before a key, a value in matching single or double quotes unquoted.
    Nothing is expanded: what the file says is what the handler gets."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise EnvFileError(f"{path}: cannot read the env_file: {why}") from exc
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier() or not key.isascii():
            raise EnvFileError(
                f"{path}:{number}: not a KEY=VALUE line",
                hint="write one setting per line, e.g. OPENAI_API_KEY=sk-…",
            )
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        found[key] = value
    return found


def env_file_digest(path: Path) -> str:
    """The sha256 of the file's bytes: in the handler's config hash, so an edit restarts it."""
    read_env_file(path)  # refuse a bad file at compile time, naming its line
    return hashlib.sha256(path.read_bytes()).hexdigest()


def handler_environment(
    declared: Mapping[str, str],
    env_file: Path | None,
    own: Mapping[str, str] = os.environ,
    venv: Path | None = None,
) -> dict[str, str]:
    """The environment a handler runs with: the base names from `own` (the
    daemon's environment), its virtual environment (`venv`, by default the one
    this interpreter runs in) named in VIRTUAL_ENV and first on PATH, `env_file`,
    then `declared` (the topology's `env:`, node overrides merged in), later wins."""
    env = {k: own[k] for k in (*BASE_NAMES, *_HIVE_NAMES) if k in own}
    ours = Path(sys.prefix) if sys.prefix != sys.base_prefix else None
    venv = venv or ours
    if venv is not None:
        drop = {str(venv / "bin"), *([str(ours / "bin")] if ours else [])}
        path = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p not in drop]
        env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
        env["VIRTUAL_ENV"] = str(venv)
    if env_file is not None:
        env.update(read_env_file(env_file))
    env.update(declared)
    return env

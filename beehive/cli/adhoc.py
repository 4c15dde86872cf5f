"""The ad-hoc local hive behind the seed's `bee-hive` and `nectar` commands.

The seed had no topology file: nodes were registered one by one and handlers
launched and attached by hand. Here those commands edit a small registry in the
data folder (`registry.json`: nodes with their e-mail and password hash, launched
handlers, which handler serves which node), regenerate `hive.yaml` beside it, and
apply it with the very path `hive up` uses (`bring_up`): so only what a command
changed moves, and `hive status -f <data-dir>/hive.yaml` works on the same hive.

    <data-dir>/registry.json        the source of truth (0600: holds password hashes)
    <data-dir>/hive.yaml            generated from it: do not edit
    <data-dir>/.hive/bee-hive/      the state folder (keys, logs, node data)
    <data-dir>/<alias>/{keys,data}  the seed's paths of each node, and
    <data-dir>/nectar/logs/         of each handler's log: links into the state
                                    folder (StateLayout.seed_links), kept by `apply`

Passwords are never stored: only a salted scrypt hash, checked on `deregister`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from beehive.cli.common import Fail, Hive
from beehive.core.files import write_atomic
from beehive.core.names import is_alias
from beehive.topology.layout import StateLayout

DEFAULT_DATA_DIR = Path("~/.bee-hive")
TOPOLOGY_NAME = "bee-hive"
DEFAULT_NATS_PORT = 4222
REGISTRY = "registry.json"
TOPOLOGY = "hive.yaml"
#: The seed's handler folder in the data folder: no node may take its name.
SEED_NECTAR = "nectar"

#: scrypt cost: 16 MiB of memory and ~50 ms per check, as hashlib's docs suggest.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash` (base64), a fresh 16-byte salt each time."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@dataclass
class Registry:
    """What the seed commands registered; `hive.yaml` is rendered from it."""

    nats_port: int = DEFAULT_NATS_PORT
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    handlers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: An external NATS server (`bee-hive register --nats-url`); None: the hive's own.
    nats_url: str | None = None

    def topology_doc(self) -> dict[str, Any]:
        nats: dict[str, Any] = (
            {"url": self.nats_url}
            if self.nats_url
            else {"host": "127.0.0.1", "port": self.nats_port}
        )
        return {
            "version": 1,
            "name": TOPOLOGY_NAME,
            "nats": nats,
            "handlers": {
                name: {"file": h["file"], "always_run": True}
                for name, h in sorted(self.handlers.items())
            },
            "nodes": {
                alias: {"role": n["role"], **({"handler": n["handler"]} if n["handler"] else {})}
                for alias, n in sorted(self.nodes.items())
            },
        }

    def runnable(self) -> str | None:
        """Why this registry cannot run yet (None when it can)."""
        if not any(n["role"] == "heavy" for n in self.nodes.values()):
            return "no heavy node is registered (a round needs an aggregator)"
        return None

    def served_by(self, handler: str) -> list[str]:
        return sorted(a for a, n in self.nodes.items() if n["handler"] == handler)


class LocalHive:
    """The data folder of an ad-hoc hive; use `LocalHive.edit(data_dir)` to change it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._saved = self._read_saved()
        self.registry = self._load()

    @classmethod
    @contextlib.contextmanager
    def edit(cls, data_dir: Path) -> Iterator[LocalHive]:
        """Hold the data folder's lock while a command reads, changes and applies it,
        so two commands run at once (a script registering nodes in parallel) do not
        lose each other's edits."""
        data_dir = data_dir.expanduser().absolute()
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(data_dir / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield cls(data_dir)

    @property
    def topology_file(self) -> Path:
        return self.data_dir / TOPOLOGY

    def _read_saved(self) -> bytes | None:
        try:
            return (self.data_dir / REGISTRY).read_bytes()
        except FileNotFoundError:
            return None

    def _load(self) -> Registry:
        path = self.data_dir / REGISTRY
        if not path.exists():
            port = os.environ.get("HIVE_NATS_PORT")
            return Registry(nats_port=int(port) if port else DEFAULT_NATS_PORT)
        try:
            doc = json.loads(path.read_bytes())
            registry = Registry(
                doc["nats_port"], doc["nodes"], doc["handlers"], doc.get("nats_url")
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise Fail(f"{path} is damaged ({exc}); fix or remove it") from exc
        port = os.environ.get("HIVE_NATS_PORT")
        if port:
            registry.nats_port = int(port)
        return registry

    def save(self) -> None:
        """registry.json (0600) and the hive.yaml rendered from it, both atomically."""
        doc = {
            "version": 1,
            "nats_port": self.registry.nats_port,
            "nats_url": self.registry.nats_url,
            "nodes": self.registry.nodes,
            "handlers": self.registry.handlers,
        }
        write_atomic(
            self.data_dir / REGISTRY, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
        )
        header = (
            "# Generated by the `bee-hive` / `nectar` commands from registry.json: edits are\n"
            "# overwritten. Inspect it with `hive status -f <this file>`.\n"
        )
        body = yaml.safe_dump(self.registry.topology_doc(), sort_keys=True)
        write_atomic(self.topology_file, (header + body).encode())

    def hive(self) -> Hive:
        return Hive.open(self.topology_file, None)

    def state_dir(self) -> Path:
        return self.data_dir / ".hive" / TOPOLOGY_NAME

    def apply(self, timeout: float = 60.0, *, purge: bool = False) -> str | None:
        """Save, then bring the hive to the registry (`hive up` semantics).

        When the registry cannot run (no heavy node), the hive is taken down
        instead and the reason returned, so nothing stale keeps running.
        """
        from beehive.cli.changes import bring_up
        from beehive.orchestrator import down
        from beehive.orchestrator.prepare import purge_node
        from beehive.orchestrator.service import NatsPortTaken

        self.save()
        why = self.registry.runnable()
        if why is None:
            try:
                bring_up(self.hive(), timeout=timeout, purge=purge)
            except NatsPortTaken:
                self._restore()  # nothing started: the command did not happen
                raise
            self.sync_seed_view()
            return None
        down(self.state_dir())
        layout = StateLayout(self.state_dir())
        if purge and layout.keys_dir.is_dir():
            gone = [
                key.stem
                for key in layout.keys_dir.glob("*.key")
                if key.stem not in self.registry.nodes and is_alias(key.stem)
            ]
            for alias in gone:
                purge_node(self.state_dir(), alias)
            if gone:
                # The signed directory still pins the purged keys, and `hive up`
                # refuses a pinned key that changed or vanished. The hive is down:
                # the next `up` signs a fresh one from the keys that remain.
                layout.directory_json.unlink(missing_ok=True)
                layout.directory_sig.unlink(missing_ok=True)
        self.sync_seed_view()
        return why

    def _restore(self) -> None:
        """Put registry.json and hive.yaml back as they were before this command."""
        if self._saved is None:
            (self.data_dir / REGISTRY).unlink(missing_ok=True)
            self.topology_file.unlink(missing_ok=True)
            return
        write_atomic(self.data_dir / REGISTRY, self._saved)
        self.registry = self._load()
        self.save()

    def sync_seed_view(self) -> None:
        """The seed's paths under the data folder (`<alias>/data`, `<alias>/keys/`,
        `node.log`, `nectar/logs/`) as links into the state folder, for what is
        registered now; the links of nodes and handlers no longer registered go.
        Only links this makes are ever removed: a real file or folder in their place
        (a seed project's own data) is left as it is."""
        layout = StateLayout(self.state_dir())
        links: dict[Path, Path] = {}
        for alias in self.registry.nodes:
            links |= layout.seed_links(self.data_dir, alias)
        for name in self.registry.handlers:
            links |= layout.seed_handler_links(self.data_dir, name)
        for link, target in links.items():
            _keep_link(link, target, self.state_dir())
        for folder in self.data_dir.iterdir():
            if (
                is_alias(folder.name)
                and folder.name != SEED_NECTAR
                and folder.name not in self.registry.nodes
            ):
                _drop_links(folder, self.state_dir(), depth=2)
        logs = self.data_dir / SEED_NECTAR / "logs"
        if logs.is_dir():
            for log in logs.iterdir():
                if log not in links and _links_into(log, self.state_dir()):
                    log.unlink()


def _keep_link(link: Path, target: Path, state: Path) -> None:
    """`link` → `target` (relative), when `target` exists; a stale link goes."""
    relative = os.path.relpath(target, link.parent)
    if _links_into(link, state):
        if os.readlink(link) == relative and target.exists():
            return
        link.unlink()
    elif link.is_symlink() or link.exists():
        return  # not ours
    if target.exists():
        link.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        link.symlink_to(relative)


def _links_into(path: Path, state: Path) -> bool:
    """True when `path` is a link into the state folder (one `sync_seed_view` made)."""
    if not path.is_symlink():
        return False
    return Path(os.path.normpath(path.parent / os.readlink(path))).is_relative_to(state)


def _drop_links(folder: Path, state: Path, depth: int) -> None:
    """Remove the links into `state` under `folder` (not following them), then the
    folders they leave empty; anything else stays."""
    if folder.is_symlink() or not folder.is_dir():
        return
    for entry in folder.iterdir():
        if _links_into(entry, state):
            entry.unlink()
        elif depth > 1:
            _drop_links(entry, state, depth - 1)
    with contextlib.suppress(OSError):
        folder.rmdir()

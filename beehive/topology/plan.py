"""A Plan: everything `hive up` will put on disk and every process it will run.

The compiler produces a Plan without touching the disk; the orchestrator applies
it. Keeping the two apart is what makes `hive plan` (a diff of the Plan against the
state folder) and `hive config` possible without starting anything, and what lets
tests check compilation byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from beehive.topology.layout import NATS_PROGRAM, StateLayout


@dataclass(frozen=True)
class Artifact:
    """One generated file. `path` is relative to the state folder so a Plan is
    comparable across state folders; `mode` is applied on every write."""

    path: PurePosixPath
    content: bytes
    mode: int = 0o600


@dataclass(frozen=True)
class Readiness:
    """How to tell a program is not just running but useful.

    nats           "host:port" sends a NATS INFO and, with `ca_file`, completes a
                   TLS handshake verified against that CA (nats-server)
    control_socket path of a node's control socket answering `{"op": "health"}`
                   (and `also` those of the other nodes a packed process hosts)
    ready_file     path of a file holding JSON `{"pid": …}` of the live process
    """

    kind: Literal["nats", "control_socket", "ready_file"]
    target: str
    #: ready_file only: the aliases the daemon must report watching. A handler
    #: re-attaches live (no restart), so "ready" must mean "watching the new set".
    watching: tuple[str, ...] | None = None
    #: control_socket only: the further nodes' sockets of a process hosting several.
    also: tuple[str, ...] = ()
    #: nats only: the CA the server's certificate must verify against (None: no TLS).
    ca_file: str | None = None

    @property
    def targets(self) -> tuple[str, ...]:
        return (self.target, *self.also)


@dataclass(frozen=True)
class Program:
    """One supervised process. `config_hash` changes exactly when the program's
    own config (or command) changes; it is written into supervisord.conf so
    supervisord's `reloadConfig` reports only that program as changed."""

    name: str
    command: tuple[str, ...]
    config_hash: str
    readiness: Readiness
    log: str
    #: Files the running program re-reads when sent `reload_signal` (e.g. nats-server
    #: and its users on SIGHUP): a change to them alone reloads, never restarts.
    reload_on: tuple[PurePosixPath, ...] = ()
    reload_signal: str | None = None
    #: The nodes it runs (a node program: one; a pack: up to nodes_per_process).
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Environment:
    """A virtual environment a handler runs in, built by apply before anything starts.

    `path` (relative to the state folder) ends in a hash of `requirements`, so an
    edited requirement list is a new environment and an unchanged one is reused.
    """

    path: PurePosixPath
    requirements: tuple[str, ...]
    handlers: tuple[str, ...]


@dataclass(frozen=True)
class StreamSetup:
    """How apply reaches the embedded server as the admin user to create the
    network's stream and every node's consumer once the `nats` program is ready
    (before the nodes' health)."""

    network: str
    nats_url: str
    ca_file: Path | None
    nkey_seed_file: Path
    #: Every node of the topology: one consumer each, and the stream's size.
    aliases: tuple[str, ...]
    #: The program that must be ready first.
    program: str = NATS_PROGRAM
    #: Servers each message is stored on (a multi-host cluster: min(3, servers)).
    replicas: int = 1

    @property
    def nodes(self) -> int:
        return len(self.aliases)


@dataclass(frozen=True)
class PlanDiff:
    """What applying a plan would do to the files of a state folder."""

    created: tuple[PurePosixPath, ...] = ()
    changed: tuple[PurePosixPath, ...] = ()
    unchanged: tuple[PurePosixPath, ...] = ()
    removed: tuple[PurePosixPath, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.created or self.changed or self.removed)


@dataclass(frozen=True)
class Plan:
    """Artifacts + programs for one state folder.

    `directories` are folders (relative, created 0700) that must exist before the
    programs start even though no artifact lives in them (run/, logs/, the
    per-node dispatch folders).
    """

    state_dir: Path
    artifacts: tuple[Artifact, ...]
    programs: tuple[Program, ...]
    directories: tuple[PurePosixPath, ...] = field(default=())
    environments: tuple[Environment, ...] = field(default=())
    #: The stream apply creates (embedded server); None: the nodes create it.
    stream: StreamSetup | None = None

    @property
    def layout(self) -> StateLayout:
        return StateLayout(Path(self.state_dir))

    def artifact(self, path: str | PurePosixPath) -> Artifact:
        """The artifact at `path` (relative); KeyError if the plan has none."""
        wanted = PurePosixPath(path)
        for art in self.artifacts:
            if art.path == wanted:
                return art
        raise KeyError(str(wanted))

    def program(self, name: str) -> Program:
        for prog in self.programs:
            if prog.name == name:
                return prog
        raise KeyError(name)

    def diff(self, state_dir: Path | None = None) -> PlanDiff:
        """Compare the plan's bytes with what is on disk (read only).

        Used by `hive plan`, and by apply to write only what differs, so an
        unchanged plan touches no file and restarts no process.
        """
        root = Path(state_dir if state_dir is not None else self.state_dir)
        created: list[PurePosixPath] = []
        changed: list[PurePosixPath] = []
        unchanged: list[PurePosixPath] = []
        for art in self.artifacts:
            target = root / art.path
            try:
                current = target.read_bytes()
            except FileNotFoundError:
                created.append(art.path)
                continue
            (unchanged if current == art.content else changed).append(art.path)
        return PlanDiff(
            created=tuple(created),
            changed=tuple(changed),
            unchanged=tuple(unchanged),
            removed=tuple(self.stale_files(root)),
        )

    def stale_files(self, state_dir: Path | None = None) -> list[PurePosixPath]:
        """Generated config files on disk that this plan no longer names."""
        root = Path(state_dir if state_dir is not None else self.state_dir)
        planned = {art.path for art in self.artifacts}
        stale: list[PurePosixPath] = []
        # A stale config is deleted on apply, so it can never be started by mistake.
        for sub in StateLayout.OWNED_CONFIG_DIRS:
            folder = root / sub
            if not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                rel = PurePosixPath(sub, entry.name)
                if entry.is_file() and not entry.name.endswith(".tmp") and rel not in planned:
                    stale.append(rel)
        return stale

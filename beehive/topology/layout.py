"""Every path and program name in a state folder, in one place.

The compiler writes these paths into configs, the orchestrator creates and
supervises what lives there, the CLI reads logs, sockets and stores from them.
Each asks a `StateLayout` rather than joining strings, so renaming a folder or a
program (or giving each host a layout of its own) is one change here.

    <state>/topology.json directory.json directory.sig supervisord.conf
            keys/<alias>.key keys/<alias>.nk keys/_operator.key keys/_admin.nk
            tls/            nats/nats-server.conf nats/jetstream/
            nodes/<alias>.json   handlers/<name>.json   venvs/<hash>/
            run/<alias>.sock run/handler-<name>.ready run/supervisord.{sock,pid,auth}
            nats/guard.json run/nats-guard.ready run/nats-storage.json
            logs/<program>.log   data/<alias>/{local.db,computation/,final_*.json}

Programs: `nats`, `nats-guard`, `node-<alias>` (or `pack-<n>`, hosting up to
`runtime.nodes_per_process` nodes), `handler-<name>`; `supervisord` names only its log.

The seed commands (`bee-hive`/`nectar --data-dir D`, state folder `D/.hive/bee-hive/`)
also show each node where the seed kept it, as links into this layout
(`seed_links`): `D/<alias>/data` → `data/<alias>`, `D/<alias>/keys/<alias>.key`,
`D/<alias>/data/node.log` → `logs/node-<alias>.log`, `D/nectar/logs/<name>.log`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

from beehive.security.key_files import OPERATOR_KEY_FILE, admin_nkey_path, key_path, nkey_path

if TYPE_CHECKING:
    from beehive.topology.schema import Topology

__all__ = [
    "NATS_GUARD_PROGRAM",
    "NATS_PROGRAM",
    "SUPERVISORD",
    "ProgramKind",
    "StateLayout",
    "TrustLayout",
    "default_state_dir",
    "operator_state_dir",
]

NATS_PROGRAM = "nats"
#: Watches nats-server's log and restarts it when JetStream is stuck on a write
#: error (beehive/orchestrator/nats_guard.py); runs beside every embedded server.
NATS_GUARD_PROGRAM = "nats-guard"
#: Not a program but a log name (`hive logs supervisord`).
SUPERVISORD = "supervisord"
_NODE_PREFIX = "node-"
_HANDLER_PREFIX = "handler-"
_PACK_PREFIX = "pack-"

ProgramKind = Literal["nats", "guard", "node", "pack", "handler"]


def default_state_dir(topology_file: Path, topology: Topology, host: str | None = None) -> Path:
    """`.hive/<name>/` beside the topology file (git-ignored); a host of a
    multi-host topology: `.hive/<name>/hosts/<host>/`."""
    root = topology_file.resolve().parent / ".hive" / topology.name
    return root if host is None else root / "hosts" / host


def operator_state_dir(topology_file: Path, topology: Topology) -> Path:
    """Where `hive trust sign` keeps the operator key and the CA key by default:
    `.hive/<name>/operator/` beside the topology file."""
    return default_state_dir(topology_file, topology) / "operator"


@dataclass(frozen=True)
class StateLayout:
    """The state folder `root`; every method returns an absolute path under it.

    `rel()` turns one back into the relative path a Plan's artifacts use.
    """

    root: Path

    def rel(self, path: Path) -> PurePosixPath:
        return PurePosixPath(path.relative_to(self.root).as_posix())

    # ── the folder's top level ───────────────────────────────────────────────

    @property
    def topology_json(self) -> Path:
        return self.root / "topology.json"

    @property
    def directory_json(self) -> Path:
        return self.root / "directory.json"

    @property
    def directory_sig(self) -> Path:
        return self.root / "directory.sig"

    @property
    def supervisord_conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def supervisord_socket(self) -> Path:
        return self.run_dir / "supervisord.sock"

    @property
    def supervisord_pid(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def supervisord_auth(self) -> Path:
        """The socket's username and password, an include of supervisord.conf (0600)."""
        return self.run_dir / "supervisord.auth"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    @property
    def nats_conf(self) -> Path:
        return self.root / "nats" / "nats-server.conf"

    @property
    def jetstream_dir(self) -> Path:
        return self.root / "nats" / "jetstream"

    @property
    def nats_guard_config(self) -> Path:
        return self.root / "nats" / "guard.json"

    @property
    def nats_guard_ready(self) -> Path:
        return self.run_dir / f"{NATS_GUARD_PROGRAM}.ready"

    @property
    def nats_storage(self) -> Path:
        """`run/nats-storage.json`: the write error nats-server's JetStream is stuck
        on, while it is (written by the `nats-guard` program, read by `hive status`)."""
        return self.run_dir / "nats-storage.json"

    @property
    def operator_key(self) -> Path:
        return self.keys_dir / OPERATOR_KEY_FILE

    @property
    def host_marker(self) -> Path:
        """`host.json`: which host of which network this state folder is (multi-host)."""
        return self.root / "host.json"

    @property
    def pinned_operator(self) -> Path:
        """`operator.pub`: the operator key a host pinned on its first `hive up --host`."""
        return self.root / "operator.pub"

    @property
    def admin_nkey(self) -> Path:
        return admin_nkey_path(self.keys_dir)

    #: Folders whose files each belong to one program's config: a file there that
    #: the plan does not name is stale (its node or handler was removed).
    OWNED_CONFIG_DIRS = ("nodes", "handlers", "nats")

    # ── per node ─────────────────────────────────────────────────────────────

    def key_file(self, alias: str) -> Path:
        return key_path(self.keys_dir, alias)

    def nkey_file(self, alias: str) -> Path:
        return nkey_path(self.keys_dir, alias)

    def node_config(self, alias: str) -> Path:
        return self.root / "nodes" / f"{alias}.json"

    def control_socket(self, alias: str) -> Path:
        return self.run_dir / f"{alias}.sock"

    def data_dir(self, alias: str) -> Path:
        return self.data_root / alias

    def computation_dir(self, alias: str) -> Path:
        return self.data_dir(alias) / "computation"

    def store(self, alias: str) -> Path:
        return self.data_dir(alias) / "local.db"

    # ── per handler ──────────────────────────────────────────────────────────

    def handler_config(self, name: str) -> Path:
        return self.root / "handlers" / f"{name}.json"

    def handler_ready(self, name: str) -> Path:
        return self.run_dir / f"{self.handler_program(name)}.ready"

    def venv(self, digest: str) -> Path:
        return self.root / "venvs" / digest

    # ── programs ─────────────────────────────────────────────────────────────

    @staticmethod
    def node_program(alias: str) -> str:
        return f"{_NODE_PREFIX}{alias}"

    @staticmethod
    def pack_program(number: int) -> str:
        return f"{_PACK_PREFIX}{number}"

    @classmethod
    def node_processes(cls, aliases: Sequence[str], per_process: int = 1) -> dict[str, list[str]]:
        """Each program that runs nodes → the aliases it hosts. One per node
        (`node-<alias>`) by default; with `per_process` K > 1, as few processes as
        hold them K at most (`pack-1`, `pack-2`, …), the sorted aliases dealt to
        them in turn: neighbours (a replica set's aggregators, say) land in
        different processes, so the busiest nodes do not share one core."""
        ordered = sorted(aliases)
        if per_process == 1:
            return {cls.node_program(alias): [alias] for alias in ordered}
        packs = -(-len(ordered) // per_process)
        return {cls.pack_program(i + 1): ordered[i::packs] for i in range(packs)}

    @staticmethod
    def handler_program(name: str) -> str:
        return f"{_HANDLER_PREFIX}{name}"

    @staticmethod
    def program_of(program: str) -> tuple[ProgramKind, str] | None:
        """`node-alice` → ("node", "alice"); `pack-2` → ("pack", "2"); `nats` →
        ("nats", ""); else None."""
        if program == NATS_PROGRAM:
            return "nats", ""
        if program == NATS_GUARD_PROGRAM:
            return "guard", ""
        if program.startswith(_NODE_PREFIX):
            return "node", program.removeprefix(_NODE_PREFIX)
        if program.startswith(_PACK_PREFIX):
            return "pack", program.removeprefix(_PACK_PREFIX)
        if program.startswith(_HANDLER_PREFIX):
            return "handler", program.removeprefix(_HANDLER_PREFIX)
        return None

    def program_config(self, program: str) -> Path | None:
        """The config file a program reads (None for a name that is no program)."""
        found = self.program_of(program)
        if found is None:
            return None
        kind, name = found
        if kind == "nats":
            return self.nats_conf
        if kind == "guard":
            return self.nats_guard_config
        if kind == "pack":
            return None  # it reads its nodes' configs, each of them one node's
        return self.node_config(name) if kind == "node" else self.handler_config(name)

    def log(self, name: str) -> Path:
        """`logs/<name>.log` of a program, or of `supervisord`."""
        return self.logs_dir / f"{name}.log"

    def log_candidates(self, name: str) -> list[Path]:
        """The logs a user may mean by NAME: a program, a node alias, a handler name."""
        return [self.log(n) for n in (name, self.node_program(name), self.handler_program(name))]

    # ── the seed's view (`bee-hive --data-dir D`): links into this layout ─────

    def seed_links(self, seed_root: Path, alias: str) -> dict[Path, Path]:
        """Where the seed kept node `alias` under its data folder `seed_root`, as
        link → what it points at in this layout: `<alias>/data` (the node's data
        folder: final_*.json, local.db, computation/), `<alias>/keys/` (its key
        files) and `node.log` in the data folder (the node program's log)."""
        node = seed_root / alias
        return {
            node / "data": self.data_dir(alias),
            node / "keys" / self.key_file(alias).name: self.key_file(alias),
            node / "keys" / self.nkey_file(alias).name: self.nkey_file(alias),
            self.data_dir(alias) / "node.log": self.log(self.node_program(alias)),
        }

    def seed_handler_links(self, seed_root: Path, name: str) -> dict[Path, Path]:
        """The seed's `nectar/logs/<name>.log` → the handler program's log."""
        return {seed_root / "nectar" / "logs" / f"{name}.log": self.log(self.handler_program(name))}


@dataclass(frozen=True)
class TrustLayout:
    """The `trust/` folder beside a multi-host topology: public material only,
    meant to be committed (docs/multi-host.md).

        trust/hosts/<host>.json      each host's public keys and proofs (`hive keys`)
        trust/directory.json .sig    the operator-signed directory (`hive trust sign`)
        trust/ca.pem                 the hive's CA certificate
        trust/nats/<host>.pem        each nats-server's certificate
        trust/operator.pub           the operator's public key (base64, one line)
    """

    root: Path

    @classmethod
    def beside(cls, topology_file: Path) -> TrustLayout:
        return cls(topology_file.absolute().parent / "trust")

    @property
    def hosts_dir(self) -> Path:
        return self.root / "hosts"

    def host_file(self, host: str) -> Path:
        return self.hosts_dir / f"{host}.json"

    @property
    def directory_json(self) -> Path:
        return self.root / "directory.json"

    @property
    def directory_sig(self) -> Path:
        return self.root / "directory.sig"

    @property
    def ca_pem(self) -> Path:
        return self.root / "ca.pem"

    @property
    def nats_dir(self) -> Path:
        return self.root / "nats"

    def nats_cert(self, host: str) -> Path:
        return self.nats_dir / f"{host}.pem"

    @property
    def operator_pub(self) -> Path:
        return self.root / "operator.pub"

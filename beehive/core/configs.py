"""The configs `hive up` compiles for its supervised programs, as typed models.

The compiler (`beehive.topology`) builds them and the programs read them back:
`NodeConfig` for a node (`beehive.flower`), `HandlerConfig` for a handler daemon
(`beehive.nectar`), `NatsServerConfig` for the embedded nats-server. They live
here, in core, because both sides import them and flower and nectar must never
import each other (nor the topology package).

A program restarts exactly when its config hash changes. What a running program
re-reads by itself (a handler daemon its attachments, nats-server its users on
SIGHUP) must stay out of that hash, or every added node would restart every peer.
Each model lists those fields in `LIVE_FIELDS`, and `hashed_json()` is the one
place that leaves them out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from beehive.core.errors import BeehiveError, one_line
from beehive.core.models import DpRound, PrivacyFloor, Role, Sharing

__all__ = [
    "CompiledConfig",
    "ConfigError",
    "HandlerConfig",
    "HandlerConfigError",
    "NatsCluster",
    "NatsGuardConfig",
    "NatsServerConfig",
    "NatsTls",
    "NodeConfig",
]


class ConfigError(BeehiveError, ValueError):
    """A compiled config file that is missing or invalid; the message names it."""


#: The seed-era name, kept for callers that catch it.
HandlerConfigError = ConfigError


def dump_json(obj: Any) -> bytes:
    """The one JSON encoding of every compiled file: stable bytes for stable input."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


class CompiledConfig(BaseModel):
    """A config file one supervised program reads. Unknown fields are refused, so a
    typo in a generated or hand-made config fails loudly instead of being ignored."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    #: Fields the running program adopts without a restart (left out of its hash).
    LIVE_FIELDS: ClassVar[frozenset[str]] = frozenset()

    def to_json(self) -> bytes:
        """The file's bytes: deterministic (sorted keys), so configs diff cleanly."""
        return dump_json(self.model_dump(mode="json"))

    def hashed_json(self) -> bytes:
        """What the program's config hash covers: everything but `LIVE_FIELDS`."""
        return dump_json(self.model_dump(mode="json", exclude=set(self.LIVE_FIELDS)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read and validate a config file; any problem is a `ConfigError` naming it."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read config: {exc.strerror or exc}") from exc
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise ConfigError(
                f"{p}: invalid {cls.__name__}: {one_line(exc)}",
                hint="re-run `hive up` to regenerate it",
            ) from exc


class NodeConfig(CompiledConfig):
    """One node: `<state>/nodes/<alias>.json`. A node adopts a rewritten directory
    live, which is why directory.json is a file of its own and not in here."""

    alias: str
    role: Role
    network: str
    #: One NATS URL, or several separated by commas (a cluster: the client fails
    #: over between them, see `nats_servers`).
    nats_url: str
    key_file: Path
    directory_file: Path
    #: Detached operator signature of `directory_file`, and the operator's public
    #: key (base64) it must verify against: pinned here, never learned at run time.
    directory_sig_file: Path
    operator_key: str
    control_socket: Path
    data_dir: Path
    default_deadline: float = 30.0
    #: Privacy policy applied to rounds this node proposes when the request names none.
    min_contributors: int = Field(default=2, ge=1)
    #: Sharing scheme (and Shamir threshold) of rounds this node proposes when the
    #: request names none (topology `defaults`).
    sharing: Sharing = "additive"
    threshold: int | None = Field(default=None, ge=1)
    #: Differential privacy of rounds this node proposes when the request names
    #: none (topology `defaults.dp`: its epsilon and range).
    dp: DpRound | None = None
    #: The weakest round this node takes part in (targets decline, aggregators
    #: refuse anything below it): the participant's own policy, not the proposer's.
    privacy: PrivacyFloor = Field(default_factory=PrivacyFloor)
    #: Results this node proposed (and their final_<id>.json) are deleted this long
    #: after the round finished (topology `defaults.keep_results`; 30 days).
    keep_results_seconds: float = Field(default=30 * 86400.0, gt=0)
    #: NATS client credentials: the CA to verify the server with, and either an
    #: nkey seed file or a creds file. All None means an unauthenticated plain
    #: connection, which only an external server configured that way accepts.
    nats_ca_file: Path | None = None
    nats_nkey_seed_file: Path | None = None
    nats_creds_file: Path | None = None
    #: Create the network's stream at start (an external server). The embedded
    #: server's stream is created by `hive up` alone: nodes may not create it.
    nats_create_stream: bool = False

    @property
    def computation_dir(self) -> Path:
        return self.data_dir / "computation"

    @property
    def nats_servers(self) -> list[str]:
        return nats_servers(self.nats_url)


def nats_servers(url: str) -> list[str]:
    """The server URLs in `url`: one, or several separated by commas (as the nats
    CLI takes them), in the order a client tries them."""
    return [u.strip() for u in url.split(",") if u.strip()]


class HandlerConfig(CompiledConfig):
    """One handler daemon: `<state>/handlers/<name>.json`.

    `attachments` maps a node alias to its computation folder; the daemon watches
    this file and attaches or detaches nodes live, so they are a live field.
    """

    LIVE_FIELDS: ClassVar[frozenset[str]] = frozenset({"attachments"})

    name: str = Field(min_length=1)
    file: Path
    timeout: float = Field(default=10.0, gt=0)
    attachments: dict[str, Path] = Field(default_factory=dict)
    ready_file: Path | None = None
    #: The handler's declared settings (beehive/core/handler_env.py): `env`, with
    #: the node's own values merged in, and the `env_file` the daemon reads at
    #: start, hashed by its content's sha256 so an edit restarts the daemon.
    env: dict[str, str] = Field(default_factory=dict)
    env_file: Path | None = None
    env_file_sha256: str | None = None


class NatsGuardConfig(CompiledConfig):
    """The nats-server guard: `<state>/nats/guard.json` (beehive/orchestrator/nats_guard.py).

    It reads the server's log (`nats_log`), restarts the server's `program`
    through the supervisord at `supervisor_socket` (logging in with
    `supervisor_auth`) once `jetstream_dir`'s disk has room again, and keeps its
    verdict in `storage_file` for `hive status`.
    """

    supervisor_socket: Path
    supervisor_auth: Path
    program: str
    nats_log: Path
    jetstream_dir: Path
    storage_file: Path
    ready_file: Path


class NatsTls(BaseModel):
    """The embedded server's TLS files; the certificate's fingerprint is in here so
    a reissued certificate changes the server's hash and restarts it."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    cert_file: Path
    key_file: Path
    cert_sha256: str


class NatsCluster(BaseModel):
    """A multi-host cluster: this server's route port and its peers' (routes are
    TLS both ways, each side verified against the hive's CA)."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    name: str
    listen: str
    routes: list[str]
    ca_file: Path


class NatsServerConfig(CompiledConfig):
    """The embedded nats-server, rendered into `<state>/nats/nats-server.conf`.

    `authorization` (one nkey user per node) changes whenever a node is added or
    removed; nats-server reloads it on SIGHUP without dropping a connection, so
    it is a live field: adding a node must not restart the server every node is
    connected to.
    """

    LIVE_FIELDS: ClassVar[frozenset[str]] = frozenset({"authorization"})

    name: str
    listen: str
    tls: NatsTls | None = None
    jetstream_dir: Path
    authorization: dict[str, Any]
    cluster: NatsCluster | None = None

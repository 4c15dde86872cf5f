"""A node's runtime config, compiled by `hive up` into `<state>/nodes/<alias>.json`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from beehive.security.nats_auth import inbox_subject

__all__ = ["NodeConfig", "inbox_subject"]


class NodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str
    role: Literal["heavy", "light"]
    network: str
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
    sharing: Literal["additive", "shamir"] = "additive"
    threshold: int | None = Field(default=None, ge=1)
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

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        return cls.model_validate_json(Path(path).read_bytes())

"""A node's runtime config, compiled by `hive up` into `<state>/nodes/<alias>.json`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict


class NodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str
    role: Literal["heavy", "light"]
    network: str
    nats_url: str
    key_file: Path
    directory_file: Path
    data_dir: Path
    control_socket: Path
    default_deadline: float = 30.0

    @property
    def computation_dir(self) -> Path:
        return self.data_dir / "computation"

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        return cls.model_validate_json(Path(path).read_bytes())


def inbox_subject(network: str, alias: str) -> str:
    """The one subject a node reads; every message on it is a sealed envelope."""
    return f"beehive.{network}.inbox.{alias}"

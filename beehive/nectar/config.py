"""HandlerConfig: what `hive up` tells one handler daemon (`<state>/handlers/<name>.json`).

The format is documented in docs/architecture.md. Unknown fields are refused so a
typo in a generated or hand-made config fails loudly instead of being ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["HandlerConfig", "HandlerConfigError"]


class HandlerConfigError(ValueError):
    """The config file is missing or invalid."""


class HandlerConfig(BaseModel):
    """One handler daemon: which file to run, and which nodes' folders it answers.

    `attachments` maps a node alias to its computation folder; changing it in the
    file attaches or detaches nodes live (the daemon watches the config).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    file: Path
    timeout: float = Field(default=10.0, gt=0)
    attachments: dict[str, Path] = Field(default_factory=dict)
    ready_file: Path | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HandlerConfig:
        """Read and validate a config file; any problem is a `HandlerConfigError`."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise HandlerConfigError(f"{p}: cannot read handler config: {exc.strerror}") from exc
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or '<file>'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise HandlerConfigError(f"{p}: invalid handler config: {problems}") from exc

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys, newline at end) so compiled configs diff cleanly."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

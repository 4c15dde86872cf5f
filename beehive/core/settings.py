"""Process-wide settings from the environment (`BEEHIVE_*`)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Overrides a user sets in the environment rather than in hive.yaml.

    BEEHIVE_STATE_DIR  where `hive` keeps keys, configs, logs and data
                       (default: .hive/<topology name>/ beside the topology file)
    BEEHIVE_LOG_LEVEL  log level of nodes and handler daemons (default INFO)
    """

    model_config = SettingsConfigDict(env_prefix="BEEHIVE_", extra="ignore")

    state_dir: Path | None = None
    log_level: str = "INFO"

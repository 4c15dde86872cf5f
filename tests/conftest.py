"""Shared fixtures: short temporary state folders, a free NATS port, running hives.

The helpers they use (and tests import) are in helpers.py.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import HiveCLI, make_hive_env, running_hive


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A state folder under /tmp: Unix socket paths must stay under ~107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="bh-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def hive_env() -> dict[str, str]:
    return make_hive_env()


@pytest.fixture
def test_hive(short_tmp: Path, hive_env: dict[str, str]) -> Iterator[HiveCLI]:
    """topologies/test.yaml brought up in a temporary state folder, always taken down."""
    with running_hive(short_tmp / "state", hive_env) as hive:
        yield hive


@pytest.fixture(scope="module")
def shared_hive() -> Iterator[HiveCLI]:
    """One test hive for a whole module (tests that only read it or add rounds)."""
    tmp = Path(tempfile.mkdtemp(prefix="bh-", dir="/tmp"))
    try:
        with running_hive(tmp / "state", make_hive_env()) as hive:
            yield hive
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

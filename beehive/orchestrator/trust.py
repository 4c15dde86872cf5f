"""A multi-host hive's trust, in three steps: keys → sign → admit.

1. `make_host_keys` (`hive keys --host H`, on H): H's private keys, generated
   once in H's state folder, and their public halves with proofs in
   `trust/hosts/H.json` (committed to git).
2. `sign_trust` (`hive trust sign`, by the operator, anywhere): checks every host
   file against the topology and signs one directory of them, issues each
   nats-server's certificate from the hive's CA. Reads no private key but the
   operator's own (operator key, CA key: in the operator's state folder).
3. `admit_host` (`hive up --host H`, on H): verifies the directory against the
   operator key H pinned on its first `up`, checks it says what the topology says
   and that H's own keys are the ones signed, and returns the public material the
   compiler places into H's state folder.

Nothing here starts a process; `beehive.orchestrator.service` does that.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from beehive.core.errors import TrustError
from beehive.core.files import write_atomic
from beehive.orchestrator.prepare import compile_for, fingerprint, rotate_node_keys
from beehive.security.directory import Directory, DirectoryError, HostEntry
from beehive.security.host_keys import HostFileError, HostKeys, NatsServerKeys, NodeKeys
from beehive.security.identity import ensure_identity
from beehive.security.nats_auth import ADMIN_USER, ensure_admin_nkey, ensure_nkey
from beehive.security.operator import OperatorKey, load_signed_directory
from beehive.security.tls_ca import (
    TlsFiles,
    certificate_key,
    ensure_ca,
    ensure_server_key,
    server_cert,
)
from beehive.topology.layout import StateLayout, TrustLayout
from beehive.topology.material import SecurityMaterial
from beehive.topology.plan import Plan
from beehive.topology.schema import Topology

__all__ = [
    "Admission",
    "HostShare",
    "KeysResult",
    "SignResult",
    "admit_host",
    "make_host_keys",
    "operator_fingerprint",
    "prepare_host",
    "sign_trust",
]


class HostsRequired(TrustError):
    """A multi-host command on a topology without `hosts:` (or an unknown host)."""


def require_hosts(topology: Topology) -> None:
    """A multi-host command on a topology without `hosts:` is refused: HostsRequired."""
    if topology.hosts is None:
        raise HostsRequired(
            f"topology {topology.name!r} declares no hosts: it is one implicit host",
            hint="`hive up` does the keys, the signing and the start in one step; "
            "add a 'hosts:' section to spread the hive over machines",
        )


def check_host(topology: Topology, host: str) -> None:
    """`host` is a declared host of a multi-host topology, else HostsRequired."""
    require_hosts(topology)
    assert topology.hosts is not None
    if host not in topology.hosts:
        raise HostsRequired(
            f"--host {host}: not a host of topology {topology.name!r} "
            f"(declared: {', '.join(sorted(topology.hosts))})"
        )


def operator_fingerprint(public_b64: str) -> str:
    """The operator key as people compare it, read aloud: its `fingerprint` in
    groups of four (`3f2a:91bc:07de:44a1`)."""
    digest = fingerprint(base64.b64decode(public_b64))
    return ":".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_if_changed(path: Path, content: bytes, mode: int = 0o644) -> bool:
    """Write `content` atomically unless the file already holds exactly it."""
    try:
        if path.read_bytes() == content:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, content, mode=mode, durable=True)
    return True


def _claim_state_folder(topology: Topology, host: str, state_dir: Path) -> StateLayout:
    """H's state folder (0700), marked as H's: a folder made for another host or
    network is refused, so one host's keys never end up in another's folder."""
    layout = StateLayout(state_dir)
    marker = {"network": topology.name, "host": host}
    if layout.host_marker.exists():
        try:
            found = json.loads(layout.host_marker.read_bytes())
        except ValueError:
            found = None
        if found != marker:
            raise TrustError(
                f"{state_dir} is the state folder of {found!r}, not of host {host!r} of "
                f"{topology.name!r}",
                hint="give each host its own folder (--state-dir); run each host's "
                "commands on that host",
            )
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    state_dir.chmod(0o700)
    _write_if_changed(layout.host_marker, (json.dumps(marker, sort_keys=True) + "\n").encode())
    return layout


# ─────────────────────────────────────────────────────────────── 1. keys (on H)


@dataclass(frozen=True)
class KeysResult:
    host_file: Path
    #: True when the host file was written (new keys, or a first run).
    changed: bool
    #: Key files generated by this run (empty when every key existed).
    generated: list[str] = field(default_factory=list)


def make_host_keys(
    topology: Topology,
    host: str,
    state_dir: Path,
    trust: TrustLayout,
    *,
    rotate: Iterable[str] = (),
) -> KeysResult:
    """Generate, once, the private keys of every node on `host` (identity and, with
    the embedded server, NATS nkey), its nats-server's TLS key if it runs one, and
    the stream admin's nkey on the server host that creates the stream; write their
    public halves with proofs to `trust/hosts/<host>.json`.

    Idempotent: with every key present it rewrites nothing. `rotate` names nodes
    of this host that get NEW keys (the operator then signs again).
    """
    check_host(topology, host)
    local = topology.nodes_on(host)
    unknown = sorted(set(rotate) - set(local))
    if unknown:
        raise HostsRequired(
            f"--rotate-keys: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not "
            f"a node of host {host} (its nodes: {', '.join(local) or 'none'})"
        )
    layout = _claim_state_folder(topology, host, state_dir)
    keys = layout.keys_dir
    embedded = topology.nats.embedded
    generated: list[str] = []
    for alias in sorted(rotate):
        rotate_node_keys(topology, state_dir, alias)
        generated.append(f"{alias} (rotated)")

    def note_new(path: Path) -> None:
        if not path.exists():
            generated.append(str(layout.rel(path)))

    nodes: dict[str, NodeKeys] = {}
    for alias in local:
        note_new(layout.key_file(alias))
        identity = ensure_identity(keys, alias)
        nkey = seed = None
        if embedded:
            note_new(layout.nkey_file(alias))
            nkey, seed = ensure_nkey(keys, alias), layout.nkey_file(alias)
        nodes[alias] = NodeKeys.make(topology.name, host, identity, nkey, seed)
    nats = None
    if host in topology.nats_hosts():
        note_new(layout.tls_dir / "server.key")
        tls_key = ensure_server_key(layout.tls_dir)
        admin = admin_seed = None
        if host == topology.nats.host:
            note_new(layout.admin_nkey)
            admin, admin_seed = ensure_admin_nkey(keys), layout.admin_nkey
        nats = NatsServerKeys.make(topology.name, host, tls_key, admin, admin_seed)
    public = HostKeys(topology.name, host, nodes, nats).to_json()
    path = trust.host_file(host)
    return KeysResult(path, _write_if_changed(path, public), generated)


# ────────────────────────────────────────────────────── 2. sign (the operator)


class TrustSignError(TrustError):
    """`hive trust sign` found host files that do not match the topology."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "nothing was signed:\n" + "\n".join(f"  {p}" for p in problems),
            hint="fix each, then run `hive trust sign` again",
        )


@dataclass(frozen=True)
class SignResult:
    directory: Directory
    fingerprint: str
    written: list[Path]


def _host_problems(topology: Topology, host: str, found: HostKeys, path: Path) -> list[str]:
    """What `path` says that the topology does not (or lacks), one line each."""
    problems = [f"{path}: {p}" for p in found.problems()]
    if found.host != host:
        problems.append(f"{path}: is the file of host {found.host!r}, not {host!r}")
    if found.network != topology.name:
        problems.append(f"{path}: is for network {found.network!r}, not {topology.name!r}")
    again = f"run `hive keys --host {host}` on {host} again and commit the file"
    want, have = set(topology.nodes_on(host)), set(found.nodes)
    if want - have:
        problems.append(
            f"{path}: no keys for {', '.join(sorted(want - have))} (placed on {host} by the "
            f"topology): {again}"
        )
    if have - want:
        problems.append(
            f"{path}: keys for {', '.join(sorted(have - want))}, which the topology does not "
            f"place on {host}: {again}"
        )
    if topology.nats.embedded:
        without = sorted(a for a in want & have if found.nodes[a].nkey is None)
        if without:
            problems.append(f"{path}: no NATS nkey for {', '.join(without)}: {again}")
    runs_server = host in topology.nats_hosts()
    if runs_server and found.nats is None:
        problems.append(f"{path}: no nats-server key, and {host} runs a server: {again}")
    if not runs_server and found.nats is not None:
        problems.append(f"{path}: a nats-server key, but {host} runs no server: {again}")
    creates_stream = runs_server and host == topology.nats.host
    has_admin = found.nats is not None and found.nats.admin_nkey is not None
    if creates_stream != has_admin:
        problems.append(
            f"{path}: {'no' if creates_stream else 'an'} admin nkey, and {host} "
            f"{'creates' if creates_stream else 'does not create'} the stream: {again}"
        )
    return problems


def _load_host_files(
    topology: Topology, trust: TrustLayout
) -> tuple[dict[str, HostKeys], list[str]]:
    assert topology.hosts is not None
    problems: list[str] = []
    files: dict[str, HostKeys] = {}
    listed = sorted(trust.hosts_dir.glob("*.json")) if trust.hosts_dir.is_dir() else []
    for path in listed:
        if path.stem not in topology.hosts:
            problems.append(
                f"{path}: host {path.stem!r} is not declared in the topology: remove the file "
                "(a host that left), or declare the host"
            )
            continue
        try:
            found = HostKeys.load(path)
        except HostFileError as exc:
            problems.append(str(exc))
            continue
        problems += _host_problems(topology, path.stem, found, path)
        files[path.stem] = found
    for host in sorted(topology.hosts):
        needed = topology.nodes_on(host) or host in topology.nats_hosts()
        if needed and not trust.host_file(host).exists():
            problems.append(
                f"missing {trust.host_file(host)}: run `hive keys --host {host}` on {host} and "
                "commit the file"
            )
    return files, problems


def sign_trust(topology: Topology, trust: TrustLayout, operator_dir: Path) -> SignResult:
    """Check every `trust/hosts/*.json` against the topology, then write the signed
    directory, the CA certificate, the nats-server certificates and the operator's
    public key into `trust/`. On its first run it creates the operator key and the
    CA (in `operator_dir`). Every failure is named; on any, nothing is written."""
    require_hosts(topology)
    assert topology.hosts is not None
    files, problems = _load_host_files(topology, trust)
    if problems:
        raise TrustSignError(problems)
    members = {a: files[topology.nodes[a].host or ""].nodes[a].identity for a in topology.nodes}
    roles = {a: n.role for a, n in topology.nodes.items()}
    try:
        Directory(topology.name, members, roles)  # duplicate keys, before any key is made
    except DirectoryError as exc:
        raise TrustSignError([f"{trust.hosts_dir}: {exc}"]) from None

    operator_layout = StateLayout(operator_dir)
    operator_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    operator_dir.chmod(0o700)
    operator = OperatorKey.ensure(operator_layout.keys_dir)
    ca, ca_key = ensure_ca(operator_layout.tls_dir, topology.name)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    certs: dict[str, bytes] = {}
    for host in topology.nats_hosts():
        server = files[host].nats
        assert server is not None  # checked by _host_problems
        cert_path = trust.nats_cert(host)
        existing = cert_path.read_bytes() if cert_path.exists() else None
        certs[host] = server_cert(
            ca, ca_key, server.tls_key, topology.name, topology.address(host), existing
        )
    hosts = {}
    for host, spec in topology.hosts.items():
        nkeys: dict[str, str] = {}
        for alias in topology.nodes_on(host):
            nkey = files[host].nodes[alias].nkey
            if nkey is not None:
                nkeys[alias] = nkey
        server = files[host].nats if host in files else None
        if server is not None and server.admin_nkey is not None:
            nkeys[ADMIN_USER] = server.admin_nkey
        hosts[host] = HostEntry(
            spec.address,
            tuple(topology.nodes_on(host)),
            nkeys,
            _sha256(certs[host]) if host in certs else None,
        )
    directory = Directory(topology.name, members, roles, hosts=hosts, ca_sha256=_sha256(ca_pem))
    directory_json = directory.to_json()
    outputs: list[tuple[Path, bytes]] = [
        (trust.ca_pem, ca_pem),
        *((trust.nats_cert(h), c) for h, c in sorted(certs.items())),
        (trust.operator_pub, operator.public_b64.encode() + b"\n"),
        (trust.directory_json, directory_json),
        (trust.directory_sig, operator.sign_directory(directory_json)),
    ]
    written = [path for path, content in outputs if _write_if_changed(path, content)]
    if trust.nats_dir.is_dir():
        for stale in sorted(trust.nats_dir.glob("*.pem")):
            if stale.stem not in certs:
                stale.unlink()
                written.append(stale)
    return SignResult(directory, operator_fingerprint(operator.public_b64), written)


# ────────────────────────────────────────────────────────── 3. admit (on H)


@dataclass(frozen=True)
class Admission:
    """What `hive up --host H` found in `trust/`, verified, for H's compile."""

    directory: Directory
    directory_json: bytes
    material: SecurityMaterial
    operator_key: str
    fingerprint: str
    #: True when this run pins the operator key (first `up`, or `--pin-operator`).
    pins: bool


class NotAdmitted(TrustError):
    """`hive up --host H` refuses: the message says what is wrong and what to run."""


def _read(path: Path, what: str, fix: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise NotAdmitted(f"cannot read {what} {path}: {exc.strerror or exc}", hint=fix) from None


def admit_host(
    topology: Topology,
    host: str,
    state_dir: Path,
    trust: TrustLayout,
    *,
    pin_operator: str | None = None,
) -> Admission:
    """Verify `trust/` for host `host` (see the module docstring); writes nothing.

    Refuses (NotAdmitted, saying what to run) when the directory is unsigned or
    signed by another key than the one this host pinned (unless `pin_operator` is
    that key's fingerprint: a deliberate re-pin), when it does not say what the
    topology says, or when `host`'s keys are not the ones in it.
    """
    check_host(topology, host)
    layout = StateLayout(state_dir)
    sign = "the operator runs `hive trust sign` and commits trust/; then pull it here"
    offered = _read(trust.operator_pub, "the operator's public key", sign).decode().strip()
    offered_fp = operator_fingerprint(offered)
    pinned = layout.pinned_operator.read_text().strip() if layout.pinned_operator.exists() else None
    pins = pinned is None or (pinned != offered and pin_operator == offered_fp)
    if pin_operator is not None and pin_operator != offered_fp:
        raise NotAdmitted(
            f"--pin-operator {pin_operator}: trust/ is signed by operator key {offered_fp}, "
            "not that one: nothing was pinned",
            hint="compare the fingerprint with the operator over another channel",
        )
    if pinned is not None and pinned != offered and not pins:
        raise NotAdmitted(
            f"{trust.operator_pub} holds operator key {offered_fp}, but host {host} pinned "
            f"{operator_fingerprint(pinned)} on its first `up`: a directory signed by another "
            "key is refused; nothing was changed",
            hint="if the operator really changed keys, confirm the new fingerprint with them "
            f"and run `hive up --host {host} --pin-operator {offered_fp}`",
        )
    operator_key = offered if pins else (pinned or offered)
    try:
        directory = load_signed_directory(trust.directory_json, trust.directory_sig, operator_key)
    except DirectoryError as exc:
        raise NotAdmitted(
            f"the signed directory {trust.directory_json} is refused: it is unsigned, changed "
            "after `hive trust sign`, or signed by another key than the operator key this "
            f"host pinned ({operator_fingerprint(operator_key)}). Nothing was started "
            f"({str(exc).split(':')[0]})",
            hint=sign,
        ) from None
    directory_json = trust.directory_json.read_bytes()
    problems = _directory_problems(topology, directory)
    if problems:
        raise NotAdmitted(
            "the signed directory does not say what the topology says:\n"
            + "\n".join(f"  {p}" for p in problems),
            hint="the operator runs `hive trust sign` after every change of hosts or nodes "
            "(and commits trust/); then pull it here",
        )
    ca_pem = _read(trust.ca_pem, "the hive's CA certificate", sign)
    if _sha256(ca_pem) != directory.ca_sha256:
        raise NotAdmitted(
            f"{trust.ca_pem} is not the CA certificate the directory signed", hint=sign
        )
    _check_own_keys(topology, host, layout, directory)
    assert directory.hosts is not None  # _directory_problems checked
    entry = directory.hosts[host]
    files = {"tls/ca.pem": ca_pem}
    tls = None
    if host in topology.nats_hosts():
        cert = _read(trust.nats_cert(host), f"{host}'s nats-server certificate", sign)
        key_file = layout.tls_dir / "server.key"
        own = ensure_server_key(layout.tls_dir) if key_file.exists() else None
        if (
            _sha256(cert) != entry.nats_cert_sha256
            or own is None
            or (certificate_key(cert) != own.public_key())
        ):
            raise NotAdmitted(
                f"{trust.nats_cert(host)} does not certify this host's nats-server key "
                f"({key_file})",
                hint=f"run `hive keys --host {host}`, then {sign}",
            )
        files["tls/server.pem"] = cert
        tls = TlsFiles(
            layout.tls_dir / "ca.pem", layout.tls_dir / "server.pem", key_file, _sha256(cert)
        )
    nkeys = {
        alias: key
        for e in directory.hosts.values()
        for alias, key in e.nkeys.items()
        if alias != ADMIN_USER
    }
    admin = directory.hosts[topology.nats.host].nkeys.get(ADMIN_USER) if tls else None
    material = SecurityMaterial(
        operator_key=operator_key,
        directory_sig=trust.directory_sig.read_bytes(),
        nkeys=nkeys,
        tls=tls,
        admin_nkey=admin,
        ca_file=layout.tls_dir / "ca.pem",
        files=files,
    )
    return Admission(directory, directory_json, material, operator_key, offered_fp, pins)


@dataclass(frozen=True)
class HostShare:
    """Which host's share of a multi-host topology a `hive up`/`plan` acts on, the
    trust folder it is admitted from, and a deliberate operator re-pin, if any."""

    host: str
    trust: TrustLayout
    pin_operator: str | None = None


def prepare_host(topology: Topology, state_dir: Path, share: HostShare) -> tuple[Plan, Admission]:
    """Host `host`'s share of a multi-host topology: admit it (trust.admit_host:
    the signed directory against its pinned operator key, its own keys against
    the directory), then compile. Generates and writes nothing: a host's keys come
    from `hive keys --host`, the rest from `trust/`."""
    admission = admit_host(
        topology, share.host, state_dir, share.trust, pin_operator=share.pin_operator
    )
    plan = compile_for(
        topology, state_dir, admission.directory_json, admission.material, host=share.host
    )
    return plan, admission


def _directory_problems(topology: Topology, directory: Directory) -> list[str]:
    assert topology.hosts is not None
    if directory.network != topology.name:
        return [f"it is the directory of network {directory.network!r}, not {topology.name!r}"]
    if directory.hosts is None:
        return ["it places no node on a host (a single-host directory)"]
    problems = []
    for alias in sorted(set(topology.nodes) - set(directory)):
        problems.append(f"node {alias} is in the topology but not signed")
    for alias in sorted(set(directory) - set(topology.nodes)):
        problems.append(f"node {alias} is signed but no longer in the topology")
    for alias in sorted(set(directory) & set(topology.nodes)):
        node = topology.nodes[alias]
        if directory.host_of(alias) != node.host:
            problems.append(
                f"node {alias}: signed on host {directory.host_of(alias)}, declared on {node.host}"
            )
        if directory.role(alias) != node.role:
            problems.append(
                f"node {alias}: signed as {directory.role(alias)}, declared {node.role}"
            )
    for host, spec in topology.hosts.items():
        entry = directory.hosts.get(host)
        if entry is None:
            problems.append(f"host {host} is not signed")
        elif entry.address != spec.address:
            problems.append(f"host {host}: signed at {entry.address}, declared at {spec.address}")
    for host in sorted(set(directory.hosts) - set(topology.hosts)):
        problems.append(f"host {host} is signed but no longer in the topology")
    for host in topology.nats_hosts():
        entry = directory.hosts.get(host)
        if entry is not None and entry.nats_cert_sha256 is None:
            problems.append(f"host {host} runs a nats-server but none is signed for it")
    return problems


def _check_own_keys(
    topology: Topology, host: str, layout: StateLayout, directory: Directory
) -> None:
    """Each of `host`'s nodes holds exactly the keys the directory signed for it."""
    assert directory.hosts is not None
    entry = directory.hosts[host]
    keys_fix = f"run `hive keys --host {host}` here; the operator then runs `hive trust sign`"
    problems = []
    for alias in topology.nodes_on(host):
        key_file = layout.key_file(alias)
        if not key_file.exists():
            problems.append(f"{alias}: no key file {key_file}")
            continue
        own = ensure_identity(layout.keys_dir, alias).public()  # exists: only loads
        signed = directory[alias]
        if own != signed:
            problems.append(
                f"{alias}: {key_file} holds signing key {fingerprint(own.signing_key)}, the "
                f"directory signed {fingerprint(signed.signing_key)}"
            )
        if topology.nats.embedded:
            nkey_file = layout.nkey_file(alias)
            have = ensure_nkey(layout.keys_dir, alias) if nkey_file.exists() else None
            if have != entry.nkeys.get(alias):
                problems.append(f"{alias}: {nkey_file} is not the nkey the directory signed")
    if problems:
        raise NotAdmitted(
            f"host {host}'s keys are not the ones the directory signed:\n"
            + "\n".join(f"  {p}" for p in problems),
            hint=keys_fix + " (or restore the key files from a backup)",
        )

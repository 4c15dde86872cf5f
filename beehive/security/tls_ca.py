"""The hive's own certificate authority for the embedded NATS server's client port.

`hive up` creates a CA once (key 0600, kept in the state folder) and a server
certificate for the declared host, 127.0.0.1, ::1 and localhost; nodes trust only
that CA. The server certificate is reissued only when the names it must cover
change, so `hive up` twice leaves every file (and so nats-server) untouched.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from beehive.core.errors import TrustError
from beehive.security.secret_file import read_private, write_private
from beehive.security.tls_client import client_context

__all__ = [
    "TlsError",
    "TlsFiles",
    "certificate_key",
    "client_context",
    "ensure_ca",
    "ensure_server_key",
    "ensure_tls",
    "public_pem",
    "server_cert",
]

CA_DAYS = 3650
SERVER_DAYS = 825


@dataclass(frozen=True)
class TlsFiles:
    """Where the TLS material lives, and the server certificate's fingerprint (so a
    reissued certificate changes the server's config hash and restarts it)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    cert_sha256: str


def _names(hosts: Iterable[str], *, local: bool = True) -> list[x509.GeneralName]:
    """Subject alternative names for `hosts`; with `local`, the loopback names too
    (a single-host hive's nodes may dial any of them)."""
    names: list[x509.GeneralName] = []
    loopback = {"127.0.0.1", "::1", "localhost"} if local else set()
    for host in sorted({*hosts, *loopback}):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class TlsError(TrustError):
    """A CA or TLS key file of the state folder that does not load; names the file."""


def _unreadable(path: Path) -> TlsError:
    return TlsError(
        f"{path} is not a valid PEM file; restore it from a backup, or delete the tls/ "
        "folder and run `hive up` again (the hive then gets a new CA)"
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(read_private(path, "TLS key file"), None)
    except ValueError:
        raise _unreadable(path) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise _unreadable(path)
    return key


def _ensure_ca(tls_dir: Path, network: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_file, ca_key = tls_dir / "ca.pem", tls_dir / "ca.key"
    if ca_file.exists() and ca_key.exists():
        try:
            ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
        except ValueError:
            raise _unreadable(ca_file) from None
        if _key_id(ca) is not None:
            return ca, _load_key(ca_key)
        # An older CA without a Subject Key Identifier: Python 3.13 verifies
        # strictly (VERIFY_X509_STRICT) and refuses chains that lack it. Replace it.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Bee-Hive CA ({network})")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    write_private(ca_key, _key_pem(key))
    ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _covers(cert_file: Path, ca: x509.Certificate, wanted: list[x509.GeneralName]) -> bool:
    """An existing server cert is kept if it `_fits`."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError):
        return False
    return _fits(cert, ca, wanted)


def _fits(cert: x509.Certificate, ca: x509.Certificate, wanted: list[x509.GeneralName]) -> bool:
    """This very CA key issued `cert` (its Authority Key Identifier, which strict
    verifiers require), it names exactly `wanted`, and it is valid for at least
    another 30 days."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return False
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    return (
        cert.issuer == ca.subject
        and aki.key_identifier == _key_id(ca)
        and set(sans) == set(wanted)
        and cert.not_valid_after_utc > soon
    )


def _key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def ensure_tls(tls_dir: Path, network: str, hosts: Iterable[str]) -> TlsFiles:
    """CA and server certificate in `tls_dir`, created or reissued only as needed."""
    tls_dir = Path(tls_dir)
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca, ca_key = _ensure_ca(tls_dir, network)
    cert_file, key_file = tls_dir / "server.pem", tls_dir / "server.key"
    wanted = _names(hosts)
    if not (key_file.exists() and _covers(cert_file, ca, wanted)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(ca, ca_key, key.public_key(), network, wanted, client_auth=False)
        write_private(key_file, _key_pem(key))
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    digest = hashlib.sha256(cert_file.read_bytes()).hexdigest()
    return TlsFiles(tls_dir / "ca.pem", cert_file, key_file, digest)


def _issue(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    network: str,
    names: list[x509.GeneralName],
    *,
    client_auth: bool,
) -> x509.Certificate:
    """A nats-server certificate for `names`. `client_auth` also lets it present
    itself as a client: cluster routes authenticate both ends with these."""
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, *([ExtendedKeyUsageOID.CLIENT_AUTH] * client_auth)]
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"beehive-{network}-nats")])
        )
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )


# ── multi-host: each host makes its server key, the operator's CA signs it ──────


def ensure_server_key(tls_dir: Path) -> ec.EllipticCurvePrivateKey:
    """`tls_dir/server.key`: a host's own nats-server key, generated once (0600).
    Only its public half leaves the host (`hive keys --host`)."""
    key_file = Path(tls_dir) / "server.key"
    if not (key_file.exists() or key_file.is_symlink()):
        Path(tls_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(key_file, _key_pem(ec.generate_private_key(ec.SECP256R1())))
    return _load_key(key_file)


def public_pem(key: ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def ensure_ca(tls_dir: Path, network: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The operator's CA in `tls_dir` (`ca.pem`, `ca.key` 0600), created once."""
    Path(tls_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    return _ensure_ca(Path(tls_dir), network)


def server_cert(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    network: str,
    address: str,
    existing: bytes | None,
) -> bytes:
    """The PEM certificate for a host's nats-server at `address`: `existing` when
    it still fits (this CA issued it for this very key and address, valid for
    another 30 days), so `hive trust sign` twice rewrites nothing; else a new one."""
    names = _names([address], local=False)
    if existing is not None:
        try:
            cert = x509.load_pem_x509_certificate(existing)
        except ValueError:
            cert = None
        if cert is not None and cert.public_key() == public_key and _fits(cert, ca, names):
            return existing
    cert = _issue(ca, ca_key, public_key, network, names, client_auth=True)
    return cert.public_bytes(serialization.Encoding.PEM)


def certificate_key(pem: bytes) -> ec.EllipticCurvePublicKey | None:
    """The public key a PEM certificate certifies (None if it is no EC certificate)."""
    try:
        key = x509.load_pem_x509_certificate(pem).public_key()
    except ValueError:
        return None
    return key if isinstance(key, ec.EllipticCurvePublicKey) else None

"""A host's public keys, as `hive keys --host H` publishes them: `trust/hosts/H.json`.

Each host of a multi-host hive makes its own private keys (node identities, NATS
nkeys, its nats-server's TLS key) and they never leave it. What it publishes is
their public halves, each with a proof of possession: a signature, by that very
key, over a claim naming the network, the host, the alias and every public key.
So a host cannot publish another host's key as its own (it cannot sign for it),
and a claim cannot be moved to another alias or network. The operator reviews
the file in git and `hive trust sign` admits it.

An X25519 encryption key cannot sign; the node's Ed25519 key signs it into the
same claim instead, and a node holding the wrong one simply cannot open what is
sealed to it.

Every signature here is deterministic (Ed25519, RFC 6979 ECDSA), so running `hive
keys` again on the same keys writes the same bytes: no diff to review.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import nkeys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from beehive.core.errors import TrustError
from beehive.security.identity import Identity, PublicIdentity
from beehive.security.secret_file import SecretFileError, read_private

__all__ = [
    "HOST_FILE_VERSION",
    "HostFileError",
    "HostKeys",
    "NatsServerKeys",
    "NodeKeys",
    "nkey_public_bytes",
    "sign_with_nkey",
]

HOST_FILE_VERSION = 1
PROOF_DOMAIN = b"beehive/host-keys/v1"
_ECDSA = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


class HostFileError(TrustError):
    """A host file that does not parse or whose proofs do not verify; names it."""


def _claim(**fields: str | None) -> bytes:
    """The bytes a proof signs: the domain, then canonical JSON of what is claimed."""
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return PROOF_DOMAIN + b"\0" + body


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64") from None


def nkey_public_bytes(public: str) -> bytes:
    """The raw Ed25519 key inside a public user nkey (`U…`), checksum verified."""
    try:
        raw = base64.b32decode(public + "=" * (-len(public) % 8))
    except (binascii.Error, ValueError):
        raise ValueError(f"nkey {public!r} is not base32") from None
    body, crc = raw[:-2], raw[-2:]
    if len(body) != 33 or body[0] != nkeys.PREFIX_BYTE_USER or nkeys.crc16_checksum(body) != crc:
        raise ValueError(f"{public!r} is not a public user nkey (U…)")
    return body[1:]


def sign_with_nkey(seed_file: Path, data: bytes) -> bytes:
    """Sign `data` with the nkey seed in `seed_file` (0600, read only here)."""
    try:
        seed = read_private(seed_file, "NATS nkey seed file", max_size=4096).strip()
    except SecretFileError as exc:
        raise HostFileError(str(exc)) from None
    pair = nkeys.from_seed(bytearray(seed))
    try:
        return bytes(pair.sign(data))
    finally:
        pair.wipe()


def _verify_ed25519(raw_public: bytes, data: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(raw_public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class NodeKeys:
    """One node's public keys and the two proofs that its host holds them."""

    identity: PublicIdentity
    #: Public NATS user nkey (U…); None when the hive uses an external server.
    nkey: str | None
    proof: bytes  # by the identity's signing key
    nkey_proof: bytes | None  # by the nkey

    def claim(self, network: str, host: str) -> bytes:
        return _claim(
            network=network,
            host=host,
            alias=self.identity.alias,
            signing_key=_b64(self.identity.signing_key),
            hpke_key=_b64(self.identity.hpke_key),
            nkey=self.nkey,
        )

    @classmethod
    def make(
        cls, network: str, host: str, identity: Identity, nkey: str | None, nkey_seed: Path | None
    ) -> NodeKeys:
        unsigned = cls(identity.public(), nkey, b"", None)
        claim = unsigned.claim(network, host)
        # Identity.sign prefixes its own domain: the proof is over domain + claim.
        proof = identity.sign(PROOF_DOMAIN, claim)
        nkey_proof = sign_with_nkey(nkey_seed, claim) if nkey_seed is not None else None
        return cls(identity.public(), nkey, proof, nkey_proof)

    def problems(self, network: str, host: str) -> list[str]:
        claim = self.claim(network, host)
        alias = self.identity.alias
        found = []
        if not self.identity.verify(PROOF_DOMAIN, claim, self.proof):
            found.append(f"{alias}: the proof by its signing key does not verify")
        if (self.nkey is None) != (self.nkey_proof is None):
            found.append(f"{alias}: an nkey needs its proof (and a proof its nkey)")
        elif self.nkey is not None and self.nkey_proof is not None:
            try:
                raw = nkey_public_bytes(self.nkey)
            except ValueError as exc:
                found.append(f"{alias}: {exc}")
            else:
                if not _verify_ed25519(raw, claim, self.nkey_proof):
                    found.append(f"{alias}: the proof by its nkey does not verify")
        return found


@dataclass(frozen=True)
class NatsServerKeys:
    """The public half of a host's nats-server TLS key, and (on the host that
    creates the stream) its admin user's nkey, each with its proof."""

    tls_public_key: str  # PEM SubjectPublicKeyInfo
    tls_proof: bytes  # deterministic ECDSA by the TLS key
    admin_nkey: str | None = None
    admin_proof: bytes | None = None

    def claim(self, network: str, host: str) -> bytes:
        return _claim(
            network=network,
            host=host,
            tls_public_key=self.tls_public_key,
            admin_nkey=self.admin_nkey,
        )

    @property
    def tls_key(self) -> ec.EllipticCurvePublicKey:
        key = serialization.load_pem_public_key(self.tls_public_key.encode())
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("tls_public_key is not an EC public key")
        return key

    @classmethod
    def make(
        cls,
        network: str,
        host: str,
        tls_key: ec.EllipticCurvePrivateKey,
        admin_nkey: str | None,
        admin_seed: Path | None,
    ) -> NatsServerKeys:
        pem = tls_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        unsigned = cls(pem.decode("ascii"), b"", admin_nkey, None)
        claim = unsigned.claim(network, host)
        admin_proof = sign_with_nkey(admin_seed, claim) if admin_seed is not None else None
        return cls(pem.decode("ascii"), tls_key.sign(claim, _ECDSA), admin_nkey, admin_proof)

    def problems(self, network: str, host: str) -> list[str]:
        claim = self.claim(network, host)
        found = []
        try:
            self.tls_key.verify(self.tls_proof, claim, _ECDSA)
        except (InvalidSignature, ValueError):
            found.append("nats: the proof by its TLS key does not verify")
        if self.admin_nkey is not None:
            try:
                raw = nkey_public_bytes(self.admin_nkey)
            except ValueError as exc:
                found.append(f"nats: admin {exc}")
            else:
                if self.admin_proof is None or not _verify_ed25519(raw, claim, self.admin_proof):
                    found.append("nats: the proof by its admin nkey does not verify")
        return found


@dataclass(frozen=True)
class HostKeys:
    """What `trust/hosts/<host>.json` says: a host's public keys, with proofs."""

    network: str
    host: str
    nodes: Mapping[str, NodeKeys]
    nats: NatsServerKeys | None = None

    def to_json(self) -> bytes:
        doc: dict[str, object] = {
            "version": HOST_FILE_VERSION,
            "network": self.network,
            "host": self.host,
            "nodes": {
                alias: {
                    "signing_key": _b64(n.identity.signing_key),
                    "hpke_key": _b64(n.identity.hpke_key),
                    "proof": _b64(n.proof),
                    **({"nkey": n.nkey} if n.nkey is not None else {}),
                    **({"nkey_proof": _b64(n.nkey_proof)} if n.nkey_proof is not None else {}),
                }
                for alias, n in sorted(self.nodes.items())
            },
        }
        if self.nats is not None:
            nats: dict[str, str] = {
                "tls_public_key": self.nats.tls_public_key,
                "tls_proof": _b64(self.nats.tls_proof),
            }
            if self.nats.admin_nkey is not None and self.nats.admin_proof is not None:
                nats.update(
                    admin_nkey=self.nats.admin_nkey, admin_proof=_b64(self.nats.admin_proof)
                )
            doc["nats"] = nats
        return (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode("ascii")

    def problems(self) -> list[str]:
        """Every proof that does not verify, one line each (empty: all verify)."""
        found = [p for n in self.nodes.values() for p in n.problems(self.network, self.host)]
        if self.nats is not None:
            found += self.nats.problems(self.network, self.host)
        return found

    @classmethod
    def load(cls, path: Path) -> HostKeys:
        """Parse `path` strictly (proofs are checked by `problems`, not here)."""
        try:
            doc = json.loads(Path(path).read_bytes())
            return cls._from_doc(doc)
        except OSError as exc:
            raise HostFileError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise HostFileError(
                f"{path} is not a valid host key file ({exc}); run `hive keys --host <host>` "
                "on that host again to rewrite it"
            ) from None

    @classmethod
    def _from_doc(cls, doc: object) -> HostKeys:
        if not isinstance(doc, dict) or set(doc) - {"nats"} != {
            "version",
            "network",
            "host",
            "nodes",
        }:
            raise ValueError("expected exactly version, network, host, nodes (and nats)")
        if doc["version"] != HOST_FILE_VERSION:
            raise ValueError(f"unsupported version {doc['version']!r}")
        if not isinstance(doc["network"], str) or not isinstance(doc["host"], str):
            raise ValueError("network and host must be strings")
        nodes: dict[str, NodeKeys] = {}
        if not isinstance(doc["nodes"], dict):
            raise ValueError("nodes must be an object")
        for alias, entry in doc["nodes"].items():
            allowed = {"signing_key", "hpke_key", "proof", "nkey", "nkey_proof"}
            if not isinstance(entry, dict) or not set(entry) <= allowed:
                raise ValueError(f"node {alias!r}: unknown fields")
            nkey = entry.get("nkey")
            if nkey is not None and not isinstance(nkey, str):
                raise ValueError(f"node {alias!r}: nkey must be a string")
            proof = entry.get("nkey_proof")
            nodes[alias] = NodeKeys(
                PublicIdentity(
                    alias,
                    _unb64(entry["signing_key"], "signing_key"),
                    _unb64(entry["hpke_key"], "hpke_key"),
                ),
                nkey,
                _unb64(entry["proof"], "proof"),
                _unb64(proof, "nkey_proof") if proof is not None else None,
            )
        nats = None
        if "nats" in doc:
            n = doc["nats"]
            allowed = {"tls_public_key", "tls_proof", "admin_nkey", "admin_proof"}
            if not isinstance(n, dict) or not set(n) <= allowed:
                raise ValueError("nats: unknown fields")
            if not isinstance(n["tls_public_key"], str):
                raise ValueError("nats.tls_public_key must be a PEM string")
            admin, admin_proof = n.get("admin_nkey"), n.get("admin_proof")
            if admin is not None and not isinstance(admin, str):
                raise ValueError("nats.admin_nkey must be a string")
            nats = NatsServerKeys(
                n["tls_public_key"],
                _unb64(n["tls_proof"], "tls_proof"),
                admin,
                _unb64(admin_proof, "admin_proof") if admin_proof is not None else None,
            )
        return cls(doc["network"], doc["host"], nodes, nats)

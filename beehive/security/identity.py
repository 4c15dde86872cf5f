"""Node identities: an Ed25519 key to sign with and an X25519 key to be sealed to.

Two keys rather than one because signing and key agreement have different
security proofs and misuse modes; converting one Ed25519 key to X25519 works but
couples them. Private keys live only in a 0600 file written atomically, so a
crash mid-write never leaves a half key that a later run would trust.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from beehive.core.errors import TrustError
from beehive.core.names import check_name
from beehive.security.key_files import key_path
from beehive.security.secret_file import SecretFileError, read_private, write_private

__all__ = [
    "KEY_FILE_VERSION",
    "Identity",
    "IdentityError",
    "PublicIdentity",
    "ensure_identity",
    "key_path",
]

KEY_FILE_VERSION = 1

_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw
_RAW_PRIV = serialization.PrivateFormat.Raw
_NO_ENC = serialization.NoEncryption()


class IdentityError(TrustError):
    """A key file cannot be trusted or read; the message says what to do about it."""


def _check_domain(domain: bytes) -> None:
    # The NUL separator is only unambiguous if no domain contains NUL itself.
    if not isinstance(domain, bytes) or not domain or b"\0" in domain:
        raise ValueError("signature domain must be non-empty bytes without NUL")


@dataclass(frozen=True)
class PublicIdentity:
    """What every node pins about every other node (the directory's entries)."""

    alias: str
    signing_key: bytes  # raw 32-byte Ed25519 public key
    hpke_key: bytes  # raw 32-byte X25519 public key

    def __post_init__(self) -> None:
        check_name(self.alias)
        for name in ("signing_key", "hpke_key"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise ValueError(f"{name} of {self.alias!r} must be 32 raw bytes")
        # Parse now so a bad point fails at load time, not on the first message.
        _ = self.ed25519_public, self.x25519_public

    # cached_property writes the instance __dict__ directly, so it works on a frozen
    # dataclass; parsing once matters because open() verifies on every message.
    @cached_property
    def ed25519_public(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.signing_key)

    @cached_property
    def x25519_public(self) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(self.hpke_key)

    def verify(self, domain: bytes, data: bytes, signature: bytes) -> bool:
        """Check a signature made by `Identity.sign` with the same domain.

        Returns False instead of raising for any bad input, because callers treat
        every failure the same way (reject) and must never crash on hostile bytes.
        """
        _check_domain(domain)
        if not isinstance(data, bytes) or not isinstance(signature, bytes):
            return False
        if len(signature) != 64:
            return False
        try:
            self.ed25519_public.verify(signature, domain + b"\0" + data)
        except (InvalidSignature, ValueError):
            return False
        return True


class Identity:
    """A node's private keys. Deliberately not a dataclass: no generated repr or eq
    that could leak or compare secret material."""

    __slots__ = ("_hpke", "_public", "_signing", "alias")

    def __init__(
        self, alias: str, signing_key: Ed25519PrivateKey, hpke_key: X25519PrivateKey
    ) -> None:
        self.alias = check_name(alias)
        self._signing = signing_key
        self._hpke = hpke_key
        self._public = PublicIdentity(
            alias=alias,
            signing_key=signing_key.public_key().public_bytes(_RAW, _RAW_PUB),
            hpke_key=hpke_key.public_key().public_bytes(_RAW, _RAW_PUB),
        )

    def __repr__(self) -> str:
        return f"Identity(alias={self.alias!r}, private keys hidden)"

    def __reduce__(self) -> str | tuple[Any, ...]:
        # Pickling would copy private keys somewhere we do not control (a queue, a cache).
        raise TypeError("Identity cannot be pickled; pass the key file path instead")

    @classmethod
    def generate(cls, alias: str) -> Identity:
        return cls(alias, Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    def public(self) -> PublicIdentity:
        return self._public

    @property
    def hpke_private_key(self) -> X25519PrivateKey:
        """For the envelope layer's HPKE open; not for general use."""
        return self._hpke

    def sign(self, domain: bytes, data: bytes) -> bytes:
        """Sign `domain + NUL + data`, so a signature made for one purpose (an
        envelope) can never be replayed as another (a computation spec)."""
        _check_domain(domain)
        if not isinstance(data, bytes):
            raise TypeError("data to sign must be bytes")
        return self._signing.sign(domain + b"\0" + data)

    def _to_json(self) -> bytes:
        doc = {
            "version": KEY_FILE_VERSION,
            "alias": self.alias,
            "signing_key": base64.b64encode(
                self._signing.private_bytes(_RAW, _RAW_PRIV, _NO_ENC)
            ).decode("ascii"),
            "hpke_key": base64.b64encode(self._hpke.private_bytes(_RAW, _RAW_PRIV, _NO_ENC)).decode(
                "ascii"
            ),
        }
        return (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode("ascii")

    def save(self, path: Path) -> None:
        """Write the key file atomically with mode 0600 (see secret_file.write_private)."""
        write_private(Path(path), self._to_json())

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Read a key file, refusing one that others could read."""
        path = Path(path)
        try:
            raw = read_private(path, "key file")
        except SecretFileError as e:
            raise IdentityError(str(e)) from None
        return cls._from_json(raw, path)

    @classmethod
    def _from_json(cls, raw: bytes, path: Path) -> Identity:
        def bad(why: str) -> IdentityError:
            return IdentityError(f"key file {path} is not a valid Bee-Hive key file: {why}")

        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise bad("not JSON") from None
        if not isinstance(doc, dict):
            raise bad("not a JSON object")
        if doc.get("version") != KEY_FILE_VERSION:
            raise bad(f"unsupported version {doc.get('version')!r} (expected {KEY_FILE_VERSION})")
        expected = {"version", "alias", "signing_key", "hpke_key"}
        if set(doc) != expected:
            raise bad(f"expected exactly the fields {sorted(expected)}, got {sorted(doc)}")
        keys = {}
        for name in ("signing_key", "hpke_key"):
            value = doc[name]
            try:
                if not isinstance(value, str):
                    raise ValueError
                keys[name] = base64.b64decode(value, validate=True)
            except (ValueError, binascii.Error):
                raise bad(f"{name} is not base64") from None
            if len(keys[name]) != 32:
                raise bad(f"{name} is not 32 bytes")
        try:
            return cls(
                doc["alias"],
                Ed25519PrivateKey.from_private_bytes(keys["signing_key"]),
                X25519PrivateKey.from_private_bytes(keys["hpke_key"]),
            )
        except ValueError as e:
            raise bad(str(e)) from None


def ensure_identity(keys_dir: Path, alias: str) -> Identity:
    """Load `keys_dir/<alias>.key`, or create it on first use.

    Keys are generated once and then survive `hive down`, so every other node's
    pinned directory stays valid across restarts.
    """
    path = key_path(keys_dir, alias)
    if path.exists() or path.is_symlink():
        ident = Identity.load(path)
        if ident.alias != alias:
            raise IdentityError(
                f"key file {path} belongs to {ident.alias!r}, not {alias!r}; "
                "was it copied or renamed by hand?"
            )
        return ident
    ident = Identity.generate(alias)
    ident.save(path)
    return ident

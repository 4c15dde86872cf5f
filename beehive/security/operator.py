"""The operator key, which signs the directory every node pins.

`hive up` holds it in `keys/_operator.key` (the leading underscore cannot be a node
alias, so it never collides with one). A node's config pins the operator's public
key; a node refuses to start on a directory whose detached signature
(`directory.sig`) does not verify, so editing directory.json by hand (or by an
attacker with write access to one file) cannot add or swap a member.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from beehive.core.errors import TrustError
from beehive.security.directory import Directory, DirectoryError
from beehive.security.key_files import OPERATOR_KEY_FILE
from beehive.security.secret_file import SecretFileError, read_private, write_private

__all__ = [
    "DIRECTORY_DOMAIN",
    "OPERATOR_KEY_FILE",
    "OperatorKey",
    "OperatorKeyError",
    "load_signed_directory",
    "verify_directory",
]

DIRECTORY_DOMAIN = b"beehive/directory/v1"
_RAW = serialization.Encoding.Raw


class OperatorKeyError(TrustError):
    """The operator key file is unusable; the message names it and says what to do."""


class OperatorKey:
    """The operator's Ed25519 signing key. Ed25519 signatures are deterministic, so
    signing the same directory twice gives the same bytes (`hive up` stays idempotent)."""

    __slots__ = ("_key",)

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "OperatorKey(private key hidden)"

    @property
    def public_b64(self) -> str:
        raw = self._key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")

    def sign_directory(self, directory_json: bytes) -> bytes:
        """The detached signature file's bytes: base64 of the signature, one line."""
        sig = self._key.sign(DIRECTORY_DOMAIN + b"\0" + directory_json)
        return base64.b64encode(sig) + b"\n"

    @classmethod
    def ensure(cls, keys_dir: Path) -> OperatorKey:
        """Load `keys_dir/_operator.key`, generating it on first use."""
        path = Path(keys_dir) / OPERATOR_KEY_FILE
        if not (path.exists() or path.is_symlink()):
            raw = Ed25519PrivateKey.generate().private_bytes(
                _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            doc = {"version": 1, "operator_signing_key": base64.b64encode(raw).decode("ascii")}
            write_private(path, (json.dumps(doc, sort_keys=True) + "\n").encode())
        try:
            doc = json.loads(read_private(path, "operator key file"))
            raw = base64.b64decode(doc["operator_signing_key"], validate=True)
            return cls(Ed25519PrivateKey.from_private_bytes(raw))
        except SecretFileError as e:
            raise OperatorKeyError(str(e)) from None
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise OperatorKeyError(
                f"operator key file {path} is not valid; restore it from a backup, or delete "
                "it and run `hive up` again (every node then pins the new operator key)"
            ) from None


def verify_directory(operator_public_b64: str, directory_json: bytes, sig_file: bytes) -> bool:
    """True only if `sig_file` is the operator's signature over exactly these bytes."""
    try:
        public = Ed25519PublicKey.from_public_bytes(
            base64.b64decode(operator_public_b64, validate=True)
        )
        sig = base64.b64decode(sig_file.strip(), validate=True)
        public.verify(sig, DIRECTORY_DOMAIN + b"\0" + directory_json)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def load_signed_directory(path: Path, sig_path: Path, operator_public_b64: str) -> Directory:
    """Read the directory only if the pinned operator key signed exactly its bytes.

    The signature is checked before parsing: an unverified directory is not trusted
    even as far as its JSON parser. Checked and parsed once per process for the
    same bytes, signature and key (`_verified_directory`).
    """
    path, sig_path = Path(path), Path(sig_path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DirectoryError(f"cannot read directory {path}: {e.strerror or e}") from None
    try:
        sig = sig_path.read_bytes()
    except OSError as e:
        raise DirectoryError(
            f"cannot read the directory signature {sig_path}: {e.strerror or e}; "
            "run `hive up` to re-sign the directory"
        ) from None
    try:
        directory = _verified_directory(data, sig, operator_public_b64)
    except DirectoryError as e:
        raise DirectoryError(f"{path}: {e}") from None
    if directory is None:
        raise DirectoryError(
            f"{path} does not verify against its signature {sig_path} and the operator key "
            "pinned in this node's config: the directory was modified after `hive up` signed "
            "it. Refusing to start; run `hive up` to regenerate it from the keys"
        )
    return directory


@functools.lru_cache(maxsize=1)
def _verified_directory(
    directory_json: bytes, sig_file: bytes, operator_public_b64: str
) -> Directory | None:
    """The directory if the operator signed exactly these bytes, else None.

    Kept for the last inputs: a pack's nodes all read the same directory.json,
    twice at start and again each time `hive up` rewrites it; at 1,000 members one
    parse takes ~12 ms and holds ~1 MB, so a 1,000-node `hive up` spent ~35 s of
    CPU and ~1.2 GB on copies of one file (docs/performance.md). A pure function
    of its inputs, returning an immutable Directory: nothing is trusted here that
    this process did not verify.
    """
    if not verify_directory(operator_public_b64, directory_json, sig_file):
        return None
    return Directory.from_json(directory_json)

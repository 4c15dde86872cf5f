"""NATS credentials: one nkey user per node, and the subjects each may use.

The embedded server knows every node by the public half of its nkey; the seed
stays in `keys/<alias>.nk` (0600) and is read only by that node's process (nats-py
signs the server's nonce with it). Permissions are derived from roles, so a node's
credentials are useless for reading anyone else's inbox.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

import nkeys

from beehive.security.identity import _check_alias
from beehive.security.secret_file import SecretFileError, read_private, write_private

__all__ = [
    "NkeyError",
    "ensure_nkey",
    "inbox_subject",
    "load_nkey_public",
    "nkey_path",
    "permissions",
]


class NkeyError(Exception):
    """An nkey seed file is unusable; the message names the file and the fix."""


def inbox_subject(network: str, alias: str) -> str:
    """The one subject a node reads; every message on it is a sealed envelope."""
    return f"beehive.{network}.inbox.{alias}"


def nkey_path(keys_dir: Path, alias: str) -> Path:
    return Path(keys_dir) / f"{_check_alias(alias)}.nk"


def load_nkey_public(path: Path) -> str:
    """The public user key (U…) of the seed in `path`, checking the file is private."""
    try:
        seed = read_private(path, "NATS nkey seed file", max_size=4096).strip()
    except SecretFileError as e:
        raise NkeyError(str(e)) from None
    try:
        pair = nkeys.from_seed(bytearray(seed))
        public = pair.public_key.decode("ascii")
        pair.wipe()
    except Exception:
        raise NkeyError(
            f"NATS nkey seed file {path} does not hold a valid user seed (S…); delete it "
            "and run `hive up` again to generate a new one"
        ) from None
    if not public.startswith("U"):
        raise NkeyError(f"NATS nkey seed file {path} is not a user seed")
    return public


def ensure_nkey(keys_dir: Path, alias: str) -> str:
    """Load `keys/<alias>.nk` or generate it once; return the public user key."""
    path = nkey_path(keys_dir, alias)
    if not (path.exists() or path.is_symlink()):
        seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
        write_private(path, bytes(seed) + b"\n")
    return load_nkey_public(path)


def permissions(network: str, alias: str, roles: Mapping[str, str]) -> dict[str, list[str]]:
    """What `alias` may publish and subscribe to, from the protocol's needs only.

    A node reads only its own inbox. Heavy nodes talk to everyone (tasks to
    targets, sums to any proposer); a light node only ever talks to aggregators
    (specs, shares, declines), so it may publish only to heavy nodes' inboxes.
    No request/reply is used, so no `_INBOX.>` is granted to anyone.
    """
    if roles[alias] == "heavy":
        peers = sorted(roles)
    else:
        peers = sorted(a for a, role in roles.items() if role == "heavy")
    return {
        "publish": [inbox_subject(network, peer) for peer in peers],
        "subscribe": [inbox_subject(network, alias)],
    }

"""NATS credentials: one nkey user per node, and the subjects each may use.

The embedded server knows every node by the public half of its nkey; the seed
stays in `keys/<alias>.nk` (0600) and is read only by that node's process (nats-py
signs the server's nonce with it). Permissions are derived from roles, so a node's
credentials are useless for reading anyone else's inbox.

Inboxes are durable: one JetStream stream per network holds every inbox subject,
and each node reads its own through one durable consumer named after it. A node
may only inspect and acknowledge its own consumer (the JetStream API subjects
granted name the stream and the consumer).

The stream and the consumers belong to the operator: with the embedded server,
`hive up` creates them with one more system user, `_admin` (`keys/_admin.nk`),
allowed only to create, inspect and update that one stream and to create (or
bring back to their config) the nodes' consumers, each pinned by name *and*
filter subject. Nodes may create neither, so no one holding a node's
credentials can point its consumer elsewhere.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

import nkeys

from beehive.core.errors import TrustError
from beehive.security.key_files import ADMIN_USER, admin_nkey_path, nkey_path
from beehive.security.secret_file import SecretFileError, read_private, write_private

__all__ = [
    "ADMIN_USER",
    "NkeyError",
    "admin_nkey_path",
    "admin_permissions",
    "admin_reply_prefix",
    "deliver_subject",
    "ensure_admin_nkey",
    "ensure_nkey",
    "inbox_subject",
    "load_nkey_public",
    "nkey_path",
    "permissions",
    "reply_prefix",
    "stream_name",
]


class NkeyError(TrustError):
    """An nkey seed file is unusable; the message names the file and the fix."""


def inbox_subject(network: str, alias: str) -> str:
    """The one subject a node reads; every message on it is a sealed envelope."""
    return f"beehive.{network}.inbox.{alias}"


def stream_name(network: str) -> str:
    """The network's JetStream stream (stream names may not contain '.')."""
    return f"BEEHIVE_{network}"


def reply_prefix(network: str, alias: str) -> str:
    """A node's own reply subjects (JetStream API answers, publish acks)."""
    return f"_INBOX.{network}.{alias}"


def deliver_subject(network: str, alias: str) -> str:
    """Where the server pushes a node's durable consumer: under its own reply prefix."""
    return f"{reply_prefix(network, alias)}.js"


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
    return _ensure_seed(nkey_path(keys_dir, alias))


def ensure_admin_nkey(keys_dir: Path) -> str:
    """Load `keys/_admin.nk` or generate it once; return the public user key."""
    return _ensure_seed(admin_nkey_path(keys_dir))


def _ensure_seed(path: Path) -> str:
    if not (path.exists() or path.is_symlink()):
        seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
        write_private(path, bytes(seed) + b"\n")
    return load_nkey_public(path)


def admin_reply_prefix(network: str) -> str:
    """The admin user's reply subjects (no alias starts with '_': no node's prefix)."""
    return f"_INBOX.{network}.{ADMIN_USER}"


def admin_permissions(network: str, aliases: Iterable[str]) -> dict[str, list[str]]:
    """Exactly what creating, inspecting and updating the network's stream needs,
    and creating each of `aliases`' consumers, named after it and filtered on its
    own inbox: no inbox, no message, no other consumer or stream, no delete."""
    stream, replies = stream_name(network), admin_reply_prefix(network)
    return {
        "publish": [
            f"$JS.API.STREAM.CREATE.{stream}",
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.STREAM.UPDATE.{stream}",
            *(_consumer_create(network, alias) for alias in sorted(aliases)),
            f"{replies}.>",
        ],
        "subscribe": [f"{replies}.>"],
    }


def _consumer_create(network: str, alias: str) -> str:
    """Creating `alias`'s consumer: the API subject names it *and* its filter."""
    return f"$JS.API.CONSUMER.CREATE.{stream_name(network)}.{alias}.{inbox_subject(network, alias)}"


def permissions(
    network: str, alias: str, roles: Mapping[str, str], *, create_consumer: bool = False
) -> dict[str, list[str]]:
    """What `alias` may publish and subscribe to, from the protocol's needs only.

    A node reads only its own inbox. Heavy nodes talk to everyone (tasks to
    targets, sums to any proposer); a light node only ever talks to aggregators
    (specs, shares, declines), so it may publish only to heavy nodes' inboxes.
    JetStream: nothing on the stream itself nor on creating consumers (the admin
    user creates both, see docs/security.md); only inspect the consumer named
    after itself, acknowledge only that consumer's messages, and receive replies
    only under its own `_INBOX` prefix. `create_consumer` adds creating its own
    consumer (name and filter pinned): what a node needs on an external server,
    where it creates its consumer itself.
    """
    if roles[alias] == "heavy":
        peers = sorted(roles)
    else:
        peers = sorted(a for a, role in roles.items() if role == "heavy")
    stream, own = stream_name(network), inbox_subject(network, alias)
    return {
        "publish": [
            *(inbox_subject(network, peer) for peer in peers),
            *([_consumer_create(network, alias)] if create_consumer else []),
            f"$JS.API.CONSUMER.INFO.{stream}.{alias}",
            f"$JS.ACK.{stream}.{alias}.>",
        ],
        "subscribe": [own, f"{reply_prefix(network, alias)}.>"],
    }

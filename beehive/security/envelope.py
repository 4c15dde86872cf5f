"""Sealed envelopes: every message between nodes is one.

wire = msgpack [body, signature]
body = msgpack [version, network, msg_type, sender, recipient, comp_id, msg_id,
                timestamp, ciphertext]

The payload is HPKE-sealed to the recipient (only it can read a share), and the
whole body is signed by the sender (anyone on the path can be told apart from the
sender, and the clear-text routing fields cannot be edited). The routing fields
are also bound into the HPKE `info`, so even a ciphertext lifted into a new,
validly signed envelope by another member decrypts only in its original context.

`Opener.open` checks the cheapest, least trusting things first (size before
parsing, signature before any state changes) so hostile bytes cost little and
cannot pollute the replay window.
"""

from __future__ import annotations

import collections
import math
import secrets
import struct
import time
from dataclasses import dataclass

import msgpack
from cryptography.hazmat.primitives import hpke

from beehive.core.errors import BeehiveError
from beehive.security.directory import Directory
from beehive.security.identity import Identity, PublicIdentity
from beehive.security.replay import MemoryReplayWindow, ReplayWindow

__all__ = [
    "ENVELOPE_DOMAIN",
    "ENVELOPE_VERSION",
    "REASONS",
    "SPEC_DOMAIN",
    "Opened",
    "Opener",
    "Rejected",
    "seal",
    "sign_spec",
    "verify_spec",
]

ENVELOPE_VERSION = 1
ENVELOPE_DOMAIN = b"beehive/envelope/v1"
SPEC_DOMAIN = b"beehive/spec/v1"
HPKE_INFO_PREFIX = b"beehive/v1"
MSG_ID_LEN = 16

REASONS = (
    "malformed",
    "too_large",
    "unknown_sender",
    "bad_signature",
    "wrong_recipient",
    "stale",
    "replay",
    "decrypt_failed",
    # Counted by the node, after a message opened: a second, different share from
    # one sender for one computation, and any other breach of the round's rules
    # (wrong role, unknown round, bad payload shape).
    "equivocation",
    "protocol",
    # A re-sum the privacy rules forbid (not over the agreed common set, twice,
    # below the floor): how a proposer would difference single answers out.
    "resum_refused",
    # Counted by the node when NATS refused for good what handling a message sent
    # on (its permissions do not allow the subject, the recipient's inbox is full,
    # too large): the message is terminated, never redelivered.
    "denied",
)

# Routing strings are aliases, network names, message types and computation ids:
# short by nature. A tight cap stops a signed-but-silly envelope from carrying
# megabytes of clear text in its header.
_MAX_FIELD_STR = 1024

_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


class Rejected(BeehiveError):
    """An envelope was refused. `reason` is one of REASONS so callers can count and
    report by category without parsing messages."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Opened:
    sender: str
    recipient: str
    msg_type: str
    comp_id: str
    msg_id: bytes
    timestamp: float
    payload: bytes


def _hpke_info(
    network: str, msg_type: str, sender: str, recipient: str, comp_id: str, msg_id: bytes
) -> bytes:
    # Length-prefixed so ("ab", "c") and ("a", "bc") give different info.
    parts = [HPKE_INFO_PREFIX]
    for field in (network, msg_type, sender, recipient, comp_id):
        raw = field.encode("utf-8")
        parts.append(struct.pack(">I", len(raw)) + raw)
    parts.append(struct.pack(">I", len(msg_id)) + msg_id)
    return b"".join(parts)


def seal(
    sender: Identity,
    recipient: PublicIdentity,
    msg_type: str,
    comp_id: str,
    payload: bytes,
    *,
    network: str,
    now: float | None = None,
) -> bytes:
    """Encrypt `payload` to `recipient` and sign the result as `sender`.

    Inputs are checked here because a bad field would otherwise only surface as a
    `malformed` rejection on the far side, far from the bug.
    """
    for name, value in (("msg_type", msg_type), ("comp_id", comp_id), ("network", network)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be str")
        if len(value.encode("utf-8")) > _MAX_FIELD_STR:
            raise ValueError(f"{name} is longer than {_MAX_FIELD_STR} bytes")
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TypeError("payload must be bytes")
    timestamp = float(time.time() if now is None else now)
    if not math.isfinite(timestamp):
        raise ValueError("timestamp must be finite")
    msg_id = secrets.token_bytes(MSG_ID_LEN)
    info = _hpke_info(network, msg_type, sender.alias, recipient.alias, comp_id, msg_id)
    ciphertext = _SUITE.encrypt(bytes(payload), recipient.x25519_public, info=info)
    body = msgpack.packb(
        [
            ENVELOPE_VERSION,
            network,
            msg_type,
            sender.alias,
            recipient.alias,
            comp_id,
            msg_id,
            timestamp,
            ciphertext,
        ],
        use_bin_type=True,
    )
    signature = sender.sign(ENVELOPE_DOMAIN, body)
    return msgpack.packb([body, signature], use_bin_type=True)


def _unpack(data: bytes, max_len: int) -> object:
    # Limits bound the work and memory an attacker can make us spend; maps and
    # extension types never occur in an envelope, so they are refused outright.
    return msgpack.unpackb(
        data,
        raw=False,
        use_list=True,
        strict_map_key=True,
        max_bin_len=max_len,
        max_str_len=_MAX_FIELD_STR,
        max_array_len=16,
        max_map_len=0,
        max_ext_len=0,
    )


class Opener:
    """Verifies and decrypts envelopes addressed to one node.

    Holds the replay window, so one Opener per node, used from one thread (the
    node's event loop); it is not locked.
    """

    def __init__(
        self,
        me: Identity,
        directory: Directory,
        *,
        max_size: int = 256 * 1024,
        max_skew: float = 60.0,
        replay_ttl: float = 3600.0,
        replay_window: ReplayWindow | None = None,
    ) -> None:
        if max_size < 1 or max_skew < 0 or replay_ttl < 0:
            raise ValueError("max_size must be >= 1, max_skew and replay_ttl >= 0")
        self.me = me
        self.max_size = max_size
        self.max_skew = float(max_skew)
        self.replay_ttl = float(replay_ttl)
        self.rejected: collections.Counter[str] = collections.Counter()
        self._window: ReplayWindow = (
            replay_window if replay_window is not None else MemoryReplayWindow()
        )
        self.directory = directory

    @property
    def directory(self) -> Directory:
        return self._directory

    @directory.setter
    def directory(self, directory: Directory) -> None:
        # If the pinned directory disagrees with our own key file, every sender
        # seals to a key we do not hold; fail loudly now instead of rejecting
        # every message as decrypt_failed later.
        if not isinstance(directory, Directory):
            raise TypeError("directory must be a Directory")
        pinned = directory.members.get(self.me.alias)
        if pinned is not None and pinned != self.me.public():
            raise ValueError(
                f"the directory pins different keys for {self.me.alias!r} than its key file"
            )
        self._directory = directory

    def open(self, wire: bytes, *, now: float | None = None, redelivered: bool = False) -> Opened:
        """Return the verified, decrypted message or raise Rejected (and count it).

        Every failure, including ones we did not foresee, leaves as Rejected:
        a network-facing parser that can crash is a denial-of-service lever.

        `now` is the time the message is judged at: a node reading a durable
        stream passes the time the server stored it, so a node that was down
        longer than `max_skew` still opens what was sent to it in time.
        `redelivered=True` (the stream delivers the *same* stored message again
        because its acknowledgement never arrived, e.g. the node crashed while
        handling it) skips only the replay check: its id may already be recorded.
        Only the transport can say so (a republished envelope is a new stream
        message), and every handler of the node is idempotent.
        """
        try:
            return self._open(wire, time.time() if now is None else now, redelivered)
        except Rejected as r:
            self.rejected[r.reason] += 1
            raise
        except Exception as e:  # the safety net promised above
            self.rejected["malformed"] += 1
            raise Rejected("malformed", f"unparseable envelope ({type(e).__name__})") from e

    def _open(self, wire: bytes, now: float, redelivered: bool) -> Opened:
        if not isinstance(wire, bytes | bytearray | memoryview):
            raise Rejected("malformed", "envelope is not bytes")
        if len(wire) > self.max_size:
            raise Rejected("too_large", f"{len(wire)} bytes > limit {self.max_size}")

        try:
            outer = _unpack(bytes(wire), self.max_size)
        except Exception as e:
            raise Rejected("malformed", f"outer layer: {type(e).__name__}") from None
        if not (
            type(outer) is list
            and len(outer) == 2
            and type(outer[0]) is bytes
            and type(outer[1]) is bytes
        ):
            raise Rejected("malformed", "outer layer is not [body, signature]")
        body, signature = outer

        try:
            fields = _unpack(body, self.max_size)
        except Exception as e:
            raise Rejected("malformed", f"body: {type(e).__name__}") from None
        if type(fields) is not list or len(fields) != 9:
            raise Rejected("malformed", "body is not a 9-field array")
        version, network, msg_type, sender, recipient, comp_id, msg_id, timestamp, ct = fields
        # `type(x) is int` on purpose: msgpack gives bool for true/false, and
        # bool is an int subclass.
        if type(version) is not int or version != ENVELOPE_VERSION:
            raise Rejected("malformed", f"unsupported envelope version {version!r}")
        if not all(type(f) is str for f in (network, msg_type, sender, recipient, comp_id)):
            raise Rejected("malformed", "routing fields must be strings")
        if type(msg_id) is not bytes or len(msg_id) != MSG_ID_LEN:
            raise Rejected("malformed", "msg_id must be 16 bytes")
        if type(timestamp) is not float or not math.isfinite(timestamp):
            raise Rejected("malformed", "timestamp must be a finite float")
        if type(ct) is not bytes:
            raise Rejected("malformed", "ciphertext must be bytes")

        directory = self._directory
        if sender not in directory:
            raise Rejected("unknown_sender", f"sender {sender!r} is not in the directory")
        if not directory[sender].verify(ENVELOPE_DOMAIN, body, signature):
            raise Rejected("bad_signature", f"signature does not match {sender!r}'s pinned key")

        if network != directory.network or recipient != self.me.alias:
            raise Rejected(
                "wrong_recipient",
                f"addressed to {recipient!r} on {network!r}, "
                f"this is {self.me.alias!r} on {directory.network!r}",
            )
        if not abs(now - timestamp) <= self.max_skew:
            raise Rejected(
                "stale", f"timestamp is {now - timestamp:+.1f}s off (limit {self.max_skew}s)"
            )

        # Keep the id at least as long as the timestamp check would still accept
        # the envelope, whatever replay_ttl says; otherwise a replay could slip in
        # after the id was forgotten but before the envelope went stale.
        expiry = max(now + self.replay_ttl, timestamp + self.max_skew)
        if not self._window.remember(sender, msg_id, expiry, now) and not redelivered:
            raise Rejected("replay", f"message {msg_id.hex()} from {sender!r} already seen")

        info = _hpke_info(network, msg_type, sender, recipient, comp_id, msg_id)
        try:
            payload = _SUITE.decrypt(ct, self.me.hpke_private_key, info=info)
        except Exception:
            raise Rejected("decrypt_failed", "HPKE open failed") from None

        return Opened(
            sender=sender,
            recipient=recipient,
            msg_type=msg_type,
            comp_id=comp_id,
            msg_id=msg_id,
            timestamp=timestamp,
            payload=payload,
        )

    def count(self, reason: str) -> None:
        """Count a rejection decided after opening (equivocation, protocol), so every
        refused message is in one tally."""
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        self.rejected[reason] += 1

    @property
    def remembered(self) -> int:
        """Message ids currently held in the replay window (for health output)."""
        return len(self._window)


def sign_spec(identity: Identity, spec_json: bytes) -> bytes:
    """Sign a computation spec under its own domain, so an envelope signature can
    never pass as a spec signature or the other way round."""
    return identity.sign(SPEC_DOMAIN, spec_json)


def verify_spec(directory: Directory, proposer: str, spec_json: bytes, signature: bytes) -> bool:
    """True only if `proposer` is pinned in the directory and signed exactly these bytes."""
    if not isinstance(proposer, str) or proposer not in directory:
        return False
    return directory[proposer].verify(SPEC_DOMAIN, spec_json, signature)

"""Payloads carried inside sealed envelopes, one small msgpack map per message type.

The envelope already authenticates sender, recipient, type and comp_id; these
payloads only carry what is specific to each step of a round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from beehive.core.errors import BeehiveError

SPEC = "spec"  # proposer → aggregator: the signed computation
TASK = "task"  # coordinating aggregator → target: the signed computation
SHARE = "share"  # target → aggregator: one share (+ the signed spec, so order never matters)
DECLINE = "decline"  # target → aggregator: no answer this round, and why
SUM = "sum"  # aggregator → proposer: a sum, the exact contributor set, its signature of that set
RESUM = "resum"  # proposer → aggregator: sum again over the common set (+ the others' reports)
REFUSE = "refuse"  # aggregator → proposer: no sum released (privacy policy), and why


class BadPayload(BeehiveError, ValueError):
    """A payload that authenticated but does not have the shape its type requires."""


@dataclass(frozen=True)
class SignedSpec:
    """The proposer's computation exactly as signed; the bytes travel verbatim."""

    spec: bytes
    sig: bytes


def pack(**fields: Any) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


def unpack(payload: bytes) -> dict[str, Any]:
    try:
        data = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:
        raise BadPayload(f"undecodable payload: {exc}") from exc
    if not isinstance(data, dict):
        raise BadPayload("payload is not a map")
    return data


def signed_spec(data: dict[str, Any]) -> SignedSpec:
    spec, sig = data.get("spec"), data.get("sig")
    if not isinstance(spec, bytes) or not isinstance(sig, bytes):
        raise BadPayload("missing signed spec")
    return SignedSpec(spec, sig)


def field(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadPayload(f"field {name!r} must be {kind.__name__}")
    return value


def reports(data: dict[str, Any]) -> dict[str, tuple[list[str], bytes]]:
    """A re-sum's evidence: aggregator → (contributors of its report, its signature)."""
    value = field(data, "reports", dict)
    out: dict[str, tuple[list[str], bytes]] = {}
    for agg, entry in value.items():
        if not (
            isinstance(agg, str)
            and isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], list)
            and all(isinstance(n, str) for n in entry[0])
            and isinstance(entry[1], bytes)
        ):
            raise BadPayload("field 'reports' must map aggregators to [contributors, signature]")
        out[agg] = (entry[0], entry[1])
    return out


#: The longest "why missing" a SUM may carry for one target (`why_missing`).
_MAX_WHY = 100


def reasons(data: dict[str, Any], name: str) -> dict[str, str]:
    """An optional map alias → short reason (a SUM's `missing`); {} if absent."""
    value = data.get(name, {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) <= _MAX_WHY and v.isprintable()
        for k, v in value.items()
    ):
        raise BadPayload(f"field {name!r} must map aliases to short reasons")
    return value


def names(data: dict[str, Any], name: str) -> list[str]:
    value = field(data, name, list)
    if not all(isinstance(v, str) for v in value):
        raise BadPayload(f"field {name!r} must be a list of aliases")
    return value

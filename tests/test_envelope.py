"""Envelopes with real crypto: every way a message can be wrong maps to one reason."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beehive.security import (
    REASONS,
    Directory,
    Identity,
    Opened,
    Opener,
    Rejected,
    seal,
    sign_spec,
    verify_spec,
)
from beehive.security.envelope import ENVELOPE_DOMAIN

NET = "test"
NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def ids() -> dict[str, Identity]:
    return {a: Identity.generate(a) for a in ("alice", "bob", "carol")}


@pytest.fixture(scope="module")
def directory(ids: dict[str, Identity]) -> Directory:
    return Directory(NET, {a: i.public() for a, i in ids.items()})


@pytest.fixture
def bob(ids: dict[str, Identity], directory: Directory) -> Opener:
    return Opener(ids["bob"], directory)


def wire_to_bob(ids: dict[str, Identity], payload: bytes = b"share:123", **kw) -> bytes:
    kw.setdefault("now", NOW)
    kw.setdefault("network", NET)
    return seal(ids["alice"], ids["bob"].public(), "share", "comp-1", payload, **kw)


def reject(opener: Opener, wire: bytes, reason: str, now: float = NOW) -> Rejected:
    before = opener.rejected[reason]
    with pytest.raises(Rejected) as info:
        opener.open(wire, now=now)
    assert info.value.reason == reason, str(info.value)
    assert opener.rejected[reason] == before + 1
    return info.value


def resign(body_fields: list, signer: Identity) -> bytes:
    body = msgpack.packb(body_fields, use_bin_type=True)
    return msgpack.packb([body, signer.sign(ENVELOPE_DOMAIN, body)], use_bin_type=True)


def fields_of(wire: bytes) -> list:
    body, _ = msgpack.unpackb(wire)
    return msgpack.unpackb(body)


def test_round_trip(ids, bob: Opener) -> None:
    wire = wire_to_bob(ids, b"\x00" * 1000)
    opened = bob.open(wire, now=NOW + 5)
    assert isinstance(opened, Opened)
    assert opened.sender == "alice" and opened.recipient == "bob"
    assert opened.msg_type == "share" and opened.comp_id == "comp-1"
    assert opened.payload == b"\x00" * 1000
    assert opened.timestamp == NOW
    assert len(opened.msg_id) == 16
    assert sum(bob.rejected.values()) == 0
    assert b"\x00" * 64 not in wire  # the payload is not in the clear


def test_empty_payload_and_default_clock(ids, bob: Opener) -> None:
    wire = seal(ids["alice"], ids["bob"].public(), "ping", "", b"", network=NET)
    assert bob.open(wire).payload == b""


def test_message_ids_are_unique(ids) -> None:
    ids_seen = {fields_of(wire_to_bob(ids))[6] for _ in range(50)}
    assert len(ids_seen) == 50


def test_tampered_ciphertext_is_bad_signature(ids, bob: Opener) -> None:
    wire = wire_to_bob(ids)
    _body, sig = msgpack.unpackb(wire)
    ciphertext = fields_of(wire)[8]
    # the wire ends with body (ending in the ciphertext), then bin8 header + 64-byte signature
    pos = len(wire) - len(sig) - 2 - 1
    assert wire[pos] == ciphertext[-1]
    bad = bytearray(wire)
    bad[pos] ^= 0x01
    reject(bob, bytes(bad), "bad_signature")


def test_every_flipped_bit_is_rejected(ids, bob: Opener) -> None:
    wire = wire_to_bob(ids)
    for i in range(0, len(wire), 3):
        bad = bytearray(wire)
        bad[i] ^= 0x40
        with pytest.raises(Rejected):
            bob.open(bytes(bad), now=NOW)


def test_envelope_for_bob_delivered_to_carol(ids, directory: Directory) -> None:
    carol = Opener(ids["carol"], directory)
    reject(carol, wire_to_bob(ids), "wrong_recipient")


def test_wrong_network(ids, bob: Opener) -> None:
    reject(bob, wire_to_bob(ids, network="other-net"), "wrong_recipient")


def test_unknown_sender(ids, bob: Opener) -> None:
    mallory = Identity.generate("mallory")
    wire = seal(mallory, ids["bob"].public(), "share", "c", b"x", network=NET, now=NOW)
    reject(bob, wire, "unknown_sender")


def test_known_alias_signed_with_other_key(ids, bob: Opener) -> None:
    impostor = Identity.generate("alice")  # claims alice, holds a different key
    wire = seal(impostor, ids["bob"].public(), "share", "c", b"x", network=NET, now=NOW)
    reject(bob, wire, "bad_signature")


def test_member_cannot_speak_as_another(ids, bob: Opener) -> None:
    # carol (a member) relabels her own envelope as alice's: the signature gives her away.
    fields = fields_of(wire_to_bob(ids))
    fields[3] = "carol"
    reject(bob, resign(fields, ids["alice"]), "bad_signature")
    fields[3] = "alice"
    reject(bob, resign(fields, ids["carol"]), "bad_signature")


def test_ciphertext_lifted_into_new_context_fails_to_decrypt(ids, bob: Opener) -> None:
    # carol takes alice's ciphertext and re-sends it as her own, validly signed:
    # HPKE info binds the sender, so bob cannot be fooled about who said it.
    fields = fields_of(wire_to_bob(ids))
    fields[3] = "carol"
    reject(bob, resign(fields, ids["carol"]), "decrypt_failed")
    # same for a changed computation id
    fields = fields_of(wire_to_bob(ids))
    fields[5] = "comp-2"
    reject(bob, resign(fields, ids["alice"]), "decrypt_failed")


def test_replay(ids, bob: Opener) -> None:
    wire = wire_to_bob(ids)
    bob.open(wire, now=NOW)
    reject(bob, wire, "replay", now=NOW + 1)
    assert bob.rejected["replay"] == 1


def test_a_redelivery_passes_the_replay_check_and_nothing_else(ids, bob: Opener) -> None:
    """The stream delivering the same stored message again (its ack was lost) may
    carry an id already recorded; only that check is skipped."""
    wire = wire_to_bob(ids)
    bob.open(wire, now=NOW)
    assert bob.open(wire, now=NOW + 1, redelivered=True).payload == b"share:123"
    with pytest.raises(Rejected, match="stale"):  # judged at the stream's receipt time
        bob.open(wire, now=NOW + 61, redelivered=True)
    body, _sig = msgpack.unpackb(wire)
    with pytest.raises(Rejected, match="bad_signature"):
        bob.open(msgpack.packb([body, bytes(64)]), now=NOW, redelivered=True)
    with pytest.raises(Rejected, match="replay"):  # a republished copy is no redelivery
        bob.open(wire, now=NOW + 2)


def test_replay_window_prunes_but_never_before_stale(ids, directory: Directory) -> None:
    opener = Opener(ids["bob"], directory, max_skew=60, replay_ttl=10)
    wire = wire_to_bob(ids)
    opener.open(wire, now=NOW)
    # past replay_ttl but still within the skew: the id must still be remembered
    reject(opener, wire, "replay", now=NOW + 30)
    # once stale, a replay is stopped by the timestamp check and the id can go
    reject(opener, wire, "stale", now=NOW + 61)
    opener.open(wire_to_bob(ids, now=NOW + 100), now=NOW + 100)
    assert opener.remembered == 1


def test_rejected_before_signature_is_not_remembered(ids, bob: Opener) -> None:
    wire = wire_to_bob(ids)
    body, _sig = msgpack.unpackb(wire)
    forged = msgpack.packb([body, bytes(64)])
    reject(bob, forged, "bad_signature")
    assert bob.open(wire, now=NOW).payload == b"share:123"


def test_stale(ids, bob: Opener) -> None:
    reject(bob, wire_to_bob(ids, now=NOW - 61), "stale")
    reject(bob, wire_to_bob(ids, now=NOW + 61), "stale")
    bob.open(wire_to_bob(ids, now=NOW - 59), now=NOW)


def test_too_large(ids, directory: Directory) -> None:
    opener = Opener(ids["bob"], directory, max_size=1024)
    reject(opener, wire_to_bob(ids, b"x" * 2000), "too_large")
    reject(opener, b"\x00" * 1025, "too_large")  # size is checked before parsing


def test_truncated_and_random_bytes(ids, bob: Opener) -> None:
    wire = wire_to_bob(ids)
    for cut in (0, 1, 5, len(wire) // 2, len(wire) - 1):
        reject(bob, wire[:cut], "malformed")
    reject(bob, b"\x93\x01\x02\x03", "malformed")
    reject(bob, wire + b"\x00", "malformed")  # trailing bytes
    reject(bob, "not bytes", "malformed")  # type: ignore[arg-type]


def test_well_signed_but_wrong_shape(ids, bob: Opener) -> None:
    good = fields_of(wire_to_bob(ids))
    variants = [
        good[:8],
        [*good, 0],
        [2, *good[1:]],
        [True, *good[1:]],
        [*good[:6], b"short", *good[7:]],
        [*good[:7], int(NOW), good[8]],
        [*good[:7], float("nan"), good[8]],
        [*good[:8], "ciphertext as str"],
        [*good[:3], 7, *good[4:]],
    ]
    for fields in variants:
        reject(bob, resign(fields, ids["alice"]), "malformed")
    reject(bob, msgpack.packb([b"x"]), "malformed")
    reject(bob, msgpack.packb({"body": b"x"}), "malformed")
    reject(bob, msgpack.packb(["body", b"sig"]), "malformed")


def test_counter_counts_each_reason(ids, directory: Directory) -> None:
    opener = Opener(ids["bob"], directory, max_size=4096)
    wire = wire_to_bob(ids)
    opener.open(wire, now=NOW)
    fields = fields_of(wire_to_bob(ids))
    fields[3] = "carol"
    impostor = Identity.generate("alice")
    cases = {
        "malformed": b"\xc1",
        "too_large": b"\x00" * 5000,
        "unknown_sender": seal(
            Identity.generate("mallory"), ids["bob"].public(), "t", "c", b"", network=NET, now=NOW
        ),
        "bad_signature": seal(impostor, ids["bob"].public(), "t", "c", b"", network=NET, now=NOW),
        "wrong_recipient": seal(
            ids["alice"], ids["carol"].public(), "t", "c", b"", network=NET, now=NOW
        ),
        "stale": wire_to_bob(ids, now=NOW - 1000),
        "replay": wire,
        "decrypt_failed": resign(fields, ids["carol"]),
    }
    # the others are decided by the node after a message opened (or NATS refused
    # what it would have sent: denied)
    node_reasons = {"equivocation", "protocol", "resum_refused", "denied"}
    assert set(cases) == set(REASONS) - node_reasons
    for reason, bad in cases.items():
        reject(opener, bad, reason)
    assert dict(opener.rejected) == dict.fromkeys(cases, 1)


def test_directory_must_agree_with_own_key(ids, directory: Directory) -> None:
    stranger_bob = Identity.generate("bob")
    with pytest.raises(ValueError, match="different keys"):
        Opener(stranger_bob, directory)
    opener = Opener(ids["bob"], directory)
    # reload: a new directory without alice makes alice unknown from then on
    opener.directory = Directory(NET, {"bob": ids["bob"].public()})
    reject(opener, wire_to_bob(ids), "unknown_sender")


def test_rejected_requires_known_reason() -> None:
    with pytest.raises(ValueError):
        Rejected("because", "no")
    r = Rejected("stale", "too old")
    assert r.reason == "stale" and r.message == "too old" and "stale" in str(r)


def test_spec_signature(ids, directory: Directory) -> None:
    spec = b'{"query": "how many?", "targets": ["bob"]}'
    sig = sign_spec(ids["alice"], spec)
    assert verify_spec(directory, "alice", spec, sig)
    assert not verify_spec(directory, "carol", spec, sig)
    assert not verify_spec(directory, "mallory", spec, sig)
    assert not verify_spec(directory, "alice", spec + b" ", sig)
    assert not verify_spec(directory, "alice", spec, sig[:10])
    # an envelope signature over the same bytes is not a spec signature
    assert not verify_spec(directory, "alice", spec, ids["alice"].sign(ENVELOPE_DOMAIN, spec))


# Thousands of cases on every run (a few seconds): the decoder faces the network.
@settings(max_examples=3000, deadline=None)
@given(data=st.binary(max_size=2048))
def test_random_bytes_only_raise_rejected(ids, directory: Directory, data: bytes) -> None:
    opener = Opener(ids["bob"], directory, max_size=1024)
    try:
        opener.open(data, now=NOW)
    except Rejected as r:
        assert r.reason in REASONS
    else:  # pragma: no cover - random bytes forming a valid envelope
        pytest.fail("random bytes opened")


@settings(max_examples=2000, deadline=None)
@given(
    items=st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.text(max_size=8),
            st.integers(-(2**63), 2**64 - 1),
            st.floats(),
        ),
        max_size=12,
    )
)
def test_structured_garbage_only_raises_rejected(ids, directory: Directory, items) -> None:
    opener = Opener(ids["bob"], directory)
    body = msgpack.packb(items)
    for wire in (msgpack.packb(items), msgpack.packb([body, b"\x00" * 64])):
        with pytest.raises(Rejected):
            opener.open(wire, now=NOW)

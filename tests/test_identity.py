"""Key files and the pinned directory: private keys stay private, bad files fail clearly."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from beehive.security import (
    Directory,
    DirectoryError,
    Identity,
    IdentityError,
    PublicIdentity,
    ensure_identity,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_save_load_round_trip(tmp_path: Path) -> None:
    ident = Identity.generate("alice")
    path = tmp_path / "keys" / "alice.key"
    ident.save(path)
    loaded = Identity.load(path)
    assert loaded.alias == "alice"
    assert loaded.public() == ident.public()
    sig = loaded.sign(b"test", b"data")
    assert ident.public().verify(b"test", b"data", sig)


def test_file_is_0600_and_dir_0700(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "state" / "keys" / "bob.key"
        Identity.generate("bob").save(path)
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["bob.key"]  # no temp left behind
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and doc["alias"] == "bob"
    assert len(base64.b64decode(doc["signing_key"])) == 32
    assert len(base64.b64decode(doc["hpke_key"])) == 32


def test_save_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    Identity.generate("a").save(path)
    second = Identity.generate("a")
    second.save(path)
    assert Identity.load(path).public() == second.public()
    assert mode(path) == 0o600


def test_load_refuses_group_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    Identity.generate("alice").save(path)
    path.chmod(0o644)
    with pytest.raises(IdentityError, match=r"0644.*0600.*chmod 600"):
        Identity.load(path)
    path.chmod(0o400)  # stricter than 0600 is fine
    assert Identity.load(path).alias == "alice"


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="does not exist"):
        Identity.load(tmp_path / "nope.key")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b'{"version": 1}',
        b'{"version": 2, "alias": "a", "signing_key": "", "hpke_key": ""}',
        b'{"version": 1, "alias": "a", "signing_key": "!!", "hpke_key": "AAAA"}',
        b'{"version": 1, "alias": "a", "signing_key": "AAAA", "hpke_key": "AAAA"}',
        b"\xff\xfe garbage",
    ],
)
def test_load_garbled_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "a.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(IdentityError, match="not a valid"):
        Identity.load(path)


def test_load_bad_alias_in_file(tmp_path: Path) -> None:
    path = tmp_path / "a.key"
    Identity.generate("a").save(path)
    doc = json.loads(path.read_text())
    doc["alias"] = "../etc"
    path.write_text(json.dumps(doc))
    with pytest.raises(IdentityError, match="alias"):
        Identity.load(path)


def test_repr_hides_private_keys() -> None:
    ident = Identity.generate("alice")
    text = repr(ident) + str(ident)
    assert "alice" in text
    assert "hidden" in text
    doc = json.loads(ident._to_json())
    assert doc["signing_key"] not in text and doc["hpke_key"] not in text


def test_ensure_identity_generates_once(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = ensure_identity(keys, "carol")
    again = ensure_identity(keys, "carol")
    assert first.public() == again.public()
    assert mode(keys / "carol.key") == 0o600
    # A file renamed by hand is caught rather than silently trusted under the new name.
    (keys / "carol.key").rename(keys / "dave.key")
    with pytest.raises(IdentityError, match="belongs to 'carol'"):
        ensure_identity(keys, "dave")


def test_ensure_identity_rejects_path_like_alias(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ensure_identity(tmp_path, "../escape")


def test_signature_domains_are_separated() -> None:
    ident = Identity.generate("alice")
    pub = ident.public()
    sig = ident.sign(b"domain-a", b"data")
    assert pub.verify(b"domain-a", b"data", sig)
    assert not pub.verify(b"domain-b", b"data", sig)
    assert not pub.verify(b"domain-a", b"data!", sig)
    assert not pub.verify(b"domain-a", b"data", sig[:-1])
    assert not Identity.generate("alice").public().verify(b"domain-a", b"data", sig)
    with pytest.raises(ValueError):
        ident.sign(b"bad\0domain", b"x")


def test_public_identity_validates_keys() -> None:
    with pytest.raises(ValueError):
        PublicIdentity("alice", b"\0" * 31, b"\0" * 32)
    with pytest.raises(ValueError):
        PublicIdentity("Alice", b"\0" * 32, b"\0" * 32)


def make_directory(*aliases: str, network: str = "test") -> tuple[Directory, dict[str, Identity]]:
    idents = {a: Identity.generate(a) for a in aliases}
    return Directory(network, {a: i.public() for a, i in idents.items()}), idents


def test_directory_mapping_behaviour() -> None:
    d, idents = make_directory("carol", "alice", "bob")
    assert d.network == "test"
    assert list(d) == ["alice", "bob", "carol"]
    assert len(d) == 3
    assert "bob" in d and "mallory" not in d
    assert d["bob"] == idents["bob"].public()
    with pytest.raises(KeyError):
        d["mallory"]


def test_directory_json_is_deterministic(tmp_path: Path) -> None:
    d, idents = make_directory("carol", "alice", "bob")
    # Same members inserted in a different order give byte-identical output.
    reordered = Directory("test", {a: idents[a].public() for a in ["bob", "carol", "alice"]})
    data = d.to_json()
    assert data == reordered.to_json()
    assert data.endswith(b"\n")
    assert Directory.from_json(data) == d
    assert Directory.from_json(data).to_json() == data
    path = tmp_path / "directory.json"
    path.write_bytes(data)
    assert Directory.load(path) == d


def test_directory_rejects_shared_keys() -> None:
    a = Identity.generate("alice").public()
    clone = PublicIdentity("bob", a.signing_key, Identity.generate("bob").public().hpke_key)
    with pytest.raises(DirectoryError, match="same signing key"):
        Directory("test", {"alice": a, "bob": clone})
    with pytest.raises(DirectoryError):
        Directory("test", {"bob": a})


def _good_doc() -> dict:
    d, _ = make_directory("alice", "bob")
    return json.loads(d.to_json())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda doc: b"",
        lambda doc: b"{",
        lambda doc: b"\xff\x00",
        lambda doc: b"[1, 2]",
        lambda doc: b'{"version": 1, "version": 1, "network": "t", "members": {}}',
        lambda doc: {**doc, "extra": 1},
        lambda doc: {**doc, "version": 2},
        lambda doc: {**doc, "version": True},
        lambda doc: {**doc, "network": ""},
        lambda doc: {**doc, "network": 5},
        lambda doc: {**doc, "members": []},
        lambda doc: {**doc, "members": {"alice": "x"}},
        lambda doc: {**doc, "members": {"Bad Alias": doc["members"]["alice"]}},
        lambda doc: {**doc, "members": {"alice": {"signing_key": "AAAA", "hpke_key": "AAAA"}}},
        lambda doc: {**doc, "members": {"alice": {"signing_key": 1, "hpke_key": "AAAA"}}},
        lambda doc: {**doc, "members": {"alice": {**doc["members"]["alice"], "x": 1}}},
        lambda doc: {**doc, "members": {"alice": {**doc["members"]["alice"], "hpke_key": "@@"}}},
    ],
)
def test_directory_from_json_rejects_garbage(mutate) -> None:
    out = mutate(_good_doc())
    data = out if isinstance(out, bytes) else json.dumps(out).encode()
    with pytest.raises(DirectoryError):
        Directory.from_json(data)


def test_directory_load_missing(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="cannot read"):
        Directory.load(tmp_path / "missing.json")

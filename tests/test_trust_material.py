"""Keys, certificates and the replay window `hive up` and the nodes rely on."""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from beehive.security import Directory, Identity, Opener, Rejected, seal
from beehive.security.directory import DirectoryError
from beehive.security.nats_auth import NkeyError, ensure_nkey, load_nkey_public, permissions
from beehive.security.operator import OperatorKey, load_signed_directory, verify_directory
from beehive.security.replay import SqliteReplayWindow
from beehive.security.tls_ca import client_context, ensure_tls


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_nkey_generated_once_private_and_stable(tmp_path: Path) -> None:
    public = ensure_nkey(tmp_path / "keys", "alice")
    assert public.startswith("U") and ensure_nkey(tmp_path / "keys", "alice") == public
    seed = tmp_path / "keys" / "alice.nk"
    assert mode(seed) == 0o600 and mode(tmp_path / "keys") == 0o700
    os.chmod(seed, 0o644)
    with pytest.raises(NkeyError, match="chmod 600"):
        load_nkey_public(seed)


def test_permissions_follow_roles() -> None:
    roles = {"a": "heavy", "b": "light", "c": "light"}
    jetstream = [  # b's own consumer only, to inspect (the operator creates it); never the stream
        "$JS.API.CONSUMER.INFO.BEEHIVE_n.b",
        "$JS.ACK.BEEHIVE_n.b.>",
    ]
    assert permissions("n", "b", roles) == {
        "publish": ["beehive.n.inbox.a", *jetstream],
        "subscribe": ["beehive.n.inbox.b", "_INBOX.n.b.>"],
    }
    external = permissions("n", "b", roles, create_consumer=True)["publish"]
    assert "$JS.API.CONSUMER.CREATE.BEEHIVE_n.b.beehive.n.inbox.b" in external  # own broker
    inboxes = [s for s in permissions("n", "a", roles)["publish"] if s.startswith("beehive.")]
    assert inboxes == [f"beehive.n.inbox.{x}" for x in "abc"]


def test_operator_signature_pins_exact_bytes(tmp_path: Path) -> None:
    key = OperatorKey.ensure(tmp_path)
    assert OperatorKey.ensure(tmp_path).public_b64 == key.public_b64  # generated once
    assert mode(tmp_path / "_operator.key") == 0o600
    ids = {a: Identity.generate(a) for a in ("alice", "bob")}
    data = Directory("t", {a: i.public() for a, i in ids.items()}).to_json()
    sig = key.sign_directory(data)
    assert sig == key.sign_directory(data)  # deterministic: `hive up` twice writes nothing
    assert verify_directory(key.public_b64, data, sig)
    assert not verify_directory(key.public_b64, data.replace(b"alice", b"alicf"), sig)
    (tmp_path / "d.json").write_bytes(data + b" ")
    (tmp_path / "d.sig").write_bytes(sig)
    with pytest.raises(DirectoryError, match="Refusing to start"):
        load_signed_directory(tmp_path / "d.json", tmp_path / "d.sig", key.public_b64)
    (tmp_path / "d.json").write_bytes(data)
    loaded = load_signed_directory(tmp_path / "d.json", tmp_path / "d.sig", key.public_b64)
    assert set(loaded) == {"alice", "bob"}
    # The same bytes, signature and key again (a pack's next node): the same
    # Directory, parsed once. Anything else is verified afresh, never served from it.
    assert load_signed_directory(tmp_path / "d.json", tmp_path / "d.sig", key.public_b64) is loaded
    other = OperatorKey.ensure(tmp_path / "other")
    with pytest.raises(DirectoryError, match="Refusing to start"):
        load_signed_directory(tmp_path / "d.json", tmp_path / "d.sig", other.public_b64)
    (tmp_path / "d.json").write_bytes(data.replace(b"alice", b"alicf"))
    with pytest.raises(DirectoryError, match="Refusing to start"):
        load_signed_directory(tmp_path / "d.json", tmp_path / "d.sig", key.public_b64)


def test_tls_ca_and_server_certificate(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path / "tls", "t", ["10.1.2.3"])
    assert mode(files.key_file) == 0o600 and mode(tmp_path / "tls" / "ca.key") == 0o600
    cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "10.1.2.3"}
    ctx = ssl.create_default_context(cafile=str(files.ca_file))  # loads as a trust anchor
    assert ctx.cert_store_stats()["x509_ca"] == 1
    assert ensure_tls(tmp_path / "tls", "t", ["10.1.2.3"]) == files  # nothing reissued
    assert ensure_tls(tmp_path / "tls", "t", ["10.9.9.9"]).cert_sha256 != files.cert_sha256


def test_the_hive_certificate_passes_a_strict_tls_handshake(tmp_path: Path) -> None:
    """A real handshake with X509_STRICT (Python 3.13's default, forced here on
    every version): a chain without key identifiers would fail exactly here."""
    import asyncio

    files = ensure_tls(tmp_path / "tls", "t", [])
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(files.cert_file, files.key_file)

    async def handshake() -> bytes:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hello")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context(files.ca_file)
            )
            data = await reader.read()
            writer.close()
            return data
        finally:
            server.close()

    assert asyncio.run(handshake()) == b"hello"


def test_sqlite_replay_window_survives_a_new_connection(tmp_path: Path) -> None:
    ids = {a: Identity.generate(a) for a in ("alice", "bob")}
    directory = Directory("t", {a: i.public() for a, i in ids.items()})
    wire = seal(ids["alice"], ids["bob"].public(), "m", "c", b"x", network="t", now=1000.0)
    db = tmp_path / "local.db"
    Opener(ids["bob"], directory, replay_window=SqliteReplayWindow(db)).open(wire, now=1000.0)
    restarted = Opener(ids["bob"], directory, replay_window=SqliteReplayWindow(db))
    with pytest.raises(Rejected) as info:
        restarted.open(wire, now=1001.0)
    assert info.value.reason == "replay"
    window = SqliteReplayWindow(db)
    assert len(window) == 1
    assert window.remember("alice", b"i" * 16, 5.0, now=1.0)
    assert not window.remember("alice", b"i" * 16, 5.0, now=2.0)
    assert window.remember("alice", b"i" * 16, 50.0, now=6.0)  # expired ids are forgotten

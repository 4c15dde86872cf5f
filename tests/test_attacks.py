"""Tests an attacker would write, against a real hive (nats-server, supervisord, nodes).

The attacker here is strong: it holds a member's own credentials and keys (dave's,
read from the state folder), so it can reach a victim's inbox through NATS. Each
attack must be refused, counted under its reason (`hive status --json`), and must
not stop a round running at the same time from reaching the right total.

One hive for the whole module; the test that restarts a node runs last.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import nkeys
import pytest
from attacker import (
    NET,
    QUERY,
    connect_as,
    directory,
    finish,
    identity,
    port,
    rejected,
    wait_for,
)
from attacker import submit_in_background as submit
from helpers import HiveCLI, wait_until

from beehive.core.models import new_comp_id
from beehive.flower import messages as m
from beehive.flower.control import call
from beehive.security import Identity, Opener, seal
from beehive.security.envelope import ENVELOPE_DOMAIN
from beehive.security.nats_auth import inbox_subject
from beehive.security.nats_stream import stream_config

#: "2026-01-02 03:04:05,678 " (our processes) or "[pid] 2026/01/02 03:04:05.678901 " (nats)
LOG_PREFIX = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ |\[\d+\] \S+ \S+ )")


# ── helpers ──────────────────────────────────────────────────────────────────


def resign(wire: bytes, signer: Identity, edit: Callable[[list[Any]], None]) -> bytes:
    body, _sig = msgpack.unpackb(wire)
    fields = msgpack.unpackb(body)
    edit(fields)
    body = msgpack.packb(fields, use_bin_type=True)
    return msgpack.packb([body, signer.sign(ENVELOPE_DOMAIN, body)], use_bin_type=True)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def hive(shared_hive: HiveCLI) -> HiveCLI:
    return shared_hive


# ── a closed NATS ────────────────────────────────────────────────────────────


def test_nats_refuses_no_credentials_a_wrong_key_and_plain_text(hive: HiveCLI) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization"):
        run(connect_as(hive, None))

    wrong = tmp_seed(hive.state_dir.parent / "wrong.nk")
    with pytest.raises(Exception, match=r"(?i)authorization"):
        run(connect_as(hive, None, nkeys_seed=str(wrong), name="alice"))

    # Plain text: the server demands TLS before anything else is read.
    with socket.create_connection(("127.0.0.1", port(hive)), timeout=3) as raw:
        info = raw.recv(4096)
        assert b'"tls_required":true' in info
        raw.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        raw.settimeout(3)
        try:
            reply = raw.recv(4096)
        except (ConnectionResetError, TimeoutError):
            reply = b""
        assert b"PONG" not in reply

    # TLS to a server whose certificate our CA did not issue is refused by the node side.
    stranger = ssl.create_default_context()  # system CAs only
    with pytest.raises(Exception):  # noqa: B017 - any TLS failure will do
        run(connect_as(hive, "alice", tls=stranger))


def tmp_seed(path: Path) -> Path:
    path.write_bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
    return path


def test_node_credentials_cannot_read_another_inbox_nor_publish_elsewhere(hive: HiveCLI) -> None:
    async def attempt() -> list[str]:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await connect_as(hive, "dave", error_cb=on_error)
        try:
            await nc.subscribe(inbox_subject(NET, "bob"))  # another node's inbox
            await nc.subscribe("beehive.>")
            await nc.publish("beehive.test.other", b"x")  # outside any inbox
            await nc.publish(inbox_subject(NET, "eve"), b"x")  # light → light: never needed
            await nc.publish("_INBOX.anything", b"x")
            await nc.flush()
            await asyncio.sleep(0)  # let the error callbacks run
            await wait_for(lambda: len(errors) >= 5, "five permission violations")
        finally:
            await nc.close()
        return errors

    errors = run(attempt())
    assert all("permissions violation" in e.lower() for e in errors), errors
    joined = " ".join(errors)
    for subject in ("beehive.test.inbox.bob", "beehive.>", "beehive.test.other", "inbox.eve"):
        assert subject in joined


def test_node_credentials_cannot_touch_another_nodes_durable_inbox(hive: HiveCLI) -> None:
    """Inboxes are a JetStream stream: dave may only inspect and acknowledge his own
    consumer; he may create (or update, hence redirect) no consumer, not even his
    own (`hive up` creates them), and may neither read the stream directly, nor
    bind, inspect or acknowledge bob's consumer."""
    stream = "BEEHIVE_test"
    denied_publish = [
        f"$JS.API.CONSUMER.CREATE.{stream}.dave.beehive.test.inbox.dave",  # his own
        f"$JS.API.CONSUMER.CREATE.{stream}.bob.beehive.test.inbox.bob",  # bob's consumer
        f"$JS.API.CONSUMER.CREATE.{stream}.dave.beehive.test.inbox.bob",  # bob's inbox
        f"$JS.API.CONSUMER.CREATE.{stream}.dave",  # unfiltered: every inbox
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.bob",  # the legacy form
        f"$JS.API.CONSUMER.INFO.{stream}.bob",
        f"$JS.API.CONSUMER.DELETE.{stream}.bob",
        f"$JS.API.STREAM.MSG.GET.{stream}",  # read a stored message directly
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.STREAM.DELETE.{stream}",
        f"$JS.ACK.{stream}.bob.1.1.1.1.0",  # ack (lose) bob's message
    ]
    denied_subscribe = ["_INBOX.test.bob.js", "_INBOX.test.bob.>", "$JS.>"]

    run(violations(hive, "dave", denied_subscribe, denied_publish))
    assert hive.json("status", "--json")["nodes"]["bob"]["subscribed"] is True


async def violations(
    hive: HiveCLI, alias: str, subscribe: list[str], publish: list[str], **kw: Any
) -> str:
    """Subscribe and publish as `alias`; every attempt must be a permission
    violation. Returns the (lower-cased) errors, joined."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await connect_as(hive, alias, error_cb=on_error, **kw)
    try:
        for subject in subscribe:
            await nc.subscribe(subject)
        for subject in publish:
            await nc.publish(subject, b"{}")
        await nc.flush()
        total = len(subscribe) + len(publish)
        await wait_for(lambda: len(errors) >= total, f"{total} permission violations")
    finally:
        await nc.close()
    assert all("permissions violation" in e.lower() for e in errors), errors
    joined = " ".join(errors).lower()  # nats-py reports subjects lower-cased
    for subject in subscribe + publish:
        assert subject.lower() in joined, subject
    return joined


def test_the_stream_is_the_operators_nodes_cannot_create_or_change_it(hive: HiveCLI) -> None:
    """`hive up` created the stream as `_admin`: a member that starts first can no
    longer create it with a weaker config, nor weaken it later (docs/security.md)."""
    stream = "BEEHIVE_test"
    run(
        violations(
            hive,
            "dave",
            [],
            [
                f"$JS.API.STREAM.CREATE.{stream}",
                f"$JS.API.STREAM.UPDATE.{stream}",
                f"$JS.API.STREAM.INFO.{stream}",
                "$JS.API.STREAM.CREATE.BEEHIVE_other",  # a stream over the same subjects
            ],
        )
    )

    async def as_admin() -> Any:
        nc = await connect_as(hive, "_admin", inbox_prefix="_INBOX.test._admin")
        try:
            return await nc.jetstream(timeout=3).stream_info(stream)
        finally:
            await nc.close()

    info = run(as_admin())
    assert info.config.storage == stream_config(NET).storage  # the operator's config
    assert info.config.max_age == stream_config(NET).max_age
    assert info.config.subjects == [inbox_subject(NET, "*")]


def test_the_admin_user_can_touch_nothing_but_the_stream(hive: HiveCLI) -> None:
    """keys/_admin.nk creates, inspects and updates the stream and creates each
    node's consumer (its name *and* its own inbox as filter), nothing else: no
    other consumer, no delete, no ack; it reads no inbox, no consumer's
    deliveries, and sends nothing to any node."""
    stream = "BEEHIVE_test"
    run(
        violations(
            hive,
            "_admin",
            [
                inbox_subject(NET, "bob"),
                "beehive.>",
                "_INBOX.test.bob.js",
                "_INBOX.>",
                "$JS.>",
            ],
            [
                inbox_subject(NET, "bob"),
                f"$JS.API.CONSUMER.CREATE.{stream}.bob.{inbox_subject(NET, 'alice')}",
                f"$JS.API.CONSUMER.CREATE.{stream}.bob",  # unfiltered: every inbox
                f"$JS.API.CONSUMER.CREATE.{stream}.mallory.{inbox_subject(NET, 'bob')}",
                f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.bob",
                f"$JS.API.CONSUMER.DELETE.{stream}.bob",
                f"$JS.API.CONSUMER.INFO.{stream}.bob",
                f"$JS.ACK.{stream}.bob.1.1.1.1.0",
                f"$JS.API.STREAM.MSG.GET.{stream}",
                f"$JS.API.STREAM.DELETE.{stream}",
                f"$JS.API.STREAM.PURGE.{stream}",
            ],
            inbox_prefix="_INBOX.test._admin",
        )
    )

    from beehive.security.nats_stream import consumer_config

    async def create_bobs_consumer() -> Any:  # what `hive up` does: allowed, idempotent
        nc = await connect_as(hive, "_admin", inbox_prefix="_INBOX.test._admin")
        try:
            return await nc.jetstream(timeout=3).add_consumer(stream, consumer_config(NET, "bob"))
        finally:
            await nc.close()

    assert run(create_bobs_consumer()).config.deliver_subject == "_INBOX.test.bob.js"
    assert stat.S_IMODE((hive.state_dir / "keys" / "_admin.nk").stat().st_mode) == 0o600


# ── envelopes ────────────────────────────────────────────────────────────────


def forged_envelopes(hive: HiveCLI) -> dict[str, list[bytes]]:
    """One or more envelopes per rejection reason, all sent to bob with dave's keys."""
    dave = identity(hive, "dave")
    members = directory(hive)
    bob, charlie = members["bob"], members["charlie"]
    now = time.time()

    def valid(comp_id: str | None = None, **kw: Any) -> bytes:
        kw.setdefault("now", now)
        payload = m.pack(sum=1, contributors=[])
        return seal(dave, bob, m.SUM, comp_id or new_comp_id(), payload, network=NET, **kw)

    def flip_signature(wire: bytes) -> bytes:
        body, sig = msgpack.unpackb(wire)
        return msgpack.packb([body, bytes([sig[0] ^ 1]) + sig[1:]], use_bin_type=True)

    def tamper_ciphertext(fields: list[Any]) -> None:
        ct = fields[8]
        fields[8] = ct[:-1] + bytes([ct[-1] ^ 1])

    replayed = valid()
    return {
        "bad_signature": [flip_signature(valid())],
        "unknown_sender": [seal(Identity.generate("mallory"), bob, m.SUM, "c", b"", network=NET)],
        "decrypt_failed": [resign(valid(), dave, tamper_ciphertext)],
        "wrong_recipient": [seal(dave, charlie, m.SUM, "c", b"", network=NET)],
        "stale": [valid(now=now - 3600)],
        "replay": [replayed, replayed],  # the first opens (then breaks a round rule)
        # a truncated body, noise, and a comp_id that is no computation id (a path, a
        # forged log line): refused at the node's edge before any role sees it
        "malformed": [valid()[:40], os.urandom(300), valid("../../x"), valid("a\nFORGED")],
        # over the node's envelope cap (256 KiB), under the stream's message limit
        "too_large": [b"\x92" + os.urandom(257 * 1024)],
        "protocol": [valid()],  # authenticated, but a sum for no round bob proposed
    }


def test_forged_envelopes_are_rejected_by_reason_while_a_round_completes(hive: HiveCLI) -> None:
    before = rejected(hive, "bob")
    envelopes = forged_envelopes(hive)
    round_ = submit(
        hive, "--proposer", "alice", "--aggregators", "alice,bob", "--targets", "charlie,dave,eve"
    )

    async def attack() -> None:
        nc = await connect_as(hive, "dave")
        try:
            for wires in envelopes.values():
                for wire in wires:
                    await nc.publish(inbox_subject(NET, "bob"), wire)
            await nc.flush()
        finally:
            await nc.close()

    run(attack())
    result = finish(round_)
    assert (result["status"], result["result"]) == ("complete", 75)

    def counted() -> dict[str, int] | None:
        now = rejected(hive, "bob")
        delta = {r: now.get(r, 0) - before.get(r, 0) for r in envelopes}
        return delta if all(delta[r] >= 1 for r in envelopes) else None

    delta = wait_until(counted, 10, "bob to count every kind of forged envelope")
    assert delta["malformed"] >= 4
    status = hive.json("status", "--json")
    assert status["healthy"] is True  # nothing stopped
    table = hive.run("status").stdout
    assert "replay" in table and "bad_signature" in table  # per reason, not just a total


def test_equivocating_share_excludes_its_sender_and_the_total_stays_right(hive: HiveCLI) -> None:
    """dave's keys send bob two different shares for one round: bob drops both and
    dave's answer; the round ends partial over the others with their exact total.
    (The exclusion rule itself is tested deterministically in test_rounds.py.)"""
    before = rejected(hive, "bob")
    dave = identity(hive, "dave")
    members = directory(hive)

    async def attack() -> dict[str, Any]:
        opener = Opener(dave, members)
        got_task: asyncio.Future[m.SignedSpec] = asyncio.get_running_loop().create_future()

        async def on_msg(msg: Any) -> None:
            try:
                env = opener.open(msg.data)
            except Exception:
                return
            if env.msg_type == m.TASK and not got_task.done():
                got_task.set_result(m.signed_spec(m.unpack(env.payload)))

        nc = await connect_as(hive, "dave")
        try:
            await nc.subscribe(inbox_subject(NET, "dave"), cb=on_msg)  # dave's own: allowed
            await nc.flush()
            proc = submit(
                hive,
                "--proposer",
                "alice",
                "--aggregators",
                "alice,bob",
                "--targets",
                "charlie,dave,eve",
            )
            signed = await asyncio.wait_for(got_task, 15)
            cid = json.loads(signed.spec)["comp_id"]
            for share in (1000, 2000):
                payload = m.pack(spec=signed.spec, sig=signed.sig, share=share)
                wire = seal(dave, members["bob"], m.SHARE, cid, payload, network=NET)
                await nc.publish(inbox_subject(NET, "bob"), wire)
            await nc.flush()
        finally:
            await nc.close()
        return await asyncio.to_thread(finish, proc)

    result = run(attack())
    bob_log = (hive.state_dir / "logs" / "node-bob.log").read_text()[-3000:]
    # Whatever the order of arrival, the total is exact over the contributors it
    # names. Normally the forged shares beat dave's real one: dave is excluded.
    # If bob had already reported with the real share, the forgeries come too late
    # to change anything (and are still counted).
    assert result["result"] == len(QUERY) * len(result["contributors"]), (result, bob_log)
    if result["status"] == "partial":
        assert (result["contributors"], result["missing"]) == (["charlie", "eve"], ["dave"])
    else:
        assert result["status"] == "complete", (result, bob_log)
    after = rejected(hive, "bob")
    assert after.get("equivocation", 0) > before.get("equivocation", 0)


# ── policy, hygiene, logs ────────────────────────────────────────────────────


def test_a_single_contributor_total_is_refused_under_the_default_policy(hive: HiveCLI) -> None:
    args = ("--proposer", "alice", "--aggregators", "alice,bob", "--targets", "dave")
    proc = hive.run("submit", QUERY, *args, "--deadline", "20", "--json", check=False)
    # The CLI refuses it before anything is sent …
    assert proc.returncode == 1 and not proc.stdout
    assert "1 target(s), but a total is released only over at least min_contributors 2" in (
        proc.stderr
    )
    # … and so do the aggregators, for a client that sends it anyway (straight to
    # the proposer's control socket, as any program of this machine's user can).
    sock = hive.state_dir / "run" / "alice.sock"
    request = {"op": "submit", "comp_id": new_comp_id(), "query": QUERY, "deadline": 20.0}
    request |= {"aggregators": ["alice", "bob"], "targets": ["dave"], "min_contributors": 2}
    comp_id = call(sock, request)["comp_id"]
    result = call(sock, {"op": "wait", "comp_id": comp_id}, timeout=40)["result"]
    assert (result["status"], result["result"]) == ("failed", None)
    stored = hive.json("results", comp_id, "--json")
    assert "min_contributors" in stored["reason"] and "refused" in stored["reason"]

    # Asking for less privacy than the participants' floor is refused before
    # anything is sent (and by the nodes themselves: test_f2_* below).
    weaker = hive.run(
        "submit", QUERY, *args, "--deadline", "20", "--min-contributors", "1", "--json",
        check=False,
    )  # fmt: skip
    assert weaker.returncode == 1 and not weaker.stdout
    assert "floor" in weaker.stderr and "min_contributors 1" in weaker.stderr


def test_state_folder_is_owner_only(hive: HiveCLI) -> None:
    state = hive.state_dir
    for path in [state, *state.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, f"{path} is {mode:04o}"
        elif path.is_socket():
            assert mode & 0o077 == 0, f"socket {path} is {mode:04o}"
    private = [
        *state.glob("keys/*"),
        state / "tls" / "ca.key",
        state / "tls" / "server.key",
        state / "run" / "supervisord.auth",  # supervisord's socket password
    ]
    assert len(private) >= 12  # 5 identities, 5 nkeys, the operator key, the password
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for alias in ("alice", "bob", "charlie", "dave", "eve"):
        sock = state / "run" / f"{alias}.sock"
        assert sock.is_socket() and stat.S_IMODE(sock.stat().st_mode) == 0o600


def test_logs_hold_no_answer_and_no_key_material(hive: HiveCLI) -> None:
    query = "z" * 97  # query_length answers 97 on every target; three give 291
    args = ("--proposer", "bob", "--aggregators", "alice,charlie", "--targets", "alice,dave,eve")
    result = hive.json("submit", query, *args, "--deadline", "20", "--json")
    assert result["result"] == 3 * 97

    secrets: list[str] = []
    for path in (hive.state_dir / "keys").glob("*.key"):
        doc = json.loads(path.read_text())
        secrets += [v for k, v in doc.items() if k != "version" and k != "alias"]
    secrets += [p.read_text().strip() for p in (hive.state_dir / "keys").glob("*.nk")]
    for pem in ("ca.key", "server.key"):
        lines = (hive.state_dir / "tls" / pem).read_text().splitlines()
        secrets += [line for line in lines if line and not line.startswith("-----")]
    auth = (hive.state_dir / "run" / "supervisord.auth").read_text()
    secrets += re.findall(r"^password=(.+)$", auth, re.MULTILINE)
    assert len(secrets) >= 16

    logs = {p.name: p.read_text(errors="replace") for p in (hive.state_dir / "logs").glob("*")}
    assert "node-alice.log" in logs and "nats.log" in logs
    for name, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"key material in {name}"
        for line in text.splitlines():
            message = LOG_PREFIX.sub("", line)  # timestamps hold digits of every kind
            for value in ("97", "291"):
                assert not re.search(rf"(?<![\w.]){value}(?![\w.])", message), (name, line)


# ── last: these restart or replace a node ────────────────────────────────────


def test_replay_window_survives_a_node_restart(hive: HiveCLI) -> None:
    from beehive.orchestrator import supervisor

    dave, bob = identity(hive, "dave"), directory(hive)["bob"]
    wire = seal(dave, bob, m.SUM, new_comp_id(), m.pack(sum=1, contributors=[]), network=NET)

    async def send() -> None:
        nc = await connect_as(hive, "dave")
        try:
            await nc.publish(inbox_subject(NET, "bob"), wire)
            await nc.flush()
        finally:
            await nc.close()

    before = rejected(hive, "bob").get("protocol", 0)
    run(send())
    wait_until(lambda: rejected(hive, "bob").get("protocol", 0) > before, 10, "bob to take it")

    rpc = supervisor.client(hive.state_dir)
    rpc.supervisor.stopProcess("node-bob", True)
    rpc.supervisor.startProcess("node-bob", True)
    wait_until(
        lambda: hive.json("status", "--json", check=False)["nodes"]["bob"].get("subscribed"),
        20,
        "bob to be back",
    )
    run(send())
    wait_until(lambda: rejected(hive, "bob").get("replay", 0) == 1, 10, "bob to refuse the replay")


def test_a_tampered_directory_stops_the_node_with_a_clear_error(
    hive: HiveCLI, tmp_path: Path
) -> None:
    cfg = json.loads((hive.state_dir / "nodes" / "eve.json").read_text())
    original = Path(cfg["directory_file"]).read_bytes()
    sig = Path(cfg["directory_sig_file"]).read_bytes()
    doc = json.loads(original)
    # The attacker swaps charlie's signing key for one it holds.
    doc["members"]["charlie"]["signing_key"] = doc["members"]["dave"]["signing_key"]
    cases = {
        "tampered": (json.dumps(doc).encode(), sig, cfg["operator_key"], "does not verify"),
        "unsigned": (original, None, cfg["operator_key"], "cannot read the directory signature"),
        "other operator": (original, sig, "A" * 43 + "=", "does not verify"),
    }
    for label, (directory_bytes, sig_bytes, operator, message) in cases.items():
        folder = tmp_path / label.replace(" ", "_")
        folder.mkdir()
        (folder / "directory.json").write_bytes(directory_bytes)
        if sig_bytes is not None:
            (folder / "directory.sig").write_bytes(sig_bytes)
        changed = dict(
            cfg,
            directory_file=str(folder / "directory.json"),
            directory_sig_file=str(folder / "directory.sig"),
            operator_key=operator,
            control_socket=str(folder / "eve.sock"),
            data_dir=str(folder / "data"),
        )
        (folder / "eve.json").write_text(json.dumps(changed))
        proc = subprocess.run(
            [sys.executable, "-m", "beehive.flower.node", "--config", str(folder / "eve.json")],
            capture_output=True,
            text=True,
            timeout=30,
            env=hive.env,
        )
        assert proc.returncode == 78, (label, proc.stderr)
        assert "refusing to start" in proc.stderr and message in proc.stderr, (label, proc.stderr)
        assert not (folder / "eve.sock").exists()

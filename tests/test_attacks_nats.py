"""NATS-level attacks and failures, against a real hive (issue 9: F4, F5, F6).

- F4: a publish NATS denies is a permanent failure, raised at once (PublishDenied),
  and the message whose handling met it is terminated, counted as "denied" and
  never redelivered; the node goes on serving.
- F5: the stream is bounded from the topology; a member flooding a stopped node's
  inbox fills that inbox only (refused once full, per inbox), while rounds between
  the other nodes complete with their exact totals.
- F6: consumers are the operator's: a stopped node's credentials can neither
  create nor update (redirect) its durable consumer.

The attacker holds a member's own credentials and keys, read from the state
folder. One hive for the module; every test that stops a node starts it again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import os
import time
from typing import Any

import nats
import pytest
from attacker import NET, QUERY, connect_as, finish, rejected, submit_in_background, wait_for
from helpers import HiveCLI, wait_until
from nats.js.api import ConsumerConfig, DiscardPolicy

from beehive.core.configs import NodeConfig
from beehive.flower.node import Node
from beehive.flower.transport import (
    BATCH_MIN_MESSAGES,
    PUBLISH_GIVE_UP,
    PUBLISH_TIMEOUT,
    Delivery,
    PublishDenied,
    Transport,
)
from beehive.orchestrator import supervisor
from beehive.security import Opener
from beehive.security.nats_auth import deliver_subject, inbox_subject, stream_name
from beehive.security.nats_stream import (
    MAX_ENVELOPE_BYTES,
    MAX_MSG_BYTES,
    consumer_config,
    inbox_messages,
    stream_config,
)

STREAM = stream_name(NET)
NODES = ("alice", "bob", "charlie", "dave", "eve")  # topologies/test.yaml


# ── helpers ──────────────────────────────────────────────────────────────────


def node_config(hive: HiveCLI, alias: str) -> NodeConfig:
    return NodeConfig.load(hive.state_dir / "nodes" / f"{alias}.json")


def status(hive: HiveCLI) -> dict[str, Any]:
    return hive.json("status", "--json", check=False)


def round_(hive: HiveCLI, *args: str, deadline: int = 20) -> dict[str, Any]:
    proc = hive.run("submit", QUERY, *args, "--deadline", str(deadline), "--json", check=False)
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def stop(hive: HiveCLI, alias: str) -> None:
    supervisor.client(hive.state_dir).supervisor.stopProcess(f"node-{alias}", True)


def start(hive: HiveCLI, alias: str) -> None:
    rpc = supervisor.client(hive.state_dir)
    if rpc.supervisor.getProcessInfo(f"node-{alias}")["statename"] != "RUNNING":
        rpc.supervisor.startProcess(f"node-{alias}", True)
    wait_until(lambda: status(hive)["nodes"][alias].get("subscribed"), 30, f"{alias} to be back")


async def admin_stream_info(hive: HiveCLI, subject: str | None = None) -> Any:
    """The stream's state as the operator sees it (the admin user may STREAM.INFO)."""
    nc = await connect_as(hive, "_admin")
    try:
        return await nc.jetstream(timeout=3).stream_info(STREAM, subjects_filter=subject)
    finally:
        await nc.close()


async def held(hive: HiveCLI, alias: str) -> int:
    """Messages held in `alias`'s inbox right now."""
    subject = inbox_subject(NET, alias)
    info = await admin_stream_info(hive, subject)
    return int((info.state.subjects or {}).get(subject, 0))


def stored(hive: HiveCLI, alias: str) -> int:
    return asyncio.run(held(hive, alias))


async def ack_all(delivery: Delivery) -> None:
    await delivery.ack()


@pytest.fixture(scope="module")
def hive(shared_hive: HiveCLI) -> HiveCLI:
    return shared_hive


# ── F5: the stream's limits come from the topology ──────────────────────────


def test_the_stream_is_bounded_from_the_topology(hive: HiveCLI) -> None:
    """The operator's stream refuses new messages per inbox once it holds its
    share, never discards stored ones, and holds nothing larger than an envelope
    a node would open."""
    # The stream's message cap follows the node's own envelope cap.
    opener_cap = inspect.signature(Opener).parameters["max_size"].default
    assert opener_cap == MAX_ENVELOPE_BYTES < MAX_MSG_BYTES

    config = asyncio.run(admin_stream_info(hive)).config
    want = stream_config(NET, nodes=len(NODES))
    assert config.discard == want.discard == DiscardPolicy.NEW
    assert config.discard_new_per_subject is True
    assert config.max_msgs_per_subject == inbox_messages(len(NODES)) == want.max_msgs_per_subject
    assert config.max_msg_size == MAX_MSG_BYTES
    # No byte cap reserved up front (a small disk could not hold the stream): the
    # inboxes a node may publish to, each capped in messages, bound it.
    assert config.max_bytes == want.max_bytes == -1
    # One round over every node cannot fill an inbox, however large the topology.
    assert inbox_messages(5) >= 2048 and inbox_messages(4000) > 4 * 4000
    # The node count matters: a topology too big for the default gets bigger inboxes.
    assert stream_config(NET, nodes=4000).max_msgs_per_subject > want.max_msgs_per_subject


# ── F4: a denied publish is permanent, at once ──────────────────────────────


def test_a_denied_publish_fails_at_once_and_its_message_is_terminated(hive: HiveCLI) -> None:
    """dave (light) may not reach eve (light): the transport raises PublishDenied
    in milliseconds instead of retrying for PUBLISH_GIVE_UP, and a node whose
    handling of a message meets it terminates that message (never redelivered),
    counts it as "denied" and handles the next one at once.

    Driven in-process with dave's real config and credentials (his supervised
    process stopped meanwhile, so the two never share his consumer)."""
    stop(hive, "dave")
    try:
        timings = asyncio.run(_denied_in_process(hive))
    finally:
        start(hive, "dave")
    assert timings["denied_after"] < 1.0 < PUBLISH_GIVE_UP, timings
    assert timings["next_after"] < 1.5, timings

    # The real dave serves the next round at once.
    result = round_(
        hive, "--proposer", "alice", "--aggregators", "alice,bob", "--targets", "dave,eve"
    )
    assert (result["status"], result["result"]) == ("complete", 50), result


async def _denied_in_process(hive: HiveCLI) -> dict[str, float]:
    node = Node(node_config(hive, "dave"))
    seen: dict[bytes, int] = {}
    handled_next = asyncio.Event()
    began: dict[str, float] = {}

    async def on_msg(delivery: Delivery) -> None:
        """Stands in for the node's own `_on_msg`: the first marker's handling
        sends on to an inbox dave may not publish to."""
        seen[delivery.data] = seen.get(delivery.data, 0) + 1
        if delivery.data == b"deny-me":
            began["deny"] = time.monotonic()
            await node.transport.publish("eve", b"not for a light node")
        elif delivery.data == b"next":
            began["next"] = time.monotonic()
            handled_next.set()

    node._on_msg = on_msg  # type: ignore[method-assign]
    try:
        await node.transport.start()
        t0 = time.monotonic()
        with pytest.raises(PublishDenied) as denied:
            await node.transport.publish("eve", b"x")
        denied_after = time.monotonic() - t0
        assert denied.value.cause == "not permitted" and denied.value.recipient == "eve"

        alice = await connect_as(hive, "alice")  # heavy: may write to dave's inbox
        try:
            js = alice.jetstream(timeout=3)
            await js.publish(inbox_subject(NET, "dave"), b"deny-me")
            await js.publish(inbox_subject(NET, "dave"), b"next")
        finally:
            await alice.close()
        await asyncio.wait_for(handled_next.wait(), 10)
        assert node.opener.rejected["denied"] == 1

        # Terminated: nothing of dave's is pending or due for redelivery, so the
        # stream will not hand "deny-me" over again (it would after ACK_WAIT).
        assert node.transport.js is not None
        js = node.transport.js

        async def settled() -> bool:
            info = await js.consumer_info(STREAM, "dave")
            return info.num_ack_pending == 0 and info.num_pending == 0

        end = time.monotonic() + 10
        while not await settled():
            assert time.monotonic() < end, "dave's consumer still holds a message"
            await asyncio.sleep(0.05)
        assert (seen[b"deny-me"], seen[b"next"]) == (1, 1)
        return {"denied_after": denied_after, "next_after": began["next"] - began["deny"]}
    finally:
        await node.transport.stop()
        node.store.close()


# ── F5: a bounded flood fills one stopped inbox, nothing else ───────────────


def test_a_flood_fills_only_the_stopped_nodes_inbox_while_rounds_complete(
    hive: HiveCLI,
) -> None:
    """With dave's credentials (light: he may write to heavy inboxes), flood the
    inbox of charlie (heavy, stopped) with ~1 KiB messages, more than an inbox's
    share: it takes exactly its share and refuses the rest as "inbox full", for
    good and at once; other inboxes still take messages and a round between the
    other nodes, run during the flood, completes with the exact total. An
    aggregator that must forward a task into the full inbox terminates that
    message ("denied") and its round still ends, partial, with the exact total.
    charlie, restarted, drains the junk and serves a round."""
    share = inbox_messages(len(NODES))
    flood = share + 256
    before_alice = rejected(hive, "alice")
    stop(hive, "charlie")
    stop(hive, "dave")
    try:
        held_before = stored(hive, "charlie")
        bytes_before = asyncio.run(admin_stream_info(hive)).state.bytes
        proc = submit_in_background(
            hive, "--proposer", "alice", "--aggregators", "alice,bob", "--targets", "bob,eve"
        )
        report = asyncio.run(_flood(hive, flood))
        during = finish(proc)
        held = stored(hive, "charlie")
        stream = asyncio.run(admin_stream_info(hive)).state

        assert (during["status"], during["result"]) == ("complete", 50), during
        assert report["stored"] == share - held_before, report
        assert report["refused"] == flood - report["stored"], report
        assert report["causes"] == {"inbox full"}, report
        assert held == share  # exactly its share, not one more
        assert report["other_inbox"] is True  # alice's inbox still takes messages
        assert report["seconds"] < 120

        # alice (first aggregator) must forward a task into charlie's full inbox.
        partial = round_(
            hive,
            "--proposer",
            "bob",
            "--aggregators",
            "alice,bob",
            "--targets",
            "alice,charlie,eve",
            deadline=8,
        )
        assert (partial["status"], partial["result"]) == ("partial", 50), partial
        assert partial["missing"] == ["charlie"], partial
        denied = rejected(hive, "alice").get("denied", 0) - before_alice.get("denied", 0)
        assert denied >= 1
        assert "denied" in hive.run("status", check=False).stdout  # per reason
        print(
            f"\nflood: {flood} messages of {report['size']} B to charlie's inbox in "
            f"{report['seconds']:.1f}s: {report['stored']} stored, {report['refused']} "
            f"refused (inbox full); inbox held {held} (share {share}); stream "
            f"{stream.messages} messages, {stream.bytes - bytes_before} B more than before; "
            f"round during the flood: {during['status']} {during['result']}; round into "
            f"the full inbox: {partial['status']} {partial['result']} missing {partial['missing']}"
        )
    finally:
        start(hive, "dave")
        start(hive, "charlie")
    wait_until(lambda: stored(hive, "charlie") == 0, 60, "charlie to drain its inbox")
    after = round_(
        hive, "--proposer", "alice", "--aggregators", "alice,charlie", "--targets", "dave,eve"
    )
    assert (after["status"], after["result"]) == ("complete", 50), after


async def _flood(hive: HiveCLI, count: int, size: int = 1024) -> dict[str, Any]:
    """`count` messages of `size` random bytes into charlie's inbox, through the
    node transport with dave's config and credentials, 32 at a time."""
    transport = Transport(node_config(hive, "dave"), ack_all)
    await transport.start()
    stored_ok, refused, causes = 0, 0, set()
    in_flight = asyncio.Semaphore(32)

    async def one() -> None:
        nonlocal stored_ok, refused
        async with in_flight:
            try:
                await transport.publish("charlie", os.urandom(size))
                stored_ok += 1
            except PublishDenied as exc:
                refused += 1
                causes.add(exc.cause)

    try:
        t0 = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), 120)
        seconds = time.monotonic() - t0
        # Refused for good and at once: one more, timed.
        t1 = time.monotonic()
        with pytest.raises(PublishDenied, match="inbox full"):
            await transport.publish("charlie", os.urandom(size))
        assert time.monotonic() - t1 < 1.0
        # Another inbox is unaffected (alice counts the junk as malformed).
        await transport.publish("alice", os.urandom(size))
        return {
            "stored": stored_ok,
            "refused": refused,
            "causes": causes,
            "seconds": seconds,
            "size": size,
            "other_inbox": True,
        }
    finally:
        await transport.stop()


# ── F6: consumers are the operator's ────────────────────────────────────────


def test_a_stopped_nodes_credentials_cannot_redirect_its_consumer(hive: HiveCLI) -> None:
    """With eve's process stopped, her credentials may not create or update her
    durable consumer: pointing its deliveries at dave's subject is refused (a
    permissions violation on CONSUMER.CREATE), the consumer keeps its config, and
    eve, restarted, serves a round."""
    stop(hive, "eve")
    try:
        errors, info = asyncio.run(_redirect_as_eve(hive))
    finally:
        start(hive, "eve")
    joined = " ".join(errors).lower()
    assert "permissions violation" in joined, errors
    own = f"$JS.API.CONSUMER.CREATE.{STREAM}.eve.{inbox_subject(NET, 'eve')}"
    assert own.lower() in joined, errors
    assert f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.eve".lower() in joined, errors
    assert info.config.deliver_subject == deliver_subject(NET, "eve")
    assert info.config.filter_subject == inbox_subject(NET, "eve")

    result = round_(
        hive, "--proposer", "alice", "--aggregators", "alice,bob", "--targets", "dave,eve"
    )
    assert (result["status"], result["result"]) == ("complete", 50), result


async def _redirect_as_eve(hive: HiveCLI) -> tuple[list[str], Any]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await connect_as(hive, "eve", error_cb=on_error)
    try:
        js = nc.jetstream(timeout=1)
        # Her own consumer, delivered to dave's subject: dave would get eve's mail.
        redirect = dataclasses.replace(
            consumer_config(NET, "eve"), deliver_subject=deliver_subject(NET, "dave")
        )
        with pytest.raises(nats.errors.TimeoutError):  # the server drops it: no answer
            await js.add_consumer(STREAM, redirect)
        # The legacy subject (no filter in it) is no way round.
        legacy = ConsumerConfig(
            durable_name="eve",
            deliver_subject=deliver_subject(NET, "dave"),
            filter_subject=inbox_subject(NET, "eve"),
        )
        await nc.publish(
            f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.eve",
            json.dumps({"stream_name": STREAM, "config": legacy.as_dict()}).encode(),
        )
        await nc.flush()
        await wait_for(lambda: len(errors) >= 2, "two permission violations")
        return errors, await js.consumer_info(STREAM, "eve")  # eve may still inspect it
    finally:
        await nc.close()


# ── a fan-out is one atomic batch; what the server refuses goes one by one ──


def test_a_fan_out_is_stored_as_a_batch_and_a_refused_one_message_by_message(
    hive: HiveCLI,
) -> None:
    """Through dave's transport (light: he may write to heavy inboxes, not to
    eve's), into stopped charlie's inbox, fan-outs of BATCH_MIN_MESSAGES: one is
    stored as one atomic batch (every message in it, once); one holding a message
    NATS denies (eve) is not stored as a batch, so each message goes again one by
    one: the allowed ones are stored once each and the denied one raises
    PublishDenied; one repeating a stored message is refused whole as a batch,
    its new messages then stored once and the repeated one not twice. A smaller
    fan-out is never batched."""
    stop(hive, "charlie")
    stop(hive, "dave")
    try:
        report = asyncio.run(_fan_outs(hive))
    finally:
        start(hive, "dave")
        start(hive, "charlie")
    n = BATCH_MIN_MESSAGES
    assert (report["whole_batched"], report["whole_stored"]) == (n, n), report
    assert report["denied_by"] == ("eve", "not permitted"), report
    assert report["denied_stored"] == n - 1, report  # the allowed ones, once each
    # The server answers the batch's commit with an error (a gap where the denied
    # message was): no waiting out PUBLISH_TIMEOUT before going one by one.
    assert report["denied_s"] < PUBLISH_TIMEOUT, report
    assert (report["repeated_batched"], report["repeated_stored"]) == (0, n - 1), report
    assert (report["small_batched"], report["small_stored"]) == (0, n - 1), report
    # charlie, restarted, drains the junk (not envelopes) and serves a round.
    wait_until(lambda: stored(hive, "charlie") == 0, 60, "charlie to drain its inbox")
    result = round_(
        hive, "--proposer", "alice", "--aggregators", "alice,charlie", "--targets", "dave,eve"
    )
    assert (result["status"], result["result"]) == ("complete", 50), result


async def _fan_outs(hive: HiveCLI) -> dict[str, Any]:
    transport = Transport(node_config(hive, "dave"), ack_all)
    await transport.start()
    report: dict[str, Any] = {}

    def junk(count: int) -> list[tuple[str, bytes]]:
        return [("charlie", os.urandom(64)) for _ in range(count)]

    async def fan_out(name: str, messages: list[tuple[str, bytes]]) -> None:
        before = await held(hive, "charlie")
        t0 = time.monotonic()
        try:
            report[f"{name}_batched"] = await transport.publish_all(messages)
        except PublishDenied as exc:
            report[f"{name}_by"] = (exc.recipient, exc.cause)
            report[f"{name}_s"] = time.monotonic() - t0
        report[f"{name}_stored"] = await held(hive, "charlie") - before

    try:
        n = BATCH_MIN_MESSAGES
        first = junk(n)
        await fan_out("whole", first)
        mixed = junk(n - 1)
        await fan_out("denied", [*mixed[:1], ("eve", os.urandom(64)), *mixed[1:]])
        await fan_out("repeated", [first[0], *junk(n - 1)])
        await fan_out("small", junk(n - 1))
        return report
    finally:
        await transport.stop()

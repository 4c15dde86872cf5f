"""The network's JetStream stream and each node's durable consumer: their one
config, and creating them idempotently.

Shared by whoever creates them: `hive up` (with the admin user, embedded server:
the stream, then every node's consumer) and a node's transport (external server
only: the stream and its own consumer). Kept out of `beehive.flower` so the
orchestrator does not import the node.

The stream is bounded, from the topology: an inbox holds at most
`inbox_messages(nodes)` messages of at most MAX_MSG_BYTES each, and the stream
`nodes` such inboxes. A full inbox refuses new messages for itself only
(`discard: new` per subject); nothing stored is ever discarded to make room.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from beehive.core.constants import MAX_DEADLINE_SECONDS, REPORT_GRACE_SECONDS
from beehive.security.nats_auth import deliver_subject, inbox_subject, stream_name

__all__ = [
    "ACK_WAIT_SECONDS",
    "DUPLICATE_WINDOW_SECONDS",
    "INBOX_MESSAGES",
    "MAX_ACK_PENDING",
    "MAX_ENVELOPE_BYTES",
    "MAX_MSG_BYTES",
    "consumer_config",
    "ensure_consumer",
    "ensure_stream",
    "inbox_messages",
    "stream_config",
]

#: A retried publish within this window is stored once (`Nats-Msg-Id`).
DUPLICATE_WINDOW_SECONDS = 120.0

#: The largest envelope a node opens (`Opener`'s `max_size`, beehive/security/envelope.py;
#: the protocol's specs are capped well below it, beehive/core/constants.py). The
#: stream refuses anything larger: no node would open it anyway.
MAX_ENVELOPE_BYTES = 256 * 1024
#: One stored message: an envelope plus its headers (`Nats-Msg-Id`, JetStream's own).
MAX_MSG_BYTES = MAX_ENVELOPE_BYTES + 4 * 1024
#: Messages one inbox may hold before it refuses more. One round puts at most
#: about 4 messages per node into any one inbox (a spec, tasks from the first and
#: failover aggregators, a share or decline per target, a sum, a refusal or a
#: re-sum per aggregator, a re-sum request), so 2048 is some 90 rounds' worth
#: for five nodes; a live node acknowledges as it goes, only a stopped one's
#: inbox fills. A flood stops here: 2048 × MAX_MSG_BYTES ≈ 520 MiB per inbox.
INBOX_MESSAGES = 2048
#: Messages per round and node, at most, in any one inbox (see INBOX_MESSAGES).
_ROUND_MESSAGES_PER_NODE = 4

#: Unacknowledged messages are redelivered after this long: how soon a restarted
#: node gets the message it was handling when it died.
ACK_WAIT_SECONDS = 3.0
#: Messages handed to a node before it acknowledges earlier ones. Bounded so that
#: a burst never leaves a message waiting in the client longer than ACK_WAIT.
MAX_ACK_PENDING = 256


def inbox_messages(nodes: int) -> int:
    """One inbox's share of the stream, in messages: INBOX_MESSAGES, or more for a
    topology so large that a single round over every node would reach it."""
    return max(INBOX_MESSAGES, _ROUND_MESSAGES_PER_NODE * max(nodes, 1) + 2)


def stream_config(network: str, nodes: int = 1, replicas: int = 1) -> StreamConfig:
    """Every `beehive.<network>.inbox.*` subject, on disk, kept until acknowledged
    (work queue) or for one round's longest life, bounded by the topology's
    `nodes` (every caller that creates or updates the stream passes it; the
    default, one inbox's share, is only for reading the config's other fields).

    Per inbox at most `inbox_messages(nodes)` messages of at most MAX_MSG_BYTES,
    and a node may publish only to the inboxes of the topology's nodes (its NATS
    permissions), so the stream holds at most `nodes` such inboxes. There is no
    `max_bytes` on top: nats-server reserves a stream's whole `max_bytes` against
    its store when the stream is created, which would refuse the stream on any
    disk with less free than that bound (2.7 GB for five nodes), and it would add
    no limit the per-inbox one does not already set. The server's own store limit
    (75 % of the disk by default) bounds everything besides.

    Full means `discard: new` with `discard_new_per_subject`: the publish is
    refused ("maximum messages per subject exceeded") for that inbox only, and no
    stored message is dropped to make room. `replicas`: the servers of a cluster
    each message is stored on before it is acknowledged.
    """
    per_inbox = inbox_messages(nodes)
    return StreamConfig(
        name=stream_name(network),
        subjects=[inbox_subject(network, "*")],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_msgs_per_subject=per_inbox,
        max_msg_size=MAX_MSG_BYTES,
        max_bytes=-1,  # none: see above
        max_age=MAX_DEADLINE_SECONDS + REPORT_GRACE_SECONDS,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        num_replicas=replicas,
        allow_atomic=True,  # a large fan-out goes as batches, one fsync each (transport.py)
    )


def consumer_config(network: str, alias: str) -> ConsumerConfig:
    """`alias`'s durable push consumer: named after it, its own inbox only,
    pushed to its own delivery subject, every message acknowledged explicitly."""
    return ConsumerConfig(
        name=alias,
        durable_name=alias,
        filter_subject=inbox_subject(network, alias),
        deliver_subject=deliver_subject(network, alias),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_SECONDS,
        max_deliver=-1,
        max_ack_pending=MAX_ACK_PENDING,
    )


async def ensure_stream(
    js: JetStreamContext, network: str, *, nodes: int, update: bool, replicas: int = 1
) -> str:
    """Create the stream with `stream_config`; "created" or "unchanged" (creating it
    again with the same config is a no-op). A stream that exists with another
    config is brought to this one when `update` ("updated"), else raises
    BadRequestError; so does an update the server refuses (e.g. another storage)."""
    config = stream_config(network, nodes, replicas)
    assert config.name is not None  # stream_config always names it
    try:
        before = await _exists(js, config.name)
        await js.add_stream(config)
        return "unchanged" if before else "created"
    except BadRequestError:
        if not update:
            raise
    await js.update_stream(config)
    return "updated"


async def ensure_consumer(js: JetStreamContext, network: str, alias: str) -> None:
    """Create `alias`'s consumer with `consumer_config`, or bring an existing one
    back to it (JetStream's create-or-update: the same config is a no-op). Raises
    BadRequestError for a change the server refuses to apply."""
    await js.add_consumer(stream_name(network), consumer_config(network, alias))


async def _exists(js: JetStreamContext, name: str) -> bool:
    try:
        await js.stream_info(name)
    except NotFoundError:
        return False
    return True

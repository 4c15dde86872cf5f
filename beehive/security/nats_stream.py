"""The network's JetStream stream: its one config, and creating it idempotently.

Shared by whoever creates the stream: `hive up` (with the admin user, embedded
server) and a node's transport (external server only). Kept out of
`beehive.flower` so the orchestrator does not import the node.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from beehive.core.constants import MAX_DEADLINE_SECONDS, REPORT_GRACE_SECONDS
from beehive.security.nats_auth import inbox_subject, stream_name

__all__ = ["DUPLICATE_WINDOW_SECONDS", "ensure_stream", "stream_config"]

#: A retried publish within this window is stored once (`Nats-Msg-Id`).
DUPLICATE_WINDOW_SECONDS = 120.0


def stream_config(network: str) -> StreamConfig:
    """Every `beehive.<network>.inbox.*` subject, on disk, kept until acknowledged
    (work queue) or for one round's longest life."""
    return StreamConfig(
        name=stream_name(network),
        subjects=[inbox_subject(network, "*")],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=MAX_DEADLINE_SECONDS + REPORT_GRACE_SECONDS,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        num_replicas=1,
    )


async def ensure_stream(js: JetStreamContext, network: str, *, update: bool) -> str:
    """Create the stream with `stream_config`; "created" or "unchanged" (creating it
    again with the same config is a no-op). A stream that exists with another
    config is brought to this one when `update` ("updated"), else raises
    BadRequestError; so does an update the server refuses (e.g. another storage)."""
    config = stream_config(network)
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


async def _exists(js: JetStreamContext, name: str) -> bool:
    try:
        await js.stream_info(name)
    except NotFoundError:
        return False
    return True

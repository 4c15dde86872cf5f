"""The node's NATS transport: the only module that knows NATS and JetStream.

Inboxes are durable. One stream per network (`BEEHIVE_<network>`, file storage,
work-queue retention) captures every `beehive.<network>.inbox.*` subject; each
node reads its own inbox through a durable push consumer named after itself.
A message stays in the stream until the node acknowledges it, which the node
does only after the message's effect is persisted; so a node that was down, or
crashed mid-message, gets it (again) when it is back. Publishing waits for the
stream's acknowledgement (the message is on disk, fsynced: `sync_interval:
always`) and carries a `Nats-Msg-Id`, so a retried publish is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError

from beehive.core.configs import NodeConfig
from beehive.security.nats_auth import (
    deliver_subject,
    inbox_subject,
    reply_prefix,
    stream_name,
)
from beehive.security.nats_stream import stream_config
from beehive.security.tls_ca import client_context

log = logging.getLogger("beehive.transport")

#: Unacknowledged messages are redelivered after this long: how soon a restarted
#: node gets the message it was handling when it died.
ACK_WAIT_SECONDS = 3.0
#: Messages handed to a node before it acknowledges earlier ones. Bounded so that
#: a burst never leaves a message waiting in the client longer than ACK_WAIT.
MAX_ACK_PENDING = 256
#: One publish attempt; then retried (same id) until PUBLISH_GIVE_UP.
PUBLISH_TIMEOUT = 2.0
PUBLISH_GIVE_UP = 60.0


@dataclass(frozen=True)
class Delivery:
    """One inbox message, as the node needs it."""

    data: bytes
    #: When the stream stored it (the server's clock): the time it is judged at.
    stored_at: float
    #: The stream delivers this very message again (an ack never arrived).
    redelivered: bool
    _msg: Msg

    async def ack(self) -> None:
        """The message's effect is persisted: the stream may forget it."""
        with contextlib.suppress(Exception):  # lost ack: redelivered, handled idempotently
            await self._msg.ack()


OnDelivery = Callable[[Delivery], Awaitable[None]]


class Transport:
    def __init__(self, config: NodeConfig, on_delivery: OnDelivery) -> None:
        self.config = config
        self.on_delivery = on_delivery
        self.network, self.alias = config.network, config.alias
        self.stream = stream_name(config.network)
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.subscribed = False
        # Rounds resumed from the store may send before we are connected.
        self._started = asyncio.Event()

    @property
    def connected(self) -> bool:
        return bool(self.nc and self.nc.is_connected)

    # ── connecting ───────────────────────────────────────────────────────────

    async def start(self) -> None:
        """Connect, make sure the stream and our consumer exist, start receiving."""
        self.nc = await self._connect()
        self.js = self.nc.jetstream(timeout=PUBLISH_TIMEOUT)
        await self._ensure_consumer()
        await self.nc.subscribe(deliver_subject(self.network, self.alias), cb=self._on_msg)
        await self.nc.flush()
        self.subscribed = True
        self._started.set()

    async def stop(self) -> None:
        if self.nc is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.drain(), 1.0)  # never outlive stopwaitsecs
        with contextlib.suppress(Exception):
            await self.nc.close()

    def _nats_auth(self) -> dict[str, Any]:
        """TLS that trusts only the configured CA, and this node's own credentials."""
        cfg = self.config
        options: dict[str, Any] = {}
        if cfg.nats_ca_file is not None:
            options["tls"] = client_context(cfg.nats_ca_file)
        if cfg.nats_nkey_seed_file is not None:
            options["nkeys_seed"] = str(cfg.nats_nkey_seed_file)
        elif cfg.nats_creds_file is not None:
            options["user_credentials"] = str(cfg.nats_creds_file)
        return options

    async def _connect(self) -> NATS:
        """Connect, retrying while the server starts: supervisord starts all at once."""
        attempt = 0
        auth = self._nats_auth()
        while True:
            try:
                return await nats.connect(
                    self.config.nats_url,
                    name=self.alias,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,
                    connect_timeout=2,
                    allow_reconnect=True,
                    reconnected_cb=self._reconnected,
                    # Replies (JetStream API answers, publish acks) come under the
                    # node's own prefix: no one is granted a blanket `_INBOX.>`.
                    inbox_prefix=reply_prefix(self.network, self.alias),
                    **auth,
                )
            except Exception as exc:
                attempt += 1
                if attempt % 20 == 1:
                    log.warning("cannot reach NATS at %s yet: %s", self.config.nats_url, exc)
                await asyncio.sleep(min(0.05 * attempt, 1.0))

    async def _reconnected(self) -> None:
        """After a server restart the stream and consumer are back from disk, and
        nats-py re-subscribes the delivery subject by itself; re-adding both
        (idempotent) also covers a server whose JetStream store was lost."""
        log.info("reconnected to NATS")
        asyncio.get_running_loop().create_task(self._ensure_consumer_quietly())

    async def _ensure_consumer_quietly(self) -> None:
        try:
            await self._ensure_consumer()
        except Exception as exc:
            log.warning("could not re-check the stream and consumer: %s", exc)

    async def _ensure_consumer(self) -> None:
        """Create this node's durable consumer (and, on an external server, the
        network's stream), idempotently.

        The embedded server's stream is created by `hive up` with the admin user,
        maybe after this node started; JetStream may not be ready right after the
        server started either. So this retries until the stream exists and
        JetStream answers.
        """
        assert self.js is not None
        consumer = ConsumerConfig(
            name=self.alias,
            durable_name=self.alias,
            filter_subject=inbox_subject(self.network, self.alias),
            deliver_subject=deliver_subject(self.network, self.alias),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_SECONDS,
            max_deliver=-1,
            max_ack_pending=MAX_ACK_PENDING,
        )
        attempt = 0
        while True:
            try:
                if self.config.nats_create_stream:
                    try:
                        await self.js.add_stream(stream_config(self.network))
                    except BadRequestError as exc:
                        # Exists with another config (an older hive, or another
                        # creator): use it as it is, but say so.
                        log.warning("stream %s exists with another config: %s", self.stream, exc)
                await self.js.add_consumer(self.stream, consumer)
                return
            except BadRequestError:
                raise
            except Exception as exc:
                attempt += 1
                if attempt % 20 == 1:
                    log.warning(
                        "JetStream or stream %s not ready yet (%s); retrying", self.stream, exc
                    )
                await asyncio.sleep(min(0.05 * attempt, 1.0))

    # ── receiving and sending ────────────────────────────────────────────────

    async def _on_msg(self, msg: Msg) -> None:
        try:
            meta = msg.metadata
        except Exception:
            log.warning("dropped a message on the delivery subject that JetStream did not send")
            return
        await self.on_delivery(
            Delivery(
                data=msg.data,
                stored_at=meta.timestamp.timestamp(),
                redelivered=meta.num_delivered > 1,
                _msg=msg,
            )
        )

    async def publish(self, recipient: str, wire: bytes) -> None:
        """Put `wire` into `recipient`'s inbox; return once the stream stored it.

        Retried with the same `Nats-Msg-Id` (a hash of the bytes) while the server
        is away, so a retry after a lost acknowledgement is stored once.
        """
        await self._started.wait()
        assert self.js is not None
        subject = inbox_subject(self.network, recipient)
        headers = {"Nats-Msg-Id": hashlib.sha256(wire).hexdigest()[:32]}
        give_up = time.monotonic() + PUBLISH_GIVE_UP
        attempt = 0
        while True:
            try:
                await self.js.publish(subject, wire, headers=dict(headers))
                return
            except Exception as exc:
                attempt += 1
                if time.monotonic() > give_up:
                    raise ConnectionError(
                        f"could not deliver to {recipient} for {PUBLISH_GIVE_UP:g}s: {exc}"
                    ) from exc
                if attempt % 10 == 1:
                    log.warning("publish to %s failed (%s); retrying", recipient, exc)
                await asyncio.sleep(min(0.05 * attempt, 0.5))

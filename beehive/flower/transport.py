"""The node's NATS transport: the only module that knows NATS and JetStream.

Inboxes are durable. One stream per network (`BEEHIVE_<network>`, file storage,
work-queue retention) captures every `beehive.<network>.inbox.*` subject; each
node reads its own inbox through a durable push consumer named after itself.
A message stays in the stream until the node acknowledges it, which the node
does only after the message's effect is persisted; so a node that was down, or
crashed mid-message, gets it (again) when it is back. Publishing waits for the
stream's acknowledgement (the message is on disk, fsynced: `sync_interval:
always`) and carries a `Nats-Msg-Id`, so a retried publish is stored once.

A publish is retried only while the server is away (ConnectionError after
PUBLISH_GIVE_UP). One the server refuses for good (the node's permissions do not
allow the subject, the recipient's inbox is full, the message is too large)
raises PublishDenied at once.

A large fan-out (an aggregator's task to every target) goes as JetStream atomic
batches (`publish_all`): the stream stores a batch whole or not at all, with one
fsync and one acknowledgement, where message by message it would fsync each. A
batch the server does not store (refused, unanswered, or a stream without
`allow_atomic`) is sent again message by message, with the same ids: nothing is
stored twice, and each message meets its own refusal or retry exactly as a
single publish does. A target's two or three shares are not batched: a thousand
targets each opening a small batch at once is slower than publishing one by one
(the server admits 50 batches in flight per stream; docs/performance.md).

With the embedded server the stream and every node's consumer are the
operator's (`hive up` creates them): the node only waits until its consumer
exists. With an external server the node creates both itself if the broker lets
it, and otherwise waits for them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import APIError, BadRequestError

from beehive.core.configs import NodeConfig
from beehive.core.errors import BeehiveError
from beehive.security.nats_auth import (
    deliver_subject,
    inbox_subject,
    reply_prefix,
    stream_name,
)
from beehive.security.nats_stream import (
    ACK_WAIT_SECONDS,
    MAX_ACK_PENDING,
    consumer_config,
    ensure_consumer,
    stream_config,
)
from beehive.security.nats_tls import complete_tls_upgrade
from beehive.security.operator import load_signed_directory
from beehive.security.tls_client import client_context

__all__ = [
    "ACK_WAIT_SECONDS",
    "BATCH_MESSAGES",
    "BATCH_MIN_MESSAGES",
    "MAX_ACK_PENDING",
    "PUBLISH_GIVE_UP",
    "PUBLISH_TIMEOUT",
    "Delivery",
    "PublishDenied",
    "Transport",
]

log = logging.getLogger("beehive.transport")

#: One publish attempt; then retried (same id) until PUBLISH_GIVE_UP.
PUBLISH_TIMEOUT = 2.0
PUBLISH_GIVE_UP = 60.0
#: Messages in one atomic batch: nats-server takes at most 1,000 (its default
#: `max_msgs`); a hundred envelopes of a thousand-target spec are ~1 MB.
BATCH_MESSAGES = 100
#: A smaller fan-out goes message by message. The server admits 50 batches in
#: flight per stream, and many small batches at once (a burst of rounds, each
#: with its few tasks) are slower than single publishes (docs/performance.md);
#: a fan-out this large is one round's, over a large topology.
BATCH_MIN_MESSAGES = 32

#: How nats-py words the server's `-ERR 'Permissions Violation for Publish to "…"'`
#: (lower-cased), which arrives through the error callback, not the publish.
_DENIED_PUBLISH = re.compile(r'permissions violation for publish to "([^"]+)"')
#: JetStream's "store failed" error: with a description saying a limit was
#: exceeded ("maximum messages per subject exceeded", "maximum bytes exceeded"),
#: the stream refused the message (discard: new).
_JS_STORE_FAILED = 10077
#: JetStream: "message size exceeds maximum allowed" (the stream's max_msg_size).
_JS_MESSAGE_TOO_LARGE = 10054
#: Waits at start (for the server, for `hive up` to create the stream and the
#: consumer) retry this often before they are worth a warning: about 10 s, as
#: each retry sleeps 0.05 s longer than the last, up to 1 s.
WARN_AFTER_RETRIES = 20


def _log_wait(attempt: int, message: str, *args: object) -> None:
    """Log a retried wait: its first miss at INFO (supervisord starts a node with
    its server, and before `hive up` has made its consumer: a healthy start may
    miss once), then every WARN_AFTER_RETRIES-th at WARNING (it is lasting)."""
    if attempt == 1:
        log.info(message, *args)
    elif attempt % WARN_AFTER_RETRIES == 1:
        log.warning(message, *args)


class PublishDenied(BeehiveError):
    """NATS refused a publish for good: sending the same message again cannot help.

    `cause` is "not permitted" (this node's NATS permissions do not include the
    recipient's inbox), "inbox full" (the recipient's inbox holds its whole share
    of the stream, or the stream is full) or "too large". The node's delivery
    callback (`Node._on_delivery`) terminates the message that led to it (never
    redelivered); a ConnectionError (server away) leaves it for redelivery.
    """

    def __init__(self, recipient: str, cause: str, detail: str = "") -> None:
        super().__init__(
            f"NATS refused a message to {recipient} ({cause})" + (f": {detail}" if detail else "")
        )
        self.recipient = recipient
        self.cause = cause


def _refusal(exc: BaseException) -> str | None:
    """The cause, if `exc` (from one publish attempt) is a refusal for good."""
    if isinstance(exc, nats.errors.MaxPayloadError):
        return "too large"
    if isinstance(exc, APIError):
        if exc.err_code == _JS_MESSAGE_TOO_LARGE:
            return "too large"
        if exc.err_code == _JS_STORE_FAILED and "exceeded" in (exc.description or ""):
            return "inbox full"
    return None


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

    async def term(self) -> None:
        """Handling it cannot succeed, now or later: the stream forgets it and never
        delivers it again."""
        with contextlib.suppress(Exception):  # lost: redelivered, refused the same way
            await self._msg.term()


OnDelivery = Callable[[Delivery], Awaitable[None]]


def _members(config: NodeConfig) -> int:
    """How many nodes the pinned directory names (read only if it verifies)."""
    directory = load_signed_directory(
        config.directory_file, config.directory_sig_file, config.operator_key
    )
    return len(directory)


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
        # Publishes waiting for their acknowledgement, by (lower-cased) subject:
        # woken when the server reports that subject's publish denied.
        self._denials: dict[str, set[asyncio.Future[None]]] = {}
        # An external server's stream is created by the nodes, sized for the
        # members of the pinned directory: the topology's nodes.
        self._members = _members(config) if config.nats_create_stream else 0

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
        complete_tls_upgrade()  # a clean close at shutdown, without asyncio's warning
        while True:
            try:
                return await nats.connect(
                    self.config.nats_servers,
                    dont_randomize=True,  # this host's own server first (multi-host)
                    name=self.alias,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,
                    connect_timeout=2,
                    allow_reconnect=True,
                    reconnected_cb=self._reconnected,
                    error_cb=self._on_error,
                    # Replies (JetStream API answers, publish acks) come under the
                    # node's own prefix: no one is granted a blanket `_INBOX.>`.
                    inbox_prefix=reply_prefix(self.network, self.alias),
                    **auth,
                )
            except Exception as exc:
                attempt += 1
                _log_wait(attempt, "cannot reach NATS at %s yet: %s", self.config.nats_url, exc)
                await asyncio.sleep(min(0.05 * attempt, 1.0))

    async def _reconnected(self) -> None:
        """After a server restart the stream and consumer are back from disk, and
        nats-py re-subscribes the delivery subject by itself; checking again (and,
        on an external server, re-adding both, idempotently) also covers a server
        whose JetStream store was lost (embedded: `hive up` re-creates them)."""
        log.info("reconnected to NATS")
        asyncio.get_running_loop().create_task(self._ensure_consumer_quietly())

    async def _on_error(self, exc: Exception) -> None:
        """nats-py's asynchronous errors. A denied publish wakes the publishes
        waiting on that subject (`_publish_once`): it will never be acknowledged."""
        text = str(exc)
        match = _DENIED_PUBLISH.search(text.lower())
        if match is not None:
            subject = match.group(1)
            log.warning("NATS denied a publish to %s", subject)
            for waiter in self._denials.get(subject, ()):
                if not waiter.done():
                    waiter.set_result(None)
            return
        log.warning("NATS: %s", text or type(exc).__name__)

    async def _ensure_consumer_quietly(self) -> None:
        try:
            await self._ensure_consumer()
        except Exception as exc:
            log.warning("could not re-check the stream and consumer: %s", exc)

    async def _ensure_consumer(self) -> None:
        """Wait until this node's durable consumer exists with its filter and
        delivery subject; on an external server try to create it (and the
        network's stream) first, idempotently.

        The embedded server's stream and consumers are created by `hive up` with
        the admin user, maybe after this node started (a node's credentials may
        not create them); JetStream may not be ready right after the server
        started either. So this retries until the consumer exists and JetStream
        answers.
        """
        assert self.js is not None
        want = consumer_config(self.network, self.alias)
        attempt = 0
        while True:
            try:
                if self.config.nats_create_stream:
                    await self._create_stream_and_consumer(quiet=attempt > 0)
                info = await self.js.consumer_info(self.stream, self.alias)
                got = (info.config.filter_subject, info.config.deliver_subject)
                if got == (want.filter_subject, want.deliver_subject):
                    return
                raise LookupError(f"consumer {self.alias} delivers {got[0]} to {got[1]}")
            except BadRequestError:
                raise
            except Exception as exc:
                attempt += 1
                _log_wait(
                    attempt,
                    "JetStream, stream %s or consumer %s not ready yet (%s); retrying "
                    "(`hive up` creates them)",
                    self.stream,
                    self.alias,
                    exc or type(exc).__name__,
                )
                await asyncio.sleep(min(0.05 * attempt, 1.0))

    async def _create_stream_and_consumer(self, *, quiet: bool) -> None:
        """External server: create the stream and this node's consumer if the
        broker lets this node (idempotent). A broker that does not (its operator
        created both and granted nodes no such subject) answers nothing: that is
        no error, `_ensure_consumer` then only waits for the consumer to exist."""
        assert self.js is not None
        try:
            await self.js.add_stream(stream_config(self.network, self._members))
        except BadRequestError as exc:
            # Exists with another config (an older hive, another creator, or
            # sized for fewer nodes): use it as it is, but say so.
            log.warning("stream %s exists with another config: %s", self.stream, exc)
        except Exception as exc:
            if not quiet:
                log.warning("could not create stream %s (%s): waiting for it", self.stream, exc)
        try:
            await ensure_consumer(self.js, self.network, self.alias)
        except BadRequestError:
            raise
        except Exception as exc:
            if not quiet:
                log.warning("could not create consumer %s (%s): waiting for it", self.alias, exc)

    async def drained(self, timeout: float) -> bool:
        """Wait until every message in this node's inbox has been delivered and
        acknowledged (each is acknowledged once its effect is persisted): True
        then, False after `timeout` or when JetStream does not answer. A node
        that was frozen (SIGSTOP, swapped out, a long GC) judges a deadline only
        after reading what reached its inbox in time."""
        if self.js is None:
            return False
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            try:
                info = await self.js.consumer_info(
                    self.stream, self.alias, timeout=max(end - loop.time(), 0.05)
                )
            except Exception:
                return False
            if not info.num_pending and not info.num_ack_pending:
                return True
            if loop.time() >= end:
                return False
            await asyncio.sleep(0.02)

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
        is away, so a retry after a lost acknowledgement is stored once; after
        PUBLISH_GIVE_UP, ConnectionError. A refusal for good (not permitted, inbox
        full, too large) raises PublishDenied at once.
        """
        await self._started.wait()
        assert self.js is not None
        subject = inbox_subject(self.network, recipient)
        headers = {Header.MSG_ID.value: _msg_id(wire)}
        give_up = time.monotonic() + PUBLISH_GIVE_UP
        attempt = 0
        while True:
            try:
                await self._publish_once(recipient, subject, wire, headers)
                return
            except PublishDenied:
                raise
            except Exception as exc:
                cause = _refusal(exc)
                if cause is not None:
                    raise PublishDenied(recipient, cause, str(exc)) from exc
                attempt += 1
                if time.monotonic() > give_up:
                    raise ConnectionError(
                        f"could not deliver to {recipient} for {PUBLISH_GIVE_UP:g}s: {exc}"
                    ) from exc
                if attempt % 10 == 1:
                    log.warning("publish to %s failed (%s); retrying", recipient, exc)
                await asyncio.sleep(min(0.05 * attempt, 0.5))

    async def publish_all(self, messages: Sequence[tuple[str, bytes]]) -> int:
        """`publish` each (recipient, wire), as atomic batches of BATCH_MESSAGES
        if there are BATCH_MIN_MESSAGES or more; return once the stream stored
        them all, with how many of them went in a batch the server stored. A
        batch it did not store is published again message by message (same ids:
        what it did store is not stored twice), so every message ends as
        `publish` would end it: stored, PublishDenied, or ConnectionError; the
        first such failure is raised once all have ended."""
        await self._started.wait()
        batched = 0
        failed: list[BaseException] = []
        large = len(messages) >= BATCH_MIN_MESSAGES
        for start in range(0, len(messages), BATCH_MESSAGES):
            batch = messages[start : start + BATCH_MESSAGES]
            if large and len(batch) > 1:
                try:
                    await self._publish_batch(batch)
                    batched += len(batch)
                    continue
                except Exception as exc:
                    log.info("a batch of %d was not stored (%s): one by one", len(batch), exc)
            results = await asyncio.gather(
                *(self.publish(recipient, wire) for recipient, wire in batch),
                return_exceptions=True,
            )
            failed += [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        return batched

    async def _publish_batch(self, batch: Sequence[tuple[str, bytes]]) -> None:
        """One atomic batch, once (ADR-50): the first message a request, which the
        server answers empty once the batch is open (or with an error: too many
        batches in flight), the next ones without a reply, the last with the
        commit header: its acknowledgement (or error) is the whole batch's. Raises
        on anything but a stored batch."""
        assert self.nc is not None and self.js is not None
        batch_id = uuid.uuid4().hex
        for seq, (recipient, wire) in enumerate(batch, 1):
            subject = inbox_subject(self.network, recipient)
            headers = {
                Header.MSG_ID.value: _msg_id(wire),
                Header.BATCH_ID.value: batch_id,
                Header.BATCH_SEQUENCE.value: str(seq),
            }
            if seq == 1:
                opened = await self.nc.request(subject, wire, PUBLISH_TIMEOUT, headers=headers)
                if opened.data:  # an error: the batch was not opened
                    raise LookupError(opened.data.decode(errors="replace"))
            elif seq < len(batch):
                await self.nc.publish(subject, wire, headers=headers)
            else:
                headers[Header.BATCH_COMMIT.value] = "1"
                ack = await self.js.publish(subject, wire, headers=headers)
                if ack.batch_size != len(batch):
                    raise LookupError(f"batch stored {ack.batch_size} of {len(batch)}")

    async def _publish_once(
        self, recipient: str, subject: str, wire: bytes, headers: dict[str, str]
    ) -> None:
        """One publish, waiting for the stream's acknowledgement or the server's
        report that the subject is denied, whichever comes first.

        A denied publish is dropped by the server without an answer: nats-py only
        reports it through the error callback, by subject (`_on_error`).
        """
        assert self.js is not None
        denied: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._denials.setdefault(subject.lower(), set())
        waiters.add(denied)  # before sending: the report may come before the ack would
        sent: asyncio.Future[Any] = asyncio.ensure_future(
            self.js.publish(subject, wire, headers=dict(headers))
        )
        try:
            await asyncio.wait((sent, denied), return_when=asyncio.FIRST_COMPLETED)
            if denied.done():
                raise PublishDenied(recipient, "not permitted", f"publish to {subject}")
            sent.result()
        finally:
            waiters.discard(denied)
            if not waiters:
                self._denials.pop(subject.lower(), None)
            if not sent.done():
                sent.cancel()  # its request is dropped: nats-py forgets the reply
            sent.add_done_callback(_consume)


def _msg_id(wire: bytes) -> str:
    """The stream stores a message once per id (within DUPLICATE_WINDOW_SECONDS):
    the same envelope, retried or batched and then retried, is one message."""
    return hashlib.sha256(wire).hexdigest()[:32]


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned publish's outcome, so asyncio does not warn of it."""
    if not future.cancelled():
        future.exception()

"""Create the network's JetStream stream and every node's durable consumer as
the operator (embedded server only).

Nodes may create neither: a member that created the stream first could choose a
weaker config, and one holding a stopped node's credentials could point that
node's consumer at another delivery subject. `hive up` creates both, once the
`nats` program is ready, connecting over TLS (the hive's CA) with the `_admin`
nkey, whose only rights are creating, inspecting and updating that one stream and
creating each node's consumer (name and filter pinned).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import nats
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError

from beehive.core.configs import nats_servers
from beehive.core.errors import BeehiveError
from beehive.security.nats_auth import admin_reply_prefix, stream_name
from beehive.security.nats_stream import ensure_consumer, ensure_stream
from beehive.security.nats_tls import complete_tls_upgrade
from beehive.security.tls_client import client_context
from beehive.topology.plan import StreamSetup

__all__ = ["StreamError", "create_stream"]

log = logging.getLogger("beehive.stream")

#: One JetStream API request; retried until the apply's deadline.
REQUEST_TIMEOUT = 2.0


class StreamError(BeehiveError, RuntimeError):
    """The stream or a consumer could not be created or brought to its config."""


def create_stream(setup: StreamSetup, timeout: float = 30.0) -> str:
    """Create (or update) the stream, then every node's consumer; "created",
    "unchanged" or "updated" (the stream's). Idempotent: an existing consumer
    with its config is left as it is, one with another config is brought back to
    it, and a node added to the topology gets its consumer on the next apply.

    JetStream may not answer right after the server's port opened, nor know the
    admin user's rights for a just-added node until it reloaded its users:
    retried until `timeout`. A config the server refuses to update to raises
    StreamError.
    """
    complete_tls_upgrade()  # else asyncio warns as each TLS connection closes
    return asyncio.run(_create(setup, time.monotonic() + timeout))


async def _create(setup: StreamSetup, deadline: float) -> str:
    options: dict[str, Any] = {"nkeys_seed": str(setup.nkey_seed_file)}
    if setup.ca_file is not None:
        options["tls"] = client_context(setup.ca_file)
    name = stream_name(setup.network)
    attempt = 0
    outcome: str | None = None  # kept across attempts: "created" stays "created"
    while True:
        nc = None
        try:
            nc = await nats.connect(
                nats_servers(setup.nats_url),
                name="_admin",
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=2,
                inbox_prefix=admin_reply_prefix(setup.network),
                error_cb=_quiet,
                **options,
            )
            js = nc.jetstream(timeout=REQUEST_TIMEOUT)
            try:
                done = await ensure_stream(
                    js, setup.network, nodes=setup.nodes, update=True, replicas=setup.replicas
                )
            except BadRequestError as exc:
                raise StreamError(
                    f"stream {name} exists with a config that cannot be updated: {exc}"
                ) from exc
            if outcome is None or done != "unchanged":
                outcome = done
            await _ensure_consumers(js, setup.network, setup.aliases)
            return outcome
        except StreamError:
            raise
        except Exception as exc:
            attempt += 1
            if time.monotonic() > deadline:
                raise StreamError(
                    f"could not create stream {name} and its consumers: {exc!r}"
                ) from exc
            await asyncio.sleep(min(0.05 * attempt, 0.5))
        finally:
            if nc is not None:
                await nc.close()


#: Consumer requests in flight at once: a thousand nodes' consumers are made in
#: a few round trips, not a thousand, without flooding the server's API queue.
CONSUMERS_IN_FLIGHT = 32


async def _ensure_consumers(js: JetStreamContext, network: str, aliases: Sequence[str]) -> None:
    """Every node's consumer (`ensure_consumer`), CONSUMERS_IN_FLIGHT at a time."""
    slots = asyncio.Semaphore(CONSUMERS_IN_FLIGHT)
    name = stream_name(network)

    async def one(alias: str) -> None:
        async with slots:
            try:
                await ensure_consumer(js, network, alias)
            except BadRequestError as exc:
                raise StreamError(
                    f"consumer {alias} of stream {name} exists with a config that "
                    f"cannot be updated: {exc}"
                ) from exc

    await asyncio.gather(*(one(alias) for alias in aliases))


async def _quiet(exc: Exception) -> None:
    """nats-py's asynchronous errors (e.g. a consumer the server does not yet let
    the admin user create, right after a node was added): the request that met it
    times out and is retried; `hive up`'s output stays clean."""
    log.debug("NATS: %s", exc)

"""Create the network's JetStream stream as the operator (embedded server only).

Nodes may not create the stream (a member that created it first could choose a
weaker config); `hive up` does, once the `nats` program is ready, connecting over
TLS (the hive's CA) with the `_admin` nkey, whose only rights are creating,
inspecting and updating that one stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import nats
from nats.js.errors import BadRequestError

from beehive.core.errors import BeehiveError
from beehive.security.nats_auth import admin_reply_prefix, stream_name
from beehive.security.nats_stream import ensure_stream
from beehive.security.tls_ca import client_context
from beehive.topology.plan import StreamSetup

__all__ = ["StreamError", "create_stream"]

#: One JetStream API request; retried until the apply's deadline.
REQUEST_TIMEOUT = 2.0


class StreamError(BeehiveError, RuntimeError):
    """The stream could not be created or brought to its config."""


def create_stream(setup: StreamSetup, timeout: float = 30.0) -> str:
    """Create (or update) the stream; "created", "unchanged" or "updated".

    JetStream may not answer right after the server's port opened: retried until
    `timeout`. A config the server refuses to update to raises StreamError.
    """
    # asyncio warns "returning true from eof_received() has no effect when using
    # ssl" when the TLS connection closes: noise in `hive up`'s output.
    quiet = logging.getLogger("asyncio")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return asyncio.run(_create(setup, time.monotonic() + timeout))
    finally:
        quiet.setLevel(level)


async def _create(setup: StreamSetup, deadline: float) -> str:
    options: dict[str, Any] = {"nkeys_seed": str(setup.nkey_seed_file)}
    if setup.ca_file is not None:
        options["tls"] = client_context(setup.ca_file)
    name = stream_name(setup.network)
    attempt = 0
    while True:
        nc = None
        try:
            nc = await nats.connect(
                setup.nats_url,
                name="_admin",
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=2,
                inbox_prefix=admin_reply_prefix(setup.network),
                **options,
            )
            js = nc.jetstream(timeout=REQUEST_TIMEOUT)
            return await ensure_stream(js, setup.network, update=True)
        except BadRequestError as exc:
            raise StreamError(
                f"stream {name} exists with a config that cannot be updated: {exc}"
            ) from exc
        except Exception as exc:
            attempt += 1
            if time.monotonic() > deadline:
                raise StreamError(f"could not create stream {name}: {exc!r}") from exc
            await asyncio.sleep(min(0.05 * attempt, 0.5))
        finally:
            if nc is not None:
                await nc.close()

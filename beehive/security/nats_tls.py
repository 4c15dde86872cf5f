"""nats-py's upgrade to TLS, completed, so that a clean close is quiet.

nats-py (2.16, and its main branch as of this writing) reads the server's INFO
in plain text, then upgrades the connection with `loop.start_tls`, handing it a
new `asyncio.StreamReaderProtocol`. `start_tls` never calls that protocol's
`connection_made` (it expects a protocol that is connected already), so the
protocol never learns that it runs over TLS: its `eof_received` answers True, as
for plain TCP, and asyncio's TLS layer logs `WARNING returning true from
eof_received() has no effect when using ssl` at the end of every clean TLS
shutdown: each node at `hive down`, the stream setup at each `hive up`
(nats-io/nats.py#574). Its reader never gets the transport either, so it cannot
pause reading when its buffer fills, as a plain-TCP nats-py connection does.

`complete_tls_upgrade()` makes `TcpTransport.connect_tls` finish the job the way
`asyncio.open_connection(ssl=...)` and `StreamWriter.start_tls` do: tell the
protocol it is connected (the fix proposed in #574, and httpcore's for the same
bug, encode/httpcore#249). It acts only on a protocol that does not know yet, so
a nats-py that fixes this itself is left alone; one whose internals moved is
left alone too (the warning would be back, and `tests/test_quiet_logs.py` says
so). Not a log filter: the warning is the symptom of a half-set-up stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.transport import TcpTransport

__all__ = ["complete_tls_upgrade"]

_DONE = "_beehive_completes_tls_upgrade"


def complete_tls_upgrade() -> None:
    """Wrap `TcpTransport.connect_tls` once per process (idempotent): every
    connection after it, reconnections included, gets a connected protocol."""
    if getattr(TcpTransport, _DONE, False):
        return
    upgrade = TcpTransport.connect_tls

    async def connect_tls(self: TcpTransport, *args: Any, **kwargs: Any) -> None:
        await upgrade(self, *args, **kwargs)
        writer = getattr(self, "_io_writer", None)
        transport = getattr(writer, "transport", None)
        if transport is None:
            return
        protocol = transport.get_protocol()
        # `_over_ssl` is what `connection_made` sets; False: it was never called.
        if isinstance(protocol, asyncio.StreamReaderProtocol) and not getattr(
            protocol, "_over_ssl", True
        ):
            protocol.connection_made(transport)

    TcpTransport.connect_tls = connect_tls  # type: ignore[method-assign]
    setattr(TcpTransport, _DONE, True)

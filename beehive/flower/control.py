"""The node's control channel: a Unix socket in the state folder, owner-only.

The CLI asks a node for its health, submits a computation as its proposer, and
waits for a result here. Newline-delimited JSON, one request per connection
(protocol in docs/architecture.md). Only the local owner can reach it — the
network never can.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beehive.core.errors import BeehiveError

if TYPE_CHECKING:
    import asyncio

# asyncio is imported where a coroutine needs it (where it is already loaded):
# the CLI's blocking `call` must not pay for importing it.

log = logging.getLogger(__name__)

MAX_REQUEST = 1 << 20
#: Pending connections the socket queues (asyncio's default is 100): a client
#: submitting a few hundred rounds at once must not see its connects refused.
BACKLOG = 1024

Handler = Callable[[dict[str, Any]], AsyncIterator[dict[str, Any]]]


class ControlError(BeehiveError):
    """The node answered a control request with an error, or could not be reached."""


class ControlTimeout(ControlError):
    """The request reached the node, which did not answer in time: it may still act
    on it (a submit may still start its round)."""


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    """Serve `handler` on a fresh socket at `path`, readable by the owner only."""
    import asyncio

    path.unlink(missing_ok=True)
    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(
            lambda r, w: _connection(r, w, handler),
            path=str(path),
            limit=MAX_REQUEST,
            backlog=BACKLOG,
        )
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server


async def _connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
) -> None:
    import asyncio

    try:
        line = await reader.readline()
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("request must be a JSON object")
        except ValueError as exc:
            await _send(writer, {"ok": False, "error": f"bad request: {exc}"})
            return
        try:
            async for reply in handler(request):
                await _send(writer, reply)
        except ControlError as exc:
            await _send(writer, {"ok": False, "error": str(exc)})
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # the client went away; nothing to tell it
    except Exception:
        log.exception("control request failed")
        await _send(writer, {"ok": False, "error": "internal error (see the node's log)"})
    finally:
        writer.close()


async def _send(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
    writer.write(json.dumps(obj).encode() + b"\n")
    await writer.drain()


async def request(
    path: Path,
    obj: dict[str, Any],
    *,
    timeout: float = 5.0,
    on_event: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
) -> dict[str, Any]:
    """Send one request; return the final reply (events before it go to `on_event`).

    For clients on an event loop (scripts/bench.py sends hundreds at once); the
    CLI uses the blocking `call`, the same protocol without asyncio.
    """
    import asyncio

    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=MAX_REQUEST), timeout
        )
    except (OSError, TimeoutError) as exc:
        raise _unreachable(path, exc) from exc
    try:
        writer.write(json.dumps(obj).encode() + b"\n")
        await writer.drain()
        while True:
            reply = _final(path, await asyncio.wait_for(reader.readline(), timeout))
            if reply.get("event") in (None, "result"):
                return reply
            if on_event is not None:
                maybe = on_event(reply)
                if maybe is not None:
                    await maybe
    except TimeoutError as exc:
        raise _timed_out(path, timeout) from exc
    finally:
        writer.close()


def call(
    path: Path,
    obj: dict[str, Any],
    *,
    timeout: float = 5.0,
    on_event: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """`request`, blocking: what the CLI and the health check use.

    A plain socket, no event loop: `hive status` asks a thousand nodes one
    after another, and a command that starts an event loop per node (or imports
    asyncio at all) pays for it in start-up time.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise _unreachable(path, exc) from exc
        try:
            sock.sendall(json.dumps(obj).encode() + b"\n")
            with sock.makefile("rb") as stream:
                while True:
                    reply = _final(path, stream.readline(MAX_REQUEST))
                    if reply.get("event") in (None, "result"):
                        return reply
                    if on_event is not None:
                        on_event(reply)
        except TimeoutError as exc:
            raise _timed_out(path, timeout) from exc
        except OSError as exc:
            raise ControlError(f"node at {path} broke the connection ({exc})") from exc


def _final(path: Path, line: bytes) -> dict[str, Any]:
    """One reply line, parsed; an error reply (`"ok": false`) raises."""
    if not line:
        raise ControlError(f"node at {path} closed the connection without an answer")
    try:
        reply = json.loads(line)
    except ValueError as exc:
        raise ControlError(f"node at {path} answered something that is not JSON") from exc
    if not isinstance(reply, dict):
        raise ControlError(f"node at {path} answered something that is not an object")
    if reply.get("event") in (None, "result") and reply.get("ok") is False:
        raise ControlError(reply.get("error", "unknown error"))
    return reply


def _unreachable(path: Path, exc: BaseException) -> ControlError:
    return ControlError(f"node control socket {path} is not answering ({exc})")


def _timed_out(path: Path, timeout: float) -> ControlTimeout:
    return ControlTimeout(f"no answer from node at {path} within {timeout:g}s")

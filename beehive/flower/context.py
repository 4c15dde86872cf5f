"""What a role (proposer, aggregator, target) needs from the node it runs in.

The roles are separate modules; the node wires them to one transport, one store
and one directory. This protocol is the whole of that wiring, so a role can be
read (and tested) without the node.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

from beehive.core.configs import NodeConfig
from beehive.flower.store import Store
from beehive.security import Directory, Identity


class NodeContext(Protocol):
    alias: str
    config: NodeConfig
    store: Store
    identity: Identity

    @property
    def directory(self) -> Directory: ...

    async def send(self, recipient: str, msg_type: str, comp_id: str, **fields: Any) -> None:
        """Seal to `recipient` and publish; returns once its inbox stream stored it."""
        ...

    async def send_all(
        self, recipients: Sequence[str], msg_type: str, comp_id: str, **fields: Any
    ) -> None:
        """`send` to every recipient, as one fan-out: returns once the stream stored
        them all; raises the first failure once all have ended."""
        ...

    async def drain_inbox(self, timeout: float) -> bool:
        """Wait (at most `timeout`) until everything already in this node's inbox
        was handled; True when it was."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run in the background; failures are logged, never raised."""
        ...

    def later(self, delay: float, coro_fn: Any) -> None:
        """Spawn `coro_fn()` after `delay` seconds (a round's timer)."""
        ...


def require(condition: bool, why: str) -> None:
    """A round rule: a message that breaks it is dropped and counted as `protocol`."""
    if not condition:
        raise PermissionError(why)

"""Try a handler locally, with no network and no daemon (the seed's `nectar test`).

It runs the handler exactly as the daemon would (`Handler.run`: same timeout, same
result checks), so a handler that passes here fails in production only for reasons
of its own environment.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from beehive.core.models import Computation
from beehive.nectar.handler import Handler
from beehive.nectar.loader import load_handler

__all__ = ["DEFAULT_QUERY", "arun_sample", "run_sample", "sample_computation"]

DEFAULT_QUERY = "What is your secret value"


def sample_computation(
    query: str = DEFAULT_QUERY, node: str | None = None, metadata: dict[str, Any] | None = None
) -> Computation:
    """A one-node computation: this machine proposes, aggregates and answers
    (as `node`, when given: what `comp.node` says to the handler)."""
    me = node or "local"
    return Computation(
        query=query,
        proposer=me,
        aggregators=[me],
        targets=[me],
        node=node,
        metadata=metadata or {},
    )


async def arun_sample(
    handler: Handler | str | os.PathLike[str],
    query: str = DEFAULT_QUERY,
    timeout: float = 10,
    *,
    node: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> int:
    """`run_sample` for callers already inside an event loop."""
    h = handler if isinstance(handler, Handler) else load_handler(handler)
    return await h.run(sample_computation(query, node, metadata), timeout)


def run_sample(
    handler: Handler | str | os.PathLike[str],
    query: str = DEFAULT_QUERY,
    timeout: float = 10,
    *,
    node: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> int:
    """Run `handler` (a Handler, or a path to a handler file) on a sample query.

    Returns the checked answer; raises what the daemon would report as an error
    (the function's own exception, `HandlerTimeoutError`, `HandlerResultError`,
    or `HandlerLoadError` for a file).
    """
    return asyncio.run(arun_sample(handler, query, timeout, node=node, metadata=metadata))

"""Try a handler locally, with no network and no daemon (the seed's `nectar test`).

It runs the handler exactly as the daemon would (`Handler.run`: same timeout, same
result checks), so a handler that passes here fails in production only for reasons
of its own environment.
"""

from __future__ import annotations

import asyncio
import os

from beehive.core.models import Computation
from beehive.nectar.handler import Handler
from beehive.nectar.loader import load_handler

__all__ = ["DEFAULT_QUERY", "arun_sample", "run_sample", "sample_computation"]

DEFAULT_QUERY = "What is your secret value"


def sample_computation(query: str = DEFAULT_QUERY) -> Computation:
    """A one-node computation: this machine proposes, aggregates and answers."""
    return Computation(query=query, proposer="local", aggregators=["local"], targets=["local"])


async def arun_sample(
    handler: Handler | str | os.PathLike[str], query: str = DEFAULT_QUERY, timeout: float = 10
) -> int:
    """`run_sample` for callers already inside an event loop."""
    h = handler if isinstance(handler, Handler) else load_handler(handler)
    return await h.run(sample_computation(query), timeout)


def run_sample(
    handler: Handler | str | os.PathLike[str], query: str = DEFAULT_QUERY, timeout: float = 10
) -> int:
    """Run `handler` (a Handler, or a path to a handler file) on a sample query.

    Returns the checked answer; raises what the daemon would report as an error
    (the function's own exception, `HandlerTimeoutError`, `HandlerResultError`,
    or `HandlerLoadError` for a file).
    """
    return asyncio.run(arun_sample(handler, query, timeout))

"""Bee-Hive's handler framework: write, load, test and serve query handlers.

Only `beehive.core` and libraries are imported here, never `beehive.flower`: a
handler daemon and a node meet only through the dispatch folder.

    from beehive import handler, Computation

    @handler
    def count_words(comp: Computation) -> int:
        return len(comp.query.split())
"""

from beehive.core.configs import HandlerConfig, HandlerConfigError
from beehive.core.models import Computation, ComputationResult, IntegerResponse
from beehive.nectar.handler import (
    Handler,
    HandlerDefinitionError,
    HandlerError,
    HandlerResultError,
    HandlerTimeoutError,
    handler,
)
from beehive.nectar.harness import arun_sample, run_sample, sample_computation
from beehive.nectar.loader import HandlerLoadError, load_handler

__all__ = [
    "Computation",
    "ComputationResult",
    "Handler",
    "HandlerConfig",
    "HandlerConfigError",
    "HandlerDefinitionError",
    "HandlerError",
    "HandlerLoadError",
    "HandlerResultError",
    "HandlerTimeoutError",
    "IntegerResponse",
    "arun_sample",
    "handler",
    "load_handler",
    "run_sample",
    "sample_computation",
]

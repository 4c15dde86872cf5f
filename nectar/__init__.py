"""Compatibility with the seed project: `from nectar import handler, Computation`.

Handler files written for the seed keep working unchanged; new code should import
from `beehive` (`from beehive import handler, Computation`). This package holds no
code of its own, so the two can never disagree.
"""

from beehive.nectar import (
    Computation,
    ComputationResult,
    Handler,
    HandlerDefinitionError,
    HandlerLoadError,
    IntegerResponse,
    handler,
    load_handler,
    run_sample,
)

__all__ = [
    "Computation",
    "ComputationResult",
    "Handler",
    "HandlerDefinitionError",
    "HandlerLoadError",
    "IntegerResponse",
    "handler",
    "load_handler",
    "run_sample",
]

"""Bee-Hive: private aggregation of integer answers over a declarative NATS network.

Handler authors need only this:

    from beehive import handler, Computation

    @handler
    def answer(comp: Computation) -> int:
        ...

Every name is imported on first use (`beehive._lazy`): this package's `__init__`
runs for every subpackage, so `hive --help` must not pay for pydantic here, and
`import beehive.flower` must not load the handler framework (the network layer
and `beehive.nectar` stay independent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from beehive._lazy import lazy_exports

if TYPE_CHECKING:
    from beehive.core.models import Computation, ComputationResult, IntegerResponse
    from beehive.nectar.handler import handler

__all__ = ["Computation", "ComputationResult", "IntegerResponse", "handler"]

__getattr__ = lazy_exports(
    __name__,
    {
        "Computation": "core.models",
        "ComputationResult": "core.models",
        "IntegerResponse": "core.models",
        "handler": "nectar.handler",
    },
)

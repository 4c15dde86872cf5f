"""Bee-Hive: private aggregation of integer answers over a declarative NATS network.

Handler authors need only this:

    from beehive import handler, Computation

    @handler
    def answer(comp: Computation) -> int:
        ...

`handler` is imported lazily (on first access) so that `import beehive.flower`
does not load the handler framework: the network layer and `beehive.nectar` must
stay independent, and this package's `__init__` runs for every subpackage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from beehive.core.models import Computation, ComputationResult, IntegerResponse

if TYPE_CHECKING:
    from beehive.nectar.handler import handler

__all__ = ["Computation", "ComputationResult", "IntegerResponse", "handler"]


def __getattr__(name: str) -> Any:
    if name == "handler":
        from beehive.nectar.handler import handler

        return handler
    raise AttributeError(f"module 'beehive' has no attribute {name!r}")

"""Types, constants and settings shared by every part of Bee-Hive.

Nothing in here talks to the network or the disk: the handler framework
(`beehive.nectar`) and the network layer (`beehive.flower`) both import it and
must never need each other. Its names are imported on first use
(`beehive._lazy`), so a submodule such as `beehive.core.names` costs only itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from beehive._lazy import lazy_exports

if TYPE_CHECKING:
    from beehive.core.constants import MODULUS
    from beehive.core.models import Computation, ComputationResult, IntegerResponse, ResultStatus
    from beehive.core.settings import Settings

__all__ = [
    "MODULUS",
    "Computation",
    "ComputationResult",
    "IntegerResponse",
    "ResultStatus",
    "Settings",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "MODULUS": "constants",
        "Computation": "models",
        "ComputationResult": "models",
        "IntegerResponse": "models",
        "ResultStatus": "models",
        "Settings": "settings",
    },
)

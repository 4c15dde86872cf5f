"""Types, constants and settings shared by every part of Bee-Hive.

Nothing in here talks to the network or the disk: the handler framework
(`beehive.nectar`) and the network layer (`beehive.flower`) both import it and
must never need each other.
"""

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

"""Example handler: always 42.

A constant answer makes a round's total a pure function of how many targets
contributed (42 * contributors), which is what end-to-end tests of partial
rounds and declines check against.
"""

from beehive import Computation, handler


@handler
def answer_42(comp: Computation) -> int:
    return 42

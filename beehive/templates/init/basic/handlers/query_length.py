"""Example handler: the length of the query, capped at 100.

It needs no data and no model, so it is the handler of the demo and test
topologies: every node gives a known answer and the total is easy to check
(n targets -> n * min(len(query), 100)). The cap keeps the sum of a large network
far below 2^32.
"""

from beehive import Computation, handler


@handler
def query_length(comp: Computation) -> int:
    return min(len(comp.query), 100)

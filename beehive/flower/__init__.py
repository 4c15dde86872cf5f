"""The network layer: nodes that execute, aggregate and propose over NATS.

Never imports `beehive.nectar`: a node meets its handler only through the
dispatch folder (see docs/architecture.md).
"""

"""Topology: the `hive.yaml` schema and its loader (imported on first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from beehive._lazy import lazy_exports

if TYPE_CHECKING:
    from beehive.topology.loader import TopologyError, load_topology, topology_to_yaml
    from beehive.topology.schema import Topology

__all__ = ["Topology", "TopologyError", "load_topology", "topology_to_yaml"]

__getattr__ = lazy_exports(
    __name__,
    {
        "Topology": "schema",
        "TopologyError": "loader",
        "load_topology": "loader",
        "topology_to_yaml": "loader",
    },
)

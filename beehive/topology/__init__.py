"""Topology: the `hive.yaml` schema and its loader."""

from .loader import TopologyError, load_topology, topology_to_yaml
from .schema import Topology

__all__ = ["Topology", "TopologyError", "load_topology", "topology_to_yaml"]

"""gangplace engine: the model, the native kernels, the placers and the live state.

Public API (docs/placement.md)::

    from gangplace.engine import Cluster, GangRequest, place
    from gangplace.engine.model.synthetic import generate
"""
from .api import PLACERS, place
from .model.cluster import Cluster
from .model.errors import GangplaceError, InvalidFile, InvalidRequest, InvalidTopology, SolverError
from .model.types import (Allocation, GangRequest, NodeSpec, Placement, PodAssignment, PodSet, SliceLayer,
                    Topology, TopologyConstraint)

__all__ = ["Allocation", "Cluster", "GangRequest", "GangplaceError", "InvalidFile", "InvalidRequest",
           "InvalidTopology", "NodeSpec", "PLACERS", "Placement", "PodAssignment", "PodSet", "SliceLayer",
           "SolverError", "Topology", "TopologyConstraint", "place"]

"""The node specs the live state was given (usage included), and how a node change is applied.

``ClusterState`` keeps one ``NodeSpecs`` under its lock. A change that keeps a node's place in
the topology is applied to the live arrays in place (``Cluster.update_node``: a rebuild of 12,500
nodes takes ~0.3 s); anything else asks the state for a lazy rebuild, so a burst of node events
costs one.
"""
from __future__ import annotations

from typing import Iterable

from ..model.cluster import Cluster
from ..model.errors import InvalidRequest
from ..model.types import NodeSpec


def check_specs(levels: tuple[str, ...], specs: list[NodeSpec]) -> None:
    """Validate names, levels and capacities exactly as a cluster file would be."""
    for s in specs:
        if not isinstance(s, NodeSpec):
            raise InvalidRequest(f"expected a NodeSpec, got {type(s).__name__}", field="node")
    try:
        Cluster(levels, specs)
    except Exception as e:  # InvalidTopology names the field
        raise InvalidRequest(str(e), field="node") from None


class NodeSpecs:
    """Base node specs by name: the node as given, usage included (not tracked pod by pod)."""

    def __init__(self, specs: Iterable[NodeSpec]):
        self.by_name: dict[str, NodeSpec] = {s.name: s for s in specs}

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def get(self, name: str) -> NodeSpec | None:
        return self.by_name.get(name)

    def values(self):
        return self.by_name.values()

    def upsert(self, specs: list[NodeSpec], live: Cluster | None) -> tuple[bool, bool]:
        """Add or replace nodes (identical specs change nothing), updating ``live`` in place where
        the change allows (``live`` None: a rebuild is pending anyway). Returns (changed,
        needs a rebuild)."""
        changed = rebuild = False
        for s in specs:
            old = self.by_name.get(s.name)
            if old != s:
                if old is None or live is None or not live.update_node(old, s):
                    rebuild = True
                    live = None  # the arrays are stale from here on: no more in-place updates
                self.by_name[s.name] = s
                changed = True
        return changed, rebuild

    def replace(self, specs: list[NodeSpec]) -> bool:
        """Exactly these nodes (a full re-list); True if that changed anything."""
        new = {s.name: s for s in specs}
        if new == self.by_name:
            return False
        self.by_name = new
        return True

    def remove(self, name: str) -> bool:
        return self.by_name.pop(name, None) is not None

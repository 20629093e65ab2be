"""A gang request checked against one cluster and turned into what the kernels take.

``prepare`` is the single place where a GangRequest meets a Cluster: level names become indices,
slice layers become per-level rounding units, node selectors become eligibility masks. Every
problem is an InvalidRequest naming the field.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.cluster import Cluster
from ..model.errors import InvalidRequest
from ..model.formats import check_gang
from ..model.types import NODE_LEVEL, GangRequest, effective_slice_size
from .objective import DEFAULT_OBJECTIVE, check_objective, pod_unit


@dataclass(frozen=True, slots=True)
class PreparedGang:
    gang: GangRequest
    required_level: int  # -1: none
    preferred_level: int  # -1: count every level and the nodes
    units: tuple[np.ndarray, ...]  # per pod set, int64[n_levels + 1]: slice size at each level, node
    # level last (1 = none); a pod set smaller than one slice uses its own count (model.effective_slice_size)
    eligible: tuple[np.ndarray, ...]  # uint8[n_nodes] per pod set: schedulable and selected
    order: tuple[int, ...]  # pod sets in placement order (most GPUs per pod first)
    pod_unit: tuple[int, int]  # what part (3)'s pod room counts (objective.pod_unit of the gang)
    objective: str = DEFAULT_OBJECTIVE  # part (3): "bottomup" (default) or "topdown" (engine/place/objective.py)
    # on a cluster that tracks its writes (Cluster.track_writes): (its WriteTracker, the tracker's
    # sched_generation when ``eligible`` was built); the heuristic's fit cache trusts ``eligible``
    # only while that generation is current. None: untracked (no cache).
    stamp: tuple | None = None

    @property
    def counted_levels(self) -> int:
        """Levels 0..counted_levels-1 are counted (index n_levels = the node count)."""
        n = len(self.units[0]) - 1
        return n + 1 if self.preferred_level < 0 else self.preferred_level + 1


def _level(cluster: Cluster, name: str | None, field: str, *, allow_node: bool = False) -> int:
    if name is None:
        return -1
    if name in cluster.levels:
        return cluster.levels.index(name)
    if allow_node and name == NODE_LEVEL:
        return len(cluster.levels)
    raise InvalidRequest(f"unknown topology level {name!r}; the cluster's levels are {list(cluster.levels)}",
                         field=field)


def prepare(cluster: Cluster, gang: GangRequest, objective: str = DEFAULT_OBJECTIVE) -> PreparedGang:
    check_objective(objective)
    t = gang.topology
    required = _level(cluster, t.required, "topology.required")
    preferred = _level(cluster, t.preferred, "topology.preferred")
    check_gang(gang)
    units = [np.ones(len(cluster.levels) + 1, np.int64) for _ in gang.pod_sets]
    prev_level = -1
    for i, layer in enumerate(t.slices):
        lv = _level(cluster, layer.level, f"topology.slices[{i}].level", allow_node=True)
        if lv < prev_level:
            raise InvalidRequest(f"slice layers go outer first: {layer.level!r} is above the previous layer's level",
                                 field=f"topology.slices[{i}].level")
        prev_level = lv
        for unit, ps in zip(units, gang.pod_sets):
            unit[lv] = max(unit[lv], effective_slice_size(ps.count, layer.size))
    tracker = cluster.write_tracker if cluster.n_nodes >= CACHE_MIN_NODES else None
    eligible = [_eligible(cluster, ps.node_selector, tracker) for ps in gang.pod_sets]
    order = tuple(sorted(range(len(gang.pod_sets)),
                         key=lambda i: (-gang.pod_sets[i].gpus, -gang.pod_sets[i].count, i)))
    stamp = (tracker, tracker.sched_generation) if tracker is not None else None
    return PreparedGang(gang, required, preferred, tuple(units), tuple(eligible), order, pod_unit(gang), objective,
                        stamp)


ELIGIBLE_MASKS = 8  # node selectors whose masks a tracked cluster keeps (the oldest dropped)
# Clusters of fewer nodes skip the caches of tracked clusters (the shared eligibility masks here,
# the kernel's fit cache in heuristic.py): their node pass costs less than the look-ups
# (2,048 nodes: ~5 µs). Tests set it to 0 to exercise the caches on small clusters.
CACHE_MIN_NODES = 2048


def _eligible(cluster: Cluster, selector, tracker) -> np.ndarray:
    """uint8[n_nodes]: schedulable and matching ``selector``. A private copy (the state layer may
    cordon nodes in place later); on a cluster that tracks its writes, one read-only mask per
    selector shared until the next write to ``schedulable`` (``WriteTracker.sched_generation``)."""
    if tracker is not None:
        key = ("eligible", tuple(sorted(selector.items())) if selector else ())
        hit = tracker.caches.get(key)
        if hit is not None and hit[0] == tracker.sched_generation:
            return hit[1]
    if selector:
        mask = np.ascontiguousarray((cluster.schedulable != 0) & cluster.selector_mask(selector)).view(np.uint8)
    else:
        mask = np.array(cluster.schedulable != 0, np.uint8)
    if tracker is not None:
        mask.flags.writeable = False
        old = [k for k in tracker.caches if k[0] == "eligible" and k != key]
        if len(old) >= ELIGIBLE_MASKS:
            del tracker.caches[old[0]]
        tracker.caches[key] = (tracker.sched_generation, mask)
    return mask

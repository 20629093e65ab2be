"""Capacity maths shared by every placer: the one place where "how many pods fit where" is answered.

- ``FreeCapacity``: the four free arrays (GPUs, CPU, memory, pod slots) of a cluster, and taking a
  placement's usage out of them (or giving it back).
- ``node_fit``: pods of one pod set each node holds on its own, rounded down to the node-level
  slice unit (the native kernel computes the same numbers in its phase 1, csrc/_core.pyx).
- ``level_caps``: those capacities summed bottom-up into every domain, capped at the pod set's
  count and rounded down to the slice unit of each level (a slice sits inside one domain).
- ``domain_free_gpus``: free GPUs per domain from one prefix sum over the nodes (every domain is a
  contiguous node range, engine/model/cluster.py), as the objective's stranded GPUs count them.
- ``common_domain`` / ``ancestors``: the lowest domain holding a set of nodes, and the domains
  above it, for placing a later pod set next to the earlier ones.

Users: the kernel wrapper (heuristic.py), explain.py, scoring.py, the tree DP, the lexicographic
bounds and CP-SAT (engine/exact/), batch and preemption planning.
"""
from __future__ import annotations

import numpy as np

from ..model.cluster import Cluster
from ..model.types import PodSet
from .request import PreparedGang


class FreeCapacity:
    """The free arrays a placement draws from: ``gpus`` int32[n_nodes], ``cpu`` int64[n_nodes]
    (millicores), ``mem`` int64[n_nodes] (bytes), ``pods`` int32[n_nodes] (pod slots).

    ``of(cluster)`` starts from references to the cluster's arrays; ``take`` replaces them by new
    arrays (the cluster is never modified) unless ``in_place`` is asked for (a working copy of a
    cluster). ``take_at`` writes in place: use it only on arrays the caller owns."""

    __slots__ = ("gpus", "cpu", "mem", "pods")

    def __init__(self, gpus: np.ndarray, cpu: np.ndarray, mem: np.ndarray, pods: np.ndarray):
        self.gpus, self.cpu, self.mem, self.pods = gpus, cpu, mem, pods

    @classmethod
    def of(cls, cluster: Cluster) -> "FreeCapacity":
        """The cluster's free arrays, by reference."""
        return cls(cluster.free_gpus, cluster.free_cpu, cluster.free_mem, cluster.free_pods)

    @classmethod
    def copy_of(cls, cluster: Cluster, nodes: slice = slice(None)) -> "FreeCapacity":
        """Private int64 copies of the cluster's free arrays (of ``nodes`` only), for ``take_at``."""
        return cls(*(np.array(a[nodes], np.int64) for a in
                     (cluster.free_gpus, cluster.free_cpu, cluster.free_mem, cluster.free_pods)))

    def take(self, counts: np.ndarray, ps: PodSet, sign: int = 1, *, in_place: bool = False) -> None:
        """Subtract (sign=1) or give back (sign=-1) the usage of ``counts`` pods of ``ps`` per node."""
        if in_place:
            if ps.gpus:
                self.gpus -= (sign * counts * ps.gpus).astype(np.int32)
            if ps.cpu:
                self.cpu -= sign * counts * ps.cpu
            if ps.memory:
                self.mem -= sign * counts * ps.memory
            self.pods -= (sign * counts).astype(np.int32)
            return
        if ps.gpus:
            self.gpus = (self.gpus - sign * counts * ps.gpus).astype(np.int32)
        if ps.cpu:
            self.cpu = self.cpu - sign * counts * ps.cpu
        if ps.memory:
            self.mem = self.mem - sign * counts * ps.memory
        self.pods = (self.pods - sign * counts).astype(np.int32)

    def fit_at(self, node: int, ps: PodSet) -> int:
        """Pods of ``ps`` node ``node`` holds now (pod slots and every requested resource)."""
        k = int(self.pods[node])
        for need, free in ((ps.gpus, self.gpus), (ps.cpu, self.cpu), (ps.memory, self.mem)):
            if need:
                k = min(k, int(free[node]) // need)
        return k

    def take_at(self, node: int, k: int, ps: PodSet) -> None:
        """Subtract ``k`` pods of ``ps`` on one node, in place."""
        self.gpus[node] -= k * ps.gpus
        self.cpu[node] -= k * ps.cpu
        self.mem[node] -= k * ps.memory
        self.pods[node] -= k

    def release(self, nodes: np.ndarray, use: np.ndarray, sign: int = 1) -> None:
        """Give back (sign=1) or take again (sign=-1), in place, what a running gang holds:
        ``use`` int64[len(nodes), 4] = GPUs, CPU, memory, pods on each of ``nodes``."""
        self.gpus[nodes] += (sign * use[:, 0]).astype(np.int32)
        self.cpu[nodes] += sign * use[:, 1]
        self.mem[nodes] += sign * use[:, 2]
        self.pods[nodes] += (sign * use[:, 3]).astype(np.int32)

    def as_tuple(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.gpus, self.cpu, self.mem, self.pods


def pods_fitting(free_gpus, free_cpu, free_mem, free_pods, ps: PodSet, limit: int) -> np.ndarray:
    """int64[n]: pods of ``ps`` each node holds on the given free arrays, clipped to ``0 .. limit``
    (eligibility and slice rounding are the caller's: see ``node_fit``)."""
    v = np.asarray(free_pods, np.int64).copy()
    if ps.gpus:
        v = np.minimum(v, np.asarray(free_gpus, np.int64) // ps.gpus)
    if ps.cpu:
        v = np.minimum(v, np.asarray(free_cpu, np.int64) // ps.cpu)
    if ps.memory:
        v = np.minimum(v, np.asarray(free_mem, np.int64) // ps.memory)
    return np.clip(v, 0, limit)


def node_fit(cluster: Cluster, prepared: PreparedGang, s: int, free=None) -> np.ndarray:
    """int64[n_nodes]: pods of pod set ``s`` each node holds alone, capped at its count, rounded
    down to the node-level slice unit (0 where not eligible). ``free``: a (gpus, cpu, mem, pods)
    tuple or a FreeCapacity to use instead of the cluster's free arrays."""
    ps = prepared.gang.pod_sets[s]
    if free is None:
        free = (cluster.free_gpus, cluster.free_cpu, cluster.free_mem, cluster.free_pods)
    elif isinstance(free, FreeCapacity):
        free = free.as_tuple()
    v = pods_fitting(*free, ps, ps.count)
    v[~prepared.eligible[s].astype(bool)] = 0
    u = int(prepared.units[s][-1])
    if u > 1:
        v -= v % u
    return v


def level_caps(cluster: Cluster, prepared: PreparedGang, fit: np.ndarray, count: int, s: int) -> list[np.ndarray]:
    """Per level (top first) the pods of pod set ``s`` each domain of the level holds, capped at
    ``count`` and rounded down to the slice unit at every level below and at it (a slice sits in
    one domain). ``fit``: int64[n_nodes] node capacities (``node_fit``, possibly masked).
    Level ``l``'s array is indexed by global domain id minus ``level_offset[l]``."""
    L = len(cluster.levels)
    caps: list[np.ndarray] = [None] * L  # type: ignore[list-item]
    cur = fit
    for lv in range(L - 1, -1, -1):
        lo, hi = int(cluster.level_offset[lv]), int(cluster.level_offset[lv + 1])
        if lv == L - 1:
            agg = np.bincount(cluster.node_domain[lv] - lo, weights=cur, minlength=hi - lo)
        else:
            child_lo = int(cluster.level_offset[lv + 1])
            parents = cluster.domain_parent[child_lo:int(cluster.level_offset[lv + 2])] - lo
            agg = np.bincount(parents, weights=cur, minlength=hi - lo)
        agg = np.minimum(agg.astype(np.int64), count)
        u = int(prepared.units[s][lv])
        if u > 1:
            agg -= agg % u
        caps[lv] = agg
        cur = agg
    return caps


def domain_free_gpus(cluster: Cluster, free_gpus: np.ndarray | None = None) -> np.ndarray:
    """int64[n_domains]: free GPUs summed over every node of each domain (cordoned ones included,
    as the objective counts stranded GPUs), from one prefix sum over the nodes in topology order.
    ``free_gpus``: int[n_nodes] to sum instead of the cluster's free GPUs."""
    free = cluster.free_gpus if free_gpus is None else free_gpus
    csum = np.concatenate(([0], np.cumsum(np.asarray(free, np.int64))))
    return csum[cluster.domain_end] - csum[cluster.domain_start]


def domain_pod_room(cluster: Cluster, unit: tuple[int, int]) -> np.ndarray:
    """int64[n_domains]: per domain, the pods of ``unit = (u, n)`` (``objective.pod_unit``) its nodes
    could take (each node's ``min(free GPUs // u, n)``, every node counted as ``domain_free_gpus``
    counts them): the podfit objective's pod room (engine/place/objective.py)."""
    u, n = unit
    per_node = np.minimum(np.maximum(np.asarray(cluster.free_gpus, np.int64), 0) // max(u, 1), n)
    return domain_free_gpus(cluster, per_node)


def common_domain(cluster: Cluster, used: np.ndarray) -> int:
    """The lowest domain containing every used node (``used``: per node, nonzero = used; at least
    one). -1 when they span several top-level domains."""
    nodes = np.flatnonzero(used)
    for lv in range(len(cluster.levels) - 1, -1, -1):
        doms = cluster.node_domain[lv, nodes]
        if doms.min() == doms.max():
            return int(doms[0])
    return -1


def ancestors(cluster: Cluster, domain: int, stop: int) -> list[int]:
    """domain, its parent, ... up to ``stop`` (inclusive); -1 (the whole cluster) last if stop < 0."""
    out = []
    d = domain
    while d >= 0:
        out.append(d)
        if d == stop:
            return out
        d = int(cluster.domain_parent[d])
    out.append(-1)
    return out

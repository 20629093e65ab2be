"""A placer's raw answer (pods per node per pod set) and its conversion to the public Placement.

Every placer (heuristic, CP-SAT, batch, preemption) produces a ``Solution``; ``to_placement``
scores it with engine/place/objective.py and numbers the pods in topology order, so all placers report
identically.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .._core import nonzero_nodes
from ..model.cluster import Cluster
from ..model.types import NODE_LEVEL, Placement, PodAssignment
from . import age
from .objective import ObjectiveValue, objective_of_counts, objective_of_nodes
from .request import PreparedGang


@dataclass(slots=True)
class Solution:
    counts: list[np.ndarray]  # int64[n_nodes] per pod set (gang order): pods on each node
    placed: bool
    placer: str
    lower_bound: np.ndarray | None = None  # int64[n_levels + 1]: fewest domains per level
    max_pods: tuple[int, ...] = ()  # per pod set: most pods placeable (upper bound)
    optimal: bool = False
    gap: float | None = None
    note: str = ""
    explanation: dict | None = None
    reason: str = ""
    extra: dict = field(default_factory=dict)
    # (counts list, its arrays' ids, ObjectiveValue): objective_of's memo; not copied by dataclasses.replace.
    # Valid while ``counts`` is not mutated in place (placers build new arrays).
    objective_cache: tuple | None = field(default=None, init=False, repr=False, compare=False)
    # (counts array, its used node ids increasing): the first pod set's used nodes, from the kernel
    # or the first scan, so the objective and the Placement do not scan every node again
    used_cache: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def total_counts(self) -> np.ndarray:
        return np.sum(self.counts, axis=0) if self.counts else np.zeros(0, np.int64)


def gpus_taken(prepared: PreparedGang, counts: list[np.ndarray]) -> np.ndarray:
    total = np.zeros_like(counts[0]) if counts else np.zeros(0, np.int64)
    for ps, c in zip(prepared.gang.pod_sets, counts):
        if ps.gpus:
            total = total + c * ps.gpus
    return total


def _used(counts: np.ndarray) -> np.ndarray:
    """Used node ids, increasing (any placer's counts: made int64 contiguous when they are not)."""
    return nonzero_nodes(np.ascontiguousarray(counts, np.int64))


def used_nodes(sol: Solution, i: int = 0) -> np.ndarray:
    """Pod set ``i``'s used node ids, increasing; the first pod set's are memoized on the Solution
    (``used_cache``, valid while its counts array is the same object and not mutated in place)."""
    c = sol.counts[i]
    memo = sol.used_cache
    if i == 0 and memo is not None and memo[0] is c:
        return memo[1]
    nodes = _used(c)
    if i == 0:
        sol.used_cache = (c, nodes)
    return nodes


def objective_of(cluster: Cluster, prepared: PreparedGang, sol: Solution) -> ObjectiveValue:
    """The objective of a solution (memoized on the Solution: the policy and to_placement both ask)."""
    memo = sol.objective_cache
    if memo is not None and memo[0] is sol.counts and memo[1] == [id(c) for c in sol.counts]:
        return memo[2]
    counts = sol.counts
    if len(counts) == 1:  # the common case, without summing arrays over pod sets
        nodes = used_nodes(sol)
        per_node = counts[0][nodes]
        gpus = prepared.gang.pod_sets[0].gpus
        s = objective_of_nodes(cluster, nodes, per_node * gpus, int(per_node.sum()), prepared.counted_levels,
                               prepared.objective, unit=prepared.pod_unit)
    else:
        s = objective_of_counts(cluster, sol.total_counts(), gpus_taken(prepared, counts), prepared.counted_levels,
                                prepared.objective, unit=prepared.pod_unit)
    if age.applies(prepared):  # a one-pod gang under objective "age": its node's age (engine/place/age.py)
        s = dataclasses.replace(s, age=age.age_of(cluster, prepared, used_nodes(sol)))
    sol.objective_cache = (counts, [id(c) for c in counts], s)
    return s


def proved_optimal(prepared: PreparedGang, sol: Solution, s: ObjectiveValue) -> tuple[bool, float | None]:
    """Parts (1) and (2) proved by bounds: every pod set at its upper bound, every counted level
    at its lower bound. Returns (optimal, gap) where gap is (value - bound) / value at the first
    counted component above its bound (0.0 when proved, None when no bound is known)."""
    if sol.lower_bound is None or not sol.max_pods:
        return False, None
    placed = [s.pods_placed] if len(sol.counts) == 1 else [int(c.sum()) for c in sol.counts]
    if any(p < ub for p, ub in zip(placed, sol.max_pods)):
        ub = sum(sol.max_pods)
        return False, (ub - sum(placed)) / ub if ub else None
    for value, bound in zip(s.domains[: s.counted], sol.lower_bound[: s.counted].tolist()):
        if value > bound:
            return False, (value - bound) / value
    return True, 0.0


def to_placement(cluster: Cluster, prepared: PreparedGang, sol: Solution, elapsed_ms: float) -> Placement:
    gang = prepared.gang
    if not sol.placed:
        return Placement(gang=gang.name, placed=False, placer=sol.placer, elapsed_ms=elapsed_ms,
                         reason=sol.reason, explanation=sol.explanation,
                         domains_used={}, stranded_gpus={}, optimal=sol.optimal, gap=sol.gap)
    s = objective_of(cluster, prepared, sol)
    pods = []
    names = cluster.node_names
    for i, (ps, c) in enumerate(zip(gang.pod_sets, sol.counts)):
        nodes = used_nodes(sol, i)  # topology order: ranks share the lowest domains
        idx = 0
        name_set = ps.name
        for node, k in zip(nodes.tolist(), c[nodes].tolist()):
            name = names[node]
            for j in range(idx, idx + k):
                pods.append(PodAssignment(name_set, j, name))
            idx += k
    levels = (*cluster.levels, NODE_LEVEL)
    return Placement(
        gang=gang.name, placed=True, pods=tuple(pods),
        domains_used=dict(zip(levels, s.domains)), stranded_gpus=dict(zip(levels, s.stranded)),
        placer=sol.placer, optimal=sol.optimal, gap=sol.gap, elapsed_ms=elapsed_ms,
        reason=sol.reason, explanation=sol.explanation, objective=s.key)

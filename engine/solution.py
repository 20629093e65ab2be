"""A placer's raw answer (pods per node per pod set) and its conversion to the public Placement.

Every placer (heuristic, CP-SAT, batch, preemption) produces a ``Solution``; ``to_placement``
scores it with engine/objective.py and numbers the pods in topology order, so all placers report
identically.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cluster import Cluster
from .model import NODE_LEVEL, Placement, PodAssignment
from .objective import Score, score
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

    def total_counts(self) -> np.ndarray:
        return np.sum(self.counts, axis=0) if self.counts else np.zeros(0, np.int64)


def gpus_taken(prepared: PreparedGang, counts: list[np.ndarray]) -> np.ndarray:
    total = np.zeros_like(counts[0]) if counts else np.zeros(0, np.int64)
    for ps, c in zip(prepared.gang.pod_sets, counts):
        if ps.gpus:
            total = total + c * ps.gpus
    return total


def score_solution(cluster: Cluster, prepared: PreparedGang, sol: Solution) -> Score:
    return score(cluster, sol.total_counts(), gpus_taken(prepared, sol.counts), prepared.counted_levels)


def proved_optimal(prepared: PreparedGang, sol: Solution, s: Score) -> tuple[bool, float | None]:
    """Parts (1) and (2) proved by bounds: every pod set at its upper bound, every counted level
    at its lower bound. Returns (optimal, gap) where gap is (value - bound) / value at the first
    counted component above its bound (0.0 when proved, None when no bound is known)."""
    if sol.lower_bound is None or not sol.max_pods:
        return False, None
    placed = [int(c.sum()) for c in sol.counts]
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
    s = score_solution(cluster, prepared, sol)
    pods = []
    for ps, c in zip(gang.pod_sets, sol.counts):
        idx = 0
        for node in np.flatnonzero(c).tolist():  # topology order: ranks share the lowest domains
            name = cluster.node_names[node]
            for _ in range(int(c[node])):
                pods.append(PodAssignment(ps.name, idx, name))
                idx += 1
    levels = (*cluster.levels, NODE_LEVEL)
    return Placement(
        gang=gang.name, placed=True, pods=tuple(pods),
        domains_used=dict(zip(levels, s.domains)), stranded_gpus=dict(zip(levels, s.stranded)),
        placer=sol.placer, optimal=sol.optimal, gap=sol.gap, elapsed_ms=elapsed_ms,
        reason=sol.reason, explanation=sol.explanation, objective=s.key)

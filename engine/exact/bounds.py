"""Lower bounds on the lexicographic objective, and the pruning that keeps every optimum.

Shared by the tree DP (engine/exact/tree_dp.py), CP-SAT (engine/exact/cpsat.py) and the auto
policy: covers (fewest domains whose capacities reach a pod count), the top-down pruning pass
``lex_bound`` and the capacity proof that nothing fits (``capacity_infeasible``). Capacities come
from engine/place/capacity.py.

Pruning (``candidates``), which keeps every lexicographically optimal answer:
Let ``h`` be the heuristic's answer. When it places the most pods allowed (``sum(max_pods)``),
every optimum places exactly ``h``'s pods per pod set, so ``D_l(opt) <= D_l(h)`` at the first level
where they differ and equal above. Going top-down while the levels so far are proved
(``D_l(h)`` equals a lower bound):
1. a domain ``d`` of level ``l`` can be used by pod set ``s`` only if ``cap[s, d]`` plus the
   ``D_l(h) - 1`` largest other candidate capacities reach ``pods[s]`` (a pod set using ``k <= D_l(h)``
   domains fills them from their capacities); a domain no pod set can use is dropped with its
   subtree; when ``D_l(h) == 1`` the one domain holds every pod set, so a domain must hold each;
2. when level ``l - 1`` is proved to use one domain, a parent whose children need more than
   ``D_l(h)`` domains to hold some pod set cannot host an optimum and is dropped;
3. the min-cover over the surviving candidates is a lower bound on ``D_l`` (per parent when the
   parent is unique: ``min over parents of max over pod sets``); when it meets ``D_l(h)`` the level
   is proved and the descent continues one level down.
If every counted level is proved this way, the heuristic's answer is optimal and CP-SAT is
skipped (``LexBound.proved``). The CP-SAT model then fixes ``pods[s]``, the proved level counts and
``D_j <= D_j(h)`` at the first unproved level, all implied by the argument above.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model.cluster import Cluster
from ..place.capacity import level_caps, node_fit
from ..place.request import PreparedGang
from ..place.solution import Solution

BIG = 1 << 60  # "no cover": more domains than any cluster has (the kernel's BIG, csrc/_core.pxd)


def min_cover(values: np.ndarray, n: int) -> int:
    """Fewest values summing to >= n (BIG if all together hold less)."""
    if n <= 0:
        return 0
    v = np.sort(values[values > 0])[::-1]
    cs = np.cumsum(v)
    if not len(cs) or cs[-1] < n:
        return BIG
    return int(np.searchsorted(cs, n) + 1)


def grouped_cover(values: np.ndarray, groups: np.ndarray, n_groups: int, n: int) -> np.ndarray:
    """Per group, fewest of its values summing to >= n (BIG when the group holds less)."""
    out = np.full(n_groups, BIG, np.int64)
    if n <= 0:
        out[:] = 0
        return out
    keep = values > 0
    v, g = values[keep], groups[keep]
    if not len(v):
        return out
    order = np.lexsort((-v, g))
    v, g = v[order], g[order]
    cs = np.cumsum(v)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    base = np.r_[0, cs[starts[1:] - 1]] if len(starts) > 1 else np.zeros(1, np.int64)
    within = cs - np.repeat(base, np.diff(np.r_[starts, len(v)]))
    rank = np.arange(len(v)) - np.repeat(starts, np.diff(np.r_[starts, len(v)])) + 1
    hit = within >= n
    if hit.any():
        gi, ri = g[hit], rank[hit]
        # first hit per group = smallest rank (ranks increase within a group)
        first = np.r_[True, gi[1:] != gi[:-1]]
        out[gi[first]] = ri[first]
    return out


def usable(values: np.ndarray, k: int, n: int) -> np.ndarray:
    """bool per value: it can be one of at most k values summing to >= n."""
    if n <= 0:
        return np.zeros(len(values), bool)
    if k <= 0:
        return np.zeros(len(values), bool)
    order = np.argsort(-values, kind="stable")
    top = values[order]
    topk = int(top[:k].sum())
    topk1 = int(top[: k - 1].sum())
    in_top = np.zeros(len(values), bool)
    in_top[order[:k]] = True
    ok = np.where(in_top, topk >= n, values + topk1 >= n)
    return ok & (values > 0)


# ----------------------------------------------------------------------------- the top-down pruning pass
@dataclass
class LexBound:
    """The top-down pruning pass: candidate nodes, tightened lower bounds and what is proved."""

    nodes: np.ndarray  # bool[n_nodes] candidate nodes
    lower: np.ndarray  # int64[n_levels + 1] lower bound per level (node count last)
    proved_levels: int  # levels 0..proved_levels-1 (of the counted ones) meet their bound
    pods_fixed: tuple[int, ...] | None  # per pod set, the pods every optimum places (None: unknown)
    proved: bool  # parts (1) and (2) of the heuristic's answer proved optimal
    domain_counts: tuple[int, ...] = ()  # the heuristic's per-level counts
    stats: dict = field(default_factory=dict)


def lex_bound(cluster: Cluster, prepared: PreparedGang, sol: Solution, fits: list[np.ndarray] | None = None,
              domains: tuple[int, ...] | None = None) -> LexBound:
    """Prune to the candidate domains that can hold an optimum and tighten the lower bounds.

    ``sol`` is the heuristic's answer (may be unplaced); ``domains`` its per-level counts.
    """
    L = len(cluster.levels)
    n_sets = len(prepared.gang.pod_sets)
    if fits is None:
        fits = [node_fit(cluster, prepared, s) for s in range(n_sets)]
    cand = np.zeros(cluster.n_nodes, bool)
    for f in fits:
        cand |= f > 0
    lower = np.zeros(L + 1, np.int64)
    if sol.lower_bound is not None:
        lower = np.asarray(sol.lower_bound, np.int64).copy()
    counted = prepared.counted_levels
    pods = None
    if sol.placed and sol.max_pods and domains is not None:
        placed = tuple(int(c.sum()) for c in sol.counts)
        if sum(placed) >= sum(sol.max_pods):
            pods = placed
    if pods is None:
        return LexBound(cand, lower, 0, None, False, domains or ())
    proved_levels = 0
    unique_parent = True  # the (proved) level above uses exactly one domain (the root: yes)
    for lv in range(counted):
        K = int(domains[lv])
        # capacities over the current candidates
        cur_fits = [np.where(cand, f, 0) for f in fits]
        if lv < L:
            lo, hi = int(cluster.level_offset[lv]), int(cluster.level_offset[lv + 1])
            vals = [level_caps(cluster, prepared, f, prepared.gang.pod_sets[s].count, s)[lv]
                    for s, f in enumerate(cur_fits)]
            parent = (cluster.domain_parent[lo:hi] - int(cluster.level_offset[lv - 1])) if lv > 0 else \
                np.zeros(hi - lo, np.int64)
            n_par = (int(cluster.level_offset[lv]) - int(cluster.level_offset[lv - 1])) if lv > 0 else 1
        else:
            vals = cur_fits
            parent = (cluster.node_domain[L - 1] - int(cluster.level_offset[L - 1])) if L > 0 else \
                np.zeros(cluster.n_nodes, np.int64)
            n_par = (int(cluster.level_offset[L]) - int(cluster.level_offset[L - 1])) if L > 0 else 1
        # 1. domains some pod set can use within K of them (K == 1: the one domain holds every pod set)
        active = [s for s in range(n_sets) if pods[s] > 0]
        if K == 1 and active:
            keep = np.ones(len(vals[0]), bool)
            for s in active:
                keep &= vals[s] >= pods[s]
        else:
            keep = np.zeros(len(vals[0]), bool)
            for s in active:
                keep |= usable(vals[s], K, pods[s])
        # 2./3. per parent (unique parent) or globally: the cover bound, per pod set and, for a gang
        # of several pod sets, per resource they share (joint_demand)
        joint = joint_demand(cluster, prepared, pods, cand, lv) if len(active) > 1 else []
        if unique_parent and lv > 0:
            need = np.zeros(n_par, np.int64)
            for s in range(n_sets):
                if pods[s] > 0:
                    need = np.maximum(need, grouped_cover(np.where(keep, vals[s], 0), parent, n_par, pods[s]))
            for free, demand in joint:
                need = np.maximum(need, grouped_cover(np.where(keep, free, 0), parent, n_par, demand))
            bad_parent = need > K
            keep &= ~bad_parent[parent]
            lb = int(need.min()) if len(need) else BIG
        else:
            lb = 0
            for s in range(n_sets):
                if pods[s] > 0:
                    lb = max(lb, min_cover(np.where(keep, vals[s], 0), pods[s]))
            for free, demand in joint:
                lb = max(lb, min_cover(np.where(keep, free, 0), demand))
        if lb > K:  # inconsistent with the heuristic's own answer: stop pruning here (stay safe)
            break
        lower[lv] = max(int(lower[lv]), lb)
        # apply the level's survivors to the candidate nodes
        if lv < L:
            cand &= keep[cluster.node_domain[lv] - lo]
        else:
            cand &= keep
        if lower[lv] >= K:
            proved_levels = lv + 1
            unique_parent = K == 1
        else:
            break
    proved = proved_levels >= counted
    return LexBound(cand, lower, proved_levels, pods, proved, tuple(domains),
                    {"candidate_nodes": int(cand.sum())})


def joint_demand(cluster: Cluster, prepared: PreparedGang, pods: tuple[int, ...], cand: np.ndarray,
                 lv: int) -> list[tuple[np.ndarray, int]]:
    """For a gang of several pod sets: per resource (GPUs, CPU, memory, pod slots) the gang's total
    demand (``pods[s]`` pods of each set) and the free amount of each domain of level ``lv`` (the
    node level when ``lv == L``) over the candidate nodes. Pod sets can share a node, so covering
    each set's pods alone can undercount: 4 + 3 GPUs never fit one 4-GPU node, and the fewest
    domains whose free GPUs reach 7 is a lower bound too (every optimum places ``pods``)."""
    sets = prepared.gang.pod_sets
    L = len(cluster.levels)
    out = []
    for free, per_pod in ((cluster.free_gpus, [ps.gpus for ps in sets]), (cluster.free_cpu, [ps.cpu for ps in sets]),
                          (cluster.free_mem, [ps.memory for ps in sets]), (cluster.free_pods, [1] * len(sets))):
        demand = sum(int(p) * int(r) for p, r in zip(pods, per_pod))
        if demand <= 0:
            continue
        # a node's amount beyond the demand never changes a cover: clip it there, so sums stay exact
        # in int64 (a node without a CPU or memory limit holds UNLIMITED = 2^62: summed in floats,
        # three of them cast to a negative number, and the domain looked empty)
        f = np.where(cand, np.minimum(np.asarray(free, np.int64), demand), 0)
        if lv < L:
            if demand > (1 << 62) // max(cluster.n_nodes, 1):
                continue  # the sums could overflow: no joint bound on this resource (still a bound)
            lo, hi = int(cluster.level_offset[lv]), int(cluster.level_offset[lv + 1])
            f = np.add.reduceat(f, cluster.domain_start[lo:hi])  # a level's domains: contiguous node ranges
        out.append((f, demand))
    return out


def capacity_infeasible(cluster: Cluster, prepared: PreparedGang, fits: list[np.ndarray]) -> bool:
    """True when some pod set cannot reach its minimum even alone (a proof that nothing fits):
    its capacity summed over the cluster, or within the best domain of the ``required`` level,
    is below ``min_count`` (capacities rounded to slice units as in ``level_caps``)."""
    L = len(cluster.levels)
    for s, ps in enumerate(prepared.gang.pod_sets):
        need = ps.required_count
        if need <= 0:
            continue
        if L == 0:
            total = int(fits[s].sum())
        else:
            caps = level_caps(cluster, prepared, fits[s], ps.count, s)
            total = int(caps[prepared.required_level].max()) if prepared.required_level >= 0 else int(caps[0].sum())
        if total < need:
            return True
    return False

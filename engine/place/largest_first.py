"""The rivals' own candidates (Kueue TAS's BestFit, KAI-style): the numpy reference of the kernel's.

The native kernel's hierarchical best fit can use more domains below the top level than the
greedy that Kueue's topology-aware scheduling runs (docs/benchmarks.md, "never less local than the
rivals"): on gb200-nvl72 at 60 % fill, 128 pods x 4 GPUs went to 2 blocks / 10 racks where Kueue's
algorithm finds 2 / 9. So for one rigid pod set whose kernel answer is not proved optimal, these
candidates are computed too and the best by the objective's key is kept. The kernel computes them
(csrc/_core.pyx ``rival_candidates``, at every cluster size); the functions here compute the same,
candidate for candidate (``all_candidates``, in the kernel's order), and the tests check one
against the other (tests/engine/place/test_largest_first.py).

Algorithm overview (one pod set of ``count`` pods; ``caps[l][d]``: pods domain ``d`` of level
``l`` holds alone, ``capacity.level_caps``):
1. Level search, bottom up: the lowest level, at or below a required level, where one domain
   holds the whole gang; there the best fit: the domain holding it with the least room.
2. Nothing holds it (no required level): the top level's domains most room first, the last one
   best fit (the smallest that holds the rest).
3. Descent: the children of every chosen domain are pooled and taken most room first; when a
   child holds the rest, the best-fitting such child takes it and the level is done. Down to the
   nodes, which take ``min(fit, rest)`` pods each.
"""
from __future__ import annotations

import numpy as np

from ..model.cluster import Cluster
from .capacity import domain_free_gpus, level_caps, node_fit
from .request import PreparedGang


def applies(prepared: PreparedGang) -> bool:
    """One rigid pod set without slices (the shape the rivals' algorithm places), at any cluster size."""
    gang = prepared.gang
    return (len(gang.pod_sets) == 1 and gang.pod_sets[0].min_count is None
            and bool((prepared.units[0] == 1).all()))


def all_candidates(cluster: Cluster, prepared: PreparedGang, fit: np.ndarray) -> list[np.ndarray | None]:
    """Every candidate, None where one finds no place, in the kernel's order (csrc/_core.pyx
    ``rival_candidates``): Kueue's pooled descent on rooms capped at the count (the kernel's
    caps), KAI flat, KAI bin packing, Kueue's descent on its own uncapped state (domains holding
    the gang compared by how much they hold: the truly tightest, not the first of the capped
    ties; uncapped sums of the node caps, which equal Kueue's whenever the kernel's answer is not
    proved, as no node then holds more than the count), children pooled in Kueue's order."""
    count = int(prepared.gang.pod_sets[0].count)
    caps = level_caps(cluster, prepared, fit, count, 0) if cluster.levels else []
    state = level_caps(cluster, prepared, fit, max(int(fit.sum()), count), 0) if cluster.levels else []
    return [largest_first_counts(cluster, prepared, flat=False, fit=fit, caps=caps),
            largest_first_counts(cluster, prepared, flat=True, fit=fit, caps=caps),
            binpack_counts(cluster, prepared, fit=fit, caps=caps),
            largest_first_counts(cluster, prepared, flat=False, fit=fit, caps=state, kueue_order=True)]


def binpack_counts(cluster: Cluster, prepared: PreparedGang, *, fit: np.ndarray, caps: list[np.ndarray]) -> np.ndarray | None:
    """KAI's topology plugin with bin packing: the lowest level where a domain holds the gang,
    the one with the fewest free GPUs among those; inside it, lowest-level domains with more free
    GPUs first and their nodes fullest first; pods in that order, each node as many as fit."""
    ps = prepared.gang.pod_sets[0]
    count = int(ps.count)
    eligible = prepared.eligible[0].astype(bool)
    free = np.asarray(cluster.free_gpus, np.int64)
    dfree = domain_free_gpus(cluster, np.where(eligible, free, 0))
    nodes = np.flatnonzero(eligible)
    n_levels = len(cluster.levels)
    for lv in range(n_levels - 1, max(prepared.required_level, 0) - 1, -1):
        lo = int(cluster.level_offset[lv])
        holds = np.flatnonzero((caps[lv] >= count) & (dfree[lo:lo + caps[lv].size] >= count * ps.gpus)) + lo
        if holds.size:
            d = int(holds[np.argmin(dfree[holds])])
            nodes = nodes[(nodes >= cluster.domain_start[d]) & (nodes < cluster.domain_end[d])]
            break
    else:
        if prepared.required_level >= 0:
            return None
    if n_levels:
        nodes = nodes[np.lexsort((nodes, free[nodes], -dfree[cluster.node_domain[n_levels - 1, nodes]]))]
    nodes = nodes[fit[nodes] > 0]
    take = np.minimum(fit[nodes], count - np.concatenate(([0], np.cumsum(fit[nodes])[:-1])))
    keep = take > 0
    if int(take[keep].sum()) != count:
        return None
    counts = np.zeros(cluster.n_nodes, np.int64)
    counts[nodes[keep]] = take[keep]
    return counts


def largest_first_counts(cluster: Cluster, prepared: PreparedGang, *, flat: bool = False,
                         fit: np.ndarray | None = None, caps: list[np.ndarray] | None = None,
                         kueue_order: bool = False) -> np.ndarray | None:
    """int64[n_nodes]: pods per node of the largest-first candidate, or None if it finds no place.
    ``flat``: descend from the chosen domains straight to their lowest-level domains (KAI's node
    order: its sub-domains most free first) instead of level by level (Kueue's). ``fit`` and
    ``caps`` (``capacity.node_fit`` / ``level_caps``) when the caller has them already.
    ``kueue_order``: the descent pools the chosen domains' children in the chosen domains' order
    (Kueue's), not in id order, so equal rooms are taken in that order."""
    count = int(prepared.gang.pod_sets[0].count)
    fit = node_fit(cluster, prepared, 0) if fit is None else fit
    if int(fit.sum()) < count:
        return None
    n_levels = len(cluster.levels)
    if n_levels == 0:
        return _take(np.arange(cluster.n_nodes), fit, count, cluster.n_nodes)
    caps = level_caps(cluster, prepared, fit, count, 0) if caps is None else caps
    top = max(prepared.required_level, 0)
    chosen, level = None, -1
    for lv in range(n_levels - 1, top - 1, -1):  # 1. the lowest level where one domain holds it
        holds = np.flatnonzero(caps[lv] >= count)
        if holds.size:
            best = holds[np.argmin(caps[lv][holds])]
            chosen, level = np.array([best + int(cluster.level_offset[lv])]), lv
            break
    if chosen is None:
        if prepared.required_level >= 0:
            return None
        ids = np.arange(int(cluster.level_offset[0]), int(cluster.level_offset[1]))
        # 2. several top-level domains (KAI: the whole cluster, its lowest-level domains by room)
        chosen, level = (ids, 0) if flat else (_pick(ids, caps[0], count), 0)
        if chosen is None:
            return None
    if flat and level < n_levels - 1:  # KAI: the chosen domains' lowest-level domains, most room first
        lo, hi = int(cluster.level_offset[n_levels - 1]), int(cluster.level_offset[n_levels])
        starts = cluster.domain_start[lo:hi]
        inside = np.zeros(hi - lo, bool)
        for d in chosen:
            inside |= (starts >= cluster.domain_start[d]) & (starts < cluster.domain_end[d])
        children = np.flatnonzero(inside) + lo
        chosen, level = _pick(children, caps[n_levels - 1][children - lo], count,
                              group=cluster.domain_parent[children]), n_levels - 1
        if chosen is None:
            return None
    for lv in range(level + 1, n_levels):  # 3. the descent, pooled per level
        if kueue_order:  # the chosen domains' children, in the chosen domains' order
            first = cluster.node_domain[lv, cluster.domain_start[chosen]]
            last = cluster.node_domain[lv, cluster.domain_end[chosen] - 1]
            children = np.concatenate([np.arange(a, b + 1) for a, b in zip(first.tolist(), last.tolist())])
            children = children.astype(np.int64)
        else:
            children = np.flatnonzero(np.isin(cluster.domain_parent[cluster.level_offset[lv]:cluster.level_offset[lv + 1]],
                                              chosen)) + int(cluster.level_offset[lv])
        chosen = _pick(children, caps[lv][children - int(cluster.level_offset[lv])], count)
        if chosen is None:
            return None
    nodes = np.concatenate([np.arange(int(cluster.domain_start[d]), int(cluster.domain_end[d])) for d in chosen])
    return _take(nodes, fit, count, cluster.n_nodes)


def _pick(ids: np.ndarray, room: np.ndarray, count: int, group: np.ndarray | None = None) -> np.ndarray | None:
    """Domains ``ids`` (with ``room`` pods each) most room first until ``count`` is covered; the
    last one is the best fit among those left (the least room that still holds the rest). With
    ``group`` (each domain's parent domain), the last one comes from a parent already used when
    one there holds the rest: no new parent for the sake of a tighter fit.

    Sorted once, most room first: among the domains not taken yet (a suffix), the ones holding
    the rest are a prefix of it, so one vectorised binary search over every prefix finds where
    the pick ends."""
    order = np.argsort(-room, kind="stable")
    desc = -room[order]  # ascending
    # rest[k]: what is left to place once the k roomiest are taken; m[k]: how many of the sorted
    # domains (from the roomiest) hold rest[k]; the first k with m[k] > k ends the pick
    rest = count + np.concatenate(([0], np.cumsum(desc[:-1])))
    m = np.searchsorted(desc, -rest, side="right")
    hits = np.flatnonzero((m > np.arange(order.size)) & (rest > 0))
    if not hits.size:
        return None
    k = int(hits[0])
    if k and desc[k - 1] >= 0:  # a domain without room was taken: there was not enough room
        return None
    mk = int(m[k])
    last = order[max(int(np.searchsorted(desc, desc[mk - 1], side="left")), k)]
    if group is not None and k:
        holders = order[k:mk]
        same = holders[np.isin(group[holders], group[order[:k]])]
        if same.size:
            last = same[np.argmin(room[same])]  # the tightest there (first of equals)
    return np.append(ids[order[:k]], ids[last]).astype(np.int64)


def _take(nodes: np.ndarray, fit: np.ndarray, count: int, n_nodes: int) -> np.ndarray | None:
    """Pods onto ``nodes`` as ``_pick`` chooses them, ``min(fit, rest)`` each."""
    picked = _pick(nodes, fit[nodes], count)
    if picked is None:
        return None
    picked = picked[np.lexsort((picked, -fit[picked]))]  # most room first, then topology order
    take = np.minimum(fit[picked], count - np.concatenate(([0], np.cumsum(fit[picked])[:-1])))
    if take.sum() != count or (take <= 0).any():
        return None
    counts = np.zeros(n_nodes, np.int64)
    counts[picked] = take
    return counts

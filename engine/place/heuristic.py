"""The native heuristic placer: hierarchical best fit, one pod set at a time.

Algorithm overview (the per-pod-set search is ``_core.place_pod_set``, see csrc/_core.pyx):
1. Pod sets go in order of GPUs per pod, largest first (workers before their leader).
2. The first pod set is placed over the whole cluster (inside one ``required`` domain if asked).
3. Each later pod set is placed inside the lowest domain holding every pod placed so far,
   widening one level at a time while it does not fit whole (never past a ``required`` domain),
   so leaders and helpers land next to their workers; best fit puts them on nodes already used.
4. If a later pod set cannot reach its minimum inside the ``required`` domain the first set
   chose, that domain is excluded and the gang is tried again (a bounded number of times); the
   same when an elastic set got fewer pods than its count there (the answer with the best
   objective is kept).
5. If a pod set still does not fit, the pod set that failed first moves to the front of the
   order and the gang is tried again (each order once). If no order fits: every pod set at its
   minimum first, elastic pods topped up after (``_minimum_first``); then first-fit decreasing
   over single pods (``_pod_by_pod``). When an elastic set comes up short, placing it first and
   minimum-first are tried too, and the best answer is kept.
6. Anchoring (several pod sets): at the top-most counted level where the answer uses more domains
   than the bounds allow (bound 1), the gang is placed again as if that level were ``required``;
   the better answer is kept. One pod set is a single kernel call (steps 2 and 7 only).
7. Bounds: each pod set's lower bound per level and its most placeable pods are computed on the
   free capacity before the gang; if the answer meets them on every counted level it is proved
   optimal (parts (1) and (2) of the objective).
"""
from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np

from .._core import N_RIVALS, KernelTopology, best_rival, place_pod_set
from ..model.cluster import Cluster
from . import largest_first
from .capacity import FreeCapacity, ancestors, common_domain, pods_fitting
from .objective import OBJECTIVE_MODE, POD_ROOM
from .request import PreparedGang
from .solution import Solution, objective_of

MAX_REQUIRED_RETRIES = 8


# the last cluster's (node_domain, KernelTopology): one entry is enough, placement runs on one
# cluster generation at a time. Keyed by the arrays' identity: the topology arrays are built once
# per generation, and the entry keeps them alive, so an id is never reused while cached.
_topology_cache: list = [None]


def kernel_topology(cluster: Cluster) -> KernelTopology:
    """The cluster's topology as the kernel reads it (csrc/_core.pxd ``Topology``), built once."""
    hit = _topology_cache[0]
    if hit is not None and hit[0] is cluster.node_domain:
        topo = hit[1]
        if (topo.level_offset is cluster.level_offset and topo.domain_start is cluster.domain_start
                and topo.domain_end is cluster.domain_end):
            return topo
    topo = KernelTopology(cluster.node_domain, cluster.level_offset, cluster.domain_start, cluster.domain_end)
    _topology_cache[0] = (cluster.node_domain, topo)
    return topo


FIT_CACHE_SHAPES = 8  # request shapes whose fit sums a tracked cluster keeps (least recently used dropped)


def fit_cache(cluster: Cluster, prepared: PreparedGang, free: FreeCapacity, i: int) -> list | None:
    """The kernel's fit cache (``FitCache`` in csrc/_core.pxd) for pod set ``i`` placed over the
    whole cluster's own free arrays with its prepared eligibility, or None when it cannot be used
    (then the kernel computes every node's fit, as without a cache).

    Usable only when the cluster tracks its writes (``Cluster.track_writes``: every write bumps
    its lowest-level domain's version, which the kernel compares), ``free`` holds exactly the
    tracked arrays (a projected copy swapped in is a different object: no cache), and
    ``prepared.eligible[i]`` was built at the tracker's current ``sched_generation`` (a cordon
    since would make it stale). The entry is keyed by everything a node's fit depends on: GPUs,
    CPU and memory per pod, the count (fits are capped at it), the node-level slice unit and the
    node selector. Returns [lock, node caps, per-domain sums] with the lock held (the caller
    releases it); a busy entry (another thread's kernel call) gives None."""
    stamp = prepared.stamp
    if stamp is None:  # untracked, or fewer nodes than request.CACHE_MIN_NODES
        return None
    t = cluster.write_tracker
    if (t is None or stamp[0] is not t or stamp[1] != t.sched_generation or not cluster.levels
            or free.gpus is not t.views[0] or free.cpu is not t.views[1] or free.mem is not t.views[2]
            or free.pods is not t.views[3]):
        return None
    ps = prepared.gang.pod_sets[i]
    key = ("fit", ps.gpus, ps.cpu, ps.memory, ps.count, int(prepared.units[i][-1]),
           tuple(sorted(ps.node_selector.items())) if ps.node_selector else ())
    caches = t.caches
    entry = caches.pop(key, None)
    if entry is None:
        seen = np.empty((5, len(t.version)), np.int64)
        seen[0] = -1  # never computed
        entry = [threading.Lock(), np.empty(cluster.n_domains + cluster.n_nodes + 1, np.int64), seen]
        fits = [k for k in caches if k[0] == "fit"]
        if len(fits) >= FIT_CACHE_SHAPES:
            caches.pop(fits[0], None)  # the least recently used (another thread may have dropped it)
    caches[key] = entry  # most recently used last
    return entry if entry[0].acquire(blocking=False) else None


def run_kernel(cluster: Cluster, prepared: PreparedGang, free: FreeCapacity, i: int, root: int, eligible: np.ndarray,
               required: int, rivals: tuple | None = None, used: np.ndarray | None = None,
               cache: list | None = None) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """One ``place_pod_set`` call for pod set ``i`` on ``free``, inside domain ``root`` (-1: all).
    Returns (pods placed or -1, counts int64[n_nodes], lower bounds and most pods in one domain,
    both int64[n_levels + 1]). ``rivals``: (nodes, take, length) arrays (``rival_arrays``) the kernel
    fills with the rivals' candidates when its answer is not proved optimal. ``used``: int64[count + 1]
    the kernel fills with the nodes it used (``place_pod_set``'s ``out_used``). ``cache``: an entry of
    ``fit_cache`` for exactly this call (whole cluster, ``free`` the cluster's arrays, the prepared
    eligibility), its lock held by the caller."""
    ps = prepared.gang.pod_sets[i]
    L = len(cluster.levels)
    counts = np.zeros(cluster.n_nodes, np.int64)
    lb = np.zeros(L + 1, np.int64)
    maxfit = np.zeros(L + 1, np.int64)
    request = {"gpus": ps.gpus, "cpu": ps.cpu, "mem": ps.memory, "count": ps.count, "min_count": ps.required_count,
               "required_level": required, "preferred_level": prepared.preferred_level, "root_domain": root,
               "bottom_up": prepared.objective != "topdown", "pod_room": prepared.objective in POD_ROOM,
               "rivals": rivals is not None}
    cached = () if cache is None else (cluster.write_tracker.version, cache[1], cache[2])
    n = place_pod_set(kernel_topology(cluster), free.gpus, free.cpu, free.mem, free.pods, eligible,
                      prepared.units[i], request, counts, lb, maxfit, *(rivals or (None, None, None)), used, *cached)
    return n, counts, lb, maxfit


def rival_arrays(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's output arrays for the rivals' candidates of a pod set of ``count`` pods (in
    ``largest_first.all_candidates``' order): nodes and pods per node int64[N_RIVALS, count], entries
    per candidate int64[N_RIVALS] (-1: no place; the kernel writes every entry)."""
    return (np.empty((N_RIVALS, count), np.int64), np.empty((N_RIVALS, count), np.int64),
            np.empty(N_RIVALS, np.int64))


def bounds(cluster: Cluster, prepared: PreparedGang) -> tuple[np.ndarray, tuple[int, ...]]:
    """Per level, the fewest domains any placement needs; per pod set, the most pods placeable."""
    free = FreeCapacity.of(cluster)
    lb = np.zeros(len(cluster.levels) + 1, np.int64)
    max_pods = []
    for i in range(len(prepared.gang.pod_sets)):
        n, _, lb_i, _ = run_kernel(cluster, prepared, free, i, -1, prepared.eligible[i], prepared.required_level)
        max_pods.append(max(n, 0))
        lb = np.maximum(lb, lb_i)
    return lb, tuple(max_pods)


def place_heuristic(cluster: Cluster, prepared: PreparedGang, *, rival_starts: bool = True) -> Solution:
    """Hierarchical best fit (see the module docstring). When a later pod set does not fit next to
    the earlier ones, the pod set that failed is moved to the front and the gang is tried again
    (each order at most once): an elastic set placed first no longer takes the room a rigid one
    needs, and a set with a node selector no longer loses its few nodes to an unselective one."""
    if len(prepared.order) == 1:
        return _place_single(cluster, prepared, rival_starts)
    sol = _place_multi(cluster, prepared)
    if not sol.placed:
        fallback = _minimum_first(cluster, prepared)
        if fallback is None or not fallback.placed:
            fallback = _pod_by_pod(cluster, prepared)
        if fallback is None or not fallback.placed:
            return sol
        sol = fallback
    elif sum(int(c.sum()) for c in sol.counts) < prepared.gang.size:
        # an elastic set came up short: placing it first, or every set at its minimum first, may
        # leave it more room; keep the best answer
        short = tuple(i for i, (ps, c) in enumerate(zip(prepared.gang.pod_sets, sol.counts)) if c.sum() < ps.count)
        order = (*short, *(i for i in prepared.order if i not in short))
        best_key = objective_of(cluster, prepared, sol).key
        for alt in (_place_in_order(cluster, prepared, order), _minimum_first(cluster, prepared)):
            if alt is not None and alt.placed:
                key = objective_of(cluster, prepared, alt).key
                if key < best_key:
                    sol, best_key = alt, key
    return _anchor(cluster, prepared, sol)


FALLBACK_MAX_PODS = 512  # pod-by-pod fallback: larger gangs skip it (a Python loop per pod)
FALLBACK_MAX_DOMAINS = 8  # required-level domains it tries, most free GPUs first


def _pod_by_pod(cluster: Cluster, prepared: PreparedGang) -> Solution | None:
    """Last resort when every pod-set order fails (pod sets competing for GPUs and pod slots):
    first-fit decreasing over single pods, biggest GPU request first, each on the best-fitting
    node already used by the gang if one has room, else the best-fitting node (fewest free GPUs
    left, then topology order). Minimums first, then elastic pods while they fit. Gangs with slices
    (pods must move in slice units) or more than FALLBACK_MAX_PODS pods are not tried."""
    gang = prepared.gang
    if gang.topology.slices or gang.size > FALLBACK_MAX_PODS or cluster.n_nodes == 0:
        return None
    if prepared.required_level >= 0:
        doms = list(cluster.level_domains(prepared.required_level))
        free_in = np.bincount(cluster.node_domain[prepared.required_level], weights=cluster.free_gpus,
                              minlength=cluster.n_domains)
        doms.sort(key=lambda d: -free_in[d])
        regions = [(int(cluster.domain_start[d]), int(cluster.domain_end[d])) for d in doms[:FALLBACK_MAX_DOMAINS]]
    else:
        regions = [(0, cluster.n_nodes)]
    need = [(ps.gpus, ps.cpu, ps.memory) for ps in gang.pod_sets]
    rigid = sorted((i for i, ps in enumerate(gang.pod_sets) for _ in range(ps.required_count)),
                   key=lambda i: (-need[i][0], -need[i][1], -need[i][2], i))
    extra = sorted((i for i, ps in enumerate(gang.pod_sets) for _ in range(ps.count - ps.required_count)),
                   key=lambda i: (-need[i][0], -need[i][1], -need[i][2], i))
    for start, end in regions:
        free = FreeCapacity.copy_of(cluster, slice(start, end))
        used = np.zeros(end - start, bool)
        counts = [np.zeros(cluster.n_nodes, np.int64) for _ in gang.pod_sets]
        ok = True
        for pods, must in ((rigid, True), (extra, False)):
            for i in pods:
                ps = gang.pod_sets[i]
                fit = (prepared.eligible[i][start:end] != 0) & (pods_fitting(*free.as_tuple(), ps, 1) >= 1)
                cand = np.flatnonzero(fit)
                if not len(cand):
                    if must:
                        ok = False
                        break
                    continue
                near = cand[used[cand]]
                cand = near if len(near) else cand
                j = int(cand[np.argmin(free.gpus[cand])])
                free.take_at(j, 1, ps)
                used[j] = True
                counts[i][start + j] += 1
            if not ok:
                break
        if ok:
            sol = Solution(counts=counts, placed=True, placer="heuristic")
            sol.lower_bound, sol.max_pods = bounds(cluster, prepared)
            return sol
    return None


def _minimum_first(cluster: Cluster, prepared: PreparedGang) -> Solution | None:
    """Fallback when no order fits: elastic pod sets taking as many pods as fit can starve the
    others. Place every pod set at its minimum first (elastic sets as rigid ones of ``min_count``
    pods), then top each elastic set up with as many more pods as fit next to the gang. Slices stay
    aligned: both parts put multiples of each slice size in every domain of its level."""
    gang = prepared.gang
    elastic = [i for i, ps in enumerate(gang.pod_sets) if ps.required_count < ps.count]
    if not elastic:
        return None

    def with_sets(changes: dict) -> PreparedGang:
        sets = tuple(changes.get(i, ps) for i, ps in enumerate(gang.pod_sets))
        return replace(prepared, gang=replace(gang, pod_sets=sets))

    minimum = with_sets({i: replace(gang.pod_sets[i], count=gang.pod_sets[i].required_count, min_count=None)
                         for i in elastic})
    base = _place_multi(cluster, minimum, with_bounds=False)
    if not base.placed:
        return None
    counts = [c.copy() for c in base.counts]
    free = FreeCapacity.of(cluster)
    for ps, c in zip(gang.pod_sets, counts):
        free.take(c, ps)
    used = np.sum(counts, axis=0)
    req_domain = -1
    if prepared.required_level >= 0 and used.any():
        req_domain = int(cluster.node_domain[prepared.required_level, int(np.flatnonzero(used)[0])])
    for i in elastic:
        ps = gang.pod_sets[i]
        extra = ps.count - ps.required_count
        top = with_sets({i: replace(ps, count=extra, min_count=0)})
        roots = ancestors(cluster, common_domain(cluster, used), req_domain) if used.any() else \
            ([req_domain] if req_domain >= 0 else [-1])
        best = None
        for root in roots:
            n, c, _, _ = run_kernel(cluster, top, free, i, root, prepared.eligible[i],
                              prepared.required_level if root < 0 else -1)
            if n > 0 and (best is None or n > best[0]):
                best = (n, c)
            if n == extra:
                break
        if best is not None:
            counts[i] = counts[i] + best[1]
            used = used + best[1]
            free.take(best[1], ps)
            if req_domain < 0 and prepared.required_level >= 0:
                req_domain = int(cluster.node_domain[prepared.required_level, int(np.flatnonzero(used)[0])])
    sol = Solution(counts=counts, placed=True, placer="heuristic")
    sol.lower_bound, sol.max_pods = bounds(cluster, prepared)
    return sol


def _place_multi(cluster: Cluster, prepared: PreparedGang, with_bounds: bool = True) -> Solution:
    """Several pod sets in order, moving the pod set that failed first to the front on failure."""
    order = tuple(prepared.order)
    sol = _place_in_order(cluster, prepared, order, with_bounds)
    if sol.placed:
        return sol
    seen = {order}
    attempt = sol
    while not attempt.placed:
        failed = attempt.extra["failed_pod_set"]
        order = (failed, *(i for i in order if i != failed))
        if failed is None or order in seen:
            break
        seen.add(order)
        attempt = _place_in_order(cluster, prepared, order, with_bounds)
    return attempt if attempt.placed else sol


def _anchor(cluster: Cluster, prepared: PreparedGang, sol: Solution) -> Solution:
    """Multi-pod-set gangs: the first pod set takes its own best fit, which may leave no room for
    the others in the same domain. At the top-most counted level where the answer uses more
    domains than the bounds say one placement could (bound 1), place the gang again as if that
    level were ``required`` (every pod in one domain of it) and keep the better answer. The
    alternative satisfies a stronger constraint, so it is feasible for the real request."""
    if sol.lower_bound is None:
        return sol
    s = objective_of(cluster, prepared, sol)
    lb = sol.lower_bound.tolist()
    for level in range(min(s.counted, len(cluster.levels))):
        if s.domains[level] <= lb[level]:
            continue
        if lb[level] != 1 or level <= prepared.required_level:
            return sol
        alt = _place_multi(cluster, replace(prepared, required_level=level), with_bounds=False)
        if not alt.placed:
            return sol
        alt.lower_bound, alt.max_pods = sol.lower_bound, sol.max_pods  # bounds of the real request
        return alt if objective_of(cluster, prepared, alt).key < s.key else sol
    return sol


def _place_single(cluster: Cluster, prepared: PreparedGang, rival_starts: bool = True) -> Solution:
    """One pod set: a single kernel call (the request path's common case, kept allocation-light).
    Same answer as ``_place_in_order`` with one pod set: there is nothing to retry. With
    ``rival_starts`` and the shape they apply to (``largest_first.applies``), the kernel also
    returns the rivals' candidates when its own answer is not proved optimal, and the best by the
    objective's key is kept (the kernel's on ties; ``_core.best_rival`` compares them natively).
    On a cluster that tracks its writes the kernel reuses the fit sums of unchanged domains
    (``fit_cache``; tests/engine/place/test_fit_cache.py compares it with an untracked copy)."""
    ps = prepared.gang.pod_sets[0]
    rivals = rival_arrays(ps.count) if rival_starts and largest_first.applies(prepared) else None
    used = np.empty(ps.count + 1, np.int64)
    free = FreeCapacity.of(cluster)
    cache = fit_cache(cluster, prepared, free, 0)
    try:
        n, c, lb, maxfit = run_kernel(cluster, prepared, free, 0, -1, prepared.eligible[0],
                                      prepared.required_level, rivals, used, cache)
    finally:
        if cache is not None:
            cache[0].release()
    if n < 0:
        sol = Solution(counts=[], placed=False, placer="heuristic")
        sol.extra["maxfit"] = [maxfit]
        sol.extra["failed_pod_set"] = 0
        return sol
    sol = Solution(counts=[c], placed=True, placer="heuristic", lower_bound=lb, max_pods=(n,))
    nodes = used[1:1 + int(used[0])]
    sol.used_cache = (c, nodes)
    if rivals is not None and rivals[2][0] != -2:  # -2: not computed, the kernel's answer is proved
        out_nodes, out_take = np.empty(ps.count, np.int64), np.empty(ps.count, np.int64)
        j = best_rival(kernel_topology(cluster), cluster.free_gpus, ps.gpus, ps.count, prepared.counted_levels,
                       OBJECTIVE_MODE[prepared.objective], nodes, c, *rivals, out_nodes, out_take)
        if j >= 0:
            k = int(rivals[2][j])
            counts = np.zeros(cluster.n_nodes, np.int64)
            counts[out_nodes[:k]] = out_take[:k]
            sol = Solution(counts=[counts], placed=True, placer="heuristic", lower_bound=lb, max_pods=(n,))
            sol.used_cache = (counts, out_nodes[:k])
    return sol


def _place_in_order(cluster: Cluster, prepared: PreparedGang, order: tuple[int, ...],
                    with_bounds: bool = True) -> Solution:
    gang = prepared.gang
    n_sets = len(gang.pod_sets)
    excluded = np.zeros(cluster.n_nodes, bool)
    first_lb = None
    first_maxfit: list[np.ndarray | None] = [None] * n_sets
    first_failed = None  # the pod set that failed first: the one to move to the front
    best_short: tuple | None = None  # (key, Solution): an answer with an elastic set below its count

    def finish(sol: Solution) -> Solution:
        if n_sets == 1:
            sol.lower_bound, sol.max_pods = first_lb, (int(sol.counts[0].sum()),)
        elif with_bounds:
            sol.lower_bound, sol.max_pods = bounds(cluster, prepared)
        return sol

    for _attempt in range(MAX_REQUIRED_RETRIES):
        free = FreeCapacity.of(cluster)
        counts: list[np.ndarray | None] = [None] * n_sets
        used = np.zeros(cluster.n_nodes, np.int64)
        req_domain = -1
        failed = None
        for step, i in enumerate(order):
            elig = prepared.eligible[i] if not excluded.any() else \
                np.ascontiguousarray(prepared.eligible[i] & ~excluded, np.uint8)
            if step == 0:
                n, c, lb, maxfit = run_kernel(cluster, prepared, free, i, -1, elig, prepared.required_level)
                if first_lb is None:
                    first_lb = lb
                first_maxfit[i] = maxfit if first_maxfit[i] is None else first_maxfit[i]
            else:
                best = None
                roots = ancestors(cluster, common_domain(cluster, used), req_domain) if used.any() else \
                    ([req_domain] if req_domain >= 0 else [-1])
                if used.any():
                    # nodes the gang already uses first: no new domain or node, fewer GPUs stranded
                    on_used = np.ascontiguousarray(elig & (used > 0), np.uint8)
                    n, c, lb, maxfit = run_kernel(cluster, prepared, free, i, roots[0], on_used,
                                            prepared.required_level if roots[0] < 0 else -1)
                    if n == gang.pod_sets[i].count:
                        best, roots = (n, c), []
                for root in roots:
                    req = prepared.required_level if root < 0 else -1
                    n, c, lb, maxfit = run_kernel(cluster, prepared, free, i, root, elig, req)
                    if first_maxfit[i] is None:
                        first_maxfit[i] = maxfit
                    if n >= 0 and (best is None or n > best[0]):
                        best = (n, c)
                    if n == gang.pod_sets[i].count:
                        break
                n, c = best if best is not None else (-1, None)
            if n < 0:
                failed = i
                break
            if req_domain < 0 and prepared.required_level >= 0 and c.any():
                # the first pod set that places pods fixes the required domain for the others
                req_domain = int(cluster.node_domain[prepared.required_level, int(np.flatnonzero(c)[0])])
            counts[i] = c
            used += c
            free.take(c, gang.pod_sets[i])
        if failed is None:
            sol = Solution(counts=counts, placed=True, placer="heuristic")
            if req_domain < 0 or n_sets == 1 or sum(int(c.sum()) for c in counts) == gang.size:
                if best_short is not None and objective_of(cluster, prepared, sol).key > best_short[0]:
                    sol = best_short[1]
                return finish(sol)
            # an elastic pod set got fewer pods than its count inside the required domain the first
            # set chose: remember this answer and see whether another domain holds more
            key = objective_of(cluster, prepared, sol).key
            if best_short is None or key < best_short[0]:
                best_short = (key, sol)
            failed = order[0]
        elif first_failed is None:
            first_failed = failed
        if req_domain < 0 or (failed == order[0] and best_short is None):
            break
        # a later pod set did not fit (or not whole) next to the first inside the required domain:
        # try another
        s, e = cluster.domain_start[req_domain], cluster.domain_end[req_domain]
        excluded[s:e] = True
    if best_short is not None:
        return finish(best_short[1])
    sol = Solution(counts=[], placed=False, placer="heuristic")
    sol.extra["maxfit"] = first_maxfit
    sol.extra["failed_pod_set"] = first_failed if first_failed is not None else failed
    return sol

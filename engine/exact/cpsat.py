"""The exact placer: an OR-Tools CP-SAT model of the whole placement contract (docs/placement.md).

Model (one integer per (pod set, node), never pod x node booleans; see STACK.md):
- ``x[s, n]``: pods of pod set ``s`` on node ``n``, ``0 .. fit[s, n]`` where ``fit`` is the most
  pods of ``s`` the node holds alone (GPU, CPU, memory, pod slots, selector, cordon); a node-level
  slice makes it ``unit * z``. When several pod sets share a node, one capacity row per binding
  resource (GPUs, CPU, memory, pod slots).
- ``u[n]``: node used; ``y[d]``: domain ``d`` used, linked bottom-up
  (``sum(children used) <= n_children * y[d]``) plus the *capacity-cover cuts*
  ``sum_d cap[s, d] * y[d] >= pods[s]`` per level, which give the LP the top-j covering bound.
- slices: per pod set and slice level, every domain's pod count is ``unit * z`` (pods are
  numbered in topology order, so this is exactly "every ``unit`` consecutive pods share a domain");
  ``required``: at most one domain of that level used; ``min_count <= pods[s] <= count``.

Objective, lexicographic (engine/place/objective.py): ``-pods``, domains at L0, L1, ... (counted levels,
the node count last), then stranded GPUs (free GPUs left in touched nodes and domains) in the
order of part (3): nodes, lowest level, ..., top level by default (``stranded_order``).

Exact lexicographic order (the proof): components ``c_1 .. c_m`` are integer expressions with known
ranges ``c_i in [lo_i, hi_i]``. A stage minimises ``sum_i w_i * (c_i - lo_i)`` with ``w_m = 1`` and
``w_i = w_{i+1} * (hi_{i+1} - lo_{i+1} + 1)``, so ``w_i > sum_{j>i} w_j * (hi_j - lo_j)``: lowering
``c_i`` by one gains ``w_i``, more than any change of all later components can lose, hence the
weighted minimum is the lexicographic minimum. Components are grouped into stages whose weights
stay below 2**50 (far from int64 overflow, and kind to the LP); after a stage is *proved* optimal
its weighted value is fixed by a constraint and the next stage runs. A stage that only finds a
feasible answer before the deadline ends the search: the best answer so far is returned, with the
gap on the first component above its bound.

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

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..model.cluster import Cluster
from ..place.objective import stranded_order
from ..place.request import PreparedGang
from ..place.solution import Solution

log = logging.getLogger(__name__)

MAX_STAGE_WEIGHT = 1 << 50
BIG = 1 << 60


def load_cp_model():
    """Import OR-Tools CP-SAT (lazily: the import costs ~0.6 s)."""
    from ortools.sat.python import cp_model
    return cp_model


# ----------------------------------------------------------------------------- capacities
def node_fit(cluster: Cluster, prepared: PreparedGang, s: int, free=None) -> np.ndarray:
    """int64[n_nodes]: pods of pod set ``s`` each node holds alone (0 where not eligible)."""
    ps = prepared.gang.pod_sets[s]
    fg, fc, fm, fp = free if free is not None else (cluster.free_gpus, cluster.free_cpu, cluster.free_mem,
                                                   cluster.free_pods)
    v = np.asarray(fp, np.int64).copy()
    if ps.gpus:
        v = np.minimum(v, np.asarray(fg, np.int64) // ps.gpus)
    if ps.cpu:
        v = np.minimum(v, np.asarray(fc, np.int64) // ps.cpu)
    if ps.memory:
        v = np.minimum(v, np.asarray(fm, np.int64) // ps.memory)
    v = np.clip(v, 0, ps.count)
    v[~prepared.eligible[s].astype(bool)] = 0
    u = int(prepared.units[s][-1])
    if u > 1:
        v -= v % u
    return v


def level_caps(cluster: Cluster, prepared: PreparedGang, fit: np.ndarray, count: int, s: int) -> list[np.ndarray]:
    """Per level (top first) the pods of one pod set each domain of the level holds, capped at
    ``count`` and rounded down to the slice unit at every level below and at it (a slice sits in
    one domain). Indexed by global domain id minus ``level_offset[l]``."""
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


# ----------------------------------------------------------------------------- lexicographic bound
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
        # 2./3. per parent (unique parent) or globally: the cover bound
        if unique_parent and lv > 0:
            need = np.zeros(n_par, np.int64)
            for s in range(n_sets):
                if pods[s] > 0:
                    need = np.maximum(need, grouped_cover(np.where(keep, vals[s], 0), parent, n_par, pods[s]))
            bad_parent = need > K
            keep &= ~bad_parent[parent]
            lb = int(need.min()) if len(need) else BIG
        else:
            lb = 0
            for s in range(n_sets):
                if pods[s] > 0:
                    lb = max(lb, min_cover(np.where(keep, vals[s], 0), pods[s]))
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


# ----------------------------------------------------------------------------- the model
@dataclass
class CpsatResult:
    solution: Solution
    status: str
    stages: int
    proved_12: bool
    build_ms: float
    solve_ms: float
    n_vars: int


def _domain_free(cluster: Cluster) -> tuple[list[np.ndarray], np.ndarray]:
    """Free GPUs per domain of each level (all nodes, as engine/place/objective.py counts them)."""
    cs = np.r_[0, np.cumsum(cluster.free_gpus.astype(np.int64))]
    per_level = []
    for lv in range(len(cluster.levels)):
        lo, hi = int(cluster.level_offset[lv]), int(cluster.level_offset[lv + 1])
        per_level.append(cs[cluster.domain_end[lo:hi]] - cs[cluster.domain_start[lo:hi]])
    return per_level, cluster.free_gpus.astype(np.int64)


def solve_cpsat(cluster: Cluster, prepared: PreparedGang, hint: Solution | None = None, *,
                time_limit_ms: float = 100.0, workers: int = 1, seed: int = 0,
                bound: LexBound | None = None, deadline: float | None = None,
                restrict: np.ndarray | None = None) -> CpsatResult:
    """Solve the placement exactly (or as well as the time allows). ``hint``: the heuristic's answer.

    ``deadline`` (perf_counter seconds) overrides ``time_limit_ms`` when given; model building
    counts against the budget. ``restrict`` (bool[n_nodes]): solve only over these nodes (a
    neighbourhood search: the answer is optimal within it; ``proved_12`` then means "meets the
    global lower bound", checked by the caller).
    """
    from ortools.sat.python import cp_model
    LE = cp_model.LinearExpr

    t0 = time.perf_counter()
    if deadline is None:
        deadline = t0 + time_limit_ms / 1e3
    gang = prepared.gang
    L = len(cluster.levels)
    n_sets = len(gang.pod_sets)
    fits = [node_fit(cluster, prepared, s) for s in range(n_sets)]
    hint_domains = None
    if hint is not None and hint.placed:
        from ..place.solution import score_solution
        hint_domains = score_solution(cluster, prepared, hint).domains
    if bound is None:
        bound = lex_bound(cluster, prepared, hint if hint is not None else Solution([], False, "none"),
                          fits, hint_domains)
    cand = bound.nodes if restrict is None else (bound.nodes & restrict)
    nodes = np.flatnonzero(cand)
    m = len(nodes)
    counted = prepared.counted_levels
    model = cp_model.CpModel()

    # ---- x[s][k], pods per (pod set, candidate node)
    x: list[list] = []
    fit_c = [f[nodes] for f in fits]
    pods_expr = []
    for s, ps in enumerate(gang.pod_sets):
        unit_node = int(prepared.units[s][-1])
        row = []
        for k in range(m):
            if not k & 1023 and time.perf_counter() > deadline:  # big models: stop building in time
                return _out_of_time(cluster, hint, bound, t0, len(model.proto.variables), m)
            f = int(fit_c[s][k])
            if f <= 0:
                row.append(None)
            elif unit_node > 1:
                z = model.new_int_var(0, f // unit_node, "")
                v = model.new_int_var(0, f, "")
                model.add(v == unit_node * z)
                row.append(v)
            else:
                row.append(model.new_bool_var("") if f == 1 else model.new_int_var(0, f, ""))
        x.append(row)
    # ---- node used
    single_unit = n_sets == 1 and all(int(f) == 1 for f in fit_c[0]) and int(prepared.units[0][-1]) == 1
    u = []
    for k in range(m):
        if not k & 1023 and time.perf_counter() > deadline:
            return _out_of_time(cluster, hint, bound, t0, len(model.proto.variables), m)
        if single_unit:
            u.append(x[0][k])
            continue
        terms = [x[s][k] for s in range(n_sets) if x[s][k] is not None]
        if n_sets == 1 and len(terms) == 1 and int(fit_c[0][k]) == 1:
            u.append(terms[0])
            continue
        b = model.new_bool_var("")
        total_fit = sum(int(fit_c[s][k]) for s in range(n_sets))
        model.add(LE.sum(terms) <= total_fit * b)
        u.append(b)
    # ---- shared node capacity when several pod sets may share a node
    if n_sets > 1:
        node_ids = nodes
        for res, free in (("gpus", cluster.free_gpus), ("cpu", cluster.free_cpu), ("memory", cluster.free_mem),
                          (None, cluster.free_pods)):
            req = [(getattr(ps, res) if res else 1) for ps in gang.pod_sets]
            if not any(req):
                continue
            for k in range(m):
                terms = [(x[s][k], req[s]) for s in range(n_sets) if x[s][k] is not None and req[s]]
                if len(terms) < 2:
                    continue
                most = sum(int(fit_c[s][k]) * req[s] for s in range(n_sets) if x[s][k] is not None)
                if most <= int(free[node_ids[k]]):
                    continue
                model.add(LE.weighted_sum([v for v, _ in terms], [r for _, r in terms]) <= int(free[node_ids[k]]))
    # ---- pods per pod set
    for s, ps in enumerate(gang.pod_sets):
        vs = [v for v in x[s] if v is not None]
        e = LE.sum(vs) if vs else 0
        pods_expr.append(e)
        if bound.pods_fixed is not None:
            model.add(e == bound.pods_fixed[s])
        else:
            model.add(e >= ps.required_count)
            model.add(e <= ps.count)
    if time.perf_counter() > deadline:
        return _out_of_time(cluster, hint, bound, t0, len(model.proto.variables), m)
    # ---- domains, bottom-up
    dom_free, node_free = _domain_free(cluster)
    y_level: list[tuple[np.ndarray, list]] = [None] * L  # type: ignore[list-item]
    child_vars = u
    for lv in range(L - 1, -1, -1):
        lo = int(cluster.level_offset[lv])
        dom_of_node = cluster.node_domain[lv, nodes] - lo
        doms = np.unique(dom_of_node)
        yv = [model.new_bool_var("") for _ in range(len(doms))]
        pos = np.searchsorted(doms, dom_of_node)  # per node: index into doms
        # link children -> y
        if lv == L - 1:
            ch_pos = pos
        else:
            below_doms = y_level[lv + 1][0]
            below_parent = cluster.domain_parent[below_doms + int(cluster.level_offset[lv + 1])] - lo
            ch_pos = np.searchsorted(doms, below_parent)
        groups: dict[int, list] = {}
        for c, p in enumerate(ch_pos.tolist()):
            groups.setdefault(p, []).append(child_vars[c])
        for p, vs in groups.items():
            if len(vs) == 1:
                model.add(vs[0] <= yv[p])
            else:
                model.add(LE.sum(vs) <= len(vs) * yv[p])
        y_level[lv] = (doms, yv)
        # slices at this level: per pod set, each domain's count is a multiple of the unit
        for s in range(n_sets):
            unit = int(prepared.units[s][lv])
            if unit > 1:
                fsum = np.bincount(pos, weights=fit_c[s], minlength=len(doms)).astype(np.int64)
                per: dict[int, list] = {}
                for k, p in enumerate(pos.tolist()):
                    if x[s][k] is not None:
                        per.setdefault(p, []).append(x[s][k])
                for p, vs in per.items():
                    z = model.new_int_var(0, int(fsum[p]) // unit, "")
                    model.add(LE.sum(vs) == unit * z)
        child_vars = yv
    # capacity-cover cuts, per level and pod set: sum cap[s, d] y[d] >= pods[s]
    cand_fits = [np.where(cand, f, 0) for f in fits]
    for s, ps in enumerate(gang.pod_sets):
        caps = level_caps(cluster, prepared, cand_fits[s], ps.count, s)
        for lv in range(L):
            doms, yv = y_level[lv]
            cv = caps[lv][doms]
            terms = [(yv[i], int(c)) for i, c in enumerate(cv.tolist()) if c > 0]
            if terms:
                model.add(LE.weighted_sum([v for v, _ in terms], [c for _, c in terms]) >= pods_expr[s])
        terms = [(u[k], int(fit_c[s][k])) for k in range(m) if fit_c[s][k] > 0]
        if terms and not single_unit:
            model.add(LE.weighted_sum([v for v, _ in terms], [c for _, c in terms]) >= pods_expr[s])
    # required level
    if prepared.required_level >= 0 and L:
        model.add(LE.sum(y_level[prepared.required_level][1]) <= 1)
    # domain count expressions
    dcount = [LE.sum(y_level[lv][1]) if y_level[lv][1] else 0 for lv in range(L)] + [LE.sum(u) if u else 0]
    ndoms = [len(y_level[lv][1]) for lv in range(L)] + [m]
    # fixed/proved levels
    if bound.pods_fixed is not None and bound.domain_counts:
        for lv in range(min(bound.proved_levels, counted)):
            model.add(dcount[lv] == int(bound.domain_counts[lv]))
        j = bound.proved_levels
        if j < counted:
            model.add(dcount[j] <= int(bound.domain_counts[j]))
            model.add(dcount[j] >= int(bound.lower[j]))
    # ---- objective components: (expr, lo, hi, kind)
    total_count = sum(ps.count for ps in gang.pod_sets)
    gpus_expr = LE.weighted_sum([pods_expr[s] for s, ps in enumerate(gang.pod_sets) if ps.gpus],
                                [ps.gpus for ps in gang.pod_sets if ps.gpus]) if gang.total_gpus else 0
    gmax = sum(ps.gpus * ps.count for ps in gang.pod_sets)
    comps = []
    if bound.pods_fixed is None:
        comps.append((-LE.sum(pods_expr), -total_count, 0, "pods"))
    for lv in range(counted):
        comps.append((dcount[lv], 0, ndoms[lv], f"domains{lv}"))
    stranded = []
    for lv in range(L):
        doms, yv = y_level[lv]
        fr = dom_free[lv][doms]
        stranded.append((LE.weighted_sum(yv, fr.tolist()) - gpus_expr, -gmax, int(fr.sum()),
                         f"stranded{lv}"))
    nf = node_free[nodes]
    stranded.append((LE.weighted_sum(u, nf.tolist()) - gpus_expr, -gmax, int(nf.sum()), "strandedN"))
    comps.extend(stranded[lv] for lv in stranded_order(L, prepared.objective))  # part (3), in its order
    # hints
    if hint is not None and hint.placed:
        for s in range(n_sets):
            hc = hint.counts[s][nodes]
            for k in range(m):
                if x[s][k] is not None:
                    model.add_hint(x[s][k], int(min(hc[k], fit_c[s][k])))
    n_vars = len(model.proto.variables)
    build_ms = (time.perf_counter() - t0) * 1e3
    if time.perf_counter() > deadline:
        return _out_of_time(cluster, hint, bound, t0, n_vars, m)

    # ---- staged lexicographic solve
    stages = []
    cur: list = []
    span = 1
    n_12 = (0 if bound.pods_fixed is not None else 1) + counted  # components of parts (1)+(2)
    for i, comp in enumerate(comps):
        r = comp[2] - comp[1] + 1
        if cur and (span * r > MAX_STAGE_WEIGHT or i == n_12):  # parts (1)-(2) get their own stage(s)
            stages.append(cur)
            cur, span = [], 1
        cur.append(comp)
        span *= r
    if cur:
        stages.append(cur)
    solver = cp_model.CpSolver()
    prm = solver.parameters
    prm.num_workers = max(1, int(workers))
    prm.random_seed = int(seed)
    if workers <= 1:
        prm.linearization_level = 2
    if m > 256:
        prm.symmetry_level = 0  # symmetry detection on big models overran the time limit by seconds
    best_counts = None
    status_name = "UNKNOWN"
    done_comps = 0
    proved_12 = False
    gap = None
    n_stages = 0
    t_solve = time.perf_counter()
    for stage in stages:
        left = deadline - time.perf_counter()
        if left <= 0.001:
            break
        prm.max_time_in_seconds = left
        weights = []
        w = 1
        for comp in reversed(stage):
            weights.append(w)
            w *= comp[2] - comp[1] + 1
        weights.reverse()
        obj = LE.weighted_sum([c[0] for c in stage], weights) - sum(wi * c[1] for wi, c in zip(weights, stage))
        model.minimize(obj)
        st = solver.solve(model)
        n_stages += 1
        status_name = solver.status_name(st)
        if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            break
        vals = solver.response_proto.solution
        best_counts = [np.zeros(cluster.n_nodes, np.int64) for _ in range(n_sets)]
        for s in range(n_sets):
            for k in range(m):
                if x[s][k] is not None:
                    best_counts[s][nodes[k]] = vals[x[s][k].index]
        if st == cp_model.OPTIMAL:
            done_comps += len(stage)
            if done_comps >= n_12:
                proved_12 = True
                gap = 0.0
            value = int(round(solver.objective_value))
            model.add(obj == value)
            # next stage starts from this answer
            model.clear_hints()
            for s in range(n_sets):
                for k in range(m):
                    if x[s][k] is not None:
                        model.add_hint(x[s][k], int(vals[x[s][k].index]))
        else:
            if not proved_12:
                gap = _stage_gap(stage, weights, solver.objective_value, solver.best_objective_bound,
                                 done_comps, n_12)
            break
    solve_ms = (time.perf_counter() - t_solve) * 1e3
    if best_counts is None:
        sol = Solution(counts=[], placed=False, placer="cpsat")
        if status_name == "INFEASIBLE":
            sol.optimal = True  # proved: nothing (with the min_counts) fits
            sol.reason = "does not fit (proved by CP-SAT)"
    else:
        sol = Solution(counts=best_counts, placed=True, placer="cpsat", optimal=proved_12, gap=gap)
        sol.lower_bound = bound.lower
    sol.extra.update({"cpsat_status": status_name, "cpsat_stages": n_stages, "cpsat_vars": n_vars,
                      "cpsat_build_ms": round(build_ms, 3), "cpsat_solve_ms": round(solve_ms, 3),
                      "candidate_nodes": m})
    return CpsatResult(sol, status_name, n_stages, proved_12, build_ms, solve_ms, n_vars)


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


def _out_of_time(cluster: Cluster, hint: Solution | None, bound: LexBound, t0: float, n_vars: int,
                 m: int) -> CpsatResult:
    """The budget ran out while building the model: no CP-SAT answer (the caller keeps the hint)."""
    sol = Solution(counts=[], placed=False, placer="cpsat")
    ms = (time.perf_counter() - t0) * 1e3
    sol.extra.update({"cpsat_status": "BUILD_TIMEOUT", "cpsat_stages": 0, "cpsat_vars": n_vars,
                      "cpsat_build_ms": round(ms, 3), "cpsat_solve_ms": 0.0, "candidate_nodes": m})
    return CpsatResult(sol, "BUILD_TIMEOUT", 0, False, ms, 0.0, n_vars)


def _stage_gap(stage, weights, value: float, bound: float, done: int, n_12: int) -> float | None:
    """Gap on the first component (of parts (1)-(2)) whose value is above its decoded bound."""
    rem_v, rem_b = int(round(value)), int(np.floor(bound + 1e-6))
    for i, (comp, w) in enumerate(zip(stage, weights)):
        if done + i >= n_12:
            return None
        cv, cb = rem_v // w, max(rem_b, 0) // w
        if cv > cb:
            lo = comp[1]
            v, b = cv + lo, cb + lo
            if comp[3] == "pods":  # -pods: value -v pods vs bound -b pods
                return (-b - -v) / -b if b else None
            return (v - b) / v if v else None
        rem_v -= cv * w
        rem_b -= cb * w
    return None


# ----------------------------------------------------------------------------- shared gang builder
@dataclass
class GangVars:
    """One gang's variables inside a larger model (batch placement, preemption planning)."""

    nodes: np.ndarray  # candidate node ids
    x: list[list]  # per pod set, per candidate node: pods (None where the node cannot take any)
    pods: list  # per pod set: expression of pods placed
    dcount: list  # per level then nodes: domains used (only with locality=True)
    n_domains: list[int]


def add_gang(model, cluster: Cluster, prepared: PreparedGang, fits: list[np.ndarray], active=None, *,
             locality: bool = False) -> GangVars:
    """Add a gang's pods-per-node variables and constraints (counts, required, slices) to ``model``.

    ``fits``: per pod set, the most pods each node could take (an upper bound: the caller adds the
    shared node capacity rows). ``active``: a Boolean literal; when false the gang places nothing,
    when true it places between min_count and count of every pod set (None: always active).
    ``locality=True`` also adds node/domain used literals and the domain count per level.
    """
    from ortools.sat.python import cp_model
    LE = cp_model.LinearExpr
    gang = prepared.gang
    L = len(cluster.levels)
    n_sets = len(gang.pod_sets)
    cand = np.zeros(cluster.n_nodes, bool)
    for f in fits:
        cand |= f > 0
    nodes = np.flatnonzero(cand)
    m = len(nodes)
    x, pods = [], []
    for s, ps in enumerate(gang.pod_sets):
        unit_node = int(prepared.units[s][-1])
        row = []
        fc = fits[s][nodes]
        for k in range(m):
            f = int(fc[k])
            if f <= 0:
                row.append(None)
            elif unit_node > 1:
                z = model.new_int_var(0, f // unit_node, "")
                row.append(z * unit_node)
            else:
                row.append(model.new_int_var(0, f, ""))
        x.append(row)
        vs = [v for v in row if v is not None]
        e = LE.sum(vs) if vs else 0
        pods.append(e)
        lo, hi = ps.required_count, ps.count
        if active is None:
            model.add(e >= lo)
            model.add(e <= hi)
        else:
            model.add(e >= lo * active)
            model.add(e <= hi * active)
    # slices and the required level: per-domain sums
    need_levels = {lv for lv in range(L) if any(int(u[lv]) > 1 for u in prepared.units)}
    if prepared.required_level >= 0:
        need_levels.add(prepared.required_level)
    levels_y = list(range(L)) if locality else sorted(need_levels)
    dcount, n_domains = [], []
    y_of: dict[int, tuple[np.ndarray, list, np.ndarray]] = {}
    for lv in levels_y:
        lo_id = int(cluster.level_offset[lv])
        dom = cluster.node_domain[lv, nodes] - lo_id
        doms, pos = np.unique(dom, return_inverse=True)
        yv = [model.new_bool_var("") for _ in range(len(doms))]
        y_of[lv] = (doms, yv, pos)
        for s in range(n_sets):
            per: dict[int, list] = {}
            capsum = np.bincount(pos, weights=fits[s][nodes], minlength=len(doms)).astype(np.int64)
            for k, p in enumerate(pos.tolist()):
                if x[s][k] is not None:
                    per.setdefault(p, []).append(x[s][k])
            unit = int(prepared.units[s][lv])
            for p, vs in per.items():
                tot = LE.sum(vs)
                model.add(tot <= int(capsum[p]) * yv[p])
                if unit > 1:
                    z = model.new_int_var(0, int(capsum[p]) // unit, "")
                    model.add(tot == unit * z)
        if locality:
            dcount.append(LE.sum(yv))
            n_domains.append(len(yv))
    if prepared.required_level >= 0:
        model.add(LE.sum(y_of[prepared.required_level][1]) <= 1)
    if locality:
        uv = []
        for k in range(m):
            terms = [x[s][k] for s in range(n_sets) if x[s][k] is not None]
            b = model.new_bool_var("")
            model.add(LE.sum(terms) <= sum(int(fits[s][nodes[k]]) for s in range(n_sets)) * b)
            uv.append(b)
        dcount.append(LE.sum(uv) if uv else 0)
        n_domains.append(m)
    return GangVars(nodes, x, pods, dcount, n_domains)


def read_counts(solver, gv: GangVars, n_nodes: int) -> list[np.ndarray]:
    """Pods per node per pod set of a solved GangVars."""
    out = []
    for row in gv.x:
        c = np.zeros(n_nodes, np.int64)
        for k, v in enumerate(row):
            if v is not None:
                c[gv.nodes[k]] = solver.value(v)
        out.append(c)
    return out

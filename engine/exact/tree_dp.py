"""An exact tree DP for gangs of one pod set: the lexicographic optimum of parts (1)-(2) (and as much
of (3) as fits in 60 bits), used by the auto policy as a lower bound and, when it beats the
heuristic, as the answer.

Why it is exact: with one pod set the nodes are independent (a node's fit is its capacity), and the
objective is a sum over *touched* items: touching a domain of a counted level adds one to that
level's count, touching any domain or node adds its free GPUs to that level's stranded sum (minus
the gang's GPUs, a constant once the pod count is fixed), and with the podfit objective touching a
domain adds its pod room (capacity.domain_pod_room) to that level's room sum. Encode the components as one integer in
mixed radix (weights as CP-SAT's stages, engine/exact/cpsat_model.py: ``w_i > sum_{j>i} w_j * (range_j - 1)``, so integer
order is lexicographic order), and the cost of placing ``q`` pods inside an item is

    f_node(q) = cost(node)           for 1 <= q <= fit (multiples of the node slice unit), f(0) = 0
    f_d(q)    = cost(d) + (min-plus convolution of the children's f)(q)   for q >= 1, f_d(0) = 0

with ``f_d(q) = inf`` when ``q`` is not a multiple of the slice unit at d's level. Addition is
monotone in lexicographic order, so the min-plus convolution of optimal children is optimal for
the parent (optimal substructure). The root is the convolution of the top-level domains (or, with
a ``required`` level, the best single domain of that level plus its ancestors). The DP runs on the
candidates of ``bounds.lex_bound`` (engine/exact/bounds.py) (which keep every optimum) and backtracks to an assignment.
"""
from __future__ import annotations

import time

import numpy as np

from ..model.cluster import Cluster
from ..place.capacity import domain_free_gpus, domain_pod_room, level_caps
from ..place import age
from ..place.objective import part3_order
from ..place.request import PreparedGang
from .bounds import grouped_cover

INF = np.int64(1) << np.int64(61)
BUDGET = 1 << 60


class _Tree:
    __slots__ = ("acc", "children", "node_cost", "sorted_nodes")


def _minconv(a: np.ndarray, b: np.ndarray, cap: int) -> np.ndarray:
    """r[q] = min_k a[q - k] + b[k], for q <= cap (INF where impossible).

    The DP calls this a few hundred times per gang, so the fixed cost per call matters as much as
    the arithmetic: a chain's first step is the identity; a short side is looped over (one slice
    update per finite entry); otherwise one numpy pass over a strided sliding-window view of the
    longer side (padded with INF, no copy) against the shorter one reversed. INF entries need no
    special case: INF + x >= INF, clipped at the end (2 INF < 2^63)."""
    n = min(len(a) + len(b) - 1, cap + 1)
    if len(a) == 1 and a[0] == 0:  # the first child of a chain: the identity
        return b[:n].copy()
    if len(a) < len(b):
        a, b = b, a  # b: the shorter side
    m = min(len(b), n)
    if m <= 4:
        r = np.full(n, INF, np.int64)
        la = len(a)
        for k, v in enumerate(b[:m].tolist()):
            if v < INF:
                w = min(la, n - k)
                np.minimum(r[k:k + w], a[:w] + v, out=r[k:k + w])
        np.minimum(r, INF, out=r)
        return r
    pad = np.full(m - 1 + n, INF, np.int64)
    la = min(len(a), n)
    pad[m - 1:m - 1 + la] = a[:la]
    # win[q, j] = pad[q + j] = a[q + j - (m - 1)]: a read-only strided view, no copy
    win = np.ndarray((n, m), np.int64, pad, 0, (8, 8))
    r = (win[:, ::-1] + b[:m]).min(axis=1)
    np.minimum(r, INF, out=r)
    return r


def _distinct(a: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (domain ids of nodes in topology order are sorted).
    Not ``np.unique``: its first call imports ``numpy.ma`` (0.1-0.3 s), which a fresh
    ``gangplace place`` process would pay inside its first DP placement."""
    if len(a) < 2:
        return a.copy()
    keep = np.empty(len(a), bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


class DPTimeout(Exception):
    """The DP passed its deadline (the caller keeps the answer it had)."""


def solve_tree_dp(cluster: Cluster, prepared: PreparedGang, fit: np.ndarray, pods: int, cand: np.ndarray,
           unique_level: int | None = None, deadline: float | None = None, pod_set: int = 0,
           top_count: int | None = None):
    """The optimal assignment of ``pods`` pods of the (single) pod set over the candidate nodes.

    Returns ``(counts int64[n_nodes], n_components_exact, domains_tuple)`` or ``None`` when the
    components of part (2) do not fit in the 60-bit encoding or nothing fits.
    ``n_components_exact``: how many leading components of (2)+(3) (domain counts on counted
    levels, then stranded GPUs per level and nodes) the answer is proved optimal on.
    ``unique_level``: a level every optimum is known to use exactly one domain of (all levels above
    it too); the DP then evaluates the candidate domains of that level by branch and bound, best
    lower bound first (per-level min-covers inside the domain), and stops when no remaining
    candidate can beat the best found.
    ``deadline`` (perf_counter seconds): raise ``DPTimeout`` when passed.
    ``top_count``: at most this many top-level domains hold an optimum (the heuristic's count when
    it places the pods every optimum places: an optimum is lexicographically at most the heuristic's
    answer, and the top level is its first component). With 2, the root is the best pair of
    top-level domains (``_best_pair``, one vectorised pass) instead of a chain of convolutions
    over all of them.
    """
    L = len(cluster.levels)
    counted = prepared.counted_levels
    unit = prepared.units[pod_set]
    nodes = np.flatnonzero(cand & (fit > 0))
    if pods <= 0 or not len(nodes):
        return None
    free = cluster.free_gpus.astype(np.int64)
    dom_free = domain_free_gpus(cluster)
    # candidate domains per level and their free GPUs
    level_doms = []
    for lv in range(L):
        level_doms.append(_distinct(cluster.node_domain[lv, nodes]))
    dfree = [dom_free[d] for d in level_doms]
    # components: domain counts of counted levels (node count = level L), then stranded per level
    comps = []  # (kind, level, range)
    for lv in range(min(counted, L + 1)):
        comps.append(("D", lv, (len(level_doms[lv]) if lv < L else len(nodes)) + 1))
    n2 = len(comps)
    droom = None
    # objective "age", a one-pod gang: part (3) starts with the node's age, which the DP does not encode
    # (engine/place/age.py decides such gangs): exact on parts (1)-(2) only
    part3 = [] if age.applies(prepared) else part3_order(L, prepared.objective)
    for kind, lv in part3:  # part (3) in the objective's order
        if kind == "pods":
            if droom is None:
                room = domain_pod_room(cluster, prepared.pod_unit)
                droom = [room[d] for d in level_doms]
            comps.append(("U", lv, int(droom[lv].sum()) + 1))
        else:
            comps.append(("S", lv, (int(dfree[lv].sum()) if lv < L else int(free[nodes].sum())) + 1))
    # keep the longest prefix that fits the budget
    span, keep = 1, 0
    for _, _, r in comps:
        if span * r > BUDGET:
            break
        span *= r
        keep += 1
    if keep < n2:
        return None
    comps = comps[:keep]
    w = {}
    acc_w = 1
    for kind, lv, r in reversed(comps):
        w[(kind, lv)] = acc_w
        acc_w *= r
    wD = [w.get(("D", lv), 0) for lv in range(L + 1)]
    wS = [w.get(("S", lv), 0) for lv in range(L + 1)]
    wU = [w.get(("U", lv), 0) for lv in range(L)]
    # per-item cost when touched (domain costs by global domain id)
    node_cost = wD[L] + wS[L] * free[nodes]
    dom_cost_g = np.zeros(cluster.n_domains, np.int64)
    for lv in range(L):
        dom_cost_g[level_doms[lv]] = wD[lv] + wS[lv] * dfree[lv] + (wU[lv] * droom[lv] if wU[lv] else 0)
    u_node = int(unit[L])
    fit_n = fit[nodes]
    cap = pods
    f_child: dict = {}  # item key -> cost array
    back: dict = {}  # item key -> backtracking data

    def build(lo: int, hi: int) -> None:
        """The DP arrays of every item over the candidate nodes nodes[lo:hi] (a whole subtree)."""
        sub = nodes[lo:hi]
        group = (cluster.node_domain[L - 1, sub] if L else np.zeros(len(sub), np.int64))
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        ends = np.r_[starts[1:], len(sub)]
        fu_all = fit_n[lo:hi] // u_node
        if _use_knapsack(int(fu_all.max()), int((ends - starts).max()), len(starts)):
            # many small groups: one knapsack over all of them at once (fewer numpy calls than
            # convolving each group's node classes)
            tables = _group_knapsack(fu_all, node_cost[lo:hi], starts, ends, cap // u_node)
            last = tables[-1]
            tot = np.add.reduceat(fu_all, starts) * u_node
            for r, (s0, e0) in enumerate(zip(starts.tolist(), ends.tolist())):
                arr = np.full(min(cap, int(tot[r])) + 1, INF, np.int64)
                arr[::u_node] = last[r, :len(arr[::u_node])]
                f_child[("n", int(group[s0]))] = arr
                back[("n", int(group[s0]))] = ("knapsack", tables, r, lo + s0, e0 - s0, fu_all[s0:e0],
                                               node_cost[lo + s0:lo + e0])
            starts = ends = np.zeros(0, np.int64)
        for s0, e0 in zip(starts.tolist(), ends.tolist()):
            if deadline is not None and time.perf_counter() > deadline:
                raise DPTimeout()
            key = ("n", int(group[s0]))
            idx = np.arange(lo + s0, lo + e0)
            fu = fu_all[s0:e0]
            if (fu == 1).all():
                order = np.argsort(node_cost[idx], kind="stable")
                k = min(len(order), cap // u_node)
                arr = np.full(min(cap, len(order) * u_node) + 1, INF, np.int64)
                arr[0] = 0
                arr[u_node * np.arange(1, k + 1)] = np.cumsum(node_cost[idx][order][:k])
                f_child[key] = arr
                back[key] = ("sorted", idx[order])
            else:
                # nodes with the same (fit, cost) are interchangeable: j of them hold up to j * fit
                # pods for j * cost, so each class is one child with b[q] = ceil(q / fit) * cost
                acc = np.zeros(1, np.int64)
                steps = []
                cls: dict[tuple[int, int], list[int]] = {}
                for i in idx.tolist():
                    cls.setdefault((int(fit_n[i]), int(node_cost[i])), []).append(i)
                for (f, v), members in cls.items():
                    fu_ = f // u_node
                    top_q = min(len(members) * f, cap)
                    b = np.full(top_q + 1, INF, np.int64)
                    qs = np.arange(0, top_q + 1, u_node)
                    b[qs] = -(-(qs // u_node) // fu_) * v
                    steps.append(((f, v, members), acc, b))
                    acc = _minconv(acc, b, cap)
                f_child[key] = acc
                back[key] = ("classes", steps)
        for lv in range(L - 1, -1, -1):
            doms = _distinct(cluster.node_domain[lv, sub])
            u = int(unit[lv])
            if lv < L - 1:
                below = _distinct(cluster.node_domain[lv + 1, sub])
                kids_of = {}
                for b_, p_ in zip(below.tolist(), cluster.domain_parent[below].tolist()):
                    kids_of.setdefault(p_, []).append(("d", b_))
            for d in doms.tolist():
                if ("d", d) in f_child:
                    continue
                if lv == L - 1:  # one child, the domain's node group: its array plus the domain's cost
                    acc = f_child[("n", d)].copy()
                    back[("d", d)] = ("alias", ("n", d))
                else:
                    acc = np.zeros(1, np.int64)
                    steps = []
                    for kk in kids_of.get(d, []):
                        b = f_child[kk]
                        steps.append((kk, acc, b))
                        acc = _minconv(acc, b, cap)
                    acc = acc.copy()
                    back[("d", d)] = ("conv", steps, lv)
                acc[1:] = np.minimum(acc[1:] + dom_cost_g[d], INF)
                if u > 1:
                    kept = acc[::u].copy()
                    acc[:] = INF
                    acc[::u] = kept
                f_child[("d", d)] = acc

    def ancestors_cost(d: int) -> int:
        extra, a = 0, int(cluster.domain_parent[d])
        while a >= 0:
            extra += int(dom_cost_g[a])
            a = int(cluster.domain_parent[a])
        return extra

    # ---- root: one domain of level r (required, or proved to be a single domain), else everything
    r = max(prepared.required_level, unique_level if unique_level is not None else -1)
    if r >= 0 and L:
        r = min(r, L - 1)
        cands = _distinct(cluster.node_domain[r, nodes])
        lo_pos = np.searchsorted(nodes, cluster.domain_start[cands])
        hi_pos = np.searchsorted(nodes, cluster.domain_end[cands])
        # branch and bound: a lower bound per candidate from per-level covers inside it
        lb = np.array([ancestors_cost(int(d)) for d in cands.tolist()], np.int64) + dom_cost_g[cands]
        fm = np.where(cand, fit, 0)
        caps = level_caps(cluster, prepared, fm, pods, pod_set)
        for m in range(r + 1, min(counted, L + 1)):
            vals = caps[m] if m < L else fm
            grp = (cluster.node_domain[r, cluster.domain_start[np.arange(int(cluster.level_offset[m]),
                                                                        int(cluster.level_offset[m + 1]))]]
                   if m < L else cluster.node_domain[r])
            cov = grouped_cover(np.asarray(vals, np.int64), np.asarray(grp, np.int64), cluster.n_domains, pods)[cands]
            lb = np.where(cov >= (1 << 40), INF, np.minimum(lb + wD[m] * np.minimum(cov, 1 << 20), INF))
        best, best_d = INF, None
        for j in np.argsort(lb, kind="stable").tolist():
            if lb[j] >= best:
                break
            d = int(cands[j])
            build(int(lo_pos[j]), int(hi_pos[j]))
            arr = f_child[("d", d)]
            if len(arr) > pods and arr[pods] < INF:
                v = int(arr[pods]) + ancestors_cost(d)
                if v < best:
                    best, best_d = v, d
        if best_d is None:
            return None
        plan = [(("d", best_d), pods)]
    else:
        build(0, len(nodes))
        top = ([("d", int(d)) for d in _distinct(cluster.node_domain[0, nodes])] if L
               else [("n", 0)])
        if top_count is not None and top_count <= 2 and len(top) > 2:
            plan = _best_pair(top, f_child, pods)
            if plan is None:
                return None
        else:
            acc = np.zeros(1, np.int64)
            steps = []
            for kk in top:
                b = f_child[kk]
                steps.append((kk, acc, b))
                acc = _minconv(acc, b, cap)
            if len(acc) <= pods or acc[pods] >= INF:
                return None
            plan = _split(steps, pods)
    counts = np.zeros(cluster.n_nodes, np.int64)
    stack = list(plan)
    while stack:
        key, q = stack.pop()
        if q <= 0:
            continue
        data = back[key]
        if data[0] == "sorted":
            take = data[1][: q // u_node]
            counts[nodes[take]] += u_node
        elif data[0] == "alias":
            stack.append((data[1], q))
        elif data[0] == "knapsack":
            for pos, k in _knapsack_take(data, q // u_node):
                counts[nodes[data[3] + pos]] += k * u_node
        elif data[0] == "classes":
            for (f, v, members), q2 in _split(data[1], q):
                j = 0
                while q2 > 0:  # fill the class's nodes in topology order
                    take = min(f, q2)
                    counts[nodes[members[j]]] += take
                    q2 -= take
                    j += 1
        else:
            stack.extend(_split(data[1], q))
    return counts, keep


def _use_knapsack(max_fit: int, max_group: int, groups: int) -> bool:
    """Whether the node level runs as one knapsack over all groups (``_group_knapsack``: about
    ``2 x max_fit x max_group`` numpy calls) rather than per group (about 3 calls per group): with
    nodes of fit 1 the per-group path is a sort; otherwise the one with fewer calls."""
    return max_fit > 1 and 2 * max_fit * max_group < 3 * groups


def _best_pair(top: list, f_child: dict, pods: int):
    """The cheapest way to hold ``pods`` in at most two of the ``top`` items: min over items
    ``a != b`` and ``q`` of ``f_a[q] + f_b[pods - q]`` (``q = 0`` or ``pods``: one item alone).
    Returns the plan ``[(item, q), ...]`` or None when no pair holds them."""
    F = np.full((len(top), pods + 1), INF, np.int64)
    for i, kk in enumerate(top):
        arr = f_child[kk][: pods + 1]
        F[i, :len(arr)] = arr
    rev = F[:, ::-1]  # rev[b, q] = f_b[pods - q]
    best, arg = INF, None
    for a in range(len(top)):
        tot = F[a][None, :] + rev  # [b, q]: f_a[q] + f_b[pods - q]
        tot[a] = INF  # a != b
        j = int(np.argmin(tot))
        if tot.flat[j] < best:
            best, arg = int(tot.flat[j]), (a, *divmod(j, pods + 1))
    if arg is None or best >= INF:
        return None
    a, b, q = arg
    return [(top[a], int(q)), (top[b], pods - int(q))]


def _group_knapsack(fu: np.ndarray, cost: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                    cap_units: int) -> list[np.ndarray]:
    """Per group of nodes (``starts``/``ends`` into ``fu``, ``cost``), the cheapest set of its nodes
    holding ``q`` units, for every group at once: ``T[r, q]`` after the nodes at position
    0..j of each group, node ``j`` taking ``k`` of its ``fu`` units for ``cost`` or none:
    ``T_j[q] = min(T_{j-1}[q], cost_j + min_{1 <= k <= fu_j} T_{j-1}[q - k])``.
    Returns the tables ``T_{-1} .. T_{P-1}`` (``R x W``, ``W = min(cap, largest group) + 1``) for
    the backtracking (``_knapsack_take``)."""
    sizes = ends - starts
    R, P = len(starts), int(sizes.max())
    gidx = np.repeat(np.arange(R), sizes)
    pos = np.arange(len(fu)) - np.repeat(starts, sizes)
    F = np.zeros((P, R), np.int64)
    C = np.zeros((P, R), np.int64)
    F[pos, gidx] = fu
    C[pos, gidx] = cost
    W = min(cap_units, int(np.add.reduceat(fu, starts).max())) + 1
    T = np.full((R, W), INF, np.int64)
    T[:, 0] = 0
    tables = [T]
    for j in range(P):
        f = F[j]
        run = np.full((R, W), INF, np.int64)  # run[:, q] = min over 1..k of T[:, q - k]
        best = np.full((R, W), INF, np.int64)
        for k in range(1, min(int(f.max()), W - 1) + 1):
            np.minimum(run[:, k:], T[:, :W - k], out=run[:, k:])
            rows = f == k
            if rows.any():
                best[rows] = run[rows]
        fmax = min(int(f.max()), W - 1)
        big = f > fmax
        if big.any():
            best[big] = run[big]
        T = np.minimum(T, np.minimum(best + C[j][:, None], INF))
        tables.append(T)
    return tables


def _knapsack_take(data, q: int):
    """Backtrack ``_group_knapsack`` for group ``r`` holding ``q`` units: (position, units) per node used."""
    _, tables, r, _, size, fu, cost = data
    out = []
    for j in range(size - 1, -1, -1):
        if q <= 0:
            break
        now, before = tables[j + 1][r], tables[j][r]
        if now[q] == before[q]:
            continue
        for k in range(1, min(int(fu[j]), q) + 1):
            if before[q - k] + int(cost[j]) == now[q]:
                out.append((j, k))
                q -= k
                break
        else:  # pragma: no cover - the tables are consistent by construction
            raise AssertionError("knapsack backtrack failed")
    return out


def _split(steps, q: int):
    """Backtrack a chain of min-plus convolutions: how many of q each child gets."""
    out = []
    for kk, acc_before, b in reversed(steps):
        # the k minimising acc_before[q - k] + b[k] (that minimum is the convolution's value at q)
        ks = np.arange(0, min(len(b) - 1, q) + 1)
        prev = q - ks
        ok = prev < len(acc_before)
        ks, prev = ks[ok], prev[ok]
        vals = acc_before[prev] + b[ks]
        k = int(ks[int(np.argmin(vals))])
        out.append((kk, k))
        q -= k
    return out

"""An exact tree DP for gangs of one pod set: the lexicographic optimum of parts (1)-(2) (and as much
of (3) as fits in 60 bits), used by the auto policy as a lower bound and, when it beats the
heuristic, as the answer.

Why it is exact: with one pod set the nodes are independent (a node's fit is its capacity), and the
objective is a sum over *touched* items: touching a domain of a counted level adds one to that
level's count, touching any domain or node adds its free GPUs to that level's stranded sum (minus
the gang's GPUs, a constant once the pod count is fixed). Encode the components as one integer in
mixed radix (weights as in engine/cpsat.py: ``w_i > sum_{j>i} w_j * (range_j - 1)``, so integer
order is lexicographic order), and the cost of placing ``q`` pods inside an item is

    f_node(q) = cost(node)           for 1 <= q <= fit (multiples of the node slice unit), f(0) = 0
    f_d(q)    = cost(d) + (min-plus convolution of the children's f)(q)   for q >= 1, f_d(0) = 0

with ``f_d(q) = inf`` when ``q`` is not a multiple of the slice unit at d's level. Addition is
monotone in lexicographic order, so the min-plus convolution of optimal children is optimal for
the parent (optimal substructure). The root is the convolution of the top-level domains (or, with
a ``required`` level, the best single domain of that level plus its ancestors). The DP runs on the
candidates of ``cpsat.lex_bound`` (which keep every optimum) and backtracks to an assignment.
"""
from __future__ import annotations

import numpy as np

from .cluster import Cluster
from .request import PreparedGang

INF = np.int64(1) << np.int64(61)
BUDGET = 1 << 60


class _Tree:
    __slots__ = ("acc", "children", "node_cost", "sorted_nodes")


def _minconv(a: np.ndarray, b: np.ndarray, cap: int) -> np.ndarray:
    """r[q] = min_k a[q - k] + b[k], for q <= cap (INF where impossible)."""
    n = min(len(a) + len(b) - 1, cap + 1)
    r = np.full(n, INF, np.int64)
    fa = np.flatnonzero(a[:n] < INF)
    fb = np.flatnonzero(b[:n] < INF)
    if len(fb) <= len(fa):
        for k in fb.tolist():
            m = min(len(a), n - k)
            np.minimum(r[k:k + m], a[:m] + b[k], out=r[k:k + m])
    else:
        for k in fa.tolist():
            m = min(len(b), n - k)
            np.minimum(r[k:k + m], b[:m] + a[k], out=r[k:k + m])
    np.minimum(r, INF, out=r)
    return r


def lex_dp(cluster: Cluster, prepared: PreparedGang, fit: np.ndarray, pods: int, cand: np.ndarray):
    """The optimal assignment of ``pods`` pods of the (single) pod set over the candidate nodes.

    Returns ``(counts int64[n_nodes], n_components_exact, domains_tuple)`` or ``None`` when the
    components of part (2) do not fit in the 60-bit encoding or nothing fits.
    ``n_components_exact``: how many leading components of (2)+(3) (domain counts on counted
    levels, then stranded GPUs per level and nodes) the answer is proved optimal on.
    """
    L = len(cluster.levels)
    counted = prepared.counted_levels
    unit = prepared.unit
    nodes = np.flatnonzero(cand & (fit > 0))
    if pods <= 0 or not len(nodes):
        return None
    free = cluster.free_gpus.astype(np.int64)
    csum = np.r_[0, np.cumsum(free)]
    # candidate domains per level and their free GPUs
    level_doms = []
    for lv in range(L):
        level_doms.append(np.unique(cluster.node_domain[lv, nodes]))
    dfree = [csum[cluster.domain_end[d]] - csum[cluster.domain_start[d]] for d in level_doms]
    # components: domain counts of counted levels (node count = level L), then stranded per level
    comps = []  # (kind, level, range)
    for lv in range(min(counted, L + 1)):
        comps.append(("D", lv, (len(level_doms[lv]) if lv < L else len(nodes)) + 1))
    n2 = len(comps)
    for lv in range(L):
        comps.append(("S", lv, int(dfree[lv].sum()) + 1))
    comps.append(("S", L, int(free[nodes].sum()) + 1))
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
    # per-item cost when touched
    node_cost = wD[L] + wS[L] * free[nodes]
    dom_cost = [wD[lv] + wS[lv] * dfree[lv] for lv in range(L)]
    u_node = int(unit[L])
    fit_n = fit[nodes]
    cap = pods
    # ---- lowest level: nodes grouped by their level L-1 domain (or one group without levels)
    group = (cluster.node_domain[L - 1, nodes] if L else np.zeros(len(nodes), np.int64))
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], len(nodes)]
    f_child: dict = {}  # item key -> cost array
    back: dict = {}  # item key -> backtracking data
    for s, e in zip(starts.tolist(), ends.tolist()):
        key = ("n", int(group[s]))
        idx = np.arange(s, e)
        fu = fit_n[idx] // u_node
        if (fu == 1).all():
            order = np.argsort(node_cost[idx], kind="stable")
            k = min(len(order), cap // u_node)
            arr = np.full(min(cap, len(order) * u_node) + 1, INF, np.int64)
            arr[0] = 0
            cs = np.cumsum(node_cost[idx][order][:k])
            arr[u_node * np.arange(1, k + 1)] = cs
            f_child[key] = arr
            back[key] = ("sorted", idx[order])
        else:
            acc = np.zeros(1, np.int64)
            steps = []
            for i in idx.tolist():
                b = np.full(int(fit_n[i]) + 1, INF, np.int64)
                b[0] = 0
                b[u_node::u_node] = node_cost[i]
                steps.append((i, acc, b))
                acc = _minconv(acc, b, cap)
            f_child[key] = acc
            back[key] = ("knap", steps)
    # ---- domains bottom-up
    for lv in range(L - 1, -1, -1):
        doms = level_doms[lv]
        u = int(unit[lv])
        if lv == L - 1:
            kids_of = {int(d): [("n", int(d))] for d in doms}
        else:
            below = level_doms[lv + 1]
            par = cluster.domain_parent[below]
            kids_of = {}
            for b_, p_ in zip(below.tolist(), par.tolist()):
                kids_of.setdefault(p_, []).append(("d", b_))
        for j, d in enumerate(doms.tolist()):
            acc = np.zeros(1, np.int64)
            steps = []
            for kk in kids_of.get(d, []):
                b = f_child[kk]
                steps.append((kk, acc, b))
                acc = _minconv(acc, b, cap)
            acc = acc.copy()
            acc[1:] = np.minimum(acc[1:] + dom_cost[lv][j], INF)
            if u > 1:
                mask = np.arange(len(acc)) % u != 0
                acc[mask] = INF
            f_child[("d", d)] = acc
            back[("d", d)] = ("conv", steps, lv, j)
    # ---- root
    top = [("d", int(d)) for d in level_doms[0]] if L else [("n", int(group[0]))]
    req = prepared.required_level
    if req >= 0 and L:
        best, best_d, best_extra = INF, None, 0
        for j, d in enumerate(level_doms[req].tolist()):
            arr = f_child.get(("d", d))
            if arr is None or len(arr) <= pods:
                continue
            extra = 0
            a = int(cluster.domain_parent[d])
            while a >= 0:
                lva = int(cluster.domain_level[a])
                jj = int(np.searchsorted(level_doms[lva], a))
                extra += int(dom_cost[lva][jj])
                a = int(cluster.domain_parent[a])
            v = int(arr[pods]) + extra
            if arr[pods] < INF and v < best:
                best, best_d = v, d
        if best_d is None:
            return None
        plan = [(("d", best_d), pods)]
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
        elif data[0] == "knap":
            for kk, q2 in _split([((i,), a, b) for i, a, b in data[1]], q):
                counts[nodes[kk[0]]] += q2
        else:
            stack.extend(_split(data[1], q))
    return counts, keep


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

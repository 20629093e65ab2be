"""Building the CP-SAT model of one placement (the data -> model step; solving is engine/exact/cpsat.py).

Variables (one integer per (pod set, candidate node), never pod x node booleans; see STACK.md):
- ``x[s][k]``: pods of pod set ``s`` on candidate node ``nodes[k]``, ``0 .. fit`` (``fit``: the most
  pods of ``s`` the node holds alone, engine/place/capacity.py), ``unit * z`` with a node slice;
- ``u[k]``: candidate node ``k`` used; ``y[l][i]``: the ``i``-th candidate domain of level ``l`` used.

The objective is a list of lexicographic components (``Component``): ``-pods`` (unless the pods are
fixed by the bounds), domains used on each counted level, then stranded GPUs in the order of part
(3) (nodes first, then the lowest level up with each level's pod room before its GPUs, by default:
``part3_order``).
``lexicographic_stages`` groups them and ``stage_weights`` scales each stage to one integer sum:
the only place where the objective is scaled.

``add_gang`` / ``GangVars``: the variables of one gang inside a larger model (batch placement and
preemption planning share it).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..model.cluster import Cluster
from ..place.capacity import domain_free_gpus, domain_pod_room, level_caps
from ..place import age
from ..place.objective import part3_order
from ..place.request import PreparedGang
from ..place.solution import Solution
from .bounds import LexBound

MAX_STAGE_WEIGHT = 1 << 50  # a stage's weights stay below this: far from int64 overflow, kind to the LP


_import_ms = 0.0  # what the first ``load_cp_model`` of this process spent importing OR-Tools


def load_cp_model():
    """Import OR-Tools CP-SAT (lazily: the import costs ~0.2-0.6 s, pandas and pyarrow included),
    timing the one import that does the work (``solver_import_ms``)."""
    global _import_ms
    if "ortools.sat.python.cp_model" not in sys.modules:
        t0 = time.perf_counter()
        from ortools.sat.python import cp_model  # deferred: the import costs ~0.2-0.6 s
        _import_ms += (time.perf_counter() - t0) * 1e3
        return cp_model
    from ortools.sat.python import cp_model
    return cp_model


def timing(t0: float, imported_before: float) -> dict:
    """``elapsed_ms`` since ``t0`` (perf_counter) without the OR-Tools import paid meanwhile, and
    that import as ``solver_import_ms`` (``imported_before``: ``solver_import_ms()`` at ``t0``)."""
    imported = _import_ms - imported_before
    return {"elapsed_ms": (time.perf_counter() - t0) * 1e3 - imported, "solver_import_ms": imported}


def solver_import_ms() -> float:
    """Milliseconds this process has spent importing OR-Tools so far (0 until CP-SAT first runs).
    A placement subtracts the difference across its call from its ``elapsed_ms`` and reports it
    apart, so a cold process does not charge the import to the placement."""
    return _import_ms


class Component(NamedTuple):
    """One lexicographic component of the objective: an integer expression in ``[lo, hi]``."""

    expr: Any
    lo: int
    hi: int
    kind: str  # "pods", "domains<l>", "age", "stranded<l>", "strandedN", "room<l>"


@dataclass
class PlacementModel:
    """A built model and what the solve and decode steps read from it."""

    model: Any  # cp_model.CpModel
    nodes: np.ndarray  # int64[m]: candidate node ids
    x: list[list]  # per pod set, per candidate node: pods (None where the node cannot take any)
    components: list[Component]  # lexicographic order, smallest first
    n_domain_components: int  # leading components of parts (1)-(2) (pods, domains on counted levels)

    @property
    def n_vars(self) -> int:
        return len(self.model.proto.variables)


class BuildTimeout(Exception):
    """The deadline passed while building (the caller keeps the hint)."""

    def __init__(self, n_vars: int):
        super().__init__(n_vars)
        self.n_vars = n_vars


def _check_deadline(model, deadline: float) -> None:
    if time.perf_counter() > deadline:
        raise BuildTimeout(len(model.proto.variables))


def _domain_free(cluster: Cluster) -> list[np.ndarray]:
    """Free GPUs per domain of each level (all nodes, as engine/place/objective.py counts them)."""
    per_domain = domain_free_gpus(cluster)
    return [per_domain[int(cluster.level_offset[lv]):int(cluster.level_offset[lv + 1])]
            for lv in range(len(cluster.levels))]


@dataclass
class _Build:
    """What the build steps share: the model, the data, and the variables made so far."""

    model: Any
    LE: Any  # cp_model.LinearExpr
    cluster: Cluster
    prepared: PreparedGang
    nodes: np.ndarray  # candidate node ids
    fit_c: list[np.ndarray]  # per pod set, int64[m]: the candidates' node fit
    deadline: float
    x: list[list] = field(default_factory=list)  # per pod set, per candidate node: pods (or None)
    u: list = field(default_factory=list)  # per candidate node: used
    pods: list = field(default_factory=list)  # per pod set: pods placed (expression)
    y_level: list = field(default_factory=list)  # per level: (candidate domain ids, used literals)


def build_model(cluster: Cluster, prepared: PreparedGang, fits: list[np.ndarray], bound: LexBound,
                nodes: np.ndarray, hint: Solution | None, deadline: float) -> PlacementModel:
    """The CP-SAT model of placing ``prepared`` on the candidate ``nodes`` (``fits``: per pod set,
    int64[n_nodes] node capacities; ``bound``: the pruning pass's fixed pods and proved levels).
    Raises BuildTimeout when ``deadline`` (perf_counter seconds) passes while building.
    The steps run in this order (variable order, hence the solver's path, depends on it)."""
    cp_model = load_cp_model()
    b = _Build(cp_model.CpModel(), cp_model.LinearExpr, cluster, prepared, nodes, [f[nodes] for f in fits], deadline)
    _add_pod_variables(b)
    single_unit = _add_node_used(b)
    _add_shared_node_capacity(b)
    _add_pods_per_pod_set(b, bound)
    _check_deadline(b.model, deadline)
    _add_domains_used(b)
    _add_cover_cuts(b, fits, single_unit)
    dcount, ndoms = _add_level_constraints(b, bound)
    comps, n_domain_components = _objective_components(b, bound, dcount, ndoms)
    _add_hint(b, hint)
    return PlacementModel(b.model, nodes, b.x, comps, n_domain_components)


def _add_pod_variables(b: _Build) -> None:
    """x[s][k]: pods of pod set s on candidate node k."""
    model, prepared, nodes, fit_c = b.model, b.prepared, b.nodes, b.fit_c
    gang = prepared.gang
    n_sets, m = len(gang.pod_sets), len(nodes)
    deadline = b.deadline
    # pods per (pod set, candidate node): 0 .. fit, a multiple of the node slice unit
    x = b.x
    for s in range(n_sets):
        unit_node = int(prepared.units[s][-1])
        row = []
        for k in range(m):
            if not k & 1023:  # big models: stop building in time
                _check_deadline(model, deadline)
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


def _add_node_used(b: _Build) -> bool:
    """u[k]: candidate node k used. Returns whether every pod variable is itself the 0/1 node literal."""
    model, LE, prepared, nodes, fit_c = b.model, b.LE, b.prepared, b.nodes, b.fit_c
    gang = prepared.gang
    n_sets, m = len(gang.pod_sets), len(nodes)
    x, deadline = b.x, b.deadline
    # node used: u[k] >= 1 when any pod is on node k (the pod variable itself when it is a 0/1)
    single_unit = n_sets == 1 and all(int(f) == 1 for f in fit_c[0]) and int(prepared.units[0][-1]) == 1
    u = b.u
    for k in range(m):
        if not k & 1023:
            _check_deadline(model, deadline)
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
    return single_unit

def _add_shared_node_capacity(b: _Build) -> None:
    """Capacity rows for nodes several pod sets may share."""
    model, LE, cluster, prepared, nodes, fit_c = b.model, b.LE, b.cluster, b.prepared, b.nodes, b.fit_c
    gang = prepared.gang
    n_sets, m = len(gang.pod_sets), len(nodes)
    x = b.x
    # shared node capacity: several pod sets on one node fit its free GPUs, CPU, memory, pod slots
    # together (a row only where their separate fits could overcommit the node)
    if n_sets > 1:
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
                if most <= int(free[nodes[k]]):
                    continue
                model.add(LE.weighted_sum([v for v, _ in terms], [r for _, r in terms]) <= int(free[nodes[k]]))


def _add_pods_per_pod_set(b: _Build, bound: LexBound) -> None:
    """pods[s]: pods of pod set s placed, and its range."""
    model, LE, prepared = b.model, b.LE, b.prepared
    gang = prepared.gang
    x = b.x
    # pods per pod set: between min_count and count, or exactly what the bounds proved every optimum places
    pods_expr = b.pods
    for s, ps in enumerate(gang.pod_sets):
        vs = [v for v in x[s] if v is not None]
        e = LE.sum(vs) if vs else 0
        pods_expr.append(e)
        if bound.pods_fixed is not None:
            model.add(e == bound.pods_fixed[s])
        else:
            model.add(e >= ps.required_count)
            model.add(e <= ps.count)


def _add_domains_used(b: _Build) -> None:
    """y[l][i]: candidate domain i of level l used; slices per domain."""
    model, LE, cluster, prepared, nodes, fit_c = b.model, b.LE, b.cluster, b.prepared, b.nodes, b.fit_c
    gang = prepared.gang
    L, n_sets = len(cluster.levels), len(gang.pod_sets)
    x, u = b.x, b.u
    # domains used, bottom-up: a domain is used when any child (node or domain) is
    # (sum(children used) <= n_children * y[d]); slices: per pod set, each domain's pods are a
    # multiple of the unit (pods are numbered in topology order, so every ``unit`` consecutive pods
    # then share a domain)
    y_level: list[tuple[np.ndarray, list]] = [None] * L  # type: ignore[list-item]
    b.y_level = y_level
    child_vars = u
    for lv in range(L - 1, -1, -1):
        lo = int(cluster.level_offset[lv])
        dom_of_node = cluster.node_domain[lv, nodes] - lo
        doms = np.unique(dom_of_node)
        yv = [model.new_bool_var("") for _ in range(len(doms))]
        pos = np.searchsorted(doms, dom_of_node)  # per node: index into doms
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


def _add_cover_cuts(b: _Build, fits: list[np.ndarray], single_unit: bool) -> None:
    """Capacity-cover cuts per level and pod set."""
    model, LE, cluster, prepared, nodes, fit_c = b.model, b.LE, b.cluster, b.prepared, b.nodes, b.fit_c
    gang = prepared.gang
    L, m = len(cluster.levels), len(nodes)
    u, y_level, pods_expr = b.u, b.y_level, b.pods
    # capacity-cover cuts, per level and pod set: sum cap[s, d] * y[d] >= pods[s]. Implied by the
    # rows above, but they give the LP the top-j covering bound (0.2 s instead of 4-5 s, STACK.md)
    cand = np.zeros(cluster.n_nodes, bool)
    cand[nodes] = True
    for s, ps in enumerate(gang.pod_sets):
        caps = level_caps(cluster, prepared, np.where(cand, fits[s], 0), ps.count, s)
        for lv in range(L):
            doms, yv = y_level[lv]
            cv = caps[lv][doms]
            terms = [(yv[i], int(c)) for i, c in enumerate(cv.tolist()) if c > 0]
            if terms:
                model.add(LE.weighted_sum([v for v, _ in terms], [c for _, c in terms]) >= pods_expr[s])
        terms = [(u[k], int(fit_c[s][k])) for k in range(m) if fit_c[s][k] > 0]
        if terms and not single_unit:
            model.add(LE.weighted_sum([v for v, _ in terms], [c for _, c in terms]) >= pods_expr[s])


def _add_level_constraints(b: _Build, bound: LexBound) -> tuple[list, list[int]]:
    """The required level and the proved levels. Returns the domain count expressions per level
    then nodes, and how many candidates each level has."""
    model, LE, cluster, prepared, nodes = b.model, b.LE, b.cluster, b.prepared, b.nodes
    L, m = len(cluster.levels), len(nodes)
    u, y_level = b.u, b.y_level
    counted = prepared.counted_levels
    # required level: every pod in one domain of it
    if prepared.required_level >= 0 and L:
        model.add(LE.sum(y_level[prepared.required_level][1]) <= 1)

    # domains used per level, then nodes
    dcount = [LE.sum(y_level[lv][1]) if y_level[lv][1] else 0 for lv in range(L)] + [LE.sum(u) if u else 0]
    ndoms = [len(y_level[lv][1]) for lv in range(L)] + [m]

    # levels the pruning pass proved: their counts are fixed; the first unproved level lies
    # between its lower bound and the heuristic's count (engine/exact/bounds.py)
    if bound.pods_fixed is not None and bound.domain_counts:
        for lv in range(min(bound.proved_levels, counted)):
            model.add(dcount[lv] == int(bound.domain_counts[lv]))
        j = bound.proved_levels
        if j < counted:
            model.add(dcount[j] <= int(bound.domain_counts[j]))
            model.add(dcount[j] >= int(bound.lower[j]))
    return dcount, ndoms

def _objective_components(b: _Build, bound: LexBound, dcount: list, ndoms: list[int]) -> tuple[list[Component], int]:
    """The lexicographic components, and how many of them are parts (1)-(2)."""
    LE, cluster, prepared, nodes = b.LE, b.cluster, b.prepared, b.nodes
    gang = prepared.gang
    L = len(cluster.levels)
    u, y_level, pods_expr = b.u, b.y_level, b.pods
    counted = prepared.counted_levels
    # the objective's components, lexicographic (engine/place/objective.py): -pods, domains on the
    # counted levels, then stranded GPUs (free GPUs of touched items minus the gang's) and the touched
    # domains' pod room in the order of part (3) (part3_order)
    total_count = sum(ps.count for ps in gang.pod_sets)
    gpus_expr = LE.weighted_sum([pods_expr[s] for s, ps in enumerate(gang.pod_sets) if ps.gpus],
                                [ps.gpus for ps in gang.pod_sets if ps.gpus]) if gang.total_gpus else 0
    gmax = sum(ps.gpus * ps.count for ps in gang.pod_sets)
    comps = []
    if bound.pods_fixed is None:
        comps.append(Component(-LE.sum(pods_expr), -total_count, 0, "pods"))
    for lv in range(counted):
        comps.append(Component(dcount[lv], 0, ndoms[lv], f"domains{lv}"))
    dom_free = _domain_free(cluster)
    stranded = []
    for lv in range(L):
        doms, yv = y_level[lv]
        fr = dom_free[lv][doms]
        stranded.append(Component(LE.weighted_sum(yv, fr.tolist()) - gpus_expr, -gmax, int(fr.sum()), f"stranded{lv}"))
    nf = cluster.free_gpus.astype(np.int64)[nodes]
    stranded.append(Component(LE.weighted_sum(u, nf.tolist()) - gpus_expr, -gmax, int(nf.sum()), "strandedN"))
    if age.applies(prepared):  # objective "age", a one-pod gang: its node's age first (engine/place/age.py)
        rank = age.age_rank(cluster, nodes)
        comps.append(Component(LE.weighted_sum(u, rank.tolist()), 0, int(rank.sum()), "age"))
    room = None
    for kind, lv in part3_order(L, prepared.objective):  # part (3), in its order
        if kind == "gpus":
            comps.append(stranded[lv])
            continue
        if room is None:
            room = domain_pod_room(cluster, prepared.pod_unit)
        doms, yv = y_level[lv]
        rm = room[doms + int(cluster.level_offset[lv])]
        comps.append(Component(LE.weighted_sum(yv, rm.tolist()), 0, int(rm.sum()), f"room{lv}"))
    n_domain_components = (0 if bound.pods_fixed is not None else 1) + counted
    return comps, n_domain_components

def _add_hint(b: _Build, hint: Solution | None) -> None:
    """The hint: the heuristic's answer."""
    model, prepared, nodes, fit_c = b.model, b.prepared, b.nodes, b.fit_c
    gang = prepared.gang
    n_sets, m = len(gang.pod_sets), len(nodes)
    x = b.x
    # the hint: the heuristic's answer (clipped to each node's fit)
    if hint is not None and hint.placed:
        for s in range(n_sets):
            hc = hint.counts[s][nodes]
            for k in range(m):
                if x[s][k] is not None:
                    model.add_hint(x[s][k], int(min(hc[k], fit_c[s][k])))


# ----------------------------------------------------------------------------- integer scaling
def lexicographic_stages(components: list[Component], n_domain_components: int,
                         max_weight: int = MAX_STAGE_WEIGHT) -> list[list[Component]]:
    """Group consecutive components into stages whose weight span stays below ``max_weight``;
    parts (1)-(2) (the first ``n_domain_components``) never share a stage with part (3)."""
    stages: list[list[Component]] = []
    cur: list[Component] = []
    span = 1
    for i, comp in enumerate(components):
        r = comp.hi - comp.lo + 1
        if cur and (span * r > max_weight or i == n_domain_components):
            stages.append(cur)
            cur, span = [], 1
        cur.append(comp)
        span *= r
    if cur:
        stages.append(cur)
    return stages


def stage_weights(stage: list[Component]) -> list[int]:
    """Mixed-radix weights: ``w_last = 1``, ``w_i = w_{i+1} * (hi_{i+1} - lo_{i+1} + 1)``, so lowering
    ``c_i`` by one gains more than any change of all later components can lose and the weighted
    minimum of ``sum_i w_i * (c_i - lo_i)`` is the lexicographic minimum."""
    weights = []
    w = 1
    for comp in reversed(stage):
        weights.append(w)
        w *= comp.hi - comp.lo + 1
    weights.reverse()
    return weights


def stage_objective(stage: list[Component], weights: list[int]):
    """The stage's scaled objective ``sum_i w_i * (c_i - lo_i)`` (an integer expression >= 0)."""
    cp_model = load_cp_model()
    return (cp_model.LinearExpr.weighted_sum([c.expr for c in stage], weights)
            - sum(wi * c.lo for wi, c in zip(weights, stage)))


# ----------------------------------------------------------------------------- one gang in a larger model
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
    LE = load_cp_model().LinearExpr
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

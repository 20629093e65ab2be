"""Gang-aware preemption planning: which running gangs to evict so that a pending gang fits.

Running gangs are read from the cluster's per-node allocations (``Cluster.allocations[i]``: a tuple
of ``Allocation(gang, priority, gpus, cpu, memory)``; each allocation entry holds one pod slot).
Rules:
- only gangs of strictly lower priority than the pending gang are candidates, and a victim is
  evicted whole (every allocation of that gang on every node);
- the victim set minimises, lexicographically, the cost ``sum((priority + 1) * gpus)`` over the
  victims (priority-weighted GPUs evicted; +1 so that evicting priority-0 work is not free), then
  the number of victims;
- the pending gang is then placed on the cluster with the victims removed by the single-gang placer
  (``auto`` by default), so its placement is topology-optimal after the eviction.

Method: if the gang fits now, no victims. Otherwise a greedy plan (evict candidates cheapest first
until the heuristic places the gang, then drop every victim that is not needed) seeds a CP-SAT
model: a Boolean per candidate victim, the gang's pods-per-node counts with its required level,
slices and min_counts (engine/exact/cpsat.py ``add_gang``), and per node and resource
``pods * request <= free + sum(victim's allocation * evicted)``; objective
``cost * (n_candidates + 1) + n_victims`` (exactly lexicographic: the victim count is at most
``n_candidates``). ``optimal`` says CP-SAT proved the victim set cheapest.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..model.cluster import Cluster
from ..model.types import GangRequest, Placement
from ..place.capacity import FreeCapacity, node_fit
from ..place.heuristic import place_heuristic
from ..place.objective import DEFAULT_OBJECTIVE
from ..place.request import prepare
from .auto import place
from .cpsat_model import add_gang, load_cp_model, solver_import_ms, timing

log = logging.getLogger(__name__)

DEFAULT_PREEMPT_TIME_LIMIT_MS = 1000.0


@dataclass
class PreemptionPlan:
    victims: list[str]  # gang names to evict, cheapest plan
    placement: Placement  # the pending gang's placement after the eviction
    evicted_gpus: int
    cost: int  # sum over victims of (priority + 1) * GPUs
    feasible: bool = True
    optimal: bool = False  # the victim set is proved cheapest (or no victims were needed)
    reason: str = ""
    victim_details: list[dict] = field(default_factory=list)  # {gang, priority, gpus, nodes}
    elapsed_ms: float = 0.0  # the one-time OR-Tools import is not in it
    solver_import_ms: float = 0.0  # the OR-Tools import this call paid (first CP-SAT run of the process)

    def to_dict(self) -> dict:
        return {"feasible": self.feasible, "victims": list(self.victims), "victim_details": self.victim_details,
                "evicted_gpus": self.evicted_gpus, "cost": self.cost, "optimal": self.optimal,
                "reason": self.reason, "placement": self.placement.to_dict(),
                "elapsed_ms": round(self.elapsed_ms, 3), "solver_import_ms": round(self.solver_import_ms, 3)}


@dataclass
class _Running:
    name: str
    priority: int
    gpus: int
    nodes: np.ndarray  # node ids
    use: np.ndarray  # int64[len(nodes), 4]: gpus, cpu, memory, pod slots held on each

    @property
    def cost(self) -> int:
        return (max(self.priority, 0) + 1) * self.gpus


def running_gangs(cluster: Cluster) -> dict[str, _Running]:
    """Running gangs from the per-node allocations (priority: the highest seen for the gang)."""
    acc: dict[str, dict] = {}
    for i, allocs in enumerate(cluster.allocations):
        for a in allocs:
            r = acc.setdefault(a.gang, {"priority": a.priority, "nodes": {}})
            r["priority"] = max(r["priority"], a.priority)
            u = r["nodes"].setdefault(i, [0, 0, 0, 0])
            u[0] += a.gpus
            u[1] += a.cpu
            u[2] += a.memory
            u[3] += 1
    out = {}
    for name, r in acc.items():
        nodes = np.fromiter(r["nodes"].keys(), np.int64, len(r["nodes"]))
        use = np.asarray(list(r["nodes"].values()), np.int64).reshape(-1, 4)
        out[name] = _Running(name, int(r["priority"]), int(use[:, 0].sum()), nodes, use)
    return out


def evict(cluster: Cluster, victims: list[_Running], *, keep_allocations: bool = False) -> Cluster:
    """A copy of the cluster with the victims' allocations removed and their resources freed
    (``keep_allocations=True`` skips rewriting the allocation lists: faster, for fit checks)."""
    c = cluster.copy()
    names = {v.name for v in victims}
    for v in victims:
        _give(c, v, 1)
        if not keep_allocations:
            for n in v.nodes.tolist():
                c.allocations[n] = tuple(a for a in c.allocations[n] if a.gang not in names)
    # never more free than the capacity (allocations may under-report usage: clamp)
    np.minimum(c.free_gpus, c.cap_gpus, out=c.free_gpus)
    np.minimum(c.free_cpu, c.cap_cpu, out=c.free_cpu)
    np.minimum(c.free_mem, c.cap_mem, out=c.free_mem)
    np.minimum(c.free_pods, c.cap_pods, out=c.free_pods)
    if not keep_allocations:  # the nodes' ages without the victims (objective "age", engine/place/age.py)
        for n in {int(n) for v in victims for n in v.nodes.tolist()}:
            c.refresh_oldest(n)
    return c


def _give(c: Cluster, v: _Running, sign: int) -> None:
    """Free (sign=1) or take back (sign=-1) what a running gang holds, in place."""
    FreeCapacity.of(c).release(v.nodes, v.use, sign)


def _fits(cluster: Cluster, prepared) -> bool:
    return place_heuristic(cluster, prepared, rival_starts=False).placed  # feasibility only


def _greedy(cluster: Cluster, prepared, cands: list[_Running]) -> list[_Running] | None:
    """Evict cheapest first until the heuristic places the gang, then drop unneeded victims."""
    order = sorted(cands, key=lambda r: (r.cost, r.name))

    def fits_prefix(k: int) -> bool:
        return _fits(evict(cluster, order[:k], keep_allocations=True), prepared)

    # exponential search on the prefix length, then binary search (fits is monotone in the prefix)
    lo, hi = 0, 1
    while hi <= len(order) and not fits_prefix(hi):
        lo = hi
        hi *= 2
    hi = min(hi, len(order))
    if not fits_prefix(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if fits_prefix(mid):
            hi = mid
        else:
            lo = mid + 1
    chosen = order[:hi]
    # drop the expensive ones first: take a victim's resources back; keep it running if it still fits
    work = evict(cluster, chosen, keep_allocations=True)
    kept = []
    for v in sorted(chosen, key=lambda r: (-r.cost, r.name)):
        _give(work, v, -1)
        if _fits(work, prepared):
            continue
        _give(work, v, 1)
        kept.append(v)
    return kept


def _cpsat(cluster: Cluster, prepared, cands: list[_Running], hint: list[_Running] | None, deadline: float,
           workers: int, seed: int, within: np.ndarray | None = None):
    """CP-SAT victim selection; ``within`` (bool[n_nodes]) restricts the gang to those nodes."""
    cp_model = load_cp_model()
    LE = cp_model.LinearExpr
    full = evict(cluster, cands, keep_allocations=True)
    fits = [node_fit(full, prepared, s) for s in range(len(prepared.gang.pod_sets))]
    if within is not None:
        fits = [np.where(within, f, 0) for f in fits]
    model = cp_model.CpModel()
    gv = add_gang(model, cluster, prepared, fits)
    v = [model.new_bool_var(r.name) for r in cands]
    # per node and resource: the gang's use <= free now + what the chosen victims hold there
    held: dict[int, list] = {}
    for j, r in enumerate(cands):
        for k, n in enumerate(r.nodes.tolist()):
            held.setdefault(n, []).append((j, r.use[k]))
    free = (cluster.free_gpus, cluster.free_cpu, cluster.free_mem, cluster.free_pods)
    pos = {int(n): k for k, n in enumerate(gv.nodes.tolist())}
    for n, k in pos.items():
        for res in range(4):
            terms = []
            for s, ps in enumerate(prepared.gang.pod_sets):
                q = (ps.gpus, ps.cpu, ps.memory, 1)[res]
                if q and gv.x[s][k] is not None:
                    terms.append(gv.x[s][k] * q)
            if not terms:
                continue
            rel = [(v[j], int(u[res])) for j, u in held.get(n, []) if u[res]]
            rhs = LE.weighted_sum([a for a, _ in rel], [b for _, b in rel]) if rel else 0
            model.add(LE.sum(terms) <= int(free[res][n]) + rhs)
    nv = len(cands)
    model.minimize(LE.weighted_sum(v, [r.cost * (nv + 1) + 1 for r in cands]))
    if hint is not None:
        names = {h.name for h in hint}
        for j, r in enumerate(cands):
            model.add_hint(v[j], 1 if r.name in names else 0)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, deadline - time.perf_counter())
    solver.parameters.num_workers = max(1, workers)
    solver.parameters.random_seed = seed
    # measured on dgx-h100 clusters: linearization 2 proves small models fast; on large ones
    # symmetry detection eats the budget
    if len(gv.nodes) > 1000:
        solver.parameters.symmetry_level = 0
    elif workers <= 1:
        solver.parameters.linearization_level = 2
    st = solver.solve(model)
    if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, st == cp_model.INFEASIBLE
    return [r for j, r in enumerate(cands) if solver.boolean_value(v[j])], st == cp_model.OPTIMAL


def plan_preemption(cluster: Cluster, gang: GangRequest, placer: str = "auto", *,
                    time_limit_ms: float = DEFAULT_PREEMPT_TIME_LIMIT_MS, gang_time_limit_ms: float = 100.0,
                    workers: int = 1, seed: int = 0, objective: str = DEFAULT_OBJECTIVE) -> PreemptionPlan:
    """The cheapest set of lower-priority gangs to evict so that ``gang`` fits, and its placement."""
    t0 = time.perf_counter()
    imported = solver_import_ms()
    prepared = prepare(cluster, gang, objective)
    now = place(cluster, gang, placer, time_limit_ms=gang_time_limit_ms, workers=workers, seed=seed,
                objective=objective)
    if now.placed:
        return PreemptionPlan([], now, 0, 0, True, True, "fits without preemption",
                              **timing(t0, imported))
    cands = [r for r in running_gangs(cluster).values() if r.priority < gang.priority]
    if not cands or not _fits(evict(cluster, cands, keep_allocations=True), prepared):
        why = ("no running gang has a lower priority" if not cands else
               "does not fit even after evicting every lower-priority gang")
        return PreemptionPlan([], now, 0, 0, False, bool(cands), why,
                              **timing(t0, imported))
    greedy = _greedy(cluster, prepared, cands)
    victims, optimal = greedy, False
    if placer != "heuristic":
        # with a required level, one small model per domain of it; else one model over the cluster
        model = _by_domain if prepared.required_level >= 0 else _cpsat
        try:
            load_cp_model()  # before the deadline: the one-time import is not part of the budget
            deadline = t0 + (time_limit_ms + solver_import_ms() - imported) / 1e3
            got, proved = model(cluster, prepared, cands, greedy, deadline, workers, seed)
            if got is not None and (victims is None or _plan_cost(got) <= _plan_cost(victims)):
                victims, optimal = got, proved
        except Exception:
            log.exception("preemption model failed; keeping the greedy plan")
            if victims is None:
                raise
    assert victims is not None  # everything evicted fits, so the greedy plan exists
    victims = sorted(victims, key=lambda r: r.name)
    after = evict(cluster, victims)
    placement = place(after, gang, placer, time_limit_ms=gang_time_limit_ms, workers=workers, seed=seed,
                      objective=objective)
    if not placement.placed and greedy is not None and victims is not greedy:
        # CP-SAT's set fits in its model but the placer did not find it in budget: use the greedy plan
        victims, optimal = sorted(greedy, key=lambda r: r.name), False
        after = evict(cluster, victims)
        placement = place(after, gang, placer, time_limit_ms=gang_time_limit_ms, workers=workers, seed=seed,
                      objective=objective)
    details = [{"gang": r.name, "priority": r.priority, "gpus": r.gpus,
                "nodes": sorted(cluster.node_names[n] for n in r.nodes.tolist())} for r in victims]
    return PreemptionPlan([r.name for r in victims], placement, sum(r.gpus for r in victims),
                          sum(r.cost for r in victims), placement.placed, optimal,
                          "" if placement.placed else placement.reason, details,
                          **timing(t0, imported))


def _by_domain(cluster: Cluster, prepared, cands: list[_Running], greedy: list[_Running] | None, deadline: float,
               workers: int, seed: int):
    """With a ``required`` level the gang lands in one domain of it: solve each domain on its own,
    best lower bound first, and stop when no remaining domain's bound beats the best plan.

    Lower bound of a domain (fractional knapsack): it must free at least ``deficit`` GPUs there
    (the gang's GPUs minus the free GPUs of its eligible nodes), and a victim frees the GPUs it
    holds inside the domain at its whole cost, so the cheapest cost per freed GPU first, taken
    fractionally, bounds any plan for that domain from below."""
    r = prepared.required_level
    need = prepared.gang.total_gpus
    elig = np.zeros(cluster.n_nodes, bool)
    for e in prepared.eligible:
        elig |= e.astype(bool)
    lo, hi = int(cluster.level_offset[r]), int(cluster.level_offset[r + 1])
    doms = np.arange(lo, hi)
    free_in = np.bincount(cluster.node_domain[r], weights=np.where(elig, cluster.free_gpus, 0),
                          minlength=cluster.n_domains)[doms]
    held: dict[int, list[tuple[float, int, _Running]]] = {}
    for v in cands:
        dv = cluster.node_domain[r, v.nodes]
        g = np.bincount(dv - lo, weights=np.where(elig[v.nodes], v.use[:, 0], 0), minlength=hi - lo)
        for j in np.flatnonzero(g).tolist():
            held.setdefault(j, []).append((v.cost / g[j], int(g[j]), v))
    lbs = []
    for j in range(hi - lo):
        deficit = need - int(free_in[j])
        lb = 0.0
        for ratio, g, _v in sorted(held.get(j, []), key=lambda t: t[0]):
            if deficit <= 0:
                break
            take = min(g, deficit)
            lb += ratio * take
            deficit -= take
        if deficit > 0:
            continue  # cannot host the gang even with every candidate there evicted
        lbs.append((lb, j))
    lbs.sort()
    best = greedy
    best_cost = _plan_cost(greedy) if greedy is not None else (float("inf"), 0)
    proved = True
    for lb, j in lbs:
        if lb > best_cost[0] + 1e-9:  # equal cost may still tie-break on fewer victims
            break
        if time.perf_counter() >= deadline:
            proved = False
            break
        d = int(doms[j])
        within = np.zeros(cluster.n_nodes, bool)
        within[cluster.domain_start[d]:cluster.domain_end[d]] = True
        local = [v for _, _, v in held.get(j, [])]
        local_hint = [v for v in (best or []) if v in local]
        got, ok = _cpsat(cluster, prepared, local, local_hint, deadline, workers, seed, within)
        if got is None:
            proved = proved and ok  # infeasible in this domain is a proof too
            continue
        proved = proved and ok
        c = _plan_cost(got)
        if c < best_cost:
            best, best_cost = got, c
    return best, proved and best is not None


def _plan_cost(victims: list[_Running]) -> tuple[int, int]:
    return sum(r.cost for r in victims), len(victims)

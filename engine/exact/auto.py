"""The auto policy: heuristic, then a lower-bound proof, then CP-SAT within the time budget.

``engine/api.py`` runs the heuristic and its per-level bound check; when that does not prove the
answer it calls ``improve`` here, which (placer ``auto``)
1. tightens the bound with the lexicographic pruning pass (engine/exact/bounds.py ``lex_bound``): if every
   counted level meets its bound the heuristic's answer is proved and returned as is;
2. runs the exact tree DP (engine/exact/tree_dp.py): for one pod set it proves the heuristic or returns a
   better, proved answer (``placer="dp"``); for several pod sets the main set's DP is a lower bound,
   met when the other sets fit on the DP's nodes;
3. otherwise runs CP-SAT (seeded with the best answer so far, model build counted in the budget;
   first near the current answer when the candidates are many) and keeps the better answer by the
   objective's key (parts 1-3); ties keep the earlier answer.
``placer="cpsat"`` always runs CP-SAT, seeded with the heuristic's answer (no DP). A solver
exception falls back to the heuristic's answer with a note; a timeout keeps the best answer found.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from ..model.cluster import Cluster
from ..model.errors import InvalidRequest
from ..model.types import GangRequest, Placement
from ..place.explain import explain
from ..place.heuristic import place_heuristic
from ..place.objective import DEFAULT_OBJECTIVE
from ..place.request import PreparedGang, prepare
from ..place import age, capacity
from ..place.capacity import FreeCapacity, common_domain
from ..place.solution import Solution, proved_optimal, objective_of, to_placement
from . import bounds, cpsat  # called as module attributes: the fault tests replace them
from .cpsat_model import solver_import_ms, timing
from .tree_dp import DPTimeout, solve_tree_dp

log = logging.getLogger(__name__)

NEIGHBOURHOOD_NODES = 400  # above this many candidate nodes, first solve near the heuristic's answer
NEIGHBOURHOOD_SHARE = 0.6  # of the remaining budget


def improve(cluster: Cluster, prepared: PreparedGang, sol: Solution, placer: str, *,
            time_limit_ms: float = 100.0, workers: int = 1, seed: int = 0,
            deadline: float | None = None) -> Solution:
    """Return an answer at least as good as ``sol`` (the heuristic's), proved optimal when possible."""
    t0 = time.perf_counter()
    if deadline is None:
        deadline = t0 + time_limit_ms / 1e3
    try:
        fits = [capacity.node_fit(cluster, prepared, s) for s in range(len(prepared.gang.pod_sets))]
        if not sol.placed and bounds.capacity_infeasible(cluster, prepared, fits):
            sol.optimal = True  # proved: some pod set cannot reach its minimum even alone
            sol.extra["proof"] = "capacity"
            return sol
        heuristic_score = objective_of(cluster, prepared, sol) if sol.placed else None
        bound = bounds.lex_bound(cluster, prepared, sol, fits, heuristic_score.domains if heuristic_score else None)
        if sol.placed and bound.proved:
            sol.optimal, sol.gap = True, 0.0
            sol.lower_bound = bound.lower
            sol.extra["proof"] = "lexicographic bound"
            if placer != "cpsat":
                return sol
        hint = sol
        if (sol.placed and bound.pods_fixed is not None and len(prepared.gang.pod_sets) == 1 and not sol.optimal
                and placer != "cpsat"):
            dp = _try_dp(cluster, prepared, sol, heuristic_score, fits[0], bound, deadline)
            if dp is not None:
                return dp
        if (sol.placed and bound.pods_fixed is not None and len(prepared.gang.pod_sets) > 1 and not sol.optimal
                and placer != "cpsat"):
            dp = _try_dp_multi(cluster, prepared, sol, heuristic_score, fits, bound, deadline)
            if dp is not None:
                return dp
        # CP-SAT from here on: the one-time ortools import (~0.6 s) is not part of the budget
        t_imp = time.perf_counter()
        cpsat.load_cp_model()
        deadline += time.perf_counter() - t_imp
        res = None
        if hint.placed and bound.pods_fixed is not None and int(bound.nodes.sum()) > NEIGHBOURHOOD_NODES:
            res = _neighbourhood(cluster, prepared, hint, bound, workers, seed, deadline)
            if res is not None and res.solution.placed and not res.proved_domains and time.perf_counter() < deadline:
                if objective_of(cluster, prepared, res.solution).key < objective_of(cluster, prepared, hint).key:
                    res.solution.max_pods = hint.max_pods
                    hint = res.solution  # a better start for the full model
                res = None
        if res is None:
            res = cpsat.solve_cpsat(cluster, prepared, hint, workers=workers, seed=seed, bound=bound, deadline=deadline)
    except Exception as exc:  # never lose the heuristic's answer to a solver problem
        log.exception("CP-SAT failed; keeping the heuristic's answer")
        sol.note = f"cpsat failed: {type(exc).__name__}: {exc}"
        sol.extra["cpsat_error"] = str(exc)
        return sol
    c = res.solution
    if hint is not sol:  # the DP's answer (proved on parts 1-2) is the one to beat
        sol, heuristic_score = hint, objective_of(cluster, prepared, hint)
    if not c.placed:
        if not sol.placed and c.optimal:
            sol.optimal = True
            sol.placer = "cpsat"
        sol.extra.update(c.extra)
        return sol
    if not sol.placed:
        return c
    c_key = objective_of(cluster, prepared, c).key
    if c_key < heuristic_score.key or (placer == "cpsat" and c_key == heuristic_score.key):
        c.max_pods = sol.max_pods
        if sol.optimal and not c.optimal:
            c.optimal, c.gap = True, 0.0
        c.extra["heuristic_key"] = heuristic_score.key
        return c
    # the heuristic's answer stays; CP-SAT may have proved it
    if res.proved_domains:
        sol.optimal, sol.gap = True, 0.0
    elif not sol.optimal and c.gap is not None:
        sol.gap = c.gap if sol.gap is None else min(sol.gap, c.gap)
    sol.extra.update(c.extra)
    return sol


def _run_tree_dp(cluster: Cluster, prepared: PreparedGang, sol: Solution, fit, bound, deadline: float | None,
                 pod_set: int):
    """The tree DP for ``pod_set`` at the pod count the bounds fixed; None when it does not apply
    or ran out of time (noted on ``sol``)."""
    try:
        top = int(bound.domain_counts[0]) if len(bound.domain_counts) > 1 else None  # the heuristic's top level
        return solve_tree_dp(cluster, prepared, fit, int(bound.pods_fixed[pod_set]), bound.nodes, unique_level(bound),
                             deadline, pod_set=pod_set, top_count=top)
    except DPTimeout:
        sol.extra["dp"] = "out of time"
        return None


def _try_dp(cluster: Cluster, prepared: PreparedGang, sol: Solution, heuristic_score, fit, bound,
            deadline: float | None = None) -> Solution | None:
    """The exact tree DP (engine/exact/tree_dp.py) for a one-pod-set gang: prove the heuristic's answer, or
    replace it by the DP's when that is better. None when the DP does not apply."""
    out = _run_tree_dp(cluster, prepared, sol, fit, bound, deadline, 0)
    if out is None:
        return None
    counts, exact = out
    n_comp = len(heuristic_score.key)
    dp = Solution(counts=[counts], placed=True, placer="dp", lower_bound=bound.lower, max_pods=sol.max_pods,
                  optimal=True, gap=0.0)
    d_key = objective_of(cluster, prepared, dp).key
    # compare on the components the DP is exact on (pods, then ``exact`` of domains + stranded)
    n = min(1 + exact, n_comp)
    complete = n >= n_comp
    if d_key[:n] < heuristic_score.key[:n] or (d_key < heuristic_score.key):
        dp.extra.update({"heuristic_key": heuristic_score.key, "dp_complete": complete, "proof": "tree DP"})
        return dp
    # the heuristic is at least as good on every component the DP is exact on: it is proved there
    sol.optimal, sol.gap = True, 0.0
    sol.lower_bound = bound.lower
    sol.extra.update({"proof": "tree DP", "dp_complete": complete})
    return sol


def _neighbourhood(cluster: Cluster, prepared: PreparedGang, hint: Solution, bound, workers: int, seed: int,
                   deadline: float):
    """CP-SAT restricted to the lowest domain holding the whole current answer. Its answer is proved
    optimal when it meets the global lexicographic lower bound on every counted level."""
    dom = common_domain(cluster, hint.total_counts())
    if dom < 0:
        return None
    mask = np.zeros(cluster.n_nodes, bool)
    mask[cluster.domain_start[dom]:cluster.domain_end[dom]] = True
    now = time.perf_counter()
    sub_deadline = now + NEIGHBOURHOOD_SHARE * max(deadline - now, 0.0)
    res = cpsat.solve_cpsat(cluster, prepared, hint, workers=workers, seed=seed, bound=bound, deadline=sub_deadline,
                      restrict=mask)
    sol = res.solution
    if not sol.placed:
        return res
    dom_counts = objective_of(cluster, prepared, sol).domains[: prepared.counted_levels]
    meets = all(v <= int(b) for v, b in zip(dom_counts, bound.lower[: prepared.counted_levels].tolist()))
    res.proved_domains = bool(res.proved_domains and meets) or meets
    sol.optimal = res.proved_domains
    sol.gap = 0.0 if sol.optimal else None
    sol.extra["neighbourhood"] = cluster.domain_name(dom)
    return res


def _try_dp_multi(cluster: Cluster, prepared: PreparedGang, sol: Solution, heuristic_score, fits, bound,
                  deadline: float | None = None) -> Solution | None:
    """Several pod sets: the tree DP on the main pod set (most GPUs) is a lexicographic lower bound
    on parts (1)-(2) of the whole gang (its nodes and domains are a subset of the gang's, and every
    optimum lies in the pruned candidates). If the other pod sets fit on the nodes the DP chose,
    that answer meets the bound: proved optimal. If the heuristic's counts equal the bound, the
    heuristic is proved. Otherwise None (CP-SAT decides)."""
    main = prepared.order[0]
    pods = bound.pods_fixed
    out = _run_tree_dp(cluster, prepared, sol, fits[main], bound, deadline, main)
    if out is None:
        return None
    counts_main, exact = out
    n = prepared.counted_levels
    if exact < n:
        return None
    lb_sol = Solution([counts_main if i == main else np.zeros(cluster.n_nodes, np.int64)
                       for i in range(len(prepared.gang.pod_sets))], True, "dp")
    lb = objective_of(cluster, prepared, lb_sol).domains[:n]
    if tuple(heuristic_score.domains[:n]) == tuple(lb):
        sol.optimal, sol.gap = True, 0.0
        sol.extra["proof"] = "tree DP bound (main pod set)"
        return sol
    # place the other pod sets on the DP's nodes only, first fit in topology order
    free = FreeCapacity.copy_of(cluster)
    free.take(counts_main, prepared.gang.pod_sets[main])
    used = np.flatnonzero(counts_main)
    counts = [None] * len(prepared.gang.pod_sets)
    counts[main] = counts_main
    for i in prepared.order[1:]:
        ps = prepared.gang.pod_sets[i]
        c = np.zeros(cluster.n_nodes, np.int64)
        need = int(pods[i])
        unit = int(prepared.units[i][-1])
        if any(int(u) > 1 for u in prepared.units[i][:-1]):
            return None  # slices above the node level: leave it to CP-SAT
        for nd in used.tolist():
            if need <= 0:
                break
            if not prepared.eligible[i][nd]:
                continue
            k = min(free.fit_at(nd, ps), need)
            k -= k % unit
            if k <= 0:
                continue
            c[nd] = k
            need -= k
            free.take_at(nd, k, ps)
        if need > 0:
            return None
        counts[i] = c
    if prepared.required_level >= 0:
        d = cluster.node_domain[prepared.required_level, used]
        if d.min() != d.max():
            return None
    dp = Solution(counts=counts, placed=True, placer="dp", lower_bound=bound.lower, max_pods=sol.max_pods,
                  optimal=True, gap=0.0)
    d_score = objective_of(cluster, prepared, dp)
    if tuple(d_score.domains[:n]) != tuple(lb):
        return None
    if d_score.key > heuristic_score.key:  # cannot happen (lb <= heuristic); keep the heuristic, proved
        sol.optimal, sol.gap = True, 0.0
        return sol
    dp.extra.update({"heuristic_key": heuristic_score.key, "proof": "tree DP bound (main pod set)"})
    return dp


def unique_level(bound) -> int | None:
    """The deepest level that every optimum is proved to use exactly one domain of (with all levels
    above it), from the pruning pass; None if the top level is not such a level."""
    r = None
    for lv in range(min(bound.proved_levels, len(bound.domain_counts))):
        if int(bound.domain_counts[lv]) != 1:
            break
        r = lv
    return r


# --- the placer entry points (engine/api.py re-exports them) ---

PLACERS = ("auto", "heuristic", "cpsat")
DEFAULT_TIME_LIMIT_MS = 100.0


def place(cluster: Cluster, gang: GangRequest, placer: str = "auto", *,
          time_limit_ms: float = DEFAULT_TIME_LIMIT_MS, workers: int = 1, seed: int = 0,
          objective: str = DEFAULT_OBJECTIVE) -> Placement:
    """Place one gang on the cluster's free capacity (the cluster is not modified).

    ``objective`` names part (3) of the contract: ``"bottomup"`` (default: best fit from the node
    up) or ``"topdown"`` (the older order, top level first); see docs/placement.md."""
    t0 = time.perf_counter()
    imported = solver_import_ms()
    if placer not in PLACERS:
        raise InvalidRequest(f"unknown placer {placer!r}; choose one of {list(PLACERS)}", field="placer")
    prepared = prepare(cluster, gang, objective)
    sol = solve(cluster, prepared, placer, time_limit_ms=time_limit_ms, workers=workers, seed=seed)
    # the first CP-SAT run of a process imports OR-Tools (0.2-0.6 s): reported apart, not as placing time
    t = timing(t0, imported)
    p = to_placement(cluster, prepared, sol, t["elapsed_ms"])
    return dataclasses.replace(p, solver_import_ms=t["solver_import_ms"]) if t["solver_import_ms"] else p


def solve(cluster: Cluster, prepared, placer: str, *, time_limit_ms: float = DEFAULT_TIME_LIMIT_MS,
          workers: int = 1, seed: int = 0) -> Solution:
    """Run a placer on a prepared gang and fill in optimality, gap, reason and explanation."""
    sol = place_heuristic(cluster, prepared, rival_starts=placer == "heuristic")
    if sol.placed and age.applies(prepared):  # a one-pod gang: the age rule (engine/place/age.py)
        sol = age.place_one_pod(cluster, prepared, sol)
    if sol.placed:
        sol.optimal, sol.gap = proved_optimal(prepared, sol, objective_of(cluster, prepared, sol))
    if placer != "heuristic" and not sol.optimal:
        sol = improve(cluster, prepared, sol, placer, time_limit_ms=time_limit_ms, workers=workers, seed=seed)
    if not sol.placed and not sol.reason:
        sol.reason, sol.explanation = explain(cluster, prepared)
    return sol

"""The exact placer: OR-Tools CP-SAT over the whole placement contract (docs/placement.md), in steps:

1. data: node capacities (engine/place/capacity.py) and the pruning pass (engine/exact/bounds.py
   ``lex_bound``): candidate nodes, fixed pods and proved levels;
2. model: ``cpsat_model.build_model`` (variables, constraints, the objective's components);
3. solve: the lexicographic stages, one after the other (``_solve_stages``);
4. decode: pods per node per pod set into a ``Solution`` (``_decode``), with status and timings.

Objective, lexicographic (engine/place/objective.py): ``-pods``, domains at L0, L1, ... (counted levels,
the node count last), then stranded GPUs per level and nodes (free GPUs left in touched domains).

Exact lexicographic order (the proof): components ``c_1 .. c_m`` are integer expressions with known
ranges ``c_i in [lo_i, hi_i]``. A stage minimises ``sum_i w_i * (c_i - lo_i)`` with ``w_m = 1`` and
``w_i = w_{i+1} * (hi_{i+1} - lo_{i+1} + 1)``, so ``w_i > sum_{j>i} w_j * (hi_j - lo_j)``: lowering
``c_i`` by one gains ``w_i``, more than any change of all later components can lose, hence the
weighted minimum is the lexicographic minimum. Components are grouped into stages whose weights
stay below 2**50 (far from int64 overflow, and kind to the LP); after a stage is *proved* optimal
its weighted value is fixed by a constraint and the next stage runs. A stage that only finds a
feasible answer before the deadline ends the search: the best answer so far is returned, with the
gap on the first component above its bound.

Pruning and the lower bounds it starts from: engine/exact/bounds.py (``lex_bound``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ..model.cluster import Cluster
from ..place.capacity import node_fit
from ..place.request import PreparedGang
from ..place.solution import Solution, objective_of
from .bounds import LexBound, lex_bound
from .cpsat_model import (MAX_STAGE_WEIGHT, BuildTimeout, PlacementModel, build_model, lexicographic_stages,
                          load_cp_model, stage_objective, stage_weights)

log = logging.getLogger(__name__)



# ----------------------------------------------------------------------------- the model
@dataclass
class CpsatResult:
    solution: Solution
    status: str
    stages: int
    proved_domains: bool  # parts (1)-(2) of the objective proved optimal
    build_ms: float
    solve_ms: float
    n_vars: int


def solve_cpsat(cluster: Cluster, prepared: PreparedGang, hint: Solution | None = None, *,
                time_limit_ms: float = 100.0, workers: int = 1, seed: int = 0,
                bound: LexBound | None = None, deadline: float | None = None,
                restrict: np.ndarray | None = None) -> CpsatResult:
    """Solve the placement exactly (or as well as the time allows). ``hint``: the heuristic's answer.

    Steps: prune (``bounds.lex_bound``), build (``cpsat_model.build_model``), solve the
    lexicographic stages (``_solve_stages``), decode the pods per node into a Solution.
    ``deadline`` (perf_counter seconds) overrides ``time_limit_ms`` when given; model building
    counts against the budget. ``restrict`` (bool[n_nodes]): solve only over these nodes (a
    neighbourhood search: the answer is optimal within it; ``proved_domains`` then means "meets the
    global lower bound", checked by the caller).
    """
    t0 = time.perf_counter()
    if deadline is None:
        deadline = t0 + time_limit_ms / 1e3
    n_sets = len(prepared.gang.pod_sets)
    fits = [node_fit(cluster, prepared, s) for s in range(n_sets)]
    hint_domains = None
    if hint is not None and hint.placed:
        hint_domains = objective_of(cluster, prepared, hint).domains
    if bound is None:
        bound = lex_bound(cluster, prepared, hint if hint is not None else Solution([], False, "none"),
                          fits, hint_domains)
    cand = bound.nodes if restrict is None else (bound.nodes & restrict)
    nodes = np.flatnonzero(cand)
    try:
        pm = build_model(cluster, prepared, fits, bound, nodes, hint, deadline)
    except BuildTimeout as e:
        return _out_of_time(t0, e.n_vars, len(nodes))
    n_vars = pm.n_vars
    build_ms = (time.perf_counter() - t0) * 1e3
    if time.perf_counter() > deadline:
        return _out_of_time(t0, n_vars, len(nodes))
    t_solve = time.perf_counter()
    run = _solve_stages(pm, cluster.n_nodes, deadline, workers, seed)
    solve_ms = (time.perf_counter() - t_solve) * 1e3
    sol = _decode(run, bound)
    sol.extra.update({"cpsat_status": run.status, "cpsat_stages": run.stages, "cpsat_vars": n_vars,
                      "cpsat_build_ms": round(build_ms, 3), "cpsat_solve_ms": round(solve_ms, 3),
                      "candidate_nodes": len(nodes)})
    return CpsatResult(sol, run.status, run.stages, run.proved_domains, build_ms, solve_ms, n_vars)


@dataclass
class _StagedRun:
    """What the staged solve found: the best pods per node (None: no answer) and its status."""

    counts: list[np.ndarray] | None
    status: str
    stages: int
    proved_domains: bool  # parts (1)-(2) proved optimal
    gap: float | None


def _solver(workers: int, seed: int, m: int):
    """A CpSolver with the parameters that made proofs fast on 2 cores (STACK.md)."""
    solver = load_cp_model().CpSolver()
    params = solver.parameters
    params.num_workers = max(1, int(workers))
    params.random_seed = int(seed)
    if workers <= 1:
        params.linearization_level = 2
    if m > 256:
        params.symmetry_level = 0  # symmetry detection on big models overran the time limit by seconds
    return solver


def _read_x(solver_values, pm: PlacementModel, n_nodes: int) -> list[np.ndarray]:
    """Pods per node per pod set from a solver response's values."""
    counts = [np.zeros(n_nodes, np.int64) for _ in pm.x]
    for s, row in enumerate(pm.x):
        for k, v in enumerate(row):
            if v is not None:
                counts[s][pm.nodes[k]] = solver_values[v.index]
    return counts


def _solve_stages(pm: PlacementModel, n_nodes: int, deadline: float, workers: int, seed: int) -> _StagedRun:
    """Minimise the stages one after the other. A stage proved optimal fixes its value by a
    constraint and hints the next stage with its answer; a stage that is only feasible (or
    nothing found) by the deadline ends the search with the best answer so far."""
    cp_model = load_cp_model()
    model = pm.model
    n_dom = pm.n_domain_components
    solver = _solver(workers, seed, len(pm.nodes))
    best_counts = None
    status_name = "UNKNOWN"
    done_comps = 0
    proved_domains = False
    gap = None
    n_stages = 0
    for stage in lexicographic_stages(pm.components, n_dom, MAX_STAGE_WEIGHT):
        left = deadline - time.perf_counter()
        if left <= 0.001:
            break
        solver.parameters.max_time_in_seconds = left
        weights = stage_weights(stage)
        obj = stage_objective(stage, weights)
        model.minimize(obj)
        st = solver.solve(model)
        n_stages += 1
        status_name = solver.status_name(st)
        if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            break
        vals = solver.response_proto.solution
        best_counts = _read_x(vals, pm, n_nodes)
        if st == cp_model.OPTIMAL:
            done_comps += len(stage)
            if done_comps >= n_dom:
                proved_domains = True
                gap = 0.0
            model.add(obj == int(round(solver.objective_value)))
            # next stage starts from this answer
            model.clear_hints()
            for row in pm.x:
                for v in row:
                    if v is not None:
                        model.add_hint(v, int(vals[v.index]))
        else:
            if not proved_domains:
                gap = _stage_gap(stage, weights, solver.objective_value, solver.best_objective_bound,
                                 done_comps, n_dom)
            break
    return _StagedRun(best_counts, status_name, n_stages, proved_domains, gap)


def _decode(run: _StagedRun, bound: LexBound) -> Solution:
    """The staged run as a Solution (no answer: unplaced, proved so when CP-SAT found it infeasible)."""
    if run.counts is None:
        sol = Solution(counts=[], placed=False, placer="cpsat")
        if run.status == "INFEASIBLE":
            sol.optimal = True  # proved: nothing (with the min_counts) fits
            sol.reason = "does not fit (proved by CP-SAT)"
        return sol
    sol = Solution(counts=run.counts, placed=True, placer="cpsat", optimal=run.proved_domains, gap=run.gap)
    sol.lower_bound = bound.lower
    return sol


def _out_of_time(t0: float, n_vars: int, m: int) -> CpsatResult:
    """The budget ran out while building the model: no CP-SAT answer (the caller keeps the hint)."""
    sol = Solution(counts=[], placed=False, placer="cpsat")
    ms = (time.perf_counter() - t0) * 1e3
    sol.extra.update({"cpsat_status": "BUILD_TIMEOUT", "cpsat_stages": 0, "cpsat_vars": n_vars,
                      "cpsat_build_ms": round(ms, 3), "cpsat_solve_ms": 0.0, "candidate_nodes": m})
    return CpsatResult(sol, "BUILD_TIMEOUT", 0, False, ms, 0.0, n_vars)


def _stage_gap(stage, weights, value: float, bound: float, done: int, n_dom: int) -> float | None:
    """Gap on the first component (of parts (1)-(2)) whose value is above its decoded bound."""
    rem_v, rem_b = int(round(value)), int(np.floor(bound + 1e-6))
    for i, (comp, w) in enumerate(zip(stage, weights)):
        if done + i >= n_dom:
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

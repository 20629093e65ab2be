"""Batch placement: place a queue of gangs jointly.

Objective, lexicographic: (a) the priority-weighted number of gangs placed whole (a gang's weight is
``priority + 1``, priorities below 0 count as 0), (b) each gang's locality, (c) best fit.

Method:
1. *Sequential baseline*: gangs one by one in priority order (ties: input order), each with the
   single-gang placer (``auto`` by default) on what the earlier ones left.
2. *Other orders*: the same sequential placement by weight per GPU (knapsack greedy) and by
   priority then smallest first; the best set so far seeds the next step.
3. *Joint CP-SAT* (when the baseline leaves a gang out and the placer is not ``heuristic``): one
   model with a Boolean "placed" per gang, every gang's pods-per-node counts, its required level,
   slices and min_counts, and the shared node capacities (GPUs, CPU, memory, pod slots); maximise
   (a), seeded with the baseline. Proved optimal when CP-SAT proves it within the budget. Skipped
   above 30,000 (pod set, node) variables: the greedy answer stands (large clusters x long queues).
4. *Locality pass*: the chosen set of gangs is re-placed one by one (priority order, then largest
   first) with the single-gang placer; if that sequence fits all of them it is used, otherwise the
   joint positions are kept. Then every placed gang, in priority order, is released and re-placed
   by the single-gang placer on what all the others hold, and the new placement kept (it is never
   worse: the old one is still available). So each gang ends topology-optimal *given the others*
   (as proved as the single-gang placer proves it); (b) and (c) are not optimised jointly.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..model.cluster import Cluster
from ..model.errors import InvalidRequest
from ..model.types import GangRequest, Placement
from ..place.capacity import FreeCapacity, node_fit
from ..place.objective import DEFAULT_OBJECTIVE
from ..place.request import PreparedGang, prepare
from ..place.solution import Solution, objective_of, to_placement
from .auto import solve
from .cpsat_model import add_gang, load_cp_model, read_counts, solver_import_ms, timing

log = logging.getLogger(__name__)

DEFAULT_BATCH_TIME_LIMIT_MS = 1000.0
MAX_JOINT_VARIABLES = 30_000  # above this the joint model's build alone would eat the budget


def gang_weight(gang: GangRequest) -> int:
    return max(int(gang.priority), 0) + 1


@dataclass
class BatchResult:
    placements: list[Placement]  # input order
    placed_gangs: int
    placed_gpus: int
    weighted_placed: int  # sum of gang_weight over placed gangs
    method: str  # "sequential", "greedy-order" or "joint": where the chosen set of gangs came from
    optimal: bool  # (a) proved maximal (all gangs placed, or CP-SAT proved it)
    baseline: dict = field(default_factory=dict)  # the sequential baseline's placed_gangs/gpus/weighted
    elapsed_ms: float = 0.0  # the one-time OR-Tools import is not in it
    solver_import_ms: float = 0.0  # the OR-Tools import this call paid (first CP-SAT run of the process)

    def to_dict(self) -> dict:
        return {"placements": [p.to_dict() for p in self.placements], "placed_gangs": self.placed_gangs,
                "placed_gpus": self.placed_gpus, "weighted_placed": self.weighted_placed, "method": self.method,
                "optimal": self.optimal, "baseline": dict(self.baseline), "elapsed_ms": round(self.elapsed_ms, 3),
                "solver_import_ms": round(self.solver_import_ms, 3)}


# ----------------------------------------------------------------------------- helpers
def _take(work: Cluster, prepared: PreparedGang, counts: list[np.ndarray], sign: int = 1) -> None:
    """Subtract (sign=1) or give back (sign=-1) a gang's usage from the working cluster's free arrays."""
    free = FreeCapacity.of(work)
    for ps, c in zip(prepared.gang.pod_sets, counts):
        free.take(c, ps, sign, in_place=True)


def _gpus(prepared: PreparedGang, counts: list[np.ndarray]) -> int:
    return int(sum(int(c.sum()) * ps.gpus for ps, c in zip(prepared.gang.pod_sets, counts)))


def _solve(work: Cluster, prepared: PreparedGang, placer: str, limit_ms: float, workers: int, seed: int) -> Solution:
    return solve(work, prepared, placer, time_limit_ms=limit_ms, workers=workers, seed=seed)


def _sequential(cluster: Cluster, prepared: list[PreparedGang], order: list[int], placer: str, limit_ms: float,
                workers: int, seed: int, only: set[int] | None = None):
    work = cluster.copy()
    sols: dict[int, Solution] = {}
    for i in order:
        if only is not None and i not in only:
            continue
        sol = _solve(work, prepared[i], placer, limit_ms, workers, seed)
        if sol.placed:
            _take(work, prepared[i], sol.counts)
            sols[i] = sol
    return sols, work


def _stats(prepared: list[PreparedGang], sols: dict[int, Solution]) -> dict:
    return {"placed_gangs": len(sols), "placed_gpus": sum(_gpus(prepared[i], s.counts) for i, s in sols.items()),
            "weighted_placed": sum(gang_weight(prepared[i].gang) for i in sols)}


# ----------------------------------------------------------------------------- joint model
def _joint(cluster: Cluster, prepared: list[PreparedGang], baseline: dict[int, Solution], deadline: float,
           workers: int, seed: int):
    """CP-SAT: maximise the weighted number of gangs placed. Returns (chosen set, counts, proved)."""
    cp_model = load_cp_model()
    LE = cp_model.LinearExpr
    model = cp_model.CpModel()
    act, gvs = [], []
    all_fits = [[node_fit(cluster, p, s) for s in range(len(p.gang.pod_sets))] for p in prepared]
    size = sum(int((f > 0).sum()) for fits in all_fits for f in fits)
    if size > MAX_JOINT_VARIABLES:
        log.info("joint batch model skipped: %d pod-set x node variables", size)
        return None
    for i, p in enumerate(prepared):
        if time.perf_counter() > deadline:
            return None
        fits = all_fits[i]
        a = model.new_bool_var(f"placed_{i}")
        gv = add_gang(model, cluster, p, fits, a)
        act.append(a)
        gvs.append(gv)
    # shared node capacities
    rows: dict[tuple[int, int], list] = {}
    for i, (p, gv) in enumerate(zip(prepared, gvs)):
        for s, ps in enumerate(p.gang.pod_sets):
            reqs = (ps.gpus, ps.cpu, ps.memory, 1)
            for k, v in enumerate(gv.x[s]):
                if v is None:
                    continue
                n = int(gv.nodes[k])
                for r, q in enumerate(reqs):
                    if q:
                        rows.setdefault((n, r), []).append((v, q))
    free = (cluster.free_gpus, cluster.free_cpu, cluster.free_mem, cluster.free_pods)
    for (n, r), terms in rows.items():
        if len(terms) < 2:
            continue  # one variable: its own fit already bounds it
        model.add(LE.weighted_sum([v for v, _ in terms], [q for _, q in terms]) <= int(free[r][n]))
    weights = [gang_weight(p.gang) for p in prepared]
    model.maximize(LE.weighted_sum(act, weights))
    for i, a in enumerate(act):
        model.add_hint(a, 1 if i in baseline else 0)
        for s, row in enumerate(gvs[i].x):
            for k, v in enumerate(row):
                if v is not None and hasattr(v, "index"):
                    model.add_hint(v, int(baseline[i].counts[s][gvs[i].nodes[k]]) if i in baseline else 0)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, deadline - time.perf_counter())
    solver.parameters.num_workers = max(1, workers)
    solver.parameters.random_seed = seed
    st = solver.solve(model)
    if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    chosen = {i for i, a in enumerate(act) if solver.boolean_value(a)}
    counts = {i: read_counts(solver, gvs[i], cluster.n_nodes) for i in chosen}
    return chosen, counts, st == cp_model.OPTIMAL


# ----------------------------------------------------------------------------- entry point
def place_batch(cluster: Cluster, gangs: Sequence[GangRequest], placer: str = "auto", *,
                time_limit_ms: float = DEFAULT_BATCH_TIME_LIMIT_MS, gang_time_limit_ms: float = 100.0,
                workers: int = 1, seed: int = 0, joint: bool = True,
                objective: str = DEFAULT_OBJECTIVE) -> BatchResult:
    """Place ``gangs`` jointly on the cluster's free capacity (the cluster is not modified).

    ``time_limit_ms`` bounds the joint CP-SAT solve; ``gang_time_limit_ms`` each single-gang solve.
    """
    t0 = time.perf_counter()
    imported = solver_import_ms()
    names = [g.name for g in gangs]
    if len(set(names)) != len(names):
        raise InvalidRequest("gang names in a batch must be unique", field="gangs")
    prepared = []
    for i, g in enumerate(gangs):
        try:
            prepared.append(prepare(cluster, g, objective))
        except InvalidRequest as exc:
            raise InvalidRequest(f"gang {g.name!r}: {exc.message}", field=f"gangs[{i}].{exc.field}") from None
    order = sorted(range(len(gangs)), key=lambda i: (-gangs[i].priority, i))
    base_sols, _ = _sequential(cluster, prepared, order, placer, gang_time_limit_ms, workers, seed)
    base = _stats(prepared, base_sols)
    chosen, method, proved = set(base_sols), "sequential", len(base_sols) == len(gangs)
    sols = base_sols
    if not proved and placer != "heuristic" and joint and len(gangs) > 1:
        # other greedy orders: best weight per GPU first (knapsack greedy), then smallest first
        best_w = base["weighted_placed"]
        for key in (lambda i: (-gang_weight(gangs[i]) / max(gangs[i].total_gpus, 1), gangs[i].total_gpus, i),
                    lambda i: (-gangs[i].priority, gangs[i].total_gpus, i)):
            seq, _ = _sequential(cluster, prepared, sorted(range(len(gangs)), key=key), placer, gang_time_limit_ms,
                                 workers, seed)
            w = _stats(prepared, seq)["weighted_placed"]
            if w > best_w:
                best_w, sols, chosen, method = w, seq, set(seq), "greedy-order"
        try:
            load_cp_model()  # before the deadline: the one-time import is not part of the budget
            res = _joint(cluster, prepared, sols, t0 + (time_limit_ms + solver_import_ms() - imported) / 1e3,
                         workers, seed)
        except Exception as exc:  # keep the baseline
            log.exception("joint batch model failed")
            res = None
            base["joint_error"] = str(exc)
        if res is not None:
            j_chosen, j_counts, j_proved = res
            j_w = sum(gang_weight(gangs[i]) for i in j_chosen)
            if j_w > best_w:
                chosen, method = j_chosen, "joint"
                # prefer a clean sequential re-placement of exactly that set (better locality)
                best = None
                for key in (lambda i: (-gangs[i].priority, -gangs[i].total_gpus, i),
                            lambda i: (-gangs[i].priority, i)):
                    seq, _ = _sequential(cluster, prepared, sorted(chosen, key=key), placer, gang_time_limit_ms,
                                         workers, seed, only=chosen)
                    if set(seq) == chosen:
                        best = seq
                        break
                sols = best if best is not None else {
                    i: Solution(counts=j_counts[i], placed=True, placer="cpsat") for i in chosen}
            proved = j_proved and j_w >= best_w
    # locality pass: each placed gang re-placed given all the others
    work = cluster.copy()
    for i, s in sols.items():
        _take(work, prepared[i], s.counts)
    placements: list[Placement | None] = [None] * len(gangs)
    for i in sorted(sols, key=lambda i: (-gangs[i].priority, i)):
        _take(work, prepared[i], sols[i].counts, -1)
        t1 = time.perf_counter()
        new = _solve(work, prepared[i], placer, gang_time_limit_ms, workers, seed)
        if new.placed:
            if objective_of(work, prepared[i], new).key <= objective_of(work, prepared[i], sols[i]).key:
                sols[i] = new
        placements[i] = to_placement(work, prepared[i], sols[i], (time.perf_counter() - t1) * 1e3)
        _take(work, prepared[i], sols[i].counts)
    for i in range(len(gangs)):
        if placements[i] is None:
            sol = _solve(work, prepared[i], "heuristic", gang_time_limit_ms, workers, seed)
            if sol.placed:  # fits only if earlier gangs were not all placed first: report it as a batch decision
                sol = Solution(counts=[], placed=False, placer="batch",
                               reason="not chosen in the batch (placing it would leave out higher-weighted gangs)")
            placements[i] = to_placement(work, prepared[i], sol, 0.0)
    stats = _stats(prepared, sols)
    return BatchResult(placements=placements, placed_gangs=stats["placed_gangs"], placed_gpus=stats["placed_gpus"],
                       weighted_placed=stats["weighted_placed"], method=method, optimal=proved, baseline=base,
                       **timing(t0, imported))

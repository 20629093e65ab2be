"""The auto policy: heuristic, then a lower-bound proof, then CP-SAT within the time budget.

``engine/api.py`` runs the heuristic and its per-level bound check; when that does not prove the
answer it calls ``improve`` here, which
1. (auto) tightens the bound with the lexicographic pruning pass (engine/cpsat.py ``lex_bound``):
   if every counted level meets its bound the heuristic's answer is proved and returned as is;
2. otherwise runs CP-SAT (seeded with the heuristic's answer, model build counted in the budget)
   and keeps the better answer by the objective's key (parts 1-3); ties keep the heuristic's.
``placer="cpsat"`` always runs CP-SAT. A solver exception falls back to the heuristic's answer
with a note; a timeout keeps the best answer found.
"""
from __future__ import annotations

import logging
import time

from .cluster import Cluster
from .request import PreparedGang
from .solution import Solution, score_solution

log = logging.getLogger(__name__)


def improve(cluster: Cluster, prepared: PreparedGang, sol: Solution, placer: str, *,
            time_limit_ms: float = 100.0, workers: int = 1, seed: int = 0,
            deadline: float | None = None) -> Solution:
    """Return an answer at least as good as ``sol`` (the heuristic's), proved optimal when possible."""
    from .cpsat import lex_bound, load_cp_model, node_fit, solve_cpsat

    load_cp_model()  # the one-time import (~0.6 s) is not part of any placement's budget
    t0 = time.perf_counter()
    if deadline is None:
        deadline = t0 + time_limit_ms / 1e3
    try:
        fits = [node_fit(cluster, prepared, s) for s in range(len(prepared.gang.pod_sets))]
        h_score = score_solution(cluster, prepared, sol) if sol.placed else None
        bound = lex_bound(cluster, prepared, sol, fits, h_score.domains if h_score else None)
        if sol.placed and bound.proved:
            sol.optimal, sol.gap = True, 0.0
            sol.lower_bound = bound.lower
            sol.extra["proof"] = "lexicographic bound"
            if placer != "cpsat":
                return sol
        hint = sol
        if sol.placed and bound.pods_fixed is not None and len(prepared.gang.pod_sets) == 1 and not sol.optimal:
            dp = _try_dp(cluster, prepared, sol, h_score, fits[0], bound)
            if dp is not None:
                if placer != "cpsat" or dp.extra.get("dp_complete"):
                    return dp
                hint = dp
        res = solve_cpsat(cluster, prepared, hint, workers=workers, seed=seed, bound=bound, deadline=deadline)
    except Exception as exc:  # never lose the heuristic's answer to a solver problem
        log.exception("CP-SAT failed; keeping the heuristic's answer")
        sol.note = f"cpsat failed: {type(exc).__name__}: {exc}"
        sol.extra["cpsat_error"] = str(exc)
        return sol
    c = res.solution
    if hint is not sol:  # the DP's answer (proved on parts 1-2) is the one to beat
        sol, h_score = hint, score_solution(cluster, prepared, hint)
    if not c.placed:
        if not sol.placed and c.optimal:
            sol.optimal = True
            sol.placer = "cpsat"
        sol.extra.update(c.extra)
        return sol
    if not sol.placed:
        return c
    c_key = score_solution(cluster, prepared, c).key
    if c_key < h_score.key or (placer == "cpsat" and c_key == h_score.key):
        c.max_pods = sol.max_pods
        if sol.optimal and not c.optimal:
            c.optimal, c.gap = True, 0.0
        c.extra["heuristic_key"] = h_score.key
        return c
    # the heuristic's answer stays; CP-SAT may have proved it
    if res.proved_12:
        sol.optimal, sol.gap = True, 0.0
    elif not sol.optimal and c.gap is not None:
        sol.gap = c.gap if sol.gap is None else min(sol.gap, c.gap)
    sol.extra.update(c.extra)
    return sol


def _try_dp(cluster: Cluster, prepared: PreparedGang, sol: Solution, h_score, fit, bound) -> Solution | None:
    """The exact tree DP (engine/lexdp.py) for a one-pod-set gang: prove the heuristic's answer, or
    replace it by the DP's when that is better. None when the DP does not apply."""
    from .lexdp import lex_dp

    out = lex_dp(cluster, prepared, fit, int(bound.pods_fixed[0]), bound.nodes)
    if out is None:
        return None
    counts, exact = out
    n_comp = len(h_score.key)
    dp = Solution(counts=[counts], placed=True, placer="dp", lower_bound=bound.lower, max_pods=sol.max_pods,
                  optimal=True, gap=0.0)
    d_key = score_solution(cluster, prepared, dp).key
    # compare on the components the DP is exact on (pods, then ``exact`` of domains + stranded)
    n = min(1 + exact, n_comp)
    complete = n >= n_comp
    if d_key[:n] < h_score.key[:n] or (d_key < h_score.key):
        dp.extra.update({"heuristic_key": h_score.key, "dp_complete": complete, "proof": "tree DP"})
        return dp
    # the heuristic is at least as good on every component the DP is exact on: it is proved there
    sol.optimal, sol.gap = True, 0.0
    sol.lower_bound = bound.lower
    sol.extra.update({"proof": "tree DP", "dp_complete": complete})
    return sol

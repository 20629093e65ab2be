"""The public entry point: ``place(cluster, gang, placer="auto") -> Placement``.

Thin on purpose: validate (engine/request.py), call a placer, wrap the answer
(engine/solution.py). Placers:
- ``heuristic``: the native hierarchical best fit (engine/heuristic.py);
- ``cpsat``: the exact CP-SAT model (engine/cpsat.py), seeded with the heuristic's answer;
- ``auto``: the heuristic, then a lower-bound proof; CP-SAT only when the proof fails, within
  ``time_limit_ms``; the better answer is kept (engine/policy.py).
"""
from __future__ import annotations

import time

from .cluster import Cluster
from .errors import InvalidRequest
from .explain import explain
from .heuristic import place_heuristic
from .model import GangRequest, Placement
from .request import prepare
from .solution import Solution, proved_optimal, score_solution, to_placement

PLACERS = ("auto", "heuristic", "cpsat")
DEFAULT_TIME_LIMIT_MS = 100.0


def place(cluster: Cluster, gang: GangRequest, placer: str = "auto", *,
          time_limit_ms: float = DEFAULT_TIME_LIMIT_MS, workers: int = 1, seed: int = 0) -> Placement:
    """Place one gang on the cluster's free capacity (the cluster is not modified)."""
    t0 = time.perf_counter()
    if placer not in PLACERS:
        raise InvalidRequest(f"unknown placer {placer!r}; choose one of {list(PLACERS)}", field="placer")
    prepared = prepare(cluster, gang)
    sol = solve(cluster, prepared, placer, time_limit_ms=time_limit_ms, workers=workers, seed=seed)
    return to_placement(cluster, prepared, sol, (time.perf_counter() - t0) * 1e3)


def solve(cluster: Cluster, prepared, placer: str, *, time_limit_ms: float = DEFAULT_TIME_LIMIT_MS,
          workers: int = 1, seed: int = 0) -> Solution:
    """Run a placer on a prepared gang and fill in optimality, gap, reason and explanation."""
    sol = place_heuristic(cluster, prepared)
    if sol.placed:
        sol.optimal, sol.gap = proved_optimal(prepared, sol, score_solution(cluster, prepared, sol))
    if placer != "heuristic" and not sol.optimal:
        try:
            from .policy import improve
        except ImportError:  # the exact placer is not built into this version
            if placer == "cpsat":
                raise InvalidRequest("the cpsat placer is not available in this build", field="placer") from None
        else:
            sol = improve(cluster, prepared, sol, placer, time_limit_ms=time_limit_ms, workers=workers, seed=seed)
    if not sol.placed and not sol.reason:
        sol.reason, sol.explanation = explain(cluster, prepared)
    return sol

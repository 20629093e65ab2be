"""The auto policy: heuristic, lower-bound proof (lexicographic pruning pass, exact tree DP), CP-SAT.

- On tiny random instances ``auto`` is proved optimal and equals the oracle on parts (1)-(2) (and
  on (3) as well: the DP is complete on tiny clusters and CP-SAT solves every stage).
- Regression cases where the heuristic is not optimal and auto is.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from gangplace.engine import place
from gangplace.engine.api import solve
from gangplace.engine.model.errors import GangplaceError
from gangplace.engine.model.types import GangRequest, PodSet, SliceLayer, TopologyConstraint
from gangplace.engine.place import largest_first
from gangplace.engine.place.request import prepare
from gangplace.engine.place.solution import objective_of
from gangplace.engine.model.synthetic import generate
from tests.conftest import build_cluster, gang, instances, pod_set
from tests.reference import check_counts, check_feasible, reference_place

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
BUDGET = 20_000.0  # ms; tiny instances prove in milliseconds, this only removes machine-speed effects


@settings(max_examples=300, **SETTINGS)
@given(instances())
def test_auto_is_topology_optimal_on_tiny_instances(inst):
    cluster, g = inst
    try:
        p = prepare(cluster, g)
    except GangplaceError:
        return
    ref = reference_place(cluster, g)
    pl = place(cluster, g, "auto", time_limit_ms=BUDGET, workers=1, seed=0)
    assert pl.placed == ref.placed
    assert check_feasible(cluster, g, pl) == []
    if not ref.placed:
        return
    assert pl.optimal and pl.gap == 0.0
    n = 1 + p.counted_levels
    assert pl.objective[:n] == ref.key[:n]
    sol = solve(cluster, p, "auto", time_limit_ms=BUDGET, workers=1, seed=0)
    assert sol.placer in ("heuristic", "dp", "cpsat")


# ------------------------------------------------------------------ regressions: heuristic not optimal
REGRESSIONS = [
    # (preset, gpus, seed, workers, gpus per worker, with a CPU-only leader pod set)
    ("dgx-h100", 16384, 1, 64, 8, False),     # heuristic 4 SUs, optimum 3 (tree DP)
    ("dgx-h100", 16384, 1, 512, 8, False),    # heuristic 10 blocks, optimum 9
    ("gb200-nvl72", 1024, 1, 64, 4, False),   # heuristic 6 racks, optimum 4
    ("gb200-nvl72", 16384, 1, 128, 4, False),  # heuristic 10 racks, optimum 8
    # (the leader + workers rows moved to tests/engine/place/test_heuristic.py: the heuristic now puts a
    # later pod set on nodes the gang already uses first, and is proved optimal there)
]


# These instances were found with part (3) compared top-down, which steers the heuristic's descent;
# they are kept on that objective (selectable by name) so that each still exercises the DP / CP-SAT
# improving a suboptimal heuristic (with the bottom-up default the heuristic is proved optimal on
# some of them, e.g. the 64 x 8 gang on 16,384 GPUs).
OLD_ORDER = "topdown"


@pytest.mark.parametrize("preset,gpus,seed,k,gpp,leader", REGRESSIONS)
def test_auto_beats_a_suboptimal_heuristic(preset, gpus, seed, k, gpp, leader, monkeypatch):
    # the kernel's answer alone: the heuristic's second start (engine/place/largest_first.py, the
    # rivals' candidate) already finds the optimum on some of these; the DP and CP-SAT must too
    monkeypatch.setattr(largest_first, "applies", lambda prepared: False)
    c = generate(preset, gpus=gpus, fill=0.6, seed=seed)
    sets = (PodSet("w", k, gpus=gpp),) + ((PodSet("leader", 1, gpus=0, cpu=4000),) if leader else ())
    g = GangRequest("g", sets)
    p = prepare(c, g, OLD_ORDER)
    h = solve(c, p, "heuristic")
    a = solve(c, p, "auto", time_limit_ms=BUDGET, workers=1, seed=0)
    n = 1 + p.counted_levels
    hk, ak = objective_of(c, p, h).key, objective_of(c, p, a).key
    assert not h.optimal
    assert a.optimal and a.placer in ("dp", "cpsat")
    assert ak[:n] < hk[:n]
    pl = place(c, g, "auto", time_limit_ms=BUDGET, objective=OLD_ORDER)
    assert pl.optimal and pl.placer == a.placer
    assert pl.objective[:n] == ak[:n]


def test_auto_needs_cpsat_when_the_dp_does_not_apply():
    # two pod sets and a slice above the node level: no bound or DP proof, CP-SAT finds and proves
    # one SU fewer than the heuristic (the service fault tests use this instance to reach CP-SAT)
    c = generate("dgx-h100", gpus=1024, fill=0.6, seed=2)
    g = GangRequest("g", (PodSet("w", 24, gpus=8), PodSet("aux", 4, gpus=1, cpu=2000)),
                    TopologyConstraint(slices=(SliceLayer(4, "su"),)))
    p = prepare(c, g, OLD_ORDER)
    h = solve(c, p, "heuristic")
    a = solve(c, p, "auto", time_limit_ms=BUDGET, workers=1, seed=0)
    n = 1 + p.counted_levels
    assert not h.optimal and a.optimal and a.placer == "cpsat"
    assert objective_of(c, p, a).key[:n] < objective_of(c, p, h).key[:n]
    assert check_counts(c, g, a.counts) == []


def test_heuristic_proved_by_the_lexicographic_bound_skips_cpsat():
    # a gang that fits in one rack of the fullest block: bounds prove it, no solver involved
    c = build_cluster({"b0": {"r0": [0, 0, 8], "r1": [0]}, "b1": {"r2": [0, 0, 0, 0]}})
    g = gang(pod_set(2))
    sol = solve(c, prepare(c, g), "auto")
    assert sol.optimal and sol.placer == "heuristic"
    assert "cpsat_status" not in sol.extra


def test_heuristic_placer_never_runs_the_solver(monkeypatch):
    monkeypatch.setattr(largest_first, "applies", lambda prepared: False)  # the kernel's answer alone
    c = generate("dgx-h100", gpus=16384, fill=0.6, seed=1)
    g = GangRequest("g", (PodSet("w", 64, gpus=8),))
    sol = solve(c, prepare(c, g, OLD_ORDER), "heuristic")
    assert sol.placer == "heuristic" and not sol.optimal and sol.gap and sol.gap > 0


def test_the_one_time_solver_import_is_reported_apart_and_paid_only_when_cpsat_runs():
    """In a fresh interpreter: the heuristic and auto (the DP suffices here) never import OR-Tools;
    the first CP-SAT call reports the import in ``solver_import_ms``, not in ``elapsed_ms``; the
    next call has nothing to report."""
    import json
    import subprocess
    import sys
    code = """
import json, sys
from gangplace.engine import GangRequest, PodSet, place
from gangplace.engine.model.synthetic import generate
from gangplace.engine.model.types import TopologyConstraint
c = generate("gb200-nvl72", gpus=16384, fill=0.6, seed=1)
# the issue's input: not proved by the heuristic, so placer="cpsat" runs CP-SAT
g = GangRequest("g", (PodSet("w", 128, gpus=4),), TopologyConstraint(preferred="rack"))
out = {"auto": place(c, g).to_dict(), "loaded_before": "ortools.sat.python.cp_model" in sys.modules}
first, second = place(c, g, placer="cpsat"), place(c, g, placer="cpsat")
out.update(first=first.to_dict(), second=second.to_dict(), first_ms=first.solver_import_ms)
print(json.dumps(out))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert not out["loaded_before"] and out["auto"]["solver_import_ms"] == 0.0
    assert out["first_ms"] > 0 and out["first"]["solver_import_ms"] == round(out["first_ms"], 3)
    assert out["second"]["solver_import_ms"] == 0.0
    assert out["first"]["placed"] and out["first"]["elapsed_ms"] >= 0

"""The CP-SAT placer against the brute-force oracle (tests/reference.py): exact optimum equality.

One CP-SAT worker and a fixed seed everywhere; generous time limits (tiny instances prove in
milliseconds) so that the answers do not depend on the machine's speed.
"""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings

from gangplace.engine.exact import cpsat
from gangplace.engine.api import place, solve
from gangplace.engine.model.errors import GangplaceError
from gangplace.engine.place.request import prepare
from gangplace.engine.place.solution import objective_of
from tests.conftest import build_cluster, gang, instances, pod_set
from tests.reference import check_counts, reference_place

SLOW = 20_000.0  # ms: never reached on tiny instances; keeps the tests independent of machine speed
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)


def _check_exact(cluster, g, use_hint: bool, objective: str = "age") -> None:
    try:
        p = prepare(cluster, g, objective)
    except GangplaceError:
        return
    ref = reference_place(cluster, g, objective=objective)
    hint = solve(cluster, p, "heuristic") if use_hint else None
    res = cpsat.solve_cpsat(cluster, p, hint, time_limit_ms=SLOW, workers=1, seed=0)
    sol = res.solution
    assert sol.placed == ref.placed, (res.status, ref)
    assert sol.optimal, res.status  # proved: either an optimum or infeasibility
    if not ref.placed:
        return
    assert check_counts(cluster, g, sol.counts) == []
    # parts (1)-(3) equal the oracle's optimum exactly
    assert objective_of(cluster, p, sol).key == ref.key[:-1]
    assert sol.gap == 0.0


@settings(max_examples=300, **SETTINGS)
@given(instances())
def test_cpsat_matches_oracle_without_hint(inst):
    _check_exact(*inst, use_hint=False)


@settings(max_examples=300, **SETTINGS)
@given(instances())
def test_cpsat_matches_oracle_with_heuristic_hint_and_pruning(inst):
    # with the heuristic's answer the model is pruned to candidate domains (lex_bound) and the
    # proved levels are fixed: the optimum must survive the pruning
    _check_exact(*inst, use_hint=True)


@settings(max_examples=150, **SETTINGS)
@given(instances())
def test_cpsat_matches_the_oracle_on_the_older_top_down_order_too(inst):
    # part (3) compared top level first (objective="topdown"): still the exact optimum
    _check_exact(*inst, use_hint=True, objective="topdown")


@settings(max_examples=150, **SETTINGS)
@given(instances())
def test_cpsat_matches_the_oracle_on_bottom_up_in_gpus_only(inst):
    # part (3) bottom-up without the pod room (objective="bottomup", the default before podfit)
    _check_exact(*inst, use_hint=True, objective="bottomup")


@settings(max_examples=60, **SETTINGS)
@given(instances())
def test_many_small_stages_stay_lexicographic(inst):
    # force one component per stage: the staged solve must reach the same optimum
    old = cpsat.MAX_STAGE_WEIGHT
    cpsat.MAX_STAGE_WEIGHT = 2
    try:
        _check_exact(*inst, use_hint=False)
    finally:
        cpsat.MAX_STAGE_WEIGHT = old


def test_weighted_order_is_lexicographic_on_a_trade_off():
    # two blocks: b0 holds the gang in one rack but leaves more GPUs stranded at the block level;
    # fewer racks (part 2) must win over less stranded capacity (part 3)
    c = build_cluster({"b0": {"r0": [0, 0, 0], "r1": [0]}, "b1": {"r2": [0, 0], "r3": [0, 0]}})
    g = gang(pod_set(3))
    p = prepare(c, g)
    res = cpsat.solve_cpsat(c, p, None, time_limit_ms=SLOW)
    s = objective_of(c, p, res.solution)
    assert s.domains == (1, 1, 3)
    assert s.key == reference_place(c, g).key[:-1]


def test_slices_and_required_level():
    c = build_cluster({"b0": {"r0": [0, 0], "r1": [0, 0, 8]}, "b1": {"r2": [0, 0, 0]}})
    g = gang(pod_set(4), required="block", slices=((2, "rack"),))
    p = prepare(c, g)
    res = cpsat.solve_cpsat(c, p, None, time_limit_ms=SLOW)
    assert res.solution.placed and res.solution.optimal
    assert objective_of(c, p, res.solution).key == reference_place(c, g).key[:-1]
    assert check_counts(c, g, res.solution.counts) == []


def test_infeasible_is_proved():
    c = build_cluster({"b0": {"r0": [0, 8]}, "b1": {"r1": [0]}})
    g = gang(pod_set(2), required="rack")
    p = prepare(c, g)
    res = cpsat.solve_cpsat(c, p, None, time_limit_ms=SLOW)
    assert not res.solution.placed
    assert res.status == "INFEASIBLE" and res.solution.optimal


def test_timeout_keeps_the_hint_and_reports_a_gap():
    # a budget too small to build and solve: the answer must still be the heuristic's, never worse
    from gangplace.engine.model.synthetic import generate
    c = generate("dgx-h100", gpus=2048, fill=0.6, seed=1)
    g = gang(pod_set(64, gpus=4), pod_set(3, gpus=0, cpu=8000, name="aux"))
    p = prepare(c, g)
    h = solve(c, p, "heuristic")
    sol = solve(c, p, "cpsat", time_limit_ms=0.001, workers=1, seed=0)
    assert sol.placed
    assert objective_of(c, p, sol).key <= objective_of(c, p, h).key
    if not sol.optimal:
        assert sol.gap is None or 0.0 <= sol.gap <= 1.0


@pytest.mark.parametrize("workers", [1])
def test_solver_exception_falls_back_to_heuristic(monkeypatch, workers):
    from gangplace.engine.exact import auto as policy
    from gangplace.engine.model.synthetic import generate
    c = generate("dgx-h100", gpus=1024, fill=0.6, seed=2)
    p = prepare(c, gang(pod_set(16), pod_set(1, gpus=0, cpu=4000, name="leader")))
    h = solve(c, p, "heuristic")

    def boom(*a, **k):
        raise RuntimeError("solver exploded")
    monkeypatch.setattr(cpsat, "solve_cpsat", boom)
    out = policy.improve(c, p, h, "cpsat", time_limit_ms=100, workers=workers, seed=0)
    assert out.placer == "heuristic" and out.placed
    assert "solver exploded" in out.note


def test_the_random_instances_are_mostly_real_requests():
    """Guards the exactness tests above against a strategy that silently yields only invalid
    requests: the same strategy, same settings, must give mostly valid, placeable gangs."""
    valid, placed = [], []

    @settings(max_examples=300, **SETTINGS)
    @given(instances())
    def draw(inst):
        cluster, g = inst
        try:
            prepare(cluster, g)
        except GangplaceError:
            return
        valid.append(1)
        placed.append(reference_place(cluster, g).placed)

    draw()
    assert len(valid) >= 200 and sum(placed) >= 50


def test_the_solver_import_is_reported_apart_from_elapsed_ms(monkeypatch):
    """A placement that pays the OR-Tools import (first CP-SAT run of a process) reports it in
    ``solver_import_ms`` and leaves it out of ``elapsed_ms``; one that does not reports 0."""
    from gangplace.engine.exact import auto, cpsat_model

    from gangplace.engine.model.synthetic import generate
    c = generate("dgx-h100", gpus=1024, fill=0.6, seed=2)
    g = gang(pod_set(64, gpus=4), pod_set(3, gpus=0, cpu=8000, name="aux"))  # the heuristic's bounds: unproved
    p = place(c, g, "heuristic")
    assert p.solver_import_ms == 0.0 and p.to_dict()["solver_import_ms"] == 0.0
    real = cpsat_model.load_cp_model

    def slow_first_import():  # what a cold process sees: the import takes a while, once
        cp = real()  # (the real import, if this test runs first, counts too)
        time.sleep(0.3)
        monkeypatch.setattr(cpsat_model, "_import_ms", cpsat_model._import_ms + 300.0)
        return cp

    monkeypatch.setattr(auto.cpsat, "load_cp_model", slow_first_import)
    before = cpsat_model.solver_import_ms()
    t0 = time.perf_counter()
    p = place(c, g, "cpsat")
    wall_ms = (time.perf_counter() - t0) * 1e3  # >= the import + the placing
    paid = cpsat_model.solver_import_ms() - before
    assert p.placed and paid >= 300.0
    assert p.solver_import_ms == paid and p.to_dict()["solver_import_ms"] == round(paid, 3)
    assert 0.0 <= p.elapsed_ms <= wall_ms - paid  # the import is not counted as placing time


@pytest.mark.parametrize("kind", ["batch", "preempt"])
def test_batches_and_preemption_plans_report_the_solver_import_apart(monkeypatch, kind):
    """The same for ``place_batch`` and ``plan_preemption``: the import is reported as
    ``solver_import_ms``, left out of ``elapsed_ms`` and added to the budget's deadline."""
    from gangplace.engine.exact import batch, cpsat_model, preempt
    from gangplace.engine.model.types import Allocation, GangRequest, NodeSpec, PodSet, TopologyConstraint
    from gangplace.engine.model.cluster import Cluster

    module = batch if kind == "batch" else preempt
    real, calls = module.load_cp_model, []

    def slow_first_import():
        cp = real()
        if not calls:  # a cold process pays the import once
            time.sleep(0.3)
            monkeypatch.setattr(cpsat_model, "_import_ms", cpsat_model._import_ms + 300.0)
        calls.append(1)
        return cp

    monkeypatch.setattr(module, "load_cp_model", slow_first_import)
    before = cpsat_model.solver_import_ms()
    t0 = time.perf_counter()
    if kind == "batch":  # one by one only two fit; the joint CP-SAT model places all three
        c = build_cluster({"b0": {"r0": [0, 0], "r1": [0, 0, 0]}})
        gangs = [gang(pod_set(1), name="A"), gang(pod_set(2), name="B", required="rack"),
                 gang(pod_set(2), name="C", required="rack")]
        result = batch.place_batch(c, gangs, time_limit_ms=20_000, workers=1, seed=0)
        assert result.placed_gangs == 3 and result.optimal
    else:  # the CP-SAT victim model runs
        nodes = [NodeSpec(n, {"block": "b0", "rack": r}, 8, gpus_used=8, pods_used=1,
                          allocations=(Allocation(j, p, 8),))
                 for n, r, j, p in (("n0", "r0", "lo", 0), ("n1", "r0", "lo", 0), ("n2", "r1", "mid", 1),
                                    ("n3", "r1", "mid", 1))]
        c = Cluster(("block", "rack"), nodes)
        g = GangRequest("g", (PodSet("w", 2, gpus=8),), TopologyConstraint(required="rack"), priority=3)
        result = preempt.plan_preemption(c, g, time_limit_ms=20_000)
        assert result.feasible and result.optimal and result.victims == ["lo"]
    wall_ms = (time.perf_counter() - t0) * 1e3
    paid = cpsat_model.solver_import_ms() - before
    assert calls and paid >= 300.0 and result.solver_import_ms == paid
    assert result.to_dict()["solver_import_ms"] == round(paid, 3)
    assert 0.0 <= result.elapsed_ms <= wall_ms - paid

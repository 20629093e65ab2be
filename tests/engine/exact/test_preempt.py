"""Preemption planning: cheapest lower-priority victims, evicted whole; checked by brute force."""
from __future__ import annotations

import itertools
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gangplace.engine import Cluster
from gangplace.engine.model.types import Allocation, GangRequest, NodeSpec, PodSet, TopologyConstraint
from gangplace.engine.exact.preempt import evict, plan_preemption, running_gangs
from tests.reference import check_feasible, reference_place

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)


def cluster_with(jobs: dict[str, tuple[int, dict[str, int]]], racks: dict[str, list[str]], gpus: int = 8) -> Cluster:
    """jobs: name -> (priority, {node: gpus}); racks: rack -> node names (block b0)."""
    nodes = []
    for rack, names in racks.items():
        for n in names:
            allocs = tuple(Allocation(j, prio, per[n]) for j, (prio, per) in sorted(jobs.items()) if n in per)
            used = sum(a.gpus for a in allocs)
            nodes.append(NodeSpec(n, {"block": "b0", "rack": rack}, gpus, gpus_used=used, pods_used=len(allocs),
                                  allocations=allocs))
    return Cluster(("block", "rack"), nodes)


def test_no_victims_when_it_fits():
    c = cluster_with({"x": (0, {"n0": 8})}, {"r0": ["n0", "n1"]})
    plan = plan_preemption(c, GangRequest("g", (PodSet("w", 1, gpus=8),), priority=1))
    assert plan.feasible and plan.victims == [] and plan.cost == 0 and plan.placement.placed


def test_cheapest_victims_and_whole_gangs():
    # r0: lo (prio 0) on n0, n1; r1: mid (prio 1) on n2, n3; spread (prio 0) on n4 and n0? no:
    jobs = {"lo": (0, {"n0": 8, "n1": 8}), "mid": (1, {"n2": 8, "n3": 8}), "top": (5, {"n4": 8})}
    c = cluster_with(jobs, {"r0": ["n0", "n1"], "r1": ["n2", "n3"], "r2": ["n4", "n5"]})
    g = GangRequest("g", (PodSet("w", 2, gpus=8),), TopologyConstraint(required="rack"), priority=3)
    plan = plan_preemption(c, g, time_limit_ms=20_000)
    assert plan.feasible and plan.optimal
    assert plan.victims == ["lo"]  # cost 16 < mid's 32; top (priority 5) is never a candidate
    assert plan.evicted_gpus == 16 and plan.cost == 16
    assert {a.node for a in plan.placement.pods} == {"n0", "n1"}
    after = evict(c, [running_gangs(c)["lo"]])
    assert check_feasible(after, g, plan.placement) == []
    d = plan.to_dict()
    assert json.loads(json.dumps(d))["victims"] == ["lo"]


def test_never_evicts_equal_or_higher_priority():
    c = cluster_with({"same": (2, {"n0": 8}), "higher": (3, {"n1": 8})}, {"r0": ["n0", "n1"]})
    plan = plan_preemption(c, GangRequest("g", (PodSet("w", 1, gpus=8),), priority=2))
    assert not plan.feasible and plan.victims == [] and "lower priority" in plan.reason


def test_infeasible_even_after_evicting_everything():
    c = cluster_with({"lo": (0, {"n0": 8})}, {"r0": ["n0"]})
    plan = plan_preemption(c, GangRequest("g", (PodSet("w", 2, gpus=8),), priority=2))
    assert not plan.feasible and "even after" in plan.reason


@settings(max_examples=100, **SETTINGS)
@given(st.integers(0, 100_000))
def test_plan_matches_brute_force_over_victim_sets(seed):
    rng = np.random.default_rng(seed)
    names = [f"n{i}" for i in range(6)]
    racks = {"r0": names[:3], "r1": names[3:]}
    free = {n: 8 for n in names}
    jobs = {}
    for j in range(int(rng.integers(4, 9))):
        per = {}
        for n in rng.choice(names, size=int(rng.integers(1, 3)), replace=False).tolist():
            take = int(min(free[n], rng.choice([2, 4, 8])))
            if take:
                per[n] = take
                free[n] -= take
        if per:
            jobs[f"j{j}"] = (int(rng.integers(0, 3)), per)
    c = cluster_with(jobs, racks)
    k = int(rng.integers(2, 6))
    req = "rack" if rng.integers(0, 2) else None
    g = GangRequest("g", (PodSet("w", k, gpus=int(rng.choice([4, 8]))),), TopologyConstraint(required=req),
                    priority=2)
    plan = plan_preemption(c, g, time_limit_ms=20_000, workers=1, seed=0)
    # brute force: the cheapest (cost, count) subset of lower-priority gangs after which the oracle fits it
    run = running_gangs(c)
    cands = sorted((r for r in run.values() if r.priority < g.priority), key=lambda r: r.name)
    best = None
    for m in range(len(cands) + 1):
        for sub in itertools.combinations(cands, m):
            if reference_place(evict(c, list(sub)), g).placed:
                key = (sum(r.cost for r in sub), len(sub))
                if best is None or key < best:
                    best = key
    if best is None:
        assert not plan.feasible
        return
    assert plan.feasible and plan.optimal
    assert (plan.cost, len(plan.victims)) == best
    assert all(run[v].priority < g.priority for v in plan.victims)
    after = evict(c, [run[v] for v in plan.victims])
    assert check_feasible(after, g, plan.placement) == []
    ref = reference_place(after, g)
    n = 1 + len(after.levels) + 1
    assert plan.placement.objective[:n] == ref.key[:n]  # topology-optimal after the eviction


def test_cli_preempt(tmp_path, capsys):
    from gangplace.engine.model.formats import save_cluster
    from gangplace.service.cli import main
    jobs = {"lo": (0, {"n0": 8, "n1": 8}), "mid": (1, {"n2": 8, "n3": 8})}
    c = cluster_with(jobs, {"r0": ["n0", "n1"], "r1": ["n2", "n3"]})
    save_cluster(c, tmp_path / "c.yaml")
    (tmp_path / "g.yaml").write_text("name: g\npriority: 3\npod_sets: [{name: w, count: 2, gpus: 8}]\n")
    rc = main(["place", "--cluster", str(tmp_path / "c.yaml"), "--gang", str(tmp_path / "g.yaml"), "--preempt",
               "--output", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["victims"] == ["lo"] and out["placement"]["placed"]


def test_an_evicted_gangs_start_no_longer_ages_its_nodes():
    from gangplace.engine.exact.preempt import evict, running_gangs
    from gangplace.engine.model.types import Allocation
    from tests.conftest import node
    alloc = (Allocation("old", 0, 2, started=10.0), Allocation("young", 1, 2, started=500.0))
    c = Cluster(("rack",), [node("n0", {"rack": "r0"}, 8, 4, allocations=alloc)])
    assert c.oldest_start[0] == 10.0
    after = evict(c, [running_gangs(c)["old"]])
    assert after.oldest_start[0] == 500.0 and c.oldest_start[0] == 10.0

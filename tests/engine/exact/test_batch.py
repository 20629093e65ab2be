"""Batch placement: joint choice of gangs, no double booking, input order, CLI --gangs."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gangplace.engine.exact.batch import gang_weight, place_batch
from gangplace.engine.model.types import GangRequest, PodSet, TopologyConstraint
from gangplace.engine.model.synthetic import generate
from tests.conftest import build_cluster, gang, pod_set
from tests.reference import check_feasible

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)


def _usage(cluster, gangs, result):
    """GPUs / pod slots the batch takes per node (to check nothing is double-booked)."""
    gpus = np.zeros(cluster.n_nodes, np.int64)
    pods = np.zeros(cluster.n_nodes, np.int64)
    by_name = {g.name: g for g in gangs}
    for p in result.placements:
        g = by_name[p.gang]
        per = {ps.name: ps for ps in g.pod_sets}
        for a in p.pods:
            i = cluster.node_index[a.node]
            gpus[i] += per[a.pod_set].gpus
            pods[i] += 1
    return gpus, pods


def test_joint_beats_priority_order_on_a_trap():
    # r0 has 2 free nodes, r1 has 3. One by one, A (1 pod) goes best-fit into r0, B takes 2 of r1
    # and C (2 pods in one rack) no longer fits. Jointly: A in r1, B in r0, C in r1.
    c = build_cluster({"b0": {"r0": [0, 0], "r1": [0, 0, 0]}})
    gangs = [gang(pod_set(1), name="A"), gang(pod_set(2), name="B", required="rack"),
             gang(pod_set(2), name="C", required="rack")]
    r = place_batch(c, gangs, time_limit_ms=20_000, workers=1, seed=0)
    assert r.baseline["placed_gangs"] == 2
    assert r.placed_gangs == 3 and r.optimal
    assert [p.gang for p in r.placements] == ["A", "B", "C"]
    for g, p in zip(gangs, r.placements):
        assert p.placed and check_feasible(c, g, p) == []
    gpus, _ = _usage(c, gangs, r)
    assert (gpus <= c.free_gpus).all()


def test_priority_weight_wins_over_count():
    # one node of 8 GPUs: a priority-5 8-GPU gang beats two priority-0 4-GPU gangs (6 > 2)
    c = build_cluster({"b0": {"r0": [0]}})
    lo1 = GangRequest("lo1", (PodSet("w", 1, gpus=4),), priority=0)
    lo2 = GangRequest("lo2", (PodSet("w", 1, gpus=4),), priority=0)
    hi = GangRequest("hi", (PodSet("w", 1, gpus=8),), priority=5)
    r = place_batch(c, [lo1, lo2, hi], time_limit_ms=20_000)
    assert [p.placed for p in r.placements] == [False, False, True]
    assert r.weighted_placed == gang_weight(hi) == 6
    assert "not chosen" in r.placements[0].reason or r.placements[0].reason


def test_everything_fits_is_sequential_and_proved():
    c = generate("dgx-h100", gpus=2048, fill=0.5, seed=4)
    gangs = [GangRequest(f"g{i}", (PodSet("w", 2, gpus=8),), TopologyConstraint(preferred="su")) for i in range(4)]
    r = place_batch(c, gangs)
    assert r.placed_gangs == 4 and r.optimal and r.method == "sequential"
    assert r.placed_gpus == 64
    assert all(p.placed for p in r.placements)


@settings(max_examples=25, **SETTINGS)
@given(st.integers(0, 10_000))
def test_random_queues_never_double_book_and_never_lose_to_the_baseline(seed):
    rng = np.random.default_rng(seed)
    c = generate("gb200-nvl72", gpus=512, fill=float(rng.uniform(0.4, 0.8)), seed=seed)
    gangs = []
    for j in range(int(rng.integers(2, 10))):
        k = int(rng.choice([1, 2, 4, 8, 16]))
        req = "rack" if rng.integers(0, 2) else None
        gangs.append(GangRequest(f"g{j}", (PodSet("w", k, gpus=int(rng.choice([1, 2, 4]))),),
                                 TopologyConstraint(required=req), priority=int(rng.integers(0, 3))))
    r = place_batch(c, gangs, time_limit_ms=300, workers=1, seed=0)
    assert [p.gang for p in r.placements] == [g.name for g in gangs]
    assert r.weighted_placed >= r.baseline["weighted_placed"]
    gpus, pods = _usage(c, gangs, r)
    assert (gpus <= c.free_gpus).all() and (pods <= c.free_pods).all()
    for g, p in zip(gangs, r.placements):
        assert check_feasible(c, g, p) == [] if p.placed else not p.pods
    assert r.placed_gangs == sum(p.placed for p in r.placements)


def test_cli_gangs_batch_mode(tmp_path, capsys):
    from gangplace.engine.model.formats import save_cluster
    from gangplace.service.cli import main
    c = build_cluster({"b0": {"r0": [0, 0], "r1": [0, 0, 0]}})
    save_cluster(c, tmp_path / "c.yaml")
    q = tmp_path / "queue"
    q.mkdir()
    (q / "a.yaml").write_text("name: A\npod_sets: [{name: w, count: 1, gpus: 8}]\n")
    (q / "b.yaml").write_text("name: B\npod_sets: [{name: w, count: 2, gpus: 8}]\ntopology: {required: rack}\n")
    (q / "c.yaml").write_text("name: C\npod_sets: [{name: w, count: 2, gpus: 8}]\ntopology: {required: rack}\n")
    rc = main(["place", "--cluster", str(tmp_path / "c.yaml"), "--gangs", str(q), "--output", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["placed_gangs"] == 3 and out["baseline"]["placed_gangs"] == 2
    assert sorted(p["gang"] for p in out["placements"]) == ["A", "B", "C"]
    rc = main(["place", "--cluster", str(tmp_path / "c.yaml"), "--gangs", str(q), "--gang", str(q / "a.yaml")])
    assert rc == 2

"""The public entry point ``place`` (engine/api.py) and the Placement it returns."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gangplace.engine import InvalidRequest, Placement, place
from gangplace.engine.model.synthetic import generate
from tests.conftest import build_cluster, gang, pod_set
from tests.reference import check_feasible


def test_placement_carries_the_documented_fields():
    cluster = build_cluster({"b0": {"r0": [0, 0], "r1": [0]}, "b1": {"r2": [0]}})
    p = place(cluster, gang(pod_set(3, 8), name="train"), placer="heuristic")
    assert isinstance(p, Placement) and p.placed and p.placer == "heuristic"
    assert p.domains_used == {"block": 1, "rack": 2, "node": 3}
    assert p.stranded_gpus == {"block": 0, "rack": 0, "node": 0}
    assert p.optimal and p.gap == 0.0 and p.elapsed_ms > 0
    assert [(x.pod_set, x.index) for x in p.pods] == [("w", 0), ("w", 1), ("w", 2)]
    d = json.loads(json.dumps(p.to_dict()))
    assert list(d) == ["gang", "placed", "pods", "domains_used", "stranded_gpus", "placer", "optimal", "gap",
                       "elapsed_ms", "solver_import_ms", "reason", "explanation"]
    assert d["pods"][0] == {"pod_set": "w", "index": 0, "node": p.pods[0].node}


def test_pod_indices_follow_topology_order_per_pod_set():
    cluster = build_cluster({"b0": {"r0": [0, 0], "r1": [0, 0]}})
    p = place(cluster, gang(pod_set(1, 0, name="leader"), pod_set(6, 4, name="worker")), placer="heuristic")
    workers = [x for x in p.pods if x.pod_set == "worker"]
    assert [x.index for x in workers] == list(range(6))
    order = [cluster.node_index[x.node] for x in workers]
    assert order == sorted(order)


def test_place_does_not_modify_the_cluster():
    cluster = generate("dgx-h100", gpus=512, fill=0.5, seed=1)
    before = [a.copy() for a in (cluster.free_gpus, cluster.free_cpu, cluster.free_mem, cluster.free_pods,
                                 cluster.schedulable)]
    assert place(cluster, gang(pod_set(8, 8)), placer="heuristic").placed
    after = (cluster.free_gpus, cluster.free_cpu, cluster.free_mem, cluster.free_pods, cluster.schedulable)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_unknown_placer_is_invalid_input():
    cluster = build_cluster({"b0": {"r0": [0]}})
    with pytest.raises(InvalidRequest) as e:
        place(cluster, gang(pod_set(1, 1)), placer="greedy")
    assert e.value.field == "placer"


def test_repeated_calls_give_identical_answers():
    cluster = generate("gb200-nvl72", gpus=2048, fill=0.6, seed=1)
    g = gang(pod_set(16, 4), slices=((4, "rack"),))
    first = place(cluster, g, placer="heuristic")
    for _ in range(3):
        again = place(cluster, g, placer="heuristic")
        assert again.pods == first.pods and again.objective == first.objective


def test_elastic_gang_places_as_many_as_fit():
    cluster = build_cluster({"b0": {"r0": [0, 0, 8]}})
    g = gang(pod_set(4, 8, min_count=1))
    p = place(cluster, g, placer="heuristic")
    assert p.placed and len(p.pods) == 2 and check_feasible(cluster, g, p) == []
    assert not place(cluster, gang(pod_set(4, 8, min_count=3)), placer="heuristic").placed


@pytest.mark.parametrize("placer", ["auto", "heuristic"])
def test_auto_and_heuristic_agree_when_the_heuristic_is_proved_optimal(placer):
    cluster = build_cluster({"b0": {"r0": [0, 0]}, "b1": {"r1": [0, 0, 0]}})
    p = place(cluster, gang(pod_set(3, 8)), placer=placer)
    assert p.placed and p.optimal and p.domains_used == {"block": 1, "rack": 1, "node": 3}


BAD_PYTHON_GANGS = [
    ("no pod sets", dict(pod_sets=()), "pod_sets"),
    ("count zero", dict(pod_sets=(pod_set(0, 1),)), "pod_sets[0].count"),
    ("min_count above count", dict(pod_sets=(pod_set(2, 1, min_count=3),)), "pod_sets[0].min_count"),
    ("negative gpus", dict(pod_sets=(pod_set(2, -1),)), "pod_sets[0].gpus"),
    ("duplicate names", dict(pod_sets=(pod_set(1, 1), pod_set(1, 1))), "pod_sets[1].name"),
    ("count not a multiple of the slice", dict(pod_sets=(pod_set(5, 1),), slices=((2, "rack"),)),
     "pod_sets[0].count"),
    ("min_count not a multiple of the slice", dict(pod_sets=(pod_set(4, 1, min_count=1),), slices=((2, "rack"),)),
     "pod_sets[0].min_count"),
    ("outer slice not a multiple of the inner", dict(pod_sets=(pod_set(12, 1),), slices=((6, "block"), (4, "rack"))),
     "topology.slices[1].size"),
]


@pytest.mark.parametrize("what, kw, field", BAD_PYTHON_GANGS, ids=[c[0] for c in BAD_PYTHON_GANGS])
def test_gangs_built_in_python_are_validated_like_files(what, kw, field):
    cluster = build_cluster({"b0": {"r0": [0, 0]}})
    g = gang(*kw["pod_sets"], slices=kw.get("slices", ()))
    with pytest.raises(InvalidRequest) as e:
        place(cluster, g, placer="heuristic")
    assert e.value.field == field


def test_design_example_a_one_pod_leader_next_to_sliced_workers_places():
    """docs/formats.md's example gang: leader (1 pod) + 16 workers, slice 4 per rack. A pod set smaller than one
    slice is one partial slice (all of it in one domain); the workers' slices stay whole."""
    from gangplace.engine.model.formats import gang_from_dict
    from gangplace.engine.model.synthetic import generate
    cluster = generate("hetero", gpus=4096, fill=0.3, seed=3)
    g = gang_from_dict({"name": "train-7", "pod_sets": [
        {"name": "leader", "count": 1, "gpus": 0, "cpu": 8},
        {"name": "worker", "count": 16, "gpus": 8, "cpu": 24, "memory": "200Gi", "min_count": 12,
         "node_selector": {"gpu_type": "H100"}}],
        "topology": {"preferred": "rack", "slice": {"size": 4, "level": "rack"}}})
    for placer in ("heuristic", "auto"):
        p = place(cluster, g, placer=placer)
        assert p.placed, (placer, p.reason)
        workers = [x for x in p.pods if x.pod_set == "worker"]
        assert len(workers) in (12, 16) and len([x for x in p.pods if x.pod_set == "leader"]) == 1
        rack = cluster.levels.index("rack")
        for start in range(0, len(workers), 4):
            racks = {int(cluster.node_domain[rack, cluster.node_index[x.node]]) for x in workers[start:start + 4]}
            assert len(racks) == 1, (placer, start)


def test_a_pod_set_between_one_slice_and_a_multiple_is_refused_naming_it():
    from gangplace.engine.model.formats import gang_from_dict
    with pytest.raises(InvalidRequest) as e:
        gang_from_dict({"name": "g", "pod_sets": [{"name": "w", "count": 6, "gpus": 8}],
                        "topology": {"slice": {"size": 4, "level": "rack"}}})
    assert e.value.field == "pod_sets[0].count" and "multiple of slice size 4" in str(e.value)
    with pytest.raises(InvalidRequest) as e:  # smaller than a slice: all or nothing, so min_count 0 or count
        gang_from_dict({"name": "g", "pod_sets": [{"name": "w", "count": 3, "gpus": 8, "min_count": 2}],
                        "topology": {"slice": {"size": 4, "level": "rack"}}})
    assert e.value.field == "pod_sets[0].min_count"

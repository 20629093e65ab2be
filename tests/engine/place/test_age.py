"""Objective "age" (engine/place/age.py): a one-pod gang goes to the node whose oldest running GPU pod
started first, then podfit; checked by hand, against tests/reference.py on random instances with random
ages, and for every placer."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gangplace.engine.exact import cpsat
from gangplace.engine.exact.auto import place, solve
from gangplace.engine.model.cluster import Cluster
from gangplace.engine.model.errors import GangplaceError
from gangplace.engine.model.types import Allocation
from gangplace.engine.place.age import NOW, node_age
from gangplace.engine.place.request import prepare
from gangplace.engine.place.scoring import best_fit_scores
from gangplace.engine.place.solution import objective_of
from tests.conftest import build_cluster, gang, instances, node, pod_set
from tests.reference import check_counts, reference_place

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)


def _aged(ages: dict[str, float | None]) -> Cluster:
    """Four 8-GPU nodes in one rack; ``ages``: node -> the start of its one 1-GPU pod (None: unknown)."""
    nodes = []
    for i in range(4):
        name = f"n{i}"
        allocs = (Allocation("job", 0, 1, started=ages[name]),) if name in ages else ()
        nodes.append(node(name, {"block": "b0", "rack": "r0"}, 8, len(allocs), allocations=allocs))
    return Cluster(("block", "rack"), nodes)


def test_a_one_pod_gang_goes_where_the_oldest_pod_runs():
    c = _aged({"n1": 500.0, "n2": 100.0, "n3": 300.0})
    assert c.oldest_start.tolist() == [math.inf, 500.0, 100.0, 300.0]
    for placer in ("heuristic", "auto", "cpsat"):
        p = place(c, gang(pod_set(1, 2)), placer=placer)
        assert p.nodes == ["n2"] and p.optimal, placer
    # podfit alone: every used node has 7 GPUs free, so topology order picks the first
    assert place(c, gang(pod_set(1, 2)), objective="podfit").nodes == ["n1"]


def test_unknown_starts_count_as_the_oldest_and_whole_free_nodes_come_last():
    c = _aged({"n1": 100.0, "n3": None})
    assert c.oldest_start[3] == -math.inf
    assert place(c, gang(pod_set(1, 1))).nodes == ["n3"]
    # a pod that no partly used node holds goes to a whole free node (podfit's choice)
    assert place(c, gang(pod_set(1, 8))).nodes == ["n0"]


def test_age_comes_before_podfit_and_podfit_breaks_equal_ages():
    # n1: 1 GPU used since t=100 (7 free); n2: 6 used since t=200 (2 free); podfit alone picks n2
    nodes = [node("n0", {"rack": "r0"}, 8, 0),
             node("n1", {"rack": "r0"}, 8, 1, allocations=(Allocation("a", 0, 1, started=100.0),)),
             node("n2", {"rack": "r0"}, 8, 6, allocations=(Allocation("b", 0, 6, started=200.0),)),
             node("n3", {"rack": "r0"}, 8, 4, allocations=(Allocation("c", 0, 4, started=100.0),))]
    c = Cluster(("rack",), nodes)
    assert place(c, gang(pod_set(1, 1)), objective="podfit").nodes == ["n2"]
    assert place(c, gang(pod_set(1, 1))).nodes == ["n3"]  # n1 and n3 equally old; n3 is the tighter fit


def test_usage_without_a_record_counts_as_started_now():
    c = _aged({"n1": 100.0})
    c.take_free(2, gpus=4)  # taken on this cluster object with no allocation (a batch's earlier gang)
    assert node_age(c, np.arange(4)).tolist() == [math.inf, 100.0, NOW, math.inf]
    assert place(c, gang(pod_set(1, 1))).nodes == ["n1"]
    c.take_free(1, gpus=6)  # n1 now holds only 1 more GPU: a 2-GPU pod goes to the young node n2
    assert place(c, gang(pod_set(1, 2))).nodes == ["n2"]


def test_gangs_of_several_pods_are_placed_as_podfit_places_them():
    c = _aged({"n1": 500.0, "n2": 100.0, "n3": 300.0})
    for g in (gang(pod_set(2, 4)), gang(pod_set(1, 2), pod_set(1, 0, name="cpu")), gang(pod_set(1, 0))):
        a, b = place(c, g), place(c, g, objective="podfit")
        assert (a.nodes, a.objective) == (b.nodes, b.objective)


def test_extender_scores_rank_the_oldest_node_first():
    c = _aged({"n1": 500.0, "n2": 100.0, "n3": 300.0})
    idx, scores = best_fit_scores(c, np.arange(4), gpus=1)
    assert dict(zip(idx.tolist(), scores.tolist())) == {2: 10, 3: 7, 1: 4, 0: 1}
    idx, scores = best_fit_scores(c, np.arange(4), gpus=1, objective="podfit")
    assert scores[idx.tolist().index(0)] == min(scores) and len(set(scores[1:].tolist())) == 1


@st.composite
def aged_instances(draw):
    """tests.conftest.instances() with a random start on each used node (or unknown, or none recorded);
    half of them with a one-pod gang instead (the gangs the age rule decides)."""
    cluster, g = draw(instances())
    if draw(st.booleans()):
        g = gang(pod_set(1, draw(st.integers(1, 4))))
    starts = draw(st.lists(st.sampled_from([0.0, 10.0, 20.0, -math.inf, math.inf]), min_size=cluster.n_nodes,
                           max_size=cluster.n_nodes))
    cluster.oldest_start[:] = starts
    return cluster, g


@settings(max_examples=300, **SETTINGS)
@given(aged_instances())
def test_every_placer_matches_the_oracle_with_ages(inst):
    cluster, g = inst
    try:
        p = prepare(cluster, g)
    except GangplaceError:
        return
    ref = reference_place(cluster, g)
    for placer in ("heuristic", "auto"):
        sol = solve(cluster, p, placer, time_limit_ms=20_000.0)
        assert sol.placed == ref.placed
        if ref.placed:
            assert check_counts(cluster, g, sol.counts) == []
            value = objective_of(cluster, p, sol)
            if sol.optimal:
                assert value.key[: 1 + p.counted_levels] == ref.key[: 1 + p.counted_levels]
            if value.age is not None:  # the age rule decides: the oracle's parts (1)-(3) exactly
                assert sol.optimal and value.key == ref.key[:-1], placer
    res = cpsat.solve_cpsat(cluster, p, None, time_limit_ms=20_000.0, workers=1, seed=0)
    assert res.solution.placed == ref.placed
    if ref.placed:
        assert objective_of(cluster, p, res.solution).key == ref.key[:-1]

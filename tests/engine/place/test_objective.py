"""The objective (engine/place/objective.py) against the oracle's from-scratch key (tests/reference.py)."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings

from gangplace.engine.model.errors import GangplaceError
from gangplace.engine.place.objective import OBJECTIVES, node_paths, objective_of_counts, objective_of_nodes, pod_unit
from gangplace.engine.place.request import prepare
from gangplace.engine.place.solution import Solution, gpus_taken, objective_of
from tests.conftest import build_cluster, instances
from tests.reference import reference_key, reference_place

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None,
                max_examples=150)


def _valid(cluster, g) -> bool:
    try:
        prepare(cluster, g)
    except GangplaceError:
        return False
    return True


@settings(**SETTINGS)
@given(instances())
def test_objective_key_equals_the_reference_key_of_the_oracles_answer(inst):
    cluster, g = inst
    ref = reference_place(cluster, g) if _valid(cluster, g) else None
    if ref is None or not ref.placed:
        return
    p = prepare(cluster, g)
    counts = ref.counts
    for objective in OBJECTIVES:
        value = objective_of_counts(cluster, np.sum(counts, axis=0), gpus_taken(p, counts), p.counted_levels,
                                    objective, unit=pod_unit(g))
        # a placer's answer is scored by solution.objective_of (with objective "age", a one-pod gang's
        # node age before part (3)); objective_of_counts is part (3) without it
        full = objective_of(cluster, prepare(cluster, g, objective), Solution(list(counts), True, "ref"))
        want = reference_key(cluster, g, counts, objective)
        assert full.key + (node_paths(cluster, np.sum(counts, axis=0)),) == want
        if full.age is None:
            assert value.key == full.key


def test_stranded_gpus_count_every_node_of_a_touched_domain():
    # rack r0: nodes with 8 and 4 free GPUs; one 8-GPU pod on the first leaves 4 stranded in the
    # rack and the block, 0 on the node; the untouched rack r1 counts nowhere
    c = build_cluster({"b0": {"r0": [0, 4], "r1": [0]}})
    counts = np.array([1, 0, 0], np.int64)
    value = objective_of_counts(c, counts, counts * 8, counted=3, unit=(8, 1))
    assert value.pods_placed == 1
    assert value.domains == (1, 1, 1)
    assert value.stranded == (4 + 8, 4, 0)
    # part (3), podfit: node; rack's room for 8-GPU pods before placement (8 // 8 + 4 // 8 = 1) and its
    # stranded GPUs; the block's (r1's node counts too: 1 + 1 = 2) and its stranded GPUs
    assert value.pod_room == (2, 1)
    assert value.key == (-1, 1, 1, 1, 0, 1, 4, 2, 12)
    bottomup = objective_of_counts(c, counts, counts * 8, counted=3, objective="bottomup", unit=(8, 1))
    assert bottomup.key == (-1, 1, 1, 1, 0, 4, 12)  # GPUs only: node, rack, block
    topdown = objective_of_counts(c, counts, counts * 8, counted=3, objective="topdown", unit=(8, 1))
    assert topdown.key == (-1, 1, 1, 1, 12, 4, 0)  # the older order: block, rack, node


def test_pod_room_counts_whole_pods_of_the_gangs_size_at_most_its_pods_per_node():
    c = build_cluster({"b0": {"r0": [1, 5]}})  # free 7 and 3
    counts = np.array([1, 0], np.int64)
    room = lambda gpus, unit: objective_of_counts(c, counts, counts * gpus, counted=3, unit=unit).pod_room  # noqa: E731
    assert room(1, (1, 8)) == (10, 10)  # eight 1-GPU pods: 7 + 3
    assert room(1, (1, 4)) == (7, 7)  # four: 4 + 3
    assert room(1, (1, 1)) == (2, 2)  # one: the nodes that can take it
    assert room(4, (4, 2)) == (1, 1)  # 4-GPU pods: 7 and 3 free hold one


def test_pod_unit_is_the_largest_pod_and_its_count():
    from gangplace.engine.model.types import GangRequest, PodSet
    g = GangRequest("g", (PodSet("w", 6, 8), PodSet("d", 1, 0), PodSet("x", 2, 8)))
    assert pod_unit(g) == (8, 8)
    assert pod_unit(GangRequest("c", (PodSet("a", 3, 0),))) == (1, 3)  # no GPUs: free GPUs, all pods


def test_a_preferred_level_leaves_lower_levels_out_of_part_2():
    c = build_cluster({"b0": {"r0": [0], "r1": [0]}})
    nodes = np.array([0, 1], np.int64)
    value = objective_of_nodes(c, nodes, np.array([8, 8], np.int64), pods_placed=2, counted=1, unit=(8, 2))
    assert value.domains == (1, 2, 2)
    # racks and nodes are not counted in part (2); part (3) is podfit's: nodes, racks (room, GPUs), block
    assert value.key == (-2, 1, value.stranded[2], 2, value.stranded[1], 2, value.stranded[0])

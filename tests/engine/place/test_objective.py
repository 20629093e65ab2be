"""The objective (engine/place/objective.py) against the oracle's from-scratch key (tests/reference.py)."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings

from gangplace.engine.model.errors import GangplaceError
from gangplace.engine.place.objective import node_paths, objective_of_counts, objective_of_nodes
from gangplace.engine.place.request import prepare
from gangplace.engine.place.solution import gpus_taken
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
    value = objective_of_counts(cluster, np.sum(counts, axis=0), gpus_taken(p, counts), p.counted_levels)
    want = reference_key(cluster, g, counts)
    assert value.key + (node_paths(cluster, np.sum(counts, axis=0)),) == want


def test_stranded_gpus_count_every_node_of_a_touched_domain():
    # rack r0: nodes with 8 and 4 free GPUs; one 8-GPU pod on the first leaves 4 stranded in the
    # rack and the block, 0 on the node; the untouched rack r1 counts nowhere
    c = build_cluster({"b0": {"r0": [0, 4], "r1": [0]}})
    counts = np.array([1, 0, 0], np.int64)
    value = objective_of_counts(c, counts, counts * 8, counted=3)
    assert value.pods_placed == 1
    assert value.domains == (1, 1, 1)
    assert value.stranded == (4 + 8, 4, 0)
    assert value.key == (-1, 1, 1, 1, 0, 4, 12)  # part (3) bottom-up: node, rack, block
    topdown = objective_of_counts(c, counts, counts * 8, counted=3, objective="topdown")
    assert topdown.key == (-1, 1, 1, 1, 12, 4, 0)  # the older order: block, rack, node


def test_a_preferred_level_leaves_lower_levels_out_of_part_2():
    c = build_cluster({"b0": {"r0": [0], "r1": [0]}})
    nodes = np.array([0, 1], np.int64)
    value = objective_of_nodes(c, nodes, np.array([8, 8], np.int64), pods_placed=2, counted=1)
    assert value.domains == (1, 2, 2)
    assert value.key == (-2, 1, *value.stranded[::-1])  # racks and nodes are not counted in part (2)

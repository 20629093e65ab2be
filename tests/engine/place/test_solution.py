"""Solutions (engine/place/solution.py): the objective memo, the bound proof, the public Placement."""
from __future__ import annotations

import numpy as np
import pytest

from gangplace.engine.place.request import prepare
from gangplace.engine.place.solution import Solution, objective_of, proved_optimal, to_placement
from tests.conftest import build_cluster, gang, pod_set


@pytest.fixture
def two_racks():
    return build_cluster({"b0": {"r0": [0, 0], "r1": [0]}})


def test_pods_are_numbered_in_topology_order_per_pod_set(two_racks):
    p = prepare(two_racks, gang(pod_set(3, 2, name="w"), pod_set(1, 0, cpu=100, name="l")))
    sol = Solution([np.array([1, 0, 2], np.int64), np.array([0, 1, 0], np.int64)], True, "test")
    pl = to_placement(two_racks, p, sol, 1.0)
    assert [(a.pod_set, a.index, a.node) for a in pl.pods] == [
        ("w", 0, "r0-n0"), ("w", 1, "r1-n0"), ("w", 2, "r1-n0"), ("l", 0, "r0-n1")]
    assert pl.domains_used == {"block": 1, "rack": 2, "node": 3}


def test_the_objective_memo_follows_replaced_counts(two_racks):
    p = prepare(two_racks, gang(pod_set(1)))
    sol = Solution([np.array([1, 0, 0], np.int64)], True, "test")
    first = objective_of(two_racks, p, sol)
    assert objective_of(two_racks, p, sol) is first  # memoized
    sol.counts = [np.array([0, 0, 1], np.int64)]
    assert objective_of(two_racks, p, sol).domains != first.domains or \
        objective_of(two_racks, p, sol).stranded != first.stranded


@pytest.mark.parametrize("counts, lower, want", [
    ([1, 1, 0], [1, 1, 2], (True, 0.0)),
    ([1, 1, 0], [1, 1, 1], (False, 0.5)),
    ([1, 0, 0], [1, 1, 1], (False, 0.5)),
], ids=["every counted level meets its bound", "two nodes against a bound of one is a gap of 1/2",
        "one pod of at most two is a pod gap of 1/2"])
def test_proved_optimal_reads_the_bounds(two_racks, counts, lower, want):
    p = prepare(two_racks, gang(pod_set(2, 8, min_count=1)))
    sol = Solution([np.array(counts, np.int64)], True, "test", lower_bound=np.array(lower, np.int64), max_pods=(2,))
    assert proved_optimal(p, sol, objective_of(two_racks, p, sol)) == want


def test_proved_optimal_reports_the_gap_on_the_first_level_above_its_bound(two_racks):
    p = prepare(two_racks, gang(pod_set(2, 8)))
    sol = Solution([np.array([1, 0, 1], np.int64)], True, "test", lower_bound=np.array([1, 1, 2], np.int64),
                   max_pods=(2,))
    assert proved_optimal(p, sol, objective_of(two_racks, p, sol)) == (False, 0.5)  # 2 racks vs bound 1

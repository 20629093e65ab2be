"""The shared capacity maths (engine/place/capacity.py) against plain per-node arithmetic."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from gangplace.engine.model.errors import GangplaceError
from gangplace.engine.place import capacity
from gangplace.engine.place.request import prepare
from tests.conftest import build_cluster, gang, instances, pod_set

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None,
                max_examples=60)


def _pod_sets_with_fit(inst):
    """(cluster, prepared, s, pod set, node_fit) per pod set of a valid instance (none when invalid)."""
    cluster, g = inst
    try:
        p = prepare(cluster, g)
    except GangplaceError:
        return
    for s, ps in enumerate(g.pod_sets):
        yield cluster, p, s, ps, capacity.node_fit(cluster, p, s)


@settings(**SETTINGS)
@given(instances())
def test_node_fit_is_the_per_node_minimum_rounded_to_the_node_slice(inst):
    for cluster, p, s, ps, fit in _pod_sets_with_fit(inst):
        unit = int(p.units[s][-1])
        for i in range(cluster.n_nodes):
            want = int(cluster.free_pods[i])
            for need, free in ((ps.gpus, cluster.free_gpus), (ps.cpu, cluster.free_cpu), (ps.memory, cluster.free_mem)):
                if need:
                    want = min(want, int(free[i]) // need)
            want = max(0, min(want, ps.count))
            want -= want % unit
            if not p.eligible[s][i]:
                want = 0
            assert fit[i] == want


@settings(**SETTINGS)
@given(instances())
def test_level_caps_sum_children_cap_at_count_and_round_to_slices(inst):
    for cluster, p, s, ps, fit in _pod_sets_with_fit(inst):
        L = len(cluster.levels)
        caps = capacity.level_caps(cluster, p, fit, ps.count, s)
        for lv in range(L - 1, -1, -1):
            lo, hi = int(cluster.level_offset[lv]), int(cluster.level_offset[lv + 1])
            for d in range(lo, hi):
                if lv == L - 1:
                    below = int(fit[cluster.domain_start[d]:cluster.domain_end[d]].sum())
                else:
                    kids = [k for k in range(int(cluster.level_offset[lv + 1]), int(cluster.level_offset[lv + 2]))
                            if cluster.domain_parent[k] == d]
                    below = sum(int(caps[lv + 1][k - int(cluster.level_offset[lv + 1])]) for k in kids)
                want = min(below, ps.count)
                want -= want % int(p.units[s][lv])
                assert caps[lv][d - lo] == want


@settings(**SETTINGS)
@given(instances())
def test_domain_free_gpus_sums_every_node_of_the_domain(inst):
    cluster, _ = inst
    got = capacity.domain_free_gpus(cluster)
    for d in range(cluster.n_domains):
        assert got[d] == int(cluster.free_gpus[cluster.domain_start[d]:cluster.domain_end[d]].sum())


def test_common_domain_is_the_lowest_domain_holding_every_used_node():
    c = build_cluster({"b0": {"r0": [0, 0], "r1": [0]}, "b1": {"r2": [0]}})
    used = np.zeros(c.n_nodes, np.int64)
    used[[0, 1]] = 1
    assert c.domain_name(capacity.common_domain(c, used)) in ("b0/r0", "r0")
    used[2] = 1
    assert c.domain_name(capacity.common_domain(c, used)) == "b0"
    used[3] = 1
    assert capacity.common_domain(c, used) == -1
    rack = capacity.common_domain(c, np.array([1, 0, 0, 0]))
    chain = capacity.ancestors(c, rack, -1)
    assert chain[0] == rack and chain[-1] == -1 and len(chain) == 3


@pytest.mark.parametrize("sign", [1, -1], ids=["taking subtracts", "giving back adds"])
def test_take_never_writes_the_clusters_arrays_unless_in_place(sign):
    c = build_cluster({"b0": {"r0": [0, 4]}})
    before = c.free_gpus.copy()
    free = capacity.FreeCapacity.of(c)
    ps = pod_set(2, 2, cpu=100)
    counts = np.array([1, 1], np.int64)
    free.take(counts, ps, sign)
    assert (c.free_gpus == before).all()
    assert (free.gpus == before - sign * 2).all() and free.gpus.dtype == np.int32
    assert (free.pods == c.free_pods - sign).all()
    inplace = capacity.FreeCapacity.of(c)
    inplace.take(counts, ps, sign, in_place=True)
    assert (c.free_gpus == before - sign * 2).all()


def test_fit_at_and_take_at_work_on_a_private_copy():
    c = build_cluster({"b0": {"r0": [0, 4]}})
    free = capacity.FreeCapacity.copy_of(c)
    ps = pod_set(4, 2)
    assert free.fit_at(1, ps) == 2
    free.take_at(1, 2, ps)
    assert free.fit_at(1, ps) == 0 and int(c.free_gpus[1]) == 4

"""The flat cluster layout (engine/model/cluster.py): the contract every kernel relies on."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings

from gangplace.engine import Cluster, place
from gangplace.engine.model.synthetic import generate
from tests.conftest import gang, node, pod_set, tiny_clusters


def _check_layout(c: Cluster) -> None:
    """Every domain a contiguous node range; ids, parents and levels consistent; nesting holds."""
    L = len(c.levels)
    assert c.node_domain.shape == (L, c.n_nodes)
    assert c.level_offset[0] == 0 and c.level_offset[-1] == c.n_domains
    for lv in range(L):
        row = c.node_domain[lv]
        assert (np.diff(row) >= 0).all(), "domain ids increase along topology order"
        for d in c.level_domains(lv):
            nodes = np.flatnonzero(row == d)
            assert nodes.tolist() == list(range(c.domain_start[d], c.domain_end[d])), "contiguous"
            assert c.domain_level[d] == lv
            if lv:
                assert (c.node_domain[lv - 1, nodes] == c.domain_parent[d]).all(), "domains nest"
            else:
                assert c.domain_parent[d] == -1
        for i in range(c.n_nodes):
            spec = c.spec(i)
            expect = tuple(spec.topology.get(x) or f"node:{spec.name}" for x in c.levels[: lv + 1])
            assert c.domain_paths[row[i]] == expect


@settings(max_examples=100, deadline=None, database=None)
@given(tiny_clusters(max_nodes=12))
def test_random_clusters_satisfy_the_layout_contract(c):
    _check_layout(c)


@pytest.mark.parametrize("preset", ["dgx-h100", "gb200-nvl72", "fat-tree", "hetero"])
def test_synthetic_clusters_satisfy_the_layout_contract(preset):
    _check_layout(generate(preset, gpus=1024, fill=0.3, seed=1))


def test_nodes_sort_in_natural_topology_order():
    c = Cluster(["rack"], [node("n10", {"rack": "r10"}), node("n2", {"rack": "r2"}), node("n1", {"rack": "r2"}),
                           node("x", {"rack": "r1"})])
    assert c.node_names == ["x", "n1", "n2", "n10"]
    assert [c.node_path(i) for i in range(4)] == ["r1/x", "r2/n1", "r2/n2", "r10/n10"]


def test_a_node_missing_a_level_label_is_its_own_domain_at_that_level():
    c = Cluster(["block", "rack"], [node("a", {"block": "b0", "rack": "r0"}), node("b", {"block": "b0"}),
                                    node("c", {"rack": "r0"})])
    _check_layout(c)
    b, cc = c.node_index["b"], c.node_index["c"]
    assert c.domain_name(int(c.node_domain[1, b])) == "b0/node:b"
    assert c.domain_name(int(c.node_domain[0, cc])) == "node:c"
    # rack r0 under b0 and rack r0 under node:c are different racks (paths differ)
    assert c.node_domain[1, c.node_index["a"]] != c.node_domain[1, cc]
    p = place(c, gang(pod_set(2, 8), required="rack"), placer="heuristic")
    assert not p.placed  # no rack holds two nodes


def test_a_cluster_with_zero_levels_places_by_nodes_only():
    c = Cluster([], [node("a", {}, 8, 4), node("b", {}, 8)])
    _check_layout(c)
    assert c.n_domains == 0 and c.node_path(0) == "a"
    p = place(c, gang(pod_set(3, 4)), placer="heuristic")
    assert p.placed and p.domains_used == {"node": 2}
    assert sorted(p.nodes) == ["a", "b", "b"]


def test_copy_shares_the_topology_and_snapshots_the_free_arrays():
    c = generate("dgx-h100", gpus=256, fill=0.5, seed=1)
    snap = c.copy()
    snap.free_gpus[:] = 0
    snap.schedulable[0] = 0
    assert c.free_gpus.sum() > 0 and c.schedulable[0] == 1
    assert snap.node_domain is c.node_domain
    assert not place(snap, gang(pod_set(1, 1)), placer="heuristic").placed


def test_nodes_report_current_usage_after_the_free_arrays_change():
    c = Cluster([], [node("a", {}, 8, 2)])
    c.free_gpus[0] = 1
    assert c.nodes[0].gpus_used == 7 and c.spec(0).gpus_used == 2


def test_selector_mask_matches_gpu_type_and_labels():
    c = Cluster([], [node("a", {}, gpu_type="H100", labels={"pool": "x"}), node("b", {}, gpu_type="A100"),
                     node("c", {}, gpu_type="H100", labels={"pool": "y"})])
    assert c.selector_mask({"gpu_type": "H100"}).tolist() == [True, False, True]
    assert c.selector_mask({"gpu_type": "H100", "pool": "y"}).tolist() == [False, False, True]
    assert c.selector_mask({"missing": "v"}).tolist() == [False, False, False]
    assert c.selector_mask({}).tolist() == [True, True, True]


def test_level_index_and_gpu_totals():
    c = Cluster(["zone", "rack"], [node("a", {"zone": "z", "rack": "r"}, 8, 3)])
    assert c.level_index("rack") == 1 and c.level_index("node") == 2
    with pytest.raises(ValueError):
        c.level_index("row")
    assert (c.total_gpus, c.free_gpu_count) == (8, 5)
    assert "free_gpus=5" in repr(c)


def test_update_node_changes_capacity_usage_and_cordon_in_place_and_leaves_copies_alone():
    c = Cluster(["rack"], [node("a", {"rack": "r0"}, 8), node("b", {"rack": "r0"}, 8)])
    snap = c.copy()
    old = c.spec(c.node_index["a"])
    new = replace(old, gpus=4, gpus_used=1, schedulable=False)
    assert c.update_node(old, new)
    i = c.node_index["a"]
    assert (int(c.cap_gpus[i]), int(c.free_gpus[i]), int(c.schedulable[i])) == (4, 3, 0)
    assert c.spec(i) == new
    assert (int(snap.cap_gpus[i]), int(snap.free_gpus[i]), int(snap.schedulable[i])) == (8, 8, 1)
    assert snap.spec(i) == old


def test_update_node_refuses_a_change_of_topology_and_changes_nothing():
    c = Cluster(["rack"], [node("a", {"rack": "r0"}, 8)])
    old = c.spec(0)
    assert not c.update_node(old, replace(old, topology={"rack": "r1"}, gpus=4))
    assert int(c.cap_gpus[0]) == 8 and c.spec(0) == old

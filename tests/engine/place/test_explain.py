"""Why a gang does not fit (engine/place/explain.py): reasons name numbers that are true."""
from __future__ import annotations

from gangplace.engine import Cluster, place
from tests.conftest import build_cluster, gang, node, pod_set


def test_required_level_reason_names_the_best_domain_and_how_many_pods_it_holds():
    cluster = build_cluster({"b0": {"r0": [0, 0]}, "b1": {"r1": [0, 8, 0]}})
    p = place(cluster, gang(pod_set(3, 8, name="w"), name="train"), placer="heuristic")
    assert p.placed  # fits across blocks
    p = place(cluster, gang(pod_set(3, 8), name="train", required="block"), placer="heuristic")
    assert not p.placed
    assert p.reason.startswith("gang 'train' needs 3 pods (24 GPUs) in one block; the best block 'b0' "
                               "(16 free GPUs on selected nodes) holds 2 of them")
    assert "1 node insufficient gpus" in p.reason
    assert p.explanation["max_pods_in_one_domain"] == {"block": 2, "rack": 2, "node": 1}


def test_pod_sets_that_fit_one_by_one_but_not_together_say_so():
    cluster = build_cluster({"b0": {"r0": [0, 8]}, "b1": {"r1": [0, 8]}})
    g = gang(pod_set(1, 8, name="a"), pod_set(1, 8, name="b"), required="block")
    p = place(cluster, g, placer="heuristic")
    assert not p.placed
    assert "holds 2 pods counting each pod set on its own, but not all of them together" in p.reason


def test_cluster_wide_shortage_counts_what_fits():
    cluster = build_cluster({"b0": {"r0": [0, 4]}})
    p = place(cluster, gang(pod_set(4, 8), name="big"), placer="heuristic")
    assert not p.placed
    assert p.reason.startswith("gang 'big' needs 4 pods (32 GPUs); only 1 fit in the cluster now")


def test_excluded_nodes_are_counted_by_their_first_reason():
    cluster = Cluster(["rack"], [
        node("cordoned", {"rack": "r0"}, schedulable=False),
        node("a100", {"rack": "r0"}, gpu_type="A100"),
        node("full", {"rack": "r0"}, 8, 8),
        node("cpu", {"rack": "r0"}, cpu=1000),
        node("mem", {"rack": "r0"}, memory=2**30),
        node("slots", {"rack": "r0"}, pods=1, pods_used=1),
        node("ok", {"rack": "r0"}),
    ])
    g = gang(pod_set(3, 8, cpu=4000, memory=4 * 2**30, selector={"gpu_type": "H100"}))
    p = place(cluster, g, placer="heuristic")
    assert not p.placed
    excluded = p.explanation["pod_sets"]["w"]["excluded_nodes"]
    assert excluded == {"cordoned": 1, "node_selector": 1, "insufficient_gpus": 1, "insufficient_cpu": 1,
                        "insufficient_memory": 1, "insufficient_pod_slots": 1, "usable": 1}
    assert p.reason.startswith("gang 'g' needs 3 pods (24 GPUs); only 1 fit in the cluster now; excluded: "
                               "1 node cordoned, 1 node node selector, 1 node insufficient gpus")


def test_explanation_lists_every_pod_set():
    cluster = build_cluster({"b0": {"r0": [8]}})
    p = place(cluster, gang(pod_set(1, 0, name="leader", cpu=1000), pod_set(2, 8, name="worker", min_count=1)),
              placer="heuristic")
    assert not p.placed
    e = p.explanation
    assert (e["pods_requested"], e["pods_required"], e["gpus_requested"]) == (3, 2, 16)
    assert set(e["pod_sets"]) == {"leader", "worker"}
    assert e["pod_sets"]["worker"]["min_count"] == 1


def test_node_slice_rounding_in_the_required_domain_reason():
    # regression: explain's node fit ignored the node-level slice unit. Each node of rack r0 has 6
    # free GPUs = 3 pods of 2 GPUs, but slices of 2 pods per node leave 2 usable: r0 holds 4, not 6
    cluster = build_cluster({"b0": {"r0": [2, 2], "r1": [0]}})
    p = place(cluster, gang(pod_set(6, 2), name="s", required="rack", slices=((2, "node"),)), placer="heuristic")
    assert not p.placed
    assert "the best rack 'b0/r0'" in p.reason or "the best rack 'r0'" in p.reason
    assert "holds 4 of them" in p.reason

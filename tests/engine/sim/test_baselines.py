"""engine/sim/baselines.py: each baseline on tiny hand-checked clusters, and the shared contract."""
import pytest

from gangplace.engine.sim.baselines import (POLICIES, KubeDefault, KueueTAS, MostAllocated, RandomPolicy, make_gang,
                                       make_policy, parse_policies)
from gangplace.engine.model.errors import InvalidRequest
from tests.conftest import build_cluster


def nodes_of(cluster, a):
    return {cluster.node_names[i]: (int(g), int(p)) for i, g, p in zip(a.nodes, a.gpus, a.pods)}


@pytest.mark.parametrize("gpus,expect", [(1, (1, 1, 0)), (8, (8, 1, 0)), (12, (8, 1, 4)), (160, (8, 20, 0)),
                                         (20, (8, 2, 4))])
def test_a_job_becomes_full_node_pods_plus_a_remainder_pod(gpus, expect):
    g = make_gang(gpus, 8)
    assert (g.pod_gpus, g.full_pods, g.rest_gpus) == expect
    assert sum(g.pod_sizes()) == gpus
    assert sum(ps.gpus * ps.count for ps in g.request.pod_sets) == gpus


def three_nodes():
    # one rack, nodes with 8, 4 and 2 GPUs free (0, 4, 6 used)
    return build_cluster({"b0": {"r0": [0, 4, 6]}})


def test_k8s_default_spreads_a_pod_to_the_least_allocated_node():
    c = three_nodes()
    a = KubeDefault(seed=0).place(c, make_gang(1, 8))
    assert nodes_of(c, a) == {"r0-n0": (1, 1)}


def test_most_allocated_packs_a_pod_onto_the_fullest_node_that_fits():
    c = three_nodes()
    assert nodes_of(c, MostAllocated(seed=0).place(c, make_gang(2, 8))) == {"r0-n2": (2, 1)}
    assert nodes_of(c, MostAllocated(seed=0).place(c, make_gang(3, 8))) == {"r0-n1": (3, 1)}


def test_k8s_default_ignores_topology_and_splits_a_gang_across_racks():
    # rack r0 has two empty nodes, rack r1 one empty node and one half-used: a 2-node gang fits in r0;
    # least-allocated scores the three empty nodes equally, so across seeds it must sometimes cross racks
    c = build_cluster({"b0": {"r0": [0, 0], "r1": [0, 4]}})
    racks = set()
    for seed in range(20):
        a = KubeDefault(seed=seed).place(c, make_gang(16, 8))
        racks.add(len({c.node_domain[1, i] for i in a.nodes}))
    assert racks == {1, 2}


def test_k8s_scores_only_a_sample_of_nodes_on_large_clusters():
    k = KubeDefault()
    assert k._num_to_score(50) == 50
    assert k._num_to_score(150) == 100  # 49 % of 150 is below the floor of 100 nodes
    assert k._num_to_score(5000) == 500  # 50 - 5000/125 = 10 %


def test_kueue_tas_takes_the_best_fitting_lowest_domain():
    # a 2-node gang fits in rack r0 (3 free nodes) and in r1 (exactly 2): best fit is r1
    c = build_cluster({"b0": {"r0": [0, 0, 0], "r1": [0, 0]}})
    a = KueueTAS().place(c, make_gang(16, 8))
    assert set(nodes_of(c, a)) == {"r1-n0", "r1-n1"}


def test_kueue_tas_descends_largest_first_when_no_single_domain_fits():
    # 3 full nodes needed; racks hold 2 and 1 free nodes in block b0, and b1 holds 2 racks x 1
    c = build_cluster({"b0": {"r0": [0, 0], "r1": [0, 8]}, "b1": {"r2": [0], "r3": [8]}})
    a = KueueTAS().place(c, make_gang(24, 8))
    assert set(nodes_of(c, a)) == {"r0-n0", "r0-n1", "r1-n0"}


def test_kueue_tas_puts_a_single_pod_on_the_best_fitting_node():
    c = three_nodes()
    assert nodes_of(c, KueueTAS().place(c, make_gang(2, 8))) == {"r0-n2": (2, 1)}


def test_random_only_uses_schedulable_nodes_with_room():
    c = build_cluster({"b0": {"r0": [0, 8, 0, 0]}})
    c.schedulable[2] = 0
    seen = set()
    for seed in range(30):
        a = RandomPolicy(seed=seed).place(c, make_gang(8, 8))
        seen |= set(nodes_of(c, a))
    assert seen == {"r0-n0", "r0-n3"}


def test_gangplace_heuristic_packs_a_gang_into_the_best_fitting_rack():
    c = build_cluster({"b0": {"r0": [0, 0, 0], "r1": [0, 0]}})
    a = make_policy("gangplace-heuristic").place(c, make_gang(16, 8))
    assert set(nodes_of(c, a)) == {"r1-n0", "r1-n1"}
    assert a.proved_optimal and a.lower_bound is not None


@pytest.mark.parametrize("name", POLICIES)
def test_every_policy_is_all_or_nothing_and_leaves_the_cluster_untouched(name):
    c = build_cluster({"b0": {"r0": [0, 4], "r1": [2, 8]}})
    before = c.free_gpus.copy()
    p = make_policy(name, seed=3, time_limit_ms=20)
    assert p.place(c, make_gang(24, 8)) is None  # 18 GPUs free, only 1 full node
    a = p.place(c, make_gang(12, 8))  # one 8-GPU pod + one 4-GPU pod
    assert a is not None and int(a.gpus.sum()) == 12 and int(a.pods.sum()) == 2
    assert (a.gpus <= before[a.nodes]).all()
    assert (c.free_gpus == before).all()


def test_unknown_policy_names_are_rejected():
    with pytest.raises(InvalidRequest, match="unknown policy"):
        parse_policies("gangplace-heuristic,slurm")
    assert parse_policies(None) == list(POLICIES)
    assert all(make_policy(n).name == n for n in POLICIES)


def test_k8s_default_rotates_its_search_start_between_pods():
    from gangplace.engine.model.synthetic import generate
    c = generate("dgx-h100", gpus=2048, fill=0.0, seed=1)  # 256 nodes: 48 % = 122 scored per pod
    k = KubeDefault(seed=0)
    assert k._num_to_score(256) == 122
    first = k.place(c, make_gang(1, 8)).nodes[0]
    second = k.place(c, make_gang(1, 8)).nodes[0]
    assert first < 122 <= second < 244  # the second cycle starts where the first stopped


def test_kueue_tas_puts_the_remainder_pod_on_a_best_fitting_node():
    # 12 GPUs = one 8-GPU pod + one 4-GPU pod; r1-n1 has exactly 4 free
    c = build_cluster({"b0": {"r0": [0, 0], "r1": [0, 4]}})
    a = KueueTAS().place(c, make_gang(12, 8))
    got = nodes_of(c, a)
    assert got["r1-n1"] == (4, 1) and sum(g for g, _ in got.values()) == 12


def test_kueue_tas_best_fit_optimizes_the_last_node_of_the_descent():
    # KEP-2724's example: a rack whose nodes hold 3, 3, 2 and 1 pods; 7 pods go to the two 3s and the 1
    c = build_cluster({"b0": {"r0": [5, 5, 6, 7]}})  # free GPUs 3, 3, 2, 1
    from gangplace.engine.sim.baselines import Gang
    g = Gang(gpus=7, pod_gpus=1, full_pods=7, rest_gpus=0)
    assert nodes_of(c, KueueTAS().place(c, g)) == {"r0-n0": (3, 3), "r0-n1": (3, 3), "r0-n3": (1, 1)}


def test_kueue_tas_unconstrained_takes_the_least_free_nodes_first():
    from gangplace.engine.sim.baselines import Gang, KueueTASUnconstrained
    c = build_cluster({"b0": {"r0": [5, 5, 6, 7]}})  # free GPUs 3, 3, 2, 1
    g = Gang(gpus=7, pod_gpus=1, full_pods=7, rest_gpus=0)
    assert nodes_of(c, KueueTASUnconstrained().place(c, g)) == {"r0-n3": (1, 1), "r0-n2": (2, 2), "r0-n0": (3, 3),
                                                               "r0-n1": (1, 1)}


def test_kai_binpack_picks_the_domain_with_the_least_free_gpus_and_packs_nodes():
    from gangplace.engine.sim.baselines import KaiBinpack
    # r0: two empty nodes (16 free), r1: two empty nodes plus a half-used one (20 free): both hold a
    # 2-node gang; KAI takes r0 (fewer free GPUs). A 1-GPU pod goes to the rack with the fewest free
    # GPUs that holds it (r0), then its fullest node.
    c = build_cluster({"b0": {"r0": [0, 0], "r1": [0, 0, 4]}})
    assert set(nodes_of(c, KaiBinpack().place(c, make_gang(16, 8)))) == {"r0-n0", "r0-n1"}
    c = build_cluster({"b0": {"r0": [0, 6], "r1": [0, 0, 4]}})
    assert nodes_of(c, KaiBinpack().place(c, make_gang(1, 8))) == {"r0-n1": (1, 1)}


def test_gangplace_policies_take_the_objective_by_name():
    # a 1-GPU job: bottom-up fills the node with 1 GPU free; top-down the emptier node of the fuller block
    c = build_cluster({"b0": {"r0": [0, 8]}, "b1": {"r1": [7, 0]}})
    assert nodes_of(c, make_policy("gangplace-heuristic").place(c, make_gang(1, 8))) == {"r1-n0": (1, 1)}
    topdown = make_policy("gangplace-heuristic-topdown")
    assert topdown.name == "gangplace-heuristic-topdown"
    assert nodes_of(c, topdown.place(c, make_gang(1, 8))) == {"r0-n0": (1, 1)}
    for name, placer, objective in (("gangplace-auto", "auto", "age"), ("gangplace-auto-podfit", "auto", "podfit"),
                                    ("gangplace-auto-bottomup", "auto", "bottomup"),
                                    ("gangplace-heuristic-bottomup", "heuristic", "bottomup"),
                                    ("gangplace-auto-topdown", "auto", "topdown")):
        p = make_policy(name)
        assert (p.name, p.placer, p.objective) == (name, placer, objective)


def test_the_tie_twin_keeps_the_objective_and_breaks_only_exact_ties_the_other_way():
    import numpy as np
    from gangplace.engine.model.synthetic import generate
    from gangplace.engine.place.objective import objective_of_nodes
    from gangplace.engine.sim.baselines import GangplaceTwin
    auto, twin, control = make_policy("gangplace-auto"), make_policy("gangplace-twin"), make_policy("gangplace-control")
    assert isinstance(twin, GangplaceTwin) and (twin.name, control.name) == ("gangplace-twin", "gangplace-control")
    differ = 0
    for seed in range(6):
        c = generate(("dgx-h100", "gb200-nvl72")[seed % 2], gpus=576, fill=0.5, seed=seed)
        for gpus in (1, 2, 3, 4, 8):
            g = make_gang(gpus, int(c.cap_gpus.max()))
            a, t, k = auto.place(c, g), twin.place(c, g), control.place(c, g)
            if a is None:
                assert t is None and k is None
                continue
            # the control (the engine's tie written out) is the engine's choice
            assert (k.nodes.tolist(), k.gpus.tolist()) == (a.nodes.tolist(), a.gpus.tolist())
            if g.n_pods > 1:  # several pods: gangplace-auto itself
                assert (t.nodes.tolist(), t.gpus.tolist()) == (a.nodes.tolist(), a.gpus.tolist())
                continue
            unit = (gpus, 1)
            key = [objective_of_nodes(c, x.nodes, x.gpus, 1, len(c.levels) + 1, unit=unit).key for x in (a, t)]
            assert key[0] == key[1]  # the same objective value: an exact tie
            differ += int(t.nodes[0] != a.nodes[0])
            assert t.nodes[0] >= a.nodes[0]  # the tie goes to the last node in topology order
    assert differ > 0  # ties occur, so the twin is a different policy


def test_the_tie_twin_is_selectable_but_not_a_default_policy():
    assert "gangplace-twin" not in POLICIES and "gangplace-twin" in parse_policies("gangplace-auto,gangplace-twin")

"""The native heuristic placer against the brute-force oracle (tests/reference.py).

Properties on hundreds of tiny random clusters and gangs: every answer is feasible; whenever the
oracle places a gang the heuristic does too (with the same pod count for one pod set, whose
capacities the kernel computes exactly); an answer flagged ``optimal`` matches the oracle on
parts (1) and (2) of the objective. How often the heuristic's full key equals the oracle's is
printed (not asserted) at the end of the module.
"""
from __future__ import annotations

import collections

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from gangplace.engine import Cluster, place
from gangplace.engine.place.heuristic import bounds, kernel_topology, place_heuristic
from gangplace.engine.place.request import prepare
from gangplace.engine.model.synthetic import generate
from tests.conftest import build_cluster, gang, instances, node, pod_set
from tests.reference import check_counts, check_feasible, counts_of, reference_key, reference_place

STATS: collections.Counter = collections.Counter()
PROPERTY = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module", autouse=True)
def report_agreement(request):
    yield
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        both = STATS["both_placed"]
        print(f"\n[oracle agreement] {STATS['examples']} instances, both placed {both}, heuristic key == oracle "
              f"key {STATS['equal_key']} ({STATS['equal_key'] / max(both, 1):.1%}), same pods+domains "
              f"{STATS['equal_12']} ({STATS['equal_12'] / max(both, 1):.1%}), fewer pods (multi-set) "
              f"{STATS['fewer_pods']}, flagged optimal {STATS['optimal']}")


def _counted(cluster, g) -> int:
    pref = g.topology.preferred
    return cluster.levels.index(pref) + 1 if pref else len(cluster.levels) + 1


@PROPERTY
@given(instances())
def test_heuristic_is_feasible_and_never_misses_a_gang_the_oracle_places(inst):
    cluster, g = inst
    ref = reference_place(cluster, g)
    p = place(cluster, g, placer="heuristic")
    STATS["examples"] += 1
    assert check_feasible(cluster, g, p) == []
    if ref.placed:
        assert p.placed, "the oracle places this gang"
    if not p.placed:
        return
    assert ref.placed, "the heuristic placed a gang the oracle calls infeasible"
    key = reference_key(cluster, g, counts_of(cluster, g, p))
    assert key >= ref.key, "better than exhaustive search: the oracle is wrong"
    assert p.objective == key[:-1], "engine/place/objective.py disagrees with the oracle's scoring"
    if len(g.pod_sets) == 1:
        assert key[0] == ref.key[0], "one pod set: the kernel's capacities are exact"
    n12 = 1 + _counted(cluster, g)
    STATS["both_placed"] += 1
    STATS["equal_key"] += key == ref.key
    STATS["equal_12"] += key[:n12] == ref.key[:n12]
    STATS["fewer_pods"] += key[0] != ref.key[0]
    if p.optimal:
        STATS["optimal"] += 1
        assert key[:n12] == ref.key[:n12], "flagged optimal but the oracle does better on (1)/(2)"


@PROPERTY
@given(instances())
def test_bounds_never_exceed_what_the_oracle_achieves(inst):
    cluster, g = inst
    ref = reference_place(cluster, g)
    prepared = prepare(cluster, g)
    lb, max_pods = bounds(cluster, prepared)
    if ref.placed:
        assert sum(max_pods) >= -ref.key[0]
        counted = _counted(cluster, g)
        if [int(c.sum()) for c in ref.counts] == list(max_pods):
            # any placement of that many pods uses at least lb[m] domains at every level m
            assert all(v >= b for v, b in zip(ref.key[1:1 + counted], lb[:counted].tolist()))


# ------------------------------------------------------------------------------ greedy traps
def _assert_matches_oracle(cluster, g):
    p = place(cluster, g, placer="heuristic")
    ref = reference_place(cluster, g)
    assert p.placed and ref.placed
    assert check_feasible(cluster, g, p) == []
    assert reference_key(cluster, g, counts_of(cluster, g, p)) == ref.key
    return p


def test_tie_between_blocks_goes_to_the_block_that_needs_one_rack():
    # both blocks have 32 free GPUs (a best-fit tie); b0 spreads them over two racks, b1 has one rack
    cluster = build_cluster({"b0": {"r0": [0, 0], "r1": [0, 0]}, "b1": {"r2": [0, 0, 0, 0]}})
    p = _assert_matches_oracle(cluster, gang(pod_set(4, 8)))
    assert p.domains_used == {"block": 1, "rack": 1, "node": 4}
    assert {n.rsplit("-", 1)[0] for n in p.nodes} == {"r2"}


def test_best_fit_block_spread_over_more_racks_loses_to_a_larger_block_with_one_rack():
    # b0 has fewer free GPUs (16, best fit) but its room is spread over two racks;
    # b1 (24 free) holds the gang in one rack, which part (2) of the objective ranks first
    cluster = build_cluster({"b0": {"r0": [4, 4], "r1": [4, 4]}, "b1": {"r2": [0, 0], "r3": [0]}})
    p = _assert_matches_oracle(cluster, gang(pod_set(4, 4)))
    assert p.domains_used == {"block": 1, "rack": 1, "node": 2}
    assert sorted(p.nodes) == ["r2-n0", "r2-n0", "r2-n1", "r2-n1"]


def test_best_fit_among_equal_locality_leaves_the_fullest_rack_used():
    # both racks hold the gang on one node; r1's node has fewer GPUs left over
    cluster = build_cluster({"b0": {"r0": [0], "r1": [4]}})
    p = _assert_matches_oracle(cluster, gang(pod_set(2, 2)))
    assert p.nodes == ["r1-n0", "r1-n0"]
    assert p.stranded_gpus["node"] == 0


def test_elastic_pod_set_placed_first_no_longer_starves_a_rigid_one():
    # regression: the elastic set (ordered first) took the only free GPU; the rigid set then failed
    cluster = Cluster([], [node("n0", {}, 2, 1)])
    g = gang(pod_set(1, 1, name="elastic", min_count=0), pod_set(1, 1, name="rigid"))
    p = place(cluster, g, placer="heuristic")
    assert p.placed and [(x.pod_set, x.node) for x in p.pods] == [("rigid", "n0")]


def test_selector_pod_set_keeps_its_nodes_when_a_bigger_unselective_set_goes_first():
    # regression: the 4-GPU set went first and took an H100 node the H100-only set needed
    cluster = Cluster(["rack"], [node("h0", {"rack": "r0"}, 4), node("h1", {"rack": "r0"}, 4),
                                 node("a0", {"rack": "r1"}, 4, gpu_type="A100")])
    g = gang(pod_set(4, 2, name="h100", selector={"gpu_type": "H100"}), pod_set(1, 4, name="any"))
    p = place(cluster, g, placer="heuristic")
    assert p.placed
    assert check_feasible(cluster, g, p) == []
    assert {x.node for x in p.pods if x.pod_set == "any"} == {"a0"}


def test_slices_keep_every_group_of_consecutive_ranks_in_one_rack():
    cluster = build_cluster({"b0": {"r0": [0, 0, 8], "r1": [0, 0, 0]}}, gpus=8)
    g = gang(pod_set(4, 4), slices=((2, "rack"),))
    p = place(cluster, g, placer="heuristic")
    assert check_feasible(cluster, g, p) == []
    racks = [x.node.split("-")[0] for x in p.pods]
    assert racks[0] == racks[1] and racks[2] == racks[3]


def test_required_level_infeasible_when_no_single_domain_holds_the_gang():
    cluster = build_cluster({"b0": {"r0": [0, 0]}, "b1": {"r1": [0, 0]}})
    p = place(cluster, gang(pod_set(3, 8), required="block"), placer="heuristic")
    assert not p.placed
    assert "block" in p.reason
    assert place(cluster, gang(pod_set(3, 8)), placer="heuristic").placed


def test_preferred_level_stops_counting_below_it():
    # preferred=block: racks and nodes are not counted, so best fit alone picks inside the block
    cluster = build_cluster({"b0": {"r0": [0], "r1": [4]}})
    p = place(cluster, gang(pod_set(1, 4), preferred="block"), placer="heuristic")
    assert p.placed and p.nodes == ["r1-n0"]
    # -pods, blocks, the node's age (a one-pod gang), stranded per block/rack/node, room per block/rack
    assert len(p.objective) == 1 + 1 + 1 + 3 + 2


def test_single_pod_set_is_proved_optimal_when_it_meets_its_bounds():
    cluster = build_cluster({"b0": {"r0": [0, 0, 0, 0]}, "b1": {"r1": [0, 0]}})
    p = place(cluster, gang(pod_set(2, 8)), placer="heuristic")
    assert p.optimal and p.gap == 0.0 and p.domains_used["node"] == 2


# ------------------------------------------------------------------------------ larger clusters
@pytest.mark.parametrize("preset", ["dgx-h100", "gb200-nvl72", "fat-tree", "hetero"])
def test_heuristic_answers_on_synthetic_clusters_are_feasible(preset):
    cluster = generate(preset, gpus=512, fill=0.5, seed=3)
    for count, gpus, topo in ((8, 8, {}), (16, 4, {"slices": ((4, cluster.levels[-1]),)}),
                              (3, 2, {"required": cluster.levels[-1]}), (40, 8, {"preferred": cluster.levels[0]})):
        g = gang(pod_set(count, gpus), **topo)
        p = place(cluster, g, placer="heuristic")
        assert check_feasible(cluster, g, p) == []
        if p.placed:
            assert len(p.pods) == count


def test_solution_counts_match_the_placement_and_pass_the_oracle_checks():
    cluster = generate("dgx-h100", gpus=256, fill=0.3, seed=2)
    g = gang(pod_set(1, 0, name="leader", cpu=8000), pod_set(6, 8, name="worker"), required="block")
    prepared = prepare(cluster, g)
    sol = place_heuristic(cluster, prepared)
    assert sol.placed
    assert check_counts(cluster, g, sol.counts) == []
    assert [int(c.sum()) for c in sol.counts] == [1, 6]
    assert all(c.dtype == np.int64 for c in sol.counts)


def test_retry_promotes_the_pod_set_that_failed_first_not_the_one_failing_after_domain_exclusion():
    # regression: the elastic set took both pod slots, the rigid set failed; the required-domain retry
    # then excluded the only rack so the *first* set failed, and that set was "promoted" (a no-op)
    cluster = Cluster(["rack"], [node("n0", {}, 0, pods=2)])
    g = gang(pod_set(1, 0, name="rigid"), pod_set(2, 0, name="elastic", min_count=1), required="rack")
    p = place(cluster, g, placer="heuristic")
    assert p.placed and sorted(x.pod_set for x in p.pods) == ["elastic", "rigid"]


# ------------------------------------------------------------------------------ kernels
from hypothesis import strategies as st  # noqa: E402

from gangplace.engine._core import evaluate_nodes, nonzero_nodes  # noqa: E402
from tests.conftest import tiny_clusters, tiny_gangs  # noqa: E402


@settings(max_examples=150, deadline=None, database=None)
@given(tiny_clusters(max_nodes=16), st.data())
def test_sparse_evaluate_matches_the_full_pass(cluster, data):
    n = cluster.n_nodes
    counts = np.asarray(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), np.int64)
    taken = counts * data.draw(st.integers(0, 2))
    L = len(cluster.levels)
    sp_d, sp_s = np.zeros(L + 1, np.int64), np.zeros(L + 1, np.int64)
    # the obvious full pass: every used node's domain per level, and the free GPUs left in them
    after = cluster.free_gpus.astype(np.int64) - taken
    used = np.flatnonzero(counts)
    full_d = [len(set(cluster.node_domain[j, used].tolist())) for j in range(L)] + [len(used)]
    full_s = [sum(int(after[cluster.domain_start[d]:cluster.domain_end[d]].sum())
                  for d in set(cluster.node_domain[j, used].tolist())) for j in range(L)] + [int(after[used].sum())]
    nodes = nonzero_nodes(counts)
    assert nodes.tolist() == np.flatnonzero(counts).tolist()
    evaluate_nodes(nodes, taken[nodes], cluster.free_gpus, cluster.node_domain, cluster.domain_start,
                   cluster.domain_end, sp_d, sp_s)
    assert sp_d.tolist() == full_d and sp_s.tolist() == full_s
    # the podfit objective's pod room: per level, the pods of ``unit`` GPUs the touched domains' nodes
    # could take before placement, at most ``cap`` per node
    unit, cap = data.draw(st.integers(1, 8)), data.draw(st.integers(1, 9))
    room = np.zeros(L + 1, np.int64)
    evaluate_nodes(nodes, taken[nodes], cluster.free_gpus, cluster.node_domain, cluster.domain_start,
                   cluster.domain_end, sp_d, sp_s, unit, room, cap)
    before = np.minimum(np.maximum(cluster.free_gpus.astype(np.int64), 0) // unit, cap)
    full_room = [sum(int(before[cluster.domain_start[d]:cluster.domain_end[d]].sum())
                     for d in set(cluster.node_domain[j, used].tolist())) for j in range(L)]
    assert room[:L].tolist() == full_room and sp_s.tolist() == full_s


@settings(max_examples=150, deadline=None, database=None)
@given(tiny_clusters(max_nodes=16), st.data())
def test_the_kernels_rival_comparison_keys_candidates_as_the_objective_does(cluster, data):
    """``best_rival`` (csrc/_core.pyx objective_key) picks, in every order of part (3), the candidate
    engine/place/objective.py ranks first, and only when it beats the kernel's own answer."""
    from gangplace.engine._core import best_rival
    from gangplace.engine.place.heuristic import kernel_topology
    from gangplace.engine.place.objective import OBJECTIVE_MODE, objective_of_nodes
    n, L = cluster.n_nodes, len(cluster.levels)
    gpus = data.draw(st.integers(0, 4))
    count = data.draw(st.integers(1, 6))
    counted = data.draw(st.integers(1, L + 1))

    def candidate():  # pods per node, ``count`` in all, nodes increasing
        c = np.zeros(n, np.int64)
        for _ in range(count):
            c[data.draw(st.integers(0, n - 1))] += 1
        return c

    own = candidate()
    rivals = [candidate() for _ in range(data.draw(st.integers(1, 4)))]
    R = len(rivals)
    rn, rt, rl = np.zeros((R, count), np.int64), np.zeros((R, count), np.int64), np.zeros(R, np.int64)
    for j, c in enumerate(rivals):
        nz = np.flatnonzero(c)[::-1]  # the kernel sorts a candidate's nodes itself
        rn[j, :len(nz)], rt[j, :len(nz)], rl[j] = nz, c[nz], len(nz)
    for objective, mode in OBJECTIVE_MODE.items():
        def key(c):
            nz = np.flatnonzero(c)
            return objective_of_nodes(cluster, nz, c[nz] * gpus, count, counted, objective,
                                      unit=(max(gpus, 1), count)).key
        out_nodes, out_take = np.empty(count, np.int64), np.empty(count, np.int64)
        j = best_rival(kernel_topology(cluster), cluster.free_gpus, gpus, count, counted, mode, np.flatnonzero(own), own,
                       rn, rt, rl, out_nodes, out_take)
        keys = [key(c) for c in rivals]
        if min(keys) < key(own):
            assert j == keys.index(min(keys)), objective
            k = int(rl[j])
            assert out_nodes[:k].tolist() == np.flatnonzero(rivals[j]).tolist()
            assert out_take[:k].tolist() == rivals[j][np.flatnonzero(rivals[j])].tolist()
        else:
            assert j == -1, objective


def test_the_kernels_rival_comparison_counts_the_pod_room_only_under_podfit():
    # one 4-GPU pod on x0 (the kernel's answer) or y0 (the rival's): both leave 3 free. Rack r1 (x0: 7
    # free, x1: 8) has two nodes that can take the pod (room 2: a one-pod gang counts a node once) and
    # 15 free GPUs; r2 (y0: 7 free, four nodes with 3) room 1 and 19 free GPUs. podfit prefers the
    # rival (less room), bottomup the kernel's answer.
    from gangplace.engine._core import best_rival
    from gangplace.engine.place.heuristic import kernel_topology
    from gangplace.engine.place.objective import OBJECTIVE_MODE
    cluster = Cluster(("block", "rack"), [node("x0", {"block": "b", "rack": "r1"}, used=1),
                                          node("x1", {"block": "b", "rack": "r1"}),
                                          node("y0", {"block": "b", "rack": "r2"}, used=1)]
                      + [node(f"y{i}", {"block": "b", "rack": "r2"}, used=5) for i in range(1, 5)])
    own = np.zeros(cluster.n_nodes, np.int64)
    own[0] = 1
    rn, rt, rl = np.array([[2]], np.int64), np.array([[1]], np.int64), np.array([1], np.int64)
    picked = {}
    for objective in ("podfit", "bottomup"):
        out_nodes, out_take = np.empty(1, np.int64), np.empty(1, np.int64)
        picked[objective] = best_rival(kernel_topology(cluster), cluster.free_gpus, 4, 1, 3, OBJECTIVE_MODE[objective],
                                       np.array([0], np.int64), own, rn, rt, rl, out_nodes, out_take)
    assert picked == {"podfit": 0, "bottomup": -1}
    # the kernel's own descent (best_inside) chooses the same way
    chosen = {o: place(cluster, gang(pod_set(1, 4)), placer="heuristic", objective=o).nodes for o in ("podfit", "bottomup")}
    assert chosen == {"podfit": ["y0"], "bottomup": ["x0"]}


@st.composite
def _medium_instances(draw):
    cluster = draw(tiny_clusters(max_nodes=40))
    return cluster, draw(tiny_gangs(cluster.levels, max_pods=40))


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_medium_instances())
def test_answers_on_larger_random_clusters_are_feasible_and_deterministic(inst):
    cluster, g = inst
    p = place(cluster, g, placer="heuristic")
    assert check_feasible(cluster, g, p) == []
    again = place(cluster, g, placer="heuristic")
    assert again.pods == p.pods and again.reason == p.reason
    if p.placed:
        assert p.objective == reference_key(cluster, g, counts_of(cluster, g, p))[:-1]


def test_empty_clusters_and_clusters_without_levels_do_not_crash():
    p = place(Cluster([], []), gang(pod_set(1, 1)), placer="heuristic")
    assert not p.placed and p.reason == "gang 'g' needs 1 pod (1 GPU); only 0 fit in the cluster now"
    p = place(Cluster(["rack"], []), gang(pod_set(1, 1), required="rack"), placer="heuristic")
    assert not p.placed


def test_negative_free_capacity_from_an_overcommitted_state_holds_nothing():
    cluster = Cluster(["rack"], [node("a", {"rack": "r"}, 8), node("b", {"rack": "r"}, 8)])
    cluster.free_gpus[0] = -3
    p = place(cluster, gang(pod_set(2, 1)), placer="heuristic")
    assert p.placed and p.nodes == ["b", "b"]


def test_first_pod_sets_best_fit_no_longer_splits_a_gang_that_fits_one_rack():
    # regression: the 4-GPU set took its best fit (n0, exactly 4 free) in r0, pushing the 2-GPU set
    # into r1; anchoring the gang at the rack level puts both sets in r1
    cluster = Cluster(["rack"], [node("n0", {"rack": "r0"}, 8, 4), node("n1", {"rack": "r1"}, 8)])
    g = gang(pod_set(1, 4, name="big"), pod_set(2, 2, name="small"))
    p = _assert_matches_oracle(cluster, g)
    assert p.domains_used == {"rack": 1, "node": 1} and set(p.nodes) == {"n1"}


def test_elastic_set_is_not_left_short_inside_the_first_sets_required_domain():
    # regression: required=block; the rigid set's best fit (b0) left no room for the elastic set,
    # which was placed with 0 of its 2 pods although block b1 holds the whole gang
    cluster = Cluster(["block"], [node("n0", {"block": "b0"}, 8, 4), node("n1", {"block": "b1"}, 8)])
    g = gang(pod_set(1, 4, name="rigid"), pod_set(2, 2, name="elastic", min_count=0), required="block")
    p = _assert_matches_oracle(cluster, g)
    assert len(p.pods) == 3 and set(p.nodes) == {"n1"}


def test_pod_sets_competing_for_gpus_and_pod_slots_fall_back_to_pod_by_pod():
    # regression: in either order the first pod set's best fit left the other no room (n1's
    # slots or GPUs); first-fit decreasing over single pods places the gang
    cluster = Cluster([], [node("n0", {}, 8, 1, pods=2), node("n1", {}, 8, pods=3)])
    g = gang(pod_set(2, 4, name="big"), pod_set(3, 1, name="small"))
    p = place(cluster, g, placer="heuristic")
    assert p.placed and check_feasible(cluster, g, p) == []
    assert reference_place(cluster, g).placed


def test_selective_elastic_set_is_not_crowded_out_by_an_unselective_rigid_one():
    # regression: the rigid set took both slots of the only H100 node; the elastic H100 set got 0
    cluster = Cluster([], [node("n0", {}, 0, pods=2), node("n1", {}, 0, pods=2, gpu_type="A100")])
    g = gang(pod_set(2, 0, name="rigid"), pod_set(1, 0, name="h100", min_count=0, selector={"gpu_type": "H100"}))
    p = _assert_matches_oracle(cluster, g)
    assert len(p.pods) == 3


@pytest.mark.parametrize("preset, gpus, seed, workers, gpus_per_worker", [
    ("dgx-h100", 1024, 2, 16, 8), ("gb200-nvl72", 1024, 1, 24, 4)])
def test_leader_shares_a_workers_node_and_the_answer_is_proved_optimal(preset, gpus, seed, workers,
                                                                       gpus_per_worker):
    # regression (formerly in test_policy.py, where auto had to fix it): the CPU-only leader took a
    # node of its own (best-fit tie among nodes with no free GPUs); later pod sets now try the
    # nodes the gang already uses first
    cluster = generate(preset, gpus=gpus, fill=0.6, seed=seed)
    g = gang(pod_set(workers, gpus_per_worker, name="w"), pod_set(1, 0, name="leader", cpu=4000))
    p = place(cluster, g, placer="heuristic")
    assert p.placed and p.optimal
    leader = [x.node for x in p.pods if x.pod_set == "leader"]
    assert leader[0] in {x.node for x in p.pods if x.pod_set == "w"}
    assert p.domains_used["node"] == len({x.node for x in p.pods if x.pod_set == "w"})


def test_the_kernel_topology_cache_follows_the_cluster():
    # one cached KernelTopology: alternating clusters of different shapes must never reuse the
    # other's topology (wrong domains or out-of-range node ids)
    a = build_cluster({"b0": {"r0": [0, 0], "r1": [0]}})
    b = build_cluster({"b0": {"r0": [0]}, "b1": {"r1": [0], "r2": [0, 0, 0]}})
    g = gang(pod_set(2, 8), required="rack")
    want = {id(c): place(c, g, placer="heuristic").pods for c in (a, b)}
    for c in (a, b, a, b):
        assert kernel_topology(c).node_domain is c.node_domain
        assert place(c, g, placer="heuristic").pods == want[id(c)]
    copy = a.copy()
    assert kernel_topology(copy).domain_start is copy.domain_start


# ------------------------------------------------------------------------------ part (3): the two orders
def test_bottom_up_a_one_gpu_pod_takes_the_tightest_node_not_the_fullest_block():
    # block b0 has fewer free GPUs (8, one empty node); block b1 has 9 but one node with 1 GPU free.
    # Bottom-up (default) fills that node and keeps b0's whole node for an 8-GPU pod; top-down
    # (the older order) picks the fullest block first and breaks its whole node.
    cluster = build_cluster({"b0": {"r0": [0, 8]}, "b1": {"r1": [7, 0]}})
    g = gang(pod_set(1, 1))
    assert _assert_matches_oracle(cluster, g).nodes == ["r1-n0"]
    p = place(cluster, g, placer="heuristic", objective="topdown")
    assert p.nodes == ["r0-n0"]
    ref = reference_place(cluster, g, objective="topdown")
    assert reference_key(cluster, g, counts_of(cluster, g, p), objective="topdown") == ref.key


def test_bottom_up_a_gang_takes_the_fullest_rack_even_in_the_emptier_block():
    # a 2-node gang fits in r0 (block b0, 3 free nodes; b0 has 24 free) and in r2 (block b1, exactly
    # 2 free nodes, but b1 has 40 free elsewhere): bottom-up takes the tight rack r2
    cluster = build_cluster({"b0": {"r0": [0, 0, 0]}, "b1": {"r1": [0, 0, 0], "r2": [0, 0]}})
    p = _assert_matches_oracle(cluster, gang(pod_set(2, 8)))
    assert {n.rsplit("-", 1)[0] for n in p.nodes} == {"r2"}
    p = place(cluster, gang(pod_set(2, 8)), placer="heuristic", objective="topdown")
    assert {n.rsplit("-", 1)[0] for n in p.nodes} == {"r0"}


@PROPERTY
@given(instances())
def test_top_down_order_stays_selectable_and_consistent_with_the_oracle(inst):
    cluster, g = inst
    p = place(cluster, g, placer="heuristic", objective="topdown")
    if not p.placed:
        return
    ref = reference_place(cluster, g, objective="topdown")
    assert ref.placed
    key = reference_key(cluster, g, counts_of(cluster, g, p), objective="topdown")
    assert key >= ref.key
    assert p.objective == key[:-1]


def test_unknown_objective_is_rejected():
    from gangplace.engine.model.errors import InvalidRequest
    cluster = build_cluster({"b0": {"r0": [0]}})
    with pytest.raises(InvalidRequest, match="objective"):
        place(cluster, gang(pod_set(1, 1)), placer="heuristic", objective="sideways")

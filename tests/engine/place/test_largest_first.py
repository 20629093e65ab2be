"""engine/place/largest_first.py and its native port: the rivals' candidates as extra starts of the heuristic.

The kernel (csrc/_core.pyx, ``rival_candidates``) computes the same candidates as the numpy
functions of largest_first.py, which stay as its reference: the first property below checks them
equal, entry for entry, on random clusters and gangs whenever the kernel's answer is not proved.

The reference placers are the simulator's models of the rivals (engine/sim/baselines.py:
``KueueTAS``, the current Kueue release's BestFit profile, and ``KaiBinpack``, KAI's topology
plugin with bin packing; docs/simulation.md cites their sources). The heuristic must never be
less local than either, lexicographically on parts (1)-(2) of the objective: pods placed, then
domains per level top down, then nodes -- at every cluster size (the property's clusters go up
to 16,384 GPUs).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gangplace.engine import GangRequest, PodSet, place
from gangplace.engine.model.synthetic import generate
from gangplace.engine.model.types import TopologyConstraint
from gangplace.engine.place.capacity import FreeCapacity, node_fit
from gangplace.engine.place.heuristic import rival_arrays, run_kernel
from gangplace.engine.place.largest_first import _pick, all_candidates, largest_first_counts
from gangplace.engine.place.request import prepare
from gangplace.engine.place.solution import Solution, objective_of, proved_optimal
from gangplace.engine.sim.baselines import KaiBinpack, KueueTAS, make_gang

RIVALS = (KueueTAS, KaiBinpack)


def parts_12(cluster, nodes: np.ndarray, pods: int) -> tuple:
    """(-pods placed, domains used per level top down, nodes used) for a set of used nodes."""
    if pods == 0:
        return (0,)
    return (-pods, *(len(set(cluster.node_domain[lv, nodes].tolist())) for lv in range(len(cluster.levels))),
            len(nodes))


def ours(cluster, request: GangRequest) -> tuple:
    p = place(cluster, request, placer="heuristic")
    if not p.placed:
        return (0,)
    nodes = np.array(sorted({cluster.node_index[a.node] for a in p.pods}))
    return parts_12(cluster, nodes, len(p.pods))


@pytest.mark.parametrize("pods, racks_at_most, auto_racks", [(128, 9, 8), (512, 37, 33)],
                         ids=["128 pods x 4 GPUs: 2 blocks / 9 racks, as Kueue's algorithm",
                              "512 pods x 4 GPUs: 6 blocks / 37 racks, as Kueue's algorithm"])
def test_the_two_inputs_where_the_kernel_lost_to_kueue(pods, racks_at_most, auto_racks):
    cluster = generate("gb200-nvl72", gpus=16384, fill=0.6, seed=1)
    gang = GangRequest("g", (PodSet("w", pods, gpus=4),), TopologyConstraint(preferred="rack"))
    h = place(cluster, gang, placer="heuristic")
    assert h.domains_used["rack"] <= racks_at_most
    assert place(cluster, gang, placer="auto").domains_used["rack"] == auto_racks


def kernel_and_numpy(cluster, gang: GangRequest):
    """(whether the kernel's answer is proved, the kernel's candidates, numpy's) as
    int64[n_nodes] pods per node, None where a candidate finds no place."""
    prepared = prepare(cluster, gang)
    count = gang.pod_sets[0].count
    rivals = rival_arrays(count)
    n, counts, lb, _ = run_kernel(cluster, prepared, FreeCapacity.of(cluster), 0, -1, prepared.eligible[0],
                                  prepared.required_level, rivals)
    if n < 0:
        return None
    sol = Solution(counts=[counts], placed=True, placer="heuristic", lower_bound=lb, max_pods=(n,))
    proved = proved_optimal(prepared, sol, objective_of(cluster, prepared, sol))[0]
    native = []
    for j, k in enumerate(rivals[2].tolist()):
        c = None
        if k > 0:
            c = np.zeros(cluster.n_nodes, np.int64)
            c[rivals[0][j, :k]] = rivals[1][j, :k]
        native.append(c)
    return proved, native, all_candidates(cluster, prepared, node_fit(cluster, prepared, 0))


def _same(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and bool((a == b).all()))


GANG_SHAPES = st.tuples(st.floats(0.001, 0.6), st.sampled_from([1.0, 0.5, 0.25, 0.125]),
                        st.sampled_from(["none", "preferred-lowest", "required-top", "required-lowest"]))


def _gang(cluster, share: float, per_pod: float, topology: str) -> GangRequest:
    gpus = max(1, int(int(cluster.cap_gpus.max()) * per_pod))
    pods = max(1, min(1024, int(share * int(cluster.free_gpus.sum())) // gpus))
    t = {"none": TopologyConstraint(), "preferred-lowest": TopologyConstraint(preferred=cluster.levels[-1]),
         "required-top": TopologyConstraint(required=cluster.levels[0]),
         "required-lowest": TopologyConstraint(required=cluster.levels[-1])}[topology]
    return GangRequest("g", (PodSet("w", pods, gpus=gpus),), t)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(preset=st.sampled_from(["dgx-h100", "gb200-nvl72", "fat-tree", "hetero"]),
       gpus=st.sampled_from([512, 1024, 2048, 4096]), fill=st.floats(0.3, 0.9), seed=st.integers(0, 10_000),
       shape=GANG_SHAPES)
def test_the_kernel_computes_the_numpy_candidates_when_its_answer_is_not_proved(preset, gpus, fill, seed, shape):
    cluster = generate(preset, gpus=gpus, fill=fill, seed=seed)
    got = kernel_and_numpy(cluster, _gang(cluster, *shape))
    if got is None:  # does not fit: no candidates
        return
    proved, native, reference = got
    if proved:  # nothing to improve: the kernel does not spend the time
        assert all(c is None for c in native)
        return
    for name, mine, ref in zip(("kueue", "kai-flat", "kai-binpack", "kueue-state"), native, reference):
        assert _same(mine, ref), name


def test_the_kernel_candidates_are_checked_on_enough_unproved_answers():
    """The property above compares only unproved answers: a fixed sweep that finds some."""
    rng = np.random.default_rng(7)
    compared = 0
    for _ in range(120):
        cluster = generate(str(rng.choice(["dgx-h100", "gb200-nvl72"])), gpus=int(rng.choice([1024, 2048, 4096])),
                           fill=float(rng.uniform(0.3, 0.9)), seed=int(rng.integers(0, 10_000)))
        gang = _gang(cluster, float(rng.uniform(0.05, 0.6)), 1.0, str(rng.choice(["none", "preferred-lowest"])))
        got = kernel_and_numpy(cluster, gang)
        if got is None or got[0]:
            continue
        compared += 1
        assert all(_same(a, b) for a, b in zip(got[1], got[2]))
    assert compared >= 20


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(preset=st.sampled_from(["dgx-h100", "gb200-nvl72"]), gpus=st.sampled_from([512, 1024, 2048, 4096, 16384]),
       fill=st.floats(0.3, 0.9), seed=st.integers(0, 10_000), share=st.floats(0.001, 0.6), data=st.data())
def test_the_heuristic_is_never_less_local_than_kueue_or_kai(preset, gpus, fill, seed, share, data):
    cluster = generate(preset, gpus=gpus, fill=fill, seed=seed)
    per_node = int(cluster.cap_gpus.max())
    free = int(cluster.free_gpus.sum())
    pods = max(1, min(1024, int(share * free) // per_node))
    size = data.draw(st.sampled_from([pods * per_node, min(per_node, 1 + pods % per_node)]), label="gang GPUs")
    gang = make_gang(size, per_node)
    mine = ours(cluster, gang.request)
    for rival in RIVALS:
        a = rival().place(cluster, gang)
        theirs = parts_12(cluster, a.nodes, int(a.pods.sum())) if a is not None else (0,)
        assert mine <= theirs, (rival.__name__, mine, theirs)


@pytest.mark.parametrize("room, count, expected", [
    ([5, 3, 8, 2], 9, [2, 3]),           # 8, then the best fit for the last 1: the 2
    ([5, 3, 8, 2], 3, [1]),              # one holds it: the least room that does
    ([4, 4, 4], 8, [0, 1]),              # ties in order
    ([1, 1], 5, None),                   # not enough room
], ids=["most room first, the last one best fit", "one domain holds it: the tightest",
        "equal rooms are taken in order", "too little room anywhere is None"])
def test_pick_takes_most_room_first_and_the_last_one_best_fit(room, count, expected):
    got = _pick(np.arange(len(room)) + 100, np.array(room), count)
    assert (got is None and expected is None) or got.tolist() == [100 + i for i in expected]


def test_the_candidate_places_exactly_the_gang_on_nodes_with_room():
    cluster = generate("dgx-h100", gpus=4096, fill=0.6, seed=3)
    prepared = prepare(cluster, GangRequest("g", (PodSet("w", 40, gpus=8),)))
    counts = largest_first_counts(cluster, prepared)
    assert counts is not None and counts.sum() == 40
    assert (counts * 8 <= cluster.free_gpus).all() and (counts[cluster.schedulable == 0] == 0).all()

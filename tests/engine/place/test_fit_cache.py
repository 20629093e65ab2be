"""The heuristic's fit cache on clusters that track their writes (engine/model/cluster.py
``track_writes``, engine/place/heuristic.py ``fit_cache``, csrc/_core.pyx ``FitCache``).

A stale summary would double-book GPUs, so the property here is exact: after any sequence of
writes through the real write APIs (the ledger's ``apply``, reservations' ``subtract_unbound``,
``Cluster.update_node``, ``set_schedulable``, ``take_free``; ``ClusterState`` bind/unbind/node
updates), placing on the tracked cluster (cached) gives exactly the Placement a fresh uncached
computation gives on an untracked copy of the same arrays.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gangplace.engine import GangRequest, PodSet, TopologyConstraint, place
from gangplace.engine.live.ledger import BindRecord, apply
from gangplace.engine.live.reservations import slots_of, subtract_unbound
from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.synthetic import generate
from gangplace.engine.model.types import SliceLayer
from gangplace.engine.place import heuristic, request
from gangplace.engine.place.capacity import FreeCapacity
from gangplace.engine.place.request import prepare

@pytest.fixture(autouse=True, scope="module")
def caches_on_small_clusters():
    """The caches skip clusters under request.CACHE_MIN_NODES nodes; these tests use small ones."""
    saved = request.CACHE_MIN_NODES
    request.CACHE_MIN_NODES = 0
    yield
    request.CACHE_MIN_NODES = saved


PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def same(a, b) -> bool:
    """Placements equal but for the time they took."""
    return dataclasses.replace(a, elapsed_ms=0.0) == dataclasses.replace(b, elapsed_ms=0.0)


def gangs(cluster):
    """Single-pod-set gangs (the cached path), of several shapes the cache keys apart."""
    levels = cluster.levels
    per_node = int(cluster.cap_gpus.max())
    gpus = st.sampled_from(sorted({1, 2, per_node // 2 or 1, per_node}))
    selector = st.sampled_from([{}, {"gpu_type": "H100"}, {"gpu_type": "A100"}])
    topo = st.one_of(
        st.just(TopologyConstraint()),
        st.sampled_from(levels).map(lambda lv: TopologyConstraint(required=lv)),
        st.sampled_from(levels).map(lambda lv: TopologyConstraint(preferred=lv)),
        st.just(TopologyConstraint(slices=(SliceLayer(2, levels[-1]),))))
    return st.builds(
        lambda n, g, cpu, sel, t: GangRequest(
            "g", (PodSet("w", 2 * n if t.slices else n, gpus=g, cpu=cpu, node_selector=sel),), t),
        st.integers(1, 40), gpus, st.sampled_from([0, 0, 4_000]), selector, topo)


def write_ops(n_nodes: int):
    node = st.integers(0, n_nodes - 1)
    return st.lists(st.one_of(
        st.tuples(st.just("bind"), node, st.integers(1, 8)),
        st.tuples(st.just("release"), st.integers(0, 50), st.just(0)),
        st.tuples(st.just("reserve"), st.just(0), st.just(0)),
        st.tuples(st.just("cordon"), node, st.booleans()),
        st.tuples(st.just("resize"), node, st.integers(0, 8)),
        st.tuples(st.just("take"), node, st.integers(-2, 2)),
    ), min_size=1, max_size=6)


@PROPERTY
@given(st.sampled_from(["dgx-h100", "gb200-nvl72", "hetero"]), st.integers(256, 1024), st.floats(0.2, 0.9),
       st.data())
def test_cached_placements_equal_fresh_ones_under_random_writes(preset, n_gpus, fill, data):
    c = generate(preset, gpus=n_gpus, fill=fill, seed=3)
    c.track_writes()
    records: list[BindRecord] = []
    uid = 0
    pool = data.draw(st.lists(gangs(c), min_size=1, max_size=3))  # shapes recur: the cache is reused
    for _round in range(data.draw(st.integers(2, 8))):
        g = data.draw(st.sampled_from(pool))
        got = place(c, g, placer="heuristic")  # cached (after the first round of a shape: partly reused)
        want = place(c.copy(), g, placer="heuristic")  # an untracked copy: every node computed
        assert same(got, want), (got, want)
        for op, i, k in data.draw(write_ops(c.n_nodes)):
            if op == "bind" and c.free_gpus[i] >= k and c.free_pods[i] >= 1:
                uid += 1
                rec = BindRecord(f"p{uid}", c.node_names[i], k, 0, 0, gang="bg")
                apply(c, rec, +1)
                records.append(rec)
            elif op == "release" and records:
                apply(c, records.pop(i % len(records)), -1)
            elif op == "reserve" and got.placed:  # hold the answer, as ClusterState's snapshots do
                subtract_unbound(c, slots_of(g, got))
            elif op == "cordon":
                c.set_schedulable(i, k)
            elif op == "resize":  # a node's allocatable GPUs change (its usage kept)
                old = c.nodes[i]
                if old.gpus_used <= k:
                    assert c.update_node(old, dataclasses.replace(old, gpus=k))
            elif op == "take" and c.free_gpus[i] - k >= 0:
                c.take_free(i, gpus=k)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cluster_state_live_cluster_stays_exact(data):
    """Through ClusterState (binds, unbinds, node updates) on its tracked live cluster."""
    st_ = ClusterState(generate("dgx-h100", gpus=512, fill=0.5, seed=5))
    names = st_.node_names()
    bound: list[str] = []
    for r in range(data.draw(st.integers(2, 6))):
        live = st_.cluster
        assert live.write_tracker is not None
        g = GangRequest("g", (PodSet("w", data.draw(st.integers(1, 24)), gpus=data.draw(st.sampled_from([1, 4, 8]))),))
        assert same(place(live, g, placer="heuristic"), place(live.copy(), g, placer="heuristic"))
        for _ in range(data.draw(st.integers(1, 4))):
            kind = data.draw(st.sampled_from(["bind", "unbind", "cordon"]))
            name = data.draw(st.sampled_from(names))
            if kind == "bind" and live.free_gpus[live.node_index[name]] >= 1:
                uid = f"u{r}-{len(bound)}"
                st_.bind(uid, name, gpus=1)
                bound.append(uid)
            elif kind == "unbind" and bound:
                st_.unbind(bound.pop(0))
            elif kind == "cordon":
                spec = st_.node_spec(name)
                st_.upsert_node(dataclasses.replace(spec, schedulable=not spec.schedulable))
    assert st_.check_consistency() == []


def test_tracked_arrays_are_read_only_and_copies_are_not():
    c = generate("dgx-h100", gpus=256, fill=0.5, seed=1)
    c.track_writes()
    with pytest.raises(ValueError, match="read-only"):
        c.free_gpus[0] -= 1
    with pytest.raises(ValueError, match="read-only"):
        c.schedulable[0] = 0
    snap = c.copy()
    assert snap.write_tracker is None
    i = int(np.flatnonzero(c.free_gpus > 0)[0])
    snap.free_gpus[i] = 0  # a copy's arrays are its own
    assert c.free_gpus[i] > 0


def test_pickled_and_deep_copied_clusters_are_untracked():
    import copy
    import pickle
    c = generate("dgx-h100", gpus=256, fill=0.5, seed=1)
    c.track_writes()
    for other in (copy.deepcopy(c), pickle.loads(pickle.dumps(c))):
        assert other.write_tracker is None
        i = int(np.flatnonzero(other.free_gpus > 0)[0])
        before = int(other.free_gpus[i])
        other.take_free(i, gpus=1)
        assert other.free_gpus[i] == before - 1 and c.free_gpus[i] == before


def test_a_swapped_array_is_a_miss_never_a_stale_hit():
    """The simulator swaps projected copies into ``free_gpus``: the cache must not answer for them."""
    c = generate("dgx-h100", gpus=512, fill=0.3, seed=2)
    c.track_writes()
    g = GangRequest("g", (PodSet("w", 8, gpus=8),))
    place(c, g, placer="heuristic")  # the cache now holds this shape
    saved = c.free_gpus
    c.free_gpus = np.zeros_like(saved)  # nothing free
    assert c.write_tracker is None
    assert not place(c, g, placer="heuristic").placed
    with pytest.raises(RuntimeError, match="replaced"):
        c.take_free(0, gpus=1)
    c.free_gpus = saved
    assert c.write_tracker is not None
    assert same(place(c, g, placer="heuristic"), place(c.copy(), g, placer="heuristic"))


def test_only_changed_domains_are_recomputed():
    c = generate("dgx-h100", gpus=2048, fill=0.5, seed=1)
    c.track_writes()
    g = GangRequest("g", (PodSet("w", 8, gpus=8),))
    pr = prepare(c, g)
    free = FreeCapacity.of(c)
    stats = np.zeros(1, np.int64)
    n_lowest = len(c.write_tracker.version)

    def run() -> int:
        entry = heuristic.fit_cache(c, pr, free, 0)
        assert entry is not None
        try:
            heuristic.place_pod_set(
                heuristic.kernel_topology(c), free.gpus, free.cpu, free.mem, free.pods, pr.eligible[0], pr.units[0],
                {"gpus": 8, "cpu": 0, "mem": 0, "count": 8, "min_count": 8, "required_level": -1,
                 "preferred_level": -1, "root_domain": -1, "bottom_up": True, "pod_room": True, "rivals": False},
                np.zeros(c.n_nodes, np.int64), np.zeros(len(c.levels) + 1, np.int64),
                np.zeros(len(c.levels) + 1, np.int64), None, None, None, None,
                c.write_tracker.version, entry[1], entry[2], stats)
        finally:
            entry[0].release()
        return int(stats[0])

    assert run() == n_lowest  # first use: every lowest-level domain
    assert run() == 0
    i = int(np.flatnonzero(c.free_gpus > 0)[0])
    c.take_free(i, gpus=1)
    c.take_free(i + 1 if i + 1 < c.n_nodes else i, gpus=0)
    assert run() in (1, 2)
    # a cordon makes the prepared eligibility stale: no cache until prepared again
    c.set_schedulable(i, False)
    assert heuristic.fit_cache(c, pr, free, 0) is None


def test_threads_placing_at_once_get_the_sequential_answers():
    """Kernel calls release the GIL: concurrent calls on one tracked cluster share its fit cache
    (a busy entry: that call computes every node) and each thread has its own scratch blocks."""
    import threading
    c = generate("gb200-nvl72", gpus=4096, fill=0.6, seed=4)
    c.track_writes()
    shapes = [GangRequest(f"g{n}", (PodSet("w", n, gpus=4),)) for n in (1, 3, 16, 40, 128)]
    want = {g.name: place(c.copy(), g, placer="heuristic") for g in shapes}
    problems: list[str] = []

    def worker(k: int) -> None:
        for r in range(30):
            g = shapes[(k + r) % len(shapes)]
            if not same(place(c, g, placer="heuristic"), want[g.name]):
                problems.append(g.name)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []

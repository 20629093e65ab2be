"""engine/live/state.py: allocations, reservations, snapshots, versions and the journal."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from gangplace.engine import (
    Cluster,
    GangRequest,
    InvalidRequest,
    NodeSpec,
    PodSet,
    TopologyConstraint,
)
from gangplace.engine.model.errors import InvalidFile
from gangplace.engine.live.state import JOURNAL_NAME, BindRecord, ClusterState

from tests.conftest import FakeClock, build_cluster, lock_held_elsewhere


def small_cluster(racks=2, nodes_per_rack=4, gpus=8, used=0) -> Cluster:
    nodes = [NodeSpec(name=f"r{r}-n{n}", topology={"block": "b0", "rack": f"r{r}"}, gpus=gpus, gpus_used=used,
                      cpu=64_000, memory=512 * 2**30, pods=110)
             for r in range(racks) for n in range(nodes_per_rack)]
    return Cluster(["block", "rack"], nodes)


def gang(name="g", count=4, gpus=8, required=None) -> GangRequest:
    return GangRequest(name, (PodSet("workers", count, gpus=gpus, cpu=1000, memory=2**30),),
                       TopologyConstraint(required=required))


def test_bind_and_unbind_update_free_capacity_and_version():
    st = ClusterState(small_cluster())
    v0 = st.version
    st.bind("uid-1", "r0-n0", gpus=4, cpu=1000, memory=2**30, gang="g", namespace="ns", name="p")
    assert st.version > v0
    snap = st.snapshot()
    i = snap.node_index["r0-n0"]
    assert snap.free_gpus[i] == 4 and snap.free_pods[i] == 109
    assert st.allocation("uid-1").node == "r0-n0"
    v1 = st.version
    st.bind("uid-1", "r0-n0", gpus=4, cpu=1000, memory=2**30, gang="g", namespace="ns", name="p")
    assert st.version == v1, "an identical repeat is a no-op"
    assert st.unbind("uid-1") is True
    assert st.unbind("uid-1") is False
    assert st.snapshot().free_gpus[i] == 8
    assert st.check_consistency() == []


def test_rebind_to_another_node_moves_the_allocation():
    st = ClusterState(small_cluster())
    st.bind("u", "r0-n0", gpus=8)
    st.bind("u", "r1-n0", gpus=8)
    snap = st.snapshot()
    assert snap.free_gpus[snap.node_index["r0-n0"]] == 8
    assert snap.free_gpus[snap.node_index["r1-n0"]] == 0
    assert st.pods_on("r0-n0") == [] and len(st.pods_on("r1-n0")) == 1
    assert st.check_consistency() == []


@pytest.mark.parametrize("kwargs, field", [
    ({"pod_uid": "", "node": "r0-n0", "gpus": 1}, "pod_uid"),
    ({"pod_uid": "u", "node": "nope", "gpus": 1}, "records[0].node"),
    ({"pod_uid": "u", "node": "r0-n0", "gpus": -1}, "gpus"),
    ({"pod_uid": "u", "node": "r0-n0", "gpus": 9}, "records[0].gpus"),
    ({"pod_uid": "u", "node": "r0-n0", "gpus": True}, "gpus"),
], ids=["empty uid", "unknown node", "negative gpus", "more gpus than the node has", "bool is not a count"])
def test_bad_binds_raise_and_change_nothing(kwargs, field):
    st = ClusterState(small_cluster())
    v = st.version
    with pytest.raises(InvalidRequest) as e:
        st.bind(**kwargs)
    assert e.value.field == field
    assert st.version == v and st.allocations() == {}


def test_overcommit_is_accepted_only_when_asked_and_stays_consistent():
    st = ClusterState(small_cluster())
    st.bind("a", "r0-n0", gpus=8)
    with pytest.raises(InvalidRequest):
        st.bind("b", "r0-n0", gpus=2)
    st.bind("b", "r0-n0", gpus=2, allow_overcommit=True)
    snap = st.snapshot()
    assert snap.free_gpus[snap.node_index["r0-n0"]] == -2
    assert st.check_consistency() == []
    assert st.place(gang(count=1)).pods[0].node != "r0-n0"


def test_reservation_hides_capacity_until_released_or_expired():
    clock = FakeClock()
    st = ClusterState(small_cluster(), reservation_ttl_s=30, clock=clock)
    p = st.place(gang(count=4), reserve=True, key="ns/g")
    assert p.placed and st.reservation("ns/g") is not None
    assert st.stats()["reserved_gpus"] == 32
    assert st.snapshot().free_gpus.sum() == 64 - 32
    # the snapshot excluding the gang's own reservation sees everything
    assert st.snapshot(exclude="ns/g").free_gpus.sum() == 64
    assert st.check_consistency() == []
    clock.t += 20
    assert st.refresh("ns/g")
    clock.t += 20  # 40 s after creation but only 20 after the refresh
    assert st.expire() == []
    clock.t += 11
    v = st.version
    assert st.expire() == ["ns/g"]
    assert st.version > v
    assert st.reservation("ns/g") is None and st.snapshot().free_gpus.sum() == 64
    assert st.release("ns/g") is False


def test_a_second_gang_avoids_the_first_gangs_reservation():
    st = ClusterState(small_cluster())
    a = st.place(gang("a", count=4, required="rack"), reserve=True)
    b = st.place(gang("b", count=4, required="rack"), reserve=True)
    assert a.placed and b.placed
    assert not set(a.nodes) & set(b.nodes)
    c = st.place(gang("c", count=1))
    assert not c.placed
    st.release("a")
    assert st.place(gang("c", count=4, required="rack")).placed


def test_claims_are_idempotent_follow_the_index_and_bind_converts_the_slot():
    st = ClusterState(small_cluster())
    p = st.place(gang(count=4), reserve=True, key="k")
    s2 = st.claim("k", "pod-2", index=2)
    assert s2.index == 2 and s2.node == p.pods[2].node
    assert st.claim("k", "pod-2", index=0) is s2, "a repeated claim keeps its slot"
    s0 = st.claim("k", "pod-x")
    assert s0.index == 0
    reserved_before = st.stats()["reserved_gpus"]
    st.bind("pod-2", s2.node, gpus=8, cpu=1000, memory=2**30, gang="k")
    assert st.stats()["reserved_gpus"] == reserved_before - 8
    assert st.reservation("k").slot_of("pod-2").bound
    assert st.check_consistency() == []
    # binding the whole gang frees the reservation entirely
    for i, slot in enumerate(st.reservation("k").slots):
        if not slot.bound:
            st.bind(slot.pod_uid or f"new-{i}", slot.node, gpus=8, cpu=1000, memory=2**30, gang="k")
    assert st.reservation("k").complete
    assert st.stats()["reserved_gpus"] == 0 and st.stats()["allocated_gpus"] == 32
    assert st.check_consistency() == []
    assert st.claim("k", "late") is None


def test_bind_into_own_reservation_fits_even_when_the_cluster_is_full():
    st = ClusterState(small_cluster(racks=1, nodes_per_rack=2))
    st.place(gang(count=2), reserve=True, key="k")
    assert st.snapshot().free_gpus.sum() == 0
    slot = st.claim("k", "m0")
    st.bind("m0", slot.node, gpus=8, cpu=1000, memory=2**30, gang="k")
    with pytest.raises(InvalidRequest):  # an outsider cannot take the other reserved slot
        st.bind("x", st.reservation("k").slots[1].node, gpus=8)
    assert st.check_consistency() == []


def test_unclaim_returns_a_slot():
    st = ClusterState(small_cluster())
    st.place(gang(count=2), reserve=True, key="k")
    st.claim("k", "a")
    assert st.unclaim("k", "a") and not st.unclaim("k", "a")
    assert st.claim("k", "b").index == 0


def test_reserve_rejects_bad_input_without_changing_state():
    st = ClusterState(small_cluster())
    g = gang(count=2)
    p = st.place(g)
    v = st.version
    with pytest.raises(InvalidRequest):
        st.reserve("", g, p)
    with pytest.raises(InvalidRequest):
        st.reserve("k", g, st.place(gang(count=100)))  # not placed
    with pytest.raises(InvalidRequest):
        st.reserve("k", gang("other", count=2).__class__("o", (PodSet("other-set", 2, gpus=1),)), p)
    with pytest.raises(InvalidRequest):
        st.place(GangRequest("bad", (PodSet("w", 1, gpus=1),), TopologyConstraint(required="nope")))
    assert st.version == v and st.reservations() == {}


def test_place_restricted_to_offered_nodes():
    st = ClusterState(small_cluster())
    p = st.place(gang(count=2), nodes=["r1-n2", "r1-n3", "r0-n0"])
    assert sorted(p.nodes) in (["r1-n2", "r1-n3"],)


def test_node_upsert_and_removal_rebuild_the_arrays_and_keep_allocations():
    st = ClusterState(small_cluster())
    st.bind("u", "r0-n0", gpus=4)
    v = st.version
    st.upsert_node(NodeSpec("r2-n0", {"block": "b0", "rack": "r2"}, gpus=8))
    assert st.version > v and st.stats()["nodes"] == 9
    st.upsert_node(NodeSpec("r2-n0", {"block": "b0", "rack": "r2"}, gpus=8))
    snap = st.snapshot()
    assert snap.free_gpus[snap.node_index["r0-n0"]] == 4
    assert "r2-n0" in snap.node_index
    assert st.remove_node("r2-n0") and not st.remove_node("r2-n0")
    assert st.stats()["nodes"] == 8
    # the allocation's node disappears; it stops counting but is kept until its pod goes
    st.remove_node("r0-n0")
    assert st.allocation("u") is not None and st.check_consistency() == []
    with pytest.raises(InvalidRequest):
        st.upsert_node(NodeSpec("bad", {"nope": "x"}, gpus=8))
    st.replace_nodes([NodeSpec("only", {}, gpus=4)])
    assert st.node_names() == ["only"]


def test_stats_reports_the_documented_keys():
    st = ClusterState(small_cluster(used=2))
    s = st.stats()
    assert {"nodes", "gpus", "free_gpus", "allocated_gpus", "reserved_gpus", "reservations", "version"} <= set(s)
    assert s["gpus"] == 64 and s["free_gpus"] == 48 and s["base_used_gpus"] == 16


def test_concurrent_binds_never_overcommit():
    st = ClusterState(small_cluster(racks=1, nodes_per_rack=1))
    ok = []

    def worker(k):
        try:
            st.bind(f"u{k}", "r0-n0", gpus=1)
            ok.append(k)
        except InvalidRequest:
            pass

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) == 8
    assert st.check_consistency() == []


# ---------------------------------------------------------------------- journal
def test_journal_restores_every_acknowledged_bind_after_a_restart(tmp_path):
    st = ClusterState(small_cluster(), journal_dir=tmp_path)
    for k in range(5):
        st.bind(f"u{k}", f"r0-n{k % 4}", gpus=1, cpu=500, memory=2**20, gang="ns/g", namespace="ns", name=f"p{k}")
    st.unbind("u3")
    st.bind_many([BindRecord("m0", "r1-n0", 8), BindRecord("m1", "r1-n1", 8)])
    before = st.snapshot()
    del st  # "kill": no close(), the file handle is simply dropped
    st2 = ClusterState(small_cluster(), journal_dir=tmp_path)
    assert set(st2.allocations()) == {"u0", "u1", "u2", "u4", "m0", "m1"}
    assert st2.allocation("u4").name == "p4" and st2.allocation("u4").gang == "ns/g"
    after = st2.snapshot()
    assert np.array_equal(before.free_gpus, after.free_gpus)
    assert np.array_equal(before.free_cpu, after.free_cpu)
    # compacted on start: one bind line per live allocation
    lines = (tmp_path / JOURNAL_NAME).read_text().splitlines()[1:]  # after the format header
    assert len(lines) == 6 and all(json.loads(x.split(" ", 2)[2])["op"] == "bind" for x in lines)
    # no double booking: the restored node is full
    with pytest.raises(InvalidRequest):
        st2.bind("new", "r1-n0", gpus=1)
    st2.close()


def test_journal_ignores_a_torn_last_line(tmp_path):
    st = ClusterState(small_cluster(), journal_dir=tmp_path)
    st.bind("u0", "r0-n0", gpus=2)
    st.close()
    with open(tmp_path / JOURNAL_NAME, "a") as f:
        f.write('{"op":"bind","uid":"u1","node":"r0-n')  # crash mid-write
    st2 = ClusterState(small_cluster(), journal_dir=tmp_path)
    assert set(st2.allocations()) == {"u0"}
    st2.bind("u2", "r0-n1", gpus=1)
    st2.close()
    st3 = ClusterState(small_cluster(), journal_dir=tmp_path)
    assert set(st3.allocations()) == {"u0", "u2"}
    st3.close()


def test_journal_with_a_corrupt_middle_line_is_refused(tmp_path):
    (tmp_path / JOURNAL_NAME).write_text('{"op":"bind","uid":"a","node":"r0-n0","gpus":1}\nGARBAGE\n'
                                         '{"op":"bind","uid":"b","node":"r0-n1","gpus":1}\n')
    with pytest.raises(InvalidFile):
        ClusterState(small_cluster(), journal_dir=tmp_path)


def test_journal_keeps_binds_on_nodes_that_left_the_cluster_file(tmp_path):
    st = ClusterState(small_cluster(racks=2), journal_dir=tmp_path)
    st.bind("u", "r1-n0", gpus=8)
    st.close()
    st2 = ClusterState(small_cluster(racks=1), journal_dir=tmp_path)
    assert st2.allocation("u") is not None and st2.check_consistency() == []
    st2.upsert_node(NodeSpec("r1-n0", {"block": "b0", "rack": "r1"}, gpus=8))
    snap = st2.snapshot()
    assert snap.free_gpus[snap.node_index["r1-n0"]] == 0, "the node comes back already holding the pod"
    st2.close()


def test_shrink_then_extend_replans_part_of_a_gang_without_overlapping_kept_slots():
    st = ClusterState(small_cluster())
    st.place(gang(count=4), reserve=True, key="k")
    for i in range(4):
        st.claim("k", f"m{i}")
    res = st.reservation("k")
    kept_nodes = {res.slot_of("m0").node, res.slot_of("m1").node}
    st.bind("m0", res.slot_of("m0").node, gpus=8, cpu=1000, memory=2**30, gang="k")
    assert st.shrink("k", keep={"m1"}) == 2
    res = st.reservation("k")
    assert {s.pod_uid for s in res.slots} == {"m0", "m1"} and set(res.members) == {"m0", "m1"}
    # the rest, planned on a snapshot that still holds the kept slots
    p = st.place(gang(count=2))
    assert p.placed and not set(p.nodes) & kept_nodes
    assert st.extend("k", p)
    res = st.reservation("k")
    assert len(res.slots) == 4 and len(set(res.nodes)) == 4
    assert [s.index for s in res.slots] == [0, 1, 2, 3]
    assert res.slot_of("m1").node in kept_nodes and res.slot_of("m0").bound
    assert st.check_consistency() == []
    # extending with a placement that no longer fits changes nothing
    full = st.place(gang("x", count=4))
    st.reserve("x", gang("x", count=4), full)
    v = st.version
    assert not st.extend("k", full)
    assert st.version == v and len(st.reservation("k").slots) == 4


def test_split_known_keeps_the_order():
    st = ClusterState(small_cluster())
    assert st.split_known(["r1-n0", "ghost", "r0-n3"]) == (["r1-n0", "r0-n3"], ["ghost"])
    assert st.split_known(["r0-n0"]) == (["r0-n0"], [])


def test_bind_elsewhere_than_the_claimed_slot_consumes_the_slot():
    st = ClusterState(small_cluster())
    p = st.place(gang(count=1), reserve=True, key="k")
    st.claim("k", "m")
    other = next(n for n in st.node_names() if n != p.pods[0].node)
    st.bind("m", other, gpus=8, cpu=1000, memory=2**30, gang="k")
    assert st.reservation("k").complete and st.stats()["reserved_gpus"] == 0
    assert st.check_consistency() == []


def test_replace_nodes_can_change_the_levels():
    st = ClusterState(Cluster((), []))
    st.replace_nodes([NodeSpec("a", {"zone": "z1"}, gpus=8)], levels=["zone"])
    assert st.cluster.levels == ("zone",) and st.stats()["gpus"] == 8
    with pytest.raises(InvalidRequest):
        st.replace_nodes([NodeSpec("a", {"nope": "z1"}, gpus=8)], levels=["zone"])
    assert st.cluster.levels == ("zone",)


def test_cordon_and_capacity_changes_update_in_place_and_leave_old_snapshots_alone():
    st = ClusterState(small_cluster())
    st.bind("u", "r0-n0", gpus=3, cpu=1000)
    before = st.snapshot()
    spec = st.node_spec("r0-n0")
    from dataclasses import replace
    st.upsert_node(replace(spec, schedulable=False, gpus=4, cpu=32_000))
    assert not st._dirty, "no rebuild for a change that keeps the node's place"
    after = st.snapshot()
    i = after.node_index["r0-n0"]
    assert not after.schedulable[i] and after.cap_gpus[i] == 4 and after.free_gpus[i] == 1
    assert after.free_cpu[i] == 31_000
    assert before.cap_gpus[i] == 8 and before.free_gpus[i] == 5 and before.schedulable[i]
    assert st.cluster.spec(i).gpus == 4
    assert st.check_consistency() == []
    st.upsert_node(replace(spec, topology={"block": "b0", "rack": "r1"}))  # moves: rebuild
    assert st._dirty
    assert st.snapshot().free_gpus[st.cluster.node_index["r0-n0"]] == 5
    assert st.check_consistency() == []


def test_journal_is_compacted_while_running(tmp_path, monkeypatch):
    import gangplace.engine.live.journal as journal_mod
    monkeypatch.setattr(journal_mod, "COMPACT_MIN_LINES", 10)
    st = ClusterState(small_cluster(), journal_dir=tmp_path)
    for k in range(30):
        st.bind(f"u{k}", "r0-n0", gpus=1)
        st.unbind(f"u{k}")
    st.bind("keep", "r0-n1", gpus=2)
    lines = (tmp_path / JOURNAL_NAME).read_text().splitlines()
    assert len(lines) <= 11, "rewritten once it passed the limit"
    st.close()
    st2 = ClusterState(small_cluster(), journal_dir=tmp_path)
    assert set(st2.allocations()) == {"keep"}
    st2.close()


# ---------------------------------------------------------------------- group commit, unbind_many
class BlockingFsync:
    """The journal's os.fsync, held until released (a slow disk), counted."""

    def __init__(self, monkeypatch):
        import gangplace.engine.live.journal as journal_mod
        self.real = journal_mod.os.fsync
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        monkeypatch.setattr(journal_mod.os, "fsync", self)

    def __call__(self, fd):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(10)
        self.real(fd)


def test_the_state_lock_is_free_while_a_bind_waits_for_its_fsync(tmp_path, monkeypatch):
    st = ClusterState(small_cluster(), journal_dir=tmp_path)
    fsync = BlockingFsync(monkeypatch)
    done = threading.Event()
    t = threading.Thread(target=lambda: (st.bind("slow", "r0-n0", gpus=8), done.set()))
    t.start()
    assert fsync.entered.wait(10)
    # the bind is applied and written, not acknowledged; everyone else goes on meanwhile
    assert not done.is_set() and st.allocation("slow") is not None and not st.is_durable()
    assert st.lock.acquire(timeout=2), "the state lock is held across the fsync"
    st.lock.release()
    seq = st.bind_many([BindRecord("fast", "r0-n1", 8)], wait=False)
    with pytest.raises(InvalidRequest):  # the undurable bind already holds its capacity
        st.bind_many([BindRecord("other", "r0-n0", 1)], wait=False)
    fsync.release.set()
    t.join(10)
    assert done.is_set()
    st.wait_durable(seq)
    assert st.is_durable() and st.check_consistency() == []
    st.close()
    assert set(ClusterState(small_cluster(), journal_dir=tmp_path).allocations()) == {"slow", "fast"}


def test_a_repeated_bind_waits_for_the_first_ones_fsync(tmp_path):
    st = ClusterState(small_cluster(), journal_dir=tmp_path)
    rec = BindRecord("u", "r0-n0", 4)
    seq = st.bind_many([rec], wait=False)
    assert seq > 0 and not st.is_durable(seq)
    v = st.version
    assert st.bind_many([rec]) == seq  # a no-op in memory ...
    assert st.version == v and st.is_durable(seq), "... acknowledged only once the first line is on disk"
    st.close()


def test_unbind_many_writes_one_batch_and_answers_per_pod(tmp_path):
    st = ClusterState(small_cluster(), journal_dir=tmp_path)
    st.bind_many([BindRecord(f"u{k}", f"r0-n{k}", 8) for k in range(4)])
    j = st._journal
    written, lines, v = j.written, j.lines, st.version
    assert st.unbind_many(["u0", "nobody", "u2", "u0", "u3"]) == [True, False, True, False, True]
    assert j.written == written + 1 and j.lines == lines + 3, "one journal write for the whole batch"
    assert st.version == v + 1 and st.is_durable()
    assert set(st.allocations()) == {"u1"}
    assert st.unbind_many(["nobody"]) == [False] and st.version == v + 1 and j.written == written + 1
    assert st.unbind_many([]) == []
    # all or none: one bad UID and nothing is unbound
    with pytest.raises(InvalidRequest) as e:
        st.unbind_many(["u1", ""])
    assert e.value.field == "pod_uids[1]" and set(st.allocations()) == {"u1"}
    assert st.check_consistency() == []
    st.close()
    assert set(ClusterState(small_cluster(), journal_dir=tmp_path).allocations()) == {"u1"}


def test_unbind_many_without_a_journal():
    st = ClusterState(small_cluster())
    st.bind("a", "r0-n0", gpus=8)
    assert st.unbind_many(["a", "b"]) == [True, False]
    assert st.snapshot().free_gpus.sum() == 64 and st.is_durable()


def test_concurrent_binds_and_unbinds_with_compaction_keep_the_journal_equal_to_the_state(tmp_path, monkeypatch):
    import gangplace.engine.live.journal as journal_mod
    monkeypatch.setattr(journal_mod, "COMPACT_MIN_LINES", 20)
    st = ClusterState(small_cluster(), journal_dir=tmp_path)
    errors = []

    def worker(w):
        try:
            for k in range(40):
                uid = f"w{w}-{k}"
                st.bind_many([BindRecord(uid, f"r{w % 2}-n{w % 4}", 0, cpu=100)])
                if k % 3:
                    assert st.unbind_many([uid]) == [True]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert st._journal.fsyncs <= 6 * 40 + 6 * 26, "at most one fsync per acknowledged change"
    live = st.allocations()
    assert len(live) == 6 * 14 and st.is_durable() and st.check_consistency() == []
    del st  # a crash after the acknowledgements: nothing closed
    assert ClusterState(small_cluster(), journal_dir=tmp_path).allocations() == live


def test_try_snapshot_never_blocks_and_declines_when_it_would_be_slow():
    st = ClusterState(small_cluster())
    assert st.try_snapshot().free_gpus.sum() == st.snapshot().free_gpus.sum()
    with lock_held_elsewhere(st.lock):
        assert st.try_snapshot() is None  # busy lock: answers at once instead of waiting
    gang = GangRequest("g", (PodSet("w", 2, gpus=8),))
    st.place(gang, placer="heuristic", reserve=True)
    assert st.try_snapshot(max_slots=1) is None  # too many reserved slots to subtract on the loop
    assert st.try_snapshot(max_slots=2).free_gpus.sum() == st.snapshot().free_gpus.sum()


def test_a_bind_records_when_the_pod_started_and_the_live_cluster_ages_its_node():
    import time as _time
    state = ClusterState(build_cluster({"b0": {"r0": [0, 0]}}))
    node = state.node_names()[1]
    t0 = _time.time()
    state.bind("p1", node, gpus=2)
    rec = state.allocation("p1")
    assert t0 <= rec.started <= _time.time()
    assert state.cluster.oldest_start.tolist() == [float("inf"), rec.started]
    state.bind("p1", node, gpus=2)  # a repeat keeps the first start
    assert state.allocation("p1").started == rec.started
    state.unbind("p1")
    assert state.cluster.oldest_start.tolist() == [float("inf"), float("inf")]

"""Attacks from the reliability review (issue "Reliability under attack"), re-run as tests.

Each test is named after the attack and asserts the contract's answer (docs/reliability.md): a
clean 4xx / an answer with a reason / INVALID_ARGUMENT, quickly, never a 5xx, an INTERNAL or a
stalled event loop, and no state change.
"""
from __future__ import annotations

import http.client
import threading
import time

import orjson
import pytest

from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.synthetic import generate
from gangplace.service.client import GangplaceClient
from gangplace.service.config import ServeConfig
from gangplace.service.testing import http_get, running_service


@pytest.fixture(scope="module")
def svc():
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic", log_level="error")
    with running_service(cfg, ClusterState(generate("dgx-h100", gpus=128, fill=0.5, seed=3))) as s:
        yield s


def _pod(memory: str) -> dict:
    return {"metadata": {"name": "q", "namespace": "default", "uid": f"uid-{memory[:12]}",
                         "labels": {"gangplace.dev/gang": "q", "gangplace.dev/size": "2"}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "8",
                                                                               "memory": memory}}}]}}


def _post(port: int, verb: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", f"/{verb}", body=orjson.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, orjson.loads(r.read())
    finally:
        conn.close()


def _healthz_while(port: int, fn) -> tuple[object, float]:
    """Run ``fn`` while polling /healthz; return its result and the slowest /healthz answer (s)."""
    worst, done = 0.0, threading.Event()

    def poll():
        nonlocal worst
        while not done.is_set():
            t0 = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.01)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        result = fn()
    finally:
        done.set()
        t.join(30)
    return result, worst


@pytest.mark.parametrize("memory", ["1e999999", "1e1000000", "1" * 60 + "Ei", "9" * 5000],
                         ids=["a million-digit memory request (80 s on the event loop before)",
                              "a memory exponent past the decimal context (HTTP 500 before)",
                              "sixty digits with the largest suffix", "a 5,000-digit memory request"])
@pytest.mark.parametrize("verb", ["filter", "prioritize", "preempt"])
def test_attack_6_a_huge_memory_quantity_is_answered_quickly_with_a_reason(svc, verb, memory):
    names = svc.state.node_names()[:8]
    body = {"Pod": _pod(memory), "NodeNames": names, "Nodes": None}
    if verb == "preempt":
        body = {"Pod": _pod(memory), "NodeNameToVictims": None, "NodeNameToMetaVictims": {}}
    before = svc.state.stats()["version"]
    (status, out), worst = _healthz_while(svc.http_port, lambda: _post(svc.http_port, verb, body))
    assert status == 200, out
    assert worst < 2.0, f"/healthz waited {worst:.1f} s behind the request"
    if verb == "filter":
        reasons = set(out["FailedAndUnresolvableNodes"].values())
        assert set(out["FailedAndUnresolvableNodes"]) == set(names) and len(reasons) == 1, out
        assert "memory" in reasons.pop()
    assert svc.state.stats()["version"] == before


def test_attack_6_over_grpc_the_extender_verb_answers_without_internal(svc):
    with GangplaceClient(f"127.0.0.1:{svc.grpc_port}", timeout_s=30) as c:
        status, out = c.extender("filter", {"Pod": _pod("1e1000000"), "NodeNames": svc.state.node_names()[:4],
                                            "Nodes": None})
    assert status == 200 and all("memory" in r for r in out["FailedAndUnresolvableNodes"].values()), out


# ---------------------------------------------------------------------- attack 1: double-booking
def _tight_cluster():
    from gangplace.engine import Cluster, NodeSpec
    nodes = [NodeSpec(name=f"n{k}", topology={"block": "b0", "rack": "r0"}, gpus=8, cpu=64_000,
                      memory=512 * 2**30, pods=110) for k in range(4)]
    return Cluster(["block", "rack"], nodes)


def _two_pod_gang(name="g"):
    from gangplace.engine import GangRequest, PodSet
    return GangRequest(name, (PodSet("workers", 2, gpus=8),))


def test_attack_1_two_binds_in_one_batch_cannot_share_one_reserved_slot():
    from gangplace.engine import InvalidRequest
    from gangplace.engine.live.state import BindRecord
    st = ClusterState(_tight_cluster())
    st.place(_two_pod_gang(), reserve=True, key="g")
    node = st.reservation("g").slots[0].node
    with pytest.raises(InvalidRequest, match="GPUs"):
        st.bind_many([BindRecord("x", node, 8, gang="g"), BindRecord("y", node, 8, gang="g")])
    assert st.allocations() == {} and st.check_consistency() == []
    snap = st.cluster
    assert snap.free_gpus[snap.node_index[node]] == 8


def test_attack_1_over_grpc_bindpods_cannot_double_book_a_reserved_node():
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic", log_level="error")
    from gangplace.engine import InvalidRequest
    with running_service(cfg, ClusterState(_tight_cluster())) as s, \
            GangplaceClient(f"127.0.0.1:{s.grpc_port}", timeout_s=30) as c:
        assert c.place(_two_pod_gang(), reserve=True).placed
        node = s.state.reservation("g").slots[0].node
        from gangplace.service import gangplace_pb2 as pb
        with pytest.raises(InvalidRequest, match="GPUs"):
            c.bind_many([pb.PodBinding(pod="x", node=node, gpus=8, gang="g"),
                         pb.PodBinding(pod="y", node=node, gpus=8, gang="g")])
        live = s.state.cluster
        assert live.free_gpus[live.node_index[node]] == 8 and s.state.check_consistency() == []


# ---------------------------------------------------------------------- attack 2: a second server
def test_attack_2_a_second_server_on_the_same_state_dir_refuses_and_loses_no_bind(tmp_path):
    from gangplace.service.config import ClusterSource
    from gangplace.service.state_lock import StateDirInUse
    from gangplace.service.testing import ServiceThread
    cfg = ServeConfig(cluster=ClusterSource(synthetic="dgx-h100", gpus=64, fill=0.0), state_dir=str(tmp_path),
                      grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic", log_level="error")
    with running_service(cfg) as first:
        journal = first.state.journal_path
        inode = journal.stat().st_ino
        second = ServiceThread(cfg)
        with pytest.raises(StateDirInUse, match="in use by another gangplace server"):
            second.start()
        second.loop.call_soon_threadsafe(second.loop.stop)
        assert journal.stat().st_ino == inode, "the refused server must not compact (replace) the journal"
        node = first.state.node_names()[0]
        first.state.bind("after-second", node, gpus=8)  # acknowledged after the second's attempt
    with running_service(cfg) as again:
        assert again.state.allocation("after-second") is not None


# ---------------------------------------------------------------------- attack 9: reserve twice
def test_attack_9_reserving_the_same_gang_twice_on_a_tight_cluster_keeps_its_slots():
    from gangplace.engine import Cluster, GangRequest, NodeSpec, PodSet
    nodes = [NodeSpec(name=f"n{k}", topology={"block": "b0", "rack": "r0"}, gpus=8) for k in range(2)]
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic", log_level="error")
    with running_service(cfg, ClusterState(Cluster(["block", "rack"], nodes))) as s, \
            GangplaceClient(f"127.0.0.1:{s.grpc_port}", timeout_s=30) as c:
        gang = GangRequest("g", (PodSet("workers", 2, gpus=8),))
        first = c.place(gang, reserve=True, reservation_ttl_s=5)
        expires = s.state.reservation("g").expires_at
        time.sleep(0.05)
        again = c.place(gang, reserve=True, reservation_ttl_s=5)
        assert first.placed and again.placed, again.reason
        assert [p.node for p in again.pods] == [p.node for p in first.pods]
        assert s.state.reservation("g").expires_at > expires, "the TTL is refreshed"
        assert s.state.check_consistency() == []


def test_attack_9_reserving_the_same_gang_twice_on_a_roomy_cluster_does_not_move_it():
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic", log_level="error")
    with running_service(cfg, ClusterState(generate("dgx-h100", gpus=256, fill=0.0, seed=1))) as s, \
            GangplaceClient(f"127.0.0.1:{s.grpc_port}", timeout_s=30) as c:
        from gangplace.engine import GangRequest, PodSet
        gang = GangRequest("g", (PodSet("workers", 4, gpus=8),))
        first = [p.node for p in c.place(gang, reserve=True).pods]
        assert [p.node for p in c.place(gang, reserve=True).pods] == first
        bigger = GangRequest("g", (PodSet("workers", 6, gpus=8),))  # a changed request is planned again
        replanned = c.place(bigger, reserve=True)
        assert replanned.placed and len(replanned.pods) == 6
        assert len(s.state.reservation("g").slots) == 6 and s.state.stats()["reserved_gpus"] == 48


# ---------------------------------------------------------------------- attack 3: journal damage
def _journal_with_two_binds(tmp_path):
    st = ClusterState(_tight_cluster(), journal_dir=tmp_path)
    st.bind("a", "n0", gpus=8)
    st.bind("b", "n1", gpus=8)
    st.unbind("b")
    st.close()
    return st.journal_path


@pytest.mark.parametrize("edit", [(b'"gpus":8', b'"gpus":0'), (b'"uid":"b"}', b'"uid":"c"}')],
                         ids=["a bind's gpus 8 flipped to 0 (a second 8-GPU bind then fit)",
                              "a flipped uid in an unbind line (resurrected one pod)"])
def test_attack_3_a_flipped_value_in_the_journal_is_refused_at_start_naming_the_line(tmp_path, edit):
    from gangplace.engine.model.errors import InvalidFile
    path = _journal_with_two_binds(tmp_path)
    data = path.read_bytes()
    assert data.count(edit[0]) >= 1
    path.write_bytes(data.replace(edit[0], edit[1], 1))
    line = data[:data.index(edit[0])].count(b"\n") + 1
    with pytest.raises(InvalidFile, match=f"line {line} is damaged: checksum mismatch"):
        ClusterState(_tight_cluster(), journal_dir=tmp_path)


@pytest.mark.parametrize("value", ["1e400", str(2**63), "-1", "true"])
def test_attack_11_an_out_of_range_journal_value_is_refused_without_a_traceback(tmp_path, value):
    from gangplace.engine.model.errors import InvalidFile
    (tmp_path / "gangplace-journal.jsonl").write_text(
        '{"op":"bind","uid":"a","node":"n0","gpus":%s}\n' % value)  # a version-1 file: no checksum to fail first
    with pytest.raises(InvalidFile, match="line 1 is damaged: 'gpus' must be an integer"):
        ClusterState(_tight_cluster(), journal_dir=tmp_path)


def test_attack_3_damage_in_the_acknowledged_last_line_is_refused_not_dropped_as_torn(tmp_path):
    from gangplace.engine.model.errors import InvalidFile
    path = _journal_with_two_binds(tmp_path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # inside the last, newline-terminated (so acknowledged) line
    path.write_bytes(bytes(data))
    last = data.count(b"\n")
    with pytest.raises(InvalidFile, match=f"line {last} is damaged"):
        ClusterState(_tight_cluster(), journal_dir=tmp_path)


# ---------------------------------------------------------------------- attack 4: node changes
def test_attack_4_node_changes_are_journaled_and_survive_a_restart(tmp_path):
    from gangplace.engine import NodeSpec
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic", log_level="error")
    with running_service(cfg, ClusterState(_tight_cluster(), journal_dir=tmp_path)) as s, \
            GangplaceClient(f"127.0.0.1:{s.grpc_port}", timeout_s=30) as c:
        n0, n1 = s.state.node_spec("n0"), s.state.node_spec("n1")
        c.upsert_nodes([NodeSpec("n0", n0.topology, gpus=8, schedulable=False, cpu=n0.cpu, memory=n0.memory,
                                 pods=n0.pods),
                        NodeSpec("n1", n1.topology, gpus=8, gpus_used=6, cpu=n1.cpu, memory=n1.memory, pods=n1.pods)])
        assert c.remove_nodes(["n3"]) == 1
        acked = {n: s.state.node_spec(n) for n in s.state.node_names()}
    st = ClusterState(_tight_cluster(), journal_dir=tmp_path)
    assert {n: st.node_spec(n) for n in st.node_names()} == acked
    assert st.node_spec("n0").schedulable is False and st.node_spec("n1").gpus_used == 6
    assert not st.has_node("n3") and st.check_consistency() == []


# ---------------------------------------------------------------------- attacks 5, 8, 11: journal errors
class DiskFaults:
    """Faults of the journal's file system, switched on and off by a test: ``dup`` (EMFILE),
    opening a new file (``open_errno``), writing to an open one (``write_errno``)."""

    def __init__(self, monkeypatch):
        import builtins
        import errno as errno_mod
        import os as os_mod
        import types

        import gangplace.engine.live.journal as journal_mod
        self.errno = errno_mod
        self.dup_errno = self.open_errno = self.write_errno = None
        faults = self

        class File:
            def __init__(self, f):
                self._f = f

            def write(self, text):
                if faults.write_errno is not None:
                    raise OSError(faults.write_errno, os_mod.strerror(faults.write_errno))
                return self._f.write(text)

            def __getattr__(self, name):
                return getattr(self._f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._f.close()

        def fake_open(path, *args, **kwargs):
            if faults.open_errno is not None:
                raise OSError(faults.open_errno, os_mod.strerror(faults.open_errno), str(path))
            return File(builtins.open(path, *args, **kwargs))

        def fake_dup(fd):
            if faults.dup_errno is not None:
                raise OSError(faults.dup_errno, os_mod.strerror(faults.dup_errno))
            return os_mod.dup(fd)

        fake_os = types.SimpleNamespace(**{k: getattr(os_mod, k) for k in dir(os_mod) if not k.startswith("__")})
        fake_os.dup = fake_dup
        monkeypatch.setattr(journal_mod, "os", fake_os)
        monkeypatch.setattr(journal_mod, "open", fake_open, raising=False)


_get = http_get


def _wait_ready(port: int, timeout_s: float = 10.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = _get(port, "/readyz")
        if status == 200 or time.monotonic() > deadline:
            return status, body
        time.sleep(0.1)


@pytest.mark.parametrize("fault", ["dup EMFILE", "write ENOSPC", "write EROFS"])
def test_attack_5_8_11_a_journal_error_changes_nothing_turns_readyz_503_and_recovers(tmp_path, monkeypatch, fault):
    import grpc as grpc_mod
    from gangplace.service import gangplace_pb2 as pb
    faults = DiskFaults(monkeypatch)
    what, name = fault.split()
    code = getattr(faults.errno, name)
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic", log_level="error")
    t_stop = None
    with running_service(cfg, ClusterState(_tight_cluster(), journal_dir=tmp_path)) as s:
        channel = grpc_mod.insecure_channel(f"127.0.0.1:{s.grpc_port}")
        stub = __import__("gangplace.service.gangplace_pb2_grpc", fromlist=["x"]).GangplaceStub(channel)
        bind = pb.BindPodsRequest(pods=[pb.PodBinding(pod="p1", node="n0", gpus=8)])
        stub.BindPods(pb.BindPodsRequest(pods=[pb.PodBinding(pod="p0", node="n1", gpus=8)]), timeout=10)
        setattr(faults, f"{what}_errno", code)
        t0 = time.monotonic()
        with pytest.raises(grpc_mod.RpcError) as err:
            stub.BindPods(bind, timeout=10)
        expected = "UNAVAILABLE" if name == "EROFS" else "RESOURCE_EXHAUSTED"
        assert err.value.code().name == expected, err.value.details()
        assert time.monotonic() - t0 < 5
        if what == "write":  # the write failed: nothing was applied
            assert s.state.allocation("p1") is None
        status, body = _get(s.http_port, "/readyz")
        assert status == 503 and "journal" in body and faults.errno.errorcode[code] != "", body
        snap = stub.GetSnapshot(pb.SnapshotRequest(), timeout=10)  # reads keep working
        assert snap.node_count == 4
        setattr(faults, f"{what}_errno", None)  # the cause goes away
        assert _wait_ready(s.http_port) == (200, "ready\n")
        stub.BindPods(bind, timeout=10)  # the retry is acknowledged
        channel.close()
        t_stop = time.monotonic()
    assert time.monotonic() - t_stop < 10, "stopping (SIGTERM) must not hang on the journal"
    st = ClusterState(_tight_cluster(), journal_dir=tmp_path)
    assert set(st.allocations()) == {"p0", "p1"} and st.check_consistency() == []


def test_attack_8_a_state_dir_that_turns_read_only_before_a_compaction_acknowledges_only_what_is_durable(
        tmp_path, monkeypatch):
    import gangplace.engine.live.journal as journal_mod
    from gangplace.engine.live.journal import JournalError
    monkeypatch.setattr(journal_mod, "COMPACT_MIN_LINES", 4)
    faults = DiskFaults(monkeypatch)
    st = ClusterState(_tight_cluster(), journal_dir=tmp_path)
    faults.open_errno = faults.errno.EACCES  # no new file in the directory: compaction cannot run
    for k in range(6):  # the compactions due after these changes fail; each change is still durable
        st.bind(f"t{k}", "n3", gpus=1)
        st.unbind(f"t{k}")
        st.bind(f"p{k}", f"n{k % 3}", gpus=1)
    assert "Permission denied" in st.journal_problem()
    faults.write_errno = faults.errno.EROFS  # and now the file itself cannot be written
    with pytest.raises(JournalError):
        st.bind("late", "n0", gpus=1)
    assert st.allocation("late") is None and st.journal_failed()
    assert not st.recover_journal()
    faults.open_errno = faults.write_errno = None
    assert st.recover_journal() and st.journal_problem() is None
    st.bind("late", "n0", gpus=1)
    st.close()
    again = ClusterState(_tight_cluster(), journal_dir=tmp_path)
    assert set(again.allocations()) == {f"p{k}" for k in range(6)} | {"late"}


def test_attack_11_a_full_disk_at_start_says_compaction_needs_room_for_a_second_copy(tmp_path, monkeypatch):
    from gangplace.engine.model.errors import InvalidFile
    _journal_with_two_binds(tmp_path)
    faults = DiskFaults(monkeypatch)
    faults.open_errno = faults.errno.ENOSPC
    with pytest.raises(InvalidFile, match=r"disk is full.*second copy of the journal \(about [\d,]+ bytes\)"):
        ClusterState(_tight_cluster(), journal_dir=tmp_path)


# ---------------------------------------------------------------------- attack 7: bounded work per request
def _stub(port: int):
    import grpc as grpc_mod

    from gangplace.service import gangplace_pb2_grpc as pb_grpc
    channel = grpc_mod.insecure_channel(f"127.0.0.1:{port}")
    return channel, pb_grpc.GangplaceStub(channel)


def _grpc_error(fn):
    import grpc as grpc_mod
    with pytest.raises(grpc_mod.RpcError) as err:
        fn()
    return err.value.code().name, err.value.details()


@pytest.mark.parametrize("sets", [4096, 65536], ids=["4,096 sets pinned both engine threads for minutes",
                                                    "65,536 sets stalled the event loop 23 s"])
def test_attack_7_a_place_with_thousands_of_one_pod_sets_is_refused_at_once_naming_the_limit(svc, sets):
    from gangplace.service import gangplace_pb2 as pb
    channel, stub = _stub(svc.grpc_port)
    gang = pb.Gang(name="wide", pod_sets=[pb.PodSet(name=f"s{i}", count=1, gpus=1) for i in range(sets)])
    t0 = time.perf_counter()
    (code, detail), worst = _healthz_while(svc.http_port, lambda: _grpc_error(
        lambda: stub.Place(pb.PlaceRequest(gang=gang, reserve=True), timeout=30)))
    assert code == "INVALID_ARGUMENT" and f"pod_sets: {sets} pod sets" in detail and "limits.max_pod_sets" in detail
    assert time.perf_counter() - t0 < 2.0 and worst < 1.0
    stub.GetSnapshot(pb.SnapshotRequest(), timeout=5)  # the engine is free
    channel.close()


@pytest.mark.parametrize("what", ["BindPods", "UnbindPods", "RemoveNodes", "node selector"])
def test_attack_7_oversized_grpc_requests_are_refused_naming_the_limit(svc, what):
    from gangplace.service import gangplace_pb2 as pb
    channel, stub = _stub(svc.grpc_port)
    before = svc.state.version
    if what == "BindPods":
        call = lambda: stub.BindPods(pb.BindPodsRequest(pods=[pb.PodBinding(pod=f"p{i}", node="x", gpus=0)
                                                              for i in range(10_001)]), timeout=30)
        limit = "limits.max_items_per_request"
    elif what == "UnbindPods":
        call = lambda: stub.UnbindPods(pb.UnbindPodsRequest(pods=[f"p{i}" for i in range(10_001)]), timeout=30)
        limit = "limits.max_items_per_request"
    elif what == "RemoveNodes":
        call = lambda: stub.RemoveNodes(pb.RemoveNodesRequest(names=[f"n{i}" for i in range(10_001)]), timeout=30)
        limit = "limits.max_items_per_request"
    else:
        ps = pb.PodSet(name="w", count=1, gpus=1, node_selector={f"k{i}": "v" * 100 for i in range(200)})
        call = lambda: stub.Explain(pb.ExplainRequest(gang=pb.Gang(name="g", pod_sets=[ps])), timeout=30)
        limit = "pod_sets[0].node_selector: "
    code, detail = _grpc_error(call)
    assert code == "INVALID_ARGUMENT" and limit in detail, detail
    assert svc.state.version == before
    channel.close()


def test_attack_7_a_saturated_engine_answers_resource_exhausted_and_readyz_says_so(monkeypatch):
    import dataclasses

    from gangplace.service import gangplace_pb2 as pb
    from gangplace.service.config import LimitsSettings
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic", log_level="error",
                      limits=dataclasses.replace(LimitsSettings(), engine_queue=1))
    state = ClusterState(_tight_cluster())
    real_place, gate = state.place, threading.Event()

    def slow_place(*args, **kwargs):
        gate.wait(10)
        return real_place(*args, **kwargs)
    monkeypatch.setattr(state, "place", slow_place)
    with running_service(cfg, state) as s:
        channel, stub = _stub(s.grpc_port)
        req = pb.PlaceRequest(gang=pb.Gang(name="g", pod_sets=[pb.PodSet(name="w", count=1, gpus=1)]), reserve=True)
        first = stub.Place.future(req, timeout=30)
        deadline = time.monotonic() + 5
        while s.servicer._queued == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        code, detail = _grpc_error(lambda: stub.Place(req, timeout=30))
        assert code == "RESOURCE_EXHAUSTED" and "limits.engine_queue" in detail
        status, body = _get(s.http_port, "/readyz")
        assert status == 503 and "engine saturated" in body
        gate.set()
        assert first.result().placement.placed
        assert _wait_ready(s.http_port) == (200, "ready (ephemeral: binds will not survive a restart)\n")
        channel.close()


def _limited_service(**limits):
    import dataclasses

    from gangplace.service.config import LimitsSettings
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic", log_level="error",
                      limits=dataclasses.replace(LimitsSettings(), **limits))
    return running_service(cfg, ClusterState(_tight_cluster()))


def _closed_by_server(sock, timeout_s: float) -> bool:
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1) == b""
    except (TimeoutError, OSError) as e:
        return not isinstance(e, TimeoutError)


def test_attack_5_a_connection_stalled_in_its_headers_is_closed_after_the_header_timeout():
    import socket
    with _limited_service(http_header_timeout_s=0.5) as s:
        sock = socket.create_connection(("127.0.0.1", s.http_port))
        sock.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Type: appl")  # and nothing more
        t0 = time.monotonic()
        assert _closed_by_server(sock, 5.0)
        assert time.monotonic() - t0 < 3.0
        sock.close()
        assert _get(s.http_port, "/healthz")[0] == 200


def test_attack_5_idle_connections_beyond_the_limit_are_closed_oldest_first():
    import socket
    with _limited_service(http_max_connections=5) as s:
        socks = [socket.create_connection(("127.0.0.1", s.http_port)) for _ in range(20)]
        time.sleep(2.0)
        closed = sum(_closed_by_server(x, 0.2) for x in socks)
        assert closed >= 15, f"only {closed} of 20 idle connections were closed"
        for x in socks:
            x.close()
        assert _get(s.http_port, "/healthz")[0] == 200


# ---------------------------------------------------------------------- attack 10: the pod cache
def test_attack_10_pods_with_2_mib_node_selectors_are_refused_and_the_pod_cache_is_bounded_by_bytes(svc):
    pod = _pod("1Gi")
    pod["spec"]["nodeSelector"] = {f"k{i}": "v" * 1000 for i in range(2048)}  # ~2 MiB
    status, out = _post_raw(svc.http_port, "filter", orjson.dumps({"Pod": pod, "NodeNames": ["x"], "Nodes": None}))
    assert status == 400 and "limits.max_selector_bytes" in out
    from gangplace.service.extender import Extender
    ext = Extender(ClusterState(_tight_cluster()))
    ext.pods.max_bytes = 50_000
    for i in range(500):
        p = _pod("1Gi")
        p["metadata"]["uid"] = f"u{i}"
        p["metadata"]["labels"] = {"pad": "x" * 900}
        ext.parse(p)
    assert 0 < ext.pods.bytes <= 50_000 and len(ext.pods) < 60
    assert ext.pods.bytes == sum(ext.pods._sizes.values())
    conn = http.client.HTTPConnection("127.0.0.1", svc.http_port, timeout=30)
    conn.request("GET", "/metrics")
    assert b"gangplace_pod_cache_bytes" in conn.getresponse().read()
    conn.close()


def _post_raw(port: int, verb: str, raw: bytes) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", f"/{verb}", body=raw, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


# ---------------------------------------------------------------------- also seen
def test_attack_also_duplicate_json_keys_are_refused(svc):
    body = b'{"Pod": %s, "NodeNames": ["a"], "NodeNames": %s, "Nodes": null}' % (
        orjson.dumps(_pod("1Gi")), orjson.dumps(svc.state.node_names()[:2]))
    status, out = _post_raw(svc.http_port, "filter", body)
    assert status == 400 and "duplicate key 'NodeNames'" in out


def test_attack_also_a_rebind_of_a_bound_pod_to_a_second_node_is_refused(svc):
    pod = {"metadata": {"name": "solo", "namespace": "default", "uid": "solo-uid"},
           "spec": {"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "1"}}}]}}
    status, out = _post(svc.http_port, "filter", {"Pod": pod, "NodeNames": svc.state.node_names(), "Nodes": None})
    first = out["NodeNames"][0]  # the served config passes the best-fit node alone
    second = next(n for n in svc.state.node_names() if n != first)
    bind = {"PodName": "solo", "PodNamespace": "default", "PodUID": "solo-uid"}
    assert _post(svc.http_port, "bind", {**bind, "Node": first}) == (200, {"Error": ""})
    status, out = _post(svc.http_port, "bind", {**bind, "Node": second})
    assert status == 200 and "already bound to node" in out["Error"]
    assert svc.state.allocation("solo-uid").node == first
    svc.state.unbind("solo-uid")


def test_attack_11_a_10_mb_gang_label_is_not_logged_in_full():
    import io
    import logging

    from gangplace.service.logs import setup_logging
    stream = io.StringIO()
    names = ("gangplace", "aiohttp.server", "aiohttp.web")
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in map(logging.getLogger, names)]
    setup_logging("info", stream)
    try:
        label = "g" * 10_000_000
        logging.getLogger("gangplace.extender").warning("gang %s did not complete", label, extra={"gang": label})
    finally:
        for lg, (handlers, level, propagate) in zip(map(logging.getLogger, names), saved):
            lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate
    line = stream.getvalue()
    assert len(line) < 10_000 and "more characters" in line
    assert orjson.loads(line)["gang"].startswith("ggg")


def test_attack_11_a_grpc_release_during_the_bind_barrier_answers_the_waiting_member_at_once():
    import concurrent.futures
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic", log_level="error")
    with running_service(cfg, ClusterState(_tight_cluster())) as s, \
            GangplaceClient(f"127.0.0.1:{s.grpc_port}", timeout_s=30) as c:
        names = s.state.node_names()
        pods = []
        for k in range(2):
            pod = _pod("1Gi")
            pod["metadata"].update(name=f"m{k}", uid=f"m{k}-uid")
            status, out = _post(s.http_port, "filter", {"Pod": pod, "NodeNames": names, "Nodes": None})
            assert status == 200 and out["NodeNames"], out
            pods.append((pod, out["NodeNames"][0]))
        (key,) = s.state.reservations()
        pool = concurrent.futures.ThreadPoolExecutor(1)
        t0 = time.monotonic()
        waiting = pool.submit(_post, s.http_port, "bind", {"PodName": "m0", "PodNamespace": "default",
                                                           "PodUID": "m0-uid", "Node": pods[0][1]})
        deadline = time.monotonic() + 5
        while not s.extender.planner.gangs_at_barrier() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert c.release(key)
        status, out = waiting.result(10)
        assert status == 200 and "was released" in out["Error"], out
        assert time.monotonic() - t0 < 5, "answered at once, not after the 25 s bind timeout"
        assert s.state.allocation("m0-uid") is None
        pool.shutdown()


def test_attack_1_over_http_two_members_bound_to_the_gangs_unclaimed_slot_node_are_refused():
    import concurrent.futures
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic", log_level="error")
    with running_service(cfg, ClusterState(_tight_cluster())) as s:
        names = s.state.node_names()
        x, y = _pod("1Gi"), _pod("1Gi")
        x["metadata"].update(name="x", uid="x-uid")
        y["metadata"].update(name="y", uid="y-uid")
        status, out = _post(s.http_port, "filter", {"Pod": x, "NodeNames": names, "Nodes": None})
        assert status == 200 and out["NodeNames"], out
        status, _ = _post(s.http_port, "prioritize", {"Pod": y, "NodeNames": names, "Nodes": None})
        assert status == 200
        (res,) = s.state.reservations().values()
        free_slot = next(sl.node for sl in res.slots if sl.pod_uid is None)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda p: _post(s.http_port, "bind", {
                "PodName": p, "PodNamespace": "default", "PodUID": f"{p}-uid", "Node": free_slot}), ["x", "y"]))
        assert all(status == 200 and "free GPUs" in out["Error"] for status, out in answers), answers
        live = s.state.cluster
        assert live.free_gpus[live.node_index[free_slot]] >= 0
        assert s.state.allocations() == {} and s.state.check_consistency() == []


@pytest.mark.parametrize("fault", ["a failed compaction only", "a failed open only"])
def test_attack_8_a_journal_problem_that_poisoned_nothing_also_recovers(tmp_path, monkeypatch, fault):
    import gangplace.engine.live.journal as journal_mod
    from gangplace.engine.live.journal import JournalError
    monkeypatch.setattr(journal_mod, "COMPACT_MIN_LINES", 4)
    faults = DiskFaults(monkeypatch)
    st = ClusterState(_tight_cluster(), journal_dir=tmp_path)
    faults.open_errno = faults.errno.EACCES
    if fault == "a failed open only":
        st._journal._close()  # the next write must open the file again
        with pytest.raises(JournalError):
            st.bind("p", "n0", gpus=1)
        assert st.allocation("p") is None
    else:
        for k in range(6):
            st.bind(f"t{k}", "n3", gpus=1)
            st.unbind(f"t{k}")
    assert st.journal_problem() is not None and not st.journal_failed()
    faults.open_errno = None
    assert st.recover_journal() and st.journal_problem() is None
    st.bind("after", "n1", gpus=1)
    st.close()
    assert "after" in ClusterState(_tight_cluster(), journal_dir=tmp_path).allocations()


_FULL_DISK_SITECUSTOMIZE = '''
import errno, os
_real_fsync = os.fsync
def _fsync(fd):
    if os.path.exists(os.environ["GANGPLACE_TEST_DISK_FULL"]):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return _real_fsync(fd)
os.fsync = _fsync
'''


def test_attack_11_on_a_full_disk_a_real_server_answers_resource_exhausted_and_sigterm_exits_0(tmp_path, monkeypatch):
    import os
    import urllib.error

    from gangplace.service.client import ServiceError
    from tests.service.test_durable_default import Server
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(_FULL_DISK_SITECUSTOMIZE)
    marker = tmp_path / "disk-full"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "inject"),
                                                                   os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("GANGPLACE_TEST_DISK_FULL", str(marker))
    server = Server("--synthetic", "dgx-h100", "--gpus", "64", "--state-dir", str(tmp_path / "state"))
    try:
        node = None
        with GangplaceClient(f"127.0.0.1:{server.grpc_port}", timeout_s=10) as c:
            node = c.snapshot().nodes[0].name
            c.bind("p0", node, gpus=0)
            marker.write_text("")  # the disk fills up
            with pytest.raises(ServiceError) as err:
                c.bind("p1", node, gpus=0)
            assert err.value.code.name == "RESOURCE_EXHAUSTED" and "disk is full" in err.value.details
        with pytest.raises(urllib.error.HTTPError) as ready:
            server.get("/readyz")
        assert ready.value.code == 503 and "disk is full" in ready.value.read().decode()
    finally:
        t0 = time.monotonic()
        log = server.stop()
    assert server.proc.returncode == 0 and time.monotonic() - t0 < 15, log[-2000:]
    assert "Traceback" not in log

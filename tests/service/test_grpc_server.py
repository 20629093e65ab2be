"""The gangplace.v1 servicer, run for real on 127.0.0.1 port 0 and called through the client
(or the raw stub where the client would hide what is tested)."""
import json
import sys
import threading
from pathlib import Path

import grpc
import orjson
import pytest
from gangplace.engine import GangRequest, NodeSpec, PodSet, TopologyConstraint, place
from gangplace.engine.model.errors import InvalidRequest
from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.synthetic import generate
from gangplace.service import gangplace_pb2 as pb
from gangplace.service import gangplace_pb2_grpc as pb_grpc
from gangplace.service.client import GangplaceClient, ServiceError
from gangplace.service.config import ServeConfig
from gangplace.service.testing import running_service

from tests.conftest import lock_held_elsewhere

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kube-scheduler-extender"  # copied into the repo


def _cfg(**kw) -> ServeConfig:
    return ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", **kw)


@pytest.fixture(scope="module")
def server():
    state = ClusterState(generate("dgx-h100", gpus=256, fill=0.6, seed=1))
    with running_service(_cfg(placer="heuristic"), state) as svc:
        yield svc


@pytest.fixture(scope="module")
def client(server):
    with GangplaceClient(f"127.0.0.1:{server.grpc_port}", timeout_s=30) as c:
        yield c


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    yield pb_grpc.GangplaceStub(channel)
    channel.close()


def gang(name: str, count: int = 4, gpus: int = 8, **topo) -> GangRequest:
    return GangRequest(name, (PodSet("worker", count, gpus=gpus),), TopologyConstraint(**topo))


# ---------------------------------------------------------------------- Place / Release
def test_place_answers_what_the_engine_answers_on_the_same_snapshot(server, client):
    g = gang("same-as-engine", 4, required="block")
    expected = place(server.state.snapshot(), g, "heuristic")
    got = client.place(g, placer="heuristic")
    assert got.placed and got.pods == expected.pods
    assert dict(got.domains_used) == dict(expected.domains_used)
    assert dict(got.stranded_gpus) == dict(expected.stranded_gpus)
    assert got.placer == "heuristic"


def test_place_without_reserve_changes_nothing(server, client):
    before = server.state.version
    assert client.place(gang("no-reserve", 2)).placed
    assert server.state.version == before
    assert client.snapshot(include_nodes=False).reservations == ()


def test_reserve_holds_capacity_until_release(server, client):
    free0 = client.snapshot(include_nodes=False).free_gpus
    p = client.place(gang("held", 4), reserve=True)
    assert p.placed
    snap = client.snapshot(include_nodes=False)
    assert snap.free_gpus == free0 - 32
    (res,) = snap.reservations
    assert res.gang == "held" and [a.node for a in res.pods] == p.nodes and res.expires_in_s > 0
    assert client.release("held") is True
    assert client.snapshot(include_nodes=False).free_gpus == free0
    assert client.release("held") is False


def test_two_reservations_never_share_capacity(server, client):
    free = {n.name: n.gpus - n.gpus_used for n in client.snapshot().nodes}
    a = client.place(gang("share-a", 4, 4), reserve=True)
    b = client.place(gang("share-b", 4, 4), reserve=True)
    try:
        assert a.placed and b.placed
        used: dict[str, int] = {}
        for node in a.nodes + b.nodes:
            used[node] = used.get(node, 0) + 4
        assert all(used[n] <= free[n] for n in used)
    finally:
        client.release("share-a")
        client.release("share-b")


def test_a_gang_that_does_not_fit_is_an_answer_with_a_reason(client):
    p = client.place(gang("too-big", 200, 8))
    assert not p.placed and p.pods == ()
    assert "too-big" in p.reason
    assert p.explanation["pods_requested"] == 200


# ---------------------------------------------------------------------- bad input
def _raw_gang(**kw) -> pb.Gang:
    base = {"name": "bad", "pod_sets": [pb.PodSet(name="w", count=2, gpus=8)]}
    base.update(kw)
    return pb.Gang(**base)


BAD_PLACE_REQUESTS = [
    ("a gang is required", pb.PlaceRequest(), "gang"),
    ("the gang needs a name", pb.PlaceRequest(gang=_raw_gang(name="")), "gang.name"),
    ("a pod set needs at least one pod", pb.PlaceRequest(gang=_raw_gang(pod_sets=[pb.PodSet(count=0)])),
     "pod_sets[0].count"),
    ("a gang needs a pod set", pb.PlaceRequest(gang=_raw_gang(pod_sets=[])), "pod_sets"),
    ("negative CPU is refused", pb.PlaceRequest(gang=_raw_gang(pod_sets=[pb.PodSet(count=1, cpu=-1)])),
     "pod_sets[0].cpu"),
    ("min_count above count is refused",
     pb.PlaceRequest(gang=_raw_gang(pod_sets=[pb.PodSet(count=2, min_count=3)])), "pod_sets[0].min_count"),
    ("an unknown level is refused",
     pb.PlaceRequest(gang=_raw_gang(topology=pb.TopologyConstraint(required="galaxy"))), "topology"),
    ("an unknown placer is refused", pb.PlaceRequest(gang=_raw_gang(), placer="magic"), "placer"),
    ("a negative time limit is refused", pb.PlaceRequest(gang=_raw_gang(), time_limit_ms=-1), "time_limit_ms"),
    ("a time limit beyond the request limit is refused", pb.PlaceRequest(gang=_raw_gang(), time_limit_ms=1e9),
     "time_limit_ms"),
    ("a negative reservation TTL is refused",
     pb.PlaceRequest(gang=_raw_gang(), reserve=True, reservation_ttl_s=-5), "reservation_ttl_s"),
    ("a count between one slice and a multiple of it is refused",
     pb.PlaceRequest(gang=_raw_gang(pod_sets=[pb.PodSet(name="w", count=5, gpus=8)],
                                    topology=pb.TopologyConstraint(slices=[pb.SliceLayer(size=3, level="su")]))),
     "pod_sets[0].count"),
]


@pytest.mark.parametrize("request_msg,field", [(r, f) for _, r, f in BAD_PLACE_REQUESTS],
                         ids=[i for i, _, _ in BAD_PLACE_REQUESTS])
def test_bad_place_input_is_invalid_argument_naming_the_field_and_changes_nothing(server, stub, request_msg, field):
    version = server.state.version
    with pytest.raises(grpc.RpcError) as e:
        stub.Place(request_msg, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in e.value.details()
    assert server.state.version == version
    assert server.state.check_consistency() == []
    stub.Ping(pb.PingRequest(), timeout=10)  # still serving


def test_the_client_turns_invalid_argument_into_invalid_request_with_the_field(client):
    with pytest.raises(InvalidRequest) as e:
        client.place(GangRequest("x", (PodSet("w", 0, gpus=8),)))
    assert e.value.field == "pod_sets[0].count"


# ---------------------------------------------------------------------- explain
def test_explain_says_whether_a_gang_fits_and_why_not(client):
    fits = client.explain(gang("small", 2))
    assert fits.fits and "fits now" in fits.reason
    no = client.explain(gang("huge", 100, 8, required="su"))
    assert not no.fits
    assert "su" in no.reason
    assert no.explanation["max_pods_in_one_domain"]["su"] < 100


# ---------------------------------------------------------------------- cluster updates
def _new_node(name: str, gpus: int = 8) -> NodeSpec:
    return NodeSpec(name=name, topology={"zone": "z9", "block": "b9", "su": "su9"}, gpus=gpus, gpu_type="H100")


def test_upsert_then_remove_a_node(server, client):
    before = client.snapshot(include_nodes=False)
    version = client.upsert_nodes([_new_node("extra-1"), _new_node("extra-2")])
    assert version > before.version
    snap = client.snapshot()
    assert snap.node_count == before.node_count + 2
    assert {"extra-1", "extra-2"} <= {n.name for n in snap.nodes}
    # a gang pinned to the new block lands there
    p = client.place(gang("on-new", 2, required="block"), placer="heuristic")
    assert p.placed
    assert client.remove_nodes(["extra-1", "extra-2", "never-was"]) == 2
    assert client.snapshot(include_nodes=False).node_count == before.node_count


BAD_NODES = [
    ("a node needs a name", pb.Node(gpus=8), "name"),
    ("an unknown level is refused", pb.Node(name="n", gpus=8, topology={"planet": "earth"}), "topology"),
    ("more GPUs used than present is refused", pb.Node(name="n", gpus=8, gpus_used=9), "gpus"),
    ("negative memory is refused", pb.Node(name="n", gpus=8, memory=-1), "memory"),
]


@pytest.mark.parametrize("node,field", [(n, f) for _, n, f in BAD_NODES], ids=[i for i, _, _ in BAD_NODES])
def test_bad_nodes_are_refused_whole(server, stub, node, field):
    version = server.state.version
    n_nodes = len(server.state.node_names())
    ok = pb.Node(name="fine-node", gpus=8, topology={"zone": "z9", "block": "b9", "su": "su9"})
    with pytest.raises(grpc.RpcError) as e:
        stub.UpsertNodes(pb.UpsertNodesRequest(nodes=[ok, node]), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in e.value.details()
    assert server.state.version == version and len(server.state.node_names()) == n_nodes


def test_bind_takes_capacity_and_unbind_gives_it_back(server, client):
    snap = client.snapshot()
    node = next(n for n in snap.nodes if n.gpus - n.gpus_used >= 2)
    free0 = snap.free_gpus
    client.bind("pod-uid-1", node.name, gpus=2, gang="job-x")
    after = client.snapshot()
    assert after.free_gpus == free0 - 2
    assert any(a.gang == "job-x" for n in after.nodes if n.name == node.name for a in n.allocations)
    assert client.unbind(["pod-uid-1", "unknown-uid"]) == 1
    assert client.snapshot(include_nodes=False).free_gpus == free0


def test_an_overcommitting_bind_is_refused_and_binds_nothing(server, client):
    snap = client.snapshot()
    full = next(n for n in snap.nodes if n.gpus - n.gpus_used < 8)
    roomy = next(n for n in snap.nodes if n.gpus - n.gpus_used >= 1)
    version = server.state.version
    with pytest.raises(InvalidRequest) as e:
        client.bind_many([pb.PodBinding(pod="ok-pod", node=roomy.name, gpus=1),
                          pb.PodBinding(pod="too-much", node=full.name, gpus=8)])
    assert e.value.field.startswith("pods[1]")
    assert server.state.version == version
    assert server.state.allocation("ok-pod") is None


def test_bind_to_an_unknown_node_names_it(client):
    with pytest.raises(InvalidRequest) as e:
        client.bind("p", "no-such-node", gpus=1)
    assert e.value.field == "pods[0].node" and "no-such-node" in str(e.value)


def test_snapshot_without_nodes_has_totals_only(server, client):
    s = client.snapshot(include_nodes=False)
    assert s.nodes == () and s.node_count == len(server.state.node_names())
    assert s.levels == ("zone", "block", "su")
    assert s.total_gpus == 256 and 0 <= s.free_gpus <= 256
    assert s.stats["nodes"] == s.node_count


def test_snapshot_nodes_rebuild_an_equivalent_cluster(server, client):
    cluster = client.snapshot().cluster()
    mine = server.state.snapshot()
    assert list(cluster.node_names) == list(mine.node_names)
    assert (cluster.free_gpus == mine.free_gpus).all()


# ---------------------------------------------------------------------- batch and preemption
def test_place_batch_answers_in_request_order(server, client):
    version = server.state.version
    out = client.place_batch([gang("b1", 2), gang("b2", 3), gang("b3", 200)], placer="heuristic")
    assert [p.gang for p in out] == ["b1", "b2", "b3"]
    assert out[0].placed and out[1].placed and not out[2].placed
    assert server.state.version == version  # nothing reserved


def test_place_batch_refuses_duplicate_names(client):
    with pytest.raises(InvalidRequest) as e:
        client.place_batch([gang("dup", 1), gang("dup", 1)])
    assert e.value.field == "gangs[1].name"


def test_place_batch_names_the_bad_gang(client):
    with pytest.raises(InvalidRequest) as e:
        client.place_batch([gang("ok", 1), GangRequest("bad", (PodSet("w", 0, gpus=1),))])
    assert e.value.field == "gangs[1].pod_sets[0].count"


def test_missing_engine_parts_answer_unimplemented(server, client, monkeypatch):
    monkeypatch.setitem(sys.modules, "gangplace.engine.exact.batch", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "gangplace.engine.exact.preempt", None)
    for call in (lambda: client.place_batch([gang("u", 1)]), lambda: client.plan_preemption(gang("u", 1))):
        with pytest.raises(ServiceError) as e:
            call()
        assert e.value.code == grpc.StatusCode.UNIMPLEMENTED
        assert "engine" in e.value.details


def test_plan_preemption_finds_lower_priority_victims_and_changes_nothing(server, client):
    big = GangRequest("needs-room", (PodSet("worker", 24, gpus=8),), TopologyConstraint(required="block"),
                      priority=5)
    assert not client.place(big).placed
    version = server.state.version
    plan = client.plan_preemption(big, placer="heuristic")
    assert plan.feasible and plan.placement is not None and plan.placement.placed
    assert len(plan.placement.pods) == 24
    assert plan.victims and all(v.priority < 5 and v.gpus > 0 and v.nodes for v in plan.victims)
    assert plan.evicted_gpus == sum(v.gpus for v in plan.victims)
    assert plan.cost == sum((v.priority + 1) * v.gpus for v in plan.victims)
    assert server.state.version == version  # a plan, not an eviction


def test_plan_preemption_without_lower_priority_work_is_infeasible(client):
    plan = client.plan_preemption(gang("no-victims", 24, 8, required="block"))  # priority 0: nothing lower
    assert not plan.feasible and plan.victims == () and plan.reason


# ---------------------------------------------------------------------- extender over gRPC
def test_extender_verbs_over_grpc_match_http(server, client):
    import urllib.request
    body = json.loads((FIXTURES / "filter.nodecache-true.request.json").read_text())
    body["NodeNames"] = server.state.node_names()[:16]
    status, out = client.extender("filter", body)
    assert status == 200 and set(out) >= {"NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    req = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/filter", data=orjson.dumps(body),
                                 headers={"Content-Type": "application/json"})
    http_out = json.loads(urllib.request.urlopen(req, timeout=10).read())
    assert http_out == out


def test_extender_bad_body_is_400_and_unknown_verb_is_invalid(client):
    status, out = client.extender("filter", b"not json")
    assert status == 400 and "gangplace" in out["Error"]
    with pytest.raises(InvalidRequest) as e:
        client.extender("schedule", {})
    assert e.value.field == "verb"


# ---------------------------------------------------------------------- health, reflection
def test_health_service_reports_serving(client):
    assert client.health() == "SERVING"
    assert client.health("gangplace.v1.Gangplace") == "SERVING"


def test_reflection_lists_the_services(server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {"gangplace.v1.Gangplace", "grpc.health.v1.Health"} <= services
        fd = db.FindFileContainingSymbol("gangplace.v1.Gangplace")
        assert fd.name == "gangplace/v1/gangplace.proto"


# ---------------------------------------------------------------------- off the loop, limits
class _GatedState:
    """A ClusterState whose place() blocks until the test opens the gate."""

    def __init__(self, state: ClusterState):
        self._state = state
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __getattr__(self, name):
        return getattr(self._state, name)

    def place(self, *a, **kw):
        self.entered.set()
        self.gate.wait(30)
        return self._state.place(*a, **kw)


def test_solver_work_runs_off_the_event_loop():
    state = _GatedState(ClusterState(generate("dgx-h100", gpus=64, fill=0.0)))
    with running_service(_cfg(), state) as svc, GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as c:
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("p", c.place(gang("slow", 1), placer="cpsat")))
        t.start()
        try:
            assert state.entered.wait(30)
            c.ping()  # answered while Place is still blocked inside the engine
            assert c.health() == "SERVING"
            assert "p" not in result
        finally:
            state.gate.set()
            t.join(30)
        assert result["p"].placed


def test_a_proved_heuristic_answer_is_served_on_the_loop_without_the_pool():
    state = _GatedState(ClusterState(generate("dgx-h100", gpus=64, fill=0.0)))
    with running_service(_cfg(), state) as svc, GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as c:
        p = c.place(gang("quick", 4))  # auto: the heuristic's bounds prove it, no solver needed
        assert p.placed and p.optimal and p.placer == "heuristic"
        assert not state.entered.is_set()  # never reached the pool's state.place


def test_place_takes_the_pool_when_the_state_lock_is_busy_and_the_loop_keeps_serving():
    state = _GatedState(ClusterState(generate("dgx-h100", gpus=64, fill=0.0)))
    state.gate.set()  # place() itself does not block; the lock does
    with running_service(_cfg(), state) as svc, GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as c:
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("p", c.place(gang("waits", 2))))
        with lock_held_elsewhere(state.lock):
            t.start()
            assert state.entered.wait(30)  # fell back to the pool instead of blocking the loop
            c.ping()
            assert "p" not in result
        t.join(30)
        assert result["p"].placed


def test_a_request_over_the_time_limit_gets_deadline_exceeded_and_the_server_keeps_serving():
    state = _GatedState(ClusterState(generate("dgx-h100", gpus=64, fill=0.0)))
    with running_service(_cfg(request_timeout_s=0.2), state) as svc, \
            GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as c:
        try:
            with pytest.raises(ServiceError) as e:
                c.place(gang("stuck", 1), placer="cpsat")
            assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            c.ping()
        finally:
            state.gate.set()
        assert b'gangplace_rejections_total{kind="deadline_exceeded"} 1.0' in svc.metrics.expose()


class _BrokenState:
    def __init__(self, state):
        self._state = state

    def __getattr__(self, name):
        return getattr(self._state, name)

    def place(self, *a, **kw):
        raise RuntimeError("boom")

    def try_snapshot(self, *a, **kw):  # the inline path fails the same way
        raise RuntimeError("boom")


def test_an_internal_error_is_reported_and_the_server_keeps_serving():
    state = _BrokenState(ClusterState(generate("dgx-h100", gpus=64, fill=0.0)))
    with running_service(_cfg(), state) as svc, GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as c:
        with pytest.raises(ServiceError) as e:
            c.place(gang("x", 1))
        assert e.value.code == grpc.StatusCode.INTERNAL and "boom" in e.value.details
        c.ping()
        assert c.snapshot(include_nodes=False).node_count == 8


def test_messages_over_the_size_limit_are_refused():
    state = ClusterState(generate("dgx-h100", gpus=64, fill=0.0))
    with running_service(_cfg(grpc_max_message_bytes=4096), state) as svc, \
            GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as c:
        nodes = [NodeSpec(name=f"big-{i}", topology={"zone": "z9", "block": "b9", "su": "su9"}, gpus=8,
                          labels={"k": "v" * 64}) for i in range(100)]
        with pytest.raises(ServiceError) as e:
            c.upsert_nodes(nodes)
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(state.node_names()) == 8


# ---------------------------------------------------------------------- fuzzed input
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_INT32 = st.one_of(st.integers(-3, 70), st.integers(-2**31, 2**31 - 1))
_INT64 = st.one_of(st.integers(-3, 2**40), st.integers(-2**63, 2**63 - 1))
_TEXT = st.sampled_from(["", "zone", "block", "su", "node", "rack", "x/y", "ü", " "])
_POD_SETS = st.lists(st.builds(
    lambda name, count, gpus, cpu, memory, min_count, sel: pb.PodSet(
        name=name, count=count, gpus=gpus, cpu=cpu, memory=memory, node_selector=sel,
        **({} if min_count is None else {"min_count": min_count})),
    _TEXT, _INT32, _INT32, _INT64, _INT64, st.none() | _INT32,
    st.dictionaries(st.sampled_from(["gpu_type", "k"]), st.sampled_from(["H100", "", "A100"]), max_size=2)),
    max_size=3)
_TOPOLOGY = st.builds(lambda r, p, sl: pb.TopologyConstraint(required=r, preferred=p, slices=sl), _TEXT, _TEXT,
                      st.lists(st.builds(lambda s, lv: pb.SliceLayer(size=s, level=lv), _INT32, _TEXT), max_size=2))


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=_TEXT, pod_sets=_POD_SETS, topology=st.none() | _TOPOLOGY, priority=_INT32,
       placer=st.sampled_from(["", "heuristic", "auto", "bogus"]), limit=st.sampled_from([0.0, 5.0, -1.0, float("nan")]))
def test_any_place_request_is_answered_or_refused_never_internal(server, stub, name, pod_sets, topology, priority,
                                                                 placer, limit):
    gang_msg = pb.Gang(name=name, pod_sets=pod_sets, priority=priority)
    if topology is not None:
        gang_msg.topology.CopyFrom(topology)
    version = server.state.version
    try:
        stub.Place(pb.PlaceRequest(gang=gang_msg, placer=placer, time_limit_ms=limit), timeout=30)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
        assert ": " in e.details()  # "field: message"
    assert server.state.version == version


_NODES = st.builds(
    lambda name, topo, gpus, used, cpu, mem, pods, unsched: pb.Node(
        name=name, topology=topo, gpus=gpus, gpus_used=used, unschedulable=unsched,
        **{k: v for k, v in (("cpu", cpu), ("memory", mem), ("pods", pods)) if v is not None}),
    st.sampled_from(["", "fz-1", "fz-2", "z0-b0-su0-n00"]),
    st.dictionaries(st.sampled_from(["zone", "block", "su", "rack"]), st.sampled_from(["z9", "b9", "", "su9"]),
                    max_size=3),
    _INT32, _INT32, st.none() | _INT64, st.none() | _INT64, st.none() | _INT32, st.booleans())


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(nodes=st.lists(_NODES, max_size=3))
def test_any_node_update_is_applied_whole_or_refused_whole(server, stub, nodes):
    before = {n: server.state.node_spec(n) for n in server.state.node_names()}
    try:
        stub.UpsertNodes(pb.UpsertNodesRequest(nodes=nodes), timeout=30)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
        assert {n: server.state.node_spec(n) for n in server.state.node_names()} == before
    else:
        assert {n.name for n in nodes} <= set(server.state.node_names())
    finally:  # put the cluster back for the other tests
        server.state.replace_nodes(before.values())
    assert server.state.check_consistency() == []

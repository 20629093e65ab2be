"""Hostile input on every gRPC method (hypothesis), against a real server on 127.0.0.1.

Every answer is OK or INVALID_ARGUMENT (never INTERNAL, UNKNOWN or a dropped channel). An
INVALID_ARGUMENT changes nothing (state version, stats and nodes compared before and after);
an OK changes only what the call is for, and leaves the per-node accounting exact
(``check_consistency``), the topology well nested and no node overcommitted. Examples are undone
afterwards (reservations released, pods unbound, nodes restored) so they stay independent.
Raw bytes that are not a protobuf message are refused by grpcio itself (UNKNOWN, DecodeError)
before any handler runs.
"""
from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.synthetic import generate
from gangplace.service import gangplace_pb2 as pb
from gangplace.service import gangplace_pb2_grpc as pb_grpc
from gangplace.service.config import ServeConfig
from gangplace.service.testing import running_service

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
OK_CODES = (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)
INT32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, -1, 8, 10**6, 2**31 - 1, -(2**31)]))
INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 2**63 - 1, 2**40]))
DOUBLE = st.one_of(st.floats(), st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf, 1e300, 5e-324, 100.0]))
TEXT = st.one_of(st.text(max_size=20), st.sampled_from(["", " ", "\x00", "💥", "a/b", "../x", "w" * 300]))


@pytest.fixture(scope="module")
def server():
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic",
                      request_timeout_s=20.0, time_limit_ms=50.0, grpc_max_message_bytes=4 * 2**20,
                      log_level="critical")
    state = ClusterState(generate("dgx-h100", gpus=128, fill=0.5, seed=3))
    with running_service(cfg, state) as svc:
        channel = grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}")
        svc.stub = pb_grpc.GangplaceStub(channel)
        svc.channel = channel
        svc.original_specs = [state.node_spec(n) for n in state.node_names()]
        svc.levels = tuple(state.levels)
        yield svc
        channel.close()


def call(server, method: str, request):
    try:
        return grpc.StatusCode.OK, getattr(server.stub, method)(request, timeout=30)
    except grpc.RpcError as e:
        return e.code(), e.details()


def fingerprint(state) -> tuple:
    s = state.stats()
    with state.lock:
        specs = tuple(sorted((n, repr(state.node_spec(n))) for n in state.node_names()))
    return s["version"], s["free_gpus"], s["reserved_gpus"], s["allocations"], s["reservations"], specs


def undo(server) -> None:
    st_ = server.state
    for key in list(st_.reservations()):
        st_.release(key)
    for uid in list(st_.allocations()):
        st_.unbind(uid)
    st_.replace_nodes(server.original_specs)


def check_invariants(state) -> None:
    assert state.check_consistency() == []
    with state.lock:
        snap = state.snapshot()
    # the topology nests: a node's domain at level l+1 has its domain at level l as parent
    for lv in range(1, len(snap.levels)):
        child = snap.node_domain[lv]
        assert np.array_equal(snap.domain_parent[child], snap.node_domain[lv - 1])
    # and each domain is a contiguous node range holding exactly its nodes
    for lv in range(len(snap.levels)):
        for i in range(snap.n_nodes):
            d = snap.node_domain[lv, i]
            assert snap.domain_start[d] <= i < snap.domain_end[d]


# ---------------------------------------------------------------------- strategies
def level_text(levels):
    return st.one_of(st.sampled_from(list(levels) + ["node", "", "galaxy", "ZONE"]), TEXT)


@st.composite
def nearly_valid_gangs(draw, levels=("zone", "block", "su")):
    """A valid gang (it may or may not fit), with at most one field made hostile."""
    g = pb.Gang(name=f"fz-{draw(st.integers(0, 10**6))}",
                pod_sets=[pb.PodSet(name="w", count=draw(st.integers(1, 6)), gpus=draw(st.sampled_from([1, 4, 8])),
                                    cpu=draw(st.sampled_from([0, 1000])), memory=draw(st.sampled_from([0, 2**30])))])
    if draw(st.booleans()):
        g.pod_sets.add(name="leader", count=1, gpus=0, cpu=1000)
    if draw(st.booleans()):
        g.topology.required = draw(st.sampled_from(list(levels)))
    if draw(st.booleans()):
        g.topology.preferred = draw(st.sampled_from(list(levels)))
    spoil = draw(st.integers(0, 9))  # 0-4: one field hostile, else valid
    ps = g.pod_sets[0]
    if spoil == 0:
        ps.count = draw(INT32)
    elif spoil == 1:
        ps.gpus = draw(INT32)
    elif spoil == 2:
        ps.min_count = draw(INT32)
    elif spoil == 3:
        g.topology.slices.add(size=draw(st.one_of(st.integers(-1, 4), INT32)), level=draw(level_text(levels)))
    elif spoil == 4:
        ps.node_selector[draw(st.sampled_from(["gpu_type", "nvidia.com/gpu.product"]))] = draw(TEXT)
    return g


@st.composite
def gangs(draw, levels=("zone", "block", "su")):
    if draw(st.integers(0, 3)) > 0:
        return draw(nearly_valid_gangs(levels))
    sets = []
    for _ in range(draw(st.integers(0, 3))):
        ps = pb.PodSet(name=draw(st.one_of(st.sampled_from(["w", "w", "leader"]), TEXT)),
                       count=draw(st.one_of(st.integers(-2, 6), INT32)),
                       gpus=draw(st.one_of(st.sampled_from([0, 1, 4, 8]), INT32)),
                       cpu=draw(st.one_of(st.just(0), INT64)), memory=draw(st.one_of(st.just(0), INT64)))
        if draw(st.booleans()):
            ps.min_count = draw(st.one_of(st.integers(-1, 6), INT32))
        for k, v in draw(st.dictionaries(st.one_of(st.just("gpu_type"), TEXT), TEXT, max_size=2)).items():
            ps.node_selector[k] = v
        sets.append(ps)
    g = pb.Gang(name=draw(st.one_of(st.just("fz"), TEXT)), pod_sets=sets, priority=draw(INT32))
    if draw(st.booleans()):
        g.topology.required = draw(level_text(levels))
        g.topology.preferred = draw(level_text(levels))
        for _ in range(draw(st.integers(0, 2))):
            g.topology.slices.add(size=draw(st.one_of(st.integers(-1, 4), INT32)), level=draw(level_text(levels)))
    return g


@st.composite
def nodes(draw, levels=("zone", "block", "su"), existing=()):
    if draw(st.booleans()):  # a valid node, new or replacing one, at most one field hostile
        name = draw(st.sampled_from(["fz-a", "fz-b"] + list(existing[:2])))
        z, b = draw(st.sampled_from(["z0", "z1"])), draw(st.sampled_from(["b0", "b7"]))
        n = pb.Node(name=name, gpus=8, gpus_used=draw(st.integers(0, 8)), cpu=64000, memory=2**40)
        n.topology.update({"zone": z, "block": f"{z}-{b}", "su": f"{z}-{b}-su{draw(st.integers(0, 2))}"})
        spoil = draw(st.integers(0, 5))
        if spoil == 0:
            n.gpus_used = draw(INT32)
        elif spoil == 1:
            n.topology[draw(TEXT)] = draw(TEXT)
        elif spoil == 2:
            n.pods = draw(INT32)
        elif spoil == 3:
            n.cpu_used = draw(INT64)
        return n
    name = draw(st.one_of(st.sampled_from(["fz-a", "fz-b"] + list(existing[:2])), TEXT))
    n = pb.Node(name=name, gpus=draw(st.one_of(st.sampled_from([0, 8]), INT32)),
                gpus_used=draw(st.one_of(st.just(0), INT32)), gpu_type=draw(TEXT),
                unschedulable=draw(st.booleans()))
    topo_levels = st.one_of(st.sampled_from(list(levels)), TEXT)
    for k, v in draw(st.dictionaries(topo_levels, st.one_of(st.sampled_from(["z0", "z0-b0", "z9", "x"]), TEXT),
                                     max_size=4)).items():
        n.topology[k] = v
    if draw(st.booleans()):
        n.cpu = draw(INT64)
    n.cpu_used = draw(st.one_of(st.just(0), INT64))
    if draw(st.booleans()):
        n.memory = draw(INT64)
    n.memory_used = draw(st.one_of(st.just(0), INT64))
    if draw(st.booleans()):
        n.pods = draw(INT32)
    n.pods_used = draw(st.one_of(st.just(0), INT32))
    for k, v in draw(st.dictionaries(TEXT, TEXT, max_size=2)).items():
        n.labels[k] = v
    return n


# ---------------------------------------------------------------------- placement methods
@SETTINGS
@given(data=st.data())
def test_place_with_hostile_gangs_and_options(server, data):
    undo(server)
    gang = data.draw(gangs(server.levels))
    reserve = data.draw(st.booleans())
    hostile = data.draw(st.integers(0, 3)) == 0
    req = pb.PlaceRequest(gang=gang, placer=data.draw(st.sampled_from(["", "heuristic", "auto"])),
                          time_limit_ms=data.draw(st.sampled_from([0.0, 5.0])), reserve=reserve,
                          reservation_ttl_s=data.draw(st.sampled_from([0.0, 30.0])))
    if hostile:
        req.placer = data.draw(st.one_of(st.sampled_from(["", "heuristic", "auto", "cpsat"]), TEXT))
        req.time_limit_ms = data.draw(st.one_of(st.sampled_from([0.0, 5.0]), DOUBLE))
        req.reservation_ttl_s = data.draw(st.one_of(st.just(0.0), DOUBLE))
    before = fingerprint(server.state)
    code, out = call(server, "Place", req)
    event(code.name + (f" placed={out.placement.placed} reserve={reserve}" if code == grpc.StatusCode.OK else ""))
    assert code in OK_CODES, out
    after = fingerprint(server.state)
    if code == grpc.StatusCode.OK and out.reserved:
        assert out.placement.placed and after[4] == before[4] + 1
        check_invariants(server.state)
    else:
        assert after == before
    undo(server)


@SETTINGS
@given(data=st.data())
def test_explain_batch_and_preemption_plans_never_change_state(server, data):
    undo(server)
    before = fingerprint(server.state)
    g = data.draw(gangs(server.levels))
    for method, req in (
            ("Explain", pb.ExplainRequest(gang=g)),
            ("PlanPreemption", pb.PlanPreemptionRequest(gang=g, placer=data.draw(st.sampled_from(["", "heuristic",
                                                                                                     "bogus"])))),
            ("PlaceBatch", pb.PlaceBatchRequest(gangs=data.draw(st.lists(gangs(server.levels), max_size=3)),
                                                placer="heuristic",
                                                time_limit_ms=data.draw(st.one_of(st.just(0.0), DOUBLE))))):
        code, out = call(server, method, req)
        event(f"{method} {code.name}")
        assert code in OK_CODES + (grpc.StatusCode.UNIMPLEMENTED,), (method, out)
        assert fingerprint(server.state) == before, method


@SETTINGS
@given(data=st.data())
def test_release_unbind_remove_of_hostile_names_change_nothing(server, data):
    undo(server)
    before = fingerprint(server.state)
    names = data.draw(st.lists(TEXT, max_size=4))
    for method, req in (("Release", pb.ReleaseRequest(gang=names[0] if names else "")),
                        ("UnbindPods", pb.UnbindPodsRequest(pods=names)),
                        ("RemoveNodes", pb.RemoveNodesRequest(names=[n for n in names
                                                                     if n not in server.state.node_names()]))):
        code, out = call(server, method, req)
        assert code in OK_CODES, (method, out)
        if code == grpc.StatusCode.OK and method != "Release":
            assert out.applied == 0
    assert fingerprint(server.state) == before


# ---------------------------------------------------------------------- cluster updates
@SETTINGS
@given(data=st.data())
def test_upserting_hostile_nodes_is_all_or_nothing_and_keeps_the_accounting_exact(server, data):
    undo(server)
    msgs = data.draw(st.lists(nodes(server.levels, tuple(server.state.node_names())), min_size=1, max_size=4))
    before = fingerprint(server.state)
    code, out = call(server, "UpsertNodes", pb.UpsertNodesRequest(nodes=msgs))
    event(code.name)
    assert code in OK_CODES, out
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert fingerprint(server.state) == before, "a refused request changes nothing"
        assert out.startswith("nodes[") or out.startswith("node"), out
    else:
        names = {m.name for m in msgs}
        assert names <= set(server.state.node_names())
        check_invariants(server.state)
    undo(server)


@SETTINGS
@given(data=st.data())
def test_binding_hostile_pods_is_all_or_nothing_and_never_overcommits(server, data):
    undo(server)
    known = server.state.node_names()
    pods = data.draw(st.lists(st.builds(
        pb.PodBinding, pod=st.one_of(st.sampled_from(["p1", "p2", "p1"]), TEXT),
        gang=st.one_of(st.just(""), TEXT), node=st.one_of(st.sampled_from(known), TEXT),
        gpus=st.one_of(st.sampled_from([0, 1, 8, 9]), INT32), cpu=st.one_of(st.just(0), INT64),
        memory=st.one_of(st.just(0), INT64), priority=INT32), min_size=1, max_size=4))
    before = fingerprint(server.state)
    code, out = call(server, "BindPods", pb.BindPodsRequest(pods=pods))
    event(code.name)
    assert code in OK_CODES, out
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert fingerprint(server.state) == before
    else:
        check_invariants(server.state)
        with server.state.lock:
            snap = server.state.snapshot()
        assert (snap.free_gpus >= 0).all() and (snap.free_cpu >= 0).all() and (snap.free_mem >= 0).all()
        assert (snap.free_pods >= 0).all()
    undo(server)


# ---------------------------------------------------------------------- extender over gRPC, raw bytes
@SETTINGS
@given(verb=st.one_of(st.sampled_from(["filter", "prioritize", "bind", "preempt", "FILTER"]), TEXT),
       body=st.one_of(st.binary(max_size=200), st.sampled_from([b"{}", b"[]", b"null", b"[" * 3000])))
def test_extender_verbs_over_grpc_with_hostile_bodies(server, verb, body):
    undo(server)
    before = fingerprint(server.state)
    code, out = call(server, "Extender", pb.ExtenderRequest(verb=verb, args_json=body))
    assert code in OK_CODES, out
    if code == grpc.StatusCode.OK:
        assert out.http_status in (200, 400)
    assert fingerprint(server.state) == before


@pytest.mark.parametrize("method", ["Place", "BindPods", "UpsertNodes", "Extender", "GetSnapshot"])
@pytest.mark.parametrize("raw", [b"\xff" * 16, b"\x0a\xff\xff\xff\xff\x0f", b"\x08" * 3, b"\x12\x05abc"],
                         ids=["garbage", "length past the end", "truncated varints", "truncated field"])
def test_bytes_that_are_not_a_message_are_refused_before_any_handler(server, method, raw):
    before = fingerprint(server.state)
    rpc = server.channel.unary_unary(f"/gangplace.v1.Gangplace/{method}", request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as info:
        rpc(raw, timeout=10)
    # grpcio (aio) answers UNKNOWN "Unexpected DecodeError: Error parsing message" before the
    # servicer runs: not INVALID_ARGUMENT, but no handler, no state change (docs/reliability.md)
    assert info.value.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    assert "pars" in (info.value.details() or "").lower()
    assert fingerprint(server.state) == before
    assert call(server, "Ping", pb.PingRequest())[0] == grpc.StatusCode.OK


def test_a_million_pod_gang_is_an_answer_not_a_stall(server):
    g = pb.Gang(name="huge", pod_sets=[pb.PodSet(name="w", count=10**6, gpus=8)])
    before = fingerprint(server.state)
    code, out = call(server, "Place", pb.PlaceRequest(gang=g, reserve=True))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "65536" in out, out
    assert fingerprint(server.state) == before


def test_a_message_over_the_size_limit_is_refused_and_the_server_keeps_serving(server):
    g = pb.Gang(name="x" * (5 * 2**20), pod_sets=[pb.PodSet(name="w", count=1, gpus=1)])
    code, _ = call(server, "Place", pb.PlaceRequest(gang=g))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert call(server, "Ping", pb.PingRequest())[0] == grpc.StatusCode.OK


def test_duplicate_node_names_in_one_upsert_are_refused_or_collapsed_consistently(server):
    undo(server)
    a = pb.Node(name="fz-dup", gpus=8)
    a.topology.update({"zone": "z0", "block": "z0-b0", "su": "z0-b0-su0"})
    b = pb.Node(name="fz-dup", gpus=4)
    b.topology.update({"zone": "z9", "block": "z9-b0", "su": "z9-b0-su0"})
    before = fingerprint(server.state)
    code, out = call(server, "UpsertNodes", pb.UpsertNodesRequest(nodes=[a, b]))
    assert code in OK_CODES
    if code == grpc.StatusCode.OK:
        assert server.state.node_names().count("fz-dup") == 1
        check_invariants(server.state)
    else:
        assert fingerprint(server.state) == before
    undo(server)


def test_a_rack_label_reused_under_two_blocks_is_two_racks(server):
    # "cycles or mismatches" in topology labels: the same rack value under different blocks
    undo(server)
    msgs = []
    for name, block in (("fz-1", "z0-b0"), ("fz-2", "z0-b1")):
        n = pb.Node(name=name, gpus=8)
        n.topology.update({"zone": "z0", "block": block, "su": "same-su"})
        msgs.append(n)
    code, out = call(server, "UpsertNodes", pb.UpsertNodesRequest(nodes=msgs))
    assert code == grpc.StatusCode.OK, out
    c = server.state.cluster
    i, j = c.node_index["fz-1"], c.node_index["fz-2"]
    su = c.level_index("su")
    assert c.node_domain[su, i] != c.node_domain[su, j], "domains are paths, not bare label values"
    check_invariants(server.state)
    undo(server)

"""PlanMember and Unreserve: the gRPC methods the gangplace-scheduler's plugin calls
(kube/pkg/gangplace). They are translations of the one gang planner, so a gang planned through
PlanMember lands where the extender's filter would put it, and Unreserve gives capacity back."""
from __future__ import annotations

import grpc
import orjson
import pytest
from gangplace.engine.live.state import ClusterState
from gangplace.service import gangplace_pb2 as pb
from gangplace.service import gangplace_pb2_grpc as pb_grpc
from gangplace.service.config import ServeConfig
from gangplace.service.testing import running_service

from tests.service.test_extender import member, synthetic

V = pb.PlanMemberResponse


@pytest.fixture()
def served():
    state = ClusterState(synthetic(blocks=2, racks=4, nodes=4))
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic")
    with running_service(cfg, state) as svc:
        with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as ch:
            yield state, pb_grpc.GangplaceStub(ch)


def plan(stub, pod, nodes=()):
    return stub.PlanMember(pb.PlanMemberRequest(pod_json=orjson.dumps(pod), nodes=list(nodes)), timeout=30)


def test_each_member_of_a_gang_gets_its_own_node_in_one_rack(served):
    state, stub = served
    answers = [plan(stub, member("g", i, 4)) for i in range(4)]
    assert [a.verdict for a in answers] == [V.PLACE] * 4
    assert all(len(a.nodes) == 1 for a in answers) and len({a.nodes[0] for a in answers}) == 4
    assert len({state.node_spec(a.nodes[0]).topology["rack"] for a in answers}) == 1
    assert {(a.gang, a.gang_size, a.min_count) for a in answers} == {("default/g", 4, 4)}
    assert state.reservation("default/g") is not None


def test_asking_again_for_the_same_pod_gives_the_same_node(served):
    _, stub = served
    pod = member("g", 0, 4)
    assert plan(stub, pod).nodes == plan(stub, pod).nodes


def test_a_gang_larger_than_the_cluster_is_never(served):
    _, stub = served
    a = plan(stub, member("huge", 0, 1000))
    assert a.verdict == V.NEVER and a.gang == "default/huge" and "huge" in a.reason and not a.nodes


def test_a_gang_that_does_not_fit_now_is_not_now_and_holds_nothing(served):
    state, stub = served
    for i in range(24):  # 24 of the 32 nodes: no block has room for 16 more
        assert plan(stub, member("big", i, 24)).verdict == V.PLACE
    free = state.snapshot().free_gpus.sum()
    a = plan(stub, member("late", 0, 16))
    assert a.verdict == V.NOT_NOW and a.reason
    assert state.reservation("default/late") is None and state.snapshot().free_gpus.sum() == free


def test_only_offered_nodes_are_used(served):
    state, stub = served
    offered = [n for n in state.node_names() if n.startswith("b1-r2")]
    a = plan(stub, member("g", 0, 2), offered)
    assert a.verdict == V.PLACE and a.nodes[0] in offered


def test_unreserve_with_release_gang_gives_the_whole_reservation_back(served):
    state, stub = served
    pods = [member("g", i, 4) for i in range(2)]
    for p in pods:
        plan(stub, p)
    assert state.reservation("default/g") is not None
    r = stub.Unreserve(pb.UnreserveRequest(pod_uid=pods[0]["metadata"]["uid"], gang="default/g"), timeout=10)
    assert not r.released and state.reservation("default/g") is not None  # only the slot
    r = stub.Unreserve(pb.UnreserveRequest(pod_uid=pods[1]["metadata"]["uid"], gang="default/g",
                                           release_gang=True), timeout=10)
    assert r.released and state.reservation("default/g") is None
    assert state.snapshot().free_gpus.sum() == 32 * 8


@pytest.mark.parametrize("body, field", [(b"{", "pod_json"), (b"[1]", "pod_json")],
                         ids=["a body that is not JSON", "a body that is not an object"])
def test_bad_pod_json_is_invalid_argument_naming_the_field(served, body, field):
    _, stub = served
    with pytest.raises(grpc.RpcError) as e:
        stub.PlanMember(pb.PlanMemberRequest(pod_json=body), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in e.value.details()


def test_unreserve_needs_a_pod_uid(served):
    _, stub = served
    with pytest.raises(grpc.RpcError) as e:
        stub.Unreserve(pb.UnreserveRequest(gang="default/g"), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "pod_uid" in e.value.details()


def test_a_pod_outside_any_gang_gets_the_unreserved_nodes_and_best_fit_scores(served):
    state, stub = served
    for i in range(4):  # a gang reserves one rack's four nodes
        assert plan(stub, member("g", i, 4)).verdict == V.PLACE
    reserved = {s.node for s in state.reservation("default/g").slots}
    single = member("solo", 0, 1, gpus=1)
    del single["metadata"]["labels"]["gangplace.dev/gang"]
    a = plan(stub, single)
    assert a.verdict == V.PLACE and not a.gang
    assert set(a.nodes) == set(state.node_names()) - reserved
    assert a.scores and set(a.scores) <= set(a.nodes) and all(0 <= s <= 100 for s in a.scores.values())


def test_the_first_members_answer_carries_the_gangs_other_free_slots(served):
    state, stub = served
    first = plan(stub, member("g", 0, 4))
    res = state.reservation("default/g")
    assert first.verdict == V.PLACE and 0 < first.plan_ttl_s <= state.reservation_ttl_s
    assert len(first.gang_slots) == 3 and first.nodes[0] not in {s.node for s in first.gang_slots}
    assert sorted([first.nodes[0]] + [s.node for s in first.gang_slots]) == sorted(res.nodes)
    assert [s.index for s in first.gang_slots] == sorted(s.index for s in first.gang_slots)
    ps = first.gang_pod_set
    assert (ps.gpus, ps.count) == (8, 4) and ps.cpu == res.slots[0].cpu and ps.memory == res.slots[0].memory


def test_claimed_members_keep_their_slots_and_the_next_member_gets_another(served):
    state, stub = served
    first = plan(stub, member("g", 0, 4))
    given = {"uid-b": first.gang_slots[0].node, "uid-c": first.gang_slots[1].node}  # the plugin's hand-out
    req = pb.PlanMemberRequest(pod_json=orjson.dumps(member("g", 3, 4)),
                               claimed=[pb.MemberClaim(pod_uid=u, node=n) for u, n in given.items()])
    a = stub.PlanMember(req, timeout=30)
    assert a.verdict == V.PLACE and a.nodes[0] == first.gang_slots[2].node
    res = state.reservation("default/g")
    assert {u: res.slot_of(u).node for u in given} == given
    assert not a.gang_slots  # every slot is claimed now: nothing left to hand out


def test_a_claim_without_its_fields_is_invalid_argument(served):
    _, stub = served
    req = pb.PlanMemberRequest(pod_json=orjson.dumps(member("g", 0, 4)), claimed=[pb.MemberClaim(pod_uid="x")])
    with pytest.raises(grpc.RpcError) as e:
        stub.PlanMember(req, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "claimed[0]" in e.value.details()


def test_preempt_member_names_the_lower_priority_gang_whole_and_its_pods(served):
    state, stub = served
    nodes = state.node_names()
    low = [pb.PodBinding(pod=f"low-{i}", gang="default/low", node=n, gpus=8, priority=0) for i, n in enumerate(nodes[:24])]
    stub.BindPods(pb.BindPodsRequest(pods=low), timeout=10)   # all of block b0 and half of b1
    high = member("high", 0, 16, annotations={"gangplace.dev/topology-required": "block"})
    high["spec"]["priority"] = 100
    req = pb.PlanMemberRequest(pod_json=orjson.dumps(high))
    assert stub.PlanMember(req, timeout=30).verdict == V.NOT_NOW
    a = stub.PreemptMember(req, timeout=30)
    assert a.feasible and [v.gang for v in a.victims] == ["default/low"]
    assert sorted(a.victim_pods) == sorted(p.pod for p in low)
    assert len(a.nodes) == 16 and len({state.node_spec(n).topology["block"] for n in a.nodes}) == 1
    assert len(state.gang_members("default/low")) == 24  # nothing changed: the caller evicts


def test_preempt_member_evicts_nothing_for_an_equal_priority_gang(served):
    state, stub = served
    low = [pb.PodBinding(pod=f"low-{i}", gang="default/low", node=n, gpus=8, priority=100)
           for i, n in enumerate(state.node_names()[:24])]
    stub.BindPods(pb.BindPodsRequest(pods=low), timeout=10)
    same = member("same", 0, 16, annotations={"gangplace.dev/topology-required": "block"})
    assert same["spec"]["priority"] == 100
    a = stub.PreemptMember(pb.PlanMemberRequest(pod_json=orjson.dumps(same)), timeout=30)
    assert not a.feasible and not a.victim_pods and "lower priority" in a.reason


def test_a_gang_with_several_pod_sets_gets_no_plan_to_hand_out(served):
    """Each member of a mixed gang must say which pod set it is: the plugin asks per member."""
    from gangplace.engine.model.types import GangRequest, PodSet
    state, stub = served
    big = dict(cpu=128_000, memory=2**40)  # slots at least as large as the member asks
    mixed = GangRequest("default/m", (PodSet("leader", 1, 8, **big), PodSet("worker", 3, 8, **big)))
    assert state.place(mixed, placer="heuristic", reserve=True, key="default/m").placed
    a = plan(stub, member("m", 0, 4))
    assert a.verdict == V.PLACE and len(a.nodes) == 1
    assert not a.gang_slots and a.plan_ttl_s == 0 and not a.HasField("gang_pod_set")

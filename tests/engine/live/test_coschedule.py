"""engine/live/coschedule.py: the gang planner's decisions, the bind barrier and victim grouping,
called directly (the HTTP extender and the gRPC server only translate them)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest
from gangplace.engine import Cluster, NodeSpec
from gangplace.engine.live.coschedule import (
    BindKind,
    GangPlanner,
    GangPolicy,
    Member,
    Verdict,
    Victims,
)
from gangplace.engine.live.state import BindRecord, ClusterState
from gangplace.engine.model.types import SliceLayer, TopologyConstraint

from tests.conftest import FakeClock


def two_racks(nodes_per_rack: int = 4, gpus: int = 8) -> Cluster:
    """Two racks of ``nodes_per_rack`` nodes with ``gpus`` GPUs each: r0-n0 .. r1-n3."""
    return Cluster(["block", "rack"], [
        NodeSpec(f"r{r}-n{n}", {"block": "b0", "rack": f"r{r}"}, gpus=gpus, cpu=64_000, memory=2**39)
        for r in range(2) for n in range(nodes_per_rack)])


ALL = [f"r{r}-n{n}" for r in range(2) for n in range(4)]


def pod(uid: str, gpus: int = 8) -> Member:
    return Member(uid, gpus, cpu=1000, memory=2**30, ref=f"default/{uid}")


def mate(gang: str, i: int, size: int, gpus: int = 8, **kw) -> Member:
    return Member(f"{gang}-{i}", gpus, cpu=1000, memory=2**30, ref=f"default/{gang}-{i}", gang=f"default/{gang}",
                  gang_size=size, **kw)


def planner(policy: GangPolicy | None = None, cluster: Cluster | None = None) -> GangPlanner:
    state = ClusterState(cluster or two_racks(), clock=FakeClock(), reservation_ttl_s=60.0)
    return GangPlanner(state, policy or GangPolicy(placer="heuristic"))


def hold_everything_but_one_node(p: GangPlanner) -> None:
    """Another gang reserves 7 of the 8 nodes."""
    assert p.decide(mate("other", 0, 7), ALL).verdict is Verdict.PLACE


def bind_pod_on_r0_n0(p: GangPlanner) -> None:
    p.state.bind("solo", "r0-n0", gpus=8)


def nothing(p: GangPlanner) -> None:
    pass


@dataclass(frozen=True)
class Case:
    name: str
    member: Member
    verdict: Verdict
    reason: str = ""  # a substring of the decision's reason
    nodes: int | None = None  # how many nodes a PLACE names
    setup: Callable[[GangPlanner], None] = nothing
    offered: list[str] = field(default_factory=lambda: list(ALL))
    policy: GangPolicy = GangPolicy(placer="heuristic")
    node_reasons: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("a pod outside any gang may go to every node with room for it", pod("solo"), Verdict.PLACE, nodes=8),
    Case("a pod outside any gang is kept off the capacity another gang holds", pod("solo"), Verdict.PLACE, nodes=1,
         setup=hold_everything_but_one_node),
    Case("a pod outside any gang with no room anywhere does not fit now", pod("solo", gpus=9), Verdict.NOT_NOW,
         reason="insufficient free capacity"),
    Case("a pod outside any gang waits when only reservations are in its way and the policy says wait",
         pod("solo"), Verdict.WAIT, reason="reserved for gangs", offered=["r0-n0"],
         setup=lambda p: p.decide(mate("other", 0, 1), ["r0-n0"]),
         policy=GangPolicy(placer="heuristic", reservation_blocked_error=True)),
    Case("the first member of a gang plans the whole gang and goes to one node", mate("g", 0, 4), Verdict.PLACE,
         reason="places this member on", nodes=1),
    Case("a gang too big for the empty cluster is never placed", mate("g", 0, 9), Verdict.NEVER,
         reason="not even in the empty cluster"),
    Case("a gang that fits the empty cluster but not the free capacity does not fit now", mate("g", 0, 4),
         Verdict.NOT_NOW, reason="fit in the cluster now", setup=hold_everything_but_one_node),
    Case("a gang of unknown size waits for its members", Member("g-0", 8, gang="default/g", gang_size=None),
         Verdict.WAIT, reason="size unknown"),
    Case("a gang whose slice size does not divide its size is never placed",
         mate("g", 0, 3, topology=TopologyConstraint(slices=(SliceLayer(2, "rack"),))), Verdict.NEVER,
         reason="default/g"),
    Case("a pod already bound is placed on its node again", pod("solo"), Verdict.PLACE, reason="bound to r0-n0",
         nodes=1, setup=bind_pod_on_r0_n0),
    Case("nodes the state does not know get their own reason", pod("solo"), Verdict.PLACE, nodes=1,
         offered=["r0-n0", "new-node"], node_reasons={"new-node": "node not yet synced"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide(case: Case):
    p = planner(case.policy)
    case.setup(p)
    d = p.decide(case.member, case.offered)
    assert d.verdict is case.verdict, d
    assert case.reason in d.reason, d
    if case.nodes is not None:
        assert len(d.nodes) == case.nodes, d
    for node, reason in case.node_reasons.items():
        assert d.node_reasons[node] == reason
    assert p.state.check_consistency() == []


def test_members_of_one_gang_get_distinct_slots_and_repeated_decisions_agree():
    p = planner()
    first = [p.decide(mate("g", i, 4), ALL) for i in range(4)]
    again = [p.decide(mate("g", i, 4), ALL) for i in reversed(range(4))][::-1]
    assert [d.nodes for d in first] == [d.nodes for d in again]
    assert len({d.nodes for d in first}) == 4
    assert p.decide(mate("g", 4, 4), ALL).verdict is Verdict.NOT_NOW  # a fifth member finds no slot


def test_without_planning_the_planner_answers_planned_members_and_leaves_planning_to_the_caller():
    p = planner()
    assert p.decide(mate("g", 0, 2), ALL, plan=False) is None  # the gang is not planned yet
    assert p.state.reservation("default/g") is None
    slot = p.decide(mate("g", 0, 2), ALL).nodes[0]
    fast = p.decide(mate("g", 1, 2), ALL, plan=False)
    assert fast.verdict is Verdict.PLACE and fast.nodes[0] != slot
    assert p.decide(mate("g", 0, 2), [n for n in ALL if n != slot], plan=False) is None  # re-planning needed
    with p._lock("default/g"):  # another thread is deciding this gang: never wait for it
        assert p.decide(mate("g", 1, 2), ALL, plan=False) is None


def bind_batch(p: GangPlanner, key: str) -> list[BindRecord]:
    """Commit gang ``key``'s barrier as the adapter does after every Binding succeeded."""
    batch = p.take_batch(key)
    p.state.bind_many([rec for _, rec, _ in batch])
    p.committed(key, [uid for uid, _, _ in batch], failed=False)
    return [rec for _, rec, _ in batch]


def test_a_member_of_another_shape_has_the_gang_planned_again_around_the_members_placed():
    """A LeaderWorkerSet-style gang: the 4-GPU leader is filtered before its 8-GPU workers exist.
    The leader keeps its slot (it waits in bind on that node); the workers are planned next to it."""
    p = planner()
    leader = mate("lws", 0, 3, gpus=4)
    first = p.decide(leader, ALL).nodes[0]
    assert p.arrive(leader, first, namespace="default", name="lws-0", waiter="w-leader").kind is BindKind.WAITING
    worker = p.decide(mate("lws", 1, 3), ALL)
    assert worker.verdict is Verdict.PLACE and p.counters["gang_makeup_replanned"] == 1
    res = p.state.reservation("default/lws")
    assert sorted((ps.count, ps.gpus) for ps in res.gang.pod_sets) == [(1, 4), (2, 8)]
    assert sorted(s.gpus for s in res.slots) == [4, 8, 8] and res.slot_of("lws-0").node == first
    assert p.tick()[1] == []  # nobody to answer: the leader's bind keeps waiting
    nodes = {m.pod_uid: p.decide(m, ALL).nodes[0] for m in (leader, mate("lws", 1, 3), mate("lws", 2, 3))}
    assert nodes["lws-0"] == first and p.counters["gang_makeup_replanned"] == 1
    for i in (1, 2):
        step = p.arrive(mate("lws", i, 3), nodes[f"lws-{i}"], namespace="default", name=f"lws-{i}", waiter=f"w{i}")
    assert step.commit and step.need == 3
    assert sorted(w for _, _, w in p.take_batch("default/lws")) == ["w-leader", "w1", "w2"]
    bind_batch(p, "default/lws")
    # 20 GPUs in one rack (the 4-GPU and 8-GPU slots may share a node: 3 nodes)
    assert len({n[:2] for n in nodes.values()}) == 1 and len(set(nodes.values())) <= 3
    assert p.state.reservation("default/lws") is None and p.state.check_consistency() == []


def test_members_in_slots_of_another_shape_are_dropped_and_filtered_again():
    """A 2-GPU member took a slot of an 8-GPU plan (it fits): when the makeup is known it must move;
    its waiting bind is answered at the next tick and a new bind is refused until it is filtered."""
    p = planner()
    big = p.decide(mate("g", 0, 3), ALL).nodes[0]
    small = mate("g", 1, 3, gpus=2)
    p.state.claim("default/g", "g-1", nodes=ALL)  # as the planner did before it knew shapes
    node = p.state.reservation("default/g").slot_of("g-1").node
    p.arrive(small, node, namespace="default", name="g-1", waiter="w-small")
    assert p.decide(mate("g", 2, 3), ALL).verdict is Verdict.PLACE  # no change: all alike so far
    p.decide(small, ALL)  # the small member's shape is seen: planned again, it moves to a 2-GPU slot
    assert p.counters["gang_makeup_replanned"] == 1
    assert p.tick()[1] == [("w-small", "gang default/g was planned again (a member of another shape arrived); "
                                       "this member is retried")]
    res = p.state.reservation("default/g")
    assert res.slot_of("g-1").gpus == 2 and res.slot_of("g-0").node == big
    assert p.arrive(small, node, namespace="default", name="g-1", waiter="late").kind is BindKind.WAITING


def test_workers_seen_before_the_plan_make_the_first_plan_mixed():
    p = planner()
    p.decide(mate("g", 1, 3), ALL, plan=False)  # a worker seen (not planned: plan=False)
    p.decide(mate("g", 0, 3, gpus=2), ALL)  # the leader plans: one 2-GPU slot, two 8-GPU slots
    assert sorted((ps.count, ps.gpus) for ps in p.state.reservation("default/g").gang.pod_sets) == [(1, 2), (2, 8)]
    assert p.counters.get("gang_makeup_replanned", 0) == 0


def test_a_member_bigger_than_the_plan_while_the_gang_is_being_bound_is_never_placed_and_keeps_no_slot():
    p = planner()
    nodes = [p.decide(mate("g", i, 3), ALL).nodes[0] for i in range(2)]
    p.arrive(mate("g", 0, 3), nodes[0], namespace="default", name="g-0", waiter="w0")
    p._barriers["default/g"].committing = True  # the adapter is binding a batch of this gang now
    d = p.decide(mate("g", 2, 3, gpus=16), ALL)
    assert d.verdict is Verdict.NEVER and "cannot change while its members are being bound" in d.reason
    assert p.state.reservation("default/g").slot_of("g-2") is None


def test_a_gang_that_has_fewer_members_than_planned_is_planned_again():
    """A PodGroup's size drops once its leader without GPUs is seen (service/k8s_sync.py)."""
    p = planner()
    p.decide(mate("g", 0, 3), ALL)
    assert len(p.state.reservation("default/g").slots) == 3
    assert p.decide(mate("g", 1, 2), ALL).verdict is Verdict.PLACE
    assert len(p.state.reservation("default/g").slots) == 2 and p.counters["gang_makeup_replanned"] == 1


def test_a_member_without_gpus_is_placed_like_a_pod_of_no_gang_and_not_counted_as_bound():
    p = planner()
    leader = mate("js", 9, 2, gpus=0)
    d = p.decide(leader, ALL)
    assert d.verdict is Verdict.PLACE and len(d.nodes) == len(ALL)
    step = p.arrive(leader, "r1-n3", namespace="default", name="js-9", waiter=None)
    assert step.kind is BindKind.ALONE and step.record.gang == "default/js"  # preemption sees the gang
    p.state.bind_many([step.record])
    nodes = [p.decide(mate("js", i, 2), ALL).nodes[0] for i in range(2)]
    assert len(p.state.reservation("default/js").slots) == 2 and len(set(nodes)) == 2
    assert p.scores(leader, ALL, 10) != {}  # best-fit scores, not a slot's


def test_a_member_whose_slot_is_not_offered_is_replanned_onto_an_offered_node():
    p = planner()
    slot = p.decide(mate("g", 0, 2), ALL).nodes[0]
    d = p.decide(mate("g", 1, 2), [n for n in ALL if n != slot])
    assert d.verdict is Verdict.PLACE and d.nodes[0] != slot
    assert p.state.check_consistency() == []


def test_the_barrier_commits_when_the_last_member_arrives_and_then_releases_the_reservation():
    p = planner()
    nodes = [p.decide(mate("g", i, 2), ALL).nodes[0] for i in range(2)]
    s0 = p.arrive(mate("g", 0, 2), nodes[0], namespace="default", name="g-0", waiter="w0")
    assert s0.kind is BindKind.WAITING and not s0.commit and s0.need == 2
    s1 = p.arrive(mate("g", 1, 2), nodes[1], namespace="default", name="g-1", waiter="w1")
    assert s1.kind is BindKind.WAITING and s1.commit
    batch = p.take_batch("default/g")
    assert [w for _, _, w in batch] == ["w0", "w1"]
    p.state.bind_many([rec for _, rec, _ in batch])
    p.committed("default/g", [uid for uid, _, _ in batch], failed=False)
    assert p.state.reservation("default/g") is None and p.counters["gang_bound"] == 1


def test_a_bind_without_a_reservation_is_refused_and_a_pod_outside_any_gang_binds_alone():
    p = planner()
    assert p.arrive(mate("g", 0, 2), "r0-n0", namespace="default", name="g-0", waiter=None).kind is BindKind.REFUSED
    step = p.arrive(pod("solo"), "r0-n0", namespace="default", name="solo", waiter=None)
    assert step.kind is BindKind.ALONE and step.record == BindRecord("solo", "r0-n0", 8, 1000, 2**30, None,
                                                                      "default", "solo", 0)


def test_a_member_that_times_out_leaves_the_barrier_and_the_round_starts_over():
    p = planner()
    node = p.decide(mate("g", 0, 2), ALL).nodes[0]
    p.arrive(mate("g", 0, 2), node, namespace="default", name="g-0", waiter="w0")
    assert p.left("default/g", "g-0", "w0", timed_out=True) == 1
    assert p.take_batch("default/g") == []


def test_an_incomplete_gang_past_its_timeout_is_released_and_its_waiters_answered():
    p = planner(GangPolicy(placer="heuristic", gang_timeout_s=100))
    node = p.decide(mate("g", 0, 2), ALL).nodes[0]
    p.arrive(mate("g", 0, 2), node, namespace="default", name="g-0", waiter="w0")
    p.state.clock.t += 50
    assert p.tick() == ([], [])
    p.state.clock.t += 51
    p.state.refresh("default/g")
    gone, answers = p.tick()
    assert gone == ["default/g"] and answers == [("w0", "gang default/g timed out before every member reached bind")]


@pytest.mark.parametrize("partial_allowed", [True, False], ids=["breaking a gang is accepted when no set is whole",
                                                                "breaking a gang is refused when the policy says so"])
def test_victim_sets_that_evict_whole_gangs_win_and_broken_gangs_are_evicted_later(partial_allowed):
    p = planner(GangPolicy(placer="heuristic", evict_partial_gangs=partial_allowed))
    for i, node in enumerate(("r0-n0", "r0-n1")):
        p.state.bind(f"v-{i}", node, gpus=8, gang="default/v", namespace="default", name=f"v-{i}")
    p.state.bind("lone", "r1-n0", gpus=8, namespace="default", name="lone")
    preemptor = Member("p", 8, nominated_node="r0-n0")
    whole = p.group_victims(preemptor, {"r0-n0": Victims(("v-0",), 0, {}), "r1-n0": Victims(("lone",), 0, {})})
    assert list(whole) == ["r1-n0"]  # evicting "lone" breaks no gang
    chosen = p.group_victims(preemptor, {"r0-n0": Victims(("v-0",), 0, {})})
    if not partial_allowed:
        assert chosen == {}
        return
    assert list(chosen) == ["r0-n0"]
    assert [r.pod_uid for r in p.take_evictions(preemptor)] == ["v-1"]
    assert p.take_evictions(preemptor) == []  # handed out once


def two_blocks() -> Cluster:
    """Two blocks of one 4-node rack each: b0-n0..n3, b1-n0..n3 (8 GPUs per node)."""
    return Cluster(["block", "rack"], [
        NodeSpec(f"b{b}-n{n}", {"block": f"b{b}", "rack": f"b{b}-r0"}, gpus=8, cpu=64_000, memory=2**39)
        for b in range(2) for n in range(4)])


def test_regression_a_replanned_member_of_a_block_required_gang_stays_in_the_gangs_block():
    """Found by the e2e preemption test: the members whose slot node the scheduler did not offer
    were re-planned on any offered node, so the gang ended split over two blocks."""
    p = planner(cluster=two_blocks())
    required = TopologyConstraint(required="block")
    every = [f"b{b}-n{n}" for b in range(2) for n in range(4)]
    slots = [p.decide(mate("g", i, 3, topology=required), every).nodes[0] for i in range(2)]
    block = slots[0][:2]
    assert {s[:2] for s in slots} == {block}
    # member 2's slot is on the one node of the block not offered; only the other block is offered
    others = [n for n in every if not n.startswith(block)]
    d = p.decide(mate("g", 2, 3, topology=required), others)
    assert d.verdict is not Verdict.PLACE, d  # never outside the block the gang already holds
    res = p.state.reservation("default/g")
    assert res is None or all(s.node.startswith(block) for s in res.slots)
    # offered its own block again, it goes there
    d = p.decide(mate("g", 2, 3, topology=required), every)
    assert d.verdict is Verdict.PLACE and d.nodes[0].startswith(block), d


def test_nodes_the_scheduler_did_not_offer_are_named_so_not_cordoned():
    """Found on the real scheduler: a gang that did not fit the offered nodes was told its other
    nodes were "cordoned"."""
    p = planner()
    d = p.decide(mate("g", 0, 3), ["r0-n0", "r0-n1"])  # 3 pods x 8 GPUs, 2 nodes offered
    assert d.verdict is not Verdict.PLACE
    assert "6 nodes not offered by the scheduler" in d.reason and "cordoned" not in d.reason, d.reason


def test_one_node_places_a_pod_outside_any_gang_on_its_best_fit_node_alone():
    p = planner()
    p.state.bind("half", "r1-n2", gpus=4)  # the one partly used node: best fit for a 1-GPU pod
    assert set(p.decide(pod("solo", gpus=1), ALL).nodes) == set(ALL)  # default: every node it fits
    d = p.decide(pod("solo", gpus=1), ALL, one_node=True)
    assert d.verdict is Verdict.PLACE and d.nodes == ("r1-n2",)
    scores = p.scores(pod("solo", gpus=1), ALL, 100)
    assert scores["r1-n2"] == max(scores.values())
    # a pod that needs a whole node: the partly used one does not fit, the answer is one empty node
    d8 = p.decide(pod("big", gpus=8), ALL, one_node=True)
    assert len(d8.nodes) == 1 and d8.nodes[0] != "r1-n2"
    # a pod without GPUs is not gangplace's to place: every node passes
    assert len(p.decide(pod("cpu", gpus=0), ALL, one_node=True).nodes) == len(ALL)
    # gang members are unaffected: each gets its slot
    assert len(p.decide(mate("g", 0, 2), ALL, one_node=True).nodes) == 1

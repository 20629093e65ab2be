"""A gang whose bind is refused part-way is not left half-running; Events on held, placed and refused members."""
from __future__ import annotations

import asyncio
import re

from gangplace.service.binder import KubeBinder, PodRef
from gangplace.service.events import EventRecorder
from gangplace.service.extender import Extender, ExtenderConfig
from gangplace.engine.live.state import ClusterState

from tests.service.test_extender import FakeClock, Server, _names, filter_args, member, passing, synthetic


class FakeKube:
    """KubeClient's bind/evict/request: refuses the Bindings of ``refuse``; records everything."""

    def __init__(self, refuse=()):
        self.refuse = set(refuse)
        self.bindings, self.evictions, self.events = [], [], []

    async def bind(self, namespace, name, uid, node):
        if name in self.refuse:
            return "HTTP 409 Conflict: Operation cannot be fulfilled on pods/binding"
        self.bindings.append(name)
        return None

    async def evict(self, namespace, name):
        self.evictions.append(name)
        return None

    async def request(self, method, path, body=None):
        assert method == "POST" and path == f"/apis/events.k8s.io/v1/namespaces/{body['metadata']['namespace']}/events"
        # the API server's rule for object names (a name ending in "." is refused: HTTP 422)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", body["metadata"]["name"])
        self.events.append((body["regarding"]["name"], body["reason"], body["type"], body["note"]))


def kube_ext(kube: FakeKube, **cfg) -> Extender:
    state = ClusterState(synthetic(), clock=FakeClock(), reservation_ttl_s=60.0)
    ext = Extender(state, ExtenderConfig(bind_timeout_s=5.0, **cfg), binder=KubeBinder(state, kube))
    ext.events = EventRecorder(kube)
    return ext


async def filter_and_bind(s: Server, ext: Extender, pods) -> list[dict]:
    nodes = {}
    for pod in pods:
        nodes[pod["metadata"]["uid"]] = passing(await s.ok("filter", filter_args(pod, _names(ext))))[0]
    return await asyncio.gather(*(s.ok("bind", {"PodName": p["metadata"]["name"], "PodNamespace": "default",
                                                "PodUID": p["metadata"]["uid"], "Node": nodes[p["metadata"]["uid"]]})
                                  for p in pods))


def test_a_refused_binding_evicts_the_members_bound_with_it_and_the_gang_is_replanned_once_they_are_gone():
    kube = FakeKube(refuse={"g-2"})
    ext = kube_ext(kube)
    pods = [member("g", i, 4) for i in range(4)]

    async def go():
        async with Server(ext) as s:
            answers = await filter_and_bind(s, ext, pods)
            await asyncio.sleep(0.05)  # the evictions follow the answers
            # the refused member retries while its mates are being evicted: it waits (Error), holds nothing
            held = await s.ok("filter", filter_args(pods[2], _names(ext)))
            bound = sorted(ext.state.allocations())
            for uid in bound:  # the watch sees the evicted pods go
                ext.state.unbind(uid)
                ext.pod_deleted(uid)
            again = await s.ok("filter", filter_args(pods[2], _names(ext)))
            await ext.events.drain()
            return answers, held, bound, again
    answers, held, bound, again = asyncio.run(go())
    errors = [a["Error"] for a in answers]
    assert errors[2].startswith("binding default/g-2 to ") and "409" in errors[2]
    assert errors[:2] + errors[3:] == ["", "", ""], "the members whose Binding was accepted were bound"
    assert sorted(kube.bindings) == ["g-0", "g-1", "g-3"]
    assert sorted(kube.evictions) == ["g-0", "g-1", "g-3"], "every member bound in the refused batch is evicted"
    assert ext.state.reservation("default/g") is not None, "re-planned after the evictions completed"
    assert len(bound) == 3
    assert passing(held) == [] and "being evicted" in held["Error"]
    assert len(passing(again)) == 1 and again["Error"] == ""
    assert ext.counters.get("gang_partial_bind_undone") == 1
    reasons = sorted((name, reason, typ) for name, reason, typ, _ in kube.events)
    assert ("g-2", "FailedBinding", "Warning") in reasons
    assert [r for r in reasons if r[1] == "GangPartialBindUndone"] == [
        ("g-0", "GangPartialBindUndone", "Warning"), ("g-1", "GangPartialBindUndone", "Warning"),
        ("g-3", "GangPartialBindUndone", "Warning")]
    assert not [r for r in reasons if r[1] == "GangPlaced"], "a gang undone is not reported placed"


def test_a_batch_refused_whole_evicts_nobody_and_keeps_the_plan():
    kube = FakeKube(refuse={"g-0", "g-1"})
    ext = kube_ext(kube)

    async def go():
        async with Server(ext) as s:
            return await filter_and_bind(s, ext, [member("g", i, 2) for i in range(2)])
    answers = asyncio.run(go())
    assert all(a["Error"] for a in answers)
    assert kube.evictions == [] and ext.state.allocations() == {}
    assert ext.state.reservation("default/g") is not None


def test_a_placed_gang_gets_one_event_per_member_naming_its_domain_and_a_held_member_one_per_reason():
    kube = FakeKube()
    ext = kube_ext(kube)
    big = member("big", 0, 40)  # 40 x 8 GPUs: more than the 32-node cluster

    async def go():
        async with Server(ext) as s:
            held = [await s.ok("filter", filter_args(big, _names(ext))) for _ in range(5)]
            answers = await filter_and_bind(s, ext, [member("g", i, 4) for i in range(4)])
            await ext.events.drain()
            return held, answers
    held, answers = asyncio.run(go())
    assert all(passing(h) == [] for h in held) and [a["Error"] for a in answers] == [""] * 4
    big_events = [e for e in kube.events if e[0] == "big-0"]
    assert len(big_events) == 1, "five filters of a held member, one Event"
    assert big_events[0][1] == "GangUnschedulable" and "not even in the empty cluster" in big_events[0][3]
    placed = [e for e in kube.events if e[1] == "GangPlaced"]
    assert sorted(e[0] for e in placed) == ["g-0", "g-1", "g-2", "g-3"]
    assert all("gang default/g bound: 4 nodes in rack b" in e[3] for e in placed), placed
    waiting = [e for e in kube.events if e[1] == "GangWaiting"]
    assert {e[3].split(";")[0] for e in waiting} <= {f"gang default/g: {k} of 4 members reached bind" for k in (1, 2, 3)}


def test_the_recorder_limits_repeats_changes_and_the_overall_rate():
    kube = FakeKube()
    now = [0.0]
    pod, other = PodRef("ns", "p", "u1"), PodRef("ns", "q", "u2")

    async def go():
        rec = EventRecorder(kube, clock=lambda: now[0], repeat_s=60, change_s=5, rate=1, burst=2)
        sent = [rec.emit(pod, "GangWaiting", "a"), rec.emit(pod, "GangWaiting", "a"),  # repeat: no
                rec.emit(pod, "GangWaiting", "b")]  # changed, but within 5 s: no
        now[0] = 6
        sent += [rec.emit(pod, "GangWaiting", "b"),  # changed, after 5 s: yes
                 rec.emit(pod, "GangWaiting", "b"),  # repeat within 60 s: no
                 rec.emit(other, "GangWaiting", "a"),  # another pod: yes (the bucket refilled)
                 rec.emit(other, "FailedBinding", "x")]  # the bucket is empty: dropped
        now[0] = 70
        sent.append(rec.emit(pod, "GangWaiting", "b"))  # the same message after 60 s: yes
        await rec.drain()
        return sent, rec
    sent, rec = asyncio.run(go())
    assert sent == [True, False, False, True, False, True, False, True]
    assert rec.posted == 4 and rec.dropped == 1 and rec.suppressed == 3
    assert [e[3] for e in kube.events] == ["a", "b", "a", "b"]


def test_members_whose_eviction_is_refused_stop_holding_the_gang_back_after_the_gang_timeout():
    class NoEvictions(FakeKube):
        async def evict(self, namespace, name):
            return "HTTP 429 TooManyRequests: Cannot evict pod as it would violate the pod's disruption budget."

    kube = NoEvictions(refuse={"g-1"})
    ext = kube_ext(kube, gang_timeout_s=120.0)
    pods = [member("g", i, 2) for i in range(2)]

    async def go():
        async with Server(ext) as s:
            answers = await filter_and_bind(s, ext, pods)
            await asyncio.sleep(0.05)
            held = await s.ok("filter", filter_args(pods[1], _names(ext)))
            ext.state.clock.t += 121  # g-0 is still bound: its eviction was refused
            again = await s.ok("filter", filter_args(pods[1], _names(ext)))
            return answers, held, again
    answers, held, again = asyncio.run(go())
    assert answers[0]["Error"] == "" and "409" in answers[1]["Error"]
    g0 = ext.state.allocation(pods[0]["metadata"]["uid"])
    assert g0 is not None, "the refused eviction left g-0 bound"
    assert passing(held) == [] and "being evicted" in held["Error"]
    assert again["Error"] == "" and len(passing(again)) == 1, "re-planned around the member still bound"
    rack = lambda n: n.rsplit("-", 1)[0]  # noqa: E731
    assert rack(passing(again)[0]) == rack(g0.node), "next to it, in its rack"


def test_a_malformed_workload_pod_group_is_refused_on_every_node_with_the_reason_in_an_event():
    """minCount above the pods that exist, and a topology key no node has: the extender's answer and
    a InvalidPod Event say why; nothing is reserved, so nothing else in the cluster changes."""
    from gangplace.service.gangs import WorkloadGroup
    kube = FakeKube()
    ext = kube_ext(kube)
    groups = {"short": WorkloadGroup("short", 4, None, pods=2, size=4, members=2),
              "offmap": WorkloadGroup("offmap", 1, "example.com/no-such-rack", pods=1, size=1, members=1)}
    ext.group_size = lambda kind, ns, name: groups.get(name) if kind == "workload" else None

    def pod(group: str) -> dict:
        p = member("x", 0, 1)
        p["metadata"].update(name=f"{group}-0", uid=f"uid-{group}-0", labels={})
        p["spec"]["schedulingGroup"] = {"podGroupName": group}
        return p

    async def go():
        async with Server(ext) as s:
            out = [await s.ok("filter", filter_args(pod(g), _names(ext))) for g in groups]
            await ext.events.drain()
            return out
    short, offmap = asyncio.run(go())
    names = _names(ext)
    for resp, needle in ((short, "needs 4 pods (spec.schedulingPolicy.gang.minCount) but only 2 name it"),
                         (offmap, "'example.com/no-such-rack' is not a topology level")):
        assert passing(resp) == [] and resp["FailedNodes"] == {} and resp["Error"] == ""
        assert set(resp["FailedAndUnresolvableNodes"]) == set(names), "unresolvable: no preemption for it"
        assert all(needle in why for why in resp["FailedAndUnresolvableNodes"].values())
    assert [(e[0], e[1], e[2]) for e in kube.events] == [("short-0", "InvalidPod", "Warning"),
                                                        ("offmap-0", "InvalidPod", "Warning")]
    assert "PodGroup default/short" in kube.events[0][3] and "spec.schedulingConstraints.topology[0].key" in kube.events[1][3]
    assert ext.state.stats()["reservations"] == 0 and ext.state.stats()["allocated_gpus"] == 0


def test_a_workload_pod_is_read_again_when_its_pod_group_changes_not_served_from_the_parse_cache():
    """The same pod JSON, filtered twice: short of pods first (refused), whole after the rest arrived."""
    from gangplace.service.gangs import WorkloadGroup
    kube = FakeKube()
    ext = kube_ext(kube)
    groups = {"g": WorkloadGroup("g", 2, None, pods=1, size=2, members=1)}
    ext.group_size = lambda kind, ns, name: groups.get(name) if kind == "workload" else None
    pod = member("x", 0, 1)
    pod["metadata"].update(name="g-0", uid="uid-g-0", labels={})
    pod["spec"]["schedulingGroup"] = {"podGroupName": "g"}

    async def go():
        async with Server(ext) as s:
            first = await s.ok("filter", filter_args(pod, _names(ext)))
            groups["g"] = WorkloadGroup("g", 2, None, pods=2, size=2, members=2)
            return first, await s.ok("filter", filter_args(pod, _names(ext)))
    first, second = asyncio.run(go())
    assert passing(first) == [] and first["FailedAndUnresolvableNodes"]
    assert len(passing(second)) == 1 and ext.state.reservation("default/g") is not None

"""service/extender.py over real HTTP (aiohttp on 127.0.0.1, port 0), in-process.

Two kinds of tests:
- every request recorded from a real kube-scheduler (tests/fixtures/kube-scheduler-extender,
  v1.36.2 in both nodeCacheCapable modes and upstream v1.35.4) replayed through HTTP, on a state
  built from the recorded Node objects the way the Kubernetes sync builds it;
- gang flows on a synthetic cluster (shuffled members, repeated filters, the bind barrier,
  missing nodes, deletions, expiry, racing gangs, restarts, a 64-pod gang).
"""
from __future__ import annotations

import asyncio
import copy
import json
import random
from pathlib import Path

import orjson
import pytest
from aiohttp import ClientSession, web

from gangplace.engine import Cluster, NodeSpec
from gangplace.engine.live.state import ClusterState
from gangplace.service.binder import FileBinder
from gangplace.service.extender import Extender, ExtenderConfig, add_routes, make_app
from gangplace.service.dra import DRA_KINDS
from gangplace.service.k8s_sync import SyncState

from tests.conftest import FakeClock as _Clock

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kube-scheduler-extender"
MODES = ("nodecache-true", "nodecache-false")
VERSIONS = ("", "upstream-v1.35.4")


def fixture(name: str, version: str = ""):
    return json.loads((FIXTURES / version / name).read_text())


def FakeClock() -> _Clock:
    return _Clock(10_000.0)


# ---------------------------------------------------------------------- HTTP harness
class Server:
    """The extender on a real aiohttp server bound to 127.0.0.1:0, with a client session."""

    def __init__(self, ext: Extender):
        self.ext = ext

    async def __aenter__(self):
        app = web.Application(client_max_size=64 * 2**20)
        add_routes(app, self.ext)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.session = ClientSession()
        return self

    async def __aexit__(self, *exc):
        await self.session.close()
        await self.runner.cleanup()

    async def post(self, verb: str, body) -> tuple[int, object]:
        data = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
        async with self.session.post(f"{self.base}/{verb}", data=data,
                                     headers={"Content-Type": "application/json"}) as r:
            raw = await r.read()
            return r.status, (orjson.loads(raw) if r.status == 200 else raw.decode())

    async def ok(self, verb: str, body):
        status, out = await self.post(verb, body)
        assert status == 200, out
        return out


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------------- pods and clusters
BASE_POD = fixture("filter.nodecache-true.request.json")["Pod"]


def make_pod(name: str, uid: str | None = None, *, gpus: int = 8, ns: str = "default", labels=None,
             annotations=None, nominated: str | None = None) -> dict:
    pod = copy.deepcopy(BASE_POD)
    pod["metadata"].update(name=name, namespace=ns, uid=uid or f"uid-{ns}-{name}",
                           labels={"app": "test", **(labels or {})})
    if annotations:
        pod["metadata"]["annotations"] = dict(annotations)
    res = pod["spec"]["containers"][0]["resources"]
    res["limits"]["nvidia.com/gpu"] = str(gpus)
    res["requests"]["nvidia.com/gpu"] = str(gpus)
    if nominated:
        pod["status"]["nominatedNodeName"] = nominated
    return pod


def member(gang: str, i: int, size: int, *, gpus: int = 8, index: bool = False, annotations=None, uid=None):
    labels = {"gangplace.dev/gang": gang, "gangplace.dev/size": str(size)}
    if index:
        labels["batch.kubernetes.io/job-completion-index"] = str(i)
    return make_pod(f"{gang}-{i}", uid, gpus=gpus, labels=labels, annotations=annotations)


def filter_args(pod, nodes, *, full_nodes=None) -> dict:
    if full_nodes is not None:
        return {"Pod": pod, "Nodes": {"metadata": {}, "items": full_nodes}, "NodeNames": None}
    return {"Pod": pod, "Nodes": None, "NodeNames": list(nodes)}


def synthetic(blocks=2, racks=4, nodes=4, gpus=8) -> Cluster:
    specs = [NodeSpec(f"b{b}-r{r}-n{n}", {"block": f"b{b}", "rack": f"b{b}-r{r}"}, gpus=gpus,
                      cpu=128_000, memory=2**40)
             for b in range(blocks) for r in range(racks) for n in range(nodes)]
    return Cluster(["block", "rack"], specs)


def make_ext(cluster=None, *, clock=None, journal_dir=None, **cfg) -> Extender:
    state = ClusterState(cluster or synthetic(), clock=clock or FakeClock(), journal_dir=journal_dir,
                         reservation_ttl_s=cfg.pop("ttl", 60.0))
    config = ExtenderConfig(**{"bind_timeout_s": 5.0, **cfg})
    return Extender(state, config, binder=FileBinder(state))


def fixture_state(group_sizes: dict[str, int] | None = None, **cfg) -> tuple[Extender, SyncState]:
    """The fixture cluster built from its recorded Node objects, the way the Kubernetes sync does."""
    from gangplace.engine.model.cluster import Cluster as C
    items = fixture("filter.nodecache-false.request.json")["Nodes"]["items"]
    state = ClusterState(C((), []), clock=FakeClock())
    sync = SyncState(state, levels="auto")
    ext = Extender(state, ExtenderConfig(**{"bind_timeout_s": 2.0, **cfg}), binder=FileBinder(state),
                   ready=False)
    sync.on_pod_deleted = ext.pod_deleted
    sync.on_synced = lambda: setattr(ext, "ready", True)
    sync.on_levels = lambda lm: setattr(ext, "levels", lm)
    ext.group_size = sync.group_size
    ext.pod_lookup = sync.pod_lookup
    sync.relist("nodes", items, "100")
    sync.relist("pods", [], "100")
    groups = [{"metadata": {"namespace": "default", "name": g, "resourceVersion": "1"}, "spec": {"minMember": n}}
              for g, n in (group_sizes or {}).items()]
    sync.relist("podgroups", groups, "100")
    for kind in ("volcanopodgroups", "workloadpodgroups", "workloads", *DRA_KINDS):
        sync.relist(kind, [], "100")
    return ext, sync


def passing(resp) -> list[str]:
    if resp["NodeNames"] is not None:
        return resp["NodeNames"]
    return [it["metadata"]["name"] for it in resp["Nodes"]["items"]]


# ---------------------------------------------------------------------- fixture replays
def test_fixture_nodes_give_two_nvlink_racks_in_one_block():
    ext, _ = fixture_state()
    c = ext.state.cluster
    assert ext.levels.names == ("block", "accelerator")
    assert c.n_nodes == 6 and int(c.cap_gpus.sum()) == 48
    assert sorted({c.domain_name(int(d)) for d in c.node_domain[1]}) == ["block-1/nvl-rack-a", "block-1/nvl-rack-b"]
    assert ext.ready


@pytest.mark.parametrize("report_all", [True, False], ids=["every failed node listed", "compact"])
@pytest.mark.parametrize("version", VERSIONS, ids=["v1.36.2", "v1.35.4"])
@pytest.mark.parametrize("mode", MODES)
def test_recorded_filter_plans_the_pod_group_and_answers_in_the_same_shape(mode, version, report_all):
    req = fixture(f"filter.{mode}.request.json", version)
    expected = fixture(f"filter.{mode}.response.json")
    ext, _ = fixture_state({"job-a": 2}, report_all_failed=report_all)

    async def go():
        async with Server(ext) as s:
            first = await s.ok("filter", req)
            again = await s.ok("filter", req)  # filters repeat: same answer
            return first, again
    resp, again = run(go())
    assert list(resp) == list(expected), "same fields, same order as the recorded answer"
    assert (resp["Nodes"] is None) == (expected["Nodes"] is None)
    assert (resp["NodeNames"] is None) == (expected["NodeNames"] is None)
    chosen = passing(resp)
    assert len(chosen) == 1 and resp["Error"] == "" and resp["FailedAndUnresolvableNodes"] == {}
    if report_all:
        assert set(resp["FailedNodes"]) | set(chosen) == {f"rack-{r}-node-{i}" for r in "ab" for i in range(3)}
        assert len(set(resp["FailedNodes"].values())) == 1
    else:
        assert resp["FailedNodes"] == {}
    assert passing(again) == chosen
    res = ext.state.reservation("default/job-a")
    assert res is not None and len(res.slots) == 2
    # both members of job-a in one NVLink rack
    assert len({n.split("-node-")[0] for n in res.nodes}) == 1
    if expected["Nodes"] is not None:  # full Node objects come back untouched
        items = {it["metadata"]["name"]: it for it in req["Nodes"]["items"]}
        assert resp["Nodes"]["items"][0] == items[chosen[0]]


@pytest.mark.parametrize("mode", MODES)
def test_recorded_filter_without_a_pod_group_size_answers_error(mode):
    ext, _ = fixture_state()
    resp = run(_one(ext, "filter", fixture(f"filter.{mode}.request.json")))
    assert "members still arriving" in resp["Error"]
    assert resp["FailedNodes"] == {} and resp["FailedAndUnresolvableNodes"] == {}
    assert ext.state.reservations() == {}


def test_recorded_retry_after_error_is_read_like_a_first_try():
    ext, _ = fixture_state({"e-filter-error": 1})
    resp = run(_one(ext, "filter", fixture("filter.retry-after-error.nodecache-true.request.json")))
    assert len(passing(resp)) == 1 and resp["Error"] == ""


async def _one(ext, verb, body):
    async with Server(ext) as s:
        return await s.ok(verb, body)


@pytest.mark.parametrize("version", VERSIONS, ids=["v1.36.2", "v1.35.4"])
@pytest.mark.parametrize("mode", MODES)
def test_recorded_prioritize_scores_the_reserved_node_ten(mode, version):
    ext, _ = fixture_state({"job-a": 2})

    async def go():
        async with Server(ext) as s:
            f = await s.ok("filter", fixture(f"filter.{mode}.request.json", version))
            p = await s.ok("prioritize", fixture(f"prioritize.{mode}.request.json", version))
            return f, p
    f, scores = run(go())
    expected = fixture(f"prioritize.{mode}.response.json")
    assert [list(x) for x in scores] == [list(x) for x in expected], "[{Host, Score}] like the recording"
    req = fixture(f"prioritize.{mode}.request.json", version)
    names = req["NodeNames"] or [it["metadata"]["name"] for it in req["Nodes"]["items"]]
    assert [x["Host"] for x in scores] == names
    assert {x["Host"]: x["Score"] for x in scores if x["Score"]} == {passing(f)[0]: 10}


@pytest.mark.parametrize("version", VERSIONS, ids=["v1.36.2", "v1.35.4"])
@pytest.mark.parametrize("mode", MODES)
def test_recorded_bind_commits_a_one_member_gang(mode, version):
    ext, _ = fixture_state({"job-a": 1})
    bind = fixture(f"bind.{mode}.request.json", version)

    async def go():
        async with Server(ext) as s:
            await s.ok("filter", fixture(f"filter.{mode}.request.json", version))
            return await s.ok("bind", bind)
    assert run(go()) == fixture(f"bind.{mode}.response.json") == {"Error": ""}
    rec = ext.state.allocation(bind["PodUID"])
    assert rec.node == bind["Node"] and rec.gpus == 8 and rec.gang == "default/job-a"
    assert ext.state.reservation("default/job-a") is None, "complete gangs release their reservation"
    assert ext.state.check_consistency() == []


def _bound_fixture_state(mode: str, version: str = ""):
    """The fixture cluster with every pod where the recorded run bound it (UIDs from the
    recorded preempt victims), PodGroups job-a=2, job-b=2, fill=6, job-p=1."""
    ext, sync = fixture_state({"job-a": 2, "job-b": 2, "fill": 6, "job-p": 1})
    seq = fixture(f"sequence.{mode}.json", version)
    node_of = {c["pod"]: c["node"] for c in seq["calls"] if c["verb"] == "bind" and c["pod"] != "preemptor"}
    req = fixture(f"preempt.{mode}.request.json", version)
    if req["NodeNameToVictims"] is not None:
        pods = [p for v in req["NodeNameToVictims"].values() for p in v["Pods"]]
    else:
        pods = []
        for node, v in req["NodeNameToMetaVictims"].items():
            names = sorted(p for p, n in node_of.items() if n == node)
            for name, victim in zip(names, v["Pods"]):
                group = "fill" if name.startswith("filler") else name.rsplit("-", 1)[0]
                p = make_pod(name, victim["UID"], gpus=4 if group in ("job-b", "fill") else 8,
                             labels={"scheduling.x-k8s.io/pod-group": group})
                p["spec"]["nodeName"] = node
                p["status"]["phase"] = "Running"
                pods.append(p)
    for p in pods:
        sync.apply("pods", {"type": "ADDED", "object": p})
    return ext, sync, req


@pytest.mark.parametrize("version", VERSIONS, ids=["v1.36.2", "v1.35.4"])
@pytest.mark.parametrize("mode", MODES)
def test_recorded_preempt_keeps_only_victim_sets_that_evict_whole_gangs(mode, version):
    ext, sync, req = _bound_fixture_state(mode, version)
    assert ext.state.stats()["allocated_gpus"] == 48
    resp = run(_one(ext, "preempt", req))
    expected = fixture(f"preempt.{mode}.response.json")
    assert list(resp) == list(expected)
    chosen = resp["NodeNameToMetaVictims"]
    # the only node whose victims are a whole gang is the one holding both job-b pods
    assert len(chosen) == 1
    (node, victims), = chosen.items()
    gangs = {ext.state.allocation(p["UID"]).gang for p in victims["Pods"]}
    assert gangs == {"default/job-b"} and len(victims["Pods"]) == 2
    assert victims["NumPDBViolations"] == 0
    assert list(victims["Pods"][0]) == ["UID"]


@pytest.mark.parametrize("mode", MODES)
def test_recorded_sequence_replayed_with_a_simulated_scheduler(mode):
    """The recorded run's pods in order, with a scheduler stand-in: it offers nodes whose free
    GPUs fit the pod (the in-tree NodeResourcesFit), in rotated order, binds asynchronously
    (its binding cycle is a goroutine), and preempts for the high-priority pod."""
    ext, sync = fixture_state({"job-a": 2, "job-b": 2, "fill": 6, "job-p": 1})
    items = {it["metadata"]["name"]: it for it in fixture("filter.nodecache-false.request.json")["Nodes"]["items"]}

    def args(pod, names):  # what the scheduler sends in this nodeCacheCapable mode
        if mode == "nodecache-true":
            return filter_args(pod, names)
        return filter_args(pod, None, full_nodes=[items[n] for n in names])
    plan = [("job-a-0", "job-a", 8), ("job-a-1", "job-a", 8), ("job-b-0", "job-b", 4), ("job-b-1", "job-b", 4)]
    plan += [(f"filler-{i}", "fill", 4) for i in range(6)]

    async def go():
        async with Server(ext) as s:
            binds = []
            for k, (name, group, gpus) in enumerate(plan):
                pod = make_pod(name, gpus=gpus, labels={"scheduling.x-k8s.io/pod-group": group})
                offered = _fits(ext, gpus, rotate=k)
                resp = await s.ok("filter", args(pod, offered))
                assert resp["Error"] == "", resp
                chosen = passing(resp)
                assert len(chosen) == 1, resp
                if len(chosen) > 1:
                    await s.ok("prioritize", args(pod, chosen))
                binds.append(asyncio.create_task(s.ok("bind", {
                    "PodName": name, "PodNamespace": "default", "PodUID": pod["metadata"]["uid"],
                    "Node": chosen[0]})))
                await asyncio.sleep(0)
                # the scheduler assumes the pod on its node while binding
            results = await asyncio.gather(*binds)
            assert all(r == {"Error": ""} for r in results), results
            st = ext.state
            assert st.stats()["allocated_gpus"] == 48 and st.reservations() == {}
            racks = {g: {st.allocation(f"uid-default-{n}").node.split("-node-")[0] for n, gg, _ in plan if gg == g}
                     for g in ("job-a", "job-b")}
            assert all(len(r) == 1 for r in racks.values()), "each pod group in one NVLink rack"
            nodes_b = {st.allocation(f"uid-default-job-b-{i}").node for i in range(2)}
            assert len(nodes_b) == 1, "best fit packs job-b on one node"
            # preemption: victims on every node; only the job-b node evicts a whole gang
            preemptor = make_pod("preemptor", labels={"scheduling.x-k8s.io/pod-group": "job-p"})
            meta = {n: {"Pods": [{"UID": r.pod_uid} for r in st.pods_on(n)], "NumPDBViolations": 0}
                    for n in st.node_names()}
            resp = await s.ok("preempt", {"Pod": preemptor, "NodeNameToVictims": None, "NodeNameToMetaVictims": meta})
            assert list(resp["NodeNameToMetaVictims"]) == list(nodes_b)
            # the scheduler deletes the victims; the sync sees them go
            node = next(iter(nodes_b))
            for r in st.pods_on(node):
                sync.apply("pods", {"type": "DELETED", "object": make_pod(r.name, r.pod_uid)})
            preemptor["status"]["nominatedNodeName"] = node
            resp = await s.ok("filter", args(preemptor, [node]))
            assert passing(resp) == [node], resp
            assert await s.ok("bind", {"PodName": "preemptor", "PodNamespace": "default",
                                       "PodUID": preemptor["metadata"]["uid"], "Node": node}) == {"Error": ""}
            assert st.check_consistency() == []
    run(go())


def _fits(ext, gpus, rotate=0) -> list[str]:
    live = ext.state.cluster
    names = [n for i, n in enumerate(live.node_names) if live.free_gpus[i] >= gpus]
    r = rotate % max(1, len(names))
    return names[r:] + names[:r]


# ---------------------------------------------------------------------- gang flows, synthetic cluster
def _names(ext):
    return ext.state.node_names()


def test_members_in_shuffled_order_with_rotated_nodes_and_repeats_get_distinct_slots_in_one_rack():
    ext = make_ext()
    rng = random.Random(7)
    members = [member("train", i, 4) for i in range(4)]
    order = members * 2  # every member filtered twice
    rng.shuffle(order)

    async def go():
        async with Server(ext) as s:
            got = {}
            for k, pod in enumerate(order):
                nodes = _names(ext)
                nodes = nodes[k % len(nodes):] + nodes[:k % len(nodes)]
                resp = await s.ok("filter", filter_args(pod, nodes))
                (node,) = passing(resp)
                uid = pod["metadata"]["uid"]
                assert got.setdefault(uid, node) == node, "a repeated filter gives the same node"
            return got
    got = run(go())
    assert len(got) == 4 and len(set(got.values())) == 4
    res = ext.state.reservation("default/train")
    assert sorted(res.nodes) == sorted(got.values())
    assert len({n.rsplit("-n", 1)[0] for n in got.values()}) == 1, "4 x 8 GPUs fit one rack"


def test_a_gang_whose_members_differ_is_planned_again_around_its_leader_and_binds_whole():
    """A 2-GPU leader filtered (and waiting in bind) before its 8-GPU workers: the first worker has
    the gang planned again as two pod sets around the leader's slot; the leader's bind keeps
    waiting and completes with the workers'."""
    ext = make_ext()
    leader, workers = member("mixed", 0, 3, gpus=2), [member("mixed", i, 3, gpus=8) for i in (1, 2)]

    def bind(pod, node):
        return {"PodName": pod["metadata"]["name"], "PodNamespace": "default", "PodUID": pod["metadata"]["uid"],
                "Node": node}

    async def go():
        async with Server(ext) as s:
            (l_node,) = passing(await s.ok("filter", filter_args(leader, _names(ext))))
            early = asyncio.create_task(s.ok("bind", bind(leader, l_node)))
            await asyncio.sleep(0.05)
            w_nodes = [passing(await s.ok("filter", filter_args(w, _names(ext))))[0] for w in workers]
            assert not early.done()
            return l_node, w_nodes, await asyncio.gather(early, *(s.ok("bind", bind(w, n))
                                                                  for w, n in zip(workers, w_nodes)))
    l_node, w_nodes, results = run(go())
    assert results == [{"Error": ""}] * 3
    st = ext.state
    assert st.allocation(leader["metadata"]["uid"]).gpus == 2 and st.allocation(workers[0]["metadata"]["uid"]).gpus == 8
    assert {n.rsplit("-n", 1)[0] for n in [l_node, *w_nodes]} == {l_node.rsplit("-n", 1)[0]}, "18 GPUs in one rack"
    assert st.reservations() == {} and ext.counters["gang_makeup_replanned"] == 1 and st.check_consistency() == []


def test_completion_index_maps_to_slots_in_topology_order():
    ext = make_ext()
    members = [member("idx", i, 4, index=True) for i in range(4)]

    async def go():
        async with Server(ext) as s:
            out = {}
            for pod in reversed(members):  # the last index arrives first
                resp = await s.ok("filter", filter_args(pod, _names(ext)))
                out[pod["metadata"]["name"]] = passing(resp)[0]
            return out
    out = run(go())
    res = ext.state.reservation("default/idx")
    topo = ext.state.cluster.node_index
    assert [out[f"idx-{i}"] for i in range(4)] == sorted(res.nodes, key=topo.get)


def test_bind_waits_for_every_member_then_binds_the_gang_whole():
    ext = make_ext()
    members = [member("g", i, 4) for i in range(4)]

    async def go():
        async with Server(ext) as s:
            nodes = {}
            for pod in members:
                nodes[pod["metadata"]["uid"]] = passing(await s.ok("filter", filter_args(pod, _names(ext))))[0]
            tasks = []
            for pod in random.Random(3).sample(members, 4):
                uid = pod["metadata"]["uid"]
                tasks.append(asyncio.create_task(s.ok("bind", {"PodName": pod["metadata"]["name"],
                                                               "PodNamespace": "default", "PodUID": uid,
                                                               "Node": nodes[uid]})))
                await asyncio.sleep(0.05)
                if len(tasks) < 4:
                    assert ext.state.allocations() == {}, "nobody is bound before the last member arrives"
            return await asyncio.gather(*tasks)
    assert run(go()) == [{"Error": ""}] * 4
    assert len(ext.state.allocations()) == 4
    assert ext.state.reservation("default/g") is None
    assert ext.state.check_consistency() == []


def test_bind_barrier_times_out_keeps_the_reservation_and_completes_on_retry():
    ext = make_ext(bind_timeout_s=0.3)
    members = [member("slow", i, 3) for i in range(3)]

    async def go():
        async with Server(ext) as s:
            nodes = {}
            for pod in members:
                nodes[pod["metadata"]["uid"]] = passing(await s.ok("filter", filter_args(pod, _names(ext))))[0]

            def bind(pod):
                uid = pod["metadata"]["uid"]
                return s.ok("bind", {"PodName": pod["metadata"]["name"], "PodNamespace": "default", "PodUID": uid,
                                     "Node": nodes[uid]})
            first = await asyncio.gather(bind(members[0]), bind(members[1]))
            assert all("2 of 3 members reached bind" in r["Error"] for r in first), first
            assert ext.state.reservation("default/slow") is not None
            assert ext.state.allocations() == {}
            # the scheduler retries the whole cycle for the failed members; the third arrives
            for pod in members[:2]:
                assert passing(await s.ok("filter", filter_args(pod, _names(ext))))[0] == nodes[pod["metadata"]["uid"]]
            return await asyncio.gather(*(bind(p) for p in members))
    assert run(go()) == [{"Error": ""}] * 3
    assert len(ext.state.allocations()) == 3


def test_gang_timeout_releases_a_gang_that_never_completes():
    clock = FakeClock()
    ext = make_ext(clock=clock, gang_timeout_s=120, ttl=600)
    pod = member("stuck", 0, 2)

    async def go():
        async with Server(ext) as s:
            await s.ok("filter", filter_args(pod, _names(ext)))
            assert ext.state.reservation("default/stuck") is not None
            clock.t += 121
            other = make_pod("solo", gpus=8)
            await s.ok("filter", filter_args(other, _names(ext)))  # any request ticks
    run(go())
    assert ext.state.reservation("default/stuck") is None
    assert ext.state.stats()["reserved_gpus"] == 0


def test_reservation_expiry_frees_capacity_for_other_pods():
    clock = FakeClock()
    ext = make_ext(synthetic(blocks=1, racks=1, nodes=2), clock=clock, ttl=30)

    async def go():
        async with Server(ext) as s:
            await s.ok("filter", filter_args(member("hold", 0, 2), _names(ext)))
            blocked = await s.ok("filter", filter_args(make_pod("other"), _names(ext)))
            assert passing(blocked) == [] and blocked["Error"] == ""
            assert set(blocked["FailedNodes"].values()) == {"gangplace: capacity reserved for a gang"}
            big = await s.ok("filter", filter_args(member("late", 0, 2), _names(ext)))
            assert len(big["FailedNodes"]) == 2 and big["Error"] == ""
            # opted in: only reservations block them, so a temporary Error (retried on a timer)
            object.__setattr__(ext.config, "reservation_blocked_error", True)
            blocked = await s.ok("filter", filter_args(make_pod("other"), _names(ext)))
            assert blocked["Error"] == "gangplace: the free capacity is reserved for gangs being scheduled"
            big = await s.ok("filter", filter_args(member("late", 0, 2), _names(ext)))
            assert big["Error"] == "gangplace: gang default/late waits for capacity reserved for other gangs"
            object.__setattr__(ext.config, "reservation_blocked_error", False)
            clock.t += 31
            freed = await s.ok("filter", filter_args(make_pod("other"), _names(ext)))
            return passing(freed)
    assert len(run(go())) == 2


def test_member_whose_node_is_not_offered_is_replanned_around_the_bound_members():
    ext = make_ext(synthetic(blocks=2, racks=2, nodes=8))
    members = [member("mv", i, 4) for i in range(4)]

    async def go():
        async with Server(ext) as s:
            nodes = {}
            for pod in members[:3]:
                nodes[pod["metadata"]["uid"]] = passing(await s.ok("filter", filter_args(pod, _names(ext))))[0]
            res = ext.state.reservation("default/mv")
            missing = next(x for x in res.nodes if x not in nodes.values())
            # the gang mates' nodes are not offered either (full of their assumed pods)
            offered = [n for n in _names(ext) if n != missing and n not in nodes.values()]
            resp = await s.ok("filter", filter_args(members[3], offered))
            return nodes, missing, passing(resp)
    nodes, missing, got = run(go())
    assert len(got) == 1 and got[0] != missing
    res = ext.state.reservation("default/mv")
    assert len(res.slots) == 4 and len(set(res.nodes)) == 4 and missing not in res.nodes
    for uid, node in nodes.items():
        assert res.slot_of(uid).node == node, "the other members keep their slots"
    assert got[0].rsplit("-n", 1)[0] == next(iter(nodes.values())).rsplit("-n", 1)[0], "re-planned in the same rack"
    assert ext.state.check_consistency() == []


def test_deleted_member_gives_its_slot_to_its_replacement():
    ext = make_ext()

    async def go():
        async with Server(ext) as s:
            old = member("del", 0, 2, uid="old-uid")
            node = passing(await s.ok("filter", filter_args(old, _names(ext))))[0]
            await s.ok("filter", filter_args(member("del", 1, 2), _names(ext)))
            ext.pod_deleted("old-uid")
            new = member("del", 0, 2, uid="new-uid")
            return node, passing(await s.ok("filter", filter_args(new, _names(ext))))[0]
    old_node, new_node = run(go())
    assert old_node == new_node


def test_two_gangs_racing_get_disjoint_racks():
    ext = make_ext(synthetic(blocks=1, racks=2, nodes=4))
    a = [member("a", i, 4, annotations={"gangplace.dev/topology-required": "rack"}) for i in range(4)]
    b = [member("b", i, 4, annotations={"gangplace.dev/topology-required": "rack"}) for i in range(4)]
    order = [p for pair in zip(a, b) for p in pair]

    async def go():
        async with Server(ext) as s:
            return await asyncio.gather(*(s.ok("filter", filter_args(p, _names(ext))) for p in order))
    results = run(go())
    assert all(len(passing(r)) == 1 for r in results)
    ra, rb = ext.state.reservation("default/a"), ext.state.reservation("default/b")
    racks_a = {n.rsplit("-n", 1)[0] for n in ra.nodes}
    racks_b = {n.rsplit("-n", 1)[0] for n in rb.nodes}
    assert len(racks_a) == 1 and len(racks_b) == 1 and racks_a != racks_b
    assert ext.state.check_consistency() == []


def test_gang_that_never_fits_is_unresolvable_and_one_that_does_not_fit_now_is_failed():
    ext = make_ext(synthetic(blocks=1, racks=2, nodes=2))  # 32 GPUs

    async def go():
        async with Server(ext) as s:
            never = await s.ok("filter", filter_args(member("huge", 0, 5), _names(ext)))
            for i, node in enumerate(_names(ext)[:3]):  # running pods, not a reservation
                ext.state.bind(f"run-{i}", node, gpus=8)
            now = await s.ok("filter", filter_args(member("late", 0, 2), _names(ext)))
            return never, now
    never, now = run(go())
    assert never["FailedNodes"] == {} and len(never["FailedAndUnresolvableNodes"]) == 4
    assert len(set(never["FailedAndUnresolvableNodes"].values())) == 1
    assert "not even in the empty cluster" in next(iter(never["FailedAndUnresolvableNodes"].values()))
    assert now["FailedAndUnresolvableNodes"] == {} and len(now["FailedNodes"]) == 4
    assert len(set(now["FailedNodes"].values())) == 1
    assert now["Error"] == "" and ext.state.reservation("default/late") is None


def test_not_ready_answers_error_and_unknown_nodes_are_not_yet_synced():
    ext = make_ext()

    async def go():
        async with Server(ext) as s:
            ext.ready = False
            r1 = await s.ok("filter", filter_args(member("g", 0, 1), _names(ext)))
            ext.ready = True
            r2 = await s.ok("filter", filter_args(make_pod("p"), ["ghost", _names(ext)[0]]))
            return r1, r2
    r1, r2 = run(go())
    assert r1["Error"] == "gangplace: cluster state not synced yet" and r1["NodeNames"] == []
    assert r2["FailedNodes"] == {"ghost": "gangplace: node not yet synced"}
    assert passing(r2) == [_names(ext)[0]]


def test_non_gang_pods_get_bottom_up_best_fit_scores_that_keep_free_nodes_whole():
    ext = make_ext(synthetic(blocks=1, racks=2, nodes=2))
    ext.state.bind("x", "b0-r1-n0", gpus=4)  # rack r1 is partly used
    ext.state.bind("y", "b0-r0-n1", gpus=7)  # and r0-n1 cannot hold 2 more

    async def go():
        async with Server(ext) as s:
            return await s.ok("prioritize", filter_args(make_pod("small", gpus=2), _names(ext) + ["ghost"]))
    out = run(go())
    assert [x["Host"] for x in out] == _names(ext) + ["ghost"]
    scores = {x["Host"]: x["Score"] for x in out}
    assert scores["b0-r0-n1"] == 0 and scores["ghost"] == 0
    # bottom-up best fit (docs/placement.md): r1-n0 (4 free) is left with 2, the tightest node; the
    # two empty nodes tie on the node, and the one in the fuller rack (r0: 9 free vs r1: 12) comes next
    assert scores["b0-r1-n0"] == 10
    assert scores["b0-r1-n0"] > scores["b0-r0-n0"] > scores["b0-r1-n1"] > 0


def test_restart_in_file_mode_never_double_books(tmp_path):
    members = [member("j", i, 4) for i in range(4)]

    async def bind_gang(ext):
        async with Server(ext) as s:
            nodes = {}
            for pod in members:
                nodes[pod["metadata"]["uid"]] = passing(await s.ok("filter", filter_args(pod, _names(ext))))[0]
            return nodes, await asyncio.gather(*(s.ok("bind", {
                "PodName": p["metadata"]["name"], "PodNamespace": "default", "PodUID": p["metadata"]["uid"],
                "Node": nodes[p["metadata"]["uid"]]}) for p in members))
    ext = make_ext(synthetic(blocks=1, racks=2, nodes=4), journal_dir=tmp_path)
    nodes, results = run(bind_gang(ext))
    assert results == [{"Error": ""}] * 4
    del ext  # a crash: nothing closed
    ext2 = make_ext(synthetic(blocks=1, racks=2, nodes=4), journal_dir=tmp_path)
    assert {r.node for r in ext2.state.allocations().values()} == set(nodes.values())
    other = [member("k", i, 5) for i in range(5)]

    async def go():
        async with Server(ext2) as s:
            return await s.ok("filter", filter_args(other[0], _names(ext2)))
    resp = run(go())
    assert len(resp["FailedNodes"]) == 8, "only 4 nodes are free: a 5-node gang cannot fit now"


def test_a_64_pod_gang_is_reserved_bound_whole_and_topology_optimal():
    # two blocks of 4 racks x 8 nodes x 8 GPUs; block b0 is partly used, so the optimum is all of b1
    ext = make_ext(synthetic(blocks=2, racks=4, nodes=8), bind_timeout_s=20)
    for r in range(4):
        ext.state.bind(f"bg-{r}", f"b0-r{r}-n0", gpus=2)
    members = [member("big", i, 64, gpus=4) for i in range(64)]
    rng = random.Random(11)

    async def go():
        async with Server(ext) as s:
            nodes = {}
            for pod in rng.sample(members, 64):
                names = _names(ext)
                rng.shuffle(names)
                nodes[pod["metadata"]["uid"]] = passing(await s.ok("filter", filter_args(pod, names)))[0]
            res = ext.state.reservation("default/big")
            assert res.placement.optimal and res.placement.domains_used["block"] == 1
            assert res.placement.domains_used["rack"] == 4 and res.placement.domains_used["node"] == 32
            return await asyncio.gather(*(s.ok("bind", {
                "PodName": p["metadata"]["name"], "PodNamespace": "default", "PodUID": p["metadata"]["uid"],
                "Node": nodes[p["metadata"]["uid"]]}) for p in rng.sample(members, 64)))
    assert run(go()) == [{"Error": ""}] * 64
    allocs = [r for r in ext.state.allocations().values() if r.gang == "default/big"]
    assert len(allocs) == 64 and {r.node.split("-")[0] for r in allocs} == {"b1"}
    assert ext.state.check_consistency() == []


def test_partial_gang_victims_are_accepted_only_when_nothing_better_and_the_rest_is_evicted():
    ext = make_ext(synthetic(blocks=1, racks=1, nodes=2))
    for i in range(2):
        ext.state.bind(f"m{i}", f"b0-r0-n{i}", gpus=8, gang="default/low", namespace="default", name=f"low-{i}")
    preemptor = make_pod("vip", gpus=8)
    meta = {f"b0-r0-n{i}": {"Pods": [{"UID": f"m{i}"}], "NumPDBViolations": 0} for i in range(2)}

    async def go():
        async with Server(ext) as s:
            resp = await s.ok("preempt", {"Pod": preemptor, "NodeNameToVictims": None, "NodeNameToMetaVictims": meta})
            assert set(resp["NodeNameToMetaVictims"]) == set(meta)
            # the scheduler picks n0 and deletes m0; the preemptor comes back nominated to n0
            ext.state.unbind("m0")
            nominated = make_pod("vip", gpus=8, nominated="b0-r0-n0")
            resp = await s.ok("filter", filter_args(nominated, ["b0-r0-n0"]))
            return resp
    resp = run(go())
    assert passing(resp) == ["b0-r0-n0"]
    assert ext.state.allocation("m1") is None, "the rest of the broken gang was evicted"


# ---------------------------------------------------------------------- bad input
BAD_BODIES = [
    (b"not json", "unparseable JSON"),
    (b"[]", "not an object"),
    (b'{"Pod": null, "NodeNames": ["a"]}', "no pod"),
    (b'{"Pod": {"metadata": {"name": "x"}}, "NodeNames": ["a"]}', "pod without uid"),
    (b'{"Pod": {"metadata": {"name": "x", "uid": "u"}}, "NodeNames": "a"}', "node names not a list"),
    (b'{"Pod": {"metadata": {"name": "x", "uid": "u"}}, "Nodes": null, "NodeNames": null}', "no nodes at all"),
    (b'{"Pod": {"metadata": {"name": "x", "uid": "u"}}, "Nodes": {"items": [{}]}}', "node without a name"),
]


@pytest.mark.parametrize("verb", ["filter", "prioritize", "preempt", "bind"])
@pytest.mark.parametrize("body, why", BAD_BODIES, ids=[b[1] for b in BAD_BODIES])
def test_bad_bodies_get_400_and_change_nothing(verb, body, why):
    ext = make_ext()
    v = ext.state.version
    if verb == "preempt" and why in ("node names not a list", "no nodes at all", "node without a name"):
        body = b'{"Pod": {"metadata": {"name": "x", "uid": "u"}}, "NodeNameToMetaVictims": {"n": {"Pods": [{}]}}}'
    if verb == "bind" and why not in ("unparseable JSON", "not an object"):
        body = b'{"PodName": "x", "PodNamespace": "default", "PodUID": "", "Node": "n"}'

    async def go():
        async with Server(ext) as s:
            return await s.post(verb, body)
    status, text = run(go())
    assert status == 400 and text.startswith("gangplace: ")
    assert ext.state.version == v and ext.state.reservations() == {}


@pytest.mark.parametrize("labels, annotations, field", [
    ({"gangplace.dev/gang": "g", "gangplace.dev/size": "many"}, {}, "gangplace.dev/size"),
    ({"gangplace.dev/gang": "g"}, {}, "gangplace.dev/size"),
    ({"gangplace.dev/gang": "g", "gangplace.dev/size": "2"}, {"gangplace.dev/topology-required": "galaxy"},
     "gangplace.dev/topology-required"),
    ({"gangplace.dev/gang": "g", "gangplace.dev/size": "2"}, {"gangplace.dev/slice-size": "2"},
     "gangplace.dev/slice-topology"),
], ids=["size not a number", "size missing", "unknown level", "slice size without level"])
def test_bad_gang_labels_are_unresolvable_on_every_node_with_one_message(labels, annotations, field):
    ext = make_ext()
    v = ext.state.version
    pod = make_pod("bad", labels=labels, annotations=annotations)

    async def go():
        async with Server(ext) as s:
            f = await s.ok("filter", filter_args(pod, _names(ext)))
            p = await s.ok("prioritize", filter_args(pod, _names(ext)))
            return f, p
    resp, scores = run(go())
    reasons = set(resp["FailedAndUnresolvableNodes"].values())
    assert len(resp["FailedAndUnresolvableNodes"]) == len(_names(ext)) and len(reasons) == 1
    assert field in reasons.pop()
    assert all(x["Score"] == 0 for x in scores)
    assert ext.state.version == v


def test_bind_of_a_pod_filter_never_saw_answers_error():
    ext = make_ext()
    resp = run(_one(ext, "bind", {"PodName": "x", "PodNamespace": "default", "PodUID": "nope",
                                  "Node": _names(ext)[0]}))
    assert "not seen by filter" in resp["Error"] and ext.state.allocations() == {}


def test_make_app_serves_the_four_verbs():
    ext = make_ext()
    app = make_app(ext)
    paths = sorted(r.resource.canonical for r in app.router.routes())
    assert paths == ["/bind", "/filter", "/preempt", "/prioritize"]


# ---------------------------------------------------------------------- randomized invariants
@pytest.mark.parametrize("seed", range(6))
def test_random_gang_traffic_keeps_the_state_consistent_and_gangs_whole(seed):
    """Gangs arrive, their members are filtered in random interleavings (some twice), bind in
    random order (some never do), finished gangs leave, time passes. After every step: the
    state's accounting holds, no node is overcommitted, and every gang is bound whole or not at all."""
    rng = random.Random(seed)
    clock = FakeClock()
    ext = make_ext(synthetic(blocks=2, racks=2, nodes=4), clock=clock, ttl=30, gang_timeout_s=90,
                   bind_timeout_s=0.05)
    st = ext.state
    gangs: dict[str, list[dict]] = {}
    chosen: dict[str, str] = {}

    def check():
        assert st.check_consistency() == []
        live = st.cluster
        used = {}
        for r in st.allocations().values():
            used[r.node] = used.get(r.node, 0) + r.gpus
        for node, gpus in used.items():
            assert gpus <= int(live.cap_gpus[live.node_index[node]]), f"{node} overcommitted"
        for name, pods in gangs.items():
            bound = sum(st.allocation(p["metadata"]["uid"]) is not None for p in pods)
            assert bound in (0, len(pods)), f"gang {name}: {bound} of {len(pods)} bound"

    async def go():
        pending_binds = []
        for step in range(60):
            op = rng.random()
            if op < 0.25 or not gangs:
                name = f"g{step}"
                size, gpus = rng.randint(1, 6), rng.choice([1, 2, 4, 8])
                gangs[name] = [member(name, i, size, gpus=gpus) for i in range(size)]
            elif op < 0.65:
                name = rng.choice(list(gangs))
                pod = rng.choice(gangs[name])
                names = _names(ext)
                rng.shuffle(names)
                out = await ext.filter(filter_args(pod, names))
                if out["NodeNames"]:
                    chosen[pod["metadata"]["uid"]] = out["NodeNames"][0]
            elif op < 0.85:  # the scheduler binds the members it has filtered (in random order)
                pods = [p for p in gangs[rng.choice(list(gangs))] if p["metadata"]["uid"] in chosen]
                rng.shuffle(pods)
                for pod in pods:
                    uid = pod["metadata"]["uid"]
                    pending_binds.append(asyncio.ensure_future(ext.bind({
                        "PodName": pod["metadata"]["name"], "PodNamespace": "default", "PodUID": uid,
                        "Node": chosen[uid]})))
            elif op < 0.93:
                done = [n for n, ps in gangs.items() if all(st.allocation(p["metadata"]["uid"]) for p in ps)]
                if done:  # a finished job: all its pods go
                    name = rng.choice(done)
                    for p in gangs.pop(name):
                        st.unbind(p["metadata"]["uid"])
                        ext.pod_deleted(p["metadata"]["uid"])
                        chosen.pop(p["metadata"]["uid"], None)
            else:
                clock.t += rng.choice([5, 20, 40])
                ext.tick()
            await asyncio.sleep(0)
            check()
        await asyncio.gather(*pending_binds)
        check()
    run(go())
    assert ext.counters.get("gang_bound", 0) >= 1, ext.counters


def test_an_elastic_gang_starts_with_as_many_members_as_fit():
    ext = make_ext(synthetic(blocks=1, racks=1, nodes=3))
    members = [make_pod(f"el-{i}", labels={"gangplace.dev/gang": "el", "gangplace.dev/size": "4",
                                          "gangplace.dev/min-size": "2"}) for i in range(4)]

    async def go():
        async with Server(ext) as s:
            nodes = {}
            for pod in members:
                resp = await s.ok("filter", filter_args(pod, _names(ext)))
                if passing(resp):
                    nodes[pod["metadata"]["uid"]] = passing(resp)[0]
                else:
                    extra = resp
            assert len(nodes) == 3 and len(set(nodes.values())) == 3
            assert set(extra["FailedNodes"].values()) == {"gangplace: gang default/el has no free slot: all its "
                                                          "members are placed"}
            return await asyncio.gather(*(s.ok("bind", {
                "PodName": p["metadata"]["name"], "PodNamespace": "default", "PodUID": p["metadata"]["uid"],
                "Node": nodes[p["metadata"]["uid"]]}) for p in members if p["metadata"]["uid"] in nodes))
    assert run(go()) == [{"Error": ""}] * 3
    assert len(ext.state.gang_members("default/el")) == 3


def test_a_gang_bound_in_file_mode_is_on_disk_when_acknowledged_and_a_repeated_bind_succeeds(tmp_path):
    # group commit: the gang's lines are written under the state lock and fsync'd in a thread before
    # the members hear "bound"; a member whose answer was lost retries and gets success, no new line
    ext = make_ext(synthetic(blocks=1, racks=2, nodes=4), journal_dir=tmp_path)
    members = [member("d", i, 4) for i in range(4)]

    async def go():
        async with Server(ext) as s:
            nodes = {}
            for pod in members:
                nodes[pod["metadata"]["uid"]] = passing(await s.ok("filter", filter_args(pod, _names(ext))))[0]
            binds = [{"PodName": p["metadata"]["name"], "PodNamespace": "default", "PodUID": p["metadata"]["uid"],
                      "Node": nodes[p["metadata"]["uid"]]} for p in members]
            first = await asyncio.gather(*(s.ok("bind", b) for b in binds))
            journal = ext.state._journal
            durable_at_ack = journal.synced >= journal.written
            lines = journal.lines
            again = await s.ok("bind", binds[0])
            return first, durable_at_ack, lines, journal.lines, again
    first, durable_at_ack, lines_before, lines_after, again = run(go())
    assert first == [{"Error": ""}] * 4 and durable_at_ack
    assert again == {"Error": ""} and lines_after == lines_before
    assert ext.counters.get("bind_repeat") == 1
    # a crash after the lines were written: the restarted extender has never seen the pods, and the
    # scheduler's retry of a bind (same pod, same node) is still a success
    ext2 = make_ext(synthetic(blocks=1, racks=2, nodes=4), journal_dir=tmp_path)
    assert len(ext2.state.allocations()) == 4
    uid, rec = next(iter(ext2.state.allocations().items()))

    async def retry():
        async with Server(ext2) as s:
            return (await s.ok("bind", {"PodName": rec.name, "PodNamespace": "default", "PodUID": uid,
                                        "Node": rec.node}),
                    await s.ok("bind", {"PodName": rec.name, "PodNamespace": "default", "PodUID": uid,
                                        "Node": next(n for n in _names(ext2) if n != rec.node)}))
    same, other = run(retry())
    assert same == {"Error": ""}
    assert other["Error"], "another node is a new bind: the pod must go through filter first"


def test_an_extender_verb_past_its_deadline_answers_its_error_shape():
    # the service's middleware puts the deadline on the request; the extender answers it (HTTP 200)
    from gangplace.service.extender import DEADLINE_KEY, Deadline
    ext = make_ext()

    async def stalled(args):
        await asyncio.sleep(5)
    ext.filter = stalled  # the handler properties read the bound method when the routes are added

    @web.middleware
    async def deadline(request, handler):
        request[DEADLINE_KEY] = Deadline(asyncio.get_running_loop().time() + 0.2, 0.2)
        return await handler(request)

    async def go():
        app = web.Application(middlewares=[deadline])
        add_routes(app, ext)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with ClientSession() as session:
                out = []
                for body in (filter_args(member("t", 0, 2), _names(ext)),
                             filter_args(member("t", 0, 2), _names(ext), full_nodes=[])):
                    async with session.post(f"http://127.0.0.1:{port}/filter", data=orjson.dumps(body)) as r:
                        out.append((r.status, orjson.loads(await r.read())))
                return out
        finally:
            await runner.cleanup()
    (s1, names_mode), (s2, nodes_mode) = run(go())
    msg = "gangplace: filter took longer than 0.2 s; retrying"
    assert s1 == s2 == 200
    assert names_mode == {"Nodes": None, "NodeNames": [], "FailedNodes": {}, "FailedAndUnresolvableNodes": {},
                          "Error": msg}
    assert nodes_mode == {"Nodes": {"metadata": {}, "items": []}, "NodeNames": None, "FailedNodes": {},
                          "FailedAndUnresolvableNodes": {}, "Error": msg}
    assert ext.counters["timed_out"] == 2


def test_single_pod_one_node_passes_only_the_best_fit_node_so_the_scheduler_skips_prioritize():
    ext = make_ext(single_pod_one_node=True)
    names = ext.state.node_names()
    ext.state.bind("half", "b1-r2-n3", gpus=4)  # the one partly used node: best fit for a 1-GPU pod
    res = run(ext.filter(filter_args(make_pod("solo", gpus=1), names)))
    assert res["NodeNames"] == ["b1-r2-n3"] and res["Error"] == ""
    plain = make_ext()  # the engine default: every node the pod fits passes (prioritize then scores them)
    plain.state.bind("half", "b1-r2-n3", gpus=4)
    assert len(run(plain.filter(filter_args(make_pod("solo", gpus=1), names)))["NodeNames"]) == len(names)

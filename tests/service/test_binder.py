"""service/binder.py: FileBinder commits to the state; KubeBinder calls the API (a fake here)."""
from __future__ import annotations

import asyncio

from gangplace.engine import Cluster, NodeSpec
from gangplace.engine.live.state import BindRecord, ClusterState
from gangplace.service.binder import FileBinder, KubeBinder, PodRef


def state() -> ClusterState:
    return ClusterState(Cluster(["rack"], [NodeSpec(f"n{i}", {"rack": "r0"}, gpus=8) for i in range(2)]))


class FakeKube:
    """KubeClient's bind/evict: the error strings the real one returns for the given HTTP statuses."""

    def __init__(self, fail: dict[str, int]):
        self.fail = fail
        self.bindings, self.evictions = [], []

    async def bind(self, namespace, name, uid, node):
        if name in self.fail:
            return f"HTTP {self.fail[name]} Conflict"
        self.bindings.append((namespace, name, uid, node))
        return None

    async def evict(self, namespace, name):
        if self.fail.get(name) == 404:
            return None  # KubeClient.evict: already gone
        if name in self.fail:
            return f"HTTP {self.fail[name]} TooManyRequests"
        self.evictions.append((namespace, name))
        return None


def test_kube_binder_posts_bindings_records_them_and_reports_failures_per_pod():
    st = state()
    core = FakeKube({"b": 409})
    binder = KubeBinder(st, core)
    recs = [BindRecord("ua", "n0", 8, gang="ns/g", namespace="ns", name="a"),
            BindRecord("ub", "n1", 8, gang="ns/g", namespace="ns", name="b")]
    errors = asyncio.run(binder.bind(recs))
    assert errors[0] is None and "HTTP 409" in errors[1]
    assert core.bindings == [("ns", "a", "ua", "n0")]
    assert st.allocation("ua").node == "n0" and st.allocation("ub") is None


def test_kube_binder_evicts_through_the_eviction_api_and_ignores_pods_already_gone():
    core = FakeKube({"gone": 404, "pdb": 429})
    errors = asyncio.run(KubeBinder(state(), core).evict(
        [PodRef("ns", "a", "u1"), PodRef("ns", "gone", "u2"), PodRef("ns", "pdb", "u3")]))
    assert errors[:2] == [None, None] and "HTTP 429" in errors[2]
    assert core.evictions == [("ns", "a")]


def test_file_binder_binds_all_or_nothing():
    st = state()
    binder = FileBinder(st)
    ok = [BindRecord("a", "n0", 8), BindRecord("b", "n1", 8)]
    assert asyncio.run(binder.bind(ok)) == [None, None]
    too_much = [BindRecord("c", "n0", 1), BindRecord("d", "n1", 1)]
    errors = asyncio.run(binder.bind(too_much))
    assert all(errors) and st.allocation("c") is None
    assert asyncio.run(binder.evict([PodRef("", "", "a")])) == [None] and st.allocation("a") is None


class SlowKube(FakeKube):
    """A Binding that returns only when ``release`` is set: the watch can report the pod meanwhile."""

    def __init__(self):
        super().__init__({})
        self.release = asyncio.Event()
        self.posted = asyncio.Event()

    async def bind(self, namespace, name, uid, node):
        self.posted.set()
        await self.release.wait()
        return await super().bind(namespace, name, uid, node)


def _bind_while_the_watch_deletes(is_gone_of_sync: bool) -> ClusterState:
    from gangplace.service.k8s_sync import SyncState
    st = state()
    sync = SyncState(st, levels=["rack"])
    kube = SlowKube()
    binder = KubeBinder(st, kube, is_gone=sync.was_deleted if is_gone_of_sync else None)
    pod = {"metadata": {"uid": "ua", "name": "a", "namespace": "ns"},
           "spec": {"nodeName": "n0"}, "status": {"phase": "Running"}}

    async def run():
        task = asyncio.create_task(binder.bind([BindRecord("ua", "n0", 8, namespace="ns", name="a")]))
        await kube.posted.wait()
        sync.apply("pods", {"type": "DELETED", "object": pod})  # force-deleted while the Binding is in flight
        kube.release.set()
        assert await task == [None]
    asyncio.run(run())
    return st


def test_a_pod_deleted_while_its_binding_is_in_flight_is_not_counted_when_the_binding_returns():
    st = _bind_while_the_watch_deletes(True)
    assert st.allocation("ua") is None
    assert st.stats()["free_gpus"] == 16
    # without the watch's tombstones (as before) the late record leaks the pod's GPUs forever
    leaked = _bind_while_the_watch_deletes(False)
    assert leaked.allocation("ua") is not None and leaked.stats()["free_gpus"] == 8

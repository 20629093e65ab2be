"""service/podgroup_status.py and its trigger in service/k8s_sync.py: a coscheduling PodGroup's
status says "scheduled" once its bound pods reach minMember, written once, never over a later phase."""
from __future__ import annotations

import asyncio

import pytest
from gangplace.engine.model.cluster import Cluster
from gangplace.engine.model.types import NodeSpec
from gangplace.engine.live.state import ClusterState
from gangplace.service.k8s_sync import SyncState
from gangplace.service.podgroup_status import PodGroupStatusWriter, status_path


class RecordingKube:
    def __init__(self, fail: bool = False):
        self.calls: list[tuple] = []
        self.fail = fail

    async def request(self, method, path, body=None, *, content_type="application/json"):
        self.calls.append((method, path, body, content_type))
        if self.fail:
            raise RuntimeError("403 Forbidden")


@pytest.mark.parametrize("fail", [False, True], ids=["the status subresource is patched with the CRD's phase",
                                                     "a refused write is counted, not raised"])
def test_the_writer_patches_the_status_subresource(fail):
    kube = RecordingKube(fail)
    writer = PodGroupStatusWriter(kube)

    async def go():
        writer.scheduled("ml", "js", 9)
        await writer.drain()
    asyncio.run(go())
    assert kube.calls == [("PATCH", "/apis/scheduling.x-k8s.io/v1alpha1/namespaces/ml/podgroups/js/status",
                           {"status": {"phase": "Scheduling"}}, "application/merge-patch+json")]
    assert (writer.written, writer.failed) == ((0, 1) if fail else (1, 0))
    assert status_path("a", "b").endswith("/namespaces/a/podgroups/b/status")


def synced_sync() -> tuple[SyncState, list]:
    state = ClusterState(Cluster(["rack"], [NodeSpec(f"n{i}", {"rack": "r0"}, gpus=8, cpu=64_000, memory=2**39)
                                            for i in range(4)]))
    sync = SyncState(state, levels=["rack"])
    told: list = []
    sync.on_group_scheduled = lambda ns, name, bound: told.append((ns, name, bound))
    return sync, told


def group(name: str, min_member: int, phase: str = "") -> dict:
    return {"type": "ADDED", "object": {"metadata": {"name": name, "namespace": "ml"}, "spec": {"minMember": min_member},
                                        "status": {"phase": phase} if phase else {}}}


def bound_pod(name: str, group_name: str, node: str, gpus: int = 8, label: str = "scheduling.x-k8s.io/pod-group"):
    return {"type": "MODIFIED", "object": {
        "metadata": {"name": name, "namespace": "ml", "uid": f"u-{name}", "labels": {label: group_name}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}]},
        "status": {"phase": "Pending"}}}


def test_a_group_is_told_scheduled_once_when_its_bound_pods_reach_min_member_its_leader_included():
    sync, told = synced_sync()
    sync.apply("podgroups", group("js", 3))
    sync.apply("pods", bound_pod("leader", "js", "n0", gpus=0))
    sync.apply("pods", bound_pod("w0", "js", "n1"))
    assert told == []
    sync.apply("pods", bound_pod("w1", "js", "n2"))
    assert told == [("ml", "js", 3)]
    sync.apply("pods", bound_pod("w1", "js", "n2"))  # a repeated event before the watch shows the phase
    assert told == [("ml", "js", 3)]
    sync.apply("podgroups", {"type": "MODIFIED", "object": group("js", 3, "Scheduling")["object"]})
    assert sync.pod_group_phase[("ml", "js")] == "Scheduling"


@pytest.mark.parametrize("phase, label", [
    ("Running", "scheduling.x-k8s.io/pod-group"),
    ("", "scheduling.k8s.io/group-name"),
], ids=["a group whose status is past scheduled is left alone (after a restart, say)",
        "a Volcano group's status is Volcano's"])
def test_groups_whose_status_is_not_gangplaces_to_write(phase, label):
    sync, told = synced_sync()
    sync.apply("podgroups", group("g", 1, phase))
    sync.apply("pods", bound_pod("p", "g", "n0", label=label))
    assert told == []

"""service/k8s_sync.py: recorded-style watch events applied to a ClusterState, no cluster needed.

Node and Pod objects come from the kube-scheduler fixtures (real API shapes); events are
wrapped the way the API server streams them: ``{"type": ..., "object": ...}``.
"""
from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import orjson
import pytest
from gangplace.engine.model.cluster import Cluster
from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.errors import InvalidRequest
from gangplace.service.dra import DRA_KINDS
from gangplace.service.gangs import parse_pod
from gangplace.service.k8s_sync import (
    Gone,
    KubeWatcher,
    SyncState,
    node_spec,
    slim_node,
    slim_pod,
)
from gangplace.service.kube_client import ApiError
from gangplace.service.topology_presets import resolve_levels

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kube-scheduler-extender"
NODES = json.loads((FIXTURES / "filter.nodecache-false.request.json").read_text())["Nodes"]["items"]
VICTIMS = json.loads((FIXTURES / "preempt.nodecache-false.request.json").read_text())["NodeNameToVictims"]
PODS = [p for v in VICTIMS.values() for p in v["Pods"]]  # bound, Running pods in the real API shape
PREEMPTOR = json.loads((FIXTURES / "preempt.nodecache-false.request.json").read_text())["Pod"]


def fresh(**kw) -> tuple[SyncState, ClusterState]:
    state = ClusterState(Cluster((), []))
    return SyncState(state, **kw), state


def synced(**kw) -> tuple[SyncState, ClusterState]:
    sync, state = fresh(**kw)
    sync.relist("nodes", NODES, "200")
    sync.relist("pods", PODS, "250")
    for kind in ("podgroups", "volcanopodgroups", "workloadpodgroups", "workloads", *DRA_KINDS):
        sync.relist(kind, [], "1")
    return sync, state


def ev(kind_type: str, obj) -> dict:
    return {"type": kind_type, "object": obj}


def node(name: str):
    return copy.deepcopy(next(n for n in NODES if n["metadata"]["name"] == name))


def pod(name: str):
    return copy.deepcopy(next(p for p in PODS if p["metadata"]["name"] == name))


def test_recorded_nodes_become_the_cluster_with_their_topology_and_allocatable():
    sync, state = fresh()
    sync.relist("nodes", NODES, "200")
    c = state.cluster
    assert sync.levels.names == ("block", "accelerator")
    assert c.n_nodes == 6 and c.levels == ("block", "accelerator")
    i = c.node_index["rack-b-node-2"]
    assert (int(c.cap_gpus[i]), int(c.cap_cpu[i]), int(c.cap_mem[i]), int(c.cap_pods[i])) == (8, 128_000, 2**40, 110)
    assert c.node_path(i) == "block-1/nvl-rack-b/rack-b-node-2"
    assert all(c.schedulable)
    assert sync.resource_version["nodes"] == "200"


def test_first_full_sync_needs_every_kind_and_fires_once():
    calls = []
    sync, state = fresh(on_synced=lambda: calls.append(1))
    sync.relist("nodes", NODES, "1")
    sync.relist("pods", [], "1")
    assert not sync.synced and calls == []
    sync.relist("podgroups", [], "1")
    assert not sync.synced  # the Volcano PodGroups too (a cluster without the CRD lists none)
    sync.relist("volcanopodgroups", [], "1")
    sync.relist("podgroups", [], "2")
    sync.relist("workloadpodgroups", [], "1")
    assert not sync.synced  # the Workload API's PodGroups and Workloads too (none where the API is off)
    sync.relist("workloads", [], "1")
    for kind in DRA_KINDS:
        assert not sync.synced  # and the DRA kinds (a cluster without resource.k8s.io/v1 lists none)
        sync.relist(kind, [], "1")
    assert sync.synced and calls == [1]


def test_bound_pods_hold_their_requests_with_their_gang():
    sync, state = synced()
    assert state.stats()["allocated_gpus"] == 48
    a0 = pod("job-a-0")
    rec = state.allocation(a0["metadata"]["uid"])
    assert rec.node == a0["spec"]["nodeName"] and rec.gpus == 8 and rec.cpu == 1000 and rec.memory == 2**30
    assert rec.gang == "default/job-a" and rec.priority == 100 and rec.name == "job-a-0"
    assert state.check_consistency() == []


def test_a_bound_pods_start_time_ages_its_node():
    import time as _time
    from datetime import datetime, timezone
    sync, state = synced()
    a0 = pod("job-a-0")
    first = state.allocation(a0["metadata"]["uid"]).started
    a0["status"]["startTime"] = "2026-12-01T10:00:00Z"
    sync.apply("pods", ev("MODIFIED", a0))  # the same pod again: the same record, its first start kept
    assert state.allocation(a0["metadata"]["uid"]).started == first
    sync.apply("pods", ev("DELETED", a0))
    sync.apply("pods", ev("ADDED", a0))
    rec = state.allocation(a0["metadata"]["uid"])
    assert rec.started == datetime(2026, 12, 1, 10, tzinfo=timezone.utc).timestamp()
    c = state.cluster
    assert c.oldest_start[c.node_index[a0["spec"]["nodeName"]]] <= rec.started
    b0 = pod("job-b-0")
    b0["status"].pop("startTime", None)
    t0 = _time.time()
    sync.apply("pods", ev("DELETED", b0))
    sync.apply("pods", ev("ADDED", b0))  # no start time: the state takes now
    assert state.allocation(b0["metadata"]["uid"]).started >= t0


def test_pod_deleted_or_finished_releases_its_allocation_and_is_reported():
    gone = []
    sync, state = synced(on_pod_deleted=gone.append)
    a0, b0 = pod("job-a-0"), pod("job-b-0")
    v = state.version
    sync.apply("pods", ev("DELETED", a0))
    assert state.allocation(a0["metadata"]["uid"]) is None and gone == [a0["metadata"]["uid"]]
    b0["status"]["phase"] = "Succeeded"
    sync.apply("pods", ev("MODIFIED", b0))
    assert state.allocation(b0["metadata"]["uid"]) is None
    assert state.stats()["allocated_gpus"] == 48 - 8 - 4 and state.version > v


def test_pending_pods_are_kept_for_bind_lookups_until_bound():
    sync, state = synced()
    pending = copy.deepcopy(PREEMPTOR)
    uid = pending["metadata"]["uid"]
    sync.apply("pods", ev("ADDED", pending))
    levels = sync.levels
    assert parse_pod(sync.pod_lookup(uid), levels) == parse_pod(pending, levels), "kept slim, read the same"
    assert state.allocation(uid) is None
    bound = copy.deepcopy(pending)
    bound["spec"]["nodeName"] = "rack-a-node-1"
    bound["status"]["phase"] = "Running"
    sync.apply("pods", ev("MODIFIED", bound))
    assert sync.pod_lookup(uid) is None
    assert state.allocation(uid).node == "rack-a-node-1"
    assert state.check_consistency() == []  # overcommitted (the victim is still there) but consistent


def test_repeated_modified_events_do_not_change_the_version():
    sync, state = synced()
    v = state.version
    for p in PODS:
        sync.apply("pods", ev("MODIFIED", copy.deepcopy(p)))
    for n in NODES:
        sync.apply("nodes", ev("MODIFIED", copy.deepcopy(n)))
    assert state.version == v


@pytest.mark.parametrize("change", ["cordon", "not ready", "unreachable taint"])
def test_unhealthy_or_cordoned_nodes_become_unschedulable(change):
    sync, state = synced()
    n = node("rack-a-node-0")
    if change == "cordon":
        n["spec"]["unschedulable"] = True
    elif change == "not ready":
        for c in n["status"]["conditions"]:
            if c["type"] == "Ready":
                c["status"] = "False"
    else:
        n["spec"]["taints"] = [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]
    sync.apply("nodes", ev("MODIFIED", n))
    c = state.cluster
    assert not c.schedulable[c.node_index["rack-a-node-0"]]
    assert sum(map(bool, c.schedulable)) == 5


def test_a_gpu_taint_does_not_hide_the_node():
    sync, state = synced()
    n = node("rack-a-node-0")
    n["spec"]["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    sync.apply("nodes", ev("MODIFIED", n))
    assert all(state.cluster.schedulable)


def test_node_added_with_a_new_topology_label_changes_the_levels_and_keeps_allocations():
    levels_seen = []
    sync, state = synced()
    sync.on_levels = levels_seen.append
    n = node("rack-b-node-2")
    n["metadata"]["name"] = "rack-c-node-0"
    n["metadata"]["labels"].update({"kubernetes.io/hostname": "rack-c-node-0", "topology.kubernetes.io/zone": "z1",
                                    "network.topology.nvidia.com/accelerator": "nvl-rack-c"})
    sync.apply("nodes", ev("ADDED", n))
    assert sync.levels.names == ("zone", "block", "accelerator") and levels_seen
    c = state.cluster
    assert c.levels == ("zone", "block", "accelerator") and c.n_nodes == 7
    assert state.stats()["allocated_gpus"] == 48 and state.check_consistency() == []


def test_node_deleted_leaves_the_cluster():
    sync, state = synced()
    sync.apply("nodes", ev("DELETED", node("rack-b-node-0")))
    assert state.cluster.n_nodes == 5 and not state.has_node("rack-b-node-0")
    assert state.check_consistency() == []


def test_pod_on_a_node_not_synced_yet_is_counted_when_the_node_arrives():
    sync, state = fresh()
    sync.relist("nodes", [n for n in NODES if n["metadata"]["name"] != "rack-b-node-2"], "1")
    late = [p for p in PODS if p["spec"]["nodeName"] == "rack-b-node-2"]
    for p in late:
        sync.apply("pods", ev("ADDED", p))
    assert all(state.allocation(p["metadata"]["uid"]) is None for p in late)
    sync.apply("nodes", ev("ADDED", node("rack-b-node-2")))
    sync.retry_orphans()
    assert all(state.allocation(p["metadata"]["uid"]).node == "rack-b-node-2" for p in late)


def test_relist_drops_pods_that_disappeared_while_disconnected():
    sync, state = synced()
    keep = [p for p in PODS if not p["metadata"]["name"].startswith("filler")]
    sync.relist("pods", keep, "300")
    assert state.stats()["allocated_gpus"] == 48 - 24
    assert sync.resource_version["pods"] == "300"


def test_pod_groups_give_gang_sizes():
    sync, state = synced()
    pg = {"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup",
          "metadata": {"name": "job-a", "namespace": "default", "resourceVersion": "7"}, "spec": {"minMember": 2}}
    sync.apply("podgroups", ev("ADDED", pg))
    assert sync.group_size("coscheduling", "default", "job-a") == 2
    assert sync.group_size("volcano", "default", "job-a") is None
    assert sync.resource_version["podgroups"] == "7"
    sync.apply("podgroups", ev("DELETED", pg))
    assert sync.group_size("coscheduling", "default", "job-a") is None


def test_volcano_pod_groups_give_the_size_of_group_name_gangs():
    from gangplace.service.gangs import parse_pod
    sync, state = synced()
    vpg = {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
           "metadata": {"name": "train", "namespace": "ml", "resourceVersion": "9"}, "spec": {"minMember": 4}}
    sync.apply("volcanopodgroups", ev("ADDED", vpg))
    assert sync.group_size("volcano", "ml", "train") == 4
    assert sync.group_size("coscheduling", "ml", "train") is None  # two CRDs, two name spaces
    assert sync.resource_version["volcanopodgroups"] == "9"
    member = {"metadata": {"name": "train-0", "namespace": "ml", "uid": "u-train-0",
                           "annotations": {"scheduling.k8s.io/group-name": "train"}},
              "spec": {"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "8"}}}]}}
    info = parse_pod(member, sync.levels, group_size=sync.group_size)
    assert info.gang is not None and info.gang.size == 4 and info.gang.source == "volcano"
    sync.relist("volcanopodgroups", [], "10")  # gone after a re-list that no longer has it
    assert sync.group_size("volcano", "ml", "train") is None


def workload_pg(name: str, min_count: int | None, *, key: str | None = None, workload: str | None = None,
                ns: str = "ml", rv: str = "11") -> dict:
    """A scheduling.k8s.io/v1alpha2 PodGroup as the API server serves it (min_count None: "basic")."""
    spec: dict = {"schedulingPolicy": {"basic": {}} if min_count is None else {"gang": {"minCount": min_count}}}
    if key:
        spec["schedulingConstraints"] = {"topology": [{"key": key}]}
    if workload:
        spec["podGroupTemplateRef"] = {"workload": {"workloadName": workload, "podGroupTemplateName": name}}
    return {"apiVersion": "scheduling.k8s.io/v1alpha2", "kind": "PodGroup",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": rv}, "spec": spec}


def group_member(name: str, group: str, *, ns: str = "ml", gpus: int = 8, node: str = "") -> dict:
    spec = {"schedulingGroup": {"podGroupName": group}, "nodeName": node,
            "containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}]}
    return {"metadata": {"name": name, "namespace": ns, "uid": f"u-{ns}-{name}", "resourceVersion": "12"},
            "spec": spec, "status": {"phase": "Pending" if not node else "Running"}}


BLOCK = "network.topology.nvidia.com/block"
NVL = "network.topology.nvidia.com/accelerator"


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_workload_api_pod_groups_give_gang_size_and_required_level():
    clock = Clock()
    sync, state = synced(clock=clock)
    sync.apply("workloadpodgroups", ev("ADDED", workload_pg("train", 2, key=NVL)))
    pods = [group_member(f"train-{i}", "train") for i in range(2)]
    sync.apply("pods", ev("ADDED", pods[0]))
    wg = sync.group_size("workload", "ml", "train")
    assert (wg.min_count, wg.topology_key, wg.pods, wg.size, wg.settled) == (2, NVL, 1, 2, False)
    early = parse_pod(pods[0], sync.levels, group_size=sync.group_size).gang
    assert early.key == "ml/train" and early.size is None, "pods may still be arriving: size unknown, no warning"
    clock.t += 5.0
    with pytest.raises(InvalidRequest) as e:  # still one pod of two, 5 s on: said, nothing reserved
        parse_pod(pods[0], sync.levels, group_size=sync.group_size)
    assert e.value.field == "PodGroup ml/train" and "needs 2 pods" in str(e.value) and "only 1 name it" in str(e.value)
    sync.apply("pods", ev("ADDED", pods[1]))
    info = parse_pod(pods[0], sync.levels, group_size=sync.group_size)
    assert info.gang.key == "ml/train" and info.gang.size == 2 and info.gang.source == "workload"
    assert info.gang.required == "accelerator", "the label key maps to the level it names"
    assert sync.group_size("coscheduling", "ml", "train") is None  # another API, another name space
    sync.apply("pods", ev("DELETED", pods[1]))
    assert sync.group_size("workload", "ml", "train").pods == 1
    sync.relist("workloadpodgroups", [], "20")
    assert sync.group_size("workload", "ml", "train") is None


def test_a_bound_member_keeps_its_gang_even_when_its_group_is_short_of_pods():
    sync, state = synced()
    sync.apply("workloadpodgroups", ev("ADDED", workload_pg("train", 4)))
    sync.apply("pods", ev("ADDED", group_member("train-0", "train", node="rack-a-node-0")))
    assert state.allocation("u-ml-train-0").gang == "ml/train"


def test_a_topology_key_that_is_no_level_is_refused_naming_the_pod_group_field():
    sync, state = synced()
    sync.apply("workloadpodgroups", ev("ADDED", workload_pg("train", 1, key="example.com/no-such-rack")))
    pod = group_member("train-0", "train")
    sync.apply("pods", ev("ADDED", pod))
    with pytest.raises(InvalidRequest) as e:
        parse_pod(pod, sync.levels, group_size=sync.group_size)
    assert e.value.field == "PodGroup ml/train spec.schedulingConstraints.topology[0].key"
    assert "'example.com/no-such-rack' is not a topology level: no node carries this label" in str(e.value)


def test_a_basic_pod_group_is_no_gang():
    sync, state = synced()
    sync.apply("workloadpodgroups", ev("ADDED", workload_pg("web", None)))
    pod = group_member("web-0", "web")
    sync.apply("pods", ev("ADDED", pod))
    assert parse_pod(pod, sync.levels, group_size=sync.group_size).gang is None


def test_the_pod_groups_of_a_workload_are_one_gang_only_when_the_workload_says_so():
    clock = Clock()
    sync, state = synced(clock=clock)
    sync.apply("workloadpodgroups", ev("ADDED", workload_pg("driver", 1, workload="spark", key=BLOCK)))
    sync.apply("workloadpodgroups", ev("ADDED", workload_pg("workers", 3, workload="spark", key=NVL)))
    pods = [group_member("driver-0", "driver")] + [group_member(f"w-{i}", "workers") for i in range(3)]
    for p in pods:
        sync.apply("pods", ev("ADDED", p))
    apart = [parse_pod(p, sync.levels, group_size=sync.group_size).gang for p in (pods[0], pods[1])]
    assert [(g.key, g.size, g.required, g.pod_set) for g in apart] == [
        ("ml/driver", 1, "block", None), ("ml/workers", 3, "accelerator", None)], "separate gangs by default"
    wl = {"apiVersion": "scheduling.k8s.io/v1alpha2", "kind": "Workload",
          "metadata": {"name": "spark", "namespace": "ml", "resourceVersion": "30",
                       "annotations": {"gangplace.dev/gang-scope": "workload"}}, "spec": {"podGroupTemplates": []}}
    sync.apply("workloads", ev("ADDED", wl))
    together = [parse_pod(p, sync.levels, group_size=sync.group_size).gang for p in (pods[0], pods[1])]
    assert [(g.key, g.size, g.required, g.pod_set) for g in together] == [
        ("ml/spark", 4, "accelerator", "driver"), ("ml/spark", 4, "accelerator", "workers")], \
        "one gang, a pod set per PodGroup, inside the narrowest level any of them asks for"
    sync.apply("pods", ev("DELETED", pods[3]))
    assert parse_pod(pods[0], sync.levels, group_size=sync.group_size).gang.size is None
    clock.t += 10.0
    with pytest.raises(InvalidRequest) as e:
        parse_pod(pods[0], sync.levels, group_size=sync.group_size)
    assert "needs 4 pods (spec.schedulingPolicy.gang.minCount, summed over the PodGroups of Workload spark) but " \
        "only 3 name them" in str(e.value)


def group_pod(name: str, group: str, gpus: int, *, node: str = "", label: str = "scheduling.x-k8s.io/pod-group",
              extra_labels=None) -> dict:
    return {"metadata": {"name": name, "namespace": "ml", "uid": f"u-{name}",
                         "labels": {label: group, **(extra_labels or {})}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {
                "nvidia.com/gpu": str(gpus), "cpu": "1"}}}]},
            "status": {"phase": "Running" if node else "Pending"}}


def test_a_pod_groups_members_without_gpus_are_not_counted_in_the_gpu_gang_size():
    """JobSet-style: minMember 9 = 1 leader without GPUs + 8 GPU workers; gangplace holds the 8."""
    sync, state = synced()
    sync.apply("podgroups", ev("ADDED", {"metadata": {"name": "js", "namespace": "ml"}, "spec": {"minMember": 9}}))
    assert sync.group_size("coscheduling", "ml", "js") == 9  # the leader not seen yet
    leader = group_pod("js-leader", "js", 0)
    sync.apply("pods", ev("ADDED", leader))
    sync.apply("pods", ev("ADDED", group_pod("js-worker-0", "js", 8)))
    assert sync.group_size("coscheduling", "ml", "js") == 8
    node_name = NODES[0]["metadata"]["name"]
    sync.apply("pods", ev("MODIFIED", group_pod("js-leader", "js", 0, node=node_name)))  # bound: still not a GPU member
    assert sync.group_size("coscheduling", "ml", "js") == 8
    assert [r.pod_uid for r in state.gang_members("ml/js")] == ["u-js-leader"]  # preemption still sees it
    sync.apply("pods", ev("DELETED", leader))
    assert sync.group_size("coscheduling", "ml", "js") == 9 and sync.gpuless == {}


@pytest.mark.parametrize("label, extra, kind, counted", [
    ("scheduling.k8s.io/group-name", None, "volcano", True),
    ("scheduling.x-k8s.io/pod-group", {"gangplace.dev/gang": "other"}, "coscheduling", False),
], ids=["a Volcano group's pods without GPUs are subtracted too",
        "a pod whose gangplace label names its gang is not the PodGroup's"])
def test_which_pods_without_gpus_count_against_a_group(label, extra, kind, counted):
    sync, _ = synced()
    sync.apply("pods", ev("ADDED", group_pod("lead", "g", 0, label=label, extra_labels=extra)))
    assert sync.gpuless == ({(kind, "ml", "g"): {"u-lead"}} if counted else {})


def test_error_410_raises_gone_and_other_errors_are_logged():
    sync, _ = synced()
    with pytest.raises(Gone):
        sync.apply("pods", ev("ERROR", {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "message": "too old resource version: 1 (250)", "reason": "Expired",
                                        "code": 410}))
    sync.apply("pods", ev("ERROR", {"kind": "Status", "code": 500, "message": "internal"}))
    sync.apply("pods", ev("BOOKMARK", {"metadata": {"resourceVersion": "999"}}))
    assert sync.resource_version["pods"] == "999"


def test_bad_quantities_skip_the_node_instead_of_failing():
    sync, state = fresh()
    bad = node("rack-a-node-0")
    bad["status"]["allocatable"]["nvidia.com/gpu"] = "eight"
    sync.relist("nodes", [bad] + [n for n in NODES if n["metadata"]["name"] != "rack-a-node-0"], "1")
    assert state.cluster.n_nodes == 5


def test_node_spec_reads_gpu_product_and_custom_resource():
    n = node("rack-a-node-0")
    n["metadata"]["labels"]["nvidia.com/gpu.product"] = "NVIDIA-H100-80GB-HBM3"
    n["status"]["allocatable"]["amd.com/gpu"] = "4"
    levels = resolve_levels("auto", [n["metadata"]["labels"]])
    spec = node_spec(n, levels, "amd.com/gpu")
    assert spec.gpus == 4 and spec.gpu_type == "NVIDIA-H100-80GB-HBM3"
    assert spec.topology == {"block": "block-1", "accelerator": "nvl-rack-a"}


# ---------------------------------------------------------------------- the watch loop, with a fake API
class FakeKube:
    """KubeClient's list_pages / watch for nodes: a failed list, a list, a watch with a cordon then
    410 Gone, a second list, then a watch that stops the watcher."""

    def __init__(self, watcher_ref):
        self.watcher_ref = watcher_ref
        self.lists = 0
        self.watches = []

    async def list_pages(self, path, *, limit, timeout_s):
        assert path == "/api/v1/nodes"
        self.lists += 1
        if self.lists == 1:
            raise ConnectionError("apiserver not up yet")
        yield (NODES if self.lists == 2 else NODES[:4]), str(200 + 100 * self.lists)

    async def watch(self, path, *, resource_version, timeout_s, read_slack_s):
        self.watches.append(resource_version)
        if len(self.watches) == 1:
            cordoned = node("rack-a-node-0")
            cordoned["spec"]["unschedulable"] = True
            cordoned["metadata"]["resourceVersion"] = "201"
            for e in (ev("MODIFIED", cordoned), ev("ERROR", {"code": 410, "message": "gone"})):
                yield e
            return
        self.watcher_ref[0].stopping = True


def test_watch_loop_backs_off_lists_watches_and_relists_after_410_gone():
    sync, state = fresh()
    ref = []
    kube = FakeKube(ref)
    watcher = KubeWatcher(sync, kube, backoff_initial_s=0.01)
    ref.append(watcher)
    asyncio.run(watcher.run("nodes"))  # returns once the fake stops it
    assert kube.lists == 3, "a failed list, the first list, and the re-list after 410"
    assert kube.watches == ["400", "500"], "each watch starts at the list's resourceVersion"
    assert watcher.relists["nodes"] == 2
    assert state.cluster.n_nodes == 4, "the re-list replaced the nodes"


class FakeKubeUnavailable:
    """list_pages failing with an API status (404: no CRD, 403: no permission)."""

    def __init__(self, status: int):
        self.status = status
        self.paths = []

    async def list_pages(self, path, **kw):
        self.paths.append(path)
        raise ApiError(self.status, "NotFound" if self.status == 404 else "Forbidden")
        yield

    async def watch(self, path, **kw):
        raise AssertionError("a kind that could not be listed is not watched")
        yield


@pytest.mark.parametrize("kind, status", [
    ("podgroups", 404),  # the coscheduling CRD is not installed
    ("volcanopodgroups", 404),  # nor Volcano's
    ("volcanopodgroups", 403),  # older RBAC without the Volcano group: readiness must not hang
    ("workloadpodgroups", 404),  # the alpha Workload API is off (no GenericWorkload gate)
    ("workloads", 403),  # RBAC without scheduling.k8s.io
    ("resourceslices", 404),  # a cluster without resource.k8s.io/v1
    ("deviceclasses", 403),  # older RBAC without the DRA group
], ids=["missing coscheduling CRD", "missing Volcano CRD", "Volcano PodGroups not readable",
        "Workload API off", "Workloads not readable", "no DRA API", "DRA not readable"])
def test_optional_pod_group_kinds_count_as_listed_with_no_groups(kind, status):
    sync, state = fresh()
    kube = FakeKubeUnavailable(status)
    watcher = KubeWatcher(sync, kube)

    async def go():
        task = asyncio.create_task(watcher.run(kind))
        for _ in range(200):
            if kind in sync.listed:
                break
            await asyncio.sleep(0.01)
        watcher.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return task
    task = asyncio.run(go())
    assert kind in sync.listed and sync.pod_groups == {} and sync.volcano_groups == {}
    assert sync.workload_groups == {} and sync.workloads == {}
    assert kube.paths == [{"podgroups": "/apis/scheduling.x-k8s.io/v1alpha1/podgroups",
                           "volcanopodgroups": "/apis/scheduling.volcano.sh/v1beta1/podgroups",
                           "workloadpodgroups": "/apis/scheduling.k8s.io/v1alpha2/podgroups",
                           "workloads": "/apis/scheduling.k8s.io/v1alpha2/workloads",
                           "resourceslices": "/apis/resource.k8s.io/v1/resourceslices",
                           "deviceclasses": "/apis/resource.k8s.io/v1/deviceclasses"}[kind]]
    assert sync.dra.classes is None and sync.dra.slices == {}  # absent: claims are not checked against classes
    assert task.done()


# ---------------------------------------------------------------------- the real client against a fake API server
def test_start_kube_sync_with_the_asyncio_client_against_a_fake_api_server(tmp_path):
    """list+watch through the real asyncio client (URLs, query, streaming, 410), credentials from
    a kubeconfig, against a stdlib HTTP server that plays the API server."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    from gangplace.service.extender import Extender
    from gangplace.service.k8s_sync import start_kube_sync

    seen = {"lists": {}, "watches": {}}
    cordoned = node("rack-a-node-0")
    cordoned["spec"]["unschedulable"] = True
    cordoned["metadata"]["resourceVersion"] = "101"
    a0 = pod("job-a-0")
    a0["metadata"]["resourceVersion"] = "201"
    pg = {"metadata": {"name": "job-a", "namespace": "default", "resourceVersion": "301"}, "spec": {"minMember": 2}}
    lists = {"/api/v1/nodes": ("100", NODES), "/api/v1/pods": ("200", PODS),
             "/apis/scheduling.x-k8s.io/v1alpha1/podgroups": ("300", [pg])}
    first_watch = {"/api/v1/nodes": [ev("MODIFIED", cordoned), ev("ERROR", {"code": 410, "message": "gone"})],
                   "/api/v1/pods": [ev("DELETED", a0)], "/apis/scheduling.x-k8s.io/v1alpha1/podgroups": []}

    class API(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *a):
            pass

        def do_GET(self):
            url = urlparse(self.path)
            q = parse_qs(url.query)
            if url.path not in lists:
                self.send_response(404)
                self.end_headers()
                return
            if q.get("watch") == ["true"]:
                n = seen["watches"].setdefault(url.path, [])
                n.append(q.get("resourceVersion", [None])[0])
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                if len(n) == 1:
                    if url.path == "/api/v1/nodes":  # what a re-list after the 410 will see
                        lists[url.path] = ("102", [cordoned] + [x for x in NODES
                                                                if x["metadata"]["name"] != "rack-a-node-0"])
                    for e in first_watch[url.path]:
                        self.wfile.write(orjson.dumps(e) + b"\n")
                        self.wfile.flush()
                else:
                    time.sleep(0.2)  # an idle watch that the server ends
                return
            seen["lists"][url.path] = seen["lists"].get(url.path, 0) + 1
            rv, items = lists[url.path]
            body = orjson.dumps({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": rv},
                                 "items": items})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), API)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "http://127.0.0.1:{server.server_address[1]}"}}}}]
users: [{{name: fake, user: {{token: t}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]
current-context: fake
""")
    state = ClusterState(Cluster((), []))
    ext = Extender(state)
    a0_uid = a0["metadata"]["uid"]

    def done():
        return (ext.ready and seen["lists"].get("/api/v1/nodes", 0) >= 2 and state.has_node("rack-a-node-0")
                and len(seen["watches"].get("/api/v1/nodes", ())) >= 2  # the watch after the re-list started
                and len(seen["watches"].get("/api/v1/pods", ())) >= 2  # and the resumed pod watch
                and not state.cluster.schedulable[state.cluster.node_index["rack-a-node-0"]]
                and state.allocation(a0_uid) is None and sync.group_size("coscheduling", "default", "job-a") == 2)

    async def go():
        nonlocal sync
        loop = asyncio.get_running_loop()
        # as the service does: called off the loop, the watches then run on it
        sync, watcher = await loop.run_in_executor(None, lambda: start_kube_sync(
            state, ext, kubeconfig=str(kubeconfig), loop=loop))
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not done():
                await asyncio.sleep(0.05)
        finally:
            await watcher.aclose()
        return watcher
    sync = None
    try:
        watcher = asyncio.run(go())
    finally:
        server.shutdown()
    assert done(), (ext.ready, seen, state.stats())
    assert ext.levels.names == ("block", "accelerator") and state.cluster.n_nodes == 6
    assert seen["watches"]["/api/v1/nodes"][:2] == ["100", "102"], "watch from the list, then from the re-list"
    assert seen["watches"]["/api/v1/pods"][:2] == ["200", "201"], "an ended watch resumes from the last event"
    assert seen["lists"]["/api/v1/pods"] == 1
    assert type(ext.binder).__name__ == "KubeBinder" and ext.events is not None
    assert watcher.tasks and all(t.done() for t in watcher.tasks), "stopped: no task left running"


def test_a_running_pod_with_invalid_gang_labels_still_counts_in_its_gang():
    sync, state = synced()
    p = pod("job-a-1")
    p["metadata"]["labels"] = {"gangplace.dev/gang": "broken"}  # no size: invalid for planning
    sync.apply("pods", ev("MODIFIED", p))
    rec = state.allocation(p["metadata"]["uid"])
    assert rec.gang == "default/broken" and rec.gpus == 8 and rec.priority == 100


def test_slim_copies_read_exactly_like_the_full_objects():
    levels = resolve_levels("auto", [n["metadata"]["labels"] for n in NODES])
    for n in NODES:
        assert node_spec(slim_node(n), levels) == node_spec(n, levels)
        assert len(orjson.dumps(slim_node(n))) < len(orjson.dumps(n)) / 2
    for p in PODS + [PREEMPTOR]:
        assert parse_pod(slim_pod(p), levels) == parse_pod(p, levels)
    annotated = copy.deepcopy(PREEMPTOR)
    annotated["metadata"]["annotations"] = {"gangplace.dev/topology-required": "accelerator",
                                            "kubectl.kubernetes.io/last-applied-configuration": "x" * 10_000}
    slim = slim_pod(annotated)
    assert slim["metadata"]["annotations"] == {"gangplace.dev/topology-required": "accelerator"}


class PagedKube:
    """list_pages of pods in pages of ``limit`` (KubeClient follows the continue tokens, see
    test_kube_client.py); records what was applied before each next page was asked for."""

    def __init__(self, state):
        self.state = state
        self.limits, self.gpus_before_page = [], []

    async def list_pages(self, path, *, limit, timeout_s):
        assert path == "/api/v1/pods"
        self.limits.append(limit)
        for start in range(0, len(PODS), limit):
            self.gpus_before_page.append(self.state.stats()["allocated_gpus"])
            yield PODS[start:start + limit], "77"


def test_lists_are_paginated_and_applied_page_by_page(monkeypatch):
    import gangplace.service.k8s_sync as mod
    monkeypatch.setattr(mod, "LIST_PAGE_SIZE", 3)
    sync, state = fresh()
    sync.relist("nodes", NODES, "1")
    stale = copy.deepcopy(PODS[0])
    stale["metadata"]["uid"] = "gone-while-disconnected"
    sync.apply("pods", ev("ADDED", stale))
    kube = PagedKube(state)
    watcher = KubeWatcher(sync, kube)
    assert asyncio.run(watcher._relist("pods")) is False
    assert kube.limits == [3] and len(kube.gpus_before_page) == 4
    assert kube.gpus_before_page[1] > kube.gpus_before_page[0], "the first page was applied before the second"
    assert state.stats()["allocated_gpus"] == 48 and state.allocation("gone-while-disconnected") is None
    assert sync.resource_version["pods"] == "77" and "pods" in sync.listed


def test_the_derived_levels_their_domains_and_nodes_missing_a_label_are_reported_and_logged(caplog):
    sync, state = synced()
    report = sync.topology()
    assert [(lv["name"], lv["label"], lv["preset"], lv["domains"]) for lv in report["levels"]] == [
        ("block", BLOCK, "topograph-v1", 1), ("accelerator", NVL, "topograph-v1", 2)]
    assert report["nodes"] == 6 and report["incomplete_nodes"] == 0 and report["spec"] == ["auto"]
    odd = copy.deepcopy(NODES[0])
    odd["metadata"].update(name="pool-b-0", uid="pool-b-0", resourceVersion="301")
    del odd["metadata"]["labels"][BLOCK]  # a node pool labelled without the block
    with caplog.at_level("INFO", logger="gangplace.k8s"):
        sync.relist("nodes", NODES + [odd], "301")
    report = sync.topology()
    assert report["incomplete_nodes"] == 1 and report["incomplete"] == {"pool-b-0": [BLOCK]}
    assert [lv["nodes_labelled"] for lv in report["levels"]] == [6, 7]
    assert [lv["domains"] for lv in report["levels"]] == [1, 3], "its NVLink rack sits in a block of its own"
    warned = [r for r in caplog.records if r.levelname == "WARNING" and "topology levels" in r.getMessage()]
    assert warned and warned[-1].getMessage() == (
        f"topology levels block ({BLOCK}, topograph-v1): 1 domains > accelerator ({NVL}, topograph-v1): 3 domains; "
        f"7 nodes; 1 lack some level's label: pool-b-0 (missing {BLOCK})")


def test_explicit_levels_are_reported_as_explicit():
    labels = {"n1": {"example.com/hall": "h1", "example.com/rack": "r1"},
              "n2": {"example.com/hall": "h1", "example.com/rack": "r2"}}
    from gangplace.service.topology_presets import describe
    levels = resolve_levels([{"name": "hall", "label": "example.com/hall"}, {"name": "rack", "label": "example.com/rack"}],
                            labels.values())
    report = describe(levels, labels)
    assert [(lv["name"], lv["preset"], lv["domains"]) for lv in report["levels"]] == [("hall", None, 1), ("rack", None, 2)]


def test_a_workload_groups_pods_without_gpus_count_towards_min_count_but_are_not_held():
    """A driver without GPUs and 3 GPU workers, one gang: minCount 1 + 3 met by 4 pods; gangplace holds 3."""
    sync, state = synced()
    sync.apply("workloadpodgroups", ev("ADDED", workload_pg("driver", 1, workload="spark")))
    sync.apply("workloadpodgroups", ev("ADDED", workload_pg("workers", 3, workload="spark")))
    sync.apply("workloads", ev("ADDED", {"metadata": {"name": "spark", "namespace": "ml", "annotations": {
        "gangplace.dev/gang-scope": "workload"}}, "spec": {"podGroupTemplates": []}}))
    pods = [group_member("driver-0", "driver", gpus=0)] + [group_member(f"w-{i}", "workers") for i in range(3)]
    for p in pods:
        sync.apply("pods", ev("ADDED", p))
    wg = sync.group_size("workload", "ml", "workers")
    assert (wg.size, wg.members, wg.gpuless, wg.problem()) == (4, 4, 1, None)
    gang = parse_pod(pods[1], sync.levels, group_size=sync.group_size).gang
    assert (gang.key, gang.size) == ("ml/spark", 3)
    sync.apply("pods", ev("DELETED", pods[0]))
    assert sync.group_size("workload", "ml", "workers").gpuless == 0

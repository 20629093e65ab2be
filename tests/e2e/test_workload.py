"""The Kubernetes Workload API (``scheduling.k8s.io/v1alpha2``, alpha in v1.36) on the real control plane.

One control plane for the module with the API and its feature gates on (apiserver, scheduler and
controller manager: ``ControlPlane(workload_api=True)``), the shipped scheduler configuration (its
gangplace profile leaves quorum and domain to gangplace: docs/kubernetes.md "Workload API"), gangplace
as the extender, and kube-controller-manager's Job controller for the example Job. Pods carry no
gangplace labels: they name a PodGroup in ``spec.schedulingGroup.podGroupName``, and gangplace takes
the gang's size from its ``minCount`` and the level from its topology key.
"""
from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import assert_no_overcommit, control_plane_with_gangplace
from tests.e2e.harness import BLOCK_LABEL, LEAF_LABEL, REPO, gpu_pod, scheduler_config, wait_for
from tests.e2e.test_events import gangplace_events
from tests.e2e.test_gangs import pin

pytestmark = pytest.mark.e2e

API = "/apis/scheduling.k8s.io/v1alpha2"


@pytest.fixture(scope="module")
def gangplace():
    def start(cp, url):
        cp.start_scheduler(scheduler_config(cp.kubeconfig("scheduler"), url))
        cp.start_controller_manager("job")  # for the example Job: creates its pods
    yield from control_plane_with_gangplace(start, workload_api=True)


def pod_group(kube, ns, name, min_count, key=None, *, workload=None):
    spec = {"schedulingPolicy": {"gang": {"minCount": min_count}}}
    if key:
        spec["schedulingConstraints"] = {"topology": [{"key": key}]}
    if workload:
        spec["podGroupTemplateRef"] = {"workload": {"workloadName": workload, "podGroupTemplateName": name}}
    kube.create(f"{API}/namespaces/{ns}/podgroups", {"apiVersion": "scheduling.k8s.io/v1alpha2",
                                                     "kind": "PodGroup", "metadata": {"name": name}, "spec": spec})


def members(kube, ns, group, n, *, start=0):
    for i in range(start, start + n):
        pod = gpu_pod(f"{group}-{i}")
        pod["spec"]["schedulingGroup"] = {"podGroupName": group}
        kube.create_pod(ns, pod)


def bound_in(kube, ns, prefix) -> dict[str, str]:
    return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in kube.pods(ns)
            if p["metadata"]["name"].startswith(prefix) and p["spec"].get("nodeName")}


def wait_all_bound(kube, ns, prefix, n, timeout=60):
    return wait_for(lambda: (b := bound_in(kube, ns, prefix)) and len(b) == n and b, timeout,
                    f"{n} pods {ns}/{prefix}* bound")


def test_the_api_and_the_gates_are_on_and_the_fields_survive(gangplace, ns):
    kube = gangplace.kube
    pod_group(kube, ns, "g", 2, LEAF_LABEL)
    got = kube.get(f"{API}/namespaces/{ns}/podgroups/g")
    assert got["spec"]["schedulingConstraints"]["topology"] == [{"key": LEAF_LABEL}], \
        "TopologyAwareWorkloadScheduling on: the apiserver keeps the field"
    members(kube, ns, "g", 1)
    assert kube.get(f"/api/v1/namespaces/{ns}/pods/g-0")["spec"]["schedulingGroup"] == {"podGroupName": "g"}, \
        "GenericWorkload on: the pod keeps spec.schedulingGroup"
    members(kube, ns, "g", 1, start=1)
    wait_all_bound(kube, ns, "g-", 2)


def test_the_example_job_with_a_workload_and_pod_group_is_bound_whole_at_the_optimum(gangplace):
    """deploy/examples/workload-job-gang.yaml as a user applies it; the Job controller makes the pods."""
    kube, cp = gangplace.kube, gangplace.cp
    r = cp.kubectl("apply", "-f", str(REPO / "deploy/examples/namespace.yaml"))
    pin(kube, "ml", "filler", "b0-r0-n0")  # leaf b0-r0 has no 4 whole nodes left
    r = cp.kubectl("apply", "-f", str(REPO / "deploy/examples/workload-job-gang.yaml"), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        nodes = wait_all_bound(kube, "ml", "train-8-", 4, timeout=60)
        # one leaf (the PodGroup's topology key), four whole nodes; best fit keeps block b1 whole
        assert sorted(nodes.values()) == [f"b0-r1-n{i}" for i in range(4)], nodes
        placed = wait_for(lambda: [e for e in gangplace_events(kube, "ml") if e[1] == "GangPlaced"], 30, "GangPlaced")
        assert placed[0][2].startswith("gang ml/train-8-workers bound: 4 nodes in leaf b0/b0-r1"), placed[0]
        assert not [e for e in gangplace_events(kube, "ml") if e[1] == "InvalidPod"], \
            "pods still being created are waited for, not called malformed"
        assert_no_overcommit(kube)
    finally:
        cp.kubectl("delete", "job", "train-8", "-n", "ml", "--cascade=orphan", "--wait=false", check=False)
        for pod in kube.pods("ml"):  # no kubelet: drop the Job's tracking finalizer, then the pod
            kube.request("PATCH", f"/api/v1/namespaces/ml/pods/{pod['metadata']['name']}",
                         {"metadata": {"finalizers": None}}, content_type="application/merge-patch+json")
            kube.delete_pod("ml", pod["metadata"]["name"], grace=0)
        wait_for(lambda: not kube.pods("ml"), 30, "the example's pods deleted")
        wait_for(gangplace.idle, 30, "gangplace to release every GPU")


def test_the_gang_size_and_the_required_level_come_from_the_pod_group(gangplace, ns):
    kube = gangplace.kube
    for leaf in ("b0-r0", "b0-r1", "b1-r0", "b1-r1"):
        pin(kube, ns, f"filler-{leaf}", f"{leaf}-n0", gpus=8)  # every leaf: 3 whole nodes left
    pod_group(kube, ns, "leafy", 4, LEAF_LABEL)   # 4 whole nodes in one leaf: nowhere now
    pod_group(kube, ns, "blocky", 4, BLOCK_LABEL)  # 4 whole nodes in one block: fits
    members(kube, ns, "leafy", 4)
    members(kube, ns, "blocky", 4)
    nodes = wait_all_bound(kube, ns, "blocky-", 4)
    assert len({n.rsplit("-", 2)[0] for n in nodes.values()}) == 1, f"one block: {nodes}"
    assert len({n.rsplit("-", 1)[0] for n in nodes.values()}) == 2, f"two leaves (3 + 1 or 2 + 2): {nodes}"
    wait_for(lambda: any(e[1] in ("GangUnschedulable", "GangWaiting") and e[0].startswith("leafy-")
                         for e in gangplace_events(kube, ns)), 30, "a reason on a leafy member")
    time.sleep(2)
    assert bound_in(kube, ns, "leafy-") == {}, "a gang of 4 whole nodes in one leaf has no leaf to go to"
    placed = [e[2] for e in gangplace_events(kube, ns) if e[1] == "GangPlaced"]
    assert placed and all(n.startswith(f"gang {ns}/blocky bound: 4 nodes in ") for n in placed), placed


def test_a_workload_marked_as_one_gang_binds_its_pod_groups_together(gangplace, ns):
    kube = gangplace.kube
    kube.create(f"{API}/namespaces/{ns}/workloads", {
        "apiVersion": "scheduling.k8s.io/v1alpha2", "kind": "Workload",
        "metadata": {"name": "spark", "annotations": {"gangplace.dev/gang-scope": "workload"}},
        "spec": {"podGroupTemplates": [{"name": n, "schedulingPolicy": {"gang": {"minCount": c}}}
                                       for n, c in (("driver", 1), ("workers", 3))]}})
    pod_group(kube, ns, "driver", 1, LEAF_LABEL, workload="spark")
    pod_group(kube, ns, "workers", 3, LEAF_LABEL, workload="spark")
    members(kube, ns, "driver", 1)
    time.sleep(2)
    assert bound_in(kube, ns, "driver-") == {}, "the driver waits for its workers: one gang"
    members(kube, ns, "workers", 3)
    nodes = {**wait_all_bound(kube, ns, "driver-", 1), **wait_all_bound(kube, ns, "workers-", 3)}
    assert len({n.rsplit("-", 1)[0] for n in nodes.values()}) == 1, f"all four in one leaf: {nodes}"
    placed = wait_for(lambda: [e[2] for e in gangplace_events(kube, ns) if e[1] == "GangPlaced"], 30, "GangPlaced")
    assert all(n.startswith(f"gang {ns}/spark bound: 4 nodes in leaf ") for n in placed), placed


def test_a_malformed_pod_group_says_why_and_nothing_else_changes(gangplace, ns):
    kube = gangplace.kube
    pod_group(kube, ns, "short", 3, LEAF_LABEL)              # minCount 3, only 2 pods will exist
    pod_group(kube, ns, "offmap", 1, "example.com/rack")     # no node carries this label
    pod_group(kube, ns, "fine", 2, LEAF_LABEL)
    members(kube, ns, "short", 2)
    members(kube, ns, "offmap", 1)
    members(kube, ns, "fine", 2)
    fine = wait_all_bound(kube, ns, "fine-", 2)
    invalid = wait_for(lambda: (got := {e[0]: e[2] for e in gangplace_events(kube, ns) if e[1] == "InvalidPod"})
                       and {"short-0", "short-1", "offmap-0"} <= set(got) and got, 60, "InvalidPod on each")
    assert invalid["short-0"] == (f"PodGroup {ns}/short: needs 3 pods (spec.schedulingPolicy.gang.minCount) but "
                                  "only 2 name it in spec.schedulingGroup.podGroupName; nothing is reserved until "
                                  "the rest exist"), invalid["short-0"]
    assert invalid["offmap-0"].startswith(f"PodGroup {ns}/offmap spec.schedulingConstraints.topology[0].key: "
                                          "'example.com/rack' is not a topology level: no node carries this label")
    # the extender's answer is what the scheduler reports as the pod's FailedScheduling reason
    failed = wait_for(lambda: [e.get("note", "") for e in kube.get(f"/apis/events.k8s.io/v1/namespaces/{ns}/events")
                               ["items"] if e["reason"] == "FailedScheduling" and e["regarding"]["name"] == "offmap-0"
                               and "is not a topology level" in e.get("note", "")], 30, "FailedScheduling with it")
    assert "gangplace: PodGroup" in failed[0], failed[0]
    assert bound_in(kube, ns, "short-") == {} and bound_in(kube, ns, "offmap-") == {}
    assert gangplace.metric("gangplace_free_gpus") == gangplace.metric("gangplace_gpus") - 8 * len(fine), \
        "nothing held for the malformed groups: only the fine gang's GPUs are in use"
    members(kube, ns, "short", 1, start=2)   # the third pod appears: the group is whole now
    wait_all_bound(kube, ns, "short-", 3)


def test_serve_reports_the_levels_it_derived_and_flags_a_node_lacking_a_label(gangplace):
    """Topology discovery: GET /topology and the log line, from the real Node objects."""
    import json

    import urllib3
    kube, cp = gangplace.kube, gangplace.cp

    def topology():
        return json.loads(urllib3.request("GET", f"{gangplace.url}/topology", timeout=5).data)
    report = topology()
    assert [(lv["name"], lv["label"], lv["preset"], lv["domains"]) for lv in report["levels"]] == [
        ("block", BLOCK_LABEL, "topograph-v1", 2), ("leaf", LEAF_LABEL, "topograph-v1", 4)]
    assert report["nodes"] == 16 and report["incomplete_nodes"] == 0
    log = gangplace.proc.log.read_text()
    assert "topology levels block (network.topology.nvidia.com/block, topograph-v1): 2 domains > leaf " \
           "(network.topology.nvidia.com/leaf, topograph-v1): 4 domains; 16 nodes" in log
    kube.apply_node("pool-x-n0", labels={LEAF_LABEL: "pool-x"}, gpus=8)  # a pool labelled without the block
    try:
        report = wait_for(lambda: (r := topology())["incomplete_nodes"] == 1 and r, 30, "the node flagged")
        assert report["incomplete"] == {"pool-x-n0": [BLOCK_LABEL]} and report["nodes"] == 17
        assert [lv["domains"] for lv in report["levels"]] == [2, 5]
    finally:
        kube.delete_node("pool-x-n0")
        wait_for(lambda: topology()["nodes"] == 16, 30, "the node gone")

"""Mixed gangs (members that differ in requests) through the real kube-scheduler with gangplace as
its extender: the two examples of deploy/examples/, a JobSet-style gang (a driver without GPUs + 8
workers x 8 GPUs, gang-scheduled through a coscheduling PodGroup) and a LeaderWorkerSet (a leader
with more CPU and memory than its workers). The control plane runs no JobSet or LeaderWorkerSet
controller, so the tests create the pods those controllers would create from the examples'
templates, with the labels and annotations the controllers set. The coscheduling PodGroup CRD is
installed (a stand-in with the status subresource) before gangplace starts, so it watches them.
"""
from __future__ import annotations

import copy

import pytest
import yaml

from tests.e2e.conftest import assert_no_overcommit, control_plane_with_gangplace
from tests.e2e.harness import BLOCK_LABEL, LEAF_LABEL, REPO, scheduler_config, wait_for
from tests.e2e.test_events import gangplace_events
from tests.e2e.test_manifests import stand_in_crd

pytestmark = pytest.mark.e2e

EXAMPLES = REPO / "deploy" / "examples"
POD_GROUPS = "/apis/scheduling.x-k8s.io/v1alpha1"


def install_pod_group_crd(cp) -> None:
    crd = stand_in_crd("scheduling.x-k8s.io", "v1alpha1", "PodGroup", "podgroups")
    crd["spec"]["versions"][0]["subresources"] = {"status": {}}  # as the real CRD: status is its own endpoint
    cp.admin.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    wait_for(lambda: cp.admin.get(POD_GROUPS, ok_missing=True), 30, "PodGroups served")


@pytest.fixture(scope="module")
def gangplace():
    yield from control_plane_with_gangplace(
        lambda cp, url: cp.start_scheduler(scheduler_config(cp.kubeconfig("scheduler"), url)),
        prepare=install_pod_group_crd)


def example(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def pod_from(template: dict, name: str, ns: str, labels: dict, annotations: dict | None = None) -> dict:
    meta = template.get("metadata", {})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {**meta.get("labels", {}), **labels},
                         "annotations": {**meta.get("annotations", {}), **(annotations or {})}},
            "spec": {**copy.deepcopy(template["spec"]), "terminationGracePeriodSeconds": 0}}


def jobset_pods(jobset: dict, ns: str) -> dict[str, list[dict]]:
    """replicated job name -> the pods the Job controller creates for it (JobSet's labels on each)."""
    out: dict[str, list[dict]] = {}
    js = jobset["metadata"]["name"]
    for rj in jobset["spec"]["replicatedJobs"]:
        job = rj["template"]["spec"]
        for r in range(rj["replicas"]):
            for i in range(job["completions"]):
                labels = {"jobset.sigs.k8s.io/jobset-name": js, "jobset.sigs.k8s.io/replicatedjob-name": rj["name"],
                          "jobset.sigs.k8s.io/replicatedjob-replicas": str(rj["replicas"]),
                          "jobset.sigs.k8s.io/job-index": str(r), "job-name": f"{js}-{rj['name']}-{r}"}
                ann = {}
                if job.get("completionMode") == "Indexed":
                    labels["batch.kubernetes.io/job-completion-index"] = ann[
                        "batch.kubernetes.io/job-completion-index"] = str(i)
                out.setdefault(rj["name"], []).append(
                    pod_from(job["template"], f"{js}-{rj['name']}-{r}-{i}", ns, labels, ann))
    return out


def lws_pods(lws: dict, ns: str, group: int) -> tuple[dict, list[dict]]:
    """The leader and the workers LeaderWorkerSet creates for group ``group``."""
    name, tmpl = lws["metadata"]["name"], lws["spec"]["leaderWorkerTemplate"]
    size = tmpl["size"]

    def labels(worker: int) -> dict:
        return {"leaderworkerset.sigs.k8s.io/name": name, "leaderworkerset.sigs.k8s.io/group-index": str(group),
                "leaderworkerset.sigs.k8s.io/worker-index": str(worker),
                "leaderworkerset.sigs.k8s.io/group-key": f"{name}-{group}-key"}
    ann = {"leaderworkerset.sigs.k8s.io/size": str(size)}
    leader = pod_from(tmpl["leaderTemplate"], f"{name}-{group}", ns, labels(0), ann)
    workers = [pod_from(tmpl["workerTemplate"], f"{name}-{group}-{w}", ns, labels(w), ann) for w in range(1, size)]
    return leader, workers


def bound_nodes(kube, ns: str, names) -> dict[str, str]:
    pods = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in kube.pods(ns)}
    return {n: pods[n] for n in names if pods.get(n)}


def node_labels(kube) -> dict[str, dict]:
    return {n["metadata"]["name"]: n["metadata"]["labels"] for n in kube.nodes()}


def held_reason(gp, ns: str, pod: str, reason: str, contains: str) -> str:
    """Wait for gangplace's Event ``reason`` on ``pod``; return what `kubectl describe pod` shows."""
    wait_for(lambda: any(e[0] == pod and e[1] == reason and contains in e[2] for e in gangplace_events(gp.kube, ns)),
             60, f"a {reason} Event on {pod}")
    described = gp.cp.kubectl("describe", "pod", "-n", ns, pod).stdout
    assert reason in described and contains in described, described[-1500:]
    return described


def test_jobset_driver_without_gpus_and_8_workers_bind_whole_in_one_block_and_the_pod_group_says_scheduled(
        gangplace, ns):
    kube = gangplace.kube
    docs = example("jobset-leader-workers.yaml")
    (group,) = [d for d in docs if d["kind"] == "PodGroup"]
    (jobset,) = [d for d in docs if d["kind"] == "JobSet"]
    kube.create(f"{POD_GROUPS}/namespaces/{ns}/podgroups", {**group, "metadata": {**group["metadata"], "namespace": ns}})
    pods = jobset_pods(jobset, ns)
    (driver,), workers = pods["driver"], pods["workers"]
    assert len(workers) == 8
    assert jobset["spec"]["startupPolicy"]["startupPolicyOrder"] == "InOrder"  # as JobSet does: the driver first
    kube.create_pod(ns, driver)
    # the driver needs no GPUs: the stock scheduler binds it at once, it does not wait for the gang
    wait_for(lambda: bound_nodes(kube, ns, [driver["metadata"]["name"]]), 30, "the driver bound")
    for pod in workers[:7]:  # the last worker is not created yet: the others are held
        kube.create_pod(ns, pod)
    held = workers[0]["metadata"]["name"]
    held_reason(gangplace, ns, held, "GangWaiting", "of 8 members reached bind")
    assert not bound_nodes(kube, ns, [p["metadata"]["name"] for p in workers])
    kube.create_pod(ns, workers[7])
    names = [p["metadata"]["name"] for p in workers]
    nodes = wait_for(lambda: (b := bound_nodes(kube, ns, names)) and len(b) == 8 and b, 60, "all 8 workers bound")
    labels = node_labels(kube)
    # topology-optimal: 8 whole nodes = one whole block (64 GPUs)
    assert len(set(nodes.values())) == 8 and len({labels[n][BLOCK_LABEL] for n in nodes.values()}) == 1, nodes
    phase = wait_for(lambda: kube.get(f"{POD_GROUPS}/namespaces/{ns}/podgroups/llm-finetune")
                     .get("status", {}).get("phase"), 30, "the PodGroup's status.phase")
    assert phase == "Scheduling"  # the CRD's phase for "minMember pods scheduled, not all running"
    assert_no_overcommit(kube)


def test_leaderworkerset_groups_with_a_bigger_leader_bind_whole_each_in_one_leaf(gangplace, ns):
    kube = gangplace.kube
    (lws,) = example("leaderworkerset-gang.yaml")
    groups = [lws_pods(lws, ns, g) for g in range(lws["spec"]["replicas"])]
    for leader, _ in groups:  # LeaderWorkerSet creates each leader first, its workers once it exists
        kube.create_pod(ns, leader)
    first = groups[0][0]["metadata"]["name"]
    held_reason(gangplace, ns, first, "GangWaiting", "of 4 members reached bind")
    for _, workers in groups:
        for pod in workers:
            kube.create_pod(ns, pod)
    labels = node_labels(kube)
    for leader, workers in groups:
        names = [leader["metadata"]["name"]] + [p["metadata"]["name"] for p in workers]
        nodes = wait_for(lambda: (b := bound_nodes(kube, ns, names)) and len(b) == 4 and b, 90,
                         f"group {names[0]} bound whole")
        # topology-optimal: 4 x 8 GPUs = the 4 nodes of one leaf
        assert len(set(nodes.values())) == 4 and len({labels[n][LEAF_LABEL] for n in nodes.values()}) == 1, nodes
    # the first leader was planned alone (4 alike) and held: its workers had the gang planned again
    assert gangplace.metric('gangplace_extender_events_total{event="gang_makeup_replanned"}') >= 1
    assert_no_overcommit(kube)

"""GPUs through Dynamic Resource Allocation (``resource.k8s.io/v1``) on the real control plane.

The test plays the GPU driver: it publishes one ResourceSlice per node (driver ``gpu.nvidia.com``,
8 devices, each with a ``productName`` and a ``cliqueId``: the NVLink clique, shared by 4 nodes that
no node label groups together) and creates the DeviceClass. gangplace reads the clique as a
topology level (config ``dra.topology_attributes``); the shipped scheduler configuration calls it
for claim-based pods; kube-controller-manager's resource-claim controller makes each pod's claim
from its ResourceClaimTemplate, and the scheduler's DynamicResources plugin allocates the devices
on the node gangplace chose.
"""
from __future__ import annotations

import copy

import pytest
import urllib3
import yaml

from tests.e2e.conftest import Gangplace, require_control_plane
from tests.e2e.harness import PAUSE_IMAGE, REPO, ControlPlane, scheduler_config, wait_for
from tests.e2e.test_manifests import STAND_IN_CRDS, stand_in_crd

pytestmark = pytest.mark.e2e

DRIVER = CLASS = "gpu.nvidia.com"  # NVIDIA's DRA driver and DeviceClass names (gangplace's defaults)
JOBSET_CRD = next(c for c in STAND_IN_CRDS if c[2] == "JobSet")  # a schemaless stand-in: only the kind exists
NODES = [f"dra-n{i:02d}" for i in range(16)]  # no topology labels: the cliques come from the devices


def clique_of(node: str) -> str:
    return f"nvl-{int(node[-2:]) % 4}"  # interleaved: nodes 3, 7, 11, 15 share clique nvl-3


def resource_slice(node: str, gpus: int = 8) -> dict:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": f"{node}-{DRIVER}"},
            "spec": {"driver": DRIVER, "nodeName": node,
                     "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                     "devices": [{"name": f"gpu-{i}", "attributes": {
                         "productName": {"string": "NVIDIA H100 80GB HBM3"}, "cliqueId": {"string": clique_of(node)},
                         "index": {"int": i}}} for i in range(gpus)]}}


def claim_template(name: str, count: int, device_class: str = CLASS) -> dict:
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate", "metadata": {"name": name},
            "spec": {"spec": {"devices": {"requests": [{"name": "gpus", "exactly": {
                "deviceClassName": device_class, "allocationMode": "ExactCount", "count": count}}]}}}}


def claim_pod(name: str, template: str, *, gang: str | None = None, size: int | None = None,
              annotations: dict | None = None, node_selector: dict | None = None) -> dict:
    labels = {"gangplace.dev/gang": gang, "gangplace.dev/size": str(size)} if gang else {}
    spec = {"schedulerName": "gangplace", "terminationGracePeriodSeconds": 0,
            "resourceClaims": [{"name": "gpus", "resourceClaimTemplateName": template}],
            "containers": [{"name": "main", "image": PAUSE_IMAGE,
                            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "claims": [{"name": "gpus"}]}}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels, "annotations": annotations or {}}, "spec": spec}


@pytest.fixture(scope="module")
def gangplace():
    """This module's control plane (overrides conftest's): DRA nodes, gangplace reading the cliques,
    the resource-claim controller and the shipped scheduler configuration."""
    require_control_plane()
    cp = ControlPlane().start()
    try:
        kube = cp.admin
        cp.add_nodes(((n, {}) for n in NODES), gpus=0)  # no nvidia.com/gpu: every GPU is a DRA device
        kube.create("/apis/resource.k8s.io/v1/deviceclasses", {
            "apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": CLASS},
            "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]}})
        for n in NODES:
            kube.create("/apis/resource.k8s.io/v1/resourceslices", resource_slice(n))
        cp.apply_rbac()
        config = cp.dir / "gangplace-dra.yaml"
        config.write_text(yaml.safe_dump({"dra": {"topology_attributes": "clique=cliqueId"}}))
        proc, url = cp.start_gangplace(extra=("--config", str(config)))
        cp.start_controller_manager("resourceclaim-controller")
        cp.start_scheduler(scheduler_config(cp.kubeconfig("scheduler"), url))
        yield Gangplace(cp, kube, proc, url, int(url.rsplit(":", 1)[1]))
    finally:
        cp.stop()


def bound_pods(kube, ns) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in kube.pods(ns) if p["spec"].get("nodeName")}


def wait_bound(kube, ns, n, timeout=60) -> dict[str, dict]:
    return wait_for(lambda: len(b := bound_pods(kube, ns)) == n and b, timeout, f"{n} pods of {ns} bound")


def allocation(kube, pod: dict) -> tuple[list[dict], dict]:
    """The allocated device results of the pod's (generated) claim, and the claim."""
    (status,) = pod["status"]["resourceClaimStatuses"]
    claim = kube.get(f"/apis/resource.k8s.io/v1/namespaces/{pod['metadata']['namespace']}/resourceclaims/"
                     f"{status['resourceClaimName']}")
    return claim["status"]["allocation"]["devices"]["results"], claim


def assert_devices_on_their_nodes(kube, pods: dict[str, dict], per_pod: int) -> None:
    """Every pod's claim holds ``per_pod`` devices of its own node, reserved for it; none shared."""
    seen = set()
    for name, pod in pods.items():
        node = pod["spec"]["nodeName"]
        results, claim = wait_for(lambda: (a := allocation(kube, bound_pods(kube, pod["metadata"]["namespace"])[name]))
                                  and a, 30, f"{name}'s claim allocated")
        assert len(results) == per_pod and {(r["driver"], r["pool"]) for r in results} == {(DRIVER, node)}, results
        assert pod["metadata"]["uid"] in {r["uid"] for r in claim["status"]["reservedFor"]}
        devices = {(r["pool"], r["device"]) for r in results}
        assert not devices & seen, f"{name} shares devices: {devices & seen}"
        seen |= devices


def test_a_claim_based_gang_of_8x4_gpus_is_placed_in_the_one_clique_that_fits_with_its_devices_there(gangplace, ns):
    kube = gangplace.kube
    kube.create(f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaimtemplates", claim_template("two", 2))
    kube.create(f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaimtemplates", claim_template("four", 4))
    # 2 GPUs taken in cliques nvl-0, nvl-1, nvl-2 (one node each): only nvl-3 still has 32 free GPUs
    for node in NODES[:3]:
        kube.create_pod(ns, claim_pod(f"small-{node}", "two", node_selector={"kubernetes.io/hostname": node}))
    small = wait_bound(kube, ns, 3)
    assert {p["spec"]["nodeName"] for p in small.values()} == set(NODES[:3])
    wait_for(lambda: gangplace.metric("gangplace_free_gpus") == 16 * 8 - 6, 30, "gangplace counts the claims' GPUs")
    for i in range(8):
        kube.create_pod(ns, claim_pod(f"train-{i}", "four", gang="train", size=8,
                                      annotations={"gangplace.dev/topology-required": "clique"}))
    pods = wait_bound(kube, ns, 11)
    gang = {n: p for n, p in pods.items() if n.startswith("train-")}
    nodes = sorted(p["spec"]["nodeName"] for p in gang.values())
    # the optimum: the clique that fits, on its fewest nodes (2 pods x 4 GPUs fill a node)
    assert nodes == sorted(["dra-n03", "dra-n07", "dra-n11", "dra-n15"] * 2), nodes
    assert_devices_on_their_nodes(kube, gang, 4)
    assert_devices_on_their_nodes(kube, {n: p for n, p in pods.items() if n.startswith("small-")}, 2)
    assert gangplace.metric("gangplace_free_gpus") == 16 * 8 - 6 - 32


def filters(gangplace) -> float:
    n = gangplace.metric('gangplace_extender_events_total{event="filter"}')
    return 0.0 if n != n else n  # NaN: no filter call yet


def test_with_managed_resources_the_scheduler_would_not_ask_gangplace_about_claim_based_pods(gangplace, ns):
    """Why the shipped config lists no ``managedResources``: kube-scheduler v1.36.3 asks an extender
    that has some only about pods whose containers request one (``HTTPExtender.IsInterested``)."""
    kube, cp = gangplace.kube, gangplace.cp
    cfg = scheduler_config(cp.kubeconfig("scheduler"), gangplace.url)
    cfg["profiles"][0]["schedulerName"] = "gangplace-managed"
    cfg["extenders"][0]["managedResources"] = [{"name": "nvidia.com/gpu", "ignoredByScheduler": False}]
    cp.start_scheduler(cfg, name="kube-scheduler-managed")
    try:
        kube.create(f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaimtemplates", claim_template("four", 4))
        before = filters(gangplace)
        for i in range(2):
            pod = claim_pod(f"skipped-{i}", "four", gang="skipped", size=2)
            pod["spec"]["schedulerName"] = "gangplace-managed"
            kube.create_pod(ns, pod)
        wait_bound(kube, ns, 2)
        assert filters(gangplace) == before, "bound without gangplace: one by one, by the default binder"
        kube.create_pod(ns, claim_pod("asked", "four"))  # the shipped profile
        wait_bound(kube, ns, 3)
        assert filters(gangplace) > before
    finally:
        cp.stop_component("kube-scheduler-managed")


def gangplace_events(kube, ns) -> list[tuple[str, str, str]]:
    return [(e["regarding"]["name"], e["reason"], e.get("note", ""))
            for e in kube.get(f"/apis/events.k8s.io/v1/namespaces/{ns}/events")["items"]
            if e.get("reportingController") == "gangplace.dev/extender"]


def test_a_claim_on_an_unknown_device_class_gets_its_reason_in_an_event_and_in_the_filter_answer(gangplace, ns):
    kube = gangplace.kube
    kube.create(f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaimtemplates",
                claim_template("typo", 4, device_class="gpu.nvidia.con"))
    kube.create(f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaimtemplates", claim_template("four", 4))
    bad = kube.create_pod(ns, claim_pod("bad-0", "typo", gang="mixed", size=1))
    why = "DeviceClass 'gpu.nvidia.con' does not exist"
    (event,) = wait_for(lambda: [e for e in gangplace_events(kube, ns) if e[1] == "InvalidPod"], 30,
                        "an InvalidPod Event on the pod")
    assert event[0] == "bad-0" and f"ResourceClaimTemplate {ns}/typo.spec.devices.requests[0]" in event[2] \
        and why in event[2], event
    # the scheduler's DynamicResources plugin stops the pod before any extender is asked; had it asked:
    answer = urllib3.request("POST", f"{gangplace.url}/filter", json={
        "Pod": bad, "Nodes": None, "NodeNames": NODES[:2]}, timeout=10).json()
    assert answer["NodeNames"] == [] and set(answer["FailedAndUnresolvableNodes"]) == set(NODES[:2])
    assert all(why in r for r in answer["FailedAndUnresolvableNodes"].values()), answer
    # nothing else is affected: a good gang in the same namespace binds, the bad pod stays pending
    for i in range(2):
        kube.create_pod(ns, claim_pod(f"good-{i}", "four", gang="good", size=2))
    pods = wait_bound(kube, ns, 2)
    assert set(pods) == {"good-0", "good-1"} and len({p["spec"]["nodeName"] for p in pods.values()}) == 1
    assert_devices_on_their_nodes(kube, pods, 4)
    assert not kube.get(f"/api/v1/namespaces/{ns}/pods/bad-0")["spec"].get("nodeName")


def jobset_pods(jobset: dict) -> list[dict]:
    """The pods the JobSet and Job controllers would create for ``jobset`` (neither runs here):
    the pod template with the labels and the completion-index annotation they add."""
    out = []
    for rjob in jobset["spec"]["replicatedJobs"]:
        job_spec = rjob["template"]["spec"]
        for r in range(rjob.get("replicas", 1)):
            job = f"{jobset['metadata']['name']}-{rjob['name']}-{r}"
            for index in range(job_spec["completions"]):
                pod = copy.deepcopy(job_spec["template"])
                meta = pod.setdefault("metadata", {})
                meta["name"] = f"{job}-{index}"
                meta.setdefault("labels", {}).update({
                    "jobset.sigs.k8s.io/jobset-name": jobset["metadata"]["name"],
                    "jobset.sigs.k8s.io/replicatedjob-name": rjob["name"], "batch.kubernetes.io/job-name": job})
                meta.setdefault("annotations", {})["batch.kubernetes.io/job-completion-index"] = str(index)
                out.append({"apiVersion": "v1", "kind": "Pod", **pod})
    return out


def test_the_jobset_example_with_a_resource_claim_template_is_bound_with_its_devices(gangplace):
    kube, cp = gangplace.kube, gangplace.cp
    path = REPO / "deploy" / "examples" / "jobset-dra.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    (jobset,) = [d for d in docs if d["kind"] == "JobSet"]
    kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", stand_in_crd(*JOBSET_CRD))
    wait_for(lambda: kube.get("/apis/jobset.x-k8s.io/v1alpha2", ok_missing=True), 30, "JobSet served")
    r = cp.kubectl("apply", "-f", str(REPO / "deploy" / "examples" / "namespace.yaml"), "-f", str(path), check=False)
    assert r.returncode == 0, r.stdout + r.stderr  # as a user would; no JobSet controller runs here
    pods = jobset_pods(jobset)
    try:
        for pod in pods:
            kube.create_pod("ml", pod)
        bound = wait_bound(kube, "ml", len(pods))
        size = int(pods[0]["metadata"]["labels"]["gangplace.dev/size"])
        assert len(bound) == size
        nodes = {p["spec"]["nodeName"] for p in bound.values()}
        assert len({clique_of(n) for n in nodes}) == 1, f"the example asks for one NVLink clique: {nodes}"
        assert_devices_on_their_nodes(kube, bound, 4)
    finally:
        for pod in pods:
            kube.delete_pod("ml", pod["metadata"]["name"], grace=0)
        wait_for(lambda: not kube.pods("ml"), 30, "the example's pods deleted")

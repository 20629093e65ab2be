"""service/dra.py: a node's GPUs from ResourceSlices, a pod's GPUs from its ResourceClaims, and
how the Kubernetes sync and the extender use them (objects in the API server's JSON shape)."""
from __future__ import annotations

import asyncio

import pytest

from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.cluster import Cluster
from gangplace.engine.model.errors import InvalidRequest
from gangplace.service.dra import DRA_KINDS, ClaimsPending, DraIndex, parse_topology_attributes
from gangplace.service.extender import Extender
from gangplace.service.gangs import parse_pod
from gangplace.service.k8s_sync import SyncState
from gangplace.service.topology_presets import resolve_levels

DRIVER = "gpu.example.com"


def slice_(node, n=8, *, clique="c0", name=None, generation=1, driver=DRIVER, product="H100", pool=None):
    return {"metadata": {"name": name or f"{node}-{driver}"},
            "spec": {"driver": driver, "nodeName": node,
                     "pool": {"name": pool or node, "generation": generation, "resourceSliceCount": 1},
                     "devices": [{"name": f"gpu-{i}", "attributes": {
                         "productName": {"string": product}, f"{DRIVER}/clique": {"string": clique},
                         "index": {"int": i}}} for i in range(n)]}}


def request(count=None, *, cls=DRIVER, mode=None, admin=False, name="gpus"):
    exact = {"deviceClassName": cls}
    if count is not None:
        exact["count"] = count
    if mode:
        exact["allocationMode"] = mode
    if admin:
        exact["adminAccess"] = True
    return {"name": name, "exactly": exact}


def template(name, *requests, ns="ml"):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"spec": {"devices": {"requests": list(requests)}}}}


def claim(name, *requests, ns="ml", allocated=None):
    obj = {"metadata": {"name": name, "namespace": ns}, "spec": {"devices": {"requests": list(requests)}}}
    if allocated is not None:
        obj["status"] = {"allocation": {"devices": {"results": [
            {"request": "gpus", "driver": DRIVER, "pool": "n1", "device": f"gpu-{i}"} for i in range(allocated)]}}}
    return obj


def pod(*claims, ns="ml", uid="u1", node="", statuses=()):
    spec = {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}, "claims": [{"name": "gpus"}]}}],
            "resourceClaims": list(claims), "schedulerName": "gangplace"}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": f"p-{uid}", "namespace": ns, "uid": uid}, "spec": spec,
            "status": {"resourceClaimStatuses": list(statuses)}}


def index(**kw) -> DraIndex:
    dra = DraIndex(driver=DRIVER, device_classes=(DRIVER,), topology_attributes=(("clique", "clique"),), **kw)
    dra.replace("deviceclasses", [{"metadata": {"name": DRIVER}}, {"metadata": {"name": "nic.example.com"}}])
    return dra


# ---------------------------------------------------------------------- nodes
def test_a_node_has_the_devices_of_its_driver_with_the_common_product_and_clique():
    dra = index()
    dra.replace("resourceslices", [slice_("n1", 8, clique="nvl-a"), slice_("n2", 4, clique="nvl-b"),
                                   slice_("n1", 2, driver="nic.example.com"),  # another driver: not GPUs
                                   {"metadata": {"name": "shared"}, "spec": {"driver": DRIVER, "allNodes": True,
                                                                            "devices": [{"name": "x"}]}}])
    n1 = dra.node_devices("n1")
    assert (n1.count, n1.product, dict(n1.attributes)) == (8, "H100", {f"{DRIVER}/clique": "nvl-a"})
    assert dra.node_devices("n2").count == 4 and dra.node_devices("n3") is None
    assert dra.largest_node() == 8


def test_only_the_newest_generation_of_a_pool_counts_and_a_node_may_have_several_pools():
    dra = index()
    dra.put("resourceslices", slice_("n1", 8, name="old", generation=1))
    dra.put("resourceslices", slice_("n1", 6, name="new", generation=2))
    assert dra.node_devices("n1").count == 6
    dra.put("resourceslices", slice_("n1", 2, name="other-pool", pool="n1-extra"))
    assert dra.node_devices("n1").count == 8
    assert dra.put("resourceslices", slice_("n1", 6, name="new"), deleted=True) == {"n1"}
    assert dra.node_devices("n1").count == 10  # the old generation is all that is left of that pool


def test_a_slice_moving_to_another_node_changes_both():
    dra = index()
    dra.put("resourceslices", slice_("n1", 8, name="s"))
    assert dra.put("resourceslices", slice_("n2", 8, name="s")) == {"n1", "n2"}
    assert dra.node_devices("n1") is None and dra.node_devices("n2").count == 8


def test_topology_attributes_parse_with_or_without_a_level_name():
    assert parse_topology_attributes("clique=gpu.nvidia.com/cliqueId, nvswitch") == (
        ("clique", "gpu.nvidia.com/cliqueId"), ("nvswitch", "nvswitch"))
    assert parse_topology_attributes(None) == ()
    with pytest.raises(InvalidRequest, match="NAME=ATTRIBUTE"):
        parse_topology_attributes("clique=")


# ---------------------------------------------------------------------- pods
def test_a_pods_gpus_come_from_its_template_or_its_claim():
    dra = index()
    dra.replace("resourceclaimtemplates", [template("four", request(4)), template("one", request())])
    dra.replace("resourceclaims", [claim("shared", request(2))])
    assert dra.pod_gpus(pod({"name": "gpus", "resourceClaimTemplateName": "four"})) == 4
    assert dra.pod_gpus(pod({"name": "gpus", "resourceClaimTemplateName": "one"})) == 1  # count defaults to 1
    assert dra.pod_gpus(pod({"name": "gpus", "resourceClaimName": "shared"},
                            {"name": "more", "resourceClaimTemplateName": "four"})) == 6
    assert dra.pod_gpus(pod()) == 0


def test_requests_of_other_classes_and_admin_access_use_no_gpu_and_a_prioritized_list_counts_its_first():
    dra = index()
    first = {"name": "gpus", "firstAvailable": [{"name": "big", "deviceClassName": DRIVER, "count": 8},
                                                {"name": "small", "deviceClassName": DRIVER, "count": 2}]}
    dra.replace("resourceclaimtemplates", [template("mixed", request(2), request(3, cls="nic.example.com", name="nic"),
                                                    request(1, admin=True, name="monitor"), first)])
    assert dra.pod_gpus(pod({"name": "gpus", "resourceClaimTemplateName": "mixed"})) == 2 + 8


def test_allocation_mode_all_is_a_whole_node_until_allocated_then_what_was_allocated():
    dra = index()
    dra.replace("resourceslices", [slice_("n1", 8), slice_("n2", 4)])
    dra.replace("resourceclaimtemplates", [template("all", request(mode="All"))])
    dra.replace("resourceclaims", [claim("all-gen", request(mode="All"), allocated=4)])
    assert dra.pod_gpus(pod({"name": "gpus", "resourceClaimTemplateName": "all"})) == 8  # the largest node
    # bound: the generated claim (pod.status.resourceClaimStatuses) was allocated the 4 GPUs of n2
    assert dra.pod_gpus(pod({"name": "gpus", "resourceClaimTemplateName": "all"},
                            statuses=[{"name": "gpus", "resourceClaimName": "all-gen"}])) == 4


def test_a_device_class_that_does_not_exist_is_named_with_the_claim_and_request():
    dra = index()
    dra.replace("resourceclaimtemplates", [template("typo", request(4, cls="gpu.example.con"))])
    with pytest.raises(InvalidRequest) as e:
        dra.pod_gpus(pod({"name": "gpus", "resourceClaimTemplateName": "typo"}))
    assert not isinstance(e.value, ClaimsPending)
    assert str(e.value).startswith("ResourceClaimTemplate ml/typo.spec.devices.requests[0]: request 'gpus': "
                                   "DeviceClass 'gpu.example.con' does not exist")
    dra.replace("deviceclasses", [], present=False)  # DeviceClasses not readable: not checked
    assert dra.pod_gpus(pod({"name": "gpus", "resourceClaimTemplateName": "typo"})) == 0


def test_a_claim_or_template_not_synced_yet_is_pending_not_invalid():
    dra = index()
    with pytest.raises(ClaimsPending, match="ResourceClaimTemplate 'later'"):
        dra.pod_gpus(pod({"name": "gpus", "resourceClaimTemplateName": "later"}))
    with pytest.raises(ClaimsPending, match="ResourceClaim 'c'"):
        dra.pod_gpus(pod({"name": "gpus", "resourceClaimName": "c"}))


def test_parse_pod_adds_the_claims_gpus_to_the_extended_resource():
    dra = index()
    dra.replace("resourceclaimtemplates", [template("four", request(4))])
    p = pod({"name": "gpus", "resourceClaimTemplateName": "four"})
    p["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "1"
    assert parse_pod(p, resolve_levels([]), claim_gpus=dra.pod_gpus).gpus == 5
    assert parse_pod(p, resolve_levels([])).gpus == 1  # without DRA: the extended resource only


# ---------------------------------------------------------------------- the Kubernetes sync
def node(name):
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": "64", "memory": "512Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def synced(nodes=("n1", "n2", "n3", "n4"), cliques=("a", "a", "b", "b"), gpus=8, pods=()):
    state = ClusterState(Cluster((), []))
    sync = SyncState(state, levels="auto", dra=DraIndex(driver=DRIVER, device_classes=(DRIVER,),
                                                        topology_attributes=parse_topology_attributes("clique=clique")))
    sync.relist("deviceclasses", [{"metadata": {"name": DRIVER}}])
    sync.relist("resourceslices", [slice_(n, gpus, clique=c) for n, c in zip(nodes, cliques)])
    sync.relist("resourceclaimtemplates", [template("four", request(4))])
    sync.relist("resourceclaims", [])
    sync.relist("nodes", [node(n) for n in nodes])
    sync.relist("pods", list(pods))
    sync.relist("podgroups", [])
    sync.relist("volcanopodgroups", [])
    sync.relist("workloadpodgroups", [])
    sync.relist("workloads", [])
    assert sync.synced
    return sync, state


def test_nodes_get_their_gpus_product_and_the_clique_level_from_their_slices():
    sync, state = synced()
    c = state.cluster
    assert sync.levels.names == ("clique",) and c.levels == ("clique",)
    i = c.node_index["n3"]
    assert int(c.cap_gpus[i]) == 8 and state.node_spec("n3").gpu_type == "H100" and c.node_path(i) == "b/n3"
    assert sync.levels.level_for(f"{DRIVER}/clique", field="x") == "clique"  # by attribute or by name


def test_a_slice_event_updates_its_node_and_a_new_attribute_adds_the_level():
    state = ClusterState(Cluster((), []))
    sync = SyncState(state, dra=DraIndex(driver=DRIVER, device_classes=(DRIVER,),
                                         topology_attributes=(("clique", "clique"),)))
    for kind in ("nodes", "pods", "podgroups", "volcanopodgroups", *DRA_KINDS):
        sync.relist(kind, [node("n1")] if kind == "nodes" else [])
    assert state.node_spec("n1").gpus == 0 and sync.levels.names == ()
    sync.apply("resourceslices", {"type": "ADDED", "object": slice_("n1", 4, clique="x")})
    assert state.node_spec("n1").gpus == 4 and sync.levels.names == ("clique",) and state.node_spec("n1").topology == {"clique": "x"}
    sync.apply("resourceslices", {"type": "DELETED", "object": slice_("n1", 4)})
    assert state.node_spec("n1").gpus == 0


def test_a_bound_claim_based_pod_holds_its_claims_gpus():
    p = pod({"name": "gpus", "resourceClaimTemplateName": "four"}, node="n1")
    sync, state = synced(pods=[p])
    rec = state.allocation("u1")
    assert rec.node == "n1" and rec.gpus == 4
    assert state.stats()["allocated_gpus"] == 4


def test_a_pending_pod_with_an_unknown_device_class_is_reported_once_synced():
    sync, state = synced()
    told = []
    sync.on_invalid_pod = lambda obj, why: told.append((obj["metadata"]["name"], why))
    sync.apply("resourceclaimtemplates", {"type": "ADDED", "object": template("typo", request(4, cls="nope"))})
    sync.apply("pods", {"type": "ADDED", "object": pod({"name": "gpus", "resourceClaimTemplateName": "typo"}, uid="b")})
    sync.apply("pods", {"type": "ADDED", "object": pod({"name": "gpus", "resourceClaimTemplateName": "four"}, uid="g")})
    sync.apply("pods", {"type": "ADDED", "object": pod({"name": "gpus", "resourceClaimTemplateName": "later"}, uid="l")})
    assert told == [("p-b", "ResourceClaimTemplate ml/typo.spec.devices.requests[0]: request 'gpus': DeviceClass "
                             "'nope' does not exist; the scheduler cannot allocate it and gangplace cannot count it")]
    # a template that arrives after its pod: the pod is checked then
    sync.apply("resourceclaimtemplates", {"type": "ADDED", "object": template("later", request(1, cls="nope"))})
    assert [t[0] for t in told] == ["p-b", "p-l"] and "ml/later" in told[1][1]
    sync.apply("resourceclaimtemplates", {"type": "ADDED", "object": template("unused", request(1, cls="nope"))})
    assert len(told) == 2


# ---------------------------------------------------------------------- the extender
class Events:
    def __init__(self):
        self.posted = []

    def emit(self, pod, reason, message, *, warning=False):
        self.posted.append((pod.name, reason, message, warning))


def extender_over(sync, state):
    ext = Extender(state, levels=sync.levels)
    ext.claim_gpus = sync.dra.pod_gpus
    ext.events = Events()
    return ext


def filter_args(p, names):
    return {"Pod": p, "Nodes": None, "NodeNames": list(names)}


def test_the_extender_places_a_claim_based_gang_in_one_clique_on_the_fewest_nodes():
    sync, state = synced()
    ext = extender_over(sync, state)
    placed = []
    for i in range(4):
        p = pod({"name": "gpus", "resourceClaimTemplateName": "four"}, uid=f"m{i}")
        p["metadata"]["labels"] = {"gangplace.dev/gang": "g", "gangplace.dev/size": "4"}
        p["metadata"]["annotations"] = {"gangplace.dev/topology-required": "clique"}
        reply = asyncio.run(ext.filter(filter_args(p, ["n1", "n2", "n3", "n4"])))
        assert len(reply["NodeNames"]) == 1, reply
        placed.append(reply["NodeNames"][0])
    assert sorted(placed) in (["n1", "n1", "n2", "n2"], ["n3", "n3", "n4", "n4"]), placed


def test_the_extender_answers_an_unknown_device_class_with_its_reason_and_an_event():
    sync, state = synced()
    sync.apply("resourceclaimtemplates", {"type": "ADDED", "object": template("typo", request(4, cls="nope"))})
    ext = extender_over(sync, state)
    reply = asyncio.run(ext.filter(filter_args(pod({"name": "gpus", "resourceClaimTemplateName": "typo"}), ["n1"])))
    assert reply["NodeNames"] == [] and "DeviceClass 'nope' does not exist" in reply["FailedAndUnresolvableNodes"]["n1"]
    (event,) = ext.events.posted
    assert event[:2] == ("p-u1", "InvalidPod") and "DeviceClass 'nope' does not exist" in event[2] and event[3]


def test_the_extender_asks_again_soon_for_a_pod_whose_template_is_not_synced_yet():
    sync, state = synced()
    ext = extender_over(sync, state)
    reply = asyncio.run(ext.filter(filter_args(pod({"name": "gpus", "resourceClaimTemplateName": "later"}), ["n1"])))
    assert reply["NodeNames"] == [] and not reply["FailedAndUnresolvableNodes"] and "not known yet" in reply["Error"]
    assert ext.events.posted == []


def test_malformed_objects_are_skipped_not_raised():
    dra = index()
    for obj in ({"metadata": {"name": "s1"}, "spec": "nonsense"}, {"metadata": {}}, {"metadata": {"name": "s2"}},
                {"metadata": {"name": "s3"}, "spec": {"driver": DRIVER, "nodeName": "n1", "pool": None,
                                                      "devices": [None, {"attributes": "x"}]}}):
        dra.put("resourceslices", obj)
    assert dra.node_devices("n1").count == 2 and dra.node_devices("n1").product == ""
    dra.put("resourceclaimtemplates", {"metadata": {"name": "t", "namespace": "ml"},
                                       "spec": {"spec": {"devices": {"requests": [None, {"name": "x"}]}}}})
    assert dra.pod_gpus(pod({"name": "gpus", "resourceClaimTemplateName": "t"})) == 0

"""service/gangs.py and service/topology_presets.py: gang identity, requests, levels."""
from __future__ import annotations

import pytest

from gangplace.engine.model.errors import InvalidRequest
from gangplace.engine.model.types import NODE_LEVEL, SliceLayer
from gangplace.service.gangs import gang_of, gang_request, parse_pod, pod_requests
from gangplace.service.topology_presets import PRESETS, LevelMap, candidate_levels, resolve_levels

LEVELS = LevelMap(("block", "accelerator"),
                  ("network.topology.nvidia.com/block", "network.topology.nvidia.com/accelerator"))


def pod(labels=None, annotations=None, containers=None, init=None, **spec):
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": {"containers": containers if containers is not None else [
                {"name": "c", "resources": {"requests": {"nvidia.com/gpu": "8", "cpu": "500m", "memory": "1Gi"}}}],
                     **({"initContainers": init} if init else {}), **spec},
            "status": {"phase": "Pending"}}


@pytest.mark.parametrize("labels, annotations, expect", [
    ({"gangplace.dev/gang": "g", "gangplace.dev/size": "4"}, {}, ("ns/g", "gangplace", 4, None)),
    ({"gangplace.dev/gang": "g", "gangplace.dev/size": "4", "gangplace.dev/min-size": "2"}, {},
     ("ns/g", "gangplace", 4, 2)),
    ({"scheduling.x-k8s.io/pod-group": "pg"}, {}, ("ns/pg", "coscheduling", 3, None)),
    ({"scheduling.x-k8s.io/pod-group": "unknown"}, {}, ("ns/unknown", "coscheduling", None, None)),
    ({"scheduling.x-k8s.io/pod-group": "unknown", "gangplace.dev/size": "5"}, {},
     ("ns/unknown", "coscheduling", 5, None)),
    ({}, {"scheduling.k8s.io/group-name": "vc"}, ("ns/vc", "volcano", None, None)),
    ({"gangplace.dev/gang": "own", "gangplace.dev/size": "2", "scheduling.x-k8s.io/pod-group": "pg"}, {},
     ("ns/own", "gangplace", 2, None)),
    ({"leaderworkerset.sigs.k8s.io/name": "vllm", "leaderworkerset.sigs.k8s.io/group-index": "1",
      "leaderworkerset.sigs.k8s.io/worker-index": "0"}, {"leaderworkerset.sigs.k8s.io/size": "4"},
     ("ns/vllm-1", "leaderworkerset", 4, None)),
    ({"leaderworkerset.sigs.k8s.io/name": "vllm", "leaderworkerset.sigs.k8s.io/group-index": "0",
      "gangplace.dev/size": "3"}, {"leaderworkerset.sigs.k8s.io/size": "4"},
     ("ns/vllm-0", "leaderworkerset", 3, None)),
    ({"leaderworkerset.sigs.k8s.io/name": "vllm", "leaderworkerset.sigs.k8s.io/group-index": "0",
      "scheduling.x-k8s.io/pod-group": "pg"}, {"leaderworkerset.sigs.k8s.io/size": "4"},
     ("ns/pg", "coscheduling", 3, None)),
], ids=["gangplace labels", "elastic gangplace gang", "coscheduling PodGroup size from the sync",
        "coscheduling without a synced PodGroup: size unknown", "coscheduling with a size label fallback",
        "Volcano annotation", "our label wins over a pod-group",
        "a LeaderWorkerSet group is one gang of the LWS size",
        "a LeaderWorkerSet whose leader has no GPUs says its GPU members with gangplace.dev/size",
        "a PodGroup label wins over the LeaderWorkerSet labels"])
def test_gang_identity_from_labels(labels, annotations, expect):
    sizes = {("coscheduling", "ns", "pg"): 3}
    g = gang_of("ns", labels, annotations, LEVELS, lambda kind, ns, name: sizes.get((kind, ns, name)))
    assert (g.key, g.source, g.size, g.min_size) == expect


def test_a_pod_without_gang_labels_is_not_a_gang():
    info = parse_pod(pod(), LEVELS)
    assert info.gang is None and info.gpus == 8 and info.cpu == 500 and info.memory == 2**30
    req = gang_request(info)
    assert req.size == 1 and req.pod_sets[0].gpus == 8


def test_topology_annotations_accept_label_keys_and_level_names():
    g = gang_of("ns", {"gangplace.dev/gang": "g", "gangplace.dev/size": "8"}, {
        "gangplace.dev/topology-required": "network.topology.nvidia.com/block",
        "gangplace.dev/topology-preferred": "accelerator",
        "gangplace.dev/slice-size": "4", "gangplace.dev/slice-topology": "network.topology.nvidia.com/accelerator",
    }, LEVELS)
    assert (g.required, g.preferred, g.slices) == ("block", "accelerator", (SliceLayer(4, "accelerator"),))
    req = gang_request(parse_pod(pod({"gangplace.dev/gang": "g", "gangplace.dev/size": "8"}, {
        "kueue.x-k8s.io/podset-required-topology": "network.topology.nvidia.com/accelerator"}), LEVELS))
    assert req.topology.required == "accelerator" and req.size == 8 and req.name == "ns/g"
    host = gang_of("ns", {"gangplace.dev/gang": "g", "gangplace.dev/size": "8"},
                   {"gangplace.dev/slice-size": "2", "gangplace.dev/slice-topology": "kubernetes.io/hostname"}, LEVELS)
    assert host.slices == (SliceLayer(2, NODE_LEVEL),)


def test_elastic_gang_request_keeps_min_count():
    info = parse_pod(pod({"gangplace.dev/gang": "g", "gangplace.dev/size": "8", "gangplace.dev/min-size": "6"}), LEVELS)
    ps = gang_request(info).pod_sets[0]
    assert (ps.count, ps.min_count) == (8, 6)
    ps = gang_request(info, 3, min_count=1).pod_sets[0]
    assert (ps.count, ps.min_count) == (3, 1)


@pytest.mark.parametrize("labels, annotations, field", [
    ({"gangplace.dev/gang": "g", "gangplace.dev/size": "0"}, {}, "label gangplace.dev/size"),
    ({"gangplace.dev/gang": "g", "gangplace.dev/size": "x"}, {}, "label gangplace.dev/size"),
    ({"gangplace.dev/gang": "g"}, {}, "label gangplace.dev/size"),
    ({"gangplace.dev/gang": " "}, {}, "label gangplace.dev/gang"),
    ({"gangplace.dev/gang": "g", "gangplace.dev/size": "2", "gangplace.dev/min-size": "3"}, {},
     "label gangplace.dev/min-size"),
    ({"gangplace.dev/gang": "g", "gangplace.dev/size": "2"}, {"gangplace.dev/topology-required": "rack"},
     "annotation gangplace.dev/topology-required"),
    ({"gangplace.dev/gang": "g", "gangplace.dev/size": "2"}, {"kueue.x-k8s.io/podset-preferred-topology": "x/y"},
     "annotation kueue.x-k8s.io/podset-preferred-topology"),
    ({"gangplace.dev/gang": "g", "gangplace.dev/size": "2"}, {"gangplace.dev/slice-topology": "accelerator"},
     "annotation gangplace.dev/slice-size"),
    ({"gangplace.dev/gang": "g", "gangplace.dev/size": "2"},
     {"gangplace.dev/slice-topology": "accelerator", "gangplace.dev/slice-size": "-1"},
     "annotation gangplace.dev/slice-size"),
], ids=["size zero", "size not a number", "size missing", "blank gang name", "min-size above size",
        "unknown level", "unknown Kueue level", "slice level without size", "negative slice size"])
def test_bad_gang_labels_name_the_label(labels, annotations, field):
    with pytest.raises(InvalidRequest) as e:
        parse_pod(pod(labels, annotations), LEVELS)
    assert e.value.field == field


def test_requests_sum_containers_take_the_init_maximum_add_sidecars_and_overhead():
    p = pod(containers=[
        {"name": "a", "resources": {"requests": {"nvidia.com/gpu": 4, "cpu": "1", "memory": "1Gi"}}},
        {"name": "b", "resources": {"limits": {"nvidia.com/gpu": "4", "cpu": "2"}}},  # limits default requests
    ], init=[
        {"name": "setup", "resources": {"requests": {"cpu": "8", "memory": "512Mi"}}},
        {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
    ], overhead={"cpu": "250m"})
    gpus, cpu, mem = pod_requests(p)
    assert gpus == 8 and mem == 2**30
    assert cpu == max(3000 + 100, 8000 + 0) + 250  # the sidecar starts after setup


def test_configurable_gpu_resource_and_completion_index():
    p = pod({"batch.kubernetes.io/job-completion-index": "3"},
            containers=[{"name": "c", "resources": {"requests": {"amd.com/gpu": "2"}}}])
    info = parse_pod(p, LEVELS, gpu_resource="amd.com/gpu")
    assert info.gpus == 2 and info.completion_index == 3
    assert parse_pod(p, LEVELS).gpus == 0


@pytest.mark.parametrize("bad, field", [
    ({"metadata": None}, "Pod.metadata"),
    ({"metadata": {"name": "p"}}, "Pod.metadata.uid"),
    ({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [
        {"resources": {"requests": {"cpu": "lots"}}}]}}, "Pod.spec.containers[0].resources.cpu"),
    ({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": "x"}}, "Pod.spec.containers"),
    ({"metadata": {"name": "p", "uid": "u"}, "spec": {"priority": "high"}}, "Pod.spec.priority"),
], ids=["no metadata", "no uid", "bad quantity", "containers not a list", "priority not a number"])
def test_malformed_pods_raise_with_the_field(bad, field):
    with pytest.raises(InvalidRequest) as e:
        parse_pod(bad, LEVELS)
    assert e.value.field == field


# ---------------------------------------------------------------------- presets
def test_presets_cover_the_documented_label_keys():
    keys = {k for levels in PRESETS.values() for _, k in levels}
    for expected in ("network.topology.nvidia.com/core", "network.topology.nvidia.com/spine",
                     "network.topology.nvidia.com/leaf", "network.topology.nvidia.com/accelerator",
                     "network.topology.nvidia.com/tier-1", "xclr.topology.nvidia.com/domain",
                     "fabric.topograph.run/tier-2", "accelerator.topograph.run/domain", "nvidia.com/gpu.clique",
                     "cloud.google.com/gce-topology-block", "cloud.google.com/gce-topology-subblock",
                     "cloud.google.com/gce-topology-host", "topology.k8s.aws/network-node-layer-1",
                     "topology.k8s.aws/network-node-layer-3", "topology.kubernetes.io/zone"):
        assert expected in keys, expected


@pytest.mark.parametrize("labels, names", [
    ([{"network.topology.nvidia.com/block": "b", "network.topology.nvidia.com/accelerator": "r"}],
     ("block", "accelerator")),
    ([{"topology.kubernetes.io/zone": "z", "cloud.google.com/gce-topology-block": "b",
       "cloud.google.com/gce-topology-subblock": "s", "cloud.google.com/gce-topology-host": "h"}],
     ("zone", "block", "subblock", "host")),
    ([{"topology.k8s.aws/network-node-layer-3": "c", "topology.k8s.aws/network-node-layer-1": "a",
       "topology.k8s.aws/network-node-layer-2": "b"}], ("layer-1", "layer-2", "layer-3")),
    ([{"network.topology.nvidia.com/tier-1": "l"}, {"network.topology.nvidia.com/tier-2": "s",
                                                     "xclr.topology.nvidia.com/domain": "d"}],
     ("tier-2", "tier-1", "xclr-domain")),
    ([{"fabric.topograph.run/tier-3": "x", "accelerator.topograph.run/domain": "d", "nvidia.com/gpu.clique": "c"}],
     ("fabric-tier-3", "accelerator-domain", "clique")),
    ([{"kubernetes.io/hostname": "n"}], ()),
], ids=["Topograph v1", "GKE with a zone", "AWS layers, top first", "Topograph v2 across nodes",
        "Topograph v3 with the GPU clique", "no topology labels"])
def test_auto_keeps_only_levels_some_node_carries_top_first(labels, names):
    assert resolve_levels("auto", labels).names == names


def test_custom_levels_and_name_clashes():
    lm = resolve_levels([{"name": "rack", "label": "example.com/rack"}, "example.com/row"], None)
    assert lm.names == ("rack", "row") and lm.keys == ("example.com/rack", "example.com/row")
    clash = resolve_levels(["gke", "topograph-v1"], [{"cloud.google.com/gce-topology-block": "a",
                                                      "network.topology.nvidia.com/block": "b"}])
    assert clash.names == ("block", "network.topology.nvidia.com/block")
    with pytest.raises(InvalidRequest):
        candidate_levels([{"name": "x"}])
    with pytest.raises(InvalidRequest):
        candidate_levels([3])
    assert LEVELS.topology_of({"network.topology.nvidia.com/block": "b1", "other": "x"}) == {"block": "b1"}

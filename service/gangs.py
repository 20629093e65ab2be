"""Gang identity and resource requests from a Kubernetes Pod (the JSON the scheduler sends).

Conventions read, first match wins for the gang name (docs/kubernetes.md):

| source | gang name | size |
|---|---|---|
| gangplace | label ``gangplace.dev/gang`` | label ``gangplace.dev/size`` (``gangplace.dev/min-size``: elastic) |
| coscheduling | label ``scheduling.x-k8s.io/pod-group`` | the PodGroup's ``minMember`` (via ``group_size``), else ``gangplace.dev/size`` |
| Volcano | annotation/label ``scheduling.k8s.io/group-name`` | the Volcano PodGroup's ``minMember`` (via ``group_size("volcano", ...)``; the Kubernetes sync watches them), else ``gangplace.dev/size`` |
| LeaderWorkerSet | labels ``leaderworkerset.sigs.k8s.io/name`` + ``group-index``: one gang per group, ``<name>-<index>`` | ``gangplace.dev/size``, else the annotation ``leaderworkerset.sigs.k8s.io/size`` (leader + workers) |
| Workload API | ``spec.schedulingGroup.podGroupName`` (a ``scheduling.k8s.io/v1alpha2`` PodGroup) | the PodGroup's ``spec.schedulingPolicy.gang.minCount`` (via ``group_size("workload", ...)``, which returns a ``WorkloadGroup``) |

A Workload API PodGroup also gives the required level (``spec.schedulingConstraints.topology[0].key``,
a node label key) and may merge into its Workload's gang (``WorkloadGroup.gang``). A malformed one
raises ``InvalidRequest`` naming the PodGroup field: a topology key that is no configured level (no
node carries it), or, for a pod not bound yet, a ``minCount`` above the pods that name the group.

Topology (annotations, values are node label keys or level names, which may contain ``/``):
``gangplace.dev/topology-required``, ``gangplace.dev/topology-preferred``,
``gangplace.dev/slice-size`` + ``gangplace.dev/slice-topology``, and Kueue's
``kueue.x-k8s.io/podset-required-topology`` / ``-preferred-topology``.

Requests: the managed GPU resource (``nvidia.com/gpu`` by default) plus the GPUs of the pod's
ResourceClaims (Dynamic Resource Allocation, service/dra.py), and cpu/memory, from each
container's ``requests`` (falling back to ``limits``, as the API server defaults them), the pod
needing ``max(sum(containers) + sidecars, each init container + the sidecars started before it)``
plus ``spec.overhead``, as the scheduler computes it.
A gang is keyed by ``namespace/name``. A pod with no gang label is not a gang (``gang is None``).
Bad labels raise ``InvalidRequest`` naming the label.
"""
from __future__ import annotations

from collections.abc import Mapping  # isinstance checks: ~3x faster than typing.Mapping's
from dataclasses import dataclass, field
from typing import Any, Callable

from gangplace.engine.live.coschedule import Member
from gangplace.engine.model.errors import InvalidRequest
from gangplace.engine.model.types import GangRequest, SliceLayer, TopologyConstraint
from gangplace.engine.model.quantity import parse_quantity

from .topology_presets import LevelMap

GANG_LABEL = "gangplace.dev/gang"
SIZE_LABEL = "gangplace.dev/size"
MIN_SIZE_LABEL = "gangplace.dev/min-size"
REQUIRED_ANN = "gangplace.dev/topology-required"
PREFERRED_ANN = "gangplace.dev/topology-preferred"
SLICE_SIZE_ANN = "gangplace.dev/slice-size"
SLICE_TOPOLOGY_ANN = "gangplace.dev/slice-topology"
POD_GROUP_LABEL = "scheduling.x-k8s.io/pod-group"
VOLCANO_GROUP = "scheduling.k8s.io/group-name"
KUEUE_REQUIRED = "kueue.x-k8s.io/podset-required-topology"
KUEUE_PREFERRED = "kueue.x-k8s.io/podset-preferred-topology"
LWS_NAME = "leaderworkerset.sigs.k8s.io/name"  # LeaderWorkerSet: set on every pod of every group
LWS_GROUP_INDEX = "leaderworkerset.sigs.k8s.io/group-index"
LWS_SIZE = "leaderworkerset.sigs.k8s.io/size"  # annotation: pods per group, the leader included
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
MAX_GANG_SIZE = 65_536


@dataclass(frozen=True, slots=True)
class WorkloadGroup:
    """What the Kubernetes sync knows of a Workload API PodGroup (``scheduling.k8s.io/v1alpha2``)."""

    name: str  # the PodGroup
    min_count: int  # spec.schedulingPolicy.gang.minCount; 0: a "basic" group (no gang)
    topology_key: str | None = None  # spec.schedulingConstraints.topology[0].key
    pods: int = 0  # pods naming it in spec.schedulingGroup.podGroupName (pending or bound)
    gang: str | None = None  # its Workload says its groups go together: that gang's name (else the PodGroup's)
    size: int = 0  # the gang's size: min_count, or the sum over the Workload's groups
    members: int = 0  # pods of the whole gang (== pods for a gang of one PodGroup)
    settled: bool = True  # no pod joined or left the gang lately (a controller may still be creating them)
    gpuless: int = 0  # of ``members``, the pods requesting no GPUs (a leader): not in gangplace's gang

    def problem(self) -> str | None:
        """Why a pod of this group cannot be placed yet, or None."""
        if self.members < self.size:
            whole = "" if self.gang is None else f", summed over the PodGroups of Workload {self.gang}"
            return (f"needs {self.size} pods (spec.schedulingPolicy.gang.minCount{whole}) but only {self.members} "
                    f"name {'it' if self.gang is None else 'them'} in spec.schedulingGroup.podGroupName; nothing is "
                    f"reserved until the rest exist")
        return None


# group_size(kind, namespace, name) -> minMember or None for kind "coscheduling" or "volcano";
# a WorkloadGroup or None for kind "workload"
GroupSizeLookup = Callable[[str, str, str], "int | WorkloadGroup | None"]
# claim_gpus(pod) -> the GPUs its ResourceClaims ask for (DraIndex.pod_gpus, service/dra.py)
ClaimGpusLookup = Callable[[Mapping], int]


class ClaimsPending(InvalidRequest):
    """A ResourceClaim or template the pod names is not synced yet: ask again soon (not a bad pod)."""


@dataclass(frozen=True, slots=True)
class GangSpec:
    """What a member pod says about its gang."""

    key: str  # "namespace/name"
    namespace: str
    name: str
    source: str  # "gangplace" | "coscheduling" | "volcano" | "leaderworkerset" | "workload"
    size: int | None  # None: unknown yet (PodGroup not synced, no size label)
    min_size: int | None = None
    required: str | None = None  # level names
    preferred: str | None = None
    slices: tuple[SliceLayer, ...] = ()
    pod_set: str | None = None  # a Workload's gang: the PodGroup this member comes from


@dataclass(frozen=True, slots=True)
class PodInfo:
    uid: str
    namespace: str
    name: str
    gpus: int
    cpu: int  # millicores
    memory: int  # bytes
    priority: int = 0
    node_name: str = ""  # spec.nodeName: set once bound
    nominated_node: str = ""  # status.nominatedNodeName (after preemption)
    completion_index: int | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    gang: GangSpec | None = None
    phase: str = ""
    deleting: bool = False

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def _get(d: Any, *path, default=None):
    for p in path:
        if not isinstance(d, Mapping):
            return default
        d = d.get(p)
    return default if d is None else d


def _int_label(value: str, field: str, lo: int = 1, hi: int = MAX_GANG_SIZE) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise InvalidRequest(f"must be an integer, got {value!r}", field=field) from None
    if not lo <= n <= hi:
        raise InvalidRequest(f"must be between {lo} and {hi}, got {n}", field=field)
    return n


def pod_requests(pod: Mapping, gpu_resource: str = DEFAULT_GPU_RESOURCE) -> tuple[int, int, int]:
    """(GPUs, millicores, bytes) the pod requests, as the scheduler computes them."""
    spec = _get(pod, "spec", default={})
    if not isinstance(spec, Mapping):
        raise InvalidRequest("must be an object", field="Pod.spec")

    def one(container: Any, where: str) -> tuple[int, int, int]:
        res = _get(container, "resources", default={})
        req = _get(res, "requests", default={})
        lim = _get(res, "limits", default={})
        if not isinstance(req, Mapping) or not isinstance(lim, Mapping):
            raise InvalidRequest("requests and limits must be objects", field=f"{where}.resources")
        out = []
        for name, scale in ((gpu_resource, 1), ("cpu", 1000), ("memory", 1)):
            v = req.get(name, lim.get(name))
            out.append(0 if v is None else parse_quantity(v, field=f"{where}.resources.{name}", scale=scale))
        return out[0], out[1], out[2]

    total = [0, 0, 0]
    containers = spec.get("containers") or []
    if not isinstance(containers, list):
        raise InvalidRequest("must be a list", field="Pod.spec.containers")
    for i, c in enumerate(containers):
        for k, v in enumerate(one(c, f"Pod.spec.containers[{i}]")):
            total[k] += v
    inits = spec.get("initContainers") or []
    if not isinstance(inits, list):
        raise InvalidRequest("must be a list", field="Pod.spec.initContainers")
    # KEP-753: sidecars (restartPolicy Always) keep running, so they add to everything after them
    sidecars = [0, 0, 0]
    init_peak = [0, 0, 0]
    for i, c in enumerate(inits):
        req = one(c, f"Pod.spec.initContainers[{i}]")
        for k in range(3):
            if _get(c, "restartPolicy") == "Always":
                sidecars[k] += req[k]
                init_peak[k] = max(init_peak[k], sidecars[k])
            else:
                init_peak[k] = max(init_peak[k], req[k] + sidecars[k])
    total = [max(total[k] + sidecars[k], init_peak[k]) for k in range(3)]
    overhead = spec.get("overhead") or {}
    if isinstance(overhead, Mapping):
        for k, (name, scale) in enumerate(((gpu_resource, 1), ("cpu", 1000), ("memory", 1))):
            if overhead.get(name) is not None:
                total[k] += parse_quantity(overhead[name], field=f"Pod.spec.overhead.{name}", scale=scale)
    return total[0], total[1], total[2]


def parse_pod(pod: Any, levels: LevelMap, *, gpu_resource: str = DEFAULT_GPU_RESOURCE,
              group_size: GroupSizeLookup | None = None, claim_gpus: ClaimGpusLookup | None = None) -> PodInfo:
    """Read a Pod object. Raises InvalidRequest (naming the field or label) on bad input. A pod
    with ``spec.resourceClaims`` adds the GPUs ``claim_gpus`` counts in them (service/dra.py)."""
    if not isinstance(pod, Mapping):
        raise InvalidRequest("must be a Pod object", field="Pod")
    meta = pod.get("metadata")
    if not isinstance(meta, Mapping):
        raise InvalidRequest("must be an object", field="Pod.metadata")
    uid, name = meta.get("uid"), meta.get("name")
    namespace = meta.get("namespace") or "default"
    if not isinstance(uid, str) or not uid:
        raise InvalidRequest("is required", field="Pod.metadata.uid")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("is required", field="Pod.metadata.name")
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if not isinstance(labels, Mapping) or not isinstance(annotations, Mapping):
        raise InvalidRequest("labels and annotations must be objects", field="Pod.metadata")
    gpus, cpu, memory = pod_requests(pod, gpu_resource)
    spec = pod.get("spec") or {}
    if claim_gpus is not None and isinstance(spec, Mapping) and spec.get("resourceClaims"):
        gpus += claim_gpus(pod)
    priority = spec.get("priority") or 0
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidRequest(f"must be an integer, got {priority!r}", field="Pod.spec.priority")
    selector = spec.get("nodeSelector") or {}
    if not isinstance(selector, Mapping):
        raise InvalidRequest("must be an object", field="Pod.spec.nodeSelector")
    index = labels.get(COMPLETION_INDEX, annotations.get(COMPLETION_INDEX))
    completion_index = None if index is None else _int_label(index, f"label {COMPLETION_INDEX}", lo=0,
                                                            hi=2**31 - 1)
    status = pod.get("status") or {}
    group = _get(spec, "schedulingGroup", "podGroupName")
    gang = gang_of(namespace, labels, annotations, levels, group_size) if group is None or GANG_LABEL in labels \
        else workload_gang(namespace, str(group), labels, annotations, levels, group_size,
                           pending=not spec.get("nodeName"))
    return PodInfo(
        uid=uid, namespace=namespace, name=name, gpus=gpus, cpu=cpu, memory=memory, priority=priority,
        node_name=str(spec.get("nodeName") or ""), nominated_node=str(_get(status, "nominatedNodeName") or ""),
        completion_index=completion_index, node_selector={str(k): str(v) for k, v in selector.items()},
        gang=gang, phase=str(_get(status, "phase") or ""), deleting=bool(meta.get("deletionTimestamp")))


def gang_of(namespace: str, labels: Mapping, annotations: Mapping, levels: LevelMap,
            group_size: GroupSizeLookup | None = None) -> GangSpec | None:
    """The gang a pod belongs to, or None for a pod outside any gang."""
    def read(key):
        v = labels.get(key)
        return annotations.get(key) if v is None else v

    name, source = read(GANG_LABEL), "gangplace"
    if name is None and read(POD_GROUP_LABEL) is not None:
        name, source = read(POD_GROUP_LABEL), "coscheduling"
    if name is None and read(VOLCANO_GROUP) is not None:
        name, source = read(VOLCANO_GROUP), "volcano"
    if name is None and labels.get(LWS_NAME) is not None and labels.get(LWS_GROUP_INDEX) is not None:
        name, source = f"{labels[LWS_NAME]}-{labels[LWS_GROUP_INDEX]}", "leaderworkerset"
    if name is None:
        return None
    label_name = {"gangplace": GANG_LABEL, "coscheduling": POD_GROUP_LABEL, "volcano": VOLCANO_GROUP,
                  "leaderworkerset": LWS_NAME}[source]
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest(f"must be a non-empty gang name, got {name!r}", field=f"label {label_name}")
    name = name.strip()
    size = min_size = None
    if read(SIZE_LABEL) is not None:
        size = _int_label(read(SIZE_LABEL), f"label {SIZE_LABEL}")
    if source == "leaderworkerset" and size is None and annotations.get(LWS_SIZE) is not None:
        size = _int_label(annotations[LWS_SIZE], f"annotation {LWS_SIZE}")
    elif source in ("coscheduling", "volcano") and group_size is not None:
        looked_up = group_size(source, namespace, name)
        if looked_up is not None and looked_up > 0:
            size = int(looked_up)
    if read(MIN_SIZE_LABEL) is not None:
        min_size = _int_label(read(MIN_SIZE_LABEL), f"label {MIN_SIZE_LABEL}")
        if size is not None and min_size > size:
            raise InvalidRequest(f"must be <= {SIZE_LABEL} ({size}), got {min_size}", field=f"label {MIN_SIZE_LABEL}")
    if source == "gangplace" and size is None:
        raise InvalidRequest(f"a gang needs its size: set label {SIZE_LABEL}", field=f"label {SIZE_LABEL}")

    required, preferred, slices = _topology(annotations, levels)
    return GangSpec(f"{namespace}/{name}", namespace, name, source, size, min_size, required, preferred, slices)


def _topology(annotations: Mapping, levels: LevelMap) -> tuple[str | None, str | None, tuple[SliceLayer, ...]]:
    """(required, preferred, slices) from a pod's topology annotations."""
    def level(key, allow_node=False):
        v = annotations.get(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v.strip():
            raise InvalidRequest(f"must name a topology level, got {v!r}", field=f"annotation {key}")
        return levels.level_for(v, field=f"annotation {key}", allow_node=allow_node)

    required = level(REQUIRED_ANN) or level(KUEUE_REQUIRED)
    preferred = level(PREFERRED_ANN) or level(KUEUE_PREFERRED)
    slices: tuple[SliceLayer, ...] = ()
    s_size, s_level = annotations.get(SLICE_SIZE_ANN), level(SLICE_TOPOLOGY_ANN, allow_node=True)
    if (s_size is None) != (s_level is None):
        raise InvalidRequest(f"{SLICE_SIZE_ANN} and {SLICE_TOPOLOGY_ANN} go together",
                             field=f"annotation {SLICE_SIZE_ANN if s_size is None else SLICE_TOPOLOGY_ANN}")
    if s_size is not None:
        slices = (SliceLayer(_int_label(s_size, f"annotation {SLICE_SIZE_ANN}"), s_level),)
    return required, preferred, slices


def workload_gang(namespace: str, group: str, labels: Mapping, annotations: Mapping, levels: LevelMap,
                  group_size: GroupSizeLookup | None = None, *, pending: bool = True) -> GangSpec | None:
    """The gang of a pod with ``spec.schedulingGroup.podGroupName: group`` (the Workload API), None
    for a PodGroup with the ``basic`` policy. Annotations may add a preferred level or slices; the
    required level is the PodGroup's."""
    looked_up = group_size("workload", namespace, group) if group_size is not None else None
    wg = looked_up if isinstance(looked_up, WorkloadGroup) else None
    where = f"PodGroup {namespace}/{group}"
    if wg is not None and wg.min_count <= 0:
        return None  # policy "basic": scheduled pod by pod
    required, preferred, slices = _topology(annotations, levels)
    if wg is None:  # not synced yet (or the API is off): the size label, if any
        size = _int_label(labels[SIZE_LABEL], f"label {SIZE_LABEL}") if SIZE_LABEL in labels else None
        return GangSpec(f"{namespace}/{group}", namespace, group, "workload", size, None, required, preferred, slices)
    if pending and wg.problem():
        if not wg.settled:  # pods still arriving (or not watched yet): wait, without a warning
            return GangSpec(f"{namespace}/{wg.gang or group}", namespace, wg.gang or group, "workload", None)
        raise InvalidRequest(wg.problem(), field=where)
    if wg.topology_key:
        field = f"{where} spec.schedulingConstraints.topology[0].key"
        if wg.topology_key not in levels.keys and wg.topology_key not in levels.names:
            known = [f"{k} ({n})" for n, k in zip(levels.names, levels.keys)]
            raise InvalidRequest(f"{wg.topology_key!r} is not a topology level: no node carries this label, or it "
                                 f"is missing from cluster.topology_levels; the levels are {known or 'none'}",
                                 field=field)
        required = levels.level_for(wg.topology_key, field=field)
    name = wg.gang or group
    return GangSpec(f"{namespace}/{name}", namespace, name, "workload", max(1, wg.size - wg.gpuless), None, required,
                    preferred, slices,
                    pod_set=group if wg.gang is not None else None)


def gang_key(namespace: str, labels: Mapping, annotations: Mapping, group: str | None = None) -> str | None:
    """The gang key a pod's labels (or its Workload API PodGroup ``group``) name, without
    validating size or topology (used to account for running pods whose labels are invalid: they
    still belong to their gang)."""
    if group and GANG_LABEL not in labels:
        return f"{namespace}/{group}"
    for key in (GANG_LABEL, POD_GROUP_LABEL, VOLCANO_GROUP):
        v = labels.get(key, annotations.get(key))
        if isinstance(v, str) and v.strip():
            return f"{namespace}/{v.strip()}"
    if labels.get(LWS_NAME) is not None and labels.get(LWS_GROUP_INDEX) is not None:
        return f"{namespace}/{labels[LWS_NAME]}-{labels[LWS_GROUP_INDEX]}"
    return None


def member_of(pod: PodInfo) -> Member:
    """The gang planner's view of a pod (engine/live/coschedule.py)."""
    g = pod.gang
    common = dict(pod_uid=pod.uid, gpus=pod.gpus, cpu=pod.cpu, memory=pod.memory, ref=pod.ref,
                  node_selector=pod.node_selector, priority=pod.priority, completion_index=pod.completion_index,
                  nominated_node=pod.nominated_node)
    if g is None:
        return Member(**common)
    return Member(**common, gang=g.key, gang_size=g.size, min_size=g.min_size,
                  topology=TopologyConstraint(g.required, g.preferred, g.slices))


def gang_request(pod: PodInfo, count: int | None = None, *, min_count: int | None = None,
                 name: str | None = None) -> GangRequest:
    """The engine request for a pod's gang (``count`` members like this pod), or a one-pod gang
    for a pod outside any gang (``Member.gang_request``)."""
    return member_of(pod).gang_request(count, min_count=min_count, name=name)

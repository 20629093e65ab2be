"""Kubernetes sync: list+watch Nodes, Pods, PodGroups (coscheduling, Volcano, Workload API) and Workloads into a ``ClusterState``.

Two layers, so the logic is testable without a cluster:
- ``SyncState``: pure event handling. ``apply(kind, event)`` takes a watch event in the real API
  shape (``{"type": "ADDED"|"MODIFIED"|"DELETED"|"ERROR", "object": {...}}``, objects as the API
  server serialises them: lowerCamel JSON) and updates the state; ``relist(kind, items)``
  replaces everything of a kind after a (re-)list. An ERROR event with code 410 (Gone: the
  resourceVersion is too old) raises ``Gone`` so the watcher re-lists.
- ``KubeWatcher``: one asyncio task per kind running list -> watch(resourceVersion) on the
  pooled asyncio client (service/kube_client.py), re-listing on 410 Gone and backing off
  exponentially (0.5 s .. 30 s) on other errors. After the first list of every kind it marks the state synced, which flips
  the extender's ``ready`` (and the service's /readyz).

What is read:
- Node: allocatable GPUs (the configured resource), cpu, memory, pods; labels (topology levels
  resolved from the configured label keys or preset, ``service/topology_presets.py``);
  ``spec.unschedulable``, the Ready condition and the not-ready/unreachable/unschedulable
  taints make a node unschedulable. Other taints are left to the scheduler, which only offers
  nodes a pod tolerates (dedicated GPU nodes are usually tainted for GPU pods).
- Pod: a bound (``spec.nodeName``), non-terminal pod holds its requests on its node (every pod,
  GPU or not, since CPU and memory are shared); its gang comes from its labels. Deletion or a
  terminal phase releases the allocation. Pending pods are kept so a bind can find the pod.
- PodGroup (``scheduling.x-k8s.io/v1alpha1``): ``spec.minMember`` is the gang size of pods
  labelled ``scheduling.x-k8s.io/pod-group``. A cluster without the CRD simply has none.
  ``minMember`` counts every pod of the group; gangplace holds only those with GPUs (a leader
  without GPUs is the stock scheduler's, docs/kubernetes.md), so the gang size is ``minMember``
  less the group's pods without GPUs seen so far, pending or bound (``group_size``). Its
  ``status.phase`` is read too: once the group's bound pods reach ``minMember`` and the phase does
  not say so, ``on_group_scheduled`` is called (service/podgroup_status.py writes the status).
- Volcano PodGroup (``scheduling.volcano.sh/v1beta1``): ``spec.minMember`` is the gang size of
  pods annotated or labelled ``scheduling.k8s.io/group-name``; likewise optional.
- Workload API PodGroup (``scheduling.k8s.io/v1alpha2``, alpha in 1.36: the ``GenericWorkload``
  feature gate): ``spec.schedulingPolicy.gang.minCount`` is the gang size of the pods whose
  ``spec.schedulingGroup.podGroupName`` names it, ``spec.schedulingConstraints.topology[0].key`` its
  required level; the sync counts the pods naming each group. Workload: its annotation
  ``gangplace.dev/gang-scope: workload`` makes all PodGroups made from its templates one gang (a pod
  set each). Both optional: an apiserver without the API (404) or RBAC without it (403) has none.
- Dynamic Resource Allocation (``resource.k8s.io/v1``, service/dra.py): ResourceSlices give a
  node's GPUs (instead of the extended resource, where a node has them), its product and the
  device-attribute topology levels, which follow the label levels (nearest the nodes last);
  ResourceClaims and ResourceClaimTemplates give a pod's GPUs, DeviceClasses which classes exist.
  Optional too (an API that is not served or not readable: none). The first list of pods waits
  for the first list of these, so running claim-based pods are counted with their GPUs.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime
from collections.abc import Mapping  # isinstance checks: ~3x faster than typing.Mapping's
from typing import Callable, Iterable, Sequence

from gangplace.engine.model.errors import InvalidRequest
from gangplace.engine.model.types import DEFAULT_POD_SLOTS, UNLIMITED, NodeSpec
from gangplace.engine.model.quantity import parse_quantity
from gangplace.engine.live.state import ClusterState

from .dra import DRA_GROUP, DRA_KINDS, DRA_VERSION, ClaimsPending, DraIndex, NodeDevices
from .gangs import (DEFAULT_GPU_RESOURCE, GANG_LABEL, POD_GROUP_LABEL, VOLCANO_GROUP, WorkloadGroup, _get, gang_key,
                    parse_pod, pod_requests)
from .topology_presets import LevelMap, candidate_levels, describe, resolve_levels, summary

log = logging.getLogger("gangplace.k8s")

KINDS = ("nodes", "pods", "podgroups", "volcanopodgroups", "workloadpodgroups", "workloads", *DRA_KINDS)
PODGROUP_API = ("scheduling.x-k8s.io", "v1alpha1", "podgroups")
VOLCANO_PODGROUP_API = ("scheduling.volcano.sh", "v1beta1", "podgroups")
WORKLOAD_API = ("scheduling.k8s.io", "v1alpha2")
GROUP_APIS = {"podgroups": PODGROUP_API, "volcanopodgroups": VOLCANO_PODGROUP_API,  # optional CRDs and alpha APIs
              "workloadpodgroups": (*WORKLOAD_API, "podgroups"), "workloads": (*WORKLOAD_API, "workloads")}
OPTIONAL_APIS = {**GROUP_APIS, **{k: (DRA_GROUP, DRA_VERSION, k) for k in DRA_KINDS}}  # none if not served
GANG_SCOPE_ANN = "gangplace.dev/gang-scope"  # on a Workload: "workload" = its PodGroups are one gang
MEMBERS_GRACE_S = 5.0  # a PodGroup short of pods waits this long after its last change before it is called malformed
GONE_REMEMBERED = 65_536  # pod UIDs remembered as deleted (a Binding in flight is at most seconds old)
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# a coscheduling PodGroup's phases at or past "scheduled" (the CRD has no "Scheduled": "Scheduling"
# means minMember pods are scheduled, not all running yet; service/podgroup_status.py)
SCHEDULED_PHASES = frozenset({"Scheduling", "Running", "Finished", "Failed"})
_BLOCKING_TAINTS = {"node.kubernetes.io/unschedulable", "node.kubernetes.io/not-ready",
                    "node.kubernetes.io/unreachable"}


class Gone(Exception):
    """The watch's resourceVersion expired (HTTP 410): list again."""


def node_spec(node: Mapping, levels: LevelMap, gpu_resource: str = DEFAULT_GPU_RESOURCE,
              devices: NodeDevices | None = None) -> NodeSpec:
    """A NodeSpec from a v1.Node object and, for a node with DRA GPUs, what its ResourceSlices say
    (``devices``: the count, product and topology attributes replace the extended resource's).
    Raises InvalidRequest on an unreadable quantity."""
    name = _get(node, "metadata", "name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("is required", field="Node.metadata.name")
    labels = {str(k): str(v) for k, v in (_get(node, "metadata", "labels", default={}) or {}).items()}
    alloc = _get(node, "status", "allocatable", default={}) or {}
    where = f"Node {name}.status.allocatable"

    def qty(key, scale, default):
        v = alloc.get(key)
        return default if v is None else parse_quantity(v, field=f"{where}.{key}", scale=scale)

    gpus = qty(gpu_resource, 1, 0) if devices is None else devices.count
    topology = levels.topology_of({**labels, **(devices.attributes or {})} if devices is not None else labels)
    pods = qty("pods", 1, DEFAULT_POD_SLOTS)
    ready = True
    for c in _get(node, "status", "conditions", default=[]) or []:
        if isinstance(c, Mapping) and c.get("type") == "Ready":
            ready = c.get("status") == "True"
    blocked = any(isinstance(t, Mapping) and t.get("key") in _BLOCKING_TAINTS
                  and t.get("effect") in ("NoSchedule", "NoExecute")
                  for t in _get(node, "spec", "taints", default=[]) or [])
    schedulable = ready and not blocked and not _get(node, "spec", "unschedulable", default=False)
    return NodeSpec(name=name, topology=topology, gpus=min(gpus, 2**30),
                    gpu_type=(devices.product if devices is not None else "") or labels.get(GPU_PRODUCT_LABEL, ""),
                    cpu=qty("cpu", 1000, UNLIMITED),
                    memory=qty("memory", 1, UNLIMITED), pods=min(pods, 2**30), schedulable=schedulable,
                    labels=labels)


_KEPT_ANNOTATION_PREFIXES = ("gangplace.dev/", "kueue.x-k8s.io/", "scheduling.k8s.io/", "batch.kubernetes.io/")


def slim_node(node: Mapping) -> dict:
    """The parts of a Node that ``node_spec`` reads (a Node's images and managedFields can be
    tens of KB; 12,500 of them are kept for level changes)."""
    meta, spec, status = (node.get(k) or {} for k in ("metadata", "spec", "status"))
    return {"metadata": {k: meta[k] for k in ("name", "labels", "resourceVersion") if k in meta},
            "spec": {k: spec[k] for k in ("unschedulable", "taints") if k in spec},
            "status": {"allocatable": status.get("allocatable") or {},
                       "conditions": [c for c in status.get("conditions") or []
                                      if isinstance(c, Mapping) and c.get("type") == "Ready"]}}


def pod_start_time(obj) -> float | None:
    """A pod's ``status.startTime`` in seconds since the epoch (the node's age for objective "age");
    None (the state takes now) when it is absent or not a timestamp."""
    raw = _get(obj, "status", "startTime")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def slim_pod(pod: Mapping) -> dict:
    """The parts of a Pod that ``parse_pod`` reads (pending pods are kept for bind lookups)."""
    meta, spec, status = (pod.get(k) or {} for k in ("metadata", "spec", "status"))
    ann = meta.get("annotations") or {}
    out_meta = {k: meta[k] for k in ("name", "namespace", "uid", "labels", "resourceVersion", "deletionTimestamp")
                if k in meta}
    out_meta["annotations"] = {k: v for k, v in ann.items() if k.startswith(_KEPT_ANNOTATION_PREFIXES)} \
        if isinstance(ann, Mapping) else ann

    def containers(key):
        return [{k: c[k] for k in ("name", "resources", "restartPolicy") if k in c} if isinstance(c, Mapping) else c
                for c in spec.get(key) or []]
    out_spec = {k: spec[k] for k in ("overhead", "priority", "nodeSelector", "nodeName", "schedulerName",
                                     "schedulingGroup", "resourceClaims") if k in spec}
    out_spec["containers"] = containers("containers")
    if spec.get("initContainers"):
        out_spec["initContainers"] = containers("initContainers")
    return {"metadata": out_meta, "spec": out_spec,
            "status": {k: status[k] for k in ("phase", "nominatedNodeName", "resourceClaimStatuses") if k in status}}


class SyncState:
    """Applies Kubernetes objects and watch events to a ClusterState (pure: no API calls)."""

    def __init__(self, state: ClusterState, *, levels: str | Sequence = "auto",
                 gpu_resource: str = DEFAULT_GPU_RESOURCE,
                 on_pod_deleted: Callable[[str], None] | None = None,
                 on_synced: Callable[[], None] | None = None, dra: DraIndex | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.state = state
        self.clock = clock
        self.dra = dra or DraIndex()
        # device-attribute levels follow the label levels: they are read from a node's "labels"
        # merged with its devices' attributes (``_topology_labels``)
        self.levels_spec = ([levels] if isinstance(levels, str) else list(levels)) + [
            {"name": n, "label": a} for n, a in self.dra.topology_attributes]
        self._candidate_keys = {k for _, k in candidate_levels(self.levels_spec)}
        self.gpu_resource = gpu_resource
        self.levels = resolve_levels(self.levels_spec, [])
        self.on_invalid_pod: Callable[[Mapping, str], None] | None = None  # a pending pod gangplace cannot count
        self.on_pod_deleted = on_pod_deleted
        self.on_synced = on_synced
        self.on_levels: Callable[[LevelMap], None] | None = None  # the levels changed
        # (namespace, name, bound pods): a coscheduling PodGroup's bound pods reached its minMember
        self.on_group_scheduled: Callable[[str, str, int], None] | None = None
        self.pod_group_phase: dict[tuple[str, str], str] = {}  # coscheduling: status.phase
        self._phase_sent: set[tuple[str, str]] = set()  # groups told scheduled, until the watch shows it
        self._orphans: dict[str, Mapping] = {}  # bound pods whose node is not synced yet
        self.node_labels: dict[str, dict[str, str]] = {}
        self.raw_nodes: dict[str, Mapping] = {}
        self.pending: dict[str, Mapping] = {}  # uid -> Pod: not bound yet (for bind lookups)
        self.bound: dict[str, str] = {}  # uid -> node
        self._gone: dict[str, None] = {}  # UIDs the watch saw deleted or finished, oldest first
        self.pod_groups: dict[tuple[str, str], int] = {}  # coscheduling: (namespace, name) -> minMember
        self.volcano_groups: dict[tuple[str, str], int] = {}  # Volcano: (namespace, name) -> minMember
        # Workload API: (namespace, name) -> (minCount, topology key, Workload name or None)
        self.workload_groups: dict[tuple[str, str], tuple[int, str | None, str | None]] = {}
        self.workloads: dict[tuple[str, str], bool] = {}  # (namespace, name) -> its PodGroups are one gang
        self.group_pods: dict[tuple[str, str], set[str]] = {}  # (namespace, PodGroup) -> pod UIDs naming it
        self._pod_group_of: dict[str, tuple[str, str]] = {}  # pod UID -> (namespace, PodGroup)
        self._group_changed: dict[tuple[str, str], float] = {}  # (namespace, PodGroup) -> when it or its pods changed
        self._by_workload: dict[tuple[str, str], list[str]] | None = None  # (namespace, Workload) -> its PodGroups
        self.gpuless: dict[tuple[str, str, str], set[str]] = {}  # (kind, namespace, group) -> uids without GPUs
        self._gpuless_of: dict[str, tuple[str, str, str]] = {}  # uid -> its key in ``gpuless``
        self.listed: set[str] = set()
        self.synced = False
        self.resource_version: dict[str, str] = {}
        self._relisting = None

    # ------------------------------------------------------------------ lookups for the extender
    def group_size(self, kind: str, namespace: str, name: str) -> int | None:
        """The GPU members a PodGroup asks for: its ``minMember`` less its pods without GPUs (a Workload
        API PodGroup: a ``WorkloadGroup``, ``workload_group``)."""
        if kind == "workload":
            return self.workload_group(namespace, name)
        groups = {"coscheduling": self.pod_groups, "volcano": self.volcano_groups}.get(kind)
        size = None if groups is None else groups.get((namespace, name))
        if size is None:
            return None
        return max(1, size - len(self.gpuless.get((kind, namespace, name), ())))

    def _note_gpuless(self, uid: str, obj: Mapping) -> None:
        """Count a live pod of a PodGroup that requests no GPUs (see ``group_size``)."""
        meta = _get(obj, "metadata", default={})
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        if not isinstance(labels, Mapping) or not isinstance(annotations, Mapping) or GANG_LABEL in labels:
            return
        group, kind = _get(obj, "spec", "schedulingGroup", "podGroupName"), "workload"  # parse_pod's order
        if group is None:
            group, kind = labels.get(POD_GROUP_LABEL), "coscheduling"
        if group is None:  # gang_of's order: a coscheduling label wins over Volcano's
            group, kind = labels.get(VOLCANO_GROUP, annotations.get(VOLCANO_GROUP)), "volcano"
        if not isinstance(group, str) or not group.strip():
            return
        key = (kind, meta.get("namespace") or "default", group.strip())
        try:
            gpus = pod_requests(obj, self.gpu_resource)[0]
            if gpus == 0 and _get(obj, "spec", "resourceClaims"):  # GPUs through DRA claims?
                gpus = self.dra.pod_gpus(obj)
        except (ClaimsPending, InvalidRequest):
            return  # not known (yet): not counted as GPU-less; its next event asks again
        if gpus == 0:
            self.gpuless.setdefault(key, set()).add(uid)
            self._gpuless_of[uid] = key

    def _forget_gpuless(self, uid: str) -> None:
        key = self._gpuless_of.pop(uid, None)
        if key is not None:
            uids = self.gpuless[key]
            uids.discard(uid)
            if not uids:
                del self.gpuless[key]

    def workload_group(self, namespace: str, name: str) -> WorkloadGroup | None:
        """A Workload API PodGroup with the pods naming it (and, when its Workload makes its groups
        one gang, that gang's size and pods), or None if not seen."""
        got = self.workload_groups.get((namespace, name))
        if got is None:
            return None
        min_count, key, workload = got
        pods = len(self.group_pods.get((namespace, name), ()))
        now = self.clock()

        def settled(groups):
            return all(now - self._group_changed.get((namespace, g), -MEMBERS_GRACE_S) >= MEMBERS_GRACE_S for g in groups)
        def gpuless(groups):
            return sum(len(self.gpuless.get(("workload", namespace, g), ())) for g in groups)
        if workload is None or not self.workloads.get((namespace, workload)):
            return WorkloadGroup(name, min_count, key, pods, None, min_count, pods, settled([name]), gpuless([name]))
        if self._by_workload is None:  # rebuilt after a PodGroup change, not on every lookup
            self._by_workload = {}
            for (ns, n), v in self.workload_groups.items():
                if v[2] is not None:
                    self._by_workload.setdefault((ns, v[2]), []).append(n)
        siblings = [(n, self.workload_groups[(namespace, n)]) for n in self._by_workload.get((namespace, workload), ())]
        size = sum(v[0] for _, v in siblings)
        members = sum(len(self.group_pods.get((namespace, n), ())) for n, _ in siblings)
        keys = {v[1] for _, v in siblings if v[1]}  # the gang keeps one required level: the narrowest asked
        key = max(keys, key=lambda k: self.levels.keys.index(k) if k in self.levels.keys else -1) if keys else None
        names = [n for n, _ in siblings]
        return WorkloadGroup(name, min_count, key, pods, workload, size, members, settled(names), gpuless(names))

    def pod_lookup(self, uid: str) -> Mapping | None:
        return self.pending.get(uid)

    # ------------------------------------------------------------------ events
    def apply(self, kind: str, event: Mapping) -> None:
        """One watch event. ``kind`` is "nodes", "pods" or "podgroups"."""
        etype = event.get("type")
        obj = event.get("object") or {}
        if etype == "ERROR":
            code = _get(obj, "code")
            if code == 410:
                raise Gone(_get(obj, "message", default="resource version too old"))
            log.warning("watch %s error: %s", kind, _get(obj, "message", default=obj))
            return
        if etype == "BOOKMARK":
            self._remember_rv(kind, obj)
            return
        if etype not in ("ADDED", "MODIFIED", "DELETED"):
            log.warning("watch %s: unknown event type %r", kind, etype)
            return
        deleted = etype == "DELETED"
        if kind == "nodes":
            self._node(obj, deleted)
        elif kind == "pods":
            self._pod(obj, deleted)
        elif kind in GROUP_APIS:
            self._group(kind, obj, deleted)
            if kind == "podgroups":
                self._group_phase(obj, deleted)
        elif kind in DRA_KINDS:
            self._devices_changed(self.dra.put(kind, obj, deleted))
            if kind == "resourceclaimtemplates" and not deleted:
                self._template_arrived(obj)
        else:
            raise ValueError(f"unknown kind {kind!r}")
        self._remember_rv(kind, obj)

    def _remember_rv(self, kind: str, obj: Mapping) -> None:
        rv = _get(obj, "metadata", "resourceVersion")
        if rv:
            self.resource_version[kind] = str(rv)

    def relist(self, kind: str, items: Iterable[Mapping], resource_version: str | None = None, *,
               present: bool = True) -> None:
        """Replace everything of ``kind`` with a fresh list (first sync, or after 410 Gone);
        ``present=False``: an optional API that is not served (or not readable)."""
        self.relist_begin(kind)
        self.relist_page(kind, items)
        self.relist_end(kind, resource_version, present=present)

    def relist_begin(self, kind: str) -> None:
        """Start a paginated re-list; pages follow, then ``relist_end``."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        self._relisting = (kind, {}, set())  # (kind, nodes or pod groups seen, pod UIDs seen)

    def relist_page(self, kind: str, items: Iterable[Mapping]) -> None:
        _, staged, seen = self._relisting
        for obj in items:
            if kind == "nodes":
                name = _get(obj, "metadata", "name")
                if isinstance(name, str) and name:
                    staged[name] = slim_node(obj)
            elif kind == "pods":
                uid = _get(obj, "metadata", "uid")
                if uid:
                    seen.add(uid)
                    self._pod(obj, False)  # pods apply page by page: a list of 100k pods is never held whole
            elif kind in DRA_KINDS:
                staged[len(staged)] = obj
            else:
                if kind == "podgroups":
                    self._group_phase(obj, False)
                self._group(kind, obj, False, staged)

    def relist_end(self, kind: str, resource_version: str | None = None, *, present: bool = True) -> None:
        _, staged, seen = self._relisting
        self._relisting = None
        if kind == "nodes":
            self.raw_nodes = staged
            self.node_labels = {n: dict(_get(o, "metadata", "labels", default={}) or {}) for n, o in staged.items()}
            self._rebuild_nodes()
        elif kind == "pods":
            for uid in set(self.bound) | set(self.pending):
                if uid not in seen:
                    self._forget_pod(uid)
        elif kind in DRA_KINDS:
            self.dra.replace(kind, staged.values(), present=present)
            if kind == "resourceslices" and self.raw_nodes:
                self._rebuild_nodes()
        else:
            setattr(self, _GROUP_ATTR[kind], staged)
            self._by_workload = None
        if resource_version:
            self.resource_version[kind] = str(resource_version)
        self.listed.add(kind)
        if not self.synced and self.listed >= set(KINDS):
            self.synced = True
            log.info("first full sync done: %s", self.state.stats())
            if self.on_synced is not None:
                self.on_synced()

    # ------------------------------------------------------------------ nodes
    def _topology_labels(self, name: str, labels: Mapping[str, str]) -> Mapping[str, str]:
        devices = self.dra.node_devices(name)
        return {**labels, **devices.attributes} if devices is not None and devices.attributes else labels

    def _node_spec(self, raw: Mapping) -> NodeSpec:
        return node_spec(raw, self.levels, self.gpu_resource, self.dra.node_devices(_get(raw, "metadata", "name")))

    def _rebuild_nodes(self) -> None:
        """Resolve the levels against every node's labels and replace all nodes."""
        self.levels = resolve_levels(self.levels_spec, [self._topology_labels(n, lb) for n, lb in self.node_labels.items()])
        specs = []
        for name, raw in self.raw_nodes.items():
            try:
                specs.append(self._node_spec(raw))
            except InvalidRequest as e:
                log.warning("skipping node %s: %s", name, e)
        self.state.replace_nodes(specs, levels=self.levels.names)
        report = self.topology()
        (log.warning if report["incomplete_nodes"] else log.info)("%s", summary(report))
        if self.on_levels is not None:
            self.on_levels(self.levels)

    def topology(self) -> dict:
        """The levels derived from the nodes' labels, their domains, and the nodes lacking a level's
        label (``topology_presets.describe``; served at ``GET /topology``)."""
        return describe(self.levels, {n: self._topology_labels(n, lb) for n, lb in self.node_labels.items()},
                        self.levels_spec)

    def _node(self, obj: Mapping, deleted: bool) -> None:
        name = _get(obj, "metadata", "name")
        if not isinstance(name, str) or not name:
            return
        if deleted:
            self.raw_nodes.pop(name, None)
            self.node_labels.pop(name, None)
            self.state.remove_node(name)
            return
        labels = dict(_get(obj, "metadata", "labels", default={}) or {})
        self.raw_nodes[name] = slim_node(obj)
        self.node_labels[name] = labels
        self._upsert_node(name, labels)

    def _upsert_node(self, name: str, labels: Mapping[str, str]) -> None:
        new_keys = {k for k in self._topology_labels(name, labels) if k in self._candidate_keys} - set(self.levels.keys)
        if new_keys:  # a topology label the levels lack: the levels change for everyone
            self._rebuild_nodes()
            return
        try:
            self.state.upsert_node(self._node_spec(self.raw_nodes[name]))
        except InvalidRequest as e:
            log.warning("skipping node %s: %s", name, e)
            self.state.remove_node(name)

    def _devices_changed(self, nodes: Iterable[str]) -> None:
        """A node's ResourceSlices changed: its GPUs, product or device-attribute levels did."""
        for name in nodes:
            if name in self.raw_nodes:
                self._upsert_node(name, self.node_labels.get(name, {}))

    # ------------------------------------------------------------------ pods
    def _pod(self, obj: Mapping, deleted: bool) -> None:
        uid = _get(obj, "metadata", "uid")
        if not isinstance(uid, str) or not uid:
            return
        phase = _get(obj, "status", "phase", default="")
        node = _get(obj, "spec", "nodeName", default="")
        if deleted or phase in ("Succeeded", "Failed"):
            self._forget_pod(uid)
            return
        group = _get(obj, "spec", "schedulingGroup", "podGroupName")
        if isinstance(group, str) and group and uid not in self._pod_group_of:
            key = (_get(obj, "metadata", "namespace", default="default"), group)
            self._pod_group_of[uid] = key
            self.group_pods.setdefault(key, set()).add(uid)
            self._group_changed[key] = self.clock()
        if uid not in self._gpuless_of:  # requests never change: once is enough
            self._note_gpuless(uid, obj)
        if not node:
            self.pending[uid] = slim_pod(obj)
            self._check_claims(obj)
            return
        self.pending.pop(uid, None)
        try:
            pod = parse_pod(obj, self.levels, gpu_resource=self.gpu_resource, group_size=self.group_size,
                            claim_gpus=self.dra.pod_gpus)
            gang = pod.gang.key if pod.gang is not None else None
            gpus, cpu, memory, priority = pod.gpus, pod.cpu, pod.memory, pod.priority
        except InvalidRequest as e:  # still running: count what we can, without the gang
            log.warning("pod %s: %s", uid, e)
            try:
                gpus, cpu, memory = pod_requests(obj, self.gpu_resource)
                gpus += self.dra.pod_gpus(obj)
            except InvalidRequest:
                gpus = cpu = memory = 0
            meta = _get(obj, "metadata", default={})
            labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
            gang = gang_key(meta.get("namespace") or "default", labels, annotations,
                            _get(obj, "spec", "schedulingGroup", "podGroupName")) if isinstance(
                labels, Mapping) and isinstance(annotations, Mapping) else None
            priority = _get(obj, "spec", "priority", default=0)
            priority = priority if isinstance(priority, int) and not isinstance(priority, bool) else 0
        self.bound[uid] = node
        try:
            self.state.bind(uid, node, gpus=gpus, cpu=cpu, memory=memory, gang=gang,
                            namespace=_get(obj, "metadata", "namespace", default="default"),
                            name=_get(obj, "metadata", "name", default=""), priority=int(priority),
                            allow_overcommit=True, started=pod_start_time(obj))
        except InvalidRequest as e:  # unknown node: keep the pod until its node arrives
            self._orphans[uid] = slim_pod(obj)
            log.debug("pod %s on unknown node %s: %s", uid, node, e)
            return
        if gang is not None and self.on_group_scheduled is not None:
            self._check_group_scheduled(obj, gang)

    def _check_group_scheduled(self, obj: Mapping, gang: str) -> None:
        """A pod of a coscheduling PodGroup was bound: is the group scheduled now?"""
        labels = _get(obj, "metadata", "labels", default={})
        group = labels.get(POD_GROUP_LABEL) if isinstance(labels, Mapping) and GANG_LABEL not in labels else None
        if not isinstance(group, str):
            return
        key = (_get(obj, "metadata", "namespace", default="default"), group.strip())
        min_member = self.pod_groups.get(key)
        if (min_member is None or key in self._phase_sent or self.pod_group_phase.get(key, "") in SCHEDULED_PHASES
                or f"{key[0]}/{key[1]}" != gang):
            return
        bound = len(self.state.gang_members(gang))
        if bound >= min_member:
            self._phase_sent.add(key)
            self.on_group_scheduled(key[0], key[1], bound)

    def _group_phase(self, obj: Mapping, deleted: bool) -> None:
        key = (_get(obj, "metadata", "namespace", default="default"), _get(obj, "metadata", "name"))
        phase = _get(obj, "status", "phase", default="")
        if deleted or phase in SCHEDULED_PHASES:  # shown (or gone): a new group of that name is told again
            self._phase_sent.discard(key)
        if deleted:
            self.pod_group_phase.pop(key, None)
        else:
            self.pod_group_phase[key] = str(phase)

    def _check_claims(self, obj: Mapping) -> None:
        """A pending pod whose claims gangplace cannot count (a DeviceClass that does not exist):
        the scheduler's DynamicResources plugin stops it before any extender is asked, so this is
        where its reason is told (``on_invalid_pod``)."""
        if self.on_invalid_pod is None or not self.synced or not _get(obj, "spec", "resourceClaims"):
            return
        try:
            self.dra.pod_gpus(obj)
        except ClaimsPending:
            pass
        except InvalidRequest as e:
            self.on_invalid_pod(obj, str(e))

    def _template_arrived(self, template: Mapping) -> None:
        """Pending pods that named this ResourceClaimTemplate before it was synced: check them now."""
        ns, name = _get(template, "metadata", "namespace", default="default"), _get(template, "metadata", "name")
        for obj in self.pending.values():
            if _get(obj, "metadata", "namespace", default="default") == ns and any(
                    isinstance(r, Mapping) and r.get("resourceClaimTemplateName") == name
                    for r in _get(obj, "spec", "resourceClaims", default=[]) or []):
                self._check_claims(obj)

    def _forget_pod(self, uid: str) -> None:
        group = self._pod_group_of.pop(uid, None)
        if group is not None:
            members = self.group_pods.get(group, set())
            members.discard(uid)
            self._group_changed[group] = self.clock()
            if not members:
                self.group_pods.pop(group, None)
                self._group_changed.pop(group, None)
        self._forget_gpuless(uid)
        self.pending.pop(uid, None)
        self._orphans.pop(uid, None)
        self.bound.pop(uid, None)
        # marked gone before the unbind: a Binding still in flight is then not counted when it
        # returns (KubeBinder checks it under the state lock); UIDs are never reused
        self._gone[uid] = None
        while len(self._gone) > GONE_REMEMBERED:
            self._gone.pop(next(iter(self._gone)))
        self.state.unbind(uid)  # also pods the extender bound before the watch reported them
        if self.on_pod_deleted is not None:
            self.on_pod_deleted(uid)

    def was_deleted(self, uid: str) -> bool:
        """Did the watch report this pod UID deleted or finished (among the last GONE_REMEMBERED)?"""
        return uid in self._gone

    def retry_orphans(self) -> None:
        """Pods seen on nodes that were not synced yet: count them now."""
        for uid, obj in list(self._orphans.items()):
            if self.state.has_node(_get(obj, "spec", "nodeName", default="")):
                del self._orphans[uid]
                self._pod(obj, False)

    # ------------------------------------------------------------------ pod groups and workloads
    def _group(self, kind: str, obj: Mapping, deleted: bool, into: dict | None = None) -> None:
        """A PodGroup or Workload (``into``: a re-list's staging dict, else the live one)."""
        groups = getattr(self, _GROUP_ATTR[kind]) if into is None else into
        ns = _get(obj, "metadata", "namespace", default="default")
        name = _get(obj, "metadata", "name")
        if not name:
            return
        value = None if deleted else _GROUP_READERS[kind](obj)
        if kind == "workloadpodgroups" and into is None:
            self._by_workload = None
            self._group_changed[(ns, name)] = self.clock()
            if value is None:
                self._group_changed.pop((ns, name), None)
        if value is None:
            groups.pop((ns, name), None)
        else:
            groups[(ns, name)] = value


def _min_member(obj: Mapping) -> int | None:
    """Both CRD PodGroup kinds keep the gang size in ``spec.minMember``."""
    mm = _get(obj, "spec", "minMember")
    return mm if isinstance(mm, int) and not isinstance(mm, bool) and mm > 0 else None


def _workload_pod_group(obj: Mapping) -> tuple[int, str | None, str | None] | None:
    """A v1alpha2 PodGroup: (gang minCount, 0 for the "basic" policy; its first topology key; the
    Workload it was made from)."""
    policy = _get(obj, "spec", "schedulingPolicy", default={})
    if not isinstance(policy, Mapping):
        return None
    mc = _get(policy, "gang", "minCount")
    min_count = mc if isinstance(mc, int) and not isinstance(mc, bool) and mc > 0 else 0
    if policy.get("gang") is not None and min_count == 0:
        return None  # a gang without a valid minCount: the API server refuses these
    topo = _get(obj, "spec", "schedulingConstraints", "topology", default=[])
    key = _get(topo[0], "key") if isinstance(topo, list) and topo else None
    workload = _get(obj, "spec", "podGroupTemplateRef", "workload", "workloadName")
    return (min_count, key if isinstance(key, str) and key else None,
            workload if isinstance(workload, str) and workload else None)


def _workload(obj: Mapping) -> bool:
    return str(_get(obj, "metadata", "annotations", GANG_SCOPE_ANN, default="")).strip().lower() == "workload"


_GROUP_ATTR = {"podgroups": "pod_groups", "volcanopodgroups": "volcano_groups",
               "workloadpodgroups": "workload_groups", "workloads": "workloads"}
_GROUP_READERS = {"podgroups": _min_member, "volcanopodgroups": _min_member,
                  "workloadpodgroups": _workload_pod_group, "workloads": _workload}


WATCH_READ_SLACK_S = 30.0  # a watch read may wait this much longer than the server's own timeout
LIST_READ_TIMEOUT_S = 120.0  # per socket read of a list response
LIST_PAGE_SIZE = 500  # items per list page
NO_CRD_RETRY_S = 300.0  # an optional PodGroup kind that is not installed (or not readable): look again
PATHS = {"nodes": "/api/v1/nodes", "pods": "/api/v1/pods",
         **{kind: f"/apis/{group}/{version}/{plural}" for kind, (group, version, plural) in OPTIONAL_APIS.items()}}


class KubeWatcher:
    """list+watch of every kind as asyncio tasks on the service's loop, through the pooled
    ``KubeClient`` (service/kube_client.py): no threads, so events are applied one at a time on
    the loop that serves the extender, between its requests."""

    def __init__(self, sync: SyncState, kube, *, watch_timeout_s: int = 300,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0):
        self.sync = sync
        self.kube = kube  # KubeClient (or a fake with list_pages / watch, in tests)
        self.watch_timeout_s = watch_timeout_s
        self.backoff = (backoff_initial_s, backoff_max_s)
        self.stopping = False
        self.tasks: list = []
        self.relists: dict[str, int] = dict.fromkeys(KINDS, 0)  # how often each kind was listed

    def start(self) -> None:
        """Start one task per kind; call it on the loop."""
        import asyncio
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self.run(kind), name=f"gangplace-watch-{kind}") for kind in KINDS]

    def close(self) -> None:
        """Stop watching (on the loop): cancel the tasks."""
        self.stopping = True
        for t in self.tasks:
            t.cancel()

    async def aclose(self) -> None:
        """``close``, wait for the tasks, and close the client's connections."""
        import asyncio
        self.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.kube.close()

    async def _pause(self, seconds: float) -> None:
        import asyncio
        await asyncio.sleep(seconds)

    async def run(self, kind: str) -> None:
        """list, then watch from the list's resourceVersion; a watch that ends normally (server
        timeout) is resumed from the last resourceVersion seen; 410 Gone or an error lists again
        (after a backoff, for errors). Returns only when stopped."""
        import asyncio
        delay = self.backoff[0]
        need_list = True
        while not self.stopping:
            try:
                if need_list:
                    while kind == "pods" and not self.stopping and not set(DRA_KINDS) <= self.sync.listed:
                        await asyncio.sleep(0.05)  # claim-based pods are counted with their claims' GPUs
                    no_crd = await self._relist(kind)
                    need_list = False
                    if no_crd:
                        need_list = True
                        await self._pause(NO_CRD_RETRY_S)
                        continue
                async for event in self.kube.watch(PATHS[kind], resource_version=self.sync.resource_version.get(kind),
                                                   timeout_s=self.watch_timeout_s, read_slack_s=WATCH_READ_SLACK_S):
                    if self.stopping:
                        break
                    self.sync.apply(kind, event)
                    if kind == "nodes":
                        self.sync.retry_orphans()
                    delay = self.backoff[0]  # the watch works: the next failure starts the backoff over
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("watch %s: resource version gone, listing again", kind)
                need_list = True
            except Exception as e:  # API errors, connection loss, a stalled read: back off, then list again
                log.warning("watch %s failed (%s); retrying in %.1f s", kind, _describe(e), delay)
                need_list = True
                await self._pause(delay)
                delay = min(delay * 2, self.backoff[1])

    async def _relist(self, kind: str) -> bool:
        """List every page (``LIST_PAGE_SIZE`` items, limit/continue) into the SyncState, so a list
        of 100,000 pods is never held whole; True if a PodGroup CRD or the DRA API is not installed
        (or not readable: they are optional, looked at again every five minutes)."""
        pages = self.kube.list_pages(PATHS[kind], limit=LIST_PAGE_SIZE, timeout_s=LIST_READ_TIMEOUT_S)
        try:
            items, rv = await pages.__anext__()
        except Exception as e:
            status = getattr(e, "status", None)
            if kind not in OPTIONAL_APIS or status not in (403, 404):
                raise
            if status == 403:  # optional: older RBAC without this group must not keep /readyz false
                log.warning("no permission to list %s (%s); %s", kind, "/".join(OPTIONAL_APIS[kind]),
                            "no DRA GPUs are counted" if kind in DRA_KINDS else "gang sizes come from labels only")
            self.sync.relist(kind, [], present=False)
            self.relists[kind] += 1
            return True
        self.sync.relist_begin(kind)
        self.sync.relist_page(kind, items)
        async for items, page_rv in pages:  # an expired continue token raises 410: listed again from scratch
            rv = page_rv or rv
            self.sync.relist_page(kind, items)
        self.sync.relist_end(kind, rv)
        if kind == "nodes":
            self.sync.retry_orphans()
        self.relists[kind] += 1
        return False


def _describe(e: Exception) -> str:
    return str(e) or type(e).__name__


def start_kube_sync(state: ClusterState, ext, *, kubeconfig: str | None = None, in_cluster: bool = False,
                    levels: str | Sequence = "auto", gpu_resource: str = DEFAULT_GPU_RESOURCE,
                    dra: DraIndex | None = None, loop=None) -> tuple[SyncState, KubeWatcher]:
    """Wire a SyncState to an Extender and start watching on ``loop`` (the asyncio loop the
    extender runs in; this may be called from another thread) or, without one, on the running
    loop. One ``KubeClient`` serves the watches, the binds and the Events."""
    import asyncio
    from .binder import KubeBinder, PodRef
    from .events import INVALID_POD, EventRecorder
    from .podgroup_status import PodGroupStatusWriter
    from .kube_client import KubeClient, load_config
    kube = KubeClient.from_configuration(load_config(kubeconfig, in_cluster=in_cluster))
    sync = SyncState(state, levels=levels, gpu_resource=gpu_resource, dra=dra,
                     on_pod_deleted=ext.pod_deleted, on_synced=lambda: setattr(ext, "ready", True))
    ext.ready = False
    ext.group_size = sync.group_size
    ext.claim_gpus = sync.dra.pod_gpus
    ext.pod_lookup = sync.pod_lookup
    ext.binder = KubeBinder(state, kube, is_gone=sync.was_deleted)
    ext.events = EventRecorder(kube)  # Events on held, placed and refused gang members

    def invalid(pod: Mapping, why: str) -> None:  # only pods of gangplace's scheduler profile
        if _get(pod, "spec", "schedulerName") == ext.binder.scheduler_name:
            ext.events.emit(PodRef.of(pod), INVALID_POD, why, warning=True)
    sync.on_invalid_pod = invalid
    sync.on_group_scheduled = PodGroupStatusWriter(kube).scheduled  # a bound PodGroup's status.phase
    sync.on_levels = lambda lm: setattr(ext, "levels", lm)
    watcher = KubeWatcher(sync, kube)
    (loop or asyncio.get_running_loop()).call_soon_threadsafe(watcher.start)
    return sync, watcher

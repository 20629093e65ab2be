"""gangplace.v1 protobuf messages <-> engine dataclasses. Conversion only, no logic.

Requests are validated by the engine's own readers (``gang_from_dict``, ``node_from_dict``), so
gRPC callers get the same checks and the same field names in errors as file users: a message
is turned into the dict shape of a gang/cluster file first. CPU travels as millicores and
memory as bytes; an unset optional capacity means unlimited (engine ``UNLIMITED``).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import orjson

from gangplace.engine.model.errors import InvalidRequest
from gangplace.engine.model.formats import gang_from_dict, node_from_dict, topology_to_dict
from gangplace.engine.model.types import (DEFAULT_POD_SLOTS, UNLIMITED, Allocation, GangRequest, NodeSpec,
                                    Placement, PodAssignment)

from . import gangplace_pb2 as pb

_MAX_INT32 = 2**31 - 1


def _millis(v: int) -> str:
    return f"{v}m"  # a Kubernetes quantity: parse_quantity(scale=1000) gives the millicores back


# ---------------------------------------------------------------------- gangs
def gang_to_dict(msg: pb.Gang) -> dict[str, Any]:
    """The gang-file dict for a Gang message (what ``gang_from_dict`` validates)."""
    sets = []
    for ps in msg.pod_sets:
        d: dict[str, Any] = {"count": ps.count, "gpus": ps.gpus, "cpu": _millis(ps.cpu), "memory": ps.memory}
        if ps.name:
            d["name"] = ps.name
        if ps.HasField("min_count"):
            d["min_count"] = ps.min_count
        if ps.node_selector:
            d["node_selector"] = dict(ps.node_selector)
        sets.append(d)
    out: dict[str, Any] = {"name": msg.name or None, "pod_sets": sets}
    topo = topology_to_dict(msg.topology) if msg.HasField("topology") else {}
    if topo:
        out["topology"] = topo
    if msg.priority:
        out["priority"] = msg.priority
    return out


def gang_from_proto(msg: pb.Gang) -> GangRequest:
    """Validate and convert; raises InvalidRequest naming the field (``pod_sets[0].count: ...``)."""
    return gang_from_dict(gang_to_dict(msg))


def gang_to_proto(gang: GangRequest) -> pb.Gang:
    msg = pb.Gang(name=gang.name, priority=gang.priority)
    for ps in gang.pod_sets:
        p = msg.pod_sets.add(name=ps.name, count=ps.count, gpus=ps.gpus, cpu=ps.cpu, memory=ps.memory)
        if ps.min_count is not None:
            p.min_count = ps.min_count
        p.node_selector.update(ps.node_selector)
    t = gang.topology
    if t.required or t.preferred or t.slices:
        msg.topology.required = t.required or ""
        msg.topology.preferred = t.preferred or ""
        for s in t.slices:
            msg.topology.slices.add(size=s.size, level=s.level)
    return msg


# ---------------------------------------------------------------------- placements
def _level_values(mapping: Mapping[str, int], out) -> None:
    for level, value in mapping.items():
        out.add(level=level, value=int(value))


def placement_to_proto(p: Placement) -> pb.Placement:
    msg = pb.Placement(gang=p.gang, placed=p.placed, placer=p.placer, optimal=p.optimal,
                       elapsed_ms=float(p.elapsed_ms), reason=p.reason or "",
                       solver_import_ms=float(p.solver_import_ms))
    msg.pods.extend(pb.PodAssignment(pod_set=a.pod_set, index=a.index, node=a.node) for a in p.pods)
    _level_values(p.domains_used, msg.domains_used)
    _level_values(p.stranded_gpus, msg.stranded_gpus)
    if p.gap is not None:
        msg.gap = float(p.gap)
    if p.explanation is not None:
        msg.explanation_json = json_text(p.explanation)
    return msg


def placement_from_proto(msg: pb.Placement) -> Placement:
    return Placement(
        gang=msg.gang, placed=msg.placed,
        pods=tuple(PodAssignment(pod_set=a.pod_set, index=a.index, node=a.node) for a in msg.pods),
        domains_used={v.level: v.value for v in msg.domains_used},
        stranded_gpus={v.level: v.value for v in msg.stranded_gpus},
        placer=msg.placer, optimal=msg.optimal, gap=msg.gap if msg.HasField("gap") else None,
        elapsed_ms=msg.elapsed_ms, reason=msg.reason, solver_import_ms=msg.solver_import_ms,
        explanation=orjson.loads(msg.explanation_json) if msg.explanation_json else None)


def json_text(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
                        default=_json_default).decode()


def _json_default(obj: Any):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


# ---------------------------------------------------------------------- nodes
def node_to_dict(msg: pb.Node) -> dict[str, Any]:
    """The cluster-file dict for a Node message (what ``node_from_dict`` validates)."""
    d: dict[str, Any] = {"name": msg.name or None, "topology": dict(msg.topology), "gpus": msg.gpus,
                         "gpu_type": msg.gpu_type, "schedulable": not msg.unschedulable,
                         "labels": dict(msg.labels)}
    if msg.HasField("cpu"):
        d["cpu"] = _millis(msg.cpu)
    if msg.HasField("memory"):
        d["memory"] = msg.memory
    if msg.HasField("pods"):
        d["pods"] = msg.pods
    if msg.pods_used:
        d["pods_used"] = msg.pods_used
    # usage left at 0 with allocations given: the engine sums the allocations
    if msg.gpus_used or not msg.allocations:
        d["gpus_used"] = msg.gpus_used
    if msg.cpu_used or not msg.allocations:
        d["cpu_used"] = _millis(msg.cpu_used)
    if msg.memory_used or not msg.allocations:
        d["memory_used"] = msg.memory_used
    if msg.allocations:
        d["allocations"] = [{"gang": a.gang or None, "priority": a.priority, "gpus": a.gpus,
                             "cpu": _millis(a.cpu), "memory": a.memory} for a in msg.allocations]
    return d


def node_from_proto(msg: pb.Node, index: int, levels: tuple[str, ...]) -> NodeSpec:
    """Validate and convert; errors name ``nodes[i] (name).field``."""
    return node_from_dict(node_to_dict(msg), index, levels)


def node_to_proto(n: NodeSpec) -> pb.Node:
    msg = pb.Node(name=n.name, gpus=n.gpus, gpus_used=n.gpus_used, gpu_type=n.gpu_type, cpu_used=n.cpu_used,
                  memory_used=n.memory_used, pods_used=n.pods_used, unschedulable=not n.schedulable)
    msg.topology.update(n.topology)
    msg.labels.update(n.labels)
    if n.cpu != UNLIMITED:
        msg.cpu = n.cpu
    if n.memory != UNLIMITED:
        msg.memory = n.memory
    if n.pods != DEFAULT_POD_SLOTS:
        msg.pods = n.pods
    msg.allocations.extend(pb.Allocation(gang=a.gang, priority=a.priority, gpus=a.gpus, cpu=a.cpu,
                                         memory=a.memory) for a in n.allocations)
    return msg


def node_spec_from_proto_trusted(msg: pb.Node) -> NodeSpec:
    """A NodeSpec from a server's snapshot (no validation: the server built it from valid specs)."""
    return NodeSpec(
        name=msg.name, topology=dict(msg.topology), gpus=msg.gpus, gpus_used=msg.gpus_used, gpu_type=msg.gpu_type,
        cpu=msg.cpu if msg.HasField("cpu") else UNLIMITED, cpu_used=msg.cpu_used,
        memory=msg.memory if msg.HasField("memory") else UNLIMITED, memory_used=msg.memory_used,
        pods=msg.pods if msg.HasField("pods") else DEFAULT_POD_SLOTS, pods_used=msg.pods_used,
        schedulable=not msg.unschedulable, labels=dict(msg.labels),
        allocations=tuple(Allocation(gang=a.gang, priority=a.priority, gpus=a.gpus, cpu=a.cpu, memory=a.memory)
                          for a in msg.allocations))


# ---------------------------------------------------------------------- small checks
def require_gang(msg, field: str = "gang") -> pb.Gang:
    if not msg.HasField(field):
        raise InvalidRequest("is required", field=field)
    return getattr(msg, field)


def check_names(names: Iterable[str], field: str) -> list[str]:
    out = list(names)
    for i, n in enumerate(out):
        if not n:
            raise InvalidRequest("must be a non-empty string", field=f"{field}[{i}]")
    return out


def check_nonnegative(value: float, field: str) -> float:
    if not value >= 0:  # also rejects NaN
        raise InvalidRequest(f"must be >= 0, got {value}", field=field)
    return value


# ---------------------------------------------------------------------- preemption
def _victim_to_proto(v) -> pb.Victim:
    """A victim from engine/exact/preempt.py: a ``victim_details`` mapping {gang, priority, gpus, nodes},
    or a bare gang name."""
    if isinstance(v, str):
        return pb.Victim(gang=v)
    get = v.get if isinstance(v, Mapping) else (lambda k, d=None: getattr(v, k, d))
    nodes = get("nodes", None) or ([get("node")] if get("node", None) else [])
    return pb.Victim(gang=str(get("gang", "") or get("name", "") or ""), priority=int(get("priority", 0) or 0),
                     gpus=int(get("gpus", 0) or 0), nodes=[str(n) for n in nodes])


def preemption_to_proto(plan) -> pb.PlanPreemptionResponse:
    placement = getattr(plan, "placement", None)
    victims = getattr(plan, "victim_details", None) or getattr(plan, "victims", None) or ()
    msg = pb.PlanPreemptionResponse(
        victims=[_victim_to_proto(v) for v in victims], optimal=bool(getattr(plan, "optimal", False)),
        elapsed_ms=float(getattr(plan, "elapsed_ms", 0.0) or 0.0),
        evicted_gpus=int(getattr(plan, "evicted_gpus", 0) or 0), cost=float(getattr(plan, "cost", 0.0) or 0.0))
    if placement is not None:
        msg.placement.CopyFrom(placement_to_proto(placement))
    msg.feasible = bool(getattr(plan, "feasible", placement is not None and placement.placed))
    msg.reason = str(getattr(plan, "reason", "") or (placement.reason if placement is not None else ""))
    return msg

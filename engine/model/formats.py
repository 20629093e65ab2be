"""Cluster and gang files (docs/formats.md, the authority on the formats): YAML, JSON and Arrow/Parquet.

Python validates and converts here, once; everything below works on typed values. Every error
names the field (and the node) it is about: ``nodes[3] (b0-r1-n3).gpus: must be an integer``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from .errors import GangplaceError, InvalidFile, InvalidRequest, InvalidTopology
from .types import (DEFAULT_POD_SLOTS, UNLIMITED, Allocation, GangRequest, NodeSpec, PodSet, effective_slice_size,
                    SliceLayer, TopologyConstraint)
from .quantity import format_cpu, format_memory, parse_quantity

FORMAT_VERSION = 1
MAX_GANG_PODS = 65_536  # larger gangs are rejected up front (no cluster has that many GPUs free)
_NODE_FIELDS = {"name", "topology", "gpus", "gpus_used", "gpu_type", "cpu", "cpu_used", "memory",
                "memory_used", "pods", "pods_used", "schedulable", "labels", "allocations"}
_CLUSTER_FIELDS = {"levels", "nodes", "version"}
_POD_SET_FIELDS = {"name", "count", "gpus", "cpu", "memory", "min_count", "node_selector"}
_GANG_FIELDS = {"name", "pod_sets", "topology", "priority", "min_count", "count", "gpus", "cpu",
                "memory", "node_selector"}
_TOPO_FIELDS = {"required", "preferred", "slice", "slices"}
_ALLOC_FIELDS = {"gang", "priority", "gpus", "cpu", "memory", "started"}


# ---------------------------------------------------------------------- reading raw documents
def read_document(path) -> Any:
    """Parse a YAML or JSON file into plain Python data."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidFile(f"cannot read {p}: {e}", field=str(p)) from None
    try:
        if p.suffix.lower() == ".json":
            return json.loads(text)
        import yaml
        return yaml.safe_load(text)
    except Exception as e:  # yaml.YAMLError, json.JSONDecodeError, RecursionError
        raise InvalidFile(f"cannot parse {p}{_where(e)}: {_problem(e)}", field=str(p)) from None


def _where(e: Exception) -> str:
    """" line L, column C" (1-based) of a YAML or JSON syntax error, when the parser says where."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)  # yaml.MarkedYAMLError
    if mark is not None:
        return f" line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(e, json.JSONDecodeError):
        return f" line {e.lineno}, column {e.colno}"
    return ""


def _problem(e: Exception) -> str:
    """What is wrong, in one line: YAML's problem ("expected ',' or ']', but got ':'"), not its context."""
    if isinstance(e, json.JSONDecodeError):
        return e.msg
    problem, context = getattr(e, "problem", None), getattr(e, "context", None)
    if problem:
        return f"{problem} ({context})" if context else problem
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _write_document(data: Any, path) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    if p.suffix.lower() == ".json":
        tmp.write_text(json.dumps(data, indent=1) + "\n")
    else:
        import yaml
        try:
            dumper = yaml.CSafeDumper
        except AttributeError:  # pragma: no cover - libyaml missing
            dumper = yaml.SafeDumper
        with open(tmp, "w") as f:
            yaml.dump(data, f, Dumper=dumper, sort_keys=False, default_flow_style=None, width=120)
    os.replace(tmp, p)  # never leave a half-written file behind


# ---------------------------------------------------------------------- typed field readers
def _int(d: Mapping, key: str, where: str, error, *, default=None, lo: int = 0, hi: int = 2**31 - 1) -> int:
    v = d.get(key, default)
    if v is None:
        raise error("is required", field=f"{where}.{key}")
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise error(f"must be an integer, got {v!r}", field=f"{where}.{key}")
    if v < lo or v > hi:
        raise error(f"must be between {lo} and {hi}, got {v}", field=f"{where}.{key}")
    return v


def _str(d: Mapping, key: str, where: str, error, *, default=None, allow_empty=False) -> str | None:
    v = d.get(key, default)
    if v is None:
        return None
    if not isinstance(v, str) or (not v and not allow_empty):
        raise error(f"must be a non-empty string, got {v!r}", field=f"{where}.{key}")
    return v


def _mapping(d: Mapping, key: str, where: str, error) -> dict[str, str]:
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise error(f"must be a mapping, got {type(v).__name__}", field=f"{where}.{key}")
    out = {}
    for k, val in v.items():
        if not isinstance(k, str) or isinstance(val, (dict, list)) or val is None:
            raise error(f"entries must be string: string, got {k!r}: {val!r}", field=f"{where}.{key}")
        out[k] = val if isinstance(val, str) else json.dumps(val) if isinstance(val, bool) else str(val)
    return out


def _qty(d: Mapping, key: str, where: str, error, *, scale: int, default: int) -> int:
    v = d.get(key)
    return default if v is None else parse_quantity(v, field=f"{where}.{key}", scale=scale, error=error)


def _check_keys(d: Any, allowed: set[str], where: str, error) -> None:
    if not isinstance(d, Mapping):
        raise error(f"must be a mapping, got {type(d).__name__}", field=where)
    unknown = sorted(str(k) for k in d if k not in allowed)
    if unknown:
        raise error(f"unknown field(s) {unknown}; allowed: {sorted(allowed)}", field=where)


# ---------------------------------------------------------------------- cluster
def node_from_dict(d: Mapping, index: int, levels: tuple[str, ...]) -> NodeSpec:
    E = InvalidTopology
    where = f"nodes[{index}]"
    _check_keys(d, _NODE_FIELDS, where, E)
    name = _str(d, "name", where, E)
    if name is None:
        raise E("is required", field=f"{where}.name")
    where = f"nodes[{index}] ({name})"
    topology = _mapping(d, "topology", where, E)
    for k in topology:
        if k not in levels:
            raise E(f"unknown level {k!r}; levels are {list(levels)}", field=f"{where}.topology")
    gpus = _int(d, "gpus", where, E, hi=2**30)
    cpu = _qty(d, "cpu", where, E, scale=1000, default=UNLIMITED)
    memory = _qty(d, "memory", where, E, scale=1, default=UNLIMITED)
    allocations = []
    raw_allocs = d.get("allocations") or []
    if not isinstance(raw_allocs, list):
        raise E("must be a list", field=f"{where}.allocations")
    for j, a in enumerate(raw_allocs):
        aw = f"{where}.allocations[{j}]"
        _check_keys(a, _ALLOC_FIELDS, aw, E)
        gang = _str(a, "gang", aw, E)
        if gang is None:
            raise E("is required", field=f"{aw}.gang")
        allocations.append(Allocation(
            gang=gang, priority=_int(a, "priority", aw, E, default=0, lo=-2**31),
            gpus=_int(a, "gpus", aw, E, default=0, hi=2**30),
            cpu=_qty(a, "cpu", aw, E, scale=1000, default=0),
            memory=_qty(a, "memory", aw, E, scale=1, default=0), started=_started(a, aw, E)))
    schedulable = d.get("schedulable", True)
    if not isinstance(schedulable, bool):
        raise E(f"must be true or false, got {schedulable!r}", field=f"{where}.schedulable")
    gpu_type = _str(d, "gpu_type", where, E, default="", allow_empty=True) or ""  # null = no GPU type
    return NodeSpec(
        name=name, topology=topology, gpus=gpus,
        gpus_used=_int(d, "gpus_used", where, E, default=sum(a.gpus for a in allocations), hi=2**30),
        gpu_type=gpu_type,
        cpu=cpu, cpu_used=_qty(d, "cpu_used", where, E, scale=1000, default=sum(a.cpu for a in allocations)),
        memory=memory,
        memory_used=_qty(d, "memory_used", where, E, scale=1, default=sum(a.memory for a in allocations)),
        pods=_int(d, "pods", where, E, default=DEFAULT_POD_SLOTS, hi=2**30),
        pods_used=_int(d, "pods_used", where, E, default=0, hi=2**30),
        schedulable=schedulable, labels=_mapping(d, "labels", where, E), allocations=tuple(allocations))


def cluster_from_dict(data: Any):
    from .cluster import Cluster
    E = InvalidTopology
    _check_keys(data, _CLUSTER_FIELDS, "cluster", E)
    if data.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise E(f"unsupported cluster file version {data.get('version')!r}; this build reads version {FORMAT_VERSION}",
                field="version")
    levels = data.get("levels")
    if not isinstance(levels, list) or not all(isinstance(x, str) and x for x in levels):
        raise E(f"must be a list of level names, top first, got {levels!r}", field="levels")
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        raise E(f"must be a list of nodes, got {type(nodes).__name__}", field="nodes")
    lv = tuple(levels)
    return Cluster(lv, [node_from_dict(d, i, lv) for i, d in enumerate(nodes)])


def node_to_dict(n: NodeSpec, levels: tuple[str, ...]) -> dict:
    d: dict[str, Any] = {"name": n.name, "topology": {k: n.topology[k] for k in levels if k in n.topology},
                         "gpus": n.gpus}
    if n.gpus_used:
        d["gpus_used"] = n.gpus_used
    if n.gpu_type:
        d["gpu_type"] = n.gpu_type
    if n.cpu != UNLIMITED:
        d["cpu"] = format_cpu(n.cpu)
    if n.cpu_used:
        d["cpu_used"] = format_cpu(n.cpu_used)
    if n.memory != UNLIMITED:
        d["memory"] = format_memory(n.memory)
    if n.memory_used:
        d["memory_used"] = format_memory(n.memory_used)
    if n.pods != DEFAULT_POD_SLOTS:
        d["pods"] = n.pods
    if n.pods_used:
        d["pods_used"] = n.pods_used
    if not n.schedulable:
        d["schedulable"] = False
    if n.labels:
        d["labels"] = dict(n.labels)
    if n.allocations:
        d["allocations"] = [_alloc_to_dict(a) for a in n.allocations]
    return d


def _alloc_to_dict(a: Allocation) -> dict:
    d: dict[str, Any] = {"gang": a.gang, "priority": a.priority, "gpus": a.gpus}
    if a.cpu:
        d["cpu"] = format_cpu(a.cpu)
    if a.memory:
        d["memory"] = format_memory(a.memory)
    if a.started is not None:
        d["started"] = a.started
    return d


def _started(a: Mapping, where: str, error) -> float | None:
    """An allocation's optional ``started``: when it started, in seconds (a finite number)."""
    v = a.get("started")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise error(f"must be a number of seconds, got {v!r}", field=f"{where}.started")
    return float(v)


def cluster_to_dict(cluster) -> dict:
    return {"levels": list(cluster.levels), "nodes": [node_to_dict(n, cluster.levels) for n in cluster.nodes]}


def load_cluster(path):
    p = Path(path)
    if p.suffix.lower() in (".parquet", ".arrow", ".feather"):
        from .arrow_io import read_cluster_table
        return read_cluster_table(p)
    return cluster_from_dict(read_document(p))


def save_cluster(cluster, path) -> None:
    p = Path(path)
    if p.suffix.lower() in (".parquet", ".arrow", ".feather"):
        from .arrow_io import write_cluster_table
        write_cluster_table(cluster, p)
    elif p.suffix.lower() in (".yaml", ".yml", ".json"):
        _write_document(cluster_to_dict(cluster), p)
    else:
        raise InvalidFile(f"unknown cluster file type {p.suffix!r}: use .yaml, .json, .parquet or .arrow",
                          field=str(p))


# ---------------------------------------------------------------------- gang
def _pod_set_from_dict(d: Mapping, where: str, default_name: str) -> PodSet:
    E = InvalidRequest
    _check_keys(d, _POD_SET_FIELDS | ({"topology", "priority", "pod_sets"} if where == "gang" else set()),
                where, E)
    count = _int(d, "count", where, E, lo=1, hi=MAX_GANG_PODS)
    min_count = d.get("min_count")
    if min_count is not None:
        min_count = _int(d, "min_count", where, E, lo=0, hi=count)
    return PodSet(
        name=_str(d, "name", where, E, default=default_name),
        count=count,
        gpus=_int(d, "gpus", where, E, default=0, hi=2**20),
        cpu=_qty(d, "cpu", where, E, scale=1000, default=0),
        memory=_qty(d, "memory", where, E, scale=1, default=0),
        min_count=min_count,
        node_selector=_mapping(d, "node_selector", where, E))


def _topology_from_dict(d: Any) -> TopologyConstraint:
    E = InvalidRequest
    if d is None:
        return TopologyConstraint()
    _check_keys(d, _TOPO_FIELDS, "topology", E)
    if "slice" in d and "slices" in d:
        raise E("give either 'slice' or 'slices', not both", field="topology.slices")
    raw = d.get("slices") if "slices" in d else ([d["slice"]] if d.get("slice") is not None else [])
    if not isinstance(raw, list):
        raise E("must be a list of {size, level}, outer first", field="topology.slices")
    layers = []
    for i, s in enumerate(raw):
        sw = f"topology.slices[{i}]" if "slices" in d else "topology.slice"
        _check_keys(s, {"size", "level"}, sw, E)
        level = _str(s, "level", sw, E)
        if level is None:
            raise E("is required", field=f"{sw}.level")
        layers.append(SliceLayer(size=_int(s, "size", sw, E, lo=1, hi=MAX_GANG_PODS), level=level))
    return TopologyConstraint(required=_str(d, "required", "topology", E),
                              preferred=_str(d, "preferred", "topology", E), slices=tuple(layers))


def _check_slice(ps: PodSet, i: int, size: int, E) -> None:
    """A pod set's count is a multiple of the slice size or smaller than one slice; min_count too."""
    eff = effective_slice_size(ps.count, size)
    if eff is None:
        raise E(f"pod set {ps.name!r} count {ps.count} is not a multiple of slice size {size} (nor smaller "
                f"than one slice)", field=f"pod_sets[{i}].count")
    if ps.min_count is not None and ps.min_count % eff:
        raise E(f"pod set {ps.name!r} min_count {ps.min_count} is not a multiple of its slice size {eff}",
                field=f"pod_sets[{i}].min_count")


def _check_pod_set_names(pod_sets, E) -> None:
    names = [ps.name for ps in pod_sets]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise E(f"duplicate pod set name {n!r}", field=f"pod_sets[{i}].name")


def _check_slice_layers(slices, pod_sets, E) -> None:
    """The layers' own shape first (sizes, outer a multiple of inner), then each pod set against each layer."""
    for j, layer in enumerate(slices):
        if layer.size < 1:
            raise E(f"must be >= 1, got {layer.size}", field=f"topology.slices[{j}].size")
        if j and slices[j - 1].size % layer.size:
            raise E(f"outer slice size {slices[j - 1].size} is not a multiple of inner size "
                    f"{layer.size}", field=f"topology.slices[{j}].size")
    for layer in slices:
        for i, ps in enumerate(pod_sets):
            _check_slice(ps, i, layer.size, E)


def check_gang(gang: GangRequest) -> None:
    """The structural checks of ``gang_from_dict`` on a GangRequest built in Python (the one pod-set
    validation: engine/place/request.py calls it for every gang it prepares). InvalidRequest names
    the field."""
    E = InvalidRequest
    if not gang.pod_sets:
        raise E("must be a non-empty list of pod sets", field="pod_sets")
    for i, ps in enumerate(gang.pod_sets):
        if ps.count < 1:
            raise E("must be >= 1", field=f"pod_sets[{i}].count")
        if ps.min_count is not None and not 0 <= ps.min_count <= ps.count:
            raise E(f"must be between 0 and count ({ps.count}), got {ps.min_count}",
                    field=f"pod_sets[{i}].min_count")
        for what in ("gpus", "cpu", "memory"):
            if getattr(ps, what) < 0:
                raise E(f"must be >= 0, got {getattr(ps, what)}", field=f"pod_sets[{i}].{what}")
    _check_pod_set_names(gang.pod_sets, E)
    _check_slice_layers(gang.topology.slices, gang.pod_sets, E)


def gang_from_dict(data: Any) -> GangRequest:
    """Build and structurally validate a GangRequest (level names are checked against a cluster later)."""
    E = InvalidRequest
    _check_keys(data, _GANG_FIELDS, "gang", E)
    name = _str(data, "name", "gang", E)
    if name is None:
        raise E("is required", field="gang.name")
    if "pod_sets" in data:
        for k in ("count", "gpus", "cpu", "memory", "node_selector"):
            if k in data:
                raise E(f"'{k}' belongs inside pod_sets when pod_sets is given", field=f"gang.{k}")
        raw = data["pod_sets"]
        if not isinstance(raw, list) or not raw:
            raise E("must be a non-empty list of pod sets", field="pod_sets")
        pod_sets = [_pod_set_from_dict(ps, f"pod_sets[{i}]", f"set{i}") for i, ps in enumerate(raw)]
    else:  # shorthand: the gang itself is one pod set
        pod_sets = [_pod_set_from_dict({k: v for k, v in data.items() if k in _POD_SET_FIELDS - {"name", "min_count"}},
                                       "gang", "worker")]
    if data.get("min_count") is not None:
        if len(pod_sets) != 1:
            raise E("a top-level min_count is shorthand for a gang of one pod set; put it in the pod set",
                    field="gang.min_count")
        ps = pod_sets[0]
        from dataclasses import replace
        pod_sets[0] = replace(ps, min_count=_int(data, "min_count", "gang", E, lo=0, hi=ps.count))
    _check_pod_set_names(pod_sets, E)
    total = sum(ps.count for ps in pod_sets)
    if total > MAX_GANG_PODS:
        raise E(f"gang has {total} pods; at most {MAX_GANG_PODS} are accepted", field="pod_sets")
    topo = _topology_from_dict(data.get("topology"))
    _check_slice_layers(topo.slices, pod_sets, E)
    return GangRequest(name=name, pod_sets=tuple(pod_sets), topology=topo,
                       priority=_int(data, "priority", "gang", E, default=0, lo=-2**31))


def gang_to_dict(g: GangRequest) -> dict:
    sets = []
    for ps in g.pod_sets:
        d: dict[str, Any] = {"name": ps.name, "count": ps.count, "gpus": ps.gpus}
        if ps.cpu:
            d["cpu"] = format_cpu(ps.cpu)
        if ps.memory:
            d["memory"] = format_memory(ps.memory)
        if ps.min_count is not None:
            d["min_count"] = ps.min_count
        if ps.node_selector:
            d["node_selector"] = dict(ps.node_selector)
        sets.append(d)
    out: dict[str, Any] = {"name": g.name, "pod_sets": sets}
    topo = topology_to_dict(g.topology)
    if topo:
        out["topology"] = topo
    if g.priority:
        out["priority"] = g.priority
    return out


def topology_to_dict(t) -> dict[str, Any]:
    """A gang's topology constraint as in the gang file (``required``, ``preferred``, ``slices``;
    unset ones left out). ``t``: a TopologyConstraint or anything with those attributes (the gRPC
    message)."""
    topo: dict[str, Any] = {}
    if t.required:
        topo["required"] = t.required
    if t.preferred:
        topo["preferred"] = t.preferred
    if t.slices:
        topo["slices"] = [{"size": s.size, "level": s.level} for s in t.slices]
    return topo


def load_gang(path) -> GangRequest:
    return gang_from_dict(read_document(path))


def save_gang(gang: GangRequest, path) -> None:
    _write_document(gang_to_dict(gang), path)


def load_gangs(path) -> list[GangRequest]:
    """A directory of gang files (sorted by name), a file holding a list, or {gangs: [...]}."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".yaml", ".yml", ".json"))
        return [load_gang(f) for f in files]
    data = read_document(p)
    if isinstance(data, Mapping) and "gangs" in data:
        data = data["gangs"]
    if isinstance(data, list):
        out = []
        for i, g in enumerate(data):
            try:
                out.append(gang_from_dict(g))
            except GangplaceError as e:
                raise type(e)(e.message, field=f"gangs[{i}].{e.field}" if e.field else f"gangs[{i}]") from None
        return out
    return [gang_from_dict(data)]

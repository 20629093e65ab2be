"""The extender's wire format: request bodies checked into plain values (``k8s.io/kube-scheduler/
extender/v1``, as recorded from real schedulers in tests/fixtures/kube-scheduler-extender).

Only the shape is checked here: a body that does not parse into it raises ``BadBody`` and the
handler answers HTTP 400. What the Pod *says* (labels, requests) is read by service/gangs.py.
"""
from __future__ import annotations

from typing import Any, Mapping


class BadBody(Exception):
    """The request body does not parse into the extender's shape (HTTP 400)."""


def filter_args(args: Any) -> tuple[Mapping, list[str], list | None]:
    """(Pod, node names, Node items or None) from ExtenderArgs; BadBody when the shape is wrong."""
    if not isinstance(args, Mapping):
        raise BadBody("body must be a JSON object (ExtenderArgs)")
    pod = args.get("Pod")
    check_pod_shape(pod)
    names, nodes = args.get("NodeNames"), args.get("Nodes")
    if names is not None:
        if not isinstance(names, list) or (names and (set(map(type, names)) != {str} or "" in names)):
            raise BadBody("NodeNames must be a list of node names")
        return pod, list(names), None
    if nodes is None:
        raise BadBody("one of Nodes or NodeNames is required")
    items = nodes.get("items") if isinstance(nodes, Mapping) else None
    if not isinstance(items, list):
        raise BadBody("Nodes must be a NodeList with items")
    out = []
    for k, it in enumerate(items):
        name = it.get("metadata", {}).get("name") if isinstance(it, Mapping) and isinstance(
            it.get("metadata"), Mapping) else None
        if not isinstance(name, str) or not name:
            raise BadBody(f"Nodes.items[{k}].metadata.name is required")
        out.append(name)
    return pod, out, items


def check_pod_shape(pod: Any) -> None:
    if not isinstance(pod, Mapping):
        raise BadBody("Pod must be an object")
    meta = pod.get("metadata")
    if not isinstance(meta, Mapping):
        raise BadBody("Pod.metadata must be an object")
    for f in ("name", "uid"):
        if not isinstance(meta.get(f), str) or not meta.get(f):
            raise BadBody(f"Pod.metadata.{f} is required")
    if pod.get("spec") is not None and not isinstance(pod.get("spec"), Mapping):
        raise BadBody("Pod.spec must be an object")


def preempt_args(args: Any) -> tuple[Mapping, dict[str, tuple[list[str], int, list | None]]]:
    """(preemptor Pod, node -> (victim UIDs, NumPDBViolations, full victim Pods or None))."""
    if not isinstance(args, Mapping):
        raise BadBody("body must be a JSON object (ExtenderPreemptionArgs)")
    pod = args.get("Pod")
    check_pod_shape(pod)
    full, meta = args.get("NodeNameToVictims"), args.get("NodeNameToMetaVictims")
    out: dict[str, tuple[list[str], int, list | None]] = {}
    source = meta if meta is not None else full
    if source is None:
        return pod, out
    if not isinstance(source, Mapping):
        raise BadBody("NodeNameToVictims / NodeNameToMetaVictims must be objects")
    for node, v in source.items():
        if not isinstance(v, Mapping) or not isinstance(v.get("Pods") or [], list):
            raise BadBody(f"victims of {node} must be {{Pods, NumPDBViolations}}")
        pods = v.get("Pods") or []
        pdb = v.get("NumPDBViolations") or 0
        if isinstance(pdb, bool) or not isinstance(pdb, int):
            raise BadBody(f"NumPDBViolations of {node} must be an integer")
        uids = []
        for p in pods:
            uid = p.get("UID") if meta is not None and isinstance(p, Mapping) else (
                p.get("metadata", {}).get("uid") if isinstance(p, Mapping) and isinstance(p.get("metadata"), Mapping)
                else None)
            if not isinstance(uid, str) or not uid:
                raise BadBody(f"every victim on {node} needs a UID")
            uids.append(uid)
        out[node] = (uids, pdb, None if meta is not None else pods)
    return pod, out

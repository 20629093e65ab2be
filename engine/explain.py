"""Why a gang does not fit: per level, the most of its pods one domain holds now, and why nodes
were excluded. Built only on the failure path, so it may take its time."""
from __future__ import annotations

import numpy as np

from .cluster import Cluster
from .heuristic import _Free, _run
from .model import NODE_LEVEL
from .request import PreparedGang


def excluded_nodes(cluster: Cluster, prepared: PreparedGang, i: int) -> dict[str, int]:
    """Nodes that cannot hold even one pod of pod set i, by the first reason that applies."""
    ps = prepared.gang.pod_sets[i]
    sched = cluster.schedulable.astype(bool)
    selected = prepared.eligible[i].astype(bool)
    left = selected.copy()
    out = {"cordoned": int((~sched).sum()), "node_selector": int((sched & ~selected).sum())}
    for name, free, need in (("insufficient_gpus", cluster.free_gpus, ps.gpus),
                             ("insufficient_cpu", cluster.free_cpu, ps.cpu),
                             ("insufficient_memory", cluster.free_mem, ps.memory),
                             ("insufficient_pod_slots", cluster.free_pods, 1)):
        short = left & (free < need)
        out[name] = int(short.sum())
        left &= ~short
    out["usable"] = int(left.sum())
    return out


def explain(cluster: Cluster, prepared: PreparedGang) -> tuple[str, dict]:
    gang = prepared.gang
    levels = (*cluster.levels, NODE_LEVEL)
    free = _Free(cluster)
    per_set = {}
    totals = np.zeros(len(levels), np.int64)
    for i, ps in enumerate(gang.pod_sets):
        _, _, _, maxfit = _run(cluster, prepared, free, i, -1, prepared.eligible[i], -1)
        totals += maxfit
        per_set[ps.name] = {
            "count": ps.count, "min_count": ps.required_count, "gpus_per_pod": ps.gpus,
            "max_pods_in_one_domain": dict(zip(levels, maxfit.tolist())),
            "excluded_nodes": excluded_nodes(cluster, prepared, i),
        }
    need = sum(ps.required_count for ps in gang.pod_sets)
    explanation = {
        "pods_requested": gang.size, "pods_required": need, "gpus_requested": gang.total_gpus,
        "max_pods_in_one_domain": dict(zip(levels, totals.tolist())),
        "pod_sets": per_set,
    }
    return _reason(cluster, prepared, totals, per_set, need), explanation


def _reason(cluster, prepared, totals, per_set, need) -> str:
    gang = prepared.gang
    gpus = sum(ps.required_count * ps.gpus for ps in gang.pod_sets)
    what = f"{need} pods" + (f" ({gpus} GPUs)" if gpus else "")
    excl = {}
    for info in per_set.values():
        for k, v in info["excluded_nodes"].items():
            if k != "usable":
                excl[k] = max(excl.get(k, 0), v)
    why = ", ".join(f"{v} nodes {k.replace('_', ' ')}" for k, v in excl.items() if v)
    why = f"; excluded: {why}" if why else ""
    if prepared.required_level >= 0:
        lv = cluster.levels[prepared.required_level]
        held = int(totals[prepared.required_level])
        name, free = _best_domain(cluster, prepared, prepared.required_level)
        return (f"gang '{gang.name}' needs {what} in one {lv}; the best {lv} '{name}' ({free} free GPUs on "
                f"selected nodes) holds {held} of them{why}")
    placeable = _cluster_total(cluster, prepared)
    if placeable >= need:
        return (f"gang '{gang.name}' needs {what}; its pod sets fit one by one ({placeable} pods) but not "
                f"together{why}")
    return f"gang '{gang.name}' needs {what}; only {placeable} fit in the cluster now{why}"


def _cluster_total(cluster: Cluster, prepared: PreparedGang) -> int:
    free = _Free(cluster)
    total = 0
    for i in range(len(prepared.gang.pod_sets)):
        n, _, _, _ = _run_max(cluster, prepared, free, i)
        total += max(n, 0)
    return total


def _run_max(cluster, prepared, free, i):
    """Most pods of pod set i that fit anywhere (elastic run with min_count 0)."""
    from dataclasses import replace
    from .request import PreparedGang as PG
    ps = replace(prepared.gang.pod_sets[i], min_count=0)
    sets = list(prepared.gang.pod_sets)
    sets[i] = ps
    g = replace(prepared.gang, pod_sets=tuple(sets))
    p = PG(g, -1, prepared.preferred_level, prepared.unit, prepared.eligible, prepared.order)
    return _run(cluster, p, free, i, -1, prepared.eligible[i], -1)


def _best_domain(cluster: Cluster, prepared: PreparedGang, level: int) -> tuple[str, int]:
    """The domain of ``level`` with the most free GPUs on nodes eligible for the first pod set."""
    elig = prepared.eligible[prepared.order[0]].astype(bool)
    free = np.where(elig, cluster.free_gpus, 0)
    per_domain = np.bincount(cluster.node_domain[level], weights=free, minlength=cluster.n_domains)
    doms = cluster.level_domains(level)
    if len(doms) == 0:
        return "-", 0
    best = doms.start + int(np.argmax(per_domain[doms.start:doms.stop]))
    return cluster.domain_name(best), int(per_domain[best])

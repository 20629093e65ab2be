"""Why a gang does not fit: per level, the most of its pods one domain holds now, and why nodes
were excluded. Built only on the failure path, so it may take its time."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..model.cluster import Cluster
from .capacity import FreeCapacity, node_fit
from .heuristic import run_kernel
from ..model.types import NODE_LEVEL
from .request import PreparedGang


def excluded_nodes(cluster: Cluster, prepared: PreparedGang, i: int) -> dict[str, int]:
    """Nodes that cannot hold even one pod of pod set i, by the first reason that applies."""
    ps = prepared.gang.pod_sets[i]
    sched = cluster.schedulable.astype(bool)
    selected = prepared.eligible[i].astype(bool)
    left = selected.copy()
    # a live snapshot restricted to the nodes a scheduler offered marks which were left out
    # (engine/live/state.py); those are not cordoned, and the reason says so
    not_offered = getattr(cluster, "not_offered", None)
    cordoned = ~sched if not_offered is None else ~sched & ~not_offered
    out = {"cordoned": int(cordoned.sum())}
    if not_offered is not None:
        out["not_offered_by_the_scheduler"] = int(not_offered.sum())
    out["node_selector"] = int((sched & ~selected).sum())
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
    free = FreeCapacity.of(cluster)
    per_set = {}
    totals = np.zeros(len(levels), np.int64)
    for i, ps in enumerate(gang.pod_sets):
        _, _, _, maxfit = run_kernel(cluster, prepared, free, i, -1, prepared.eligible[i], -1)
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
    what = f"{need} pod{'' if need == 1 else 's'}" + (f" ({gpus} GPU{'' if gpus == 1 else 's'})" if gpus else "")
    excl = {}
    for info in per_set.values():
        for k, v in info["excluded_nodes"].items():
            if k != "usable":
                excl[k] = max(excl.get(k, 0), v)
    why = ", ".join(f"{v} node{'' if v == 1 else 's'} {k.replace('_', ' ')}" for k, v in excl.items() if v)
    why = f"; excluded: {why}" if why else ""
    if prepared.required_level >= 0:
        lv = cluster.levels[prepared.required_level]
        name, free, held = _best_required_domain(cluster, prepared)
        if held >= need:
            return (f"gang '{gang.name}' needs {what} in one {lv}; the best {lv} '{name}' ({free} free GPUs on "
                    f"selected nodes) holds {held} pods counting each pod set on its own, but not all of them "
                    f"together{why}")
        return (f"gang '{gang.name}' needs {what} in one {lv}; the best {lv} '{name}' ({free} free GPUs on "
                f"selected nodes) holds {held} of them{why}")
    placeable = _cluster_total(cluster, prepared)
    if placeable >= need:
        return (f"gang '{gang.name}' needs {what}; its pod sets fit one by one ({placeable} pods) but not "
                f"together{why}")
    return f"gang '{gang.name}' needs {what}; only {placeable} fit in the cluster now{why}"


def _cluster_total(cluster: Cluster, prepared: PreparedGang) -> int:
    free = FreeCapacity.of(cluster)
    total = 0
    for i in range(len(prepared.gang.pod_sets)):
        n, _, _, _ = _run_max(cluster, prepared, free, i)
        total += max(n, 0)
    return total


def _run_max(cluster, prepared, free, i):
    """Most pods of pod set i that fit anywhere (elastic run with min_count 0)."""
    sets = list(prepared.gang.pod_sets)
    sets[i] = replace(sets[i], min_count=0)
    p = replace(prepared, gang=replace(prepared.gang, pod_sets=tuple(sets)), required_level=-1)
    return run_kernel(cluster, p, free, i, -1, prepared.eligible[i], -1)


def _best_required_domain(cluster: Cluster, prepared: PreparedGang) -> tuple[str, int, int]:
    """The domain of the required level holding the most of the gang's required pods, each pod set
    counted on its own (capped at its count, node capacities rounded down to the node slice unit), then the most free GPUs.
    Returns (name, free GPUs on nodes eligible for the first pod set, pods held)."""
    level = prepared.required_level
    doms = cluster.level_domains(level)
    if len(doms) == 0:
        return "-", 0, 0
    node_dom = cluster.node_domain[level]
    held = np.zeros(cluster.n_domains, np.int64)
    for i, ps in enumerate(prepared.gang.pod_sets):
        per_domain = np.bincount(node_dom, weights=node_fit(cluster, prepared, i), minlength=cluster.n_domains)
        held += np.minimum(per_domain.astype(np.int64), ps.required_count)
    elig = prepared.eligible[prepared.order[0]].astype(bool)
    free = np.bincount(node_dom, weights=np.where(elig, cluster.free_gpus, 0), minlength=cluster.n_domains)
    sl = slice(doms.start, doms.stop)
    best = doms.start + int(np.lexsort((-free[sl], -held[sl]))[0])
    return cluster.domain_name(best), int(free[best]), int(held[best])

"""Node scores for a single pod outside any gang (the extender's ``prioritize`` for non-gang GPU pods).

Best fit in the order of part (3) of the placement objective (docs/placement.md): by default
(podfit) bottom-up, the node with the fewest free GPUs left first, then the lowest-level domain with
the fewest nodes that could take the pod (a one-pod gang's pod room) and then the fewest free GPUs,
and so on up, so whole free
nodes and large free domains survive for the next large gang. By default (``age``) the node whose oldest
running GPU pod started first ranks before all that (nodes with no GPU pod running last), as a
one-pod gang is placed (engine/place/age.py); ``objective="podfit"`` without it;
``"bottomup"`` compares the domains' free GPUs only; ``"topdown"`` the older order (top-level domain
first, the node last).
"""
from __future__ import annotations

import math

import numpy as np

from ..model.cluster import Cluster
from .capacity import domain_free_gpus, domain_pod_room
from .objective import DEFAULT_OBJECTIVE, POD_ROOM, check_objective

MAX_SCORE = 10


def best_fit_scores(cluster: Cluster, nodes: np.ndarray, *, gpus: int, cpu: int = 0, memory: int = 0,
                    max_score: int = MAX_SCORE, objective: str = DEFAULT_OBJECTIVE) -> tuple[np.ndarray, np.ndarray]:
    """Scores for placing one pod on each of ``nodes`` (node indices).

    Returns ``(fitting, scores)``: the indices that can hold the pod and their scores. Distinct
    best-fit keys are ranked lexicographically and spread over ``max_score`` (best) .. 1; nodes
    that cannot hold the pod are left out (the caller scores them 0).
    """
    idx = np.asarray(nodes, np.int64)
    fits = ((cluster.free_gpus[idx] >= gpus) & (cluster.free_cpu[idx] >= cpu)
            & (cluster.free_mem[idx] >= memory) & (cluster.free_pods[idx] >= 1)
            & cluster.schedulable[idx].astype(bool))
    idx = idx[fits]
    if not len(idx):
        return idx, np.zeros(0, np.int64)
    objective = check_objective(objective)
    cols = best_fit_columns(cluster, idx, gpus, objective)
    if objective == "age" and gpus > 0:
        from .age import age_rank  # engine/place/age.py imports this module
        cols.insert(0, age_rank(cluster, idx))
    rank = _dense_rank(cols)
    step = (max_score - 1) / max(1, int(rank.max()))
    return idx, max_score - np.rint(rank * step).astype(np.int64)


def best_fit_columns(cluster: Cluster, idx: np.ndarray, gpus: int, objective: str) -> list[np.ndarray]:
    """Part (3)'s best-fit keys for one pod of ``gpus`` GPUs on each node of ``idx``, most significant
    first (non-negative ints, smaller is better): top-down, the domains' free GPUs from the top level
    and the node's last; otherwise the node's free GPUs left first, then its domains from the lowest
    level up (with podfit and age: each domain's pod room, then its free GPUs)."""
    free = np.maximum(cluster.free_gpus, 0).astype(np.int64)
    dom_free = domain_free_gpus(cluster, free)
    if objective == "topdown":
        return [dom_free[cluster.node_domain[lv, idx]] for lv in range(len(cluster.levels))] + [free[idx] - gpus]
    room = domain_pod_room(cluster, (max(gpus, 1), 1)) if objective in POD_ROOM else None
    cols = [free[idx] - gpus]
    for lv in range(len(cluster.levels) - 1, -1, -1):
        doms = cluster.node_domain[lv, idx]
        if room is not None:
            cols.append(room[doms])
        cols.append(dom_free[doms])
    return cols


def _dense_rank(cols: list[np.ndarray]) -> np.ndarray:
    """Dense rank of each row of the columns ``cols`` (non-negative ints) in lexicographic order,
    the first column most significant: what ``np.unique(axis=0, return_inverse=True)`` gives, much
    faster (this runs on every prioritize of a pod outside any gang). The columns are folded into
    one mixed-radix integer key when it fits in 62 bits, else their rows are ranked as rows."""
    bases = [int(c.max()) + 1 for c in cols]
    if min(int(c.min()) for c in cols) >= 0 and math.prod(bases) < 2**62:
        key = cols[0].astype(np.int64)
        for c, base in zip(cols[1:], bases[1:]):
            key = key * base + c
        order = np.argsort(key)
        ranked = key[order]
        step_up = np.zeros(len(key), np.int64)
        np.not_equal(ranked[1:], ranked[:-1], out=step_up[1:], casting="unsafe")
    else:
        keys = np.stack(cols, axis=1)  # one row per node
        order = np.lexsort(keys.T[::-1])
        ranked = keys[order]
        step_up = np.zeros(len(keys), np.int64)
        step_up[1:] = np.any(ranked[1:] != ranked[:-1], axis=1)
    rank = np.empty(len(step_up), np.int64)
    rank[order] = np.cumsum(step_up)
    return rank

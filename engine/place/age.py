"""Objective ``age`` (the default): where a gang of one GPU pod goes (docs/placement.md, part (3)).

Every node that holds the pod ties on parts (1)-(2) (one domain per level, one node). Podfit would
send it to the node with the fewest free GPUs left. ``age`` first sends it to the node whose *oldest*
running GPU pod started first, then applies podfit among equals; nodes with no GPU pod running come
last (podfit decides among them, as the kernel does). Why: a node becomes whole again only when its
last pod ends, and job run times are heavy-tailed, so the pod that has run longest is the likeliest
to keep running. A small pod added there delays no whole node; added to a node whose pods are young
(or to a whole free node) it pins GPUs that would soon have been free together for a whole-node
job. Measured in docs/simulation.md, "The age rule".

A node's age comes from ``Cluster.oldest_start`` (seconds): the earliest ``started`` of its
allocations; used GPUs without a known start count as the oldest (-inf: running since before every
known start); GPUs taken on this cluster object with no allocation recorded (a batch's earlier gangs,
a preemption plan's what-if) count as the youngest (``NOW``).
"""
from __future__ import annotations

import numpy as np

from ..model.cluster import Cluster
from .capacity import node_fit
from .request import PreparedGang
from .scoring import best_fit_columns

NOW = float(np.finfo(np.float64).max)  # used GPUs with no start recorded: as if they had started now


def applies(prepared: PreparedGang) -> bool:
    """The age rule decides this gang: objective ``age``, one pod set of one pod asking for GPUs."""
    ps = prepared.gang.pod_sets
    return prepared.objective == "age" and len(ps) == 1 and ps[0].count == 1 and ps[0].gpus > 0


def node_age(cluster: Cluster, idx: np.ndarray) -> np.ndarray:
    """float64 per node of ``idx``: when its oldest running GPU pod started (smaller = older); +inf
    when all its GPUs are free."""
    used = cluster.free_gpus[idx] < cluster.cap_gpus[idx]
    start = cluster.oldest_start[idx]
    return np.where(used, np.where(np.isposinf(start), NOW, start), np.inf)


def age_rank(cluster: Cluster, idx: np.ndarray) -> np.ndarray:
    """Dense rank (int64, 0 = oldest) of ``node_age`` over ``idx``."""
    return np.unique(node_age(cluster, idx), return_inverse=True)[1].astype(np.int64).reshape(len(idx))


def place_one_pod(cluster: Cluster, prepared: PreparedGang, sol):
    """The age rule's answer for a one-pod gang (``applies``), given podfit's answer ``sol`` (placed).
    ``sol`` itself when no node that holds the pod has a GPU pod running (podfit's choice stands)."""
    idx = np.flatnonzero(node_fit(cluster, prepared, 0) >= 1)
    ages = node_age(cluster, idx)
    if not idx.size or np.isposinf(oldest := ages.min()):
        return sol  # (no node holds it: a min_count of 0 placed nothing)
    mine = np.flatnonzero(sol.counts[0])
    if len(mine) == 1 and node_age(cluster, mine)[0] == oldest:
        return sol  # podfit's best node is one of the oldest: podfit's best among them too
    idx = idx[ages == oldest]  # the oldest nodes; podfit among them, then topology order
    if len(idx) > 1:
        cols = best_fit_columns(cluster, idx, prepared.gang.pod_sets[0].gpus, "podfit")
        idx = idx[np.lexsort([idx] + cols[::-1])]  # the last key is the primary one
    i = int(idx[0])
    counts = np.zeros(cluster.n_nodes, np.int64)
    counts[i] = 1
    out = type(sol)(counts=[counts], placed=True, placer=sol.placer, lower_bound=sol.lower_bound,
                   max_pods=sol.max_pods)
    out.extra.update(sol.extra)
    return out


def age_of(cluster: Cluster, prepared: PreparedGang, nodes: np.ndarray) -> float | None:
    """The age component of a placement's objective key (``ObjectiveValue.age``): the node's age for a
    one-pod gang under ``age``, None otherwise (not in the key)."""
    if not applies(prepared) or len(nodes) != 1:
        return None
    return float(node_age(cluster, np.asarray(nodes, np.int64))[0])

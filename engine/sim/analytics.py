"""Bulk analytics over cluster snapshots (Numba kernels): fragmentation, free-block histograms, and
the largest gang one domain could still take, over time.

Input everywhere: ``snapshots : int16[n_samples, n_nodes]``, free GPUs per node at each sample
(engine/sim/simulator.py keeps a few hundred per run). The public functions check and convert, then
call the private ``@njit(cache=True)`` kernels with arrays and scalars only (the stumpy pattern).
Numba compiles each kernel on first use (~1 s) and caches it under ``NUMBA_CACHE_DIR``.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _stranded(snapshots, cap, pod_gpus):  # pragma: no cover - compiled
    """Per sample: free GPUs in total, and free GPUs on nodes that cannot host a pod of ``pod_gpus``."""
    n_s, n = snapshots.shape
    total = np.zeros(n_s, np.int64)
    stranded = np.zeros(n_s, np.int64)
    for s in range(n_s):
        for i in range(n):
            f = snapshots[s, i]
            if cap[i] <= 0:
                continue
            total[s] += f
            if f < pod_gpus:
                stranded[s] += f
    return total, stranded


@njit(cache=True)
def _histogram(snapshots, max_free):  # pragma: no cover - compiled
    n_s, n = snapshots.shape
    out = np.zeros((n_s, max_free + 1), np.int64)
    for s in range(n_s):
        for i in range(n):
            f = snapshots[s, i]
            if f < 0:
                f = 0
            if f > max_free:
                f = max_free
            out[s, f] += 1
    return out


@njit(cache=True)
def _largest(snapshots, node_domain, level_offset, pod_gpus):  # pragma: no cover - compiled
    """Per sample and level: the most pods of ``pod_gpus`` any single domain of that level can take."""
    n_s, n = snapshots.shape
    n_levels = node_domain.shape[0]
    n_domains = level_offset[n_levels]
    out = np.zeros((n_s, n_levels + 1), np.int64)
    pods = np.zeros(n_domains, np.int64)
    for s in range(n_s):
        pods[:] = 0
        best_node = 0
        for i in range(n):
            k = snapshots[s, i] // pod_gpus
            if k > best_node:
                best_node = k
            for lv in range(n_levels):
                pods[node_domain[lv, i]] += k
        for lv in range(n_levels):
            best = 0
            for d in range(level_offset[lv], level_offset[lv + 1]):
                if pods[d] > best:
                    best = pods[d]
            out[s, lv] = best
        out[s, n_levels] = best_node
    return out


def fragmentation(snapshots: np.ndarray, cap_gpus: np.ndarray, pod_gpus: int = 8) -> np.ndarray:
    """float64[n_samples]: share of free GPUs sitting on nodes that cannot host a ``pod_gpus`` pod
    (0 = every free GPU is usable by a full-size pod; 0 when nothing is free)."""
    snaps = _as_snapshots(snapshots)
    total, stranded = _stranded(snaps, np.ascontiguousarray(cap_gpus, np.int32), int(pod_gpus))
    return np.where(total > 0, stranded / np.maximum(total, 1), 0.0)


def stranded_gpus(snapshots: np.ndarray, cap_gpus: np.ndarray, pod_gpus: int = 8) -> np.ndarray:
    """int64[n_samples]: free GPUs on nodes with fewer than ``pod_gpus`` free."""
    return _stranded(_as_snapshots(snapshots), np.ascontiguousarray(cap_gpus, np.int32), int(pod_gpus))[1]


def free_histogram(snapshots: np.ndarray, max_free: int) -> np.ndarray:
    """int64[n_samples, max_free + 1]: how many nodes have 0, 1, ..., ``max_free`` free GPUs."""
    return _histogram(_as_snapshots(snapshots), int(max_free))


def largest_gang(snapshots: np.ndarray, node_domain: np.ndarray, level_offset: np.ndarray,
                 pod_gpus: int = 8) -> np.ndarray:
    """int64[n_samples, n_levels + 1]: per level (top first, then one node), the most GPUs in
    ``pod_gpus`` pods that a single domain of that level could take right now."""
    pods = _largest(_as_snapshots(snapshots), np.ascontiguousarray(node_domain, np.int32),
                    np.ascontiguousarray(level_offset, np.int64), int(pod_gpus))
    return pods * int(pod_gpus)


def _as_snapshots(snapshots: np.ndarray) -> np.ndarray:
    a = np.asarray(snapshots)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"snapshots must be 2-D [n_samples, n_nodes], got shape {a.shape}")
    return np.ascontiguousarray(a, np.int16)

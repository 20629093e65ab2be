"""Synthetic GPU clusters, seeded and reproducible (used by the CLI, the service and benchmarks).

Presets (levels top first; node size; grouping):
- ``dgx-h100``: zone > block (spine) > su (scalable unit / leaf group); 8-GPU H100 nodes,
  32 nodes per SU, 4 SUs per block, 8 blocks per zone.
- ``gb200-nvl72``: block > rack; 4-GPU GB200 nodes, 18 nodes per NVL72 rack (the NVLink domain),
  8 racks per block.
- ``fat-tree``: pod > edge; 8-GPU nodes, 16 nodes per edge switch, 8 edge switches per pod.
- ``hetero``: zone > block > rack; racks of 16 nodes, each rack one node model: 8x H100, 8x A100
  or 4x L40S, cycling, so GPU types and node sizes mix.

``gpus`` is rounded up to whole nodes (``ceil(gpus / gpus_per_node)``); the last rack/SU may be
partial. Background load (``fill``) comes from a job-size distribution (many 1-8 GPU jobs, fewer
multi-node jobs of 2-32 nodes) placed at random positions, so free capacity is realistically
fragmented; it stops at the first job that would pass ``fill``, so the used fraction lands at or
just under ``fill`` (within one job, typically < 0.5 % on 2,048+ GPUs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cluster import Cluster
from .errors import InvalidRequest
from .types import Allocation, NodeSpec

MIN_GPUS, MAX_GPUS = 8, 1_048_576 * 2


@dataclass(frozen=True)
class Preset:
    levels: tuple[str, ...]
    group_sizes: tuple[int, ...]  # children per domain for each level below the top, then nodes per lowest domain
    gpus_per_node: int
    gpu_type: str
    cpu: int  # cores
    memory_gi: int
    prefixes: tuple[str, ...]


PRESETS: dict[str, Preset] = {
    "dgx-h100": Preset(("zone", "block", "su"), (8, 4, 32), 8, "H100", 112, 2048, ("z", "b", "su")),
    "gb200-nvl72": Preset(("block", "rack"), (8, 18), 4, "GB200", 144, 960, ("b", "r")),
    "fat-tree": Preset(("pod", "edge"), (8, 16), 8, "A100", 128, 1024, ("p", "e")),
    "hetero": Preset(("zone", "block", "rack"), (4, 4, 16), 8, "H100", 112, 2048, ("z", "b", "r")),
}
_HETERO_MODELS = (("H100", 8, 112, 2048), ("A100", 8, 128, 1024), ("L40S", 4, 64, 512))
# background job sizes in GPUs and their weights (most jobs small, most GPUs in big jobs)
_JOB_GPUS = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256])
_JOB_WEIGHT = np.array([20, 10, 10, 25, 12, 10, 7, 4, 2], float)


def generate(preset: str = "dgx-h100", gpus: int = 2048, fill: float = 0.6, seed: int = 1) -> Cluster:
    """A synthetic cluster of about ``gpus`` GPUs with ``fill`` of them taken by background jobs."""
    if preset not in PRESETS:
        raise InvalidRequest(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}", field="preset")
    if not isinstance(gpus, int) or not MIN_GPUS <= gpus <= MAX_GPUS:
        raise InvalidRequest(f"must be an integer between {MIN_GPUS} and {MAX_GPUS}, got {gpus!r}", field="gpus")
    if not 0.0 <= fill <= 1.0:
        raise InvalidRequest(f"must be between 0 and 1, got {fill!r}", field="fill")
    p = PRESETS[preset]
    rng = np.random.default_rng(seed)
    shapes = _node_shapes(preset, p, gpus)
    n = len(shapes)
    used = np.zeros(n, np.int64)
    owners: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
    _fill(rng, p, shapes, used, owners, fill)
    return Cluster(p.levels, _node_specs(p, shapes, used, owners), in_topology_order=True)


def _node_specs(p: Preset, shapes, used: np.ndarray, owners) -> list[NodeSpec]:
    """The nodes in topology order: node i's domain at each level is ``i // (nodes per domain of
    that level)``, so the path strings are built once per domain, and nodes of one lowest-level
    domain share one topology mapping (specs are frozen; the mappings are read only)."""
    n = len(shapes)
    per = p.group_sizes
    span = [int(np.prod(per[lv:])) for lv in range(len(per))]  # nodes per domain of each level
    paths: list[list[str]] = []
    for lv, prefix in enumerate(p.prefixes):
        count = -(-n // span[lv])
        if lv == 0:
            paths.append([f"{prefix}{k}" for k in range(count)])
        else:
            up, width = paths[-1], per[lv - 1]
            paths.append([f"{up[k // width]}-{prefix}{k % width}" for k in range(count)])
    lowest = span[-1]
    topologies = [dict(zip(p.levels, (paths[lv][(d * lowest) // span[lv]] for lv in range(len(p.levels)))))
                  for d in range(len(paths[-1]))]
    labels = {}
    nodes = []
    for i, (gtype, g, cpu, mem) in enumerate(shapes):
        d = i // lowest
        label = labels.get((gtype, g))
        if label is None:
            label = labels[(gtype, g)] = {"nvidia.com/gpu.product": gtype, "nvidia.com/gpu.count": str(g)}
        allocs = []
        cpu_used = mem_used = 0
        for job, take, prio in owners[i]:
            a_cpu, a_mem = take * cpu * 1000 // g // 2, take * mem * 2**30 // g // 2
            allocs.append(Allocation(f"bg-{job}", prio, take, a_cpu, a_mem))
            cpu_used += a_cpu
            mem_used += a_mem
        nodes.append(NodeSpec(
            name=f"{paths[-1][d]}-n{i - d * lowest:02d}", topology=topologies[d], gpus=g, gpus_used=int(used[i]),
            gpu_type=gtype, cpu=cpu * 1000, cpu_used=cpu_used, memory=mem * 2**30, memory_used=mem_used, pods=110,
            pods_used=len(allocs), labels=label, allocations=tuple(allocs)))
    return nodes


def _node_shapes(preset: str, p: Preset, gpus: int) -> list[tuple[str, int, int, int]]:
    if preset != "hetero":
        n = -(-gpus // p.gpus_per_node)
        return [(p.gpu_type, p.gpus_per_node, p.cpu, p.memory_gi)] * n
    shapes, total, rack = [], 0, p.group_sizes[-1]
    while total < gpus:
        model = _HETERO_MODELS[(len(shapes) // rack) % len(_HETERO_MODELS)]
        shapes.append(model)
        total += model[1]
    return shapes


_BLOCK = 1024  # nodes per block of the fill's per-block counts


def _fill(rng, p: Preset, shapes, used: np.ndarray, owners, fill: float) -> None:
    """Place random background jobs until ``fill`` of the GPUs are used.

    Small jobs (<= 8 GPUs) go to a uniformly random node with room; bigger ones take whole free
    nodes from a random lowest-level group on, wrapping around. The random draws are those of
    the straightforward loop (``rng.choice(np.flatnonzero(free >= size))``), so a seed gives the
    same cluster; the bookkeeping is per block of ``_BLOCK`` nodes (how many nodes of each block
    have at least s free GPUs, for s = 0..8, and how many are empty), so a draw costs a scan of
    the block counts and one block instead of the whole cluster: 131,072 nodes in seconds.
    """
    cap = np.array([s[1] for s in shapes], np.int64)
    free = cap.copy()
    target = int(fill * cap.sum())
    n = len(cap)
    group = p.group_sizes[-1]
    weights = _JOB_WEIGHT / _JOB_WEIGHT.sum()
    # rng.choice(_JOB_GPUS, p=weights) draws one uniform and searches the normalised cdf: the same
    # draw, without its per-call checks (a seed keeps giving the same cluster)
    cdf = weights.cumsum()
    cdf /= cdf[-1]
    job_gpus = _JOB_GPUS.tolist()
    cap_max = int(cap.max())
    starts = np.arange(0, n, _BLOCK)
    at_least = np.stack([np.add.reduceat((free >= s).astype(np.int64), starts) for s in range(9)], axis=1)
    empty = np.add.reduceat(np.ones(n, np.int64), starts)  # nodes with nothing used, per block

    def take(j: int, gpus: int) -> None:
        old = int(free[j])
        free[j] = old - gpus
        used[j] += gpus
        at_least[j // _BLOCK, old - gpus + 1:min(old, 8) + 1] -= 1
        if old == cap[j]:
            empty[j // _BLOCK] -= 1

    total, job, misses = 0, 0, 0
    while total < target and misses < 200:
        size = job_gpus[int(cdf.searchsorted(rng.random(), side="right"))]
        if total + size > target:
            size = target - total
        prio = int(rng.integers(0, 3))
        if size <= cap_max and size <= 8:
            counts = np.cumsum(at_least[:, size])
            if not counts[-1]:
                misses += 1
                continue
            k = int(rng.integers(0, int(counts[-1])))  # rng.choice(ok) draws this index
            b = int(np.searchsorted(counts, k, side="right"))
            k -= int(counts[b - 1]) if b else 0
            lo = b * _BLOCK
            i = lo + int(np.flatnonzero(free[lo:lo + _BLOCK] >= size)[k])
            take(i, size)
            owners[i].append((job, size, prio))
        else:
            start = int(rng.integers(0, max(1, n // group))) * group
            picked, need = _empty_nodes_from(start, size, cap, used, empty)
            if need > 0:
                misses += 1
                continue
            remaining = size
            for j in picked:
                gpus = min(int(cap[j]), remaining)
                remaining -= gpus
                take(j, gpus)
                owners[j].append((job, gpus, prio))
        total += size
        job += 1


def _empty_nodes_from(start: int, size: int, cap: np.ndarray, used: np.ndarray, empty: np.ndarray):
    """Empty nodes in scan order from ``start`` (wrapping) until their GPUs reach ``size``."""
    n = len(cap)
    picked, need = [], size
    for lo_seg, hi_seg in ((start, n), (0, start)):
        b = lo_seg // _BLOCK
        while b * _BLOCK < hi_seg and need > 0:
            lo, hi = max(b * _BLOCK, lo_seg), min((b + 1) * _BLOCK, hi_seg)
            if empty[b]:
                for j in np.flatnonzero(used[lo:hi] == 0) + lo:
                    picked.append(int(j))
                    need -= int(cap[j])
                    if need <= 0:
                        break
            b += 1
    return picked, need

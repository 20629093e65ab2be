"""Heuristic placer timings: the budget rows of docs/placement.md exactly, then a wider grid.

Every case times ``place(cluster, gang, placer="heuristic")`` on a loaded synthetic cluster
(``generate(preset, gpus=N, fill=0.6, seed=1)``, arrays built once), one gang at a time, the
import excluded. ``extra_info`` records whether the gang was placed, the domains it used and
whether the answer is proved optimal, so speed is read next to quality.

The million-GPU rows (issue 15 part 2: dgx-h100, 1,048,576 GPUs, 131,072 nodes) record the
cluster arrays' memory in ``extra_info``; ``test_generate_million`` times ``generate`` itself
(one round).

The clusters track their writes (``Cluster.track_writes``, as ClusterState's live cluster does),
so repeated calls reuse the kernel's fit sums of unchanged domains: the steady state of a
scheduler placing on one cluster. Two kinds of rows show what that leaves out:
``...-untracked`` places on an untracked copy (every node's fit computed on every call, as
before the cache), and ``...-bind`` changes the cluster before every call through the ledger's
write API (one pod of the gang's shape bound on, then unbound from, a node of the answer:
one bind between two calls in the live service), so each round pays the incremental
recomputation. A build without write tracking (the "before" tree) runs every row untracked.

Run:  .venv/bin/pytest benchmarks/bench_placer.py --benchmark-only \
          --benchmark-columns=min,median,mean,max,rounds
"""
from __future__ import annotations

import numpy as np
import pytest

from gangplace.engine import GangRequest, PodSet, place
from gangplace.engine.model.synthetic import generate

# (id, preset, cluster GPUs, pods, GPUs per pod, budget in microseconds: median)
BUDGET_ROWS = [
    ("budget-dgx-h100-16k-8x8", "dgx-h100", 16_384, 8, 8, 100.0),
    ("budget-gb200-16k-16x4", "gb200-nvl72", 16_384, 16, 4, 100.0),
    ("budget-dgx-h100-131k-128x8", "dgx-h100", 131_072, 128, 8, 1000.0),
]
# (id, preset, cluster GPUs, pods, GPUs per pod, budget in microseconds: median), issue 15 part 2
MILLION_ROWS = [
    ("million-dgx-h100-1m-8x8", "dgx-h100", 1_048_576, 8, 8, 200.0),
    ("million-dgx-h100-1m-128x8", "dgx-h100", 1_048_576, 128, 8, 1000.0),
]
GRID_GPUS = (2_048, 16_384, 131_072)
GRID_GANG_GPUS = (8, 64, 512, 2_048)
GRID = [(f"grid-{preset}-{n}-{g}gpu", preset, n, g // per_pod, per_pod)
        for preset, per_pod in (("dgx-h100", 8), ("gb200-nvl72", 4))
        for n in GRID_GPUS for g in GRID_GANG_GPUS]


def _gang(pods: int, gpus: int) -> GangRequest:
    return GangRequest(f"g{pods}x{gpus}", (PodSet("worker", pods, gpus=gpus),))


def array_bytes(cluster) -> int:
    """Bytes of the cluster's numpy arrays (per node and per domain; the NodeSpecs not counted)."""
    return sum(v.nbytes for v in vars(cluster).values() if isinstance(v, np.ndarray))


_TRACKED: dict = {}


def _cluster(cluster_cache, preset: str, n_gpus: int, tracked: bool = True):
    """The session's synthetic cluster; ``tracked``: a copy of it that tracks its writes (one per
    cluster, shared by the rows; the generated one stays untracked for the other benchmark files)."""
    base = cluster_cache(preset, n_gpus)
    if not tracked or not hasattr(base, "track_writes"):  # a build without write tracking
        return base
    c = _TRACKED.get((preset, n_gpus))
    if c is None:
        c = _TRACKED[(preset, n_gpus)] = base.copy()
        c.track_writes()
    return c


def _run(benchmark, cluster_cache, preset, n_gpus, pods, gpus, budget_us=None, tracked=True):
    cluster = _cluster(cluster_cache, preset, n_gpus, tracked)
    gang = _gang(pods, gpus)
    placement = place(cluster, gang, placer="heuristic")  # warm-up; also the answer recorded
    benchmark.extra_info.update(array_bytes=array_bytes(cluster), tracked=hasattr(cluster, "write_tracker")
                                and cluster.write_tracker is not None,
        preset=preset, cluster_gpus=n_gpus, nodes=cluster.n_nodes, free_gpus=cluster.free_gpu_count,
        gang=f"{pods}x{gpus}", placed=placement.placed, optimal=placement.optimal,
        domains_used=dict(placement.domains_used), budget_us=budget_us)
    result = benchmark(place, cluster, gang, placer="heuristic")
    assert result.placed == placement.placed and result.pods == placement.pods  # deterministic


@pytest.mark.parametrize("preset, n_gpus, pods, gpus, budget_us", [r[1:] for r in BUDGET_ROWS],
                         ids=[r[0] for r in BUDGET_ROWS])
def test_budget(benchmark, cluster_cache, preset, n_gpus, pods, gpus, budget_us):
    benchmark.group = "heuristic budgets (docs/placement.md)"
    _run(benchmark, cluster_cache, preset, n_gpus, pods, gpus, budget_us)


@pytest.mark.parametrize("preset, n_gpus, pods, gpus", [r[1:] for r in GRID], ids=[r[0] for r in GRID])
def test_grid(benchmark, cluster_cache, preset, n_gpus, pods, gpus):
    benchmark.group = f"heuristic grid {preset}"
    _run(benchmark, cluster_cache, preset, n_gpus, pods, gpus)


@pytest.mark.parametrize("preset, n_gpus, pods, gpus, budget_us", [r[1:] for r in MILLION_ROWS],
                         ids=[r[0] for r in MILLION_ROWS])
def test_million(benchmark, cluster_cache, preset, n_gpus, pods, gpus, budget_us):
    benchmark.group = "heuristic, a million GPUs (issue 15)"
    _run(benchmark, cluster_cache, preset, n_gpus, pods, gpus, budget_us)


@pytest.mark.parametrize("preset, n_gpus, pods, gpus, budget_us", [r[1:] for r in MILLION_ROWS],
                         ids=[r[0] + "-untracked" for r in MILLION_ROWS])
def test_million_untracked(benchmark, cluster_cache, preset, n_gpus, pods, gpus, budget_us):
    benchmark.group = "heuristic, a million GPUs (issue 15)"
    _run(benchmark, cluster_cache, preset, n_gpus, pods, gpus, tracked=False)


@pytest.mark.parametrize("preset, n_gpus, pods, gpus, budget_us", [r[1:] for r in MILLION_ROWS],
                         ids=[r[0] + "-bind" for r in MILLION_ROWS])
def test_million_bind(benchmark, cluster_cache, preset, n_gpus, pods, gpus, budget_us):
    """Each round binds (or unbinds, alternately) one pod of the gang's shape on a node of the
    answer through the ledger (``engine.live.ledger.apply``, the write path of ClusterState's
    bind), then places: the write and the placement are timed together."""
    from gangplace.engine.live.ledger import BindRecord, apply
    benchmark.group = "heuristic, a million GPUs (issue 15)"
    cluster = _cluster(cluster_cache, preset, n_gpus)
    gang = _gang(pods, gpus)
    first = place(cluster, gang, placer="heuristic")
    rec = BindRecord("bench-bind", first.pods[0].node, gpus)
    bound = [False]

    def bind_then_place():
        apply(cluster, rec, -1 if bound[0] else +1)
        bound[0] = not bound[0]
        return place(cluster, gang, placer="heuristic")

    try:
        benchmark.extra_info.update(preset=preset, cluster_gpus=n_gpus, nodes=cluster.n_nodes, gang=f"{pods}x{gpus}",
                                    budget_us=budget_us, tracked=getattr(cluster, "write_tracker", None) is not None)
        result = benchmark(bind_then_place)
        assert result.placed
    finally:
        if bound[0]:
            apply(cluster, rec, -1)


def test_generate_million(benchmark):
    benchmark.group = "generate a million GPUs"
    cluster = benchmark.pedantic(generate, args=("dgx-h100",), kwargs=dict(gpus=1_048_576, fill=0.6, seed=1),
                                 rounds=1, iterations=1)
    benchmark.extra_info.update(nodes=cluster.n_nodes, array_bytes=array_bytes(cluster))


# one-pod gangs: objective "age" (the default: engine/place/age.py, after the kernel's answer a pass over
# the nodes that hold the pod) against "podfit" (the kernel alone), on the same tracked cluster
ONE_POD_ROWS = [("one-pod-dgx-h100-16k-1gpu", "dgx-h100", 16_384, 1),
                ("one-pod-dgx-h100-131k-1gpu", "dgx-h100", 131_072, 1)]


@pytest.mark.parametrize("objective", ["age", "podfit"])
@pytest.mark.parametrize("preset, n_gpus, gpus", [r[1:] for r in ONE_POD_ROWS], ids=[r[0] for r in ONE_POD_ROWS])
def test_one_pod(benchmark, cluster_cache, preset, n_gpus, gpus, objective):
    benchmark.group = f"one-pod gang, {preset} {n_gpus:,} GPUs: objective age against podfit"
    cluster = _cluster(cluster_cache, preset, n_gpus)
    gang = _gang(1, gpus)
    first = place(cluster, gang, placer="heuristic", objective=objective)
    benchmark.extra_info.update(objective=objective, nodes=cluster.n_nodes, placed=first.placed)
    result = benchmark(place, cluster, gang, placer="heuristic", objective=objective)
    assert result.placed and result.pods == first.pods

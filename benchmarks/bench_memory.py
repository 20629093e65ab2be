"""The memory budget (docs/placement.md): tracemalloc growth for 12,500 nodes and 100,000 allocations <= 50 MB.

What is measured: a ``ClusterState`` over a synthetic dgx-h100 cluster of 100,000 GPUs
(12,500 nodes, empty), then 100,000 pod allocations recorded with ``bind`` (one GPU each, with
CPU and memory, gang-labelled, 8 per node), then a snapshot. The growth is tracemalloc's current
traced size after minus before the binds (the cluster itself is built before tracing starts).

Run: ``.venv/bin/python benchmarks/bench_memory.py`` (prints one JSON line; exits 1 over budget).
"""
from __future__ import annotations

import gc
import json
import sys
import time
import tracemalloc

from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.synthetic import generate

NODES, ALLOCATIONS, BUDGET_MB = 12_500, 100_000, 50.0


def measure() -> dict:
    cluster = generate("dgx-h100", gpus=NODES * 8, fill=0.0, seed=1)
    assert cluster.n_nodes == NODES
    state = ClusterState(cluster)
    names = list(cluster.node_names)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    for k in range(ALLOCATIONS):
        node = names[k // 8]
        state.bind(f"uid-{k:06d}", node, gpus=1, cpu=4000, memory=64 * 2**30,
                   gang=f"job-{k // 64}", namespace="ml", name=f"job-{k // 64}-{k % 64}")
    bind_s = time.perf_counter() - t0
    state.snapshot()
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    problems = state.check_consistency()
    return {"nodes": NODES, "allocations": ALLOCATIONS, "growth_mb": round((after - before) / 2**20, 2),
            "peak_mb": round((peak - before) / 2**20, 2), "budget_mb": BUDGET_MB,
            "binds_per_s": round(ALLOCATIONS / bind_s), "consistent": not problems}


def test_memory_budget():
    """pytest entry (``pytest benchmarks/bench_memory.py``): the budget as an assertion on bytes."""
    r = measure()
    print(json.dumps(r))
    assert r["consistent"] and r["growth_mb"] <= BUDGET_MB


if __name__ == "__main__":
    result = measure()
    print(json.dumps(result))
    sys.exit(0 if result["consistent"] and result["growth_mb"] <= BUDGET_MB else 1)

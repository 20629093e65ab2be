"""Metrics of one simulation run (engine/sim/simulator.py ``SimResult``) as a flat, JSON-ready dict.

Definitions (times in seconds, from the trace's submit times):
- queue delay = start - submit; JCT (job completion time) = end - submit, run-time slowdown
  included; both over started jobs. ``queue_delay_by_size`` buckets jobs by GPUs (``gpu_s``: the
  bucket's GPU-time, GPUs x the trace's run time, so its share of the workload).
- makespan = last end - first submit. ``utilization`` = GPU-seconds held by jobs / (GPUs available
  to the trace x makespan), so slowed-down jobs count for the time they hold GPUs; ``goodput`` is
  the same with the trace's own run times (useful work only). ``utilization_window`` = mean busy
  share between the first and the last arrival (heavy-tailed traces finish long after the last
  arrival, which drags ``utilization`` down for every policy alike).
- locality (gangs of 2+ pods only): ``optimal_locality_fraction`` = share placed with the fewest
  domains at every level (proved by the lower bound, or by the placer); ``suboptimal_locality_fraction``
  = share where the gangplace heuristic found fewer domains on the same state; the rest is
  ``unknown_locality_fraction`` (above the bound, which is not always tight, but no witness).
  ``domains_per_level`` = mean domains spanned, per level then nodes; ``slowdown_mean`` = mean
  run-time stretch of those gangs.
- fragmentation (from the snapshots): ``stranded_free_fraction_mean`` = mean share of free GPUs on
  nodes that cannot host a full-node pod; ``largest_gang_gpus_mean`` = per level, the mean over
  time of the most GPUs (in full-node pods) one domain of that level could still take.
- latency: per placement decision of the policy (successful or not), milliseconds.
"""
from __future__ import annotations

import numpy as np

from .analytics import fragmentation, largest_gang
from .simulator import LOC_OPTIMAL, LOC_SUBOPTIMAL, LOC_UNKNOWN, SimResult

SIZE_BUCKETS = ((1, 1), (2, 4), (5, 8), (9, 16), (17, 32), (33, 64), (65, 1 << 30))


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else 0.0


def _mean(a: np.ndarray) -> float:
    return float(a.mean()) if a.size else 0.0


def bucket_name(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else (f"{lo}+" if hi >= 1 << 30 else f"{lo}-{hi}")


def busy_integral(t: np.ndarray, busy: np.ndarray, t0: float, t1: float) -> float:
    """GPU-seconds of the step function ``busy`` (value after each event time ``t``) over [t0, t1]."""
    if t.size == 0 or t1 <= t0:
        return 0.0
    edges = np.clip(np.append(t, max(t1, float(t[-1]))), t0, t1)
    return float((busy * np.diff(edges)).sum())


def busy_fraction(t, busy, capacity: int, t0: float, t1: float) -> float:
    """Mean busy share of ``capacity`` over [t0, t1] (the arrival window), 0 if empty."""
    return busy_integral(t, busy, t0, t1) / max(capacity * (t1 - t0), 1.0) if t1 > t0 else 0.0


def idle_while_queued(t: np.ndarray, busy: np.ndarray, queue: np.ndarray, capacity: int) -> tuple[float, float]:
    """GPU-seconds left free while at least one job waited, and the seconds with a job waiting.

    The step functions ``busy`` and ``queue`` hold their value after each event time ``t`` until the next
    one. Free GPUs while jobs wait is capacity that the waiting jobs could not use: no room of their
    shape (fragmentation), room held for the backfill's head, or FIFO order (docs/simulation.md)."""
    if t.size < 2:
        return 0.0, 0.0
    dt = np.diff(t)
    waiting = queue[:-1] > 0
    return float(((capacity - busy[:-1]) * dt)[waiting].sum()), float(dt[waiting].sum())


def summarize(r: SimResult, node_domain: np.ndarray, level_offset: np.ndarray, cap_gpus: np.ndarray) -> dict:
    started = r.start_s >= 0
    delay = (r.start_s - r.submit_s)[started].astype(np.float64)
    jct = (r.end_s - r.submit_s)[started].astype(np.float64)
    held = (r.num_gpus * (r.end_s - r.start_s))[started]
    work = (r.num_gpus * r.duration_s)[started]
    first = float(r.submit_s.min()) if r.submit_s.size else 0.0
    makespan = float(r.end_s[started].max() - first) if started.any() else 0.0
    denom = max(r.capacity_gpus * makespan, 1.0)
    multi = (r.locality == LOC_OPTIMAL) | (r.locality == LOC_SUBOPTIMAL) | (r.locality == LOC_UNKNOWN)
    n_multi = int(multi.sum())
    levels = (*r.level_names, "node")
    by_size = {}
    for lo, hi in SIZE_BUCKETS:
        m = started & (r.num_gpus >= lo) & (r.num_gpus <= hi)
        d = (r.start_s - r.submit_s)[m].astype(np.float64)
        if d.size:
            by_size[bucket_name(lo, hi)] = {"jobs": int(d.size), "mean_s": _mean(d), "p50_s": _pct(d, 50),
                                            "p95_s": _pct(d, 95), "p99_s": _pct(d, 99),
                                            "gpu_s": float((r.num_gpus * r.duration_s)[m].sum())}
    run = (r.end_s - r.start_s)[multi].astype(np.float64)
    base = r.duration_s[multi].astype(np.float64)
    pod = r.gpus_per_node
    frag = fragmentation(r.snapshots, cap_gpus, pod) if len(r.snapshots) else np.zeros(0)
    largest = largest_gang(r.snapshots, node_domain, level_offset, pod) if len(r.snapshots) else \
        np.zeros((0, len(levels)), np.int64)
    lat = r.latency_ms
    idle_q, queued = idle_while_queued(r.timeline_t, r.timeline_busy, r.timeline_queue, r.capacity_gpus)
    return {
        "policy": r.policy,
        "trace": r.trace,
        "jobs_submitted": int(r.submit_s.size),
        "jobs_completed": int(started.sum()),
        "jobs_rejected": int(r.rejected.sum()),
        "mean_queue_delay_s": _mean(delay),
        "p50_queue_delay_s": _pct(delay, 50),
        "p95_queue_delay_s": _pct(delay, 95),
        "p99_queue_delay_s": _pct(delay, 99),
        "queue_delay_by_size": by_size,
        # each job's wait weighted by its GPUs: what the mean over jobs hides when thousands of 1-GPU
        # jobs and a few large gangs trade waits (docs/simulation.md)
        "gpu_weighted_mean_queue_delay_s": float((delay * r.num_gpus[started]).sum() / r.num_gpus[started].sum())
        if started.any() else 0.0,
        "mean_jct_s": _mean(jct),
        "p50_jct_s": _pct(jct, 50),
        "p99_jct_s": _pct(jct, 99),
        "makespan_s": makespan,
        "utilization": float(held.sum() / denom),
        "goodput": float(work.sum() / denom),
        "utilization_window": busy_fraction(r.timeline_t, r.timeline_busy, r.capacity_gpus, first,
                                            float(r.submit_s.max()) if r.submit_s.size else 0.0),
        # free GPUs while at least one job waited (GPU-seconds), and for how long a job waited at all
        "idle_gpu_s_while_queued": idle_q,
        "queued_s": queued,
        # idle_gpu_s_while_queued split by the node the free GPUs were on (simulator.NODE_STATES)
        "idle_gpu_s_by_node_state": dict(r.extra.get("idle_by_node_state", {})),
        "multi_pod_gangs": n_multi,
        "optimal_locality_fraction": float((r.locality == LOC_OPTIMAL).sum() / n_multi) if n_multi else 1.0,
        "suboptimal_locality_fraction": float((r.locality == LOC_SUBOPTIMAL).sum() / n_multi) if n_multi else 0.0,
        "unknown_locality_fraction": float((r.locality == LOC_UNKNOWN).sum() / n_multi) if n_multi else 0.0,
        "domains_per_level": {lv: float(r.domains[multi, k].mean()) if n_multi else 0.0 for k, lv in enumerate(levels)},
        "slowdown_mean": float((run / base).mean()) if n_multi else 1.0,
        "stranded_free_fraction_mean": _mean(frag),
        "largest_gang_gpus_mean": {lv: float(largest[:, k].mean()) if len(largest) else 0.0
                                   for k, lv in enumerate(levels)},
        "placement_decisions": int(lat.size),
        "placement_latency_ms_mean": _mean(lat),
        "placement_latency_ms_p50": _pct(lat, 50),
        "placement_latency_ms_p99": _pct(lat, 99),
        "capacity_gpus": int(r.capacity_gpus),
        "sim_wall_s": float(r.wall_s),
    }


MIN_MULTI_POD_GANGS = 30  # fewer and the locality fractions rest on a handful of gangs
SPARSE_SHARE = 0.5  # busy share of the arrival window below this share of the offered load: sparse


PHILLY_RAMP_UP_S = 42 * 86400  # Philly's first 41 days are a sparse ramp-up (engine/sim/data/README.md)


def window_warnings(summary: dict, spec: dict) -> list[str]:
    """What makes one window's figures easy to misread (call it with one policy's run of it): too few multi-pod gangs for the locality
    shares to mean much, or a window much sparser than the offered load (the trace does not
    fill the cluster there, so every good policy waits zero and they look alike). ``spec``: the
    run's RunSpec as a dict (load, trace, start_s)."""
    load = spec.get("load")
    hint = ("; Philly's first 41 days are a sparse ramp-up: --start 42d"
            if "philly" in str(spec.get("trace", "")) and (spec.get("start_s") or 0) < PHILLY_RAMP_UP_S else "")
    out = []
    where = summary["label"].rsplit("/", 1)[0]  # the window and cluster, not the policy
    n, jobs = summary["multi_pod_gangs"], summary["jobs_submitted"]
    if n < MIN_MULTI_POD_GANGS:
        out.append(f"{where}: only {n} multi-pod gang{'s' if n != 1 else ''} among {jobs:,} jobs: "
                   f"locality shares rest on few gangs (choose a denser window with --start / --end, or more "
                   f"jobs with --max-jobs{hint})")
    busy = summary["utilization_window"]
    if load and busy < SPARSE_SHARE * load:
        out.append(f"{where}: the window keeps {busy:.0%} of the GPUs busy on average while --load "
                   f"asks for {load:.0%}: the trace is sparse here, so queues stay short for every policy "
                   f"(choose another window, more jobs, or a smaller cluster)")
    return out

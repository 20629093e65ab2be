"""Grids of simulation runs (policies x traces x cluster sizes x seeds), serial, on a process pool,
or on a Ray cluster, gathered into one list of results.

``run_one(spec)`` is self-contained (it builds the cluster and loads the trace itself), so a run
ships to another process or machine as a small ``RunSpec`` and comes back as plain dicts and
numpy arrays. Ray is optional (``pip install 'gangplace[ray]'``); ``ray_address="local"`` starts a
private local instance, any other value is passed to ``ray.init(address=...)`` (an existing
cluster, whose workers must have gangplace installed).
"""
from __future__ import annotations

import itertools
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterable

import numpy as np

from ..model.errors import InvalidRequest
from .locality import DEFAULT_SLOWDOWN

MAX_SERIES_POINTS = 1500  # timeline points kept per run for plots
MAX_DELAY_POINTS = 20000  # queue delays kept per run for the CDF


@dataclass(frozen=True)
class RunSpec:
    """One simulation: a trace on a cluster through one policy. ``cluster_file`` wins over the preset."""

    trace: str = "helios"  # bundled name or a CSV path
    policy: str = "gangplace-heuristic"
    preset: str = "dgx-h100"
    gpus: int = 2048
    fill: float = 0.0
    cluster_file: str | None = None
    seed: int = 1  # cluster generation and policy randomness
    max_jobs: int | None = 5000
    start_s: float = 0.0
    end_s: float | None = None
    load: float | None = 0.8  # offered load as a fraction of the GPUs available; None = trace times
    time_limit_ms: float = 50.0
    scheduler: str = "easy"
    backfill_depth: int = 64
    reservation_hold: str = "gpus"  # what EASY holds for the head: "gpus" (per node, what it needs) or "nodes"
    slowdown: tuple[float, ...] = DEFAULT_SLOWDOWN

    def label(self) -> str:
        where = self.cluster_file or f"{self.preset}-{self.gpus}"
        return f"{self.trace}/{where}/seed{self.seed}/{self.policy}"


def grid(base: RunSpec, *, policies: Iterable[str], traces: Iterable[str] = (), gpus: Iterable[int] = (),
         seeds: Iterable[int] = ()) -> list[RunSpec]:
    """The cartesian product; an empty axis keeps the base value."""
    axes = (list(traces) or [base.trace], list(gpus) or [base.gpus], list(seeds) or [base.seed], list(policies))
    return [replace(base, trace=t, gpus=g, seed=s, policy=p) for t, g, s, p in itertools.product(*axes)]


def build_cluster(spec: RunSpec):
    from ..model.cluster import Cluster
    from ..model.synthetic import generate
    if spec.cluster_file:
        return Cluster.load(spec.cluster_file)
    return generate(spec.preset, gpus=spec.gpus, fill=spec.fill, seed=spec.seed)


def build_trace(spec: RunSpec, capacity_gpus: int):
    from .traces import load_trace, scale_load, select
    tr = select(load_trace(spec.trace), start_s=spec.start_s, end_s=spec.end_s, max_jobs=spec.max_jobs)
    if spec.load:
        tr = scale_load(tr, spec.load * capacity_gpus)
    return tr


def run_one(spec: RunSpec, progress: Callable[[int, int], None] | None = None, policy=None) -> dict:
    """Run one simulation; returns ``{"spec", "summary", "series"}`` (plain data, picklable).

    ``policy``: a Policy object to run instead of the one ``spec.policy`` names (prototypes in
    benchmarks/ that are not selectable by name)."""
    from .summary import summarize
    from .baselines import make_policy
    from .simulator import SimConfig, simulate
    cluster = build_cluster(spec)
    capacity = int(cluster.free_gpus[cluster.schedulable.astype(bool)].sum())
    trace = build_trace(spec, capacity)
    if policy is None:
        policy = make_policy(spec.policy, seed=spec.seed, time_limit_ms=spec.time_limit_ms)
    cfg = SimConfig(scheduler=spec.scheduler, backfill_depth=spec.backfill_depth, slowdown=tuple(spec.slowdown),
                    reservation_hold=spec.reservation_hold)
    static = (cluster.node_domain, cluster.level_offset, cluster.cap_gpus)
    res = simulate(cluster, trace, policy, cfg, progress=progress)
    summary = summarize(res, *static)
    summary["label"] = spec.label()
    return {"spec": asdict(spec), "summary": summary, "series": _series(res, cluster)}


def _series(res, cluster) -> dict:
    """Downsampled arrays for the report's plots."""
    t, busy, q = res.timeline_t, res.timeline_busy, res.timeline_queue
    if t.size > MAX_SERIES_POINTS:
        idx = np.linspace(0, t.size - 1, MAX_SERIES_POINTS).astype(np.int64)
        t, busy, q = t[idx], busy[idx], q[idx]
    started = res.start_s >= 0
    delays = np.sort((res.start_s - res.submit_s)[started]).astype(np.float64)
    if delays.size > MAX_DELAY_POINTS:
        delays = delays[np.linspace(0, delays.size - 1, MAX_DELAY_POINTS).astype(np.int64)]
    from .locality import crossed_level
    multi = res.locality > 0
    crossed = np.array([crossed_level(d) for d in res.domains[multi]], np.int64)
    hist = np.bincount(crossed + 1, minlength=res.n_levels + 2) if crossed.size else np.zeros(res.n_levels + 2, np.int64)
    mid = res.snapshots[len(res.snapshots) // 2] if len(res.snapshots) else cluster.free_gpus.astype(np.int16)
    from .analytics import largest_gang, stranded_gpus
    if len(res.snapshots):
        largest = largest_gang(res.snapshots, cluster.node_domain, cluster.level_offset, res.gpus_per_node)
        stranded = stranded_gpus(res.snapshots, cluster.cap_gpus, res.gpus_per_node)
    else:
        largest = np.zeros((0, len(cluster.levels) + 1), np.int64)
        stranded = np.zeros(0, np.int64)
    return {"t": t, "busy": busy, "queue": q, "capacity": res.capacity_gpus, "delays": delays,
            "crossed_hist": hist, "snapshot": mid, "snapshot_t": float(res.snapshot_t[len(res.snapshot_t) // 2])
            if len(res.snapshot_t) else 0.0, "cap_gpus": cluster.cap_gpus,
            "lowest_domain": cluster.node_domain[-1] - cluster.level_offset[-2] if len(cluster.levels) else
            np.zeros(cluster.n_nodes, np.int32), "levels": list(cluster.levels),
            "sample_t": res.snapshot_t, "sample_largest_gang_gpus": largest, "sample_stranded_gpus": stranded,
            "last_arrival_s": float(res.submit_s.max()) if res.submit_s.size else 0.0}


def run_grid(specs: list[RunSpec], *, workers: int = 1, ray_address: str | None = None, ray_num_cpus: int | None = None,
             on_done: Callable[[dict], None] | None = None) -> list[dict]:
    """Run every spec; results come back in the order of ``specs``. ``on_done`` is called as each finishes."""
    if workers < 1:
        raise InvalidRequest(f"must be >= 1, got {workers}", field="workers")
    results: list[dict | None] = [None] * len(specs)

    def done(i: int, r: dict) -> None:
        results[i] = r
        if on_done is not None:
            on_done(r)

    if ray_address:
        _run_ray(specs, ray_address, ray_num_cpus, done)
    elif workers > 1 and len(specs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(run_one, s): i for i, s in enumerate(specs)}
            for f in as_completed(futures):
                done(futures[f], f.result())
    else:
        for i, s in enumerate(specs):
            done(i, run_one(s))
    return results  # type: ignore[return-value]


def _run_ray(specs: list[RunSpec], address: str, num_cpus: int | None, done) -> None:
    try:
        import ray
    except ImportError:
        raise InvalidRequest("--ray needs the optional extra: pip install 'gangplace[ray]'", field="ray") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        remote = ray.remote(num_cpus=1)(run_one)
        refs = {remote.remote(s): i for i, s in enumerate(specs)}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                done(refs[ref], ray.get(ref))
    finally:
        if started_here:
            ray.shutdown()

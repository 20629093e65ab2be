"""``gangplace bench``: the one-command benchmark suite on synthetic clusters.

Sections (each measured in this one run, side by side):
1. placement latency vs cluster size: ``place()`` on ``generate("dgx-h100", gpus=N, fill=0.6, seed=1)``
   for N from 2,048 to 131,072 GPUs, heuristic and auto, gangs of 8 and 64 full-node pods;
2. quality vs the baselines: every policy replays the bundled traces (Philly from day 42, its
   dense part; Helios from the start) through the simulator (engine/sim/simulator.py);
3. service round trips (gRPC ``Place`` vs a no-op RPC on loopback) when the service modules are
   importable, else a note.
``--quick`` (default) stays under ~3 minutes on 2 cores; ``--full`` runs whole traces (Philly: 50k
jobs from day 42) on two cluster sizes (use ``--workers``/``--ray``). Without background load the
cluster, and so every deterministic policy, is the same for every seed: add ``--seeds 1,2`` to see
the spread of the randomized baselines. Output: a report folder (service/report.py).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, replace

import numpy as np

from .cmd_simulate import DEFAULT_LOAD, add_common, run_specs

PHILLY_DENSE_START_S = 42 * 86400  # the first ~40 days are a sparse ramp-up (engine/sim/data/README.md)


@dataclass(frozen=True)
class Profile:
    sizes: tuple[int, ...]
    latency_repeats: int
    max_jobs: int
    sim_gpus: tuple[int, ...]
    seeds: tuple[int, ...]
    time_limit_ms: float


PROFILES = {
    "quick": Profile(sizes=(2048, 8192, 32768, 131072), latency_repeats=30, max_jobs=5000, sim_gpus=(2048,),
                     seeds=(1,), time_limit_ms=20.0),
    "full": Profile(sizes=(2048, 4096, 8192, 16384, 32768, 65536, 131072), latency_repeats=60, max_jobs=50000,
                    sim_gpus=(2048, 8192), seeds=(1,), time_limit_ms=50.0),
}


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="run the benchmark suite and write a report folder",
                       description="Benchmark suite on synthetic clusters: placement latency vs cluster size, "
                                   "quality vs baseline policies on the bundled traces, service round trips. "
                                   "Writes report.md, results.json, results.parquet and PNG plots.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the default: ~15-30 s on 2 cores")
    mode.add_argument("--full", action="store_true", help="whole traces, more sizes (3 min with --workers 2 on 2 cores, docs/benchmarks.md)")
    p.add_argument("--out", default="reports/bench", help="report folder, created (default reports/bench)")
    p.add_argument("--traces", default="helios,philly", help="traces for the quality section")
    p.add_argument("--sizes", help="override: cluster sizes (GPUs) for the latency section, comma-separated")
    p.add_argument("--sim-gpus", help="override: cluster size(s) for the quality section")
    p.add_argument("--max-jobs", type=int, help="override: jobs per trace in the quality section")
    p.add_argument("--seeds", help="override: seeds for the quality section")
    p.add_argument("--load", type=float, default=DEFAULT_LOAD, help="demand as a fraction of the cluster (see simulate)")
    p.add_argument("--skip", default="", help="sections to skip: latency,quality,service")
    add_common(p)
    p.set_defaults(func=run, time_limit_ms=None)


def _ints(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    from .cmd_simulate import _int_list
    return tuple(_int_list(text, "--bench")) if text else default


def run(args: argparse.Namespace) -> int:
    from gangplace.engine.model.errors import InvalidRequest
    from gangplace.engine.sim.locality import DEFAULT_SLOWDOWN, parse_slowdown
    from gangplace.engine.sim.baselines import parse_policies
    from gangplace.engine.sim.sweep import RunSpec, grid

    from .output import console
    from .report import write_report
    name = "full" if args.full else "quick"
    prof = PROFILES[name]
    prof = replace(prof, sizes=_ints(args.sizes, prof.sizes), sim_gpus=_ints(args.sim_gpus, prof.sim_gpus),
                   seeds=_ints(args.seeds, prof.seeds), max_jobs=args.max_jobs or prof.max_jobs,
                   time_limit_ms=args.time_limit_ms or prof.time_limit_ms)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - {"latency", "quality", "service"}
    if unknown:
        raise InvalidRequest(f"unknown section(s) {sorted(unknown)}", field="--skip")
    con = console()
    from .report import machine_info
    machine = machine_info()
    t_start = time.perf_counter()
    command = "gangplace " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("gangplace") else None
    sections: list[tuple[str, str]] = []

    latency_rows = []
    if "latency" not in skip:
        latency_rows = bench_latency(prof.sizes, prof.latency_repeats)

    results = []
    if "quality" not in skip:
        base = RunSpec(max_jobs=prof.max_jobs, load=args.load or None, time_limit_ms=prof.time_limit_ms,
                       scheduler=args.scheduler,
                       slowdown=parse_slowdown(args.slowdown) if args.slowdown else DEFAULT_SLOWDOWN)
        specs = []
        for trace in [t.strip() for t in args.traces.split(",") if t.strip()]:
            start = PHILLY_DENSE_START_S if trace == "philly" else 0.0
            specs += grid(replace(base, trace=trace, start_s=start), policies=parse_policies(args.policies),
                          gpus=prof.sim_gpus, seeds=prof.seeds)
        results = run_specs(specs, args, title="quality: simulating")
        sections.append(("Which policy wins where", winners(results)))

    if "service" not in skip:
        sections.append(("Service round trips", bench_service()))
    elapsed = time.perf_counter() - t_start
    intro = (f"Profile `{name}`: latency sizes {list(prof.sizes)} GPUs ({prof.latency_repeats} placements each), "
             f"quality on {prof.max_jobs} jobs per trace, clusters {list(prof.sim_gpus)} GPUs (dgx-h100, no "
             f"background load), seeds {list(prof.seeds)}, gangplace-auto CP-SAT cap {prof.time_limit_ms} ms. "
             f"Total wall time {elapsed:.0f} s.")
    path = write_report(args.out, results, title=f"gangplace bench ({name})", command=command, intro=intro,
                        latency_rows=latency_rows, sections=sections,
                        extra_json={"profile": name, "wall_s": elapsed}, machine=machine)
    con.print(f"wrote {path} ({elapsed:.0f} s)", highlight=False)
    return 0


def bench_latency(sizes, repeats: int, presets=("dgx-h100",)) -> list[dict]:
    """Median/p99 of ``place()`` per (cluster size, gang, placer) on a 60 %-full synthetic cluster."""
    from rich.progress import track

    from gangplace.engine import place
    from gangplace.engine.model.types import GangRequest, PodSet
    from gangplace.engine.model.synthetic import generate
    rows = []
    gangs = {"8x8 GPUs": GangRequest("g8", (PodSet("w", 8, gpus=8),)),
             "64x8 GPUs": GangRequest("g64", (PodSet("w", 64, gpus=8),))}
    jobs = [(p, n) for p in presets for n in sizes]
    for preset, gpus in track(jobs, description="latency vs cluster size", console=_err_console(),
                              disable=not sys.stderr.isatty()):
        cluster = generate(preset, gpus=gpus, fill=0.6, seed=1)
        for gname, gang in gangs.items():
            for placer in ("heuristic", "auto"):
                place(cluster, gang, placer=placer)  # warm-up (imports, caches)
                times, optimal = [], 0
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    p = place(cluster, gang, placer=placer, time_limit_ms=100.0)
                    times.append((time.perf_counter() - t0) * 1e3)
                    optimal += bool(p.optimal)
                rows.append({"preset": preset, "gpus": int(cluster.total_gpus), "nodes": int(cluster.n_nodes),
                             "gang": gname, "placer": placer, "median_ms": statistics.median(times),
                             "p99_ms": float(np.percentile(times, 99)), "optimal_fraction": optimal / repeats,
                             "placed": bool(p.placed), "samples": repeats})
    return rows


def _err_console():
    from rich.console import Console
    return Console(stderr=True)


def bench_service(n: int = 300) -> str:
    """gRPC round trips on loopback; a note instead when the service is not part of this build."""
    try:
        from gangplace.engine.model.types import GangRequest, PodSet
        from gangplace.service.client import GangplaceClient
        from gangplace.service.config import ClusterSource, ServeConfig
        from gangplace.service.testing import running_service
    except Exception as e:  # noqa: BLE001 - any import problem means "no service in this build"
        return f"Skipped: the service modules are not importable here ({type(e).__name__}: {e})."
    try:
        cfg = ServeConfig(cluster=ClusterSource(synthetic="dgx-h100", gpus=2048, fill=0.6, seed=1),
                          grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic")
        gang = GangRequest("bench-8x8", (PodSet("w", 8, gpus=8),))
        with running_service(cfg) as svc, GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as client:
            for _ in range(20):
                client.ping()
                client.place(gang)
            ping, placed = [], []
            for _ in range(n):
                t0 = time.perf_counter()
                client.ping()
                t1 = time.perf_counter()
                client.place(gang)
                t2 = time.perf_counter()
                ping.append((t1 - t0) * 1e3)
                placed.append((t2 - t1) * 1e3)
    except Exception as e:  # noqa: BLE001 - report, do not fail the whole benchmark
        return f"Skipped: the service did not run here ({type(e).__name__}: {e})."
    p50_ping, p50_place = statistics.median(ping), statistics.median(placed)
    return ("gRPC on 127.0.0.1, Python client and server in one process (server on its own thread), "
            f"dgx-h100 2,048 GPUs at 60 % fill, heuristic placer, {n} calls each, interleaved.\n\n"
            "| call | p50 ms | p99 ms |\n|---|---:|---:|\n"
            f"| no-op (Ping) | {p50_ping:.3f} | {np.percentile(ping, 99):.3f} |\n"
            f"| Place 8x8 GPUs (no reservation) | {p50_place:.3f} | {np.percentile(placed, 99):.3f} |\n\n"
            f"Place costs {p50_place - p50_ping:.3f} ms over a no-op round trip at p50.")


def winners(results: list[dict]) -> str:
    """One line per (trace, cluster, seed) group: the best policy on each headline metric."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        s = r["spec"]
        groups.setdefault((s["trace"], s["gpus"], s["seed"]), []).append(r["summary"])
    metrics = (("mean_queue_delay_s", "lowest mean queueing delay", min),
               ("p99_queue_delay_s", "lowest p99 queueing delay", min),
               ("mean_jct_s", "lowest mean JCT", min),
               ("utilization_window", "highest utilization (arrival window)", max),
               ("optimal_locality_fraction", "most gangs at optimal locality", max),
               ("stranded_free_fraction_mean", "least stranded free capacity", min))
    lines = []
    for (trace, gpus, seed), runs in groups.items():
        parts = []
        for key, label, pick in metrics:
            best = pick(runs, key=lambda s: s[key])
            tied = [s["policy"] for s in runs if abs(s[key] - best[key]) <= 1e-9 * max(1.0, abs(best[key]))]
            parts.append(f"{label}: {', '.join(tied)}")
        lines.append(f"- `{trace}`, {gpus} GPUs, seed {seed}: " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"

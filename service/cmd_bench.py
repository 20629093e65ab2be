"""``gangplace bench``: the one-command benchmark suite on synthetic clusters.

Sections (each measured in this one run, side by side):
1. placement latency vs cluster size: ``place()`` on ``generate("dgx-h100", gpus=N, fill=0.6, seed=1)``
   for N from 2,048 to 131,072 GPUs, heuristic and auto, gangs of 8 and 64 full-node pods;
2. quality vs the baselines: every policy replays the bundled traces (Philly from day 42, its
   dense part; Helios from the start) through the simulator (engine/sim/simulator.py);
3. service round trips (gRPC ``Place`` vs a no-op RPC on loopback) when the service modules are
   importable, else a note;
4. with ``--holdout`` (and in ``--full`` unless ``--skip holdout``): the held-out workloads, last and
   apart from the verdict (service/bench_holdout.py).
``--quick`` (default) stays under ~3 minutes on 2 cores; ``--full`` runs the wide grid: Philly
(50k jobs from day 42) and Helios, on 2,048 and 8,192 GPUs, offered load 0.7 and 0.95, FIFO and
EASY backfill, no background load and 30 % background (``fill``), dgx-h100 and gb200-nvl72:
64 cells per policy, about half an hour of simulation with ``--workers 2`` on 2 cores (measured: 10 min
at 2,048 GPUs and 16 min at 8,192 with six policies; use ``--ray`` or narrow an axis with the
overrides). Without background load the cluster, and so every deterministic policy, is the same for
every seed: add ``--seeds 1,2`` to see the spread of the randomized baselines. Output: a report
folder (service/report.py) whose verdict says, per metric, where gangplace-auto wins and where a
baseline beats it by more than 1 %.

``--replicas K`` makes that verdict robust to the chaos of one queue run: every cell also runs at K
offered loads spread evenly over ``load x (1 +- --replica-band)`` (default 3 %; the nominal load is
the middle one when K is odd), every policy on exactly the same K traces (common random numbers),
and a "Replicated verdict" section gives, per cell and metric, the nominal run's ratio of
gangplace-auto to the best baseline next to the geometric mean of the K per-replica ratios (the
best baseline taken per replica), their min-max and in how many replicas gangplace-auto is ahead.
The rest of the report (tables, plots, the verdict) stays the nominal runs' alone.

After the verdicts, "Head to head" (service/bench_headtohead.py) compares gangplace-auto with each
other policy alone over the whole grid (geometric mean over the cells with a bootstrap interval;
``results.json``: ``head_to_head``), and "Lost cells: the trade-off and why" (service/bench_tradeoff.py)
explains every cell lost on a verdict metric with the numbers (``lost_cells``).
"""
from __future__ import annotations

import argparse
import itertools
import math
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
    loads: tuple[float, ...] = (0.8,)
    schedulers: tuple[str, ...] = ("easy",)
    fills: tuple[float, ...] = (0.0,)
    presets: tuple[str, ...] = ("dgx-h100",)


PROFILES = {
    "quick": Profile(sizes=(2048, 8192, 32768, 131072), latency_repeats=30, max_jobs=5000, sim_gpus=(2048,),
                     seeds=(1,), time_limit_ms=20.0),
    "full": Profile(sizes=(2048, 4096, 8192, 16384, 32768, 65536, 131072), latency_repeats=60, max_jobs=50000,
                    sim_gpus=(2048, 8192), seeds=(1,), time_limit_ms=50.0, loads=(0.7, 0.95),
                    schedulers=("fifo", "easy"), fills=(0.0, 0.3), presets=("dgx-h100", "gb200-nvl72")),
}
OURS = "gangplace-auto"  # the policy the verdict judges
TWIN = "gangplace-twin"  # its tie-twin, when run: the verdict's noise floor (engine/sim/baselines.py GangplaceTwin)
VERDICT_TOLERANCE = 0.01  # a baseline "beats" ours only by more than 1 %
REPLICA_BAND = 0.03  # --replicas: loads spread over nominal x (1 +- this); docs/simulation.md, "Replicated verdict"


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="run the benchmark suite and write a report folder",
                       description="Benchmark suite on synthetic clusters: placement latency vs cluster size, "
                                   "quality vs baseline policies on the bundled traces, service round trips. "
                                   "Writes report.md, results.json, results.parquet and PNG plots.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the default: ~15-30 s on 2 cores")
    mode.add_argument("--full", action="store_true", help="the 64-cell grid on whole traces, more sizes, the holdout (~30 min with --workers 2 on 2 cores, docs/benchmarks.md)")
    p.add_argument("--out", default="reports/bench", help="report folder, created (default reports/bench)")
    p.add_argument("--traces", default="helios,philly", help="traces for the quality section")
    p.add_argument("--sizes", help="override: cluster sizes (GPUs) for the latency section, comma-separated")
    p.add_argument("--sim-gpus", help="override: cluster size(s) for the quality section")
    p.add_argument("--max-jobs", type=int, help="override: jobs per trace in the quality section")
    p.add_argument("--seeds", help="override: seeds for the quality section")
    p.add_argument("--loads", help="override: offered loads for the quality section, comma-separated")
    p.add_argument("--schedulers", help="override: queue disciplines (easy,fifo) for the quality section")
    p.add_argument("--fills", help="override: background loads for the quality section, comma-separated")
    p.add_argument("--presets", help="override: synthetic presets for the quality section, comma-separated")
    p.add_argument("--load", type=float, default=DEFAULT_LOAD, help="demand as a fraction of the cluster (see simulate)")
    p.add_argument("--skip", default="", help="sections to skip: latency,quality,service,holdout")
    p.add_argument("--replicas", type=int, default=1,
                   help="run every quality cell at K offered loads spread evenly over load x (1 +- --replica-band), "
                        "all policies on the same K traces, and add a replicated verdict (default 1: the nominal run only)")
    p.add_argument("--replica-band", type=float, default=REPLICA_BAND,
                   help=f"relative half-width of the replicas' load band (default {REPLICA_BAND})")
    p.add_argument("--holdout", action="store_true",
                   help="also run the held-out workloads (Helios days 12-21, Philly days 60-75, large-gang seeds 2, 4, "
                        "6; ~30 s) and report them at the end, apart from the verdict (service/bench_holdout.py); "
                        "--full includes them unless --skip holdout")
    add_common(p, bench_policies())
    p.set_defaults(func=run, time_limit_ms=None)


def bench_policies() -> tuple[str, ...]:
    """The bench's default policies: every default policy, and gangplace-auto's tie-twin for the lost
    cells' "tie noise" label (bench_tradeoff.py)."""
    from gangplace.engine.sim.baselines import POLICIES
    return (*POLICIES, TWIN)


def _ints(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    from .cmd_simulate import _int_list
    return tuple(_int_list(text, "--bench")) if text else default


def _floats(text: str | None, default: tuple[float, ...], flag: str) -> tuple[float, ...]:
    from gangplace.engine.model.errors import InvalidRequest
    if not text:
        return default
    try:
        out = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InvalidRequest(f"not a comma-separated list of numbers: {text!r}", field=flag) from None
    if not out or any(not 0 <= x <= 1 for x in out):
        raise InvalidRequest(f"values must be between 0 and 1, got {text!r}", field=flag)
    return out


def _names(text: str | None, default: tuple[str, ...], allowed, flag: str) -> tuple[str, ...]:
    from gangplace.engine.model.errors import InvalidRequest
    if not text:
        return default
    out = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in out if x not in allowed]
    if bad or not out:
        raise InvalidRequest(f"unknown value(s) {bad or text!r}; choose from {sorted(allowed)}", field=flag)
    return out


def run(args: argparse.Namespace) -> int:
    from gangplace.engine.model.errors import InvalidRequest
    from gangplace.engine.sim.locality import DEFAULT_SLOWDOWN, parse_slowdown
    from gangplace.engine.sim.baselines import parse_policies
    from gangplace.engine.sim.sweep import RunSpec, grid

    from .output import console
    from .report import write_report
    name = "full" if args.full else "quick"
    prof = PROFILES[name]
    from gangplace.engine.model.synthetic import PRESETS
    prof = replace(prof, sizes=_ints(args.sizes, prof.sizes), sim_gpus=_ints(args.sim_gpus, prof.sim_gpus),
                   seeds=_ints(args.seeds, prof.seeds), max_jobs=args.max_jobs or prof.max_jobs,
                   time_limit_ms=args.time_limit_ms or prof.time_limit_ms,
                   loads=_floats(args.loads, (args.load,) if args.load != DEFAULT_LOAD else prof.loads, "--loads"),
                   schedulers=_names(args.schedulers, (args.scheduler,) if args.scheduler != "easy" else prof.schedulers,
                                     ("easy", "fifo"), "--schedulers"),
                   fills=_floats(args.fills, prof.fills, "--fills"),
                   presets=_names(args.presets, prof.presets, PRESETS, "--presets"))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - {"latency", "quality", "service", "holdout"}
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
    extra_json: dict = {"profile": name}
    if "quality" not in skip:
        base = RunSpec(max_jobs=prof.max_jobs, time_limit_ms=prof.time_limit_ms,
                       reservation_hold=args.reservation_hold,
                       slowdown=parse_slowdown(args.slowdown) if args.slowdown else DEFAULT_SLOWDOWN)
        factors = replica_factors(args.replicas, args.replica_band)
        policies = parse_policies(args.policies) if args.policies else list(bench_policies())
        if args.replicas > 1 and 0 in prof.loads:
            raise InvalidRequest("replicas vary the offered load; load 0 (trace times) has none to vary",
                                 field="--replicas")
        specs, extra = [], []  # extra: (spec, replica index, nominal load) of the replicas off the nominal load
        for trace in [t.strip() for t in args.traces.split(",") if t.strip()]:
            start = PHILLY_DENSE_START_S if trace == "philly" else 0.0
            for preset, fill, load, sched in itertools.product(prof.presets, prof.fills, prof.loads, prof.schedulers):
                cell = replace(base, trace=trace, start_s=start, preset=preset, fill=fill, load=load or None,
                               scheduler=sched)
                specs += grid(cell, policies=policies, gpus=prof.sim_gpus, seeds=prof.seeds)
                for i, f in enumerate(factors):
                    if f != 1.0:
                        extra += [(s, i, load) for s in grid(replace(cell, load=round(load * f, 6)),
                                                             policies=policies,
                                                             gpus=prof.sim_gpus, seeds=prof.seeds)]
        every = run_specs(specs + [s for s, _, _ in extra], args, title="quality: simulating")
        results, replica_runs = every[:len(specs)], every[len(specs):]
        table = replicated = None
        rows = [(_cell(r["spec"]), 0, r) for r in results]
        if args.replicas > 1:
            mid = factors.index(1.0) if 1.0 in factors else None
            rows = [(_cell(r["spec"]), mid, r) for r in results] if mid is not None else []
            rows += [(_cell(dict(r["spec"], load=nominal)), i, r) for (_, i, nominal), r in zip(extra, replica_runs)]
            table = replica_ratios(rows)
            replicated = replicated_verdict(results, table, factors)
            extra_json["replicated"] = {"factors": list(factors), "band": args.replica_band,
                                        "cells": [dict(cell=dict(zip(CELL_FIELDS, c)), **m) for c, m in table.items()]}
            extra_json["replica_runs"] = [dict(r["summary"], spec=r["spec"]) for r in replica_runs]
        from .bench_headtohead import TITLE as H2H_TITLE, head_to_head_section, verdict_line
        h2h, extra_json["head_to_head"] = head_to_head_section(rows, len(factors))
        # the verdict ends with the head-to-head's summary line
        sections.append(("!Verdict", verdict(results) + verdict_line(extra_json["head_to_head"])))
        if replicated is not None:
            sections.append(("!Replicated verdict", replicated))
        sections.append(("!" + H2H_TITLE, h2h))
        from .bench_tradeoff import FIELD_TITLE, TITLE, field_section, tradeoff_section
        body, extra_json["lost_cells"] = tradeoff_section(results, table)
        sections.append(("!" + TITLE, body))
        body, extra_json["field"] = field_section(results)
        sections.append((FIELD_TITLE, body))
        sections.append(("Which policy wins where", winners(results)))

    if "service" not in skip:
        sections.append(("Service round trips", bench_service()))
    if (args.holdout or args.full) and "holdout" not in skip:  # last: the held-out workloads, apart from the rest
        from .bench_holdout import holdout_section
        sections.append(holdout_section(args, extra_json))
    elapsed = time.perf_counter() - t_start
    intro = (f"Profile `{name}`: latency sizes {list(prof.sizes)} GPUs ({prof.latency_repeats} placements each), "
             f"quality on {prof.max_jobs} jobs per trace, clusters {list(prof.sim_gpus)} GPUs x presets "
             f"{list(prof.presets)} x background {list(prof.fills)} x load {list(prof.loads)} x "
             f"{list(prof.schedulers)}, seeds {list(prof.seeds)}, gangplace-auto CP-SAT cap {prof.time_limit_ms} ms. "
             + (f"Replicas: {args.replicas} loads per cell (band +-{args.replica_band:.0%}). " if args.replicas > 1 else "")
             + f"Total wall time {elapsed:.0f} s.")
    path = write_report(args.out, results, title=f"gangplace bench ({name})", command=command, intro=intro,
                        latency_rows=latency_rows, sections=sections,
                        extra_json=dict(extra_json, wall_s=elapsed), machine=machine)
    con.print(f"wrote {path} ({elapsed:.0f} s)", highlight=False)
    return 0


def _progress(items: list, title: str):
    """Iterate with rich's bar on a terminal, else with a line at least every 10 s (output.Heartbeat)."""
    if sys.stderr.isatty():
        from rich.progress import track
        yield from track(items, description=title, console=_err_console())
        return
    from .output import Heartbeat
    with Heartbeat(title, total=len(items)) as hb:
        for item in items:
            yield item
            hb.advance()


def bench_latency(sizes, repeats: int, presets=("dgx-h100",)) -> list[dict]:
    """Median/p99 of ``place()`` per (cluster size, gang, placer) on a 60 %-full synthetic cluster."""

    from gangplace.engine import place
    from gangplace.engine.model.types import GangRequest, PodSet
    from gangplace.engine.model.synthetic import generate
    rows = []
    gangs = {"8x8 GPUs": GangRequest("g8", (PodSet("w", 8, gpus=8),)),
             "64x8 GPUs": GangRequest("g64", (PodSet("w", 64, gpus=8),))}
    jobs = [(p, n) for p in presets for n in sizes]
    for preset, gpus in _progress(jobs, "latency vs cluster size"):
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


CELL_FIELDS = ("trace", "preset", "gpus", "fill", "load", "scheduler", "seed")


def _cell(spec: dict) -> tuple:
    return tuple(spec[f] for f in CELL_FIELDS)


def _cell_name(cell: tuple) -> str:
    trace, preset, gpus, fill, load, sched, seed = cell
    return f"`{trace}` {preset} {gpus} GPUs, fill {fill}, load {load}, {sched}, seed {seed}"


VERDICT_METRICS = (("mean_queue_delay_s", "mean wait", min), ("p99_queue_delay_s", "p99 wait", min),
                   ("mean_jct_s", "mean JCT", min))


def verdict(results: list[dict], ours: str = OURS, tol: float = VERDICT_TOLERANCE) -> str:
    """Per metric: in how many cells ``ours`` wins or is within ``tol`` of every baseline, and where a
    baseline beats it by more than ``tol`` (by how much, and which); then its optimal-locality share."""
    cells = {k: v for k, v in by_cell(results).items() if ours in v and len(v) > 1}
    if not cells:
        return f"No cell ran `{ours}` next to a baseline.\n"
    lines = []
    for key, label, pick in VERDICT_METRICS:
        lost = []
        for cell, runs in cells.items():
            best_p, best = _best_baseline(runs, key, pick)
            if best_p is None:
                continue
            ratio = _ratio(runs[ours][key], best)  # inf when the baseline is at 0 and ours is not
            if ratio > 1 + tol:
                lost.append(f"{_cell_name(cell)}: {best_p} by {(ratio - 1) * 100:.1f} %")
        n = len(cells)
        line = f"- **{label}**: `{ours}` wins or is within {tol:.0%} of every baseline in {n - len(lost)} of {n} cells"
        lines.append(line + (". Beaten in: " + "; ".join(lost) + "." if lost else "."))
    loc = [runs[ours]["optimal_locality_fraction"] for runs in cells.values()]
    lines.append(f"- **optimal locality** of `{ours}`: {min(loc):.1%} (worst cell) to {max(loc):.1%}.")
    return "\n".join(lines) + "\n"


def winners(results: list[dict]) -> str:
    """One line per cell (trace, cluster, background, load, scheduler, seed): the best policy on each
    headline metric."""
    metrics = (("mean_queue_delay_s", "lowest mean queueing delay", min),
               ("p99_queue_delay_s", "lowest p99 queueing delay", min),
               ("mean_jct_s", "lowest mean JCT", min),
               ("utilization_window", "highest utilization (arrival window)", max),
               ("optimal_locality_fraction", "most gangs at optimal locality", max),
               ("stranded_free_fraction_mean", "least stranded free capacity", min))
    lines = []
    for cell, by_policy in by_cell(results).items():
        runs = list(by_policy.values())
        parts = []
        for key, label, pick in metrics:
            best = pick(runs, key=lambda s: s[key])
            tied = [s["policy"] for s in runs if abs(s[key] - best[key]) <= 1e-9 * max(1.0, abs(best[key]))]
            parts.append(f"{label}: {', '.join(tied)}")
        lines.append(f"- {_cell_name(cell)}: " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


def by_cell(results: list[dict]) -> dict[tuple, dict[str, dict]]:
    """Run results grouped per cell (``_cell``): {cell: {policy: summary}}, in run order."""
    groups: dict[tuple, dict[str, dict]] = {}
    for r in results:
        groups.setdefault(_cell(r["spec"]), {})[r["summary"]["policy"]] = r["summary"]
    return groups


def _best_baseline(runs: dict[str, dict], key: str, pick=min) -> tuple[str | None, float]:
    """The best policy on ``key`` among the baselines (every policy not named ``gangplace*``)."""
    others = {p: s[key] for p, s in runs.items() if not p.startswith("gangplace")}
    if not others:
        return None, math.nan
    best_p = pick(others, key=others.get)
    return best_p, others[best_p]


def _ratio(mine: float, best: float) -> float:
    """ours / best baseline; 1.0 when both are (almost) zero, as the verdict treats a tie; a baseline beats
    ours when this is above 1 + the tolerance."""
    if abs(mine - best) <= 1e-9:
        return 1.0
    return mine / best if best > 0 else math.inf


def replica_factors(k: int, band: float = REPLICA_BAND) -> tuple[float, ...]:
    """K load multipliers evenly spread over [1 - band, 1 + band]; exactly 1.0 in the middle when K is odd
    (that replica is the nominal run itself). K = 1 is the nominal load alone."""
    from gangplace.engine.model.errors import InvalidRequest
    if k < 1:
        raise InvalidRequest(f"must be >= 1, got {k}", field="--replicas")
    if not 0 < band < 0.5:
        raise InvalidRequest(f"must be in (0, 0.5), got {band}", field="--replica-band")
    if k == 1:
        return (1.0,)
    return tuple(1.0 + band * (2 * i - (k - 1)) / (k - 1) for i in range(k))


def geometric_mean(xs: list[float]) -> float:
    if any(x == 0 for x in xs):
        return 0.0
    if any(math.isinf(x) for x in xs):
        return math.inf
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def by_replica(rows: list[tuple[tuple, int, dict]]) -> dict[tuple, dict[int, dict[str, dict]]]:
    """``rows`` (nominal cell, replica index, run result) as {cell: {replica: {policy: summary}}}."""
    groups: dict[tuple, dict[int, dict[str, dict]]] = {}
    for cell, i, r in rows:
        groups.setdefault(cell, {}).setdefault(i, {})[r["summary"]["policy"]] = r["summary"]
    return groups


def replica_ratios(rows: list[tuple[tuple, int, dict]], ours: str = OURS, twin: str = TWIN) -> dict[tuple, dict]:
    """``rows``: (nominal cell, replica index, run result). Per nominal cell and verdict metric: ours over
    the best baseline *of that replica* for every replica (in replica order), which baseline that was,
    their geometric mean, min, max and the number of replicas where ours is ahead or tied (ratio <= 1);
    and when ``twin`` ran, ``twin``: ours over it per replica. Replicas where ours or every baseline is
    missing are left out."""
    out: dict[tuple, dict] = {}
    for cell, reps in by_replica(rows).items():
        metrics = {}
        for key, _, pick in VERDICT_METRICS:
            ratios, best = [], []
            for i in sorted(reps):
                runs = reps[i]
                best_p, value = _best_baseline(runs, key, pick)
                if ours not in runs or best_p is None:
                    continue
                ratios.append(_ratio(runs[ours][key], value))
                best.append(best_p)
            if ratios:
                metrics[key] = {"ratios": ratios, "best": best, "geomean": geometric_mean(ratios),
                                "min": min(ratios), "max": max(ratios), "ahead": sum(x <= 1.0 for x in ratios)}
                pair = [_ratio(r[ours][key], r[twin][key]) for r in (reps[i] for i in sorted(reps))
                        if ours in r and twin in r]
                if pair:  # ours over its tie-twin per replica: the noise floor (bench_tradeoff "tie noise")
                    metrics[key]["twin"] = pair
        if metrics:
            out[cell] = metrics
    return out


def _nominal_ratios(results: list[dict], ours: str = OURS) -> dict[tuple, dict[str, float]]:
    out: dict[tuple, dict[str, float]] = {}
    for cell, runs in by_cell(results).items():
        for key, _, pick in VERDICT_METRICS:
            best_p, value = _best_baseline(runs, key, pick)
            if ours in runs and best_p is not None:
                out.setdefault(cell, {})[key] = _ratio(runs[ours][key], value)
    return out


def replicated_verdict(results: list[dict], table: dict[tuple, dict], factors: tuple[float, ...],
                       ours: str = OURS, tol: float = VERDICT_TOLERANCE) -> str:
    """The verdict both ways (the nominal run alone; the geometric mean over the replicas) and a table per
    cell: nominal ratio, geometric mean [min-max] and replicas ahead, per verdict metric."""
    nominal = _nominal_ratios(results, ours)
    k = len(factors)
    lines = [f"Each cell also ran at {k} offered loads, nominal x {', '.join(f'{f:.3f}' for f in factors)}, "
             f"every policy on the same {k} traces. Ratio = `{ours}` / the best baseline of the same run "
             f"(taken per replica); replicated = geometric mean of the {k} ratios [min-max], and the replicas "
             f"in which `{ours}` is ahead or tied.\n"]
    fmt = "{:.3f}".format  # inf prints as "inf"
    for key, label, _ in VERDICT_METRICS:
        cells = [c for c in table if key in table[c]]
        lost_nom = [c for c in cells if nominal.get(c, {}).get(key, 1.0) > 1 + tol]
        lost_rep = [c for c in cells if table[c][key]["geomean"] > 1 + tol]
        line = (f"- **{label}**: within {tol:.0%} of every baseline or ahead in {len(cells) - len(lost_nom)} of "
                f"{len(cells)} cells on the nominal run, in {len(cells) - len(lost_rep)} of {len(cells)} on the "
                f"geometric mean over {k} replicas")
        lines.append(line + (". Beaten (replicated) in: " + "; ".join(
            f"{_cell_name(c)}: {fmt(table[c][key]['geomean'])} [{fmt(table[c][key]['min'])}-"
            f"{fmt(table[c][key]['max'])}], ahead in {table[c][key]['ahead']} of {len(table[c][key]['ratios'])}"
            for c in lost_rep) + "." if lost_rep else "."))
    head = "| cell |" + "".join(f" {label}: nominal | replicated [min-max] | ahead |" for _, label, _ in VERDICT_METRICS)
    lines += ["", head, "|---|" + "---:|---:|---:|" * len(VERDICT_METRICS)]
    for c, m in table.items():
        row = f"| {_cell_name(c)} |"
        for key, _, _ in VERDICT_METRICS:
            if key not in m:
                row += " - | - | - |"
                continue
            nom = nominal.get(c, {}).get(key)
            bold = lambda x, s: f"**{s}**" if x > 1 + tol else s  # noqa: E731
            row += (f" {bold(nom, fmt(nom)) if nom is not None else '-'} | {bold(m[key]['geomean'], fmt(m[key]['geomean']))}"
                    f" [{fmt(m[key]['min'])}-{fmt(m[key]['max'])}] | {m[key]['ahead']}/{len(m[key]['ratios'])} |")
        lines.append(row)
    return "\n".join(lines) + "\n"

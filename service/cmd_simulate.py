"""``gangplace simulate``: replay job traces through placement policies (engine/sim/simulator.py).

One run per (trace, cluster size, seed, policy); several values per axis make a grid, run on a
process pool (``--workers``) or a Ray cluster (``--ray``). JSON output: ``{"policies": {name:
metrics}, "runs": [...], "config": {...}}``; with a grid, ``policies`` holds each metric's mean over
the policy's runs and ``runs`` every run's metrics. ``--report DIR`` also writes report.md, JSON,
Parquet and PNG plots (service/report.py).
"""
from __future__ import annotations

import argparse
import re
import sys

from gangplace.engine.model.errors import InvalidRequest

from .output import fmt_duration as fmt_s

DEFAULT_MAX_JOBS = 5000
DEFAULT_LOAD = 0.8  # GPU demand inside the window / cluster GPUs: busy but not saturated
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, field: str) -> float:
    """``"42d"``, ``"3h"``, ``"90m"``, ``"120"`` (seconds) -> seconds."""
    m = _DURATION.match(text or "")
    if not m:
        raise InvalidRequest(f"expected a duration like 3600, 90m, 6h or 42d, got {text!r}", field=field)
    return float(m.group(1)) * _UNIT[m.group(2)]


def _int_list(text: str, field: str) -> list[int]:
    try:
        return [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise InvalidRequest(f"expected comma-separated integers, got {text!r}", field=field) from None


def add_common(p: argparse.ArgumentParser, policies: tuple[str, ...] | None = None) -> None:
    """Simulation flags shared by ``simulate`` and ``bench``; ``policies``: the default list (else POLICIES)."""
    from gangplace.engine.sim.baselines import POLICIES
    p.add_argument("--policies", metavar="NAMES",
                   help=f"comma-separated policies (default: {', '.join(policies or POLICIES)})")
    p.add_argument("--workers", type=int, default=1, help="parallel runs on this machine (process pool)")
    p.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster ('local' starts one; needs gangplace[ray])")
    p.add_argument("--time-limit-ms", type=float, default=50.0, help="CP-SAT cap per decision for gangplace-auto")
    p.add_argument("--scheduler", choices=("easy", "fifo"), default="easy",
                   help="queue discipline: EASY backfill (default) or strict FIFO")
    p.add_argument("--reservation-hold", choices=("gpus", "nodes"), default="gpus",
                   help="what EASY backfill holds for the head on its reserved nodes: the GPUs and pod slots "
                        "it needs there (gpus, default) or every free GPU of those nodes (nodes)")
    p.add_argument("--slowdown", default=None,
                   help="run-time slowdown per level crossed, bottom up (default 0,0.05,0.15,0.3; '0' = none)")


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="replay a job trace through placement policies",
                       description="Replay a job trace (CSV: job_id,submit_s,num_gpus,duration_s[,num_nodes]) on a "
                                   "cluster through placement policies and compare queueing, completion time, "
                                   "utilization and locality. Comma-separated --trace/--gpus/--seeds make a grid.")
    p.add_argument("--trace", default="helios",
                   help="trace file(s) or bundled name(s): philly, helios, or the generated large-gang[:seed=S][:jobs=N] "
                        "(default seed 1, 1500 jobs; docs/simulation.md) (comma-separated for a grid)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--cluster", help="cluster file (.yaml, .json, .parquet, .arrow)")
    src.add_argument("--synthetic", metavar="PRESET", help="synthetic preset (default dgx-h100)")
    p.add_argument("--gpus", default="2048", help="synthetic cluster size(s), comma-separated for a grid")
    p.add_argument("--fill", type=float, default=0.0, help="background load that stays for the whole run")
    p.add_argument("--seeds", "--seed", dest="seeds", default="1", help="seed(s) for the cluster and the policies")
    p.add_argument("--max-jobs", type=int, default=DEFAULT_MAX_JOBS,
                   help=f"first N jobs of the window (default {DEFAULT_MAX_JOBS}; 0 = all)")
    p.add_argument("--start", default="0", help="window start in trace time (e.g. 42d)")
    p.add_argument("--end", default=None, help="window end in trace time")
    p.add_argument("--load", type=float, default=DEFAULT_LOAD,
                   help="GPU demand within the window as a fraction of the cluster's GPUs, reached by "
                        f"compressing inter-arrival times (default {DEFAULT_LOAD}; 0 = the trace's own arrival times)")
    add_common(p)
    p.add_argument("--output", choices=("json", "table"), default="table")
    p.add_argument("--report", metavar="DIR", help="also write a report folder (report.md, JSON, Parquet, PNGs)")
    p.set_defaults(func=run)


def specs_from_args(args) -> list:
    from gangplace.engine.sim.locality import DEFAULT_SLOWDOWN, parse_slowdown
    from gangplace.engine.sim.baselines import parse_policies
    from gangplace.engine.sim.sweep import RunSpec, grid
    from gangplace.engine.model.synthetic import PRESETS
    preset = args.synthetic or "dgx-h100"
    if preset not in PRESETS:
        raise InvalidRequest(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}", field="--synthetic")
    if args.max_jobs < 0:
        raise InvalidRequest(f"must be >= 0, got {args.max_jobs}", field="--max-jobs")
    if args.load < 0:
        raise InvalidRequest(f"must be >= 0, got {args.load}", field="--load")
    if not 0 <= args.fill < 1:
        raise InvalidRequest(f"must be in [0, 1), got {args.fill}", field="--fill")
    if args.time_limit_ms <= 0:
        raise InvalidRequest(f"must be > 0, got {args.time_limit_ms}", field="--time-limit-ms")
    base = RunSpec(preset=preset, fill=args.fill, cluster_file=args.cluster,
                   max_jobs=args.max_jobs or None, start_s=parse_duration(args.start, "--start"),
                   end_s=parse_duration(args.end, "--end") if args.end else None, load=args.load or None,
                   time_limit_ms=args.time_limit_ms, scheduler=args.scheduler,
                   reservation_hold=args.reservation_hold,
                   slowdown=parse_slowdown(args.slowdown) if args.slowdown else DEFAULT_SLOWDOWN)
    traces = [t.strip() for t in args.trace.split(",") if t.strip()]
    from gangplace.engine.sim.traces import check_trace
    for t in traces:
        check_trace(t)  # fail early, naming the trace
    gpus = [] if args.cluster else _int_list(args.gpus, "--gpus")
    return grid(base, policies=parse_policies(args.policies), traces=traces, gpus=gpus,
                seeds=_int_list(args.seeds, "--seeds"))


def run_specs(specs, args, title: str = "simulating") -> list[dict]:
    """Run the grid with a progress bar on stderr (stdout stays clean for JSON)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from gangplace.engine.sim.sweep import run_grid
    if args.workers < 1:
        raise InvalidRequest(f"must be >= 1, got {args.workers}", field="--workers")
    if not sys.stderr.isatty():  # CI logs and pipes: a plain line at least every 10 s instead of the bar
        from .output import Heartbeat
        with Heartbeat(title, total=len(specs)) as hb:
            return run_grid(specs, workers=args.workers, ray_address=args.ray,
                            on_done=lambda r: hb.advance(last=r["summary"]["label"]))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[last]}"), console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(title, total=len(specs), last="")

        def on_done(r):
            bar.update(task, advance=1, last=r["summary"]["label"])
        return run_grid(specs, workers=args.workers, ray_address=args.ray, on_done=on_done)


def aggregate(results: list[dict]) -> dict:
    """Per policy: each numeric top-level metric averaged over the policy's runs (the run's own
    values when there is one run per policy)."""
    out: dict[str, dict] = {}
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["summary"]["policy"], []).append(r["summary"])
    for name, runs in by.items():
        first = runs[0]
        agg = {}
        for k, v in first.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals = [s[k] for s in runs]
                agg[k] = sum(vals) / len(vals) if isinstance(v, float) else (
                    sum(vals) // len(vals) if len(runs) > 1 else v)
            elif len(runs) == 1:
                agg[k] = v
        agg["runs"] = len(runs)
        out[name] = agg
    return out


def run(args: argparse.Namespace) -> int:
    from .output import print_json
    from .report import machine_info
    specs = specs_from_args(args)
    machine = machine_info()
    results = run_specs(specs, args)
    command = "gangplace " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("gangplace") else None
    from gangplace.engine.sim.summary import window_warnings
    first_of_window = {r["summary"]["label"].rsplit("/", 1)[0]: r for r in reversed(results)}  # one run per window
    warnings = [w for r in first_of_window.values() for w in window_warnings(r["summary"], r["spec"])]
    for w in warnings:
        print(f"gangplace: warning: {w}", file=sys.stderr)
    doc = {"policies": aggregate(results), "runs": [dict(r["summary"], spec=r["spec"]) for r in results],
           "config": {"command": command}, "warnings": warnings}
    if args.report:
        from .report import write_report
        write_report(args.report, results, title="gangplace simulate", command=command, machine=machine)
    if args.output == "json":
        print_json(doc)
    else:
        print_table(doc["policies"])
    return 0


def print_table(policies: dict) -> None:
    """One row per policy; every share with its denominator ("97.1% of 1,240")."""
    from rich.table import Table

    from .output import console
    t = Table("policy", "done", "rejected", "mean wait", "p99 wait", "mean JCT", "util (window)", "util (makespan)",
              "optimal locality", "stranded free", "latency p50", title="simulation (mean over runs when a grid)")
    for name, s in policies.items():
        t.add_row(name, f"{s['jobs_completed']:,} of {s['jobs_submitted']:,}", f"{s['jobs_rejected']:,}",
                  fmt_s(s["mean_queue_delay_s"]), fmt_s(s["p99_queue_delay_s"]), fmt_s(s["mean_jct_s"]),
                  f"{s['utilization_window']:.1%}", f"{s['utilization']:.1%}",
                  f"{s['optimal_locality_fraction']:.1%} of {s['multi_pod_gangs']:,} gangs",
                  f"{s['stranded_free_fraction_mean']:.1%}", f"{s['placement_latency_ms_p50']:.3f} ms")
    con = console()
    if not sys.stdout.isatty():
        con.width = max(con.width, 170)
    con.print(t)

"""``gangplace bench --holdout``: the workloads set aside before tuning (issue 9), reported on their own.

The cells are docs/simulation.md's "Holdout (not tuned on)": Helios days 12-21 (all jobs) and Philly
days 60-75 (first 8,000 jobs) on dgx-h100 2,048 GPUs at load 0.8, and the generated large-gang
workload (engine/sim/synthetic_trace.py) with seeds 2, 4 and 6, 1,500 jobs each, on dgx-h100 1,024
GPUs at load 0.95; EASY backfill, no background load, seed 1 for the cluster and the policies, the
CP-SAT cap of ``gangplace simulate`` (50 ms) unless ``--time-limit-ms`` is given, the policies of the
quality section (``--policies``). Its runs never enter the main grid's verdict, tables or
results.json ``runs``: the section is appended at the end of the report, with its own verdict
(``cmd_bench.verdict``), its head-to-head (service/bench_headtohead.py) and one table per headline
metric, and its runs go to results.json ``holdout``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

from .output import fmt_duration

DAY_S = 86400
HOLDOUT_TIME_LIMIT_MS = 50.0  # gangplace simulate's default: the docs' holdout tables were measured with it


@dataclass(frozen=True)
class HoldoutCell:
    label: str  # how the tables name the cell
    trace: str
    gpus: int
    load: float
    start_s: float = 0.0
    end_s: float | None = None
    max_jobs: int | None = None  # None: every job of the window


def _large(seed: int, jobs: int = 1500) -> HoldoutCell:
    from gangplace.engine.sim.synthetic_trace import trace_name
    return HoldoutCell(f"large-gang seed {seed}, {jobs:,} jobs, 1,024 GPUs, load 0.95", trace_name(seed, jobs),
                       gpus=1024, load=0.95)


# module-level so a test can shrink it (monkeypatch); not a user flag
HOLDOUT_CELLS: tuple[HoldoutCell, ...] = (
    HoldoutCell("helios, days 12-21, 2,048 GPUs, load 0.8", "helios", gpus=2048, load=0.8,
                start_s=12 * DAY_S, end_s=21 * DAY_S),
    HoldoutCell("philly, days 60-75, first 8,000 jobs, 2,048 GPUs, load 0.8", "philly", gpus=2048, load=0.8,
                start_s=60 * DAY_S, end_s=75 * DAY_S, max_jobs=8000),
    _large(2), _large(4), _large(6),
)
TABLE_METRICS = (("mean_queue_delay_s", "Mean wait", min), ("p99_queue_delay_s", "p99 wait", min),
                 ("mean_jct_s", "Mean JCT", min), ("optimal_locality_fraction", "Optimal locality", None))


def holdout_specs(args, cells=None) -> list:
    """One RunSpec per (cell, policy), in cell order."""
    from gangplace.engine.sim.baselines import parse_policies
    from gangplace.engine.sim.locality import DEFAULT_SLOWDOWN, parse_slowdown
    from gangplace.engine.sim.sweep import RunSpec, grid
    base = RunSpec(preset="dgx-h100", fill=0.0, seed=1, scheduler="easy", reservation_hold=args.reservation_hold,
                   time_limit_ms=args.time_limit_ms or HOLDOUT_TIME_LIMIT_MS,
                   slowdown=parse_slowdown(args.slowdown) if args.slowdown else DEFAULT_SLOWDOWN)
    specs = []
    for c in HOLDOUT_CELLS if cells is None else cells:
        cell = replace(base, trace=c.trace, gpus=c.gpus, load=c.load, start_s=c.start_s, end_s=c.end_s,
                       max_jobs=c.max_jobs)
        specs += grid(cell, policies=parse_policies(args.policies))
    return specs


def holdout_section(args, extra_json: dict, cells=None) -> tuple[str, str]:
    """Run the holdout cells; returns the report section (name, markdown) and stores the runs in
    ``extra_json["holdout"]``."""
    from .cmd_bench import verdict
    from .cmd_simulate import run_specs
    cells = HOLDOUT_CELLS if cells is None else cells
    specs = holdout_specs(args, cells)
    t0 = time.perf_counter()
    results = run_specs(specs, args, title="holdout: simulating")
    wall = time.perf_counter() - t0
    labels = {(c.trace, c.start_s, c.end_s): c.label for c in cells}
    extra_json["holdout"] = {"cells": [asdict(c) for c in cells], "wall_s": wall,
                             "runs": [dict(r["summary"], spec=r["spec"]) for r in results]}
    spec0 = specs[0] if specs else None
    body = [
        "Workloads set aside before the objective was tuned (issue 9; docs/simulation.md, \"Holdout (not "
        "tuned on)\"), reported on their own: none of these runs is part of the verdict or the tables above. "
        "Cells: " + "; ".join(c.label for c in cells) + ". dgx-h100, no background load, EASY backfill, seed 1"
        + (f", CP-SAT cap {spec0.time_limit_ms} ms, reservation hold {spec0.reservation_hold}" if spec0 else "")
        + f"; {len(results)} runs in {wall:.0f} s.\n",
        "Verdict on the holdout cells alone (a cell is named by its trace; the windows are the ones above):\n",
        verdict(results),
    ]
    from .bench_headtohead import head_to_head_section
    h2h, extra_json["holdout"]["head_to_head"] = head_to_head_section(
        [((r["spec"]["trace"], r["spec"]["start_s"], r["spec"]["end_s"]), 0, r) for r in results])
    body.append("Head to head on the holdout cells alone (as for the grid above):\n\n" + h2h)
    for key, title, pick in TABLE_METRICS:
        body.append(f"{title}:\n\n" + metric_table(results, labels, key, pick))
    from .bench_tradeoff import TITLE, tradeoff_section
    lost, extra_json["holdout"]["lost_cells"] = tradeoff_section(results)
    body.append(f"**{TITLE}** (the holdout cells, as for the grid above):\n\n" + lost)
    return "Holdout (not tuned on)", "\n".join(body)


def metric_table(results: list[dict], labels: dict, key: str, pick) -> str:
    """One row per cell, one column per policy (in run order) and, when ``pick`` is given, gangplace-auto
    over the best baseline on ``key`` (which one in brackets)."""
    from .cmd_bench import OURS, _best_baseline, _ratio
    rows: dict[str, dict[str, dict]] = {}
    policies: list[str] = []
    for r in results:
        s = r["spec"]
        label = labels.get((s["trace"], s["start_s"], s["end_s"]), s["trace"])
        rows.setdefault(label, {})[r["summary"]["policy"]] = r["summary"]
        if r["summary"]["policy"] not in policies:
            policies.append(r["summary"]["policy"])
    last = f"{OURS} / best baseline" if pick else None
    head = "| cell | " + " | ".join(policies) + (f" | {last} |" if last else " |")
    lines = [head, "|---|" + "---:|" * (len(policies) + bool(last))]
    for label, runs in rows.items():
        cells = [_fmt(key, runs[p][key]) if p in runs else "-" for p in policies]
        if last:
            best_p, best = _best_baseline(runs, key, pick)
            cells.append(f"{_ratio(runs[OURS][key], best):.3f} ({best_p})" if OURS in runs and best_p else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(key: str, value: float) -> str:
    return f"{value:.1%}" if key.endswith("fraction") else fmt_duration(value, digits=2)

"""A wider held-out set than ``gangplace bench --holdout``: every cell was left out of the tuning (issue 9).

Cells (dgx-h100, no background load, seed 1, CP-SAT cap 50 ms): the generated large-gang workload
(engine/sim/synthetic_trace.py, 1,500 jobs, 1,024 GPUs, load 0.95) with seeds 2-20 under EASY and seeds
2-8 under FIFO; Philly days 60-75, 76-90 and 91-105 (first 8,000 jobs each) and Helios days 12-21, on
2,048 GPUs at load 0.8, each under EASY and FIFO. 22 cells.

Usage: fleet_wide_holdout.py OUT.json [--policies a,b,...] [--workers N] [--saved]
Prints, per cell and gangplace policy, its ratio to the best baseline on mean wait / p99 wait / mean JCT
and its optimal-locality fraction; then per policy the cells lost by more than 1 % and the geometric
mean of the ratios; then the bench's head-to-head section for gangplace-auto (service/bench_headtohead.py).
OUT.json keeps every run's summary; ``--saved`` prints the report of an OUT.json without running.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

from gangplace.engine.sim import sweep
from gangplace.engine.sim.synthetic_trace import trace_name

DAY = 86400
BASELINES = ("k8s-default", "most-allocated", "kueue-tas", "kai-binpack", "random")
METRICS = (("mean_queue_delay_s", "mean wait"), ("p99_queue_delay_s", "p99 wait"), ("mean_jct_s", "mean JCT"))


def cells() -> list[tuple[str, dict]]:
    out = [(f"large-gang seed {s} easy", dict(trace=trace_name(s, 1500), gpus=1024, load=0.95, scheduler="easy"))
           for s in range(2, 21, 2)]
    out += [(f"large-gang seed {s} fifo", dict(trace=trace_name(s, 1500), gpus=1024, load=0.95, scheduler="fifo"))
            for s in (2, 4, 6, 8)]
    for a, b in ((60, 75), (76, 90), (91, 105)):
        out += [(f"philly days {a}-{b} {sched}", dict(trace="philly", gpus=2048, load=0.8, start_s=a * DAY, end_s=b * DAY,
                                                      max_jobs=8000, scheduler=sched)) for sched in ("easy", "fifo")]
    out += [(f"helios days 12-21 {sched}", dict(trace="helios", gpus=2048, load=0.8, start_s=12 * DAY, end_s=21 * DAY,
                                                max_jobs=None, scheduler=sched)) for sched in ("easy", "fifo")]
    return out


def report(rows: list[dict], mine: list[str]) -> None:
    from gangplace.service.cmd_bench import VERDICT_TOLERANCE, _best_baseline, _ratio, geometric_mean
    by: dict[str, dict] = {}
    for r in rows:
        by.setdefault(r["cell"], {})[r["spec"]["policy"]] = r["summary"]
    print(f"{'cell':30}", *(f"{p:>34}" for p in mine))
    ratios: dict[tuple[str, str], list[float]] = {(p, m): [] for p in mine for m, _ in METRICS}
    for cell, d in by.items():
        out = []
        for p in mine:
            parts = []
            for m, _ in METRICS:
                r = _ratio(d[p][m], _best_baseline(d, m)[1])
                ratios[(p, m)].append(r)
                parts.append(f"{r:.3f}")
            parts.append(f"{d[p]['optimal_locality_fraction']:.3f}")
            out.append(" / ".join(parts))
        print(f"{cell:30}", *(f"{o:>34}" for o in out))
    for p in mine:
        print(p + ":", "; ".join(f"{name} lost in {sum(r > 1 + VERDICT_TOLERANCE for r in ratios[(p, m)])} of {len(by)}, "
                                 f"geometric mean {geometric_mean(ratios[(p, m)]):.4f}" for m, name in METRICS))
    if "gangplace-auto" in mine:  # the bench's head-to-head: gangplace-auto against each other policy alone
        from gangplace.service.bench_headtohead import head_to_head_section
        print("\n" + head_to_head_section([(r["cell"], 0, r) for r in rows])[0], end="")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--policies", default="gangplace-auto,gangplace-auto-bottomup")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--saved", action="store_true", help="report on OUT.json as saved by an earlier run, run nothing")
    a = ap.parse_args()
    mine = a.policies.split(",")
    if a.saved:
        with open(a.out) as f:
            report(json.load(f), mine)
        return
    base = sweep.RunSpec(preset="dgx-h100", fill=0.0, seed=1, time_limit_ms=50.0)
    specs, names = [], []
    for name, kw in cells():
        for p in (*mine, *BASELINES):
            specs.append(replace(base, policy=p, **kw))
            names.append(name)
    done = [0]

    def tick(_r):
        done[0] += 1
        if done[0] % 20 == 0 or done[0] == len(specs):
            print(f"{done[0]} / {len(specs)} runs", flush=True)

    res = sweep.run_grid(specs, workers=a.workers, on_done=tick)
    rows = [{"cell": n, "spec": r["spec"], "summary": r["summary"]} for n, r in zip(names, res)]
    with open(a.out, "w") as f:
        json.dump(rows, f)
    report(rows, mine)


if __name__ == "__main__":
    main()

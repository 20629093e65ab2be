"""The verdict's noise floor: gangplace-auto against its own tie-twin (issue 9). Not a pytest-benchmark
file: run it directly (docs/simulation.md, "The verdict's noise floor: gangplace-auto against its twin").

    .venv/bin/python benchmarks/fleet_twin.py run BENCH_DIR/results.json --out twin.jsonl --workers 2
    .venv/bin/python benchmarks/fleet_twin.py table BENCH_DIR/results.json twin.jsonl

``gangplace-twin`` (engine/sim/baselines.py ``GangplaceTwin``) places every gang exactly by the
placement objective, as gangplace-auto does; only *exact ties* among single-pod placements go the other
way (the last node in topology order among those the objective ranks equal, where the engine takes the
first). ``--control`` runs ``gangplace-control``, the same order written out with the engine's tie: it
must reproduce gangplace-auto's runs exactly, which checks that the order is the engine's.

``run`` replays every gangplace-auto run of a ``gangplace bench`` results.json (nominal and
``--replicas`` runs, the same specs) with the twin; ``table`` compares, per cell and verdict metric,
gangplace-auto with the twin (geometric mean over the replicas, as the replicated verdict) and both with
the best baseline, as the verdict judges gangplace-auto; ``report`` writes the bench's "Lost cells"
section again with the twin's runs added, so that its "tie noise" label can fire (the same as a bench
run with ``--policies ...,gangplace-twin``, without running the baselines again).
"""
from __future__ import annotations

import argparse
import json
import math
from concurrent.futures import ProcessPoolExecutor

from dataclasses import asdict

from gangplace.engine.sim.sweep import RunSpec, run_one
from gangplace.service.cmd_bench import _ratio, geometric_mean

METRICS = {"mean wait": "mean_queue_delay_s", "p99 wait": "p99_queue_delay_s", "mean JCT": "mean_jct_s"}
BASELINES = ("k8s-default", "most-allocated", "kueue-tas", "kai-binpack", "random")
OURS = "gangplace-auto"


def _run(args: tuple[dict, bool]) -> dict:
    spec_d, last = args
    name = "gangplace-twin" if last else "gangplace-control"
    spec = RunSpec(**dict(spec_d, policy=name, slowdown=tuple(spec_d["slowdown"])))
    s = run_one(spec)["summary"]
    return dict({k: s[k] for k in (*METRICS.values(), "idle_gpu_s_while_queued", "queued_s")}, policy=name,
                spec=asdict(spec))


def _cell(spec: dict) -> tuple:
    return (spec["trace"], spec["preset"], spec["gpus"], spec["fill"], spec["scheduler"])


def _bench_runs(path: str) -> tuple[dict, tuple[float, ...]]:
    """{(cell, nominal load, factor): {policy: summary}} and the replica factors of a bench results.json."""
    d = json.load(open(path))
    factors = tuple(d.get("replicated", {}).get("factors", (1.0,)))
    out: dict = {}
    for r in d["runs"] + d.get("replica_runs", []):
        load = round(r["spec"]["load"], 6)
        nominal, f = next((L, f) for L in (0.7, 0.95) for f in factors if abs(round(L * f, 6) - load) < 1e-9)
        out.setdefault((_cell(r["spec"]), nominal, f), {})[r["policy"]] = r
    return out, factors


def cmd_run(a) -> int:
    runs, _ = _bench_runs(a.results)
    specs = [v[OURS]["spec"] for v in runs.values() if OURS in v]
    with open(a.out, "a") as fh, ProcessPoolExecutor(a.workers) as ex:
        for k, row in enumerate(ex.map(_run, [(s, not a.control) for s in specs]), 1):
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(f"{k}/{len(specs)} {row['spec']['trace']} {row['spec']['preset']} load {row['spec']['load']}", flush=True)
    return 0


def cmd_table(a) -> int:
    runs, factors = _bench_runs(a.results)
    for line in open(a.twin):
        row = json.loads(line)
        load = round(row["spec"]["load"], 6)
        key = next(k for k in runs if k[0] == _cell(row["spec"]) and abs(round(k[1] * k[2], 6) - load) < 1e-9)
        runs[key][row["spec"]["policy"]] = row
    twin = next(p for v in runs.values() for p in v if p in ("gangplace-twin", "gangplace-control"))
    cells = sorted({(k[0], k[1]) for k in runs})
    print(f"{len(cells)} cells x {len(factors)} replicas; {twin} against {OURS} and the best of {', '.join(BASELINES)}")
    print("| metric | cells: twin ahead of gangplace-auto by > 1 % | gangplace-auto ahead of the twin by > 1 % | "
          "single runs apart by > 1 % | median run-to-run gap | largest gap | cells lost to the best baseline: "
          "gangplace-auto | the twin |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, key in METRICS.items():
        pair, lost_ours, lost_twin, single = [], 0, 0, []
        for cell in cells:
            reps = [runs[(cell[0], cell[1], f)] for f in factors]
            rs = [_ratio(v[OURS][key], v[twin][key]) for v in reps]
            single += rs
            pair.append(geometric_mean(rs))
            for name in (OURS, twin):
                g = geometric_mean([_ratio(v[name][key], min(v[b][key] for b in BASELINES)) for v in reps])
                if g > 1.01:
                    lost_ours += name == OURS
                    lost_twin += name == twin
        gaps = sorted(abs(math.log(x)) for x in single if 0 < x < math.inf) or [0.0]  # 0 / inf: one waited 0
        print(f"| {label} | {sum(x > 1.01 for x in pair)} | {sum(x < 1 / 1.01 for x in pair)} | "
              f"{sum(abs(x - 1) > 0.01 for x in single)} of {len(single)} | {math.exp(gaps[len(gaps) // 2]) - 1:.1%} | "
              f"{math.exp(gaps[-1]) - 1:.1%} | {lost_ours} | {lost_twin} |")
    return 0


def cmd_report(a) -> int:
    """The bench's "Lost cells" section of ``results`` with the twin's runs added (nominal and replicas)."""
    from gangplace.service.bench_tradeoff import tradeoff_section
    from gangplace.service.cmd_bench import _cell as bench_cell, replica_ratios
    d = json.load(open(a.results))
    factors = tuple(d.get("replicated", {}).get("factors", (1.0,)))
    twin = [json.loads(line) for line in open(a.twin)]

    def res(r: dict) -> dict:
        return {"spec": r["spec"], "summary": {k: v for k, v in r.items() if k != "spec"}}

    def replica(spec: dict) -> tuple[float, int]:
        load = round(spec["load"], 6)
        return next((L, i) for L in (0.7, 0.95) for i, f in enumerate(factors) if abs(round(L * f, 6) - load) < 1e-9)

    every = [res(r) for r in d["runs"] + d.get("replica_runs", []) + twin]
    mid = factors.index(1.0)
    nominal = [r for r in every if replica(r["spec"])[1] == mid]
    rows = [(bench_cell(dict(r["spec"], load=replica(r["spec"])[0])), replica(r["spec"])[1], r) for r in every]
    md, doc = tradeoff_section(nominal, replica_ratios(rows) if len(factors) > 1 else None)
    with open(a.out, "w") as fh:
        fh.write(md)
    labels: dict[str, int] = {}
    for item in doc:
        for lb in {lb["label"] for lb in item["labels"]}:
            labels[lb] = labels.get(lb, 0) + 1
    print(f"{len(doc)} lost cells; cells per label: {labels}; wrote {a.out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="replay a bench results.json's runs with the twin")
    r.add_argument("results")
    r.add_argument("--out", required=True)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--control", action="store_true", help="the engine's tie instead (must equal gangplace-auto)")
    t = sub.add_parser("table", help="gangplace-auto against the twin, and both against the baselines")
    t.add_argument("results")
    t.add_argument("twin")
    w = sub.add_parser("report", help="the bench's lost-cells section again, with the twin's runs added")
    w.add_argument("results")
    w.add_argument("twin")
    w.add_argument("--out", required=True)
    a = p.parse_args(argv)
    return {"run": cmd_run, "table": cmd_table, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    raise SystemExit(main())

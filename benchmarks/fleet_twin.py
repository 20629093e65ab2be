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
run with ``--policies ...,gangplace-twin``, without running the baselines again); ``h2h`` prints the
bench's "Head to head" section with the twin's row. ``run --policy copy-...`` runs a prototype of
benchmarks/fleet_copy.py in the twin's place on the same specs, written as ``gangplace-copy-...`` (never a
baseline); ``table`` and ``h2h --ours gangplace-copy-...`` then judge it as they judge the twin.
"""
from __future__ import annotations

import argparse
import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict

from gangplace.engine.sim.sweep import RunSpec, run_one
from gangplace.service.bench_headtohead import head_to_head_section
from gangplace.service.bench_tradeoff import tradeoff_section
from gangplace.service.cmd_bench import OURS, TWIN, _cell, geometric_mean, replica_ratios
from fleet_copy import COPIES, Copy  # benchmarks/ is on sys.path when a script runs

METRICS = {"mean wait": "mean_queue_delay_s", "p99 wait": "p99_queue_delay_s", "mean JCT": "mean_jct_s"}
CONTROL = "gangplace-control"


def _run(args: tuple[dict, str]) -> dict:
    spec_d, name = args
    spec = RunSpec(**dict(spec_d, policy=name, slowdown=tuple(spec_d["slowdown"])))
    # a prototype of benchmarks/fleet_copy.py runs on the same spec as a Policy object
    s = run_one(spec, policy=Copy(name, *COPIES[name]) if name in COPIES else None)["summary"]
    # a prototype is written as gangplace-<name>: never a baseline in the tables (cmd_bench._best_baseline)
    label = name if name.startswith("gangplace") else f"gangplace-{name}"
    return dict({k: s[k] for k in (*METRICS.values(), "idle_gpu_s_while_queued", "queued_s")}, policy=label,
                spec=dict(asdict(spec), policy=label))


def _rows(results: str, twin: str | None = None) -> tuple[list[tuple[tuple, int, dict]], tuple[float, ...]]:
    """A bench results.json's runs (and the twin's, from ``twin``) as the bench's replica rows: (nominal
    cell, replica index, {"spec", "summary"}), and the replica factors."""
    d = json.load(open(results))
    factors = tuple(d.get("replicated", {}).get("factors", (1.0,)))
    nominal_loads = {round(r["spec"]["load"], 6) for r in d["runs"]}
    runs = d["runs"] + d.get("replica_runs", []) + ([json.loads(line) for line in open(twin)] if twin else [])
    rows = []
    for r in runs:
        load = round(r["spec"]["load"], 6)
        nominal, i = next((L, i) for L in nominal_loads for i, f in enumerate(factors) if abs(round(L * f, 6) - load) < 1e-9)
        rows.append((_cell(dict(r["spec"], load=nominal)), i, {"spec": r["spec"], "summary": {
            k: v for k, v in r.items() if k != "spec"}}))
    return rows, factors


def cmd_run(a) -> int:
    rows, _ = _rows(a.results)
    specs = [r["spec"] for _, _, r in rows if r["summary"]["policy"] == OURS]
    name = CONTROL if a.control else a.policy
    with open(a.out, "a") as fh, ProcessPoolExecutor(a.workers) as ex:
        for k, row in enumerate(ex.map(_run, [(s, name) for s in specs]), 1):
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(f"{k}/{len(specs)} {row['spec']['trace']} {row['spec']['preset']} load {row['spec']['load']}", flush=True)
    return 0


def cmd_table(a) -> int:
    """Per verdict metric: the bench's replica_ratios for ours (with the twin) and for the twin as ``ours``."""
    rows, factors = _rows(a.results, a.twin)
    twin = _candidate(a.twin)
    ours, theirs = replica_ratios(rows, OURS, twin), replica_ratios(rows, twin)
    print(f"{len(ours)} cells x {len(factors)} replicas; {twin} against {OURS} and the best baseline")
    print("| metric | cells: twin ahead of gangplace-auto by > 1 % | gangplace-auto ahead of the twin by > 1 % | "
          "single runs apart by > 1 % | median run-to-run gap | largest gap | cells lost to the best baseline: "
          "gangplace-auto | the twin |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, key in METRICS.items():
        pair = [geometric_mean(m[key]["twin"]) for m in ours.values()]
        single = [x for m in ours.values() for x in m[key]["twin"]]
        gaps = sorted(abs(math.log(x)) for x in single if 0 < x < math.inf) or [0.0]  # 0 / inf: one waited 0
        lost = [sum(m[key]["geomean"] > 1.01 for m in t.values()) for t in (ours, theirs)]
        print(f"| {label} | {sum(x > 1.01 for x in pair)} | {sum(x < 1 / 1.01 for x in pair)} | "
              f"{sum(abs(x - 1) > 0.01 for x in single)} of {len(single)} | {math.exp(gaps[len(gaps) // 2]) - 1:.1%} | "
              f"{math.exp(gaps[-1]) - 1:.1%} | {lost[0]} | {lost[1]} |")
    return 0


def cmd_report(a) -> int:
    """The bench's "Lost cells" section of ``results`` with the twin's runs added (nominal and replicas)."""
    rows, factors = _rows(a.results, a.twin)
    nominal = [r for _, i, r in rows if factors[i] == 1.0]
    md, doc = tradeoff_section(nominal, replica_ratios(rows) if len(factors) > 1 else None)
    with open(a.out, "w") as fh:
        fh.write(md)
    labels: dict[str, int] = {}
    for item in doc:
        for lb in {lb["label"] for lb in item["labels"]}:
            labels[lb] = labels.get(lb, 0) + 1
    print(f"{len(doc)} lost cells; cells per label: {labels}; wrote {a.out}")
    return 0


def cmd_h2h(a) -> int:
    """The bench's "Head to head" section of ``results``, with the twin's runs added; ``--ours`` judges
    another policy of the runs (e.g. the twin file's) against every other one instead of gangplace-auto."""
    rows, factors = _rows(a.results, a.twin)
    print(head_to_head_section(rows, len(factors), ours=a.ours or OURS)[0], end="")
    return 0


def _candidate(path: str) -> str:
    """The policy a twin file holds (the twin, the control or a fleet_copy.py prototype)."""
    with open(path) as fh:
        return json.loads(fh.readline())["policy"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="replay a bench results.json's runs with the twin")
    r.add_argument("results")
    r.add_argument("--out", required=True)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--control", action="store_true", help="the engine's tie instead (must equal gangplace-auto)")
    r.add_argument("--policy", default=TWIN, choices=(TWIN, *COPIES),
                   help="what to run in the twin's place: a prototype of benchmarks/fleet_copy.py (table and "
                        "h2h then compare it as they compare the twin)")
    t = sub.add_parser("table", help="gangplace-auto against the twin, and both against the baselines")
    t.add_argument("results")
    t.add_argument("twin")
    w = sub.add_parser("report", help="the bench's lost-cells section again, with the twin's runs added")
    w.add_argument("results")
    w.add_argument("twin")
    w.add_argument("--out", required=True)
    h = sub.add_parser("h2h", help="the bench's head-to-head section, with the twin's runs added")
    h.add_argument("results")
    h.add_argument("twin")
    h.add_argument("--ours", help="the policy judged (default gangplace-auto), e.g. the twin file's")
    a = p.parse_args(argv)
    return {"run": cmd_run, "table": cmd_table, "report": cmd_report, "h2h": cmd_h2h}[a.cmd](a)


if __name__ == "__main__":
    raise SystemExit(main())

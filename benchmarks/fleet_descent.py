"""A prototype of part (3) for gangs of several pods: Kueue BestFit's choice wherever it is as local as
gangplace's (docs/simulation.md, "The whole grid at 50,000 Philly jobs"). Not a pytest-benchmark file,
and not a shipped policy: run it directly.

    .venv/bin/python benchmarks/fleet_descent.py grid --gpus 2048 --out descent-2048.json
    .venv/bin/python benchmarks/fleet_descent.py holdout --out descent-holdout.json
    .venv/bin/python benchmarks/fleet_descent.py compare descent-2048.json bench-2048/results.json

``gangplace-descent`` places a gang with gangplace-auto (parts (1)-(2) proved as usual); for a gang of
several pods it then asks the Kueue TAS model (engine/sim/baselines.py ``KueueTAS``: the lowest level
with a domain that holds the gang, the best-fitting such domain counted in the gang's pods, then the
most-free children first and the last one best fit) and takes Kueue's placement when it spans exactly
as many domains at every level and as many nodes. Single-pod gangs keep gangplace's choice. So locality
stays optimal by construction and only part (3) (which of the equally local placements) changes.

``grid`` runs the nominal cells of ``gangplace bench --full`` (50,000 Philly jobs from day 42, all
Helios, both presets, fills, loads and queues) at one cluster size; ``holdout`` the held-out cells of
service/bench_holdout.py; ``compare`` prints, per cell, gangplace-auto's and the prototype's ratio to
the best baseline of a bench ``results.json`` with the same cells (the runs are deterministic).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
from dataclasses import replace


from gangplace.engine.sim import baselines, sweep
from gangplace.engine.sim.baselines import GangplacePolicy, KueueTAS, Policy
from gangplace.engine.sim.locality import domains_spanned

NAME = "gangplace-descent"
METRICS = ("mean_queue_delay_s", "p99_queue_delay_s", "mean_jct_s")


def _spans(cluster, a) -> tuple[int, ...]:
    return tuple(domains_spanned(cluster.node_domain, a.nodes).tolist())


class Descent(Policy):
    name = NAME

    def __init__(self, seed: int = 0, time_limit_ms: float = 50.0):
        super().__init__(seed)
        self.gp = GangplacePolicy(seed, "auto", time_limit_ms)
        self.kueue = KueueTAS(seed)
        self.swapped = 0

    def place(self, cluster, gang):
        mine = self.gp.place(cluster, gang)
        if mine is None or gang.n_pods == 1:
            return mine
        theirs = self.kueue.place(cluster, gang)
        if theirs is not None and _spans(cluster, theirs) == _spans(cluster, mine):
            self.swapped += 1
            return replace(theirs, proved_optimal=mine.proved_optimal, lower_bound=mine.lower_bound)
        return mine


_make_policy = baselines.make_policy


def make_policy(name: str, seed: int = 0, time_limit_ms: float = 50.0):
    return Descent(seed, time_limit_ms) if name == NAME else _make_policy(name, seed, time_limit_ms)


baselines.make_policy = make_policy  # run_one looks it up at call time, in this process and its forks


def grid_specs(gpus: int) -> list[sweep.RunSpec]:
    out = []
    for tr, preset, fill, load, sched in itertools.product(("helios", "philly"), ("dgx-h100", "gb200-nvl72"),
                                                           (0.0, 0.3), (0.7, 0.95), ("fifo", "easy")):
        out.append(sweep.RunSpec(trace=tr, policy=NAME, preset=preset, gpus=gpus, fill=fill, load=load,
                                 scheduler=sched, max_jobs=50000, start_s=42 * 86400 if tr == "philly" else 0.0,
                                 time_limit_ms=50.0, seed=1))
    return out


def holdout_specs() -> list[sweep.RunSpec]:
    from gangplace.service.bench_holdout import HOLDOUT_CELLS, HOLDOUT_TIME_LIMIT_MS
    return [sweep.RunSpec(trace=c.trace, policy=NAME, preset="dgx-h100", gpus=c.gpus, load=c.load, start_s=c.start_s,
                          end_s=c.end_s, max_jobs=c.max_jobs, scheduler="easy", seed=1,
                          time_limit_ms=HOLDOUT_TIME_LIMIT_MS) for c in HOLDOUT_CELLS]


def _key(spec: dict) -> tuple:
    return (spec["trace"], spec["preset"], spec["gpus"], spec["fill"], spec["load"], spec["scheduler"],
            spec.get("start_s"), spec.get("max_jobs"))


def compare(mine_path: str, bench_path: str) -> None:
    doc = json.load(open(bench_path))
    runs = doc["runs"] if "runs" in doc and doc["runs"] else doc.get("holdout", {}).get("runs", [])
    cells: dict[tuple, dict[str, dict]] = {}
    for r in runs:
        cells.setdefault(_key(r["spec"]), {})[r["policy"]] = r
    for r in json.load(open(mine_path)):
        if _key(r["spec"]) in cells:
            cells[_key(r["spec"])][NAME] = r["summary"]
    logs = {p: [[] for _ in METRICS] for p in ("gangplace-auto", NAME)}
    lost = {p: [0] * len(METRICS) for p in logs}
    for key, v in cells.items():
        if NAME not in v or "gangplace-auto" not in v:
            continue
        row = []
        for p in logs:
            rs = []
            for i, m in enumerate(METRICS):
                best = min(s[m] for q, s in v.items() if not q.startswith("gangplace"))
                x = v[p][m] / best if best > 0 else (1.0 if v[p][m] == 0 else math.inf)
                rs.append(x)
                logs[p][i].append(x)
                lost[p][i] += x > 1.01
            row.append(f"{p}: " + " / ".join(f"{x:.3f}" for x in rs))
        print(" ".join(str(k) for k in key[:6]), "|", " | ".join(row))
    for p, per in logs.items():
        geo = [math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else math.nan for xs in per]
        print(f"{p}: geometric mean (mean wait, p99 wait, mean JCT) {', '.join(f'{g:.4f}' for g in geo)}; "
              f"cells lost by > 1 %: {', '.join(map(str, lost[p]))} of {len(per[0])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grid")
    g.add_argument("--gpus", type=int, default=2048)
    g.add_argument("--workers", type=int, default=2)
    g.add_argument("--out", required=True)
    h = sub.add_parser("holdout")
    h.add_argument("--workers", type=int, default=2)
    h.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("mine")
    c.add_argument("bench")
    a = ap.parse_args()
    if a.cmd == "compare":
        compare(a.mine, a.bench)
        return
    specs = grid_specs(a.gpus) if a.cmd == "grid" else holdout_specs()
    res = sweep.run_grid(specs, workers=a.workers)
    json.dump([{"spec": r["spec"], "summary": r["summary"]} for r in res], open(a.out, "w"))
    print(f"{len(res)} runs -> {a.out}")


if __name__ == "__main__":
    main()

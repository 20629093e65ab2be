"""Prototypes that copy Kueue's choices into gangplace, measured, not shipped (issue 9; docs/simulation.md,
"The verdict's noise floor"). Not a pytest-benchmark file: run it directly.

    .venv/bin/python benchmarks/fleet_copy.py CELLS POLICIES FACTORS OUT.jsonl [WORKERS]
    # e.g. the four saturated Philly EASY cells at 2,048 GPUs, three replicas:
    .venv/bin/python benchmarks/fleet_copy.py \
        '[["philly","dgx-h100",0.3,0.95,"easy",2048],["philly","gb200-nvl72",0.3,0.95,"easy",2048],
          ["philly","gb200-nvl72",0.0,0.95,"easy",2048],["philly","dgx-h100",0.0,0.95,"easy",2048]]' \
        copy-kueue1,copy-descent,copy-kueue1-descent 0.97,1.0,1.03 sat.jsonl 2

Cells: [trace, preset, fill, load, queue, GPUs], as ``gangplace bench --full`` runs them (50,000 jobs, Philly
from day 42); a factor scales the load as ``--replicas`` does. Policies (gangs of several pods are
gangplace-auto's unless named otherwise):
- ``copy-nodeidx``: a single-pod gang to the tightest node, ties by topology order (Kueue BestFit's choice
  for one pod counted in GPUs), ignoring the domains' room;
- ``copy-firstfit``: a single-pod gang to the first partly used node in topology order that holds it
  (whole free nodes only when none does): pinned, nearly empty nodes used as Kueue's BestFit uses them
  for pods of 4 GPUs or more (docs/simulation.md, "Where the free GPUs were in that cell");
- ``copy-kueue1``: a single-pod gang where the Kueue model (``kueue-tas``) puts it;
- ``copy-age`` / ``copy-agetie`` / ``copy-bgfirst``: a single-pod gang to a partly used node, the one whose
  running pods started first (the simulator's ``Cluster.oldest_start``) then the tightest; the tightest then
  the oldest; the tightest of those holding background pods (which never end). ``copy-age`` became the
  engine's objective ``age`` (docs/simulation.md, "The age rule");
- ``copy-descent``: a gang of several pods where the Kueue model puts it when that is exactly as local as
  gangplace-auto's placement (``benchmarks/fleet_descent.py``);
- ``copy-kueue1-descent``: both: Kueue's choice wherever locality allows;
- any policy of ``gangplace simulate --policies`` (e.g. gangplace-auto, kueue-tas).
One JSON line per run: mean / p99 wait, mean JCT, optimal locality, the free GPU-seconds while a job
waited (``idle``) and the mean share of free GPUs off whole free nodes (``st``).

    .venv/bin/python benchmarks/fleet_copy.py table OUT.jsonl

prints, per cell and gangplace or copy policy, its ratio to the best baseline of each load, as the
bench's replicated verdict (geometric mean over the loads [min-max], loads behind), and to the twin.
"""
from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from gangplace.engine.model.errors import InvalidRequest
from gangplace.engine.sim.baselines import Assignment, GangplacePolicy, KueueTAS, make_policy
from gangplace.engine.sim.sweep import RunSpec, run_one
from fleet_descent import Descent  # benchmarks/ is on sys.path when a script runs


class Copy(GangplacePolicy):
    def __init__(self, name: str, single: str | None, multi: bool):
        super().__init__(1, "auto")
        self.name, self.single, self.kueue = name, single, KueueTAS(1)
        self.multi = Descent(1) if multi else None

    def place(self, c, g):
        if g.n_pods != 1:
            return self.multi.place(c, g) if self.multi else super().place(c, g)
        if self.single == "kueue":
            return self.kueue.place(c, g)
        if self.single in ("age", "agetie"):
            free = c.free_gpus.astype(np.int64)
            fits = c.schedulable.astype(bool) & (free >= g.gpus) & (c.free_pods >= 1) & (free < c.cap_gpus)
            idx = np.flatnonzero(fits)
            if not idx.size:
                return super().place(c, g)
            old = c.oldest_start[idx]  # the simulator's: the earliest start running there, -inf: background
            keys = (idx, free[idx], old) if self.single == "age" else (idx, old, free[idx])
            i = int(idx[np.lexsort(keys)[0]])
            return Assignment(np.array([i]), np.array([g.gpus]), np.array([1]))
        if self.single == "bgfirst":  # nodes holding background pods (no start: -inf), which never end
            free = c.free_gpus.astype(np.int64)
            fits = (c.schedulable.astype(bool) & (free >= g.gpus) & (c.free_pods >= 1)
                    & np.isneginf(c.oldest_start))
            idx = np.flatnonzero(fits)
            if not idx.size:
                return super().place(c, g)
            i = int(idx[np.lexsort((idx, free[idx]))[0]])
            return Assignment(np.array([i]), np.array([g.gpus]), np.array([1]))
        if self.single not in ("nodeidx", "firstfit"):
            return super().place(c, g)
        free = c.free_gpus.astype(np.int64)
        fits = c.schedulable.astype(bool) & (free >= g.gpus) & (c.free_pods >= 1)
        if self.single == "firstfit":  # the first partly used node that holds it; whole free nodes last
            part = fits & (free < c.cap_gpus)
            fits = part if part.any() else fits
        idx = np.flatnonzero(fits)
        if not idx.size:
            return None
        i = int(idx[0]) if self.single == "firstfit" else int(idx[np.lexsort((idx, free[idx]))[0]])
        return Assignment(np.array([i]), np.array([g.gpus]), np.array([1]))


COPIES = {"copy-nodeidx": ("nodeidx", False), "copy-firstfit": ("firstfit", False), "copy-kueue1": ("kueue", False),
          "copy-bgfirst": ("bgfirst", False),
          "copy-age": ("age", False), "copy-agetie": ("agetie", False),
          "copy-descent": (None, True),
          "copy-kueue1-descent": ("kueue", True)}


def _run(args) -> dict:
    trace, preset, fill, load, queue, gpus, factor, name = args
    spec = RunSpec(trace=trace, policy=name, preset=preset, gpus=gpus, fill=fill, max_jobs=50000,
                   load=round(load * factor, 6), scheduler=queue, start_s=42 * 86400 if trace == "philly" else 0.0)
    s = run_one(spec, policy=Copy(name, *COPIES[name]) if name in COPIES else None)["summary"]
    return {"cell": [trace, preset, fill, load, queue, gpus], "factor": factor, "policy": name,
            "mw": s["mean_queue_delay_s"], "p99": s["p99_queue_delay_s"], "jct": s["mean_jct_s"],
            "loc": s["optimal_locality_fraction"], "idle": s["idle_gpu_s_while_queued"],
            "st": s["stranded_free_fraction_mean"]}


def table(path: str) -> int:
    """Per cell of a runs file and each gangplace or copy policy in it: over the factors (loads), the
    geometric mean of its ratio to the best baseline of the same load [min-max] and the loads it is
    behind in, per metric (``_ratio``: two equal values are a tie); and its ratio to gangplace-twin."""
    from gangplace.service.cmd_bench import _ratio, geometric_mean
    runs: dict[tuple, dict[float, dict[str, dict]]] = {}
    for line in open(path):
        r = json.loads(line)
        runs.setdefault(tuple(r["cell"]), {}).setdefault(r["factor"], {})[r["policy"]] = r
    for cell, by_factor in runs.items():
        print(" ".join(map(str, cell)), f"({len(by_factor)} loads)")
        mine = sorted({p for d in by_factor.values() for p in d if p.startswith(("gangplace", "copy"))})
        for p in mine:
            parts = []
            for m in ("mw", "p99", "jct"):
                ratios, twin = [], []
                for d in by_factor.values():
                    base = [d[b][m] for b in d if not b.startswith(("gangplace", "copy"))]
                    if p in d and base:
                        ratios.append(_ratio(d[p][m], min(base)))
                    if p in d and "gangplace-twin" in d and p != "gangplace-twin":
                        twin.append(_ratio(d[p][m], d["gangplace-twin"][m]))
                parts.append(f"{m} {geometric_mean(ratios):.4f} [{min(ratios):.3f}-{max(ratios):.3f}] behind in "
                             f"{sum(x > 1 for x in ratios)}" + (f", over the twin {geometric_mean(twin):.3f}" if twin else ""))
            print(f"  {p}: " + "; ".join(parts))
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "table":
        return table(argv[1])
    cells, pols, factors, out = json.loads(argv[0]), argv[1].split(","), [float(x) for x in argv[2].split(",")], argv[3]
    workers = int(argv[4]) if len(argv) > 4 else 2
    try:
        for p in pols:
            if p not in COPIES:
                make_policy(p)  # a clear error for an unknown name before any run
    except InvalidRequest as e:
        print(f"fleet_copy.py: {e} (or one of {list(COPIES)})", file=sys.stderr)
        return 2
    jobs = [(*c, f, p) for c in cells for f in factors for p in pols]
    with open(out, "a") as fh, ProcessPoolExecutor(workers) as ex:
        for row in ex.map(_run, jobs):
            fh.write(json.dumps(row) + "\n")
            fh.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

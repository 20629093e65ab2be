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
- ``copy-kueue1``: a single-pod gang where the Kueue model (``kueue-tas``) puts it;
- ``copy-descent``: a gang of several pods where the Kueue model puts it when that is exactly as local as
  gangplace-auto's placement (``benchmarks/fleet_descent.py``);
- ``copy-kueue1-descent``: both: Kueue's choice wherever locality allows;
- any policy of ``gangplace simulate --policies`` (e.g. gangplace-auto, kueue-tas).
One JSON line per run: mean / p99 wait, mean JCT, optimal locality, the free GPU-seconds while a job
waited (``idle``) and the mean share of free GPUs off whole free nodes (``st``).
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
        if self.single != "nodeidx":
            return super().place(c, g)
        free = c.free_gpus.astype(np.int64)
        idx = np.flatnonzero(c.schedulable.astype(bool) & (free >= g.gpus) & (c.free_pods >= 1))
        if not idx.size:
            return None
        i = int(idx[np.lexsort((idx, free[idx]))[0]])
        return Assignment(np.array([i]), np.array([g.gpus]), np.array([1]))


COPIES = {"copy-nodeidx": ("nodeidx", False), "copy-kueue1": ("kueue", False), "copy-descent": (None, True),
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


def main(argv: list[str]) -> int:
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

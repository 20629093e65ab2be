"""Where the GPUs left free while jobs wait are (issue 9; docs/simulation.md, "Head to head"). Not a
pytest-benchmark file: run it directly.

    .venv/bin/python benchmarks/fleet_fragments.py --policies gangplace-auto,kueue-tas \
        --trace philly --preset dgx-h100 --gpus 2048 --fill 0.3 --load 0.95 --scheduler easy

Replays one cell of ``gangplace bench --full`` (Philly from day 42, 50,000 jobs; a RunSpec's defaults
otherwise) per policy and, after every scheduling pass while a job is queued, splits the free GPUs
of the schedulable nodes into:
- *held*: free now on the EASY head's reserved nodes, up to what the head needs there;
- *whole*: on whole free nodes outside the reservation;
- *fragments*: on partly used nodes (the rest), by how many GPUs such a node has free;
each integrated over time (GPU-hours, piecewise constant between events). It also gives the mean
composition of the jobs the backfill examines (the head and up to ``backfill_depth`` behind it) by
size. The free GPU-hours add up to the summary's ``idle_gpu_s_while_queued`` (checked).
"""
from __future__ import annotations

import argparse
import itertools
import json

import numpy as np

from gangplace.engine.sim import simulator
from gangplace.engine.sim.sweep import RunSpec, run_one

SIZES = (1, 2, 3, 4, 5, 6, 7, 8)  # examined jobs by GPUs; larger ones are counted as "more"


class _Probe:
    """Wraps ``_Simulator._schedule``: one record per scheduling pass (the last one per time counts)."""

    def __init__(self):
        self.rows: list[tuple] = []
        self._orig = simulator._Simulator._schedule
        probe = self

        def schedule(sim, t):
            probe._orig(sim, t)
            probe.record(sim, t)
        simulator._Simulator._schedule = schedule

    def close(self):
        simulator._Simulator._schedule = self._orig

    def record(self, sim, t) -> None:
        if not sim.queue:
            self.rows.append((t, None))
            return
        c = sim.c
        free = np.where(c.schedulable.astype(bool), c.free_gpus, 0).astype(np.int64)
        outside = np.ones(c.n_nodes, bool)
        held = 0
        res = sim.reservation
        if res is not None and res[0] == sim.queue[0].idx and res[2] is not None and sim.head_need is not None:
            held = int(np.minimum(free[res[2]], sim.head_need[0]).sum())
            outside[res[2]] = False
        whole = int(free[outside & (free == c.cap_gpus)].sum())
        part = (free > 0) & (free < c.cap_gpus)
        frag = np.bincount(free[part], minlength=int(c.cap_gpus.max()) + 1)
        sizes = [j.gang.gpus for j in itertools.islice(sim.queue, sim.cfg.backfill_depth + 1)]  # not the whole queue
        window = np.bincount(np.minimum(sizes, len(SIZES) + 1), minlength=len(SIZES) + 2)
        self.rows.append((t, (int(free.sum()), held, whole, frag, window)))


def measure(spec: RunSpec) -> dict:
    probe = _Probe()
    try:
        summary = run_one(spec)["summary"]
    finally:
        probe.close()
    rows = [r for k, r in enumerate(probe.rows) if k + 1 == len(probe.rows) or probe.rows[k + 1][0] != r[0]]
    t = np.array([r[0] for r in rows], float)
    dt = np.diff(t, append=t[-1]) if len(t) else t
    free = held = whole = queued = 0.0
    frag = window = 0
    for (_, rec), d in zip(rows, dt):
        if rec is None or d == 0:
            continue
        free += rec[0] * d
        held += rec[1] * d
        whole += rec[2] * d
        frag = frag + rec[3] * d / 3600
        window = window + rec[4] * d
        queued += d
    idle = summary["idle_gpu_s_while_queued"]
    if abs(free - idle) > 1e-6 * max(idle, 1.0):
        raise AssertionError(f"free GPU-seconds while queued {free} != the summary's {idle}")
    frag = np.asarray(frag, float)
    return {"policy": spec.policy, "mean_wait_s": summary["mean_queue_delay_s"], "queued_h": float(queued / 3600),
            "free_gpu_h": float(free / 3600), "held_gpu_h": float(held / 3600), "whole_outside_gpu_h": float(whole / 3600),
            "fragment_gpu_h_by_free": {int(k): float(k * frag[k]) for k in range(1, frag.size) if frag[k]},
            "examined_jobs_by_gpus": {("more" if k > len(SIZES) else str(k)): float(window[k] / queued)
                                      for k in range(1, len(SIZES) + 2)} if queued else {}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policies", default="gangplace-auto,kueue-tas")
    p.add_argument("--trace", default="philly")
    p.add_argument("--preset", default="dgx-h100")
    p.add_argument("--gpus", type=int, default=2048)
    p.add_argument("--fill", type=float, default=0.3)
    p.add_argument("--load", type=float, default=0.95)
    p.add_argument("--scheduler", default="easy")
    a = p.parse_args(argv)
    for policy in a.policies.split(","):
        spec = RunSpec(trace=a.trace, policy=policy, preset=a.preset, gpus=a.gpus, fill=a.fill, load=a.load,
                       scheduler=a.scheduler, max_jobs=50000, start_s=42 * 86400 if a.trace == "philly" else 0.0)
        out = measure(spec)
        print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What the EASY reservation's hold costs the 1-GPU jobs (docs/simulation.md, "The hold of the
backfill's reservation"). Not a pytest-benchmark file: run it directly.

    .venv/bin/python benchmarks/fleet_hold.py --preset dgx-h100 --fill 0.3 --load 0.7 --gpus 2048 \
        --hold nodes --policies gangplace-auto,kueue-tas,kai-binpack,most-allocated

One JSON line per policy (Philly from day 42, first 5,000 jobs, EASY, as `gangplace bench --full`):
- ``wait_1gpu_s``: mean wait of the 1-GPU jobs, and ``per_1gpu_job_s`` the same seconds split by
  what each queued 1-GPU job faced after every scheduling pass (integrated over time, divided by
  the number of 1-GPU jobs): ``head`` (it was the head), ``beyond_depth`` (more than
  ``backfill_depth`` jobs behind the head, not examined), ``no_reservation`` (the head could not
  be given a shadow time), ``cluster_full`` (no node with a free GPU and pod slot),
  ``room_only_on_reserved`` (free room existed only on the head's reserved nodes), ``room_outside``
  (room was left outside the reservation: the job was beyond the depth during the pass and moved
  up when jobs ahead of it started);
- while a reservation is active (time-weighted): reserved nodes, how many of them partly used, free
  GPUs on them, and ``spare``: free GPUs on them that the head does not need at its shadow time
  (free now + returned by running jobs by then - the head's need, per node, at most free now) —
  what a per-GPU hold lets a job running past the shadow time use and a whole-node hold does not;
- ``blocked_with_spare_h``: hours during which a 1-GPU job was blocked, free room existed only on
  reserved nodes, and some of it was spare;
- ``gpu_weighted_wait_s``: the mean wait weighted by GPUs per job; ``heads_late``: heads that
  started after their shadow time;
- with ``--window H0,H1`` (hours from the window's first arrival): the free GPUs at H0, the 1-GPU
  jobs submitted in [H0, H1), their mean wait and their share of all 1-GPU waiting (the burst of
  docs/simulation.md is ``--window 23.9,24.3``), and with ``--watch ID,...`` those jobs' start
  hours.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from gangplace.engine.sim import simulator as S
from gangplace.engine.sim.baselines import make_policy
from gangplace.engine.sim.sweep import RunSpec, build_cluster, build_trace


class HoldSim(S._Simulator):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.rec = []  # per pass: t, {category: queued 1-GPU jobs}, reservation stats or None
        self.shadow_asg = None

    def _shadow(self, head):
        shadow, got = super()._shadow(head)
        self.shadow_asg = (head.idx, got)
        return shadow, got

    def _schedule(self, t):
        super()._schedule(t)
        c, q = self.c, self.queue
        ok = c.schedulable.astype(bool)
        room = ok & (c.free_gpus >= 1) & (c.free_pods >= 1)
        res = self.reservation if (q and self.reservation and self.reservation[0] == q[0].idx) else None
        resmask = np.zeros(c.n_nodes, bool)
        stats = None
        if res is not None and res[2] is not None:
            resmask[res[2]] = True
            got = self.shadow_asg[1]
            back, _ = self._returned_by(res[1])
            need = np.zeros(c.n_nodes, np.int64)
            need[got.nodes] = got.gpus
            free = c.free_gpus.astype(np.int64)
            spare = np.clip(free + back - need, 0, free)[resmask].sum()
            stats = (int(resmask.sum()), int((resmask & (c.free_gpus < c.cap_gpus)).sum()),
                     int(free[resmask].sum()), int(spare))
        out = bool((room & ~resmask).any())
        cnt: dict[str, int] = {}
        for k, j in enumerate(q):
            if j.gang.gpus != 1:
                continue
            if k == 0:
                cat = "head"
            elif self.cfg.scheduler != "easy":
                cat = "fifo_behind_head"
            elif k > self.cfg.backfill_depth:
                cat = "beyond_depth"
            elif res is None or res[2] is None:
                cat = "no_reservation"
            elif out:
                cat = "room_outside"
            elif room.any():
                cat = "room_only_on_reserved"
            else:
                cat = "cluster_full"
            cnt[cat] = cnt.get(cat, 0) + 1
        self.rec.append((t, cnt, stats))


def run(spec: RunSpec, hold: str, window: tuple[float, float] | None = None, watch: tuple[int, ...] = ()) -> dict:
    c = build_cluster(spec)
    tr = build_trace(spec, int(c.free_gpus[c.schedulable.astype(bool)].sum()))
    cfg = S.SimConfig(scheduler=spec.scheduler, backfill_depth=spec.backfill_depth, reservation_hold=hold)
    sim = HoldSim(c, tr, make_policy(spec.policy, seed=spec.seed, time_limit_ms=spec.time_limit_ms), cfg, None)
    r = sim.run()
    g = tr.num_gpus
    w = (r.start_s - r.submit_s).astype(float)
    n1 = max(int((g == 1).sum()), 1)
    per: dict[str, float] = {}
    t_res = 0.0
    acc = np.zeros(4)
    blocked_spare = 0.0
    for i, (t, cnt, stats) in enumerate(sim.rec):
        dt = sim.rec[i + 1][0] - t if i + 1 < len(sim.rec) else 0
        for k, v in cnt.items():
            per[k] = per.get(k, 0.0) + v * dt
        if stats is not None:
            t_res += dt
            acc += np.asarray(stats) * dt
            if cnt.get("room_only_on_reserved") and stats[3] > 0:
                blocked_spare += dt
    names = ("reserved_nodes", "reserved_partly_used", "free_on_reserved", "spare_on_reserved")
    burst = {}
    if window is not None:
        t0 = float(tr.submit_s[0])
        h = (tr.submit_s - t0) / 3600
        m = (h >= window[0]) & (h < window[1]) & (g == 1)
        i = max(int(np.searchsorted(r.timeline_t, t0 + window[0] * 3600)) - 1, 0)
        w1 = w * (g == 1)
        burst = {"free_gpus_at_window_start": int(r.capacity_gpus - r.timeline_busy[i]),
                 "window_1gpu_jobs": int(m.sum()), "window_1gpu_wait_s": round(float(w[m].mean()), 1) if m.any() else 0.0,
                 "window_share_of_1gpu_wait": round(float(w1[m].sum() / max(w1.sum(), 1e-9)), 3),
                 "start_h": {str(j): round(float((r.start_s[j] - t0) / 3600), 2) for j in watch}}
    return {"policy": spec.policy, "hold": hold, "mean_wait_s": round(float(w.mean()), 1),
            "wait_1gpu_s": round(float(w[g == 1].mean()), 1),
            "gpu_weighted_wait_s": round(float((w * g).sum() / g.sum()), 1),
            "per_1gpu_job_s": {k: round(v / n1, 1) for k, v in sorted(per.items())},
            "reservation_time_h": round(t_res / 3600, 2),
            **{k: round(float(v / t_res), 3) if t_res else 0.0 for k, v in zip(names, acc)},
            "blocked_with_spare_h": round(blocked_spare / 3600, 3), "heads_late": r.extra["heads_late"], **burst}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trace", default="philly")
    ap.add_argument("--start-days", type=float, default=42.0)
    ap.add_argument("--max-jobs", type=int, default=5000)
    ap.add_argument("--preset", default="dgx-h100")
    ap.add_argument("--gpus", type=int, default=2048)
    ap.add_argument("--fill", type=float, default=0.3)
    ap.add_argument("--load", type=float, default=0.7)
    ap.add_argument("--scheduler", default="easy")
    ap.add_argument("--hold", choices=S.RESERVATION_HOLDS, default="nodes")
    ap.add_argument("--policies", default="gangplace-auto,kueue-tas,kai-binpack,most-allocated")
    ap.add_argument("--window", help="H0,H1: the 1-GPU jobs submitted between these hours of the window")
    ap.add_argument("--watch", default="", help="job indices whose start hours to print")
    a = ap.parse_args(argv)
    window = tuple(float(x) for x in a.window.split(",")) if a.window else None
    watch = tuple(int(x) for x in a.watch.split(",") if x.strip())
    for pol in a.policies.split(","):
        spec = RunSpec(trace=a.trace, policy=pol, preset=a.preset, gpus=a.gpus, fill=a.fill, max_jobs=a.max_jobs,
                       load=a.load, scheduler=a.scheduler, start_s=a.start_days * 86400)
        print(json.dumps({"cell": f"{a.trace} {a.preset} {a.gpus} fill {a.fill} load {a.load} {a.scheduler}",
                          **run(spec, a.hold, window, watch)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

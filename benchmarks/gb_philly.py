"""Philly gb200-nvl72 EASY losses (issue 9): replicated cells, decision diffs, part-(3) prototypes.

Not a pytest-benchmark file: run it directly (docs/simulation.md, "The Philly EASY losses", has the results).

    .venv/bin/python benchmarks/gb_philly.py grid --cells philly-easy --policies gangplace-auto,gp-rackfirst \
        --baselines --out /tmp/grid.jsonl --workers 2        # cells x 5 replica loads x policies
    .venv/bin/python benchmarks/gb_philly.py table /tmp/grid.jsonl   # geomean ratios vs the best baseline
    .venv/bin/python benchmarks/gb_philly.py diff --preset gb200-nvl72 --fill 0 --load 0.7
        # replay gangplace-auto, ask kai-binpack on every identical state, count where they differ

Replicas as in ``gangplace bench --replicas 5``: the cell's load x 0.970, 0.985, 1.000, 1.015, 1.030.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from gangplace.engine.sim import simulator as S
from gangplace.engine.sim.baselines import Assignment, GangplacePolicy, KaiBinpack, make_policy
from gangplace.engine.sim.summary import summarize
from gangplace.engine.sim.sweep import RunSpec, build_cluster, build_trace
from fleet_rootcause import _dom_free  # benchmarks/ is on sys.path when a script runs

BASELINES = ("k8s-default", "most-allocated", "kueue-tas", "kai-binpack", "random")
FACTORS = (0.97, 0.985, 1.0, 1.015, 1.03)
CELLS = {
    "philly-easy": [("philly", p, f, l, "easy") for p in ("gb200-nvl72", "dgx-h100") for f in (0.0, 0.3)
                    for l in (0.7, 0.95)],
    "philly-fifo": [("philly", p, f, l, "fifo") for p in ("gb200-nvl72", "dgx-h100") for f in (0.0, 0.3)
                    for l in (0.7, 0.95)],
    "helios": [("helios", p, f, l, q) for p in ("gb200-nvl72", "dgx-h100") for f in (0.0, 0.3)
               for l in (0.7, 0.95) for q in ("easy", "fifo")],
    "philly60-easy": [("philly@60", p, f, l, "easy") for p in ("gb200-nvl72", "dgx-h100") for f in (0.0, 0.3)
                      for l in (0.7, 0.95)],
    "gb-lost": [("philly", "gb200-nvl72", 0.0, 0.7, "easy"), ("philly", "gb200-nvl72", 0.3, 0.7, "easy")],
}


class RackFirst(GangplacePolicy):
    """Prototype: a single-pod gang goes to the fullest lowest-level domain (rack / SU) that has a
    node with room, then the tightest node in it, then the fullest domain above (KAI's order for one
    pod); multi-pod gangs: the engine unchanged (parts (1)-(2) are trivial for one pod: 1 domain per
    level, 1 node)."""

    def __init__(self, placer="auto", name="gp-rackfirst"):
        super().__init__(1, placer)
        self.name = name

    def _single(self, c, g):
        free = c.free_gpus.astype(np.int64)
        ok = c.schedulable.astype(bool)
        idx = np.flatnonzero(ok & (free >= g.gpus) & (c.free_pods >= 1))
        if not idx.size:
            return None
        df = _dom_free(c, np.where(ok, free, 0))
        L = len(c.levels)
        keys = [idx]  # np.lexsort: last key is primary
        keys += [df[c.node_domain[lv, idx]] for lv in range(L - 1)]  # upper levels, top first (minor)
        keys += self.major_keys(c, g, idx, free, df)
        i = int(idx[np.lexsort(keys)[0]])
        return Assignment(np.array([i]), np.array([g.gpus]), np.array([1]))

    def major_keys(self, c, g, idx, free, df):
        L = len(c.levels)
        return [free[idx], df[c.node_domain[L - 1, idx]]]  # rack fullest (primary), then node tightest

    def place(self, c, g):
        if g.n_pods == 1:
            return self._single(c, g)
        return super().place(c, g)


class NodeRack(RackFirst):
    """Control: the engine's own single-pod order written out (node tightest, then rack, then block)."""

    def major_keys(self, c, g, idx, free, df):
        L = len(c.levels)
        return [df[c.node_domain[L - 1, idx]], free[idx]]


class PartialRack(RackFirst):
    """Variant: partly used nodes before whole free ones (as the engine), then the fullest rack, then the
    tightest node: KAI's rack order without breaking a whole node while a partly used one has room."""

    def major_keys(self, c, g, idx, free, df):
        L = len(c.levels)
        return [free[idx], df[c.node_domain[L - 1, idx]], (free[idx] == c.cap_gpus[idx]).astype(np.int64)]


PROTOS = {"gp-partialrack": lambda: PartialRack("auto", "gp-partialrack"), "gp-rackfirst": lambda: RackFirst("auto"), "gp-noderack": lambda: NodeRack("auto", "gp-noderack")}


def policy(name):
    return PROTOS[name]() if name in PROTOS else make_policy(name, seed=1, time_limit_ms=50)


def run_one(args):
    trace, preset, fill, load, sched, factor, pol, gpus, max_jobs = args
    name, _, day = trace.partition("@")  # "philly@60": Philly from day 60 (default: day 42, Helios day 0)
    start = float(day) * 86400 if day else 42 * 86400 if name == "philly" else 0
    spec = RunSpec(trace=name, policy=pol, preset=preset, gpus=gpus, fill=fill, max_jobs=max_jobs,
                   load=round(load * factor, 6), scheduler=sched, start_s=start)
    c = build_cluster(spec)
    static = (c.node_domain.copy(), c.level_offset.copy(), c.cap_gpus.copy())
    tr = build_trace(spec, int(c.free_gpus[c.schedulable.astype(bool)].sum()))
    t0 = time.time()
    r = S.simulate(c, tr, policy(pol), S.SimConfig(scheduler=sched))
    s = summarize(r, *static)
    w = (r.start_s - r.submit_s).astype(float)
    ok = r.start_s >= 0
    g = tr.num_gpus
    return {"trace": trace, "preset": preset, "fill": fill, "load": load, "sched": sched, "factor": factor,
            "policy": pol, "mean_wait": s["mean_queue_delay_s"], "p99_wait": s["p99_queue_delay_s"],
            "mean_jct": s["mean_jct_s"], "opt_loc": s["optimal_locality_fraction"],
            "wait_1gpu": float(w[ok & (g == 1)].mean()), "wait_gt8": float(w[ok & (g > 8)].mean()),
            "gw_wait": float((w[ok] * g[ok]).sum() / g[ok].sum()), "wall": time.time() - t0}


def cmd_grid(a):
    pols = [p for p in a.policies.split(",") if p] + (list(BASELINES) if a.baselines else [])
    cells = [c for name in a.cells.split(",") for c in CELLS[name]]
    factors = FACTORS if not a.nominal else (1.0,)
    jobs = [(*cell, f, p, a.gpus, a.max_jobs) for cell in cells for f in factors for p in pols]
    with open(a.out, "a") as fh, ProcessPoolExecutor(a.workers) as ex:
        for row in ex.map(run_one, jobs):
            fh.write(json.dumps(row) + "\n")
            fh.flush()
    return 0


def cmd_table(a):
    rows = [json.loads(x) for f in a.files for x in open(f)]
    by = {}
    for r in rows:
        by.setdefault((r["trace"], r["preset"], r["fill"], r["load"], r["sched"]), {}).setdefault(r["factor"], {})[
            r["policy"]] = r
    gp = sorted({r["policy"] for r in rows if r["policy"] not in BASELINES})
    metric = a.metric
    print(f"metric {metric}: policy / " + ("the cell's one best baseline" if a.fixed else "best baseline of the same replica") + "; geomean [min-max] ahead")
    print("| cell | " + " | ".join(gp) + " |")
    print("|---|" + "---:|" * len(gp))
    allr = {p: [] for p in gp}
    for cell, reps in sorted(by.items()):
        out = []
        fixed = None
        if a.fixed:  # the one baseline with the lowest geometric mean over the replicas, for every replica
            gm = {b: np.mean([np.log(max(d[b][metric], 1e-9)) for d in reps.values()]) for b in BASELINES
                  if all(b in d for d in reps.values())}
            fixed = min(gm, key=gm.get)
        for p in gp:
            rs = []
            for f, d in sorted(reps.items()):
                base = [d[b][metric] for b in ((fixed,) if fixed else BASELINES) if b in d]
                if p in d and base:
                    rs.append(d[p][metric] / max(min(base), 1e-9))
            if rs:
                gm = math.exp(np.mean(np.log(rs)))
                allr[p] += rs
                out.append(f"{gm:.3f} [{min(rs):.3f}-{max(rs):.3f}] {sum(x <= 1.0 for x in rs)}/{len(rs)}")
            else:
                out.append("-")
        print(f"| {' '.join(map(str, cell))}{' vs ' + fixed if fixed else ''} | " + " | ".join(out) + " |")
    print("| geomean all | " + " | ".join(f"{math.exp(np.mean(np.log(v))):.3f}" if v else "-" for v in allr.values())
          + " |")
    return 0


class DiffPolicy(GangplacePolicy):
    """gangplace-auto, asking kai-binpack the same question each time and recording both answers."""

    def __init__(self):
        super().__init__(1, "auto")
        self.kai = KaiBinpack(1)
        self.log = []

    def place(self, c, g):
        a = super().place(c, g)
        if g.n_pods == 1 and a is not None:
            b = self.kai.place(c, g)
            free = c.free_gpus.astype(np.int64)
            ok = c.schedulable.astype(bool)
            df = _dom_free(c, np.where(ok, free, 0))
            L = len(c.levels)
            ia, ib = int(a.nodes[0]), int(b.nodes[0])
            ra, rb = c.node_domain[L - 1, ia], c.node_domain[L - 1, ib]
            self.log.append((g.gpus, ia == ib, int(free[ia]), int(free[ib]), ra == rb, int(df[ra]), int(df[rb]),
                             int(c.cap_gpus[ia]), self.sim_t))
        return a


def cmd_diff(a):
    spec = RunSpec(trace="philly", policy="gangplace-auto", preset=a.preset, gpus=a.gpus, fill=a.fill,
                   max_jobs=a.max_jobs, load=a.load, scheduler="easy", start_s=42 * 86400)
    c = build_cluster(spec)
    tr = build_trace(spec, int(c.free_gpus[c.schedulable.astype(bool)].sum()))
    p = DiffPolicy()
    p.sim_t = 0
    sim = S._Simulator(c, tr, p, S.SimConfig(scheduler="easy"), None)
    orig = sim._schedule

    def sched(t):
        p.sim_t = t
        orig(t)
    sim._schedule = sched
    sim.run()
    log = p.log
    cnt = Counter()
    for gg, same, fa, fb, srack, dra, drb, cap, t in log:
        if same:
            cnt[(gg, "same node")] += 1
        elif fa == fb and srack:
            cnt[(gg, "same rack, equally tight node")] += 1
        elif fa == fb:
            cnt[(gg, "equally tight node, other rack: gp rack fuller" if dra < drb else
                 "equally tight node, other rack: kai rack fuller" if drb < dra else "equally tight, racks tie")] += 1
        elif fa < fb:
            cnt[(gg, f"gp tighter node (gp free {fa} vs kai {fb}); kai rack fuller" if drb < dra else
                 f"gp tighter node (gp free {fa} vs kai {fb})")] += 1
        else:
            cnt[(gg, f"kai tighter node ({fb} vs {fa})")] += 1
    n = len(log)
    print(f"single-pod decisions (committed or tried) {n}")
    for k, v in sorted(cnt.items(), key=lambda kv: (kv[0][0], -kv[1])):
        print(f"  pod {k[0]} GPU: {k[1]:70s} {v:6d} ({100 * v / n:.1f} %)")
    return 0


BURST0 = 4115  # Philly day 42, first 5,000 jobs: jobs 4115-4999 (848 of 885 1-GPU) arrive within 43 min


class _QSim(S._Simulator):
    """Records, after every scheduling pass, the queue length and the free GPUs."""

    def _schedule(self, t):
        super()._schedule(t)
        c = self.c
        self.rec.append((t, len(self.queue), int(c.free_gpus[c.schedulable.astype(bool)].sum())))


def cmd_burst(a):
    """Per replica and policy: the burst's share of all waiting, idle GPU-hours while jobs queue, and
    what the capacity went to during the burst's drain (first arrival to the start of its last 1-GPU job)."""
    for f in FACTORS:
        out = []
        for pol in a.policies.split(","):
            spec = RunSpec(trace="philly", policy=pol, preset=a.preset, gpus=2048, fill=a.fill, max_jobs=5000,
                           load=round(a.load * f, 6), scheduler="easy", start_s=42 * 86400)
            c = build_cluster(spec)
            tr = build_trace(spec, int(c.free_gpus[c.schedulable.astype(bool)].sum()))
            sim = _QSim(c, tr, policy(pol), S.SimConfig(scheduler="easy"), None)
            sim.rec = []
            r = sim.run()
            g = tr.num_gpus
            w = (r.start_s - r.submit_s).astype(float)
            burst = np.arange(len(g)) >= BURST0
            rec = np.array(sim.rec, float)
            dt = np.diff(rec[:, 0], append=rec[-1, 0])
            q = rec[:, 1] > 0
            idle_gh = float((rec[q, 2] * dt[q]).sum()) / 3600
            T = float(tr.submit_s[BURST0])
            t_end = float(r.start_s[burst & (g == 1)].max())
            i = max(int(np.searchsorted(r.timeline_t, T, side="right")) - 1, 0)
            m = (r.start_s >= T) & (r.start_s <= t_end) & (g >= 4)
            gh = float((g[m] * (np.minimum(r.end_s[m], t_end) - r.start_s[m])).sum()) / 3600
            out.append(f"{pol}: mean {w.mean():.0f}s, burst 1-GPU share {w[burst & (g == 1)].sum() / w.sum():.2f}, "
                       f"idle GPU-h while queued {idle_gh:.1f}, free at burst {int(r.capacity_gpus - r.timeline_busy[i])}, "
                       f"drain {(t_end - T) / 3600:.2f} h: >=4-GPU jobs started {int(m.sum())} ({int(g[m].sum())} GPUs, "
                       f"{gh:.0f} GPU-h)")
        print(f"x{f}: " + " | ".join(out), flush=True)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grid")
    g.add_argument("--cells", default="gb-lost")
    g.add_argument("--policies", default="gangplace-auto")
    g.add_argument("--baselines", action="store_true")
    g.add_argument("--nominal", action="store_true", help="only the nominal load (x1.0)")
    g.add_argument("--gpus", type=int, default=2048)
    g.add_argument("--max-jobs", type=int, default=5000)
    g.add_argument("--workers", type=int, default=2)
    g.add_argument("--out", required=True)
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    t.add_argument("--metric", default="mean_wait")
    t.add_argument("--fixed", action="store_true", help="against the cell's one best baseline (lowest geomean), "
                   "not the best of each replica")
    d = sub.add_parser("diff")
    d.add_argument("--preset", default="gb200-nvl72")
    d.add_argument("--fill", type=float, default=0.0)
    d.add_argument("--load", type=float, default=0.7)
    d.add_argument("--gpus", type=int, default=2048)
    d.add_argument("--max-jobs", type=int, default=5000)
    b = sub.add_parser("burst")
    b.add_argument("--preset", default="gb200-nvl72")
    b.add_argument("--fill", type=float, default=0.0)
    b.add_argument("--load", type=float, default=0.7)
    b.add_argument("--policies", default="gangplace-auto,kai-binpack,gp-rackfirst")
    a = ap.parse_args(argv)
    return {"grid": cmd_grid, "table": cmd_table, "diff": cmd_diff, "burst": cmd_burst}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())

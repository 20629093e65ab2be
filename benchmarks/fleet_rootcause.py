"""Fleet-efficiency root cause (issue 9): the instrumented simulator, the prototype objectives and
the large-gang workload behind docs/simulation.md ("Why gangplace queued longer"); the workload's
generator is now the engine's (engine/sim/synthetic_trace.py, ``--trace large-gang:seed=S``).

Not a pytest-benchmark file: run it directly.

    .venv/bin/python benchmarks/fleet_rootcause.py gen-large --seed 1 --out large-seed1.csv
    .venv/bin/python benchmarks/fleet_rootcause.py run --trace helios --gpus 2048 --start-days 0 \
        --end-days 10 --policy gangplace-heuristic            # one JSON line of measurements
    .venv/bin/python benchmarks/fleet_rootcause.py run --trace large-seed1.csv --gpus 1024 --load 0.95 \
        --policy gp-fgd --sim oldres                           # a prototype, the pre-fix simulator

``ISim`` records, besides the usual summary: heads blocked and how long they waited, reservations
made, GPUs idle inside the head's reservation over time, heads started after their shadow time
(broken reservations), jobs started by backfill (outside the reservation / before the shadow),
and per cluster sample the free GPUs on partly used nodes and the whole free nodes / domains.
``OldResSim`` is the simulator before reservations were held (reserved GPUs visible as free; it
runs with the whole-node hold, the model of that time; ``HOLD=nodes`` runs the others with it too);
``BusyFirstSim`` makes the head's reservation prefer nodes busy now (an experiment). Policies:
every ``make_policy`` name, plus the prototypes ``gp-singles``, ``gp-bu``, ``gp-fgd``,
``gp-bu-mask``, ``gp-heur-mask``, ``gp-bu-topo``, ``gp-bu-cap`` (``PROTOS``). The prototypes
wrap the engine's own placer (``GangplacePolicy``): docs/simulation.md's prototype table was measured
when that placer still compared part (3) top-down; on the current engine their starting answer is
bottom-up (``gangplace-heuristic-topdown`` keeps the older one).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import deque

import numpy as np

from gangplace.engine.place.capacity import FreeCapacity
from gangplace.engine.place.heuristic import run_kernel
from gangplace.engine.place.objective import objective_of_counts as score
from gangplace.engine.place.request import prepare
from gangplace.engine.sim import simulator as S
from gangplace.engine.sim.locality import domains_spanned
from gangplace.engine.sim.baselines import Assignment, GangplacePolicy, assignment_from_counts, make_policy
from gangplace.engine.sim.summary import summarize
from gangplace.engine.sim.synthetic_trace import big_gang_share, large_gang, write_csv
from gangplace.engine.sim.sweep import RunSpec, build_cluster, build_trace


def gen(seed, n=1500, path=None):
    """Write the large-gang workload (the engine's ``large-gang:seed=S:jobs=N`` trace) as a CSV."""
    trace = large_gang(seed, n)
    path = write_csv(trace, path or f"large-seed{seed}.csv")
    gt = trace.num_gpus * trace.duration_s
    print(path, "jobs", n, "share>=32:", round(big_gang_share(trace), 3),
          "share>8:", round(float(gt[trace.num_gpus > 8].sum() / gt.sum()), 3))


class ISim(S._Simulator):
    """Simulator that records head waits, reservations and their idle GPUs."""
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.head_first_block = {}   # head idx -> first time blocked
        self.res_log = []            # (head, t_made, shadow, reserved_gpus, idle_now)
        self.idle_series = []        # (t, idle reserved gpus)
        self.bf_outside = 0
        self.bf_before = 0
        self.head_start_vs_shadow = []  # start - shadow for heads that had a reservation
        self.cur_shadow = {}

    def _schedule(self, t):
        self._t = t
        super()._schedule(t)
        if self.reservation is not None and self.queue and self.reservation[0] == self.queue[0].idx \
                and self.reservation[2] is not None:
            nodes = self.reservation[2]
            self.idle_series.append((t, int(self.c.free_gpus[nodes].sum())))
        else:
            self.idle_series.append((t, 0))

    def _backfill(self, t):
        head = self.queue[0]
        self.head_first_block.setdefault(head.idx, t)
        new = self.reservation is None or self.reservation[0] != head.idx
        # count mode of starts
        orig_try = self._try
        modes = []
        def tr(job, mode, mask=None, head=-1):
            a = orig_try(job, mode, mask=mask, head=head)
            if a is not None and job is not self.queue[0]:
                modes.append(mode)
            return a
        self._try = tr
        try:
            super()._backfill(t)
        finally:
            del self._try
        if new and self.reservation is not None:
            _, shadow, nodes = self.reservation
            idle = int(self.c.free_gpus[nodes].sum()) if nodes is not None else 0
            self.res_log.append((head.idx, t, shadow, int(head.gang.gpus), idle))
            self.cur_shadow[head.idx] = shadow
        # 'now' tries in backfill may produce candidates that were then rejected; approximate:
        self.bf_outside += modes.count("outside")
        self.bf_before += len(modes) - modes.count("outside")

    def _start(self, job, a, t):
        if job.idx in self.cur_shadow:
            self.head_start_vs_shadow.append(t - self.cur_shadow.pop(job.idx))
        super()._start(job, a, t)


def frag_series(res, cluster):
    snaps = res.snapshots.astype(np.int64)
    cap = cluster.cap_gpus.astype(np.int64)
    gpn = int(cap.max())
    out = {}
    partial = (snaps > 0) & (snaps < gpn)
    out["stranded_node_gpus"] = (snaps * partial).sum(1)   # free GPUs on partly used nodes
    out["free_gpus"] = snaps.sum(1)
    whole = snaps == cap
    out["whole_free_nodes"] = whole.sum(1)
    for lv, name in enumerate(cluster.levels):
        nd = cluster.node_domain[lv]
        lo, hi = cluster.level_offset[lv], cluster.level_offset[lv + 1]
        n_in = np.bincount(nd, minlength=cluster.n_domains)[lo:hi]
        w = np.stack([np.bincount(nd, weights=row, minlength=cluster.n_domains)[lo:hi] for row in whole.astype(float)])
        out[f"whole_free_{name}"] = (w == n_in).sum(1)
        # free GPUs in domains that are partly used, on whole free nodes, that a gang of the domain size could not use
    return {k: v.astype(float) for k, v in out.items()}


def run(spec, policy, tag=None, scheduler="easy", old_res=False):
    cluster = build_cluster(spec)
    cap = int(cluster.free_gpus[cluster.schedulable.astype(bool)].sum())
    trace = build_trace(spec, cap)
    static = (cluster.node_domain.copy(), cluster.level_offset.copy(), cluster.cap_gpus.copy())
    cfg = S.SimConfig(scheduler=scheduler, backfill_depth=int(__import__("os").environ.get("DEPTH", "64")),
                      reservation_hold="nodes" if old_res else os.environ.get("HOLD", "gpus"))
    t0 = time.time()
    kind = __import__("os").environ.get("SIMKIND", "")
    sim = (OldResSim if old_res else BusyFirstSim if kind == "busyfirst" else ISim)(cluster, trace, policy, cfg, None)
    res = sim.run()
    summ = summarize(res, *static)
    fs = frag_series(res, cluster)
    hw = [sim.start[h] - t for h, t in sim.head_first_block.items() if sim.start[h] >= 0]
    idle = np.array(sim.idle_series, float)
    idle_gs = float(np.sum(np.diff(idle[:, 0]) * idle[:-1, 1])) if len(idle) > 1 else 0.0
    span = float(idle[-1, 0] - idle[0, 0]) if len(idle) > 1 else 1.0
    hs = np.array(sim.head_start_vs_shadow, float)
    big = trace.num_gpus >= 32
    started = res.start_s >= 0
    wait = (res.start_s - res.submit_s).astype(float)
    row = {
        "tag": tag or policy.name, "trace": spec.trace, "gpus": spec.gpus, "jobs": len(trace),
        "mean_wait_s": summ["mean_queue_delay_s"], "p99_wait_s": summ["p99_queue_delay_s"],
        "mean_jct_s": summ["mean_jct_s"], "opt_loc": summ["optimal_locality_fraction"],
        "subopt": summ["suboptimal_locality_fraction"], "slowdown": summ["slowdown_mean"],
        "util_window": summ["utilization_window"],
        "stranded_frac": summ["stranded_free_fraction_mean"],
        "mean_wait_1gpu_s": float(wait[started & (trace.num_gpus == 1)].mean()) if (started & (trace.num_gpus == 1)).any() else 0,
        "mean_wait_8gpu_s": float(wait[started & (trace.num_gpus == 8)].mean()) if (started & (trace.num_gpus == 8)).any() else 0,
        "mean_wait_ge32_s": float(wait[started & big].mean()) if (started & big).any() else 0,
        "heads_blocked": len(sim.head_first_block), "head_wait_mean_s": float(np.mean(hw)) if hw else 0,
        "head_wait_total_h": float(np.sum(hw)) / 3600 if hw else 0,
        "reservations": len(sim.res_log),
        "reserved_idle_gpus_mean": idle_gs / span if span else 0,
        "reserved_idle_at_make_mean": float(np.mean([r[4] for r in sim.res_log])) if sim.res_log else 0,
        "head_late_vs_shadow_n": int((hs > 0).sum()), "head_late_vs_shadow_mean_s": float(hs[hs > 0].mean()) if (hs > 0).any() else 0,
        "head_early_vs_shadow_n": int((hs < 0).sum()),
        "backfill_outside": sim.bf_outside, "backfill_before_shadow": sim.bf_before,
        "mean_stranded_node_gpus": float(fs["stranded_node_gpus"].mean()),
        "mean_free_gpus": float(fs["free_gpus"].mean()),
        "mean_whole_free_nodes": float(fs["whole_free_nodes"].mean()),
        **{f"mean_{k}": float(v.mean()) for k, v in fs.items() if k.startswith("whole_free_") and k != "whole_free_nodes"},
        "decision_ms_p50": summ["placement_latency_ms_p50"], "wall_s": time.time() - t0,
        "busy_first_used": getattr(sim, "busy_first_used", 0),
    }
    return row


class OldResSim(ISim):
    """The simulator before the fix: reserved nodes only unschedulable, their free GPUs still visible."""
    hold_reservation_gpus = False


class BusyFirstSim(ISim):
    """Experiment: the head's reservation prefers nodes that are busy now (freed by the shadow time),
    so capacity free now stays usable by backfill; kept only when it uses the same domain counts."""
    def _shadow(self, head):
        shadow, got = super()._shadow(head)
        if got is None or not math.isfinite(shadow):
            return shadow, got
        c = self.c
        busy_now_ok = c.free_gpus == 0  # nodes fully busy now
        saved_free, saved_pods, saved_sched = c.free_gpus, c.free_pods, c.schedulable.copy()
        proj_free, proj_pods = c.free_gpus.copy(), c.free_pods.copy()
        for end, idx, _ in sorted(self.running):
            if end > shadow:
                break
            a = self.assign[idx]
            proj_free[a.nodes] += a.gpus.astype(np.int32)
            proj_pods[a.nodes] += a.pods.astype(np.int32)
        try:
            c.free_gpus, c.free_pods = proj_free, proj_pods
            base = self.policy.place(c, head.gang)
            c.schedulable[~busy_now_ok] = 0
            alt = self.policy.place(c, head.gang)
        finally:
            c.free_gpus, c.free_pods = saved_free, saved_pods
            c.schedulable[:] = saved_sched
        if alt is not None and base is not None and tuple(self._domains(alt)) == tuple(self._domains(base)):
            self.busy_first_used = getattr(self, "busy_first_used", 0) + 1
            return shadow, alt
        return shadow, got


def _dom_free(c, free):
    """free GPUs per domain id (all levels)."""
    out = np.zeros(c.n_domains, np.int64)
    for lv in range(len(c.levels)):
        out += np.bincount(c.node_domain[lv], weights=free, minlength=c.n_domains).astype(np.int64)
    return out


class Singles(GangplacePolicy):
    """docs/simulation.md experiment: single-pod gangs to the fullest node that fits."""
    def __init__(self):
        super().__init__(1, "heuristic")
        self.name = "gp-singles"

    def place(self, c, g):
        if g.n_pods > 1:
            return super().place(c, g)
        idx = np.flatnonzero(c.schedulable.astype(bool) & (c.free_gpus >= g.gpus) & (c.free_pods >= 1))
        if not idx.size:
            return None
        i = idx[np.argmin(c.free_gpus[idx])]
        return Assignment(np.array([i]), np.array([g.gpus]), np.array([1]))


class BottomUp(GangplacePolicy):
    """Parts (1)-(2) as today; part (3) = stranded GPUs compared node level first, then the lowest
    domain level, ..., top level last. Multi-pod gangs: the heuristic answer plus the heuristic rooted
    at every domain of the lowest level where one domain holds the gang; the best by
    (domains, reversed stranded) wins."""
    def __init__(self, placer="heuristic"):
        super().__init__(1, placer)
        self.name = f"gp-bu-{placer}"

    def key_extra(self, c, nodes, taken):
        return ()

    def _single(self, c, g):
        ok = c.schedulable.astype(bool) & (c.free_gpus >= g.gpus) & (c.free_pods >= 1)
        idx = np.flatnonzero(ok)
        if not idx.size:
            return None
        df = _dom_free(c, c.free_gpus.astype(np.int64))
        keys = [df[c.node_domain[lv, idx]] for lv in range(len(c.levels))]  # top level first
        keys.append(c.free_gpus[idx].astype(np.int64))  # node leftover (primary)
        keys = self.single_keys(c, g, idx) + keys
        i = idx[np.lexsort(tuple(keys[::-1][::-1]))[0]] if False else idx[np.lexsort(keys)[0]]
        return Assignment(np.array([i]), np.array([g.gpus]), np.array([1]))

    def single_keys(self, c, g, idx):
        return []  # np.lexsort: last key is primary -> keys = [top ... lowest, node]

    def place(self, c, g):
        if g.n_pods == 1:
            return self._single(c, g)
        base = super().place(c, g)
        if base is None:
            return None
        prepared = prepare(c, g.request)
        L = len(c.levels)
        cands = [base]
        bdoms = self._doms(c, base)
        m = next((lv for lv in range(L - 1, -1, -1) if bdoms[lv] == 1), None)
        if m is not None:
            cap = np.where(c.schedulable.astype(bool), np.minimum(c.free_gpus // g.pod_gpus, c.free_pods), 0)
            dcap = np.bincount(c.node_domain[m], weights=cap, minlength=c.n_domains)
            for d in range(c.level_offset[m], c.level_offset[m + 1]):
                if dcap[d] < g.full_pods or d == c.node_domain[m, base.nodes[0]]:
                    continue
                a = self._rooted(c, prepared, g, d)
                if a is not None:
                    cands.append(a)
        best, bkey = None, None
        for a in cands:
            k = self._key(c, a)
            if bkey is None or k < bkey:
                best, bkey = a, k
        return best

    def _doms(self, c, a):
        return domains_spanned(c.node_domain, a.nodes).tolist()

    def _key(self, c, a):
        s = score(c, self._counts(c, a), self._gpus(c, a), len(c.levels) + 1, "bottomup", unit=(1, 1))
        return (*s.domains, *self.key_extra(c, a.nodes, a.gpus), *s.stranded[::-1])

    def _counts(self, c, a):
        x = np.zeros(c.n_nodes, np.int64); x[a.nodes] = a.pods; return x

    def _gpus(self, c, a):
        x = np.zeros(c.n_nodes, np.int64); x[a.nodes] = a.gpus; return x

    def _rooted(self, c, prepared, g, d):
        free = FreeCapacity.of(c)
        n, counts, _, _ = run_kernel(c, prepared, free, 0, d, prepared.eligible[0], -1)
        if n < g.full_pods:
            return None
        allc = [counts]
        if g.rest_gpus:
            free.take(counts, prepared.gang.pod_sets[0])
            # rest pod: bottom-up best-fit node inside the lowest domain holding the workers, widening
            used = np.flatnonzero(counts)
            ok = c.schedulable.astype(bool) & (free.gpus >= g.rest_gpus) & (free.pods >= 1)
            pick = None
            for lv in range(len(c.levels) - 1, -1, -1):
                doms = np.unique(c.node_domain[lv, used])
                if doms.size != 1:
                    continue
                inside = np.flatnonzero(ok & (c.node_domain[lv] == doms[0]))
                if inside.size:
                    # prefer nodes already used by the gang, then fewest free GPUs
                    inuse = np.isin(inside, used)
                    pick = inside[np.lexsort((free.gpus[inside], ~inuse))[0]]
                    break
            if pick is None:
                inside = np.flatnonzero(ok)
                if not inside.size:
                    return None
                pick = inside[np.argmin(free.gpus[inside])]
            rc = np.zeros(c.n_nodes, np.int64); rc[pick] = 1
            allc.append(rc)
        sizes = [ps.gpus for ps in g.request.pod_sets]
        return assignment_from_counts(allc, sizes)


class FGD(BottomUp):
    """Workload-aware fragmentation (FGD-like, per level): choose among the locality-optimal
    candidates the one that least increases the expected free GPUs the recent gang mix cannot use."""
    def __init__(self, placer="heuristic", window=300):
        super().__init__(placer)
        self.name = f"gp-fgd-{placer}"
        self.recent = deque(maxlen=window)
        self._last = None

    def _mix(self):
        if not self.recent:
            return np.array([1]), np.array([1.0])
        v, n = np.unique(np.array(self.recent), return_counts=True)
        return v, n / n.sum()

    def frag(self, c, free):
        """Expected free GPUs that a gang drawn from the mix could not use (per node / per domain)."""
        gpn = int(c.cap_gpus.max())
        sizes, p = self._mix()
        free = free.astype(np.int64)
        ok = c.schedulable.astype(bool)
        free = np.where(ok, free, 0)
        whole = (free == c.cap_gpus)
        partial_free = free[~whole].sum()
        total = 0.0
        for G, pg in zip(sizes, p):
            if G <= gpn:
                total += pg * free[free < G].sum()
            else:
                k = -(-G // gpn)
                # lowest level whose domains can hold k nodes
                f = partial_free
                lv_use = None
                for lv in range(len(c.levels) - 1, -1, -1):
                    nd = np.bincount(c.node_domain[lv], minlength=c.n_domains)[c.level_offset[lv]:c.level_offset[lv + 1]]
                    if nd.max() >= k:
                        lv_use = lv
                        break
                if lv_use is not None:
                    wn = np.bincount(c.node_domain[lv_use], weights=whole.astype(float), minlength=c.n_domains)[
                        c.level_offset[lv_use]:c.level_offset[lv_use + 1]]
                    f += gpn * wn[wn < k].sum()
                total += pg * f
        return total

    def place(self, c, g):
        if self._last is not g:
            self.recent.append(g.gpus)
            self._last = g
        return super().place(c, g)

    def _key(self, c, a):
        s = score(c, self._counts(c, a), self._gpus(c, a), len(c.levels) + 1, "bottomup", unit=(1, 1))
        after = c.free_gpus.astype(np.int64).copy(); after[a.nodes] -= a.gpus
        return (*s.domains, round(self.frag(c, after), 6), *s.stranded[::-1])

    def _single(self, c, g):
        ok = c.schedulable.astype(bool) & (c.free_gpus >= g.gpus) & (c.free_pods >= 1)
        idx = np.flatnonzero(ok)
        if not idx.size:
            return None
        # one representative node per (free GPUs, lowest domain): the first in topology order
        ld = c.node_domain[-1, idx] if len(c.levels) else np.zeros(idx.size, np.int64)
        _, first = np.unique(np.stack([c.free_gpus[idx], ld]), axis=1, return_index=True)
        reps = idx[first]
        df = _dom_free(c, c.free_gpus.astype(np.int64))
        best, bk = None, None
        for i in reps.tolist():
            after = c.free_gpus.astype(np.int64).copy(); after[i] -= g.gpus
            k = (round(self.frag(c, after), 6), int(c.free_gpus[i]),
                 *[int(df[c.node_domain[lv, i]]) for lv in range(len(c.levels) - 1, -1, -1)], i)
            if bk is None or k < bk:
                best, bk = i, k
        return Assignment(np.array([best]), np.array([g.gpus]), np.array([1]))


PROTOS = {"gp-singles": Singles, "gp-bu": BottomUp, "gp-fgd": FGD,
          "gp-bu-auto": lambda: BottomUp("auto")}


class _MaskMixin:
    """Reserved (masked, unschedulable) nodes count as full: their free GPUs are hidden from best fit."""
    def place(self, c, g):
        ok = c.schedulable.astype(bool)
        if ok.all():
            return super().place(c, g)
        saved = c.free_gpus
        c.free_gpus = np.where(ok, saved, 0).astype(saved.dtype)
        try:
            a = super().place(c, g)
        finally:
            c.free_gpus = saved
        return a


class BUMask(_MaskMixin, BottomUp):
    def __init__(self):
        super().__init__("heuristic")
        self.name = "gp-bu-mask"


class HeurMask(_MaskMixin, GangplacePolicy):
    def __init__(self):
        super().__init__(1, "heuristic")
        self.name = "gp-heur-mask"


PROTOS.update({"gp-bu-mask": BUMask, "gp-heur-mask": HeurMask})


class BUTopo(BottomUp):
    """Variant: single-pod gangs take the tightest node, ties in topology order (no domain best fit)."""
    def __init__(self):
        super().__init__("heuristic")
        self.name = "gp-bu-topo"

    def _single(self, c, g):
        ok = c.schedulable.astype(bool) & (c.free_gpus >= g.gpus) & (c.free_pods >= 1)
        idx = np.flatnonzero(ok)
        if not idx.size:
            return None
        i = idx[np.argmin(c.free_gpus[idx])]
        return Assignment(np.array([i]), np.array([g.gpus]), np.array([1]))

    def place(self, c, g):
        if g.n_pods == 1:
            return self._single(c, g)
        return GangplacePolicy.place(self, c, g)


class BUCap(BottomUp):
    """Variant: multi-pod gangs compare, per level bottom-up, the pods of the gang's size the touched
    domains could still take (whole-node capacity), then their free GPUs."""
    def __init__(self):
        super().__init__("heuristic")
        self.name = "gp-bu-cap"

    def _key(self, c, a):
        s = score(c, self._counts(c, a), self._gpus(c, a), len(c.levels) + 1, "bottomup", unit=(1, 1))
        after = c.free_gpus.astype(np.int64).copy(); after[a.nodes] -= a.gpus
        pg = int(c.cap_gpus.max())
        cap = after // pg
        ks = []
        for lv in range(len(c.levels) - 1, -1, -1):
            doms = np.unique(c.node_domain[lv, a.nodes])
            ks.append(int(np.isin(c.node_domain[lv], doms).astype(np.int64) @ cap))
        return (*s.domains, s.stranded[-1], *ks, *s.stranded[::-1])


PROTOS.update({"gp-bu-topo": BUTopo, "gp-bu-cap": BUCap})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen-large", help="write a large-gang trace CSV")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--jobs", type=int, default=1500)
    g.add_argument("--out", required=True)
    r = sub.add_parser("run", help="one instrumented run; prints one JSON line")
    r.add_argument("--trace", default="helios")
    r.add_argument("--gpus", type=int, default=2048)
    r.add_argument("--preset", default="dgx-h100")
    r.add_argument("--start-days", type=float, default=0.0)
    r.add_argument("--end-days", type=float, default=None)
    r.add_argument("--max-jobs", type=int, default=0)
    r.add_argument("--load", type=float, default=0.8)
    r.add_argument("--fill", type=float, default=0.0)
    r.add_argument("--scheduler", default="easy")
    r.add_argument("--policy", default="gangplace-heuristic")
    r.add_argument("--sim", choices=("new", "oldres", "busyfirst"), default="new")
    a = ap.parse_args(argv)
    if a.cmd == "gen-large":
        gen(a.seed, a.jobs, a.out)
        return 0
    spec = RunSpec(trace=a.trace, gpus=a.gpus, preset=a.preset, start_s=a.start_days * 86400,
                   end_s=a.end_days * 86400 if a.end_days else None, max_jobs=a.max_jobs or None, load=a.load,
                   fill=a.fill)
    p = PROTOS[a.policy]() if a.policy in PROTOS else make_policy(a.policy, seed=1)
    os.environ["SIMKIND"] = "busyfirst" if a.sim == "busyfirst" else ""
    print(json.dumps(run(spec, p, tag=a.policy, scheduler=a.scheduler, old_res=a.sim == "oldres")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

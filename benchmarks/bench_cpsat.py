"""CP-SAT and the auto policy: latency, proved-optimal rate, heuristic gap, batch gains.

Run: ``.venv/bin/python benchmarks/bench_cpsat.py [--quick] [--section grid,cpsat,gap,batch,preempt] [--grid-gpus 16384]``
Prints markdown tables (the ``## CP-SAT and auto`` section of docs/benchmarks.md is made from them).

Sections
- grid: the DESIGN budget grid (``generate(preset, gpus=N, fill=0.6, seed=1)``: dgx-h100 16,384 /
  gb200-nvl72 16,384 / dgx-h100 131,072) with gangs of 1-512 pods of several pod sizes, one pod set
  and with a CPU-only leader pod set; ``place(placer="auto", time_limit_ms=100)`` wall time (the
  model build included, the one-time ortools import excluded), which placer answered, whether it
  is proved optimal, and within 100 ms / 1 s.
- cpsat: ``placer="cpsat"`` alone (always runs CP-SAT seeded with the heuristic) at 100 ms and 1 s.
- gap: the heuristic against the exact optimum (auto with a long budget, proved) over thousands of
  random instances on small clusters: how often it is optimal, and by how much it misses.
- batch: random pending queues on fragmented clusters, ``place_batch`` vs one by one in priority order.
- agree: auto's answers (mostly the tree DP's) against pure CP-SAT with a 20 s budget.
- preempt: ``plan_preemption`` latency and victims on full clusters.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from gangplace.engine import place
from gangplace.engine.api import solve
from gangplace.engine.model.types import GangRequest, PodSet, SliceLayer, TopologyConstraint
from gangplace.engine.place.request import prepare
from gangplace.engine.exact.auto import improve
from gangplace.engine.exact.batch import place_batch
from gangplace.engine.exact.cpsat import load_cp_model, solve_cpsat
from gangplace.engine.exact.preempt import plan_preemption
from gangplace.engine.place.solution import objective_of
from gangplace.engine.model.synthetic import generate

GRID = [("dgx-h100", 2048, 8, 8), ("dgx-h100", 16384, 8, 8), ("gb200-nvl72", 16384, 16, 4), ("dgx-h100", 131072, 128, 8)]
SIZES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 448, 512]


def _pct(v, q):
    return float(np.percentile(v, q)) if len(v) else float("nan")


def _warm():
    load_cp_model()
    c = generate("dgx-h100", gpus=256, fill=0.5, seed=1)
    place(c, GangRequest("w", (PodSet("w", 4, gpus=8), PodSet("l", 1, gpus=0, cpu=1000))), "cpsat")


def _gangs(row_k: int, gpn: int, quick: bool):
    shapes = [gpn, max(1, gpn // 2), 1] if not quick else [gpn]
    sizes = SIZES if not quick else SIZES[::3]
    out = [("row", GangRequest("row", (PodSet("w", row_k, gpus=gpn),)))]
    for k in sizes:
        for gpp in shapes:
            out.append(("1set", GangRequest(f"k{k}x{gpp}", (PodSet("w", k, gpus=gpp),))))
        out.append(("leader", GangRequest(f"k{k}+l", (PodSet("w", k, gpus=gpn), PodSet("leader", 1, gpus=0, cpu=4000)))))
    return out


def bench_grid(quick: bool) -> None:
    print("\n### auto on the budget grid (time_limit_ms=100, 1 worker)\n")
    print("| cluster | gangs | placed | proved ≤100 ms | proved (any time) | needed CP-SAT or DP | by heuristic / dp / cpsat "
          "| p50 ms | p90 ms | p99 ms | max ms | p50 / p99 CPU ms | proved ≤1 s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for preset, N, k, gpn in GRID:
        c = generate(preset, gpus=N, fill=0.6, seed=1)
        rows = {"one pod set": [], "with leader": []}
        for kind, g in _gangs(k, gpn, quick):
            p = prepare(c, g)
            h = solve(c, p, "heuristic")
            t0, c0 = time.perf_counter(), time.process_time()
            pl = place(c, g, "auto", time_limit_ms=100.0, workers=1, seed=0)
            ms, cpu = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
            rec = dict(ms=ms, cpu=cpu, placed=pl.placed, optimal=pl.optimal, placer=pl.placer, h_optimal=h.optimal)
            if pl.placed and h.placed:
                hk = objective_of(c, p, h).key
                rec["better"] = tuple(pl.objective) < hk
            rows["with leader" if kind == "leader" else "one pod set"].append(rec)
        rows["all"] = rows["one pod set"] + rows["with leader"]
        for name, rs in rows.items():
            placed = [r for r in rs if r["placed"]]
            ms = [r["ms"] for r in placed]
            cpu = [r["cpu"] for r in placed]
            ok100 = sum(r["optimal"] and r["ms"] <= 100.0 for r in placed)
            ok1s = sum(r["optimal"] and r["ms"] <= 1000.0 for r in placed)
            opt = sum(r["optimal"] for r in placed)
            need = sum(not r["h_optimal"] for r in placed)
            by = {x: sum(r["placer"] == x for r in placed) for x in ("heuristic", "dp", "cpsat")}
            print(f"| {preset} {N:,} ({name}) | {len(rs)} | {len(placed)} | {ok100}/{len(placed)} "
                  f"({ok100 / max(len(placed), 1):.0%}) | {opt}/{len(placed)} | {need} | "
                  f"{by['heuristic']} / {by['dp']} / {by['cpsat']} | {_pct(ms, 50):.2f} | {_pct(ms, 90):.2f} | "
                  f"{_pct(ms, 99):.2f} | {max(ms) if ms else 0:.1f} | {_pct(cpu, 50):.2f} / {_pct(cpu, 99):.2f} | "
                  f"{ok1s}/{len(placed)} |")
        sys.stdout.flush()


def bench_cpsat(quick: bool) -> None:
    print("\n### CP-SAT alone (placer=cpsat: always solves, heuristic as hint, 1 worker)\n")
    print("| cluster | budget | cases | proved | p50 ms | p90 ms | better than heuristic |")
    print("|---|---|---|---|---|---|---|")
    for preset, N in (("dgx-h100", 2048), ("dgx-h100", 16384), ("dgx-h100", 131072)):
        c = generate(preset, gpus=N, fill=0.6, seed=1)
        for budget in (100.0, 1000.0):
            if quick and budget > 100:
                continue
            res = []
            for k in ([4, 16, 64, 256] if quick else [2, 4, 8, 16, 32, 64, 128, 256, 512]):
                for leader in (False, True):
                    sets = (PodSet("w", k, gpus=8),) + ((PodSet("leader", 1, gpus=0, cpu=4000),) if leader else ())
                    g = GangRequest("g", sets)
                    p = prepare(c, g)
                    h = solve(c, p, "heuristic")
                    t0 = time.perf_counter()
                    s = improve(c, p, h, "cpsat", time_limit_ms=budget, workers=1, seed=0)
                    ms = (time.perf_counter() - t0) * 1e3
                    better = s.placed and h.placed and objective_of(c, p, s).key < objective_of(c, p, h).key
                    res.append((ms, s.optimal, better))
            ms = [r[0] for r in res]
            print(f"| {preset} {N:,} | {budget:.0f} ms | {len(res)} | {sum(r[1] for r in res)}/{len(res)} | "
                  f"{_pct(ms, 50):.1f} | {_pct(ms, 90):.1f} | {sum(r[2] for r in res)} |")
            sys.stdout.flush()


def _random_gang(rng, c, i: int) -> GangRequest:
    gpn = int(c.cap_gpus.max())
    k = int(rng.choice([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]))
    gpp = int(rng.choice([gpn, gpn, max(1, gpn // 2), 1]))
    sets = [PodSet("w", k, gpus=gpp)]
    if rng.integers(0, 4) == 0:
        sets.append(PodSet("leader", 1, gpus=0, cpu=4000))
    topo = TopologyConstraint()
    r = int(rng.integers(0, 6))
    lv = c.levels
    if r == 1:
        topo = TopologyConstraint(preferred=lv[-1])
    elif r == 2:
        topo = TopologyConstraint(required=lv[0])
    elif r == 3 and k % 2 == 0 and len(sets) == 1:
        topo = TopologyConstraint(slices=(SliceLayer(2, lv[-1]),))
    if rng.integers(0, 5) == 0 and len(sets) == 1 and r != 3:
        sets[0] = PodSet("w", k, gpus=gpp, min_count=max(1, k // 2))
    return GangRequest(f"g{i}", tuple(sets), topo)


def bench_gap(quick: bool) -> None:
    n = 300 if quick else 3000
    print(f"\n### heuristic vs the exact optimum, {n} random instances\n")
    print("Clusters: random preset, 256-1,024 GPUs, fill 0.3-0.85, random seed; gangs: 1-64 pods, "
          "1-8 GPUs per pod, 1 in 4 with a CPU-only leader, random preferred / required / slice / min_count. "
          "Exact = auto with a 5 s budget (proved cases only).\n")
    rng = np.random.default_rng(12345)
    stats = dict(cases=0, proved=0, h_opt=0, h_opt_12=0, gaps=[], first_level=[], auto_ms=[], need=0,
                 improved=0, improve_rel=[], placers={}, a_opt=0)
    clusters = {}
    t_start = time.perf_counter()
    for i in range(n):
        preset = str(rng.choice(["dgx-h100", "gb200-nvl72", "fat-tree", "hetero"]))
        gpus = int(rng.choice([256, 512, 1024]))
        seed = int(rng.integers(0, 40))
        fill = float(rng.choice([0.3, 0.5, 0.6, 0.7, 0.85]))
        key = (preset, gpus, seed, fill)
        if key not in clusters:
            clusters[key] = generate(preset, gpus=gpus, fill=fill, seed=seed)
        c = clusters[key]
        g = _random_gang(rng, c, i)
        p = prepare(c, g)
        h = solve(c, p, "heuristic")
        if not h.placed:
            continue
        stats["cases"] += 1
        t0 = time.perf_counter()
        a100 = solve(c, p, "auto", time_limit_ms=100.0, workers=1, seed=0)
        stats["auto_ms"].append((time.perf_counter() - t0) * 1e3)
        stats["placers"][a100.placer] = stats["placers"].get(a100.placer, 0) + 1
        stats["a_opt"] += bool(a100.optimal)
        ex = a100 if a100.optimal else solve(c, p, "auto", time_limit_ms=5000.0, workers=1, seed=0)
        if not ex.optimal:
            continue
        stats["proved"] += 1
        nn = 1 + p.counted_levels
        hk, ek = objective_of(c, p, h).key[:nn], objective_of(c, p, ex).key[:nn]
        ak = objective_of(c, p, a100).key[:nn]
        if not h.optimal:
            stats["need"] += 1
        if hk == ek:
            stats["h_opt_12"] += 1
        else:
            j = next(i for i in range(nn) if hk[i] != ek[i])
            stats["first_level"].append("pods" if j == 0 else ("nodes" if j - 1 == len(c.levels) else f"L{j - 1}"))
            v, b = (hk[j], ek[j]) if j else (-hk[j], -ek[j])
            stats["gaps"].append(abs(v - b) / max(abs(v), 1))
        if ak < hk:
            stats["improved"] += 1
            j = next(i for i in range(nn) if hk[i] != ak[i])
            stats["improve_rel"].append(abs(hk[j] - ak[j]) / max(abs(hk[j]), 1))
    s = stats
    lv_hist = {j: s["first_level"].count(j) for j in sorted(set(s["first_level"]))}
    print("| instances placed | proved exact | heuristic optimal on (1)-(2) | heuristic missed | mean gap when missed "
          "| max gap | first component missed (L0 = top level) | auto(100 ms) improved | mean improvement | auto p50 / p90 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    miss = len(s["gaps"])
    print(f"| {s['cases']} | {s['proved']} | {s['h_opt_12']} ({s['h_opt_12'] / max(s['proved'], 1):.1%}) | {miss} | "
          f"{statistics.mean(s['gaps']) if s['gaps'] else 0:.1%} | {max(s['gaps']) if s['gaps'] else 0:.1%} | "
          f"{lv_hist} | {s['improved']} | {statistics.mean(s['improve_rel']) if s['improve_rel'] else 0:.1%} | "
          f"{_pct(s['auto_ms'], 50):.2f} / {_pct(s['auto_ms'], 90):.2f} |")
    print(f"\nbounds alone did not prove the heuristic in {s['need']} of {s['proved']} proved cases "
          f"(auto then ran the DP or CP-SAT); auto's answers by placer: {s['placers']}; "
          f"auto within 100 ms proved {s['a_opt']} of {s['cases']} placed instances; "
          f"{time.perf_counter() - t_start:.0f} s total")


def bench_agree(quick: bool) -> None:
    """The tree DP / auto answers against pure CP-SAT given a long budget (cross-check)."""
    n = 20 if quick else 80
    print(f"\n### auto (tree DP / CP-SAT) against pure CP-SAT with a 20 s budget, {n} random instances\n")
    rng = np.random.default_rng(99)
    agree = dis = unproved = 0
    for i in range(n):
        preset = str(rng.choice(["dgx-h100", "gb200-nvl72", "fat-tree", "hetero"]))
        c = generate(preset, gpus=int(rng.choice([256, 512, 1024])), fill=float(rng.uniform(0.3, 0.8)),
                     seed=int(rng.integers(1_000_000)))
        g = _random_gang(rng, c, i)
        p = prepare(c, g)
        a = solve(c, p, "auto", time_limit_ms=100.0, workers=1, seed=0)
        if not a.placed:
            continue
        h = solve(c, p, "heuristic")
        x = solve_cpsat(c, p, h, time_limit_ms=20_000.0, workers=1, seed=0)
        if not x.proved_domains or not a.optimal:
            unproved += 1
            continue
        nn = 1 + p.counted_levels
        if objective_of(c, p, a).key[:nn] == objective_of(c, p, x.solution).key[:nn]:
            agree += 1
        else:
            dis += 1
    print("| instances | both proved, equal on (1)-(2) | disagree | not both proved |")
    print("|---|---|---|---|")
    print(f"| {n} | {agree} | {dis} | {unproved} |")


def bench_batch(quick: bool) -> None:
    n = 10 if quick else 40
    print(f"\n### batch placement vs one by one in priority order ({n} random queues)\n")
    print("Clusters: dgx-h100 / gb200-nvl72, 2,048 GPUs, fill 0.55-0.8 (fragmented); queues of 8-30 gangs, "
          "1-32 pods, half with a required lowest level, priorities 0-2. place_batch(time_limit_ms=1000).\n")
    rng = np.random.default_rng(7)
    tot = dict(g=0, gpus=0, w=0, bg=0, bgpus=0, bw=0, better=0, proved=0, ms=[], gangs=0)
    for t in range(n):
        preset = str(rng.choice(["dgx-h100", "gb200-nvl72"]))
        c = generate(preset, gpus=2048, fill=float(rng.uniform(0.55, 0.8)), seed=int(rng.integers(1e6)))
        gangs = []
        for j in range(int(rng.integers(8, 31))):
            k = int(rng.choice([1, 2, 4, 8, 16, 32]))
            gpp = int(rng.choice([2, 4, 8]) if preset == "dgx-h100" else rng.choice([1, 2, 4]))
            req = c.levels[-1] if (k > 1 and rng.integers(0, 2)) else None
            gangs.append(GangRequest(f"g{j}", (PodSet("w", k, gpus=gpp),), TopologyConstraint(required=req),
                                     priority=int(rng.integers(0, 3))))
        t0 = time.perf_counter()
        r = place_batch(c, gangs, time_limit_ms=1000.0, workers=1, seed=0)
        tot["ms"].append((time.perf_counter() - t0) * 1e3)
        b = r.baseline
        tot["gangs"] += len(gangs)
        tot["g"] += r.placed_gangs
        tot["gpus"] += r.placed_gpus
        tot["w"] += r.weighted_placed
        tot["bg"] += b["placed_gangs"]
        tot["bgpus"] += b["placed_gpus"]
        tot["bw"] += b["weighted_placed"]
        tot["better"] += r.weighted_placed > b["weighted_placed"]
        tot["proved"] += r.optimal
    print("| queues | gangs | placed one by one | placed by batch | GPUs one by one | GPUs by batch | "
          "weighted one by one | weighted by batch | queues improved | proved best | p50 / max ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {n} | {tot['gangs']} | {tot['bg']} | {tot['g']} (+{tot['g'] - tot['bg']}) | {tot['bgpus']} | "
          f"{tot['gpus']} ({tot['gpus'] - tot['bgpus']:+d}) | {tot['bw']} | {tot['w']} (+{tot['w'] - tot['bw']}) | "
          f"{tot['better']} | {tot['proved']} | {_pct(tot['ms'], 50):.0f} / {max(tot['ms']):.0f} |")


def bench_preempt(quick: bool) -> None:
    print("\n### preemption planning (gang priority 3 on a 90-95 % full cluster; background priorities 0-2)\n")
    print("| cluster | gang | victims | evicted GPUs | cost | proved cheapest | placement domains | ms |")
    print("|---|---|---|---|---|---|---|---|")
    for N, fill in ((2048, 0.9), (16384, 0.95)):
        if quick and N > 2048:
            continue
        c = generate("dgx-h100", gpus=N, fill=fill, seed=1)
        for k, req in ((16, None), (32, "su"), (64, "block")):
            g = GangRequest("p", (PodSet("w", k, gpus=8),), TopologyConstraint(required=req), priority=3)
            t0 = time.perf_counter()
            pl = plan_preemption(c, g, time_limit_ms=1000.0)
            ms = (time.perf_counter() - t0) * 1e3
            print(f"| dgx-h100 {N:,} fill {fill} | {k}x8{' required ' + req if req else ''} | {len(pl.victims)} | "
                  f"{pl.evicted_gpus} | {pl.cost} | {'yes' if pl.optimal else 'no'} | "
                  f"{dict(pl.placement.domains_used)} | {ms:.0f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--section", default="grid,cpsat,gap,agree,batch,preempt")
    ap.add_argument("--grid-gpus", default="", help="grid: only the clusters of these sizes (e.g. 16384)")
    a = ap.parse_args(argv)
    if a.grid_gpus:
        GRID[:] = [row for row in GRID if str(row[1]) in a.grid_gpus.split(",")]
    _warm()
    for name in a.section.split(","):
        {"grid": bench_grid, "cpsat": bench_cpsat, "gap": bench_gap, "batch": bench_batch,
         "preempt": bench_preempt, "agree": bench_agree}[name](a.quick)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

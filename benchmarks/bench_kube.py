"""Extender throughput on a real kube-scheduler v1.36.3 (``make bench-kube``; figures in docs/benchmarks.md).

Not a timed test: a script. For each variant -- the scheduler alone, the no-logic floor extender
(tests/e2e/floor_extender.py), gangplace as the extender, and the gangplace-scheduler (the
Gangplace plugin over gRPC, deploy/overlays/plugin/scheduler-config.yaml) -- and each run, on a fresh control plane
(tests/e2e/harness.py) with 240 fake 8-GPU nodes (3 blocks x 8 racks x 10 nodes):

1. backlog: 500 one-GPU pods are created while no scheduler runs, then the scheduler starts;
   pods/s = (bound pods - 1) / (last bind - first bind), from the scheduler's Scheduled events;
2. gangs: 50 gangs of 8 x 8-GPU pods are created by 4 threads while the scheduler runs, at most 20
   gangs alive at once; each gang is force-deleted once whole (a short job), so capacity never runs
   out; pods/s over the phase and the gang latency (last member created -> last member bound,
   p50/p99);
3. gang backlog: the scheduler is stopped, 24 gangs of 8 x 8-GPU pods (1,536 of the 1,920 GPUs,
   one rack each) are created, the scheduler starts again; pods/s as for the backlog. This is the
   gang throughput the scheduler itself sustains (phase 2 is bound by how fast pods are created);
4. gangplace's own mean latency per extender verb (``gangplace_request_seconds``), per phase;
5. the CPU time (user + system) the extender process (gangplace, the floor extender) used during
   the backlog phase, per pod: its cost per pod whatever else loads the machine; and the machine's
   1-minute load average at the start and the end of each run.

Every variant loads deploy/base/scheduler-config.yaml with the client QPS raised to 1,000 (the default
50/s would cap all three) and, for the scheduler alone, without the ``extenders`` section.

    .venv/bin/python benchmarks/bench_kube.py [--runs 3] [--out reports/bench-kube.json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import urllib3  # noqa: E402

from tests.e2e.harness import (ControlPlane, Kube, gpu_pod, missing_components, plugin_scheduler_config,  # noqa: E402
                               scheduler_config, topology_nodes, wait_for)

VARIANTS = ("scheduler alone", "floor extender", "gangplace", "gangplace-scheduler")
PLUGIN = "gangplace-scheduler"
QPS = 1000


def bound_names(kube: Kube, namespace: str) -> set[str]:
    return {p["metadata"]["name"] for p in kube.get(f"/api/v1/namespaces/{namespace}/pods",
                                                    params={"fieldSelector": "spec.nodeName!="})["items"]}


def scheduled_at(kube: Kube, namespace: str) -> dict[str, float]:
    """pod name -> wall time of its bind, from the scheduler's ``Scheduled`` events (eventTime is a
    MicroTime, recorded when the bind returned). A watch cannot keep up: the API server closes a
    watcher that lags during a burst of 1,000+ pod updates per second."""
    out = {}
    for ev in kube.get(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")["items"]:
        if ev.get("reason") == "Scheduled" and ev.get("eventTime"):
            t = dt.datetime.fromisoformat(ev["eventTime"].replace("Z", "+00:00")).timestamp()
            out[ev["regarding"]["name"]] = min(t, out.get(ev["regarding"]["name"], t))
    return out


def gangplace_verbs(url: str) -> dict[str, tuple[float, float]]:
    """verb -> (sum of seconds, count) of gangplace_request_seconds on the extender transport."""
    text = urllib3.request("GET", f"{url}/metrics", timeout=5).data.decode()
    out: dict[str, list[float]] = {}
    for kind, labels, value in re.findall(r"^gangplace_request_seconds_(sum|count)\{([^}]*)\} (\S+)$", text, re.M):
        verb = dict(re.findall(r'(\w+)="([^"]*)"', labels)).get("verb", "?")
        out.setdefault(verb, [0.0, 0.0])[0 if kind == "sum" else 1] += float(value)
    return {v: (s, c) for v, (s, c) in out.items()}


def mean_ms(before, after) -> dict[str, float]:
    res = {}
    for verb, (s, c) in after.items():
        s0, c0 = before.get(verb, (0.0, 0.0))
        if c - c0 > 0:
            res[verb] = round(1000 * (s - s0) / (c - c0), 2)
    return res


def cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) process ``pid`` has used so far; 0 without one."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def calls(before, after) -> dict[str, int]:
    return {verb: int(c - before.get(verb, (0.0, 0.0))[1]) for verb, (_, c) in after.items()
            if c - before.get(verb, (0.0, 0.0))[1] > 0}


def rate(times: list[float]) -> float:
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else float("nan")


def run_once(variant: str, *, backlog: int, gangs: int, gang_size: int, blocks: int, racks: int,
             nodes_per_rack: int, gang_backlog: int = 0, plugin_args: tuple[str, ...] = ()) -> dict:
    cp = ControlPlane().start()
    try:
        kube = cp.admin
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda nl: kube.apply_node(nl[0], labels=nl[1]), topology_nodes(blocks, racks, nodes_per_rack)))
        url = proc = None
        if variant in ("gangplace", PLUGIN):
            cp.apply_rbac()
            proc, url = cp.start_gangplace()
        elif variant == "floor extender":
            proc, url = cp.start_floor()
        pid = proc.popen.pid if proc is not None else None
        if variant == PLUGIN:
            config = plugin_scheduler_config(cp.kubeconfig("scheduler"), cp.grpc_addresses["gangplace"], qps=QPS)
        else:
            config = scheduler_config(cp.kubeconfig("scheduler"), url, extender=url is not None, qps=QPS)
        result: dict = {"variant": variant, "load_avg_1m_at_start": round(os.getloadavg()[0], 2)}

        # 1. the backlog: pods queued while no scheduler runs
        kube.ensure_namespace("backlog")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: kube.create_pod("backlog", gpu_pod(f"p-{i}", gpus=1)), range(backlog)))
        measured = variant in ("gangplace", PLUGIN)  # gangplace's own verbs: HTTP (extender) or gRPC (plugin)
        m0 = gangplace_verbs(url) if measured else {}
        t_start, cpu0 = time.time(), cpu_s(pid)
        cp.start_scheduler(config, binary=PLUGIN if variant == PLUGIN else "kube-scheduler",
                           extra_args=plugin_args if variant == PLUGIN else ())
        wait_for(lambda: len(bound_names(kube, "backlog")) >= backlog, 300, f"{backlog} backlog pods bound", interval=0.2)
        if pid is not None:  # the extender's (or gRPC server's) own CPU per pod, whatever the machine's load
            result["backlog_extender_cpu_ms_per_pod"] = round((cpu_s(pid) - cpu0) * 1000 / backlog, 3)
        times = list(wait_for(lambda: (t := scheduled_at(kube, "backlog")) and len(t) >= backlog and t, 60,
                              "the Scheduled events").values())
        result["backlog_pods_per_s"] = round(rate(times), 1)
        result["backlog_s_from_scheduler_start"] = round(max(times) - t_start, 2)
        if measured:
            m1 = gangplace_verbs(url)
            result["backlog_verb_mean_ms"] = mean_ms(m0, m1)
            result["backlog_verb_calls"] = calls(m0, m1)
        # bound pods of no kubelet: force-delete, and start the gangs only once they are gone
        kube.request("DELETE", "/api/v1/namespaces/backlog/pods", params={"gracePeriodSeconds": "0"})
        wait_for(lambda: not kube.pods("backlog"), 60, "the backlog deleted")

        # 2. gangs, created while the scheduler runs; each deleted once whole
        kube.ensure_namespace("gangs")
        created_last: dict[str, float] = {}
        done: set[str] = set()
        m1 = gangplace_verbs(url) if measured else {}

        # at most `alive` gangs at once (20 x 64 of 1,920 GPUs): capacity never runs out, so a slow
        # gang is the scheduler's doing, not the benchmark's
        alive = threading.Semaphore(20)

        def create(g: int):
            alive.acquire()
            name = f"g{g}"
            for i in range(gang_size):
                kube.create_pod("gangs", gpu_pod(f"{name}-{i}", gpus=8, gang=name, size=gang_size))
            created_last[name] = time.time()

        def releaser(stop: threading.Event):
            while not stop.is_set() and len(done) < gangs:
                now_bound = bound_names(kube, "gangs")
                for g in range(gangs):
                    name = f"g{g}"
                    if name not in done and all(f"{name}-{i}" in now_bound for i in range(gang_size)):
                        done.add(name)
                        kube.request("DELETE", "/api/v1/namespaces/gangs/pods", params={
                            "gracePeriodSeconds": "0", "labelSelector": f"gangplace.dev/gang={name}"})
                        alive.release()
                time.sleep(0.1)

        stop = threading.Event()
        rel = threading.Thread(target=releaser, args=(stop,), daemon=True)
        rel.start()
        t0 = time.time()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(create, range(gangs)))
        result["gang_create_pods_per_s"] = round(gangs * gang_size / (time.time() - t0), 1)
        wait_for(lambda: len(done) >= gangs, 300, f"{gangs} gangs bound", interval=0.1)
        stop.set()
        rel.join(5)
        at = wait_for(lambda: (t := scheduled_at(kube, "gangs")) and len(t) >= gangs * gang_size and t, 60,
                      "the Scheduled events")
        times = list(at.values())
        failed = [ev for ev in kube.get("/apis/events.k8s.io/v1/namespaces/gangs/events")["items"]
                  if ev.get("reason") == "FailedScheduling"]
        result["gang_failed_scheduling_events"] = len(failed)
        if failed:
            result["gang_failed_scheduling_example"] = failed[0].get("note", "")[:200]
        lat = sorted(max(0.0, max(at[f"{g}-{i}"] for i in range(gang_size)) - created_last[g])
                     for g in created_last)
        result["gang_pods_per_s"] = round(rate(times), 1)
        result["gang_phase_s"] = round(max(times) - t0, 2)
        result["gang_latency_p50_s"] = round(statistics.median(lat), 3)
        result["gang_latency_p99_s"] = round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 3)
        if measured:
            m2 = gangplace_verbs(url)
            result["gang_verb_mean_ms"] = mean_ms(m1, m2)
            result["gang_verb_calls"] = calls(m1, m2)

        # 3. a backlog of gangs: queued while no scheduler runs
        if gang_backlog:
            cp.stop_component("kube-scheduler")
            wait_for(lambda: not kube.pods("gangs"), 60, "the gangs deleted")
            kube.ensure_namespace("gangback")
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda gi: kube.create_pod("gangback", gpu_pod(
                    f"b{gi[0]}-{gi[1]}", gpus=8, gang=f"b{gi[0]}", size=gang_size)),
                    [(g, i) for g in range(gang_backlog) for i in range(gang_size)]))
            cp.start_scheduler(config, binary=PLUGIN if variant == PLUGIN else "kube-scheduler",
                           extra_args=plugin_args if variant == PLUGIN else ())
            n = gang_backlog * gang_size
            wait_for(lambda: len(bound_names(kube, "gangback")) >= n, 300, f"{n} gang backlog pods bound", interval=0.2)
            times = list(wait_for(lambda: (t := scheduled_at(kube, "gangback")) and len(t) >= n and t, 60,
                                  "the Scheduled events").values())
            result["gang_backlog_pods_per_s"] = round(rate(times), 1)
            if measured:
                m3 = gangplace_verbs(url)
                result["gang_backlog_verb_mean_ms"] = mean_ms(m2, m3)
                result["gang_backlog_verb_calls"] = calls(m2, m3)
        result["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        return result
    finally:
        cp.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="runs per variant (median reported)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--backlog", type=int, default=500)
    p.add_argument("--gangs", type=int, default=50)
    p.add_argument("--gang-size", type=int, default=8)
    p.add_argument("--gang-backlog", type=int, default=24, help="gangs queued before the scheduler starts (0: skip)")
    p.add_argument("--plugin-feature-gates", default="",
                   help="start the gangplace-scheduler with --feature-gates=THIS (e.g. NominatedNodeNameForExpectation=false)")
    p.add_argument("--out", type=Path, default=REPO / "reports" / "bench-kube.json")
    args = p.parse_args(argv)
    plugin_args = (f"--feature-gates={args.plugin_feature_gates}",) if args.plugin_feature_gates else ()
    if missing_components():
        print(f"missing {', '.join(missing_components())}: run `make kube`", file=sys.stderr)
        return 2
    variants = [v.strip() for v in args.variants.split(",")]
    runs: list[dict] = []
    for r in range(args.runs):
        for variant in variants:   # interleaved, so drift of the machine hits all variants alike
            res = run_once(variant, backlog=args.backlog, gangs=args.gangs, gang_size=args.gang_size,
                           blocks=3, racks=8, nodes_per_rack=10, gang_backlog=args.gang_backlog,
                           plugin_args=plugin_args)
            res["run"] = r
            res["load_average_1m"] = round(os.getloadavg()[0], 2)  # the machine is shared: report it beside the figures
            print(json.dumps(res), flush=True)
            runs.append(res)
    keys = ("backlog_pods_per_s", "gang_pods_per_s", "gang_latency_p50_s", "gang_latency_p99_s") + (
        ("gang_backlog_pods_per_s",) if args.gang_backlog else ())
    summary = {v: {k: statistics.median([x[k] for x in runs if x["variant"] == v]) for k in keys} for v in variants}
    floor = summary.get("floor extender", {}).get("backlog_pods_per_s")
    alone = summary.get("scheduler alone", {})
    print(f"\nmedian of {args.runs} run(s), 240 nodes, {args.backlog} one-GPU pods from a backlog, "
          f"{args.gangs} gangs of {args.gang_size} x 8 GPUs")
    print(f"{'variant':<20}{'backlog pods/s':>16}{'gang pods/s':>13}{'gang p50 s':>12}{'gang p99 s':>12}{'x floor':>9}"
          f"{'x alone (backlog/gangs)':>25}")
    for v, s in summary.items():
        ratio = s["backlog_pods_per_s"] / floor if floor else float("nan")
        xa = (s["backlog_pods_per_s"] / alone["backlog_pods_per_s"], s["gang_pods_per_s"] / alone["gang_pods_per_s"]) \
            if alone else (float("nan"),) * 2
        print(f"{v:<20}{s['backlog_pods_per_s']:>16.1f}{s['gang_pods_per_s']:>13.1f}"
              f"{s['gang_latency_p50_s']:>12.3f}{s['gang_latency_p99_s']:>12.3f}{ratio:>9.2f}{xa[0]:>13.2f} / {xa[1]:.2f}")
        if "gang_backlog_pods_per_s" in s:
            gb = s["gang_backlog_pods_per_s"]
            xg = gb / alone["gang_backlog_pods_per_s"] if alone else float("nan")
            print(f"{'':<20}gang backlog: {gb:.1f} pods/s ({xg:.2f}x alone)")
    for res in runs:
        if "backlog_extender_cpu_ms_per_pod" in res:
            print(f"{res['variant']} run {res['run']}: {res['backlog_extender_cpu_ms_per_pod']:.3f} ms of the "
                  f"extender's CPU per backlog pod; load average {res['load_avg_1m_at_start']} -> "
                  f"{res['load_avg_1m_at_end']}")
        if res["variant"] in ("gangplace", PLUGIN):
            print(f"{res['variant']} run {res['run']} (load {res['load_average_1m']}): mean ms per verb, backlog "
                  f"{res.get('backlog_verb_mean_ms')}, gangs {res.get('gang_verb_mean_ms')}; calls: backlog "
                  f"{res.get('backlog_verb_calls')}, gangs {res.get('gang_verb_calls')}, gang backlog "
                  f"{res.get('gang_backlog_verb_calls')}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs, "median": summary}, indent=2))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

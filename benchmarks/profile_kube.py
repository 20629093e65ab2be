"""Where the scheduler's time goes: the stock scheduler and the gangplace-scheduler on ONE control
plane, in turn (figures in docs/benchmarks.md).

``bench_kube.py`` gives each variant a fresh control plane, and only the plugin variant runs
gangplace; on a shared 2-core machine its wall-clock pods/s then moves by +-40 % from run to run.
This script keeps everything else equal -- one control plane with gangplace running for both
(the stock scheduler simply does not call it), the variants alternating -- and reads, besides
pods/s, what depends less on the machine's load: CPU seconds of each process over the phase and
the scheduler's own time per extension point (``scheduler_framework_extension_point_duration_seconds``,
``scheduler_scheduling_algorithm_duration_seconds``, from its /metrics).

Phases per turn: 500 one-GPU pods from a backlog, then 24 gangs of 8 x 8-GPU pods from a backlog;
with the API server's requests per phase (``apiserver_request_total``). ``--plugin-feature-gates``
adds a third variant: the gangplace-scheduler started with ``--feature-gates=...``; ``--pprof-dir``
saves a Go CPU profile of the scheduler over each phase (``/debug/pprof/profile``; read it with
``go tool pprof -top -cum FILE`` from kube/).

    .venv/bin/python benchmarks/profile_kube.py [--turns 3] [--plugin-feature-gates G=false] [--out reports/profile-kube.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import urllib3  # noqa: E402

from benchmarks.bench_kube import PLUGIN, QPS, bound_names, rate, scheduled_at  # noqa: E402
from tests.e2e.harness import (ControlPlane, gpu_pod, plugin_scheduler_config, scheduler_config,  # noqa: E402
                               topology_nodes, wait_for)

VARIANTS = ("scheduler alone", PLUGIN)
POINTS = ("PreFilter", "Filter", "PreScore", "Score", "Reserve", "Permit", "PostFilter")


def cpu_seconds(cp: ControlPlane) -> dict[str, float]:
    out = {}
    for name, proc in cp.procs.items():
        try:
            fields = Path(f"/proc/{proc.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def metrics_text(cp: ControlPlane, url: str) -> str:
    f = cp.pki.files
    pool = urllib3.PoolManager(cert_reqs="CERT_NONE", cert_file=str(f["admin.crt"]), key_file=str(f["admin.key"]))
    return pool.request("GET", f"{url}/metrics", timeout=10).data.decode()


def api_requests(cp: ControlPlane) -> dict[str, float]:
    """The API server's requests so far, by "VERB resource[/subresource]"."""
    out: dict[str, float] = {}
    for labels, value in re.findall(r"^apiserver_request_total\{([^}]*)\} (\S+)$", metrics_text(cp, cp.server), re.M):
        d = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        key = f"{d.get('verb')} {d.get('resource')}" + (f"/{d['subresource']}" if d.get("subresource") else "")
        out[key] = out.get(key, 0.0) + float(value)
    return out


def scheduler_metrics(cp: ControlPlane) -> dict[str, float]:
    """Seconds per extension point and in the scheduling algorithm (sums since the start)."""
    text = metrics_text(cp, f"https://127.0.0.1:{cp.scheduler_ports['kube-scheduler']}")
    out: dict[str, float] = {}
    for labels, value in re.findall(r"^scheduler_framework_extension_point_duration_seconds_sum\{([^}]*)\} (\S+)$", text, re.M):
        point = dict(re.findall(r'(\w+)="([^"]*)"', labels))["extension_point"]
        if point in POINTS:
            out[point] = out.get(point, 0.0) + float(value)
    m = re.search(r"^scheduler_scheduling_algorithm_duration_seconds_sum (\S+)$", text, re.M)
    out["algorithm"] = float(m.group(1)) if m else float("nan")
    return out


def start_scheduler(cp: ControlPlane, variant: str) -> None:
    """Start the variant's scheduler ("gangplace-scheduler --feature-gates=...": with those gates)."""
    if variant.startswith(PLUGIN):
        config = plugin_scheduler_config(cp.kubeconfig("scheduler"), cp.grpc_addresses["gangplace"], qps=QPS)
        cp.start_scheduler(config, binary=PLUGIN, extra_args=variant.split()[1:])
    else:
        cp.start_scheduler(scheduler_config(cp.kubeconfig("scheduler"), None, extender=False, qps=QPS))


def cpu_profile(cp: ControlPlane, seconds: int, path: Path) -> threading.Thread:
    """Fetch the running scheduler's CPU profile over the next ``seconds`` into ``path``."""
    def run():
        f = cp.pki.files
        pool = urllib3.PoolManager(cert_reqs="CERT_NONE", cert_file=str(f["admin.crt"]), key_file=str(f["admin.key"]))
        url = f"https://127.0.0.1:{cp.scheduler_ports['kube-scheduler']}/debug/pprof/profile?seconds={seconds}"
        path.write_bytes(pool.request("GET", url, timeout=seconds + 30).data)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def phase(cp: ControlPlane, variant: str, ns: str, pods: list[dict], pprof: Path | None = None) -> dict:
    kube = cp.admin
    kube.ensure_namespace(ns)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: kube.create_pod(ns, p), pods))
    r0 = api_requests(cp)
    start_scheduler(cp, variant)
    c0 = cpu_seconds(cp)
    profiling = cpu_profile(cp, 3, pprof) if pprof else None
    wait_for(lambda: len(bound_names(kube, ns)) >= len(pods), 300, f"{len(pods)} pods bound", interval=0.2)
    c1 = cpu_seconds(cp)
    times = list(wait_for(lambda: (t := scheduled_at(kube, ns)) and len(t) >= len(pods) and t, 60, "events").values())
    if profiling:
        profiling.join()
    sched = scheduler_metrics(cp)
    r1 = api_requests(cp)
    cp.stop_component("kube-scheduler")
    kube.request("DELETE", f"/api/v1/namespaces/{ns}/pods", params={"gracePeriodSeconds": "0"})
    wait_for(lambda: not kube.pods(ns), 60, f"{ns} deleted")
    n = len(pods)
    return {"pods_per_s": round(rate(times), 1), "load_average_1m": round(os.getloadavg()[0], 2),
            "cpu_ms_per_pod": {k: round(1000 * (c1[k] - c0.get(k, 0.0)) / n, 3) for k in c1},
            "scheduler_ms_per_pod": {k: round(1000 * v / n, 3) for k, v in sched.items()},
            "api_writes": {k: int(v - r0.get(k, 0.0)) for k, v in r1.items()
                           if k.split()[0] in ("POST", "PUT", "PATCH", "DELETE") and v - r0.get(k, 0.0) >= 1}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--plugin-feature-gates", default="", help="also run the gangplace-scheduler with these gates")
    p.add_argument("--pprof-dir", type=Path, help="save a 3 s CPU profile of the scheduler per phase here")
    p.add_argument("--out", type=Path, default=REPO / "reports" / "profile-kube.json")
    args = p.parse_args(argv)
    variants = VARIANTS + ((f"{PLUGIN} --feature-gates={args.plugin_feature_gates}",) if args.plugin_feature_gates else ())
    cp = ControlPlane().start()
    runs = []
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda nl: cp.admin.apply_node(nl[0], labels=nl[1]), topology_nodes(3, 8, 10)))
        cp.apply_rbac()
        cp.start_gangplace()
        k = 0
        for turn in range(args.turns):
            for variant in variants:
                singles = [gpu_pod(f"p-{i}", gpus=1) for i in range(500)]
                gangs = [gpu_pod(f"b{g}-{i}", gpus=8, gang=f"b{g}", size=8) for g in range(24) for i in range(8)]
                prof = None
                if args.pprof_dir:
                    args.pprof_dir.mkdir(parents=True, exist_ok=True)
                    slug = re.sub(r"[^a-z0-9]+", "-", variant.split(" --")[0]) + ("-gates" if " --" in variant else "")
                    prof = args.pprof_dir / f"{turn}-{slug}"
                res = {"turn": turn, "variant": variant,
                       "one_gpu": phase(cp, variant, f"s{k}", singles, prof and prof.with_suffix(".one_gpu.pprof")),
                       "gang_backlog": phase(cp, variant, f"g{k}", gangs, prof and prof.with_suffix(".gangs.pprof"))}
                k += 1
                print(json.dumps(res), flush=True)
                runs.append(res)
    finally:
        cp.stop()
    for ph in ("one_gpu", "gang_backlog"):
        print(f"\n{ph}: medians of {args.turns} turns")
        for v in variants:
            mine = [r[ph] for r in runs if r["variant"] == v]
            med = statistics.median
            sched = {k: round(med([m["scheduler_ms_per_pod"].get(k, 0.0) for m in mine]), 3)
                     for k in ("algorithm",) + POINTS}
            cpu = {k: round(med([m["cpu_ms_per_pod"].get(k, 0.0) for m in mine]), 3) for k in mine[0]["cpu_ms_per_pod"]}
            writes = {k: med([m["api_writes"].get(k, 0) for m in mine]) for k in mine[0]["api_writes"]}
            print(f"  {v}\n    pods/s {med([m['pods_per_s'] for m in mine]):7.1f}  scheduler ms/pod {sched}  "
                  f"CPU ms/pod {cpu}  API writes {writes}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs}, indent=2))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Bounded load test of the running service: the HTTP extender and the gRPC API, concurrently.

    .venv/bin/python benchmarks/load_test.py --duration 60 --gpus 16384      # make load
    .venv/bin/python benchmarks/load_test.py --duration 5 --gpus 1024 --json  # quick look

Loopback only, stops by itself. The server runs in a child process (its own GIL, its own RSS),
``gangplace.service.app.Service`` on 127.0.0.1 port 0 over a synthetic cluster (dgx-h100,
fill 0.6, journal in a temporary state dir, so every bind is fsync'd as in file mode). The
parent drives, in one asyncio loop:

- HTTP gang workers: a gang of 1-8 pods (8 GPUs each) arrives: every member is filtered with
  all node names (nodeCacheCapable, as kube-scheduler sends them), prioritized, then all members
  bind concurrently (the extender's bind barrier); the bound gang runs 1-6 s, then finishes
  (gRPC ``UnbindPods``, as a pod deletion would).
- HTTP single-pod workers: a pod outside any gang (1-8 GPUs): filter, prioritize, bind, finish.
- gRPC workers: ``Place`` with ``reserve`` then ``Release``, ``Place`` without reserving,
  ``Explain``, ``GetSnapshot`` (totals), ``Ping``.

Reported: requests/s held (per 10 s window, to show it is sustained), p50/p99/p999 latency per
verb (client side, loopback), errors (non-200 HTTP, a non-empty ``Error`` from filter or bind,
any gRPC status other than OK: must be 0), answers that are not errors (a gang that does not fit
*now*: ``FailedNodes``), the server's RSS (after warm-up and at the end), and the state at the
end: ``ClusterState.check_consistency()`` (capacity = base + allocated + reserved + free on every
node, for GPUs, CPU, memory and pod slots), no node with negative free GPUs, and the server's
allocations equal to the client's ledger of acknowledged binds minus finished pods.

The module is also imported by tests/service/test_load_smoke.py (a 5 s run on a small cluster).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

WINDOW_S = 10.0
NAMESPACE = "load"


# ---------------------------------------------------------------------- the server, in a child process
def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fsync_probe_ms(directory: str, n: int = 100) -> dict:
    """The disk's fsync latency where the journal lives: binds wait for one each (file mode)."""
    path = os.path.join(directory, "fsync-probe")
    ts = []
    with open(path, "a") as f:
        for _ in range(n):
            t = time.perf_counter()
            f.write("x" * 200 + "\n")
            f.flush()
            os.fsync(f.fileno())
            ts.append((time.perf_counter() - t) * 1e3)
    os.remove(path)
    return {"p50": round(float(np.percentile(ts, 50)), 2), "p99": round(float(np.percentile(ts, 99)), 2)}


def _cpu_s() -> float:
    """CPU seconds (user + system) this process used so far."""
    t = os.times()
    return t.user + t.system


_TRACE: dict = {}


def _server_main(conn, preset: str, gpus: int, fill: float, state_dir: str | None, placer: str) -> None:
    """Child process: serve until told to stop; answer 'rss', 'check' and 'allocs' on the pipe."""
    import gc
    import logging

    from gangplace.service.config import ClusterSource, ServeConfig
    from gangplace.service.testing import ServiceThread
    logging.basicConfig(level=logging.WARNING)
    cfg = ServeConfig(cluster=ClusterSource(synthetic=preset, gpus=gpus, fill=fill, seed=1),
                      grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", state_dir=state_dir,
                      ephemeral=state_dir is None,  # --no-journal: no default state dir either
                      placer=placer, log_level="warning")
    t = ServiceThread(cfg)
    svc = t.start()
    conn.send({"grpc_port": svc.grpc_port, "http_port": svc.http_port, "rss_kib": _rss_kib()})
    try:
        while True:
            cmd = conn.recv()
            if cmd == "rss":
                gc.collect()
                conn.send(_rss_kib())
            elif cmd == "trace_start":
                import tracemalloc
                tracemalloc.start(8)
                _TRACE["base"] = tracemalloc.take_snapshot()
                conn.send(True)
            elif cmd == "trace_top":
                import tracemalloc
                gc.collect()
                snap = tracemalloc.take_snapshot()
                stats = snap.compare_to(_TRACE["base"], "filename")[:12]
                conn.send([(str(x.traceback), x.size_diff, x.count_diff) for x in stats])
            elif cmd == "cpu":
                conn.send(_cpu_s())
            elif cmd == "check":
                conn.send(server_check(svc.state))
            elif cmd == "stop":
                break
    finally:
        t.stop()
        conn.send("stopped")


def server_check(state) -> dict:
    """The end-of-run state audit (the server side)."""
    with state.lock:
        problems = state.check_consistency()
        snap = state.snapshot()
        negative = [snap.node_names[i] for i in np.flatnonzero(snap.free_gpus < 0)]
        allocs = {uid: (r.node, r.gpus) for uid, r in state.allocations().items()}
        stats = state.stats()
    return {"problems": problems, "negative_free": negative, "allocs": allocs, "stats": stats}


class ServerProcess:
    def __init__(self, *, preset: str = "dgx-h100", gpus: int = 16384, fill: float = 0.6, placer: str = "auto",
                 journal: bool = True):
        self._tmp = tempfile.TemporaryDirectory(prefix="gangplace-load-")
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_server_main, args=(child, preset, gpus, fill,
                                                           self._tmp.name if journal else None, placer),
                                daemon=True)
        self.proc.start()
        if not self.conn.poll(120):
            self.proc.kill()
            raise RuntimeError("the server did not start within 120 s")
        info = self.conn.recv()
        self.grpc_port, self.http_port, self.rss_start_kib = info["grpc_port"], info["http_port"], info["rss_kib"]

    def ask(self, cmd: str, timeout_s: float = 60.0):
        self.conn.send(cmd)
        if not self.conn.poll(timeout_s):
            raise RuntimeError(f"the server did not answer {cmd!r} within {timeout_s} s")
        return self.conn.recv()

    def rss_kib(self) -> int:
        return self.ask("rss")

    def check(self) -> dict:
        return self.ask("check")

    def cpu_s(self) -> float:
        return self.ask("cpu")

    def stop(self) -> None:
        try:
            self.ask("stop")
        finally:
            self.proc.join(30)
            if self.proc.is_alive():
                self.proc.kill()
            self._tmp.cleanup()


# ---------------------------------------------------------------------- the driver
@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # verb -> seconds
    done: list[float] = field(default_factory=list)  # completion times of every request
    errors: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ledger: dict[str, tuple[str, int]] = field(default_factory=dict)  # uid -> (node, gpus): acknowledged, running
    finished: int = 0

    def record(self, verb: str, t0: float) -> None:
        t = time.perf_counter()
        self.latencies[verb].append(t - t0)
        self.done.append(t)

    def error(self, what: str) -> None:
        if len(self.errors) < 1000:
            self.errors.append(what)
        self.outcomes["errors"] += 1


def _pod(name: str, uid: str, gpus: int, gang: str | None = None, size: int = 0) -> dict:
    labels = {"app": "load"}
    if gang is not None:
        labels.update({"gangplace.dev/gang": gang, "gangplace.dev/size": str(size)})
    return {"metadata": {"name": name, "namespace": NAMESPACE, "uid": uid, "labels": labels},
            "spec": {"schedulerName": "gangplace", "containers": [{"name": "main", "resources": {
                "requests": {"nvidia.com/gpu": str(gpus), "cpu": "8", "memory": "64Gi"},
                "limits": {"nvidia.com/gpu": str(gpus)}}}]},
            "status": {"phase": "Pending"}}


class Driver:
    def __init__(self, http_base: str, grpc_target: str, node_names: list[str], *, seed: int = 1,
                 rate: float | None = None):
        self.rate = rate  # requests/s offered (all verbs together); None: as fast as answered
        self._slot = 0.0
        self.http_base = http_base
        self.grpc_target = grpc_target
        self.names = node_names
        self.rng = random.Random(seed)
        self.res = Results()
        self.running: list[tuple[float, list[str]]] = []  # (finish time, uids)
        self.seq = 0

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    async def _pace(self) -> None:
        """Open-loop pacing: request starts are spread 1/rate apart, whoever sends them."""
        if self.rate is None:
            return
        now = time.perf_counter()
        self._slot = max(self._slot + 1.0 / self.rate, now)
        if self._slot > now:
            await asyncio.sleep(self._slot - now)

    async def _post(self, verb: str, body: dict):
        import orjson
        await self._pace()
        t0 = time.perf_counter()
        try:
            async with self.session.post(f"{self.http_base}/{verb}", data=orjson.dumps(body),
                                         headers={"Content-Type": "application/json"}) as r:
                raw = await r.read()
                status = r.status
        except Exception as e:  # connection reset, timeout: an error
            self.res.error(f"http {verb}: {type(e).__name__}: {e}")
            return None
        self.res.record(f"http {verb}", t0)
        if status != 200:
            self.res.error(f"http {verb}: status {status}: {raw[:200]!r}")
            return None
        return orjson.loads(raw)

    # -- HTTP: gangs
    async def gang_worker(self, deadline: float) -> None:
        while time.perf_counter() < deadline:
            n = self._next()
            size = self.rng.choice((1, 2, 2, 4, 4, 8))
            gang = f"g{n}"
            pods = [_pod(f"{gang}-{i}", f"u-{gang}-{i}", 8, gang, size) for i in range(size)]
            nodes = {}
            for pod in pods:
                out = await self._post("filter", {"Pod": pod, "NodeNames": self.names, "Nodes": None})
                if out is None:
                    break
                if out.get("Error"):
                    self.res.error(f"filter {gang}: Error {out['Error']}")
                    break
                passing = out.get("NodeNames") or []
                if not passing:  # does not fit now: FailedNodes, a normal answer
                    self.res.outcomes["gang_not_fit_now"] += 1
                    break
                if len(passing) != 1:
                    self.res.error(f"filter {gang}: a member got {len(passing)} nodes")
                    break
                nodes[pod["metadata"]["uid"]] = passing[0]
                await self._post("prioritize", {"Pod": pod, "NodeNames": passing, "Nodes": None})
            if len(nodes) != size:
                await asyncio.sleep(0.05)
                continue
            outs = await asyncio.gather(*(self._post("bind", {
                "PodName": p["metadata"]["name"], "PodNamespace": NAMESPACE, "PodUID": p["metadata"]["uid"],
                "Node": nodes[p["metadata"]["uid"]]}) for p in pods))
            ok = []
            for p, out in zip(pods, outs):
                uid = p["metadata"]["uid"]
                if out is not None and not out.get("Error"):
                    self.res.ledger[uid] = (nodes[uid], 8)
                    ok.append(uid)
                elif out is not None:
                    self.res.error(f"bind {uid}: {out['Error']}")
            self.res.outcomes["gangs_bound"] += len(ok) == size
            self.res.outcomes["pods_bound"] += len(ok)
            if ok:
                self.running.append((time.perf_counter() + self.rng.uniform(1, 6), ok))

    # -- HTTP: pods outside any gang
    async def single_worker(self, deadline: float) -> None:
        while time.perf_counter() < deadline:
            n = self._next()
            gpus = self.rng.choice((1, 2, 4, 8))
            pod = _pod(f"p{n}", f"u-p{n}", gpus)
            uid = pod["metadata"]["uid"]
            out = await self._post("filter", {"Pod": pod, "NodeNames": self.names, "Nodes": None})
            if out is None or out.get("Error"):
                if out is not None:
                    self.res.error(f"filter {uid}: Error {out['Error']}")
                continue
            passing = out.get("NodeNames") or []
            if not passing:
                self.res.outcomes["pod_not_fit_now"] += 1
                await asyncio.sleep(0.05)
                continue
            scores = await self._post("prioritize", {"Pod": pod, "NodeNames": passing, "Nodes": None})
            if scores is None:
                continue
            best = max(scores, key=lambda s: s["Score"])["Host"] if scores else passing[0]
            out = await self._post("bind", {"PodName": pod["metadata"]["name"], "PodNamespace": NAMESPACE,
                                            "PodUID": uid, "Node": best})
            if out is None:
                continue
            if out.get("Error"):
                # another pod took the node between filter and bind: the scheduler would retry
                self.res.outcomes["single_bind_lost_race"] += 1
                continue
            self.res.ledger[uid] = (best, gpus)
            self.res.outcomes["pods_bound"] += 1
            self.running.append((time.perf_counter() + self.rng.uniform(1, 6), [uid]))

    # -- gRPC
    async def _rpc(self, verb: str, call, request):
        import grpc
        await self._pace()
        t0 = time.perf_counter()
        try:
            out = await call(request, timeout=30)
        except grpc.aio.AioRpcError as e:
            self.res.error(f"grpc {verb}: {e.code().name}: {e.details()}")
            return None
        self.res.record(f"grpc {verb}", t0)
        return out

    async def grpc_worker(self, deadline: float) -> None:
        from gangplace.service import gangplace_pb2 as pb
        while time.perf_counter() < deadline:
            n = self._next()
            k = self.rng.choice((2, 4, 8, 16))
            gang = pb.Gang(name=f"rpc{n}", pod_sets=[pb.PodSet(name="w", count=k, gpus=8, cpu=8000)])
            r = self.rng.random()
            if r < 0.45:
                out = await self._rpc("Place+reserve", self.stub.Place,
                                      pb.PlaceRequest(gang=gang, reserve=True, reservation_ttl_s=30))
                if out is not None and out.reserved:
                    await asyncio.sleep(self.rng.uniform(0, 0.2))
                    await self._rpc("Release", self.stub.Release, pb.ReleaseRequest(gang=gang.name))
            elif r < 0.75:
                await self._rpc("Place", self.stub.Place, pb.PlaceRequest(gang=gang))
            elif r < 0.85:
                await self._rpc("Explain", self.stub.Explain, pb.ExplainRequest(gang=gang))
            elif r < 0.95:
                await self._rpc("GetSnapshot", self.stub.GetSnapshot, pb.SnapshotRequest(include_nodes=False))
            else:
                await self._rpc("Ping", self.stub.Ping, pb.PingRequest())

    async def finisher(self, deadline: float) -> None:
        """Gangs and pods finish when their time is up (gRPC UnbindPods, as a deletion would)."""
        from gangplace.service import gangplace_pb2 as pb
        while True:
            now = time.perf_counter()
            due = [x for x in self.running if x[0] <= now]
            if due:
                self.running = [x for x in self.running if x[0] > now]
                uids = [u for _, us in due for u in us]
                out = await self._rpc("UnbindPods", self.stub.UnbindPods, pb.UnbindPodsRequest(pods=uids))
                if out is not None:
                    if out.applied != len(uids):
                        self.res.error(f"UnbindPods: {out.applied} of {len(uids)} pods were known")
                    for u in uids:
                        self.res.ledger.pop(u, None)
                    self.res.finished += len(uids)
            if now >= deadline:
                return
            await asyncio.sleep(0.1)

    async def run(self, duration_s: float, *, gang_workers: int, single_workers: int, grpc_workers: int,
                  on_window=None) -> Results:
        import aiohttp
        import grpc

        from gangplace.service import gangplace_pb2_grpc as pb_grpc
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session, \
                grpc.aio.insecure_channel(self.grpc_target) as channel:
            self.session = session
            self.stub = pb_grpc.GangplaceStub(channel)
            t0 = time.perf_counter()
            deadline = t0 + duration_s
            tasks = [asyncio.create_task(self.gang_worker(deadline)) for _ in range(gang_workers)]
            tasks += [asyncio.create_task(self.single_worker(deadline)) for _ in range(single_workers)]
            tasks += [asyncio.create_task(self.grpc_worker(deadline)) for _ in range(grpc_workers)]
            fin = asyncio.create_task(self.finisher(deadline))
            if on_window is not None:
                tasks.append(asyncio.create_task(_windows(t0, deadline, on_window)))
            await asyncio.gather(*tasks)
            await fin
            self.t0, self.t1 = t0, time.perf_counter()
        return self.res


async def _windows(t0: float, deadline: float, on_window) -> None:
    k = 1
    while True:
        at = t0 + k * WINDOW_S
        if at > deadline:
            return
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        await asyncio.get_running_loop().run_in_executor(None, on_window, k)
        k += 1


# ---------------------------------------------------------------------- the report
def summarize(driver: Driver, duration_s: float) -> dict:
    res = driver.res
    t0 = driver.t0
    done = np.array(res.done) - t0
    total = len(done)
    n_win = max(1, int(duration_s // WINDOW_S))
    per_window = [int(((done >= k * WINDOW_S) & (done < (k + 1) * WINDOW_S)).sum()) / WINDOW_S
                  for k in range(n_win)] if duration_s >= WINDOW_S else []
    verbs = {}
    for verb, lat in sorted(res.latencies.items()):
        a = np.array(lat) * 1e3
        verbs[verb] = {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2),
                       "p99_ms": round(float(np.percentile(a, 99)), 2),
                       "p999_ms": round(float(np.percentile(a, 99.9)), 2), "max_ms": round(float(a.max()), 2)}
    all_lat = np.concatenate([np.array(v) for v in res.latencies.values()]) * 1e3 if res.latencies else np.zeros(1)
    return {
        "duration_s": round(driver.t1 - t0, 1),
        "requests": total,
        "requests_per_s": round(total / (driver.t1 - t0), 1),
        "requests_per_s_per_window": per_window,
        "latency_all": {"p50_ms": round(float(np.percentile(all_lat, 50)), 2),
                        "p99_ms": round(float(np.percentile(all_lat, 99)), 2),
                        "p999_ms": round(float(np.percentile(all_lat, 99.9)), 2)},
        "verbs": verbs,
        "errors": res.outcomes.get("errors", 0),
        "error_samples": res.errors[:10],
        "outcomes": {k: v for k, v in sorted(res.outcomes.items()) if k != "errors"},
        "pods_finished": res.finished,
        "pods_running_at_end": len(res.ledger),
    }


def audit(check: dict, ledger: dict[str, tuple[str, int]]) -> dict:
    """Compare the server's end state with the client's ledger of acknowledged, running pods."""
    allocs = {u: tuple(v) for u, v in check["allocs"].items() if u.startswith("u-")}  # ours only
    missing = sorted(set(ledger) - set(allocs))
    extra = sorted(set(allocs) - set(ledger))
    moved = sorted(u for u in set(ledger) & set(allocs) if tuple(ledger[u]) != allocs[u])
    return {"consistency_problems": check["problems"][:10], "n_consistency_problems": len(check["problems"]),
            "nodes_with_negative_free_gpus": check["negative_free"][:10],
            "ledger_missing_on_server": missing[:10], "server_allocs_not_in_ledger": extra[:10],
            "ledger_node_mismatch": moved[:10],
            "consistent": not check["problems"] and not check["negative_free"] and not missing and not extra
            and not moved,
            "stats": check["stats"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (60)")
    ap.add_argument("--preset", default="dgx-h100")
    ap.add_argument("--gpus", type=int, default=16384)
    ap.add_argument("--fill", type=float, default=0.6)
    ap.add_argument("--placer", default="auto")
    ap.add_argument("--gang-workers", type=int, default=6)
    ap.add_argument("--single-workers", type=int, default=2)
    ap.add_argument("--grpc-workers", type=int, default=4)
    ap.add_argument("--rate", type=float, help="offered requests/s, all verbs (default: closed loop, "
                                               "each worker sends as soon as it has its answer)")
    ap.add_argument("--no-journal", action="store_true", help="serve without a state dir (no fsync per bind)")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="trace the server's Python allocations from the first window on; report the top growth")
    ap.add_argument("--out", help="also write the JSON report here")
    ap.add_argument("--json", action="store_true", help="print only the JSON report")
    args = ap.parse_args(argv)

    import grpc

    from gangplace.service import gangplace_pb2 as pb
    from gangplace.service import gangplace_pb2_grpc as pb_grpc
    t_start = time.perf_counter()
    load_before = round(os.getloadavg()[0], 2)  # other work on the machine skews the latencies
    server = ServerProcess(preset=args.preset, gpus=args.gpus, fill=args.fill, placer=args.placer,
                           journal=not args.no_journal)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
            snap = pb_grpc.GangplaceStub(ch).GetSnapshot(pb.SnapshotRequest(include_nodes=True), timeout=60)
        names = [n.name for n in snap.nodes]
        rss = {"at_start_kib": server.rss_start_kib}
        rss_windows = []

        def on_window(k: int) -> None:
            rss_windows.append(server.rss_kib())
            if args.tracemalloc and k == 1:
                server.ask("trace_start")
            if not args.json:
                print(f"  {k * WINDOW_S:4.0f} s: server RSS {rss_windows[-1] / 1024:.1f} MiB", file=sys.stderr)
        if not args.json:
            print(f"server up in {time.perf_counter() - t_start:.1f} s: {len(names)} nodes, {snap.total_gpus} GPUs "
                  f"({snap.free_gpus} free); driving for {args.duration:g} s ...", file=sys.stderr)
        driver = Driver(f"http://127.0.0.1:{server.http_port}", f"127.0.0.1:{server.grpc_port}", names,
                        rate=args.rate)
        fsync_before = fsync_probe_ms(server._tmp.name)
        cpu0, server_cpu0, wall0 = _cpu_s(), server.cpu_s(), time.perf_counter()
        asyncio.run(driver.run(args.duration, gang_workers=args.gang_workers, single_workers=args.single_workers,
                               grpc_workers=args.grpc_workers, on_window=on_window))
        wall = time.perf_counter() - wall0
        cpu = {"server_cores_busy": round((server.cpu_s() - server_cpu0) / wall, 2),
               "driver_cores_busy": round((_cpu_s() - cpu0) / wall, 2)}
        rss["at_end_kib"] = server.rss_kib()
        rss["per_window_kib"] = rss_windows
        if rss_windows:
            rss["growth_after_first_window_kib"] = rss["at_end_kib"] - rss_windows[0]
        report = summarize(driver, args.duration)
        report["cluster"] = {"preset": args.preset, "gpus": int(snap.total_gpus), "nodes": len(names),
                             "fill": args.fill, "placer": args.placer}
        report["workers"] = {"http_gang": args.gang_workers, "http_single": args.single_workers,
                             "grpc": args.grpc_workers}
        report["offered_rate"] = args.rate or "closed loop"
        report["cpu"] = cpu
        report["server_rss"] = rss
        report["journal"] = not args.no_journal
        report["fsync_ms_before"] = fsync_before
        report["fsync_ms_after"] = fsync_probe_ms(server._tmp.name)
        if args.tracemalloc and rss_windows:
            report["tracemalloc_growth_top"] = server.ask("trace_top")
        report["state"] = audit(server.check(), driver.res.ledger)
        report["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                             "loadavg_1m_before": load_before, "loadavg_1m_after": round(os.getloadavg()[0], 2)}
    finally:
        server.stop()
    text = json.dumps(report, indent=1)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    ok = report["errors"] == 0 and report["state"]["consistent"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

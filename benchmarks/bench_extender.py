"""The extender's CPU per pod: one ``filter`` + ``prioritize`` pair, in process, on 240 nodes.

What kube-scheduler's serial cycle waits for per GPU pod (``make bench-kube``'s backlog phase,
docs/benchmarks.md): both verbs through the aiohttp handlers of service/extender_wire.py (body
decode and checks, the verb, reply encode) without the socket, for

- a one-GPU pod outside any gang (the backlog), the cluster filling up pod by pod (each pair is
  followed by an untimed bind, so every pair sees a changed state, as in the real backlog);
- a member of an 8 x 8-GPU gang already planned (the gangs phase: every member after the first).

The cluster is the benchmark's: 3 blocks x 8 racks x 10 nodes of 8 GPUs (1,920 GPUs), node names
sent as ``NodeNames`` (``nodeCacheCapable: true``, as deploy/ configures it), the Pod as a
v1.36 scheduler sends it (tests/fixtures/kube-scheduler-extender, with the benchmark's requests).

    .venv/bin/python -m pytest benchmarks/bench_extender.py --benchmark-only
    .venv/bin/python benchmarks/bench_extender.py [--pairs 2000] [--profile]   # mean us per pair
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import time
import uuid

import orjson

from gangplace.engine import Cluster, NodeSpec
from gangplace.engine.live.state import ClusterState
from gangplace.service.binder import FileBinder
from gangplace.service.extender import Extender, ExtenderConfig
from gangplace.service.extender_wire import RecentBodies, http_handler

BLOCKS, RACKS, NODES_PER_RACK, GPUS_PER_NODE = 3, 8, 10, 8
NAMES = [f"b{b}-r{r}-n{n}" for b in range(BLOCKS) for r in range(RACKS) for n in range(NODES_PER_RACK)]

POD = {  # the shape a v1.36 kube-scheduler sends (recorded fixture), requests as bench_kube.gpu_pod's
    "metadata": {"name": "p", "namespace": "bench", "uid": "u", "resourceVersion": "1234", "generation": 1,
                 "creationTimestamp": "2026-12-04T14:35:00Z", "labels": {}, "annotations": {}},
    "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                             "resources": {"limits": {"nvidia.com/gpu": "1"},
                                           "requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}},
                             "terminationMessagePath": "/dev/termination-log",
                             "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
             "restartPolicy": "Always", "terminationGracePeriodSeconds": 0, "dnsPolicy": "ClusterFirst",
             "securityContext": {}, "schedulerName": "gangplace",
             "tolerations": [{"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                             for k in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")],
             "priority": 0, "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority"},
    "status": {"phase": "Pending", "qosClass": "Burstable"},
}


def make_extender() -> Extender:
    specs = [NodeSpec(n, {"block": n.split("-")[0], "rack": n.rsplit("-", 1)[0]}, gpus=GPUS_PER_NODE,
                      cpu=128_000, memory=2**40) for n in NAMES]
    state = ClusterState(Cluster(["block", "rack"], specs), journal_dir=None)
    return Extender(state, ExtenderConfig(), binder=FileBinder(state))


def pod(name: str, *, gpus: int = 1, gang: str | None = None, size: int = 8) -> dict:
    p = copy.deepcopy(POD)
    p["metadata"].update(name=name, uid=str(uuid.uuid4()))
    for where in ("limits", "requests"):
        p["spec"]["containers"][0]["resources"][where]["nvidia.com/gpu"] = str(gpus)
    if gang is not None:
        p["metadata"]["labels"] = {"gangplace.dev/gang": gang, "gangplace.dev/size": str(size)}
    return p


class _Request:
    """What ``http_handler`` reads from an aiohttp request: the body (no deadline set)."""

    def __init__(self, body: bytes):
        self._body = body

    def get(self, key, default=None):
        return default

    async def read(self) -> bytes:
        return self._body


class Pair:
    """Drives filter + prioritize pairs through the handlers of one extender."""

    def __init__(self, ext: Extender):
        self.ext = ext
        self.loop = asyncio.new_event_loop()
        bodies = RecentBodies()  # shared by the two verbs, as add_routes mounts them
        self.filter, self.prioritize = http_handler(ext, "filter", bodies), http_handler(ext, "prioritize", bodies)
        self.bind = http_handler(ext, "bind")

    def body(self, p: dict) -> bytes:
        return orjson.dumps({"Pod": p, "Nodes": None, "NodeNames": NAMES})

    def run(self, body: bytes) -> tuple[bytes, bytes]:
        """The filter and prioritize reply bodies (decoded by the caller, outside the timing)."""
        f = self.loop.run_until_complete(self.filter(_Request(body)))
        s = self.loop.run_until_complete(self.prioritize(_Request(body)))
        return f.body, s.body

    def bind_best(self, p: dict, filtered: dict, scores: list) -> None:
        """Bind ``p`` where the scheduler would (the best-scored passing node), untimed."""
        passing = set(filtered["NodeNames"])
        node = max((s for s in scores if s["Host"] in passing), key=lambda s: s["Score"])["Host"]
        args = {"PodName": p["metadata"]["name"], "PodNamespace": "bench", "PodUID": p["metadata"]["uid"], "Node": node}
        reply = self.loop.run_until_complete(self.bind(_Request(orjson.dumps(args))))
        assert orjson.loads(reply.body) == {"Error": ""}, reply.body

    def release_all(self) -> None:
        for uid in list(self.ext.state.allocations()):
            self.ext.state.unbind(uid)


class Backlog:
    """One-GPU pods outside any gang; each pair bound afterwards; the cluster emptied when full."""

    def __init__(self):
        self.pair = Pair(make_extender())
        self.n = 0

    def setup(self):
        self.n += 1
        if self.n % (BLOCKS * RACKS * NODES_PER_RACK * GPUS_PER_NODE) == 0:
            self.pair.release_all()
        p = pod(f"single-{self.n}")
        return (p, self.pair.body(p)), {}

    def timed(self, p: dict, body: bytes):
        self.last = (p, *self.pair.run(body))

    def after(self):
        p, f, s = self.last
        f, s = orjson.loads(f), orjson.loads(s)
        assert f["NodeNames"], f
        self.pair.bind_best(p, f, s)


class GangMember:
    """Members of a planned 8 x 8-GPU gang: the gang is planned once (its first member's filter),
    then each timed pair is another member's (a filter claims a slot, so each is a fresh member of
    a fresh gang once the previous gang's slots are claimed)."""

    def __init__(self):
        self.pair = Pair(make_extender())
        self.g = self.i = 0
        self._new_gang()

    def _new_gang(self):
        for key in list(self.pair.ext.state.reservations()):
            self.pair.ext.state.release(key)
        self.g += 1
        self.i = 0
        self.pair.run(self.pair.body(pod(f"g{self.g}-0", gpus=8, gang=f"g{self.g}")))  # plans the gang

    def setup(self):
        if hasattr(self, "last"):  # the previous member passed its one planned node, scored 10
            f, s = map(orjson.loads, self.last)
            assert len(f["NodeNames"]) == 1 and max(x["Score"] for x in s) == 10, (f, s)
        self.i += 1
        if self.i == 8:
            self._new_gang()
            self.i = 1
        return (self.pair.body(pod(f"g{self.g}-{self.i}", gpus=8, gang=f"g{self.g}")),), {}

    def timed(self, body: bytes):
        self.last = self.pair.run(body)


# ---------------------------------------------------------------------- pytest-benchmark
def test_filter_prioritize_pair_one_gpu_240_nodes(benchmark):
    b = Backlog()

    def setup():
        if hasattr(b, "last"):
            b.after()
        return b.setup()
    benchmark.pedantic(b.timed, setup=setup, rounds=500, iterations=1, warmup_rounds=20)


def test_filter_prioritize_pair_gang_member_240_nodes(benchmark):
    g = GangMember()
    benchmark.pedantic(g.timed, setup=g.setup, rounds=300, iterations=1, warmup_rounds=10)


# ---------------------------------------------------------------------- script
def measure(kind: str, pairs: int, profile: bool) -> tuple[float, float]:
    """(wall, CPU) microseconds per pair (the CPU time is this thread's: other jobs' load not counted)."""
    b = Backlog() if kind == "backlog" else GangMember()
    total = cpu = 0.0
    prof = None
    if profile:
        import cProfile
        prof = cProfile.Profile()
    for k in range(pairs):
        args, _ = b.setup()
        t0, c0 = time.perf_counter(), time.thread_time()
        if prof is not None:
            prof.enable()
        b.timed(*args)
        if prof is not None:
            prof.disable()
        total += time.perf_counter() - t0
        cpu += time.thread_time() - c0
        if kind == "backlog":
            b.after()
    if prof is not None:
        import pstats
        pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
    return total / pairs * 1e6, cpu / pairs * 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--profile", action="store_true", help="cProfile the timed pairs (backlog)")
    a = p.parse_args(argv)
    for kind in ("backlog", "gang member"):
        wall, cpu = measure(kind, a.pairs, a.profile and kind == "backlog")
        print(f"{kind}: {wall:.0f} us per filter + prioritize pair, {cpu:.0f} us of CPU (mean of {a.pairs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

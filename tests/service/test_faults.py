"""Faults: the server killed mid-stream, restarts, solver failures, stalled watches, gangs that
never complete.

- file mode: ``kill -9`` of a real ``gangplace serve`` subprocess while gangs are being bound
  over HTTP; the restarted server holds every acknowledged bind (the journal), and nothing placed
  after the restart lands on a GPU that was already taken;
- Kubernetes mode: a restart rebuilds the allocations from the cluster's bound pods; a
  reservation that was not bound yet is not restored: the gang is planned again on its next
  filter, around what is bound (docs/reliability.md);
- CP-SAT raising or running out of time: the heuristic's answer (or a better one) comes back;
- a stalled or failing Kubernetes watch: a finite client read timeout, backoff, a fresh list;
- gangs whose other members never arrive: their reservations expire on the service's timer.
"""
from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gangplace.engine import GangRequest, PodSet, SliceLayer, TopologyConstraint
from gangplace.engine.api import place, solve
from gangplace.engine.model.cluster import Cluster
from gangplace.engine.place.request import prepare
from gangplace.engine.place.solution import objective_of
from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.synthetic import generate
from gangplace.service.binder import FileBinder
from gangplace.service.client import GangplaceClient
from gangplace.service.config import ClusterSource, ServeConfig
from gangplace.service.extender import Extender, ExtenderConfig
from gangplace.service.dra import DRA_KINDS
from gangplace.service.k8s_sync import KubeWatcher, SyncState
from gangplace.service.testing import running_service

from tests.conftest import FakeClock

REPO = Path(__file__).resolve().parents[2]
# `gangplace` as installed (.venv/bin/gangplace runs exactly this entry point)
GANGPLACE = [sys.executable, "-m", "gangplace.service.cli"]
FIXTURES = REPO / "tests" / "fixtures" / "kube-scheduler-extender"
BASE_POD = json.loads((FIXTURES / "filter.nodecache-false.request.json").read_text())["Pod"]
K8S_NODES = json.loads((FIXTURES / "filter.nodecache-false.request.json").read_text())["Nodes"]["items"]


def gang_pod(gang: str, i: int, size: int, *, gpus: int = 8, ns: str = "default", node: str = "",
             phase: str = "Pending") -> dict:
    pod = copy.deepcopy(BASE_POD)
    pod["metadata"].update(name=f"{gang}-{i}", namespace=ns, uid=f"uid-{ns}-{gang}-{i}",
                           labels={"gangplace.dev/gang": gang, "gangplace.dev/size": str(size)})
    for kind in ("limits", "requests"):
        pod["spec"]["containers"][0]["resources"][kind]["nvidia.com/gpu"] = str(gpus)
    if node:
        pod["spec"]["nodeName"] = node
    pod["status"]["phase"] = phase
    return pod


def http_post(port: int, verb: str, body: dict, timeout: float = 10.0) -> tuple[int, dict | str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/{verb}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# ---------------------------------------------------------------------- kill -9 in file mode
CLUSTER_YAML = "levels: [block, rack]\nnodes:\n" + "".join(
    f"  - {{name: b{b}-r{r}-n{n}, topology: {{block: b{b}, rack: b{b}-r{r}}}, gpus: 8, cpu: 64, memory: 512Gi}}\n"
    for b in range(2) for r in range(2) for n in range(4))
NODES = [f"b{b}-r{r}-n{n}" for b in range(2) for r in range(2) for n in range(4)]


class Served:
    """``gangplace serve`` as a real subprocess; ports read from its banner."""

    def __init__(self, cluster: Path, state_dir: Path):
        self.proc = subprocess.Popen(
            [*GANGPLACE, "serve", "--cluster", str(cluster), "--state-dir", str(state_dir),
             "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--placer", "heuristic",
             "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        lines = [self.proc.stdout.readline() for _ in range(3)]
        text = "".join(lines)
        grpc_m = re.search(r"gRPC\s+127\.0\.0\.1:(\d+)", text)
        http_m = re.search(r"HTTP\s+http://127\.0\.0\.1:(\d+)", text)
        if not (grpc_m and http_m):
            self.proc.kill()
            raise AssertionError(f"no ports in the banner: {text!r} {self.proc.stderr.read()!r}")
        self.grpc_port, self.http_port = int(grpc_m.group(1)), int(http_m.group(1))

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.proc.stdout.close()
        self.proc.stderr.close()


def _bind_gangs(port: int, prefix: str, stop: threading.Event, acked: dict, attempted: dict, *,
                size: int = 2, gpus: int = 4) -> None:
    """Keep planning and binding 2-pod gangs over HTTP until stopped or the server is gone.
    ``acked``: uid -> node for binds answered with no error (acknowledged)."""
    k = 0
    while not stop.is_set():
        k += 1
        pods = [gang_pod(f"{prefix}{k}", i, size, gpus=gpus) for i in range(size)]
        nodes = {}
        try:
            for p in pods:
                status, out = http_post(port, "filter", {"Pod": p, "NodeNames": NODES, "Nodes": None})
                assert status == 200, out
                if not out["NodeNames"]:
                    return  # the cluster is full
                nodes[p["metadata"]["uid"]] = out["NodeNames"][0]
            results: dict[str, object] = {}

            def bind(p):
                uid = p["metadata"]["uid"]
                attempted[uid] = nodes[uid]
                try:
                    results[uid] = http_post(port, "bind", {"PodName": p["metadata"]["name"],
                                                            "PodNamespace": "default", "PodUID": uid,
                                                            "Node": nodes[uid]})
                except OSError as e:  # the server died: not acknowledged
                    results[uid] = e
            threads = [threading.Thread(target=bind, args=(p,)) for p in pods]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for uid, r in results.items():
                if isinstance(r, tuple) and r[0] == 200 and r[1]["Error"] == "":
                    acked[uid] = nodes[uid]
        except (OSError, urllib.error.URLError):
            return  # the server was killed


def _journal_state(cluster: Path, state_dir: Path, copy_to: Path) -> ClusterState:
    """The state a restart would rebuild, read from a copy of the journal (no server involved)."""
    copy_to.mkdir()
    for f in state_dir.iterdir():
        (copy_to / f.name).write_bytes(f.read_bytes())
    return ClusterState(Cluster.load(cluster), journal_dir=copy_to)


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart_restores_every_acknowledged_bind_and_never_double_books(tmp_path):
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(CLUSTER_YAML)
    state_dir = tmp_path / "state"
    acked: dict[str, str] = {}
    attempted: dict[str, str] = {}

    first = Served(cluster, state_dir)
    stop = threading.Event()
    driver = threading.Thread(target=_bind_gangs, args=(first.http_port, "a", stop, acked, attempted))
    try:
        driver.start()
        deadline = time.monotonic() + 60
        while len(acked) < 6 and driver.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(acked) >= 6, "the first server bound nothing"
    finally:
        first.kill9()  # mid-stream: the driver is still filtering and binding
        stop.set()
        driver.join(30)
    assert first.proc.returncode == -signal.SIGKILL

    # what the journal holds: every acknowledged bind, on the acknowledged node
    before = _journal_state(cluster, state_dir, tmp_path / "copy1")
    allocs = before.allocations()
    assert {u: allocs[u].node for u in acked} == acked
    assert set(allocs) <= set(attempted), "only binds the extender was asked for"
    assert before.check_consistency() == []

    second = Served(cluster, state_dir)
    try:
        with GangplaceClient(f"127.0.0.1:{second.grpc_port}") as c:
            snap = c.snapshot()
        used = {n.name: n.gpus_used for n in snap.nodes}
        for uid, node in acked.items():
            assert used[node] >= allocs[uid].gpus
        assert sum(used.values()) == sum(r.gpus for r in allocs.values())
        # fill the rest of the cluster through the restarted server
        stop2 = threading.Event()
        acked2: dict[str, str] = {}
        _bind_gangs(second.http_port, "b", stop2, acked2, {})
        assert acked2, "the restarted server placed nothing"
    finally:
        second.kill9()

    after = _journal_state(cluster, state_dir, tmp_path / "copy2")
    allocs2 = after.allocations()
    assert {u: allocs2[u].node for u in acked} == acked, "pre-crash binds survive a second crash"
    assert {u: allocs2[u].node for u in acked2} == acked2
    assert after.check_consistency() == []
    live = after.cluster
    per_node = {n: 0 for n in NODES}
    for r in allocs2.values():
        per_node[r.node] += r.gpus
    assert all(per_node[n] <= 8 for n in NODES), f"a GPU was double-booked: {per_node}"
    assert (live.free_gpus >= 0).all()
    assert sum(per_node.values()) == 128, "the second run filled exactly the GPUs the first left free"


# ---------------------------------------------------------------------- Kubernetes-mode restart
def _k8s_process(pods: list[dict]):
    """A fresh process in Kubernetes mode: empty state, then the first full list."""
    state = ClusterState(Cluster((), []), clock=FakeClock())
    sync = SyncState(state, levels="auto")
    ext = Extender(state, ExtenderConfig(bind_timeout_s=5.0), binder=FileBinder(state), ready=False)
    sync.on_synced = lambda: setattr(ext, "ready", True)
    sync.on_levels = lambda lm: setattr(ext, "levels", lm)
    sync.relist("nodes", K8S_NODES, "1")
    sync.relist("pods", pods, "2")
    sync.relist("podgroups", [], "3")
    for kind in ("volcanopodgroups", "workloadpodgroups", "workloads", *DRA_KINDS):
        sync.relist(kind, [], "3")
    return state, ext


def _filter(ext, pod) -> list[str]:
    names = [n["metadata"]["name"] for n in K8S_NODES]
    out = asyncio.run(ext.filter({"Pod": pod, "NodeNames": names, "Nodes": None}))
    return out["NodeNames"]


async def _bind_all(ext, pods, nodes):
    return await asyncio.gather(*(ext.bind({"PodName": p["metadata"]["name"], "PodNamespace": "default",
                                            "PodUID": p["metadata"]["uid"], "Node": nodes[p["metadata"]["uid"]]})
                                  for p in pods))


def test_kubernetes_restart_rebuilds_bound_pods_and_replans_an_unbound_reservation_around_them():
    # before the crash: gang "a" (2 x 8 GPUs) bound, gang "b" (3 x 8 GPUs) planned, one member filtered
    state, ext = _k8s_process([])
    a = [gang_pod("a", i, 2) for i in range(2)]
    a_nodes = {p["metadata"]["uid"]: _filter(ext, p)[0] for p in a}
    assert asyncio.run(_bind_all(ext, a, a_nodes)) == [{"Error": ""}] * 2
    b = [gang_pod("b", i, 3) for i in range(3)]
    assert _filter(ext, b[0])
    assert state.reservation("default/b") is not None

    # the crash loses the process; the cluster still has a's pods bound (spec.nodeName) and b's pending
    cluster_pods = [gang_pod("a", i, 2, node=a_nodes[p["metadata"]["uid"]], phase="Running")
                    for i, p in enumerate(a)] + [gang_pod("b", i, 3) for i in range(3)]
    state2, ext2 = _k8s_process(cluster_pods)
    assert ext2.ready
    assert {u: r.node for u, r in state2.allocations().items()} == a_nodes, "bound pods rebuilt from the cluster"
    assert state2.reservations() == {}, "an unbound reservation is not restored"
    # b's members come back (the scheduler retries them): planned again, around a's nodes
    b_nodes = {p["metadata"]["uid"]: _filter(ext2, p)[0] for p in b}
    assert not set(b_nodes.values()) & set(a_nodes.values())
    assert asyncio.run(_bind_all(ext2, b, b_nodes)) == [{"Error": ""}] * 3
    assert state2.check_consistency() == []
    assert (state2.cluster.free_gpus >= 0).all()
    # only one node is left: a 2-node gang does not fit now
    c = gang_pod("c", 0, 2)
    names = [n["metadata"]["name"] for n in K8S_NODES]
    out = asyncio.run(ext2.filter({"Pod": c, "NodeNames": names, "Nodes": None}))
    assert out["NodeNames"] == [] and len(out["FailedNodes"]) == len(names)


# ---------------------------------------------------------------------- solver failures
# two pod sets with a slice above the node level: neither the bounds nor the tree DP prove the
# heuristic's answer, so auto must reach CP-SAT (tests/engine/exact/test_auto.py, "needs CP-SAT")
LEADER_GANG = GangRequest("g", (PodSet("w", 24, gpus=8), PodSet("aux", 4, gpus=1, cpu=2000)),
                          TopologyConstraint(slices=(SliceLayer(4, "su"),)))


@pytest.fixture(scope="module")
def hard_instance():
    """dgx-h100, 1,024 GPUs, seed 2, 24 x 8-GPU workers + 4 x 1-GPU helpers, 4 per SU: the
    heuristic's answer is not proved optimal, so the auto policy reaches CP-SAT."""
    c = generate("dgx-h100", gpus=1024, fill=0.6, seed=2)
    p = prepare(c, LEADER_GANG)
    h = solve(c, p, "heuristic")
    assert h.placed and not h.optimal
    return c, p, h


@pytest.mark.parametrize("module, where", [("gangplace.engine.exact.bounds", "lex_bound"),
                                           ("gangplace.engine.exact.cpsat", "solve_cpsat"),
                                           ("gangplace.engine.place.capacity", "node_fit")])
def test_a_solver_exception_falls_back_to_the_heuristics_answer(hard_instance, monkeypatch, module, where):
    import importlib
    c, p, h = hard_instance

    def boom(*a, **kw):
        raise RuntimeError(f"{where} exploded")
    monkeypatch.setattr(importlib.import_module(module), where, boom)
    pl = place(c, LEADER_GANG, "auto", time_limit_ms=100)
    assert pl.placed and pl.placer == "heuristic"
    want = sorted((ps, int(i)) for ps, i in zip([x.pod_set for x in pl.pods], [x.index for x in pl.pods]))
    assert len(want) == 28
    heuristic = place(c, LEADER_GANG, "heuristic")
    assert [(x.pod_set, x.node) for x in pl.pods] == [(x.pod_set, x.node) for x in heuristic.pods]


def test_a_solver_exception_inside_the_service_still_answers_and_reserves(hard_instance, monkeypatch):
    import gangplace.engine.exact.cpsat as cpsat
    c, _, _ = hard_instance
    monkeypatch.setattr(cpsat, "solve_cpsat", lambda *a, **kw: (_ for _ in ()).throw(MemoryError("no room")))
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", log_level="error")
    with running_service(cfg, ClusterState(c)) as svc, GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as cl:
        pl = cl.place(LEADER_GANG, reserve=True)
        assert pl.placed and pl.placer == "heuristic"
        assert svc.state.reservation("g") is not None and svc.state.check_consistency() == []
        cl.ping()


def test_a_solver_out_of_time_keeps_an_answer_at_least_as_good_as_the_heuristics(hard_instance):
    c, p, h = hard_instance
    for limit in (0.001, 1.0, 20.0):
        sol = solve(c, p, "auto", time_limit_ms=limit)
        assert sol.placed
        assert objective_of(c, p, sol).key <= objective_of(c, p, h).key


# ---------------------------------------------------------------------- a stalled or failing watch
class StallingKube:
    """KubeClient's list_pages / watch: every watch stalls (the client's read timeout fires) until
    ``stalls`` have, then the watcher is stopped."""

    def __init__(self, watcher_ref, stalls: int):
        self.ref = watcher_ref
        self.stalls = stalls
        self.lists = 0
        self.watch_kwargs: list[dict] = []

    async def list_pages(self, path, *, limit, timeout_s):
        assert timeout_s is not None and timeout_s > 0, "a list without a client timeout can hang forever"
        self.lists += 1
        yield K8S_NODES, "7"

    async def watch(self, path, **kw):
        self.watch_kwargs.append(kw)
        if len(self.watch_kwargs) > self.stalls:
            self.ref[0].stopping = True
            return  # an empty stream: the watch ends normally
        raise asyncio.TimeoutError()
        yield


def test_a_stalled_watch_times_out_backs_off_and_lists_again(monkeypatch):
    state = ClusterState(Cluster((), []))
    sync = SyncState(state, levels="auto")
    ref = []
    kube = StallingKube(ref, stalls=3)
    watcher = KubeWatcher(sync, kube, backoff_initial_s=0.01, backoff_max_s=0.04, watch_timeout_s=5)
    ref.append(watcher)
    waits = []

    async def pause(t):
        waits.append(t)
    monkeypatch.setattr(watcher, "_pause", pause)
    asyncio.run(watcher.run("nodes"))
    assert kube.lists == 4, "every stall ends in a fresh list"
    assert waits == [0.01, 0.02, 0.04], "exponential backoff, capped"
    for kw in kube.watch_kwargs:
        assert kw["timeout_s"] == 5, "the server ends an idle watch"
        assert 0 < kw["read_slack_s"] < 120, "a client read timeout longer than the server's own, but finite"
    assert state.cluster.n_nodes == len(K8S_NODES)


# ---------------------------------------------------------------------- gangs that never complete
def test_reservations_of_gangs_whose_other_members_never_arrive_expire_on_the_services_timer():
    cfg = ServeConfig(cluster=ClusterSource(synthetic="dgx-h100", gpus=64, fill=0.0), grpc_listen="127.0.0.1:0",
                      http_listen="127.0.0.1:0", reservation_ttl_s=0.5, log_level="error", placer="heuristic")
    with running_service(cfg) as svc, GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as c:
        names = svc.state.node_names()
        status, out = http_post(svc.http_port, "filter", {"Pod": gang_pod("lonely", 0, 4), "NodeNames": names,
                                                          "Nodes": None})
        assert status == 200 and len(out["NodeNames"]) == 1
        assert c.place(GangRequest("rpc-held", (PodSet("w", 2, gpus=8),)), reserve=True,
                       reservation_ttl_s=0.5).placed
        assert svc.state.stats()["reserved_gpus"] == 6 * 8
        deadline = time.monotonic() + 30
        while svc.state.stats()["reservations"] and time.monotonic() < deadline:
            time.sleep(0.1)  # no request arrives: only the service's expiry timer runs
        stats = svc.state.stats()
        assert stats["reservations"] == 0 and stats["reserved_gpus"] == 0 and stats["free_gpus"] == 64
        assert svc.state.check_consistency() == []
        # the whole cluster is usable again
        assert c.place(GangRequest("all", (PodSet("w", 8, gpus=8),))).placed


def _stalled_place(self, *args, **kwargs):  # the engine hangs (runs in a worker thread)
    time.sleep(2.0)
    raise AssertionError("the verb should have been answered before the engine returned")


@pytest.mark.parametrize("node_cache", [True, False], ids=["NodeNames", "Nodes"])
def test_a_filter_over_the_time_limit_answers_200_with_an_error_in_the_requests_shape(monkeypatch, node_cache):
    # DESIGN: extender verbs answer 200 on everything but unparseable bodies (the scheduler retries
    # any non-200 as a failure, forever); a stalled engine gets the filter's own Error answer
    monkeypatch.setattr(ClusterState, "place", _stalled_place)
    cfg = ServeConfig(cluster=ClusterSource(synthetic="dgx-h100", gpus=64, fill=0.0), grpc_listen="127.0.0.1:0",
                      http_listen="127.0.0.1:0", request_timeout_s=0.3, log_level="error")
    with running_service(cfg) as svc:
        v = svc.state.version
        names = svc.state.node_names()
        body = ({"Pod": gang_pod("x", 0, 2), "NodeNames": names, "Nodes": None} if node_cache else
                {"Pod": gang_pod("x", 0, 2), "NodeNames": None,
                 "Nodes": {"metadata": {}, "items": [{**K8S_NODES[0], "metadata": {"name": n}} for n in names]}})
        status, out = http_post(svc.http_port, "filter", body)
        assert status == 200, out
        assert out["Error"] == "gangplace: filter took longer than 0.3 s; retrying"
        assert out["FailedNodes"] == {} and out["FailedAndUnresolvableNodes"] == {}
        if node_cache:
            assert out["NodeNames"] == [] and out["Nodes"] is None
        else:
            assert out["Nodes"]["items"] == [] and out["NodeNames"] is None
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.http_port}/healthz", timeout=5) as r:
            assert r.status == 200
        assert svc.state.version == v
        with GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as c:
            c.ping()
        assert 'gangplace_rejections_total{kind="deadline_exceeded"} 1.0' in svc.metrics.expose().decode()
        # an unparseable body is still HTTP 400, deadline or not
        assert http_post(svc.http_port, "filter", {"Pod": 1})[0] == 400


@pytest.mark.parametrize("verb, expected", [("prioritize", []), ("preempt", {"NodeNameToMetaVictims": {}})])
def test_prioritize_and_preempt_over_the_time_limit_answer_200_with_nothing_acceptable(monkeypatch, verb, expected):
    async def stalled(self, args):
        await asyncio.sleep(5)
    monkeypatch.setattr(Extender, verb, stalled)  # before the routes are mounted
    cfg = ServeConfig(cluster=ClusterSource(synthetic="dgx-h100", gpus=64, fill=0.0), grpc_listen="127.0.0.1:0",
                      http_listen="127.0.0.1:0", request_timeout_s=0.3, log_level="error")
    with running_service(cfg) as svc:
        names = svc.state.node_names()
        body = ({"Pod": gang_pod("x", 0, 1), "NodeNames": names, "Nodes": None} if verb == "prioritize" else
                {"Pod": gang_pod("x", 0, 1), "NodeNameToVictims": None,
                 "NodeNameToMetaVictims": {names[0]: {"Pods": [{"UID": "v"}], "NumPDBViolations": 0}}})
        assert http_post(svc.http_port, verb, body) == (200, expected)


def test_a_bind_over_its_time_limit_answers_200_with_an_error_and_its_retry_succeeds(monkeypatch, tmp_path):
    # a stalled disk: the journal's fsync does not return in time. The bind is applied and written
    # but not known to be durable, so it must not be acknowledged; once the disk catches up, the
    # scheduler's retry of the same pod to the same node is a success
    release = threading.Event()
    real_wait = ClusterState.wait_durable

    def stalled_wait(self, seq=None):
        release.wait(10)
        real_wait(self, seq)
    monkeypatch.setattr(ClusterState, "wait_durable", stalled_wait)
    cfg = ServeConfig(cluster=ClusterSource(synthetic="dgx-h100", gpus=64, fill=0.0), grpc_listen="127.0.0.1:0",
                      http_listen="127.0.0.1:0", request_timeout_s=0.3, log_level="error", placer="heuristic",
                      state_dir=str(tmp_path))
    with running_service(cfg) as svc:
        # the /bind limit stays above the extender's own barrier wait (bind_timeout_s, 25 s) ...
        assert svc._route_limits["/bind"] > svc.extender.config.bind_timeout_s
        svc._route_limits["/bind"] = 0.3  # ... shortened here so the test does not wait 30 s
        pod = gang_pod("solo", 0, 1)
        uid = pod["metadata"]["uid"]
        names = svc.state.node_names()
        status, out = http_post(svc.http_port, "filter", {"Pod": pod, "NodeNames": names, "Nodes": None})
        node = out["NodeNames"][0]
        bind = {"PodName": "solo-0", "PodNamespace": "default", "PodUID": uid, "Node": node}
        status, out = http_post(svc.http_port, "bind", bind)
        assert status == 200 and out == {"Error": "gangplace: bind took longer than 0.3 s; retrying"}
        assert svc.state.allocation(uid).node == node  # applied and written, not acknowledged
        # meanwhile everyone else is served: the wait runs in a thread, not on the loop or under the lock
        status, out = http_post(svc.http_port, "filter", {"Pod": gang_pod("other", 0, 1), "NodeNames": names,
                                                          "Nodes": None})
        assert status == 200 and out["NodeNames"]
        release.set()
        assert http_post(svc.http_port, "bind", bind) == (200, {"Error": ""})
        assert svc.state.is_durable()
        assert svc.state.check_consistency() == []
    assert list(ClusterState(generate("dgx-h100", gpus=64, fill=0.0),
                            journal_dir=tmp_path).allocations()) == [uid]


def test_non_extender_routes_keep_http_504_past_the_time_limit(monkeypatch):
    from gangplace.service.app import Service

    async def stalled(self, request):
        await asyncio.sleep(5)
    monkeypatch.setattr(Service, "_metrics", stalled)
    cfg = ServeConfig(cluster=ClusterSource(synthetic="dgx-h100", gpus=64, fill=0.0), grpc_listen="127.0.0.1:0",
                      http_listen="127.0.0.1:0", request_timeout_s=0.3, log_level="error")
    with running_service(cfg) as svc:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{svc.http_port}/metrics", timeout=5)
        assert e.value.code == 504


def test_regression_pods_finished_over_grpc_leave_the_extenders_pod_cache():
    # found by the load test: RSS grew ~1 KB per finished pod, the extender's parsed-pod cache
    # kept every pod that UnbindPods had forgotten
    cfg = ServeConfig(cluster=ClusterSource(synthetic="dgx-h100", gpus=64, fill=0.0), grpc_listen="127.0.0.1:0",
                      http_listen="127.0.0.1:0", log_level="error", placer="heuristic")
    with running_service(cfg) as svc, GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as c:
        pod = gang_pod("solo", 0, 1)
        names = svc.state.node_names()
        status, out = http_post(svc.http_port, "filter", {"Pod": pod, "NodeNames": names, "Nodes": None})
        node = out["NodeNames"][0]
        status, out = http_post(svc.http_port, "bind", {"PodName": "solo-0", "PodNamespace": "default",
                                                        "PodUID": pod["metadata"]["uid"], "Node": node})
        assert out == {"Error": ""}
        assert pod["metadata"]["uid"] in svc.extender.pods._pods
        assert c.unbind([pod["metadata"]["uid"]]) == 1
        assert pod["metadata"]["uid"] not in svc.extender.pods._pods
        assert svc.state.check_consistency() == []


def test_a_client_that_stalls_mid_body_is_cut_off_by_the_time_limit_and_blocks_no_one():
    import socket
    cfg = ServeConfig(cluster=ClusterSource(synthetic="dgx-h100", gpus=64, fill=0.0), grpc_listen="127.0.0.1:0",
                      http_listen="127.0.0.1:0", request_timeout_s=0.5, log_level="error", placer="heuristic")
    with running_service(cfg) as svc:
        slow = socket.create_connection(("127.0.0.1", svc.http_port), timeout=10)
        try:
            slow.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n{\"Pod\": ")  # and then nothing more
            # others are served meanwhile
            names = svc.state.node_names()
            status, out = http_post(svc.http_port, "filter", {"Pod": gang_pod("other", 0, 1), "NodeNames": names,
                                                              "Nodes": None})
            assert status == 200 and out["NodeNames"]
            # the stalled request gets its answer once the request time limit passes
            reply = slow.recv(4096)
            assert reply.startswith(b"HTTP/1.1 504"), reply[:100]
        finally:
            slow.close()
            time.sleep(0.2)  # let the server see the connection go before it stops
        assert svc.state.check_consistency() == []


def test_kubernetes_restart_with_a_partly_bound_gang_places_the_rest_next_to_its_bound_members():
    # before the crash, 2 of gang g's 3 members were bound (a Binding failed for the third, say)
    names = [n["metadata"]["name"] for n in K8S_NODES]
    rack_a = sorted(n for n in names if n.startswith("rack-a"))
    pods = [gang_pod("g", 0, 3, node=rack_a[0], phase="Running"),
            gang_pod("g", 1, 3, node=rack_a[1], phase="Running"),
            gang_pod("g", 2, 3)]
    state, ext = _k8s_process(pods)
    assert len(state.allocations()) == 2 and state.reservations() == {}
    node = _filter(ext, pods[2])
    assert node == [rack_a[2]], "the one member left goes next to its gang mates"
    out = asyncio.run(ext.bind({"PodName": "g-2", "PodNamespace": "default", "PodUID": pods[2]["metadata"]["uid"],
                                "Node": node[0]}))
    assert out == {"Error": ""}
    assert sorted(r.node for r in state.allocations().values()) == rack_a
    assert state.check_consistency() == []

"""The whole service: one asyncio loop with gRPC and HTTP, probes, metrics, limits, shutdown."""
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from gangplace.engine import GangRequest, PodSet
from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.synthetic import generate
from gangplace.service.client import GangplaceClient, ServiceError
from gangplace.service.cmd_serve import usage_banner
from gangplace.service.config import ClusterSource, ServeConfig
from gangplace.service.testing import ServiceThread, running_service


def _cfg(**kw) -> ServeConfig:
    kw.setdefault("cluster", ClusterSource(synthetic="dgx-h100", gpus=128))
    return ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", **kw)


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def post(port: int, path: str, body: bytes) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def svc():
    with running_service(_cfg(http_max_body_bytes=64 * 1024)) as s:
        yield s


def test_the_service_builds_its_state_from_the_synthetic_source(svc):
    assert svc.state.stats()["gpus"] == 128
    assert svc.grpc_port > 0 and svc.http_port > 0 and svc.grpc_port != svc.http_port


def test_healthz_and_readyz(svc):
    assert get(svc.http_port, "/healthz") == (200, "ok\n")
    assert get(svc.http_port, "/readyz") == (200, "ready\n")


def test_topology_reports_the_levels_and_their_domains(svc):
    import json
    status, body = get(svc.http_port, "/topology")
    report = json.loads(body)
    c = svc.state.cluster
    assert status == 200 and report["nodes"] == c.n_nodes and report["incomplete_nodes"] == 0
    assert [lv["name"] for lv in report["levels"]] == list(c.levels)
    assert [lv["domains"] for lv in report["levels"]] == [len(set(c.node_domain[i].tolist())) for i in range(len(c.levels))]


def test_readyz_follows_the_extender_readiness(svc):
    svc.extender.ready = False  # what the Kubernetes sync does until its first full list
    try:
        assert get(svc.http_port, "/readyz")[0] == 503
    finally:
        svc.extender.ready = True
    assert get(svc.http_port, "/readyz")[0] == 200


def test_readyz_is_false_once_the_journal_failed(tmp_path, monkeypatch):
    import errno

    import gangplace.engine.live.journal as journal_mod
    state = ClusterState(generate("dgx-h100", gpus=64, fill=0.0), journal_dir=tmp_path)
    with running_service(_cfg(), state) as s:
        assert get(s.http_port, "/readyz")[0] == 200

        def broken_fsync(fd):
            raise OSError(errno.EIO, "Input/output error")
        monkeypatch.setattr(journal_mod.os, "fsync", broken_fsync)
        with pytest.raises(Exception):
            state.bind("uid-1", state.node_names()[0], gpus=8)
        assert state.journal_failed()
        assert get(s.http_port, "/readyz")[0] == 503  # binds cannot be acknowledged until a restart
        assert get(s.http_port, "/healthz")[0] == 200


def test_metrics_count_requests_placements_reservations_and_rejections(svc):
    with GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as c:
        assert c.place(GangRequest("m1", (PodSet("w", 1, gpus=8),)), reserve=True, placer="heuristic").placed
        c.release("m1")
        with pytest.raises(Exception):
            c.place(GangRequest("m2", (PodSet("w", 0, gpus=8),)))
    post(svc.http_port, "/filter", b"{not json")
    status, text = get(svc.http_port, "/metrics")
    assert status == 200
    lines = text.splitlines()

    def value(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))
    assert value('gangplace_request_seconds_count{transport="grpc",verb="Place"}') >= 2
    assert value('gangplace_request_seconds_count{transport="http",verb="/filter"}') >= 1
    assert value('gangplace_placements_total{placer="heuristic",result="placed"}') >= 1
    assert value('gangplace_reservations_total{event="created"}') >= 1
    assert value('gangplace_reservations_total{event="released"}') >= 1
    assert value('gangplace_rejections_total{kind="invalid_argument"}') >= 1
    assert value('gangplace_solver_seconds_count{verb="Place"}') >= 1
    assert value("gangplace_gpus ") == 128
    assert any(line.startswith('gangplace_request_seconds_bucket{le="0.001"') or 'le="0.001"' in line
               for line in lines)


def test_http_bodies_over_the_limit_get_413_and_are_counted(svc):
    status, _ = post(svc.http_port, "/filter", b'{"x": "' + b"a" * (80 * 1024) + b'"}')
    assert status == 413
    assert b'gangplace_rejections_total{kind="too_large"}' in svc.metrics.expose()
    assert get(svc.http_port, "/healthz")[0] == 200


def test_an_extender_body_of_the_wrong_shape_is_400_not_a_crash(svc):
    status, text = post(svc.http_port, "/filter", json.dumps({"Pod": 5}).encode())
    assert status == 400 and "gangplace" in text
    assert get(svc.http_port, "/healthz")[0] == 200


def test_the_banner_says_how_to_call_the_service(svc):
    text = usage_banner(svc)
    assert f"127.0.0.1:{svc.grpc_port}" in text and f"http://127.0.0.1:{svc.http_port}/readyz" in text
    assert "gangplace grpc place" in text and "curl" in text and "grpcurl" in text


def test_stop_marks_not_serving_then_closes_both_ports():
    state = ClusterState(generate("dgx-h100", gpus=64, fill=0.0))
    t = ServiceThread(_cfg(), state)
    svc = t.start()
    grpc_port, http_port = svc.grpc_port, svc.http_port
    with GangplaceClient(f"127.0.0.1:{grpc_port}", timeout_s=2) as c:
        assert c.health() == "SERVING"
        t.stop(grace_s=0.5)
        with pytest.raises(ServiceError):
            c.ping()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2)
    assert not svc.ready


def test_a_file_cluster_source_is_journaled_to_the_state_dir(tmp_path):
    cluster = tmp_path / "c.yaml"
    cluster.write_text("levels: [rack]\nnodes:\n"
                       "  - {name: n1, topology: {rack: r1}, gpus: 8}\n"
                       "  - {name: n2, topology: {rack: r1}, gpus: 8}\n")
    cfg = _cfg(cluster=ClusterSource(file=str(cluster)), state_dir=str(tmp_path / "state"))
    with running_service(cfg) as svc, GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as c:
        c.bind("pod-1", "n1", gpus=6)
    # a restart replays the journal: the GPUs stay taken
    with running_service(cfg) as svc, GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as c:
        assert c.snapshot(include_nodes=False).free_gpus == 10
        assert not c.place(GangRequest("g", (PodSet("w", 2, gpus=8),))).placed


@pytest.mark.slow
def test_gangplace_serve_prints_how_to_call_it_and_stops_gracefully_on_sigterm():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "gangplace.service.cli", "serve", "--synthetic", "dgx-h100",
                             "--gpus", "256", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()
        assert first.startswith("gangplace serving synthetic dgx-h100: 32 nodes, 256 GPUs"), first
        grpc_line = proc.stdout.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)", grpc_line).group(1))
        with GangplaceClient(f"127.0.0.1:{port}") as c:
            assert c.health() == "SERVING"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    msgs = [entry["msg"] for entry in logs]
    assert "serving" in msgs and "shutting down" in msgs and msgs[-1] == "stopped"
    assert all({"ts", "level", "logger", "msg"} <= set(entry) for entry in logs)


class _FakeWatcher:
    closed = False

    def close(self):
        self.closed = True


def test_kubernetes_mode_waits_for_the_first_sync_and_stops_the_watcher(monkeypatch, tmp_path):
    import types

    calls = {}
    watcher = _FakeWatcher()

    def start_kube_sync(state, ext, **kw):
        calls.update(kw, state=state, ext=ext)
        ext.ready = False  # what the real sync does until its first full list
        return object(), watcher
    monkeypatch.setitem(sys.modules, "gangplace.service.k8s_sync",
                        types.SimpleNamespace(start_kube_sync=start_kube_sync))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    cfg = _cfg(cluster=ClusterSource(kubeconfig=str(kubeconfig), topology_levels="tier-1,tier-2"))
    t = ServiceThread(cfg)
    svc = t.start()
    try:
        assert calls["kubeconfig"] == str(kubeconfig) and calls["in_cluster"] is False
        assert calls["levels"] == ["tier-1", "tier-2"] and calls["gpu_resource"] == "nvidia.com/gpu"
        assert calls["state"] is svc.state and calls["ext"] is svc.extender
        assert get(svc.http_port, "/readyz")[0] == 503
        svc.extender.ready = True  # the first full sync is done
        assert get(svc.http_port, "/readyz")[0] == 200
    finally:
        t.stop()
    assert watcher.closed


def test_the_bind_barrier_is_not_cut_short_by_the_generic_request_limit():
    with running_service(_cfg(request_timeout_s=1.0)) as svc:
        assert svc._route_limits["/bind"] >= svc.extender.config.bind_timeout_s
        assert svc._route_limits.get("/filter", svc.config.request_timeout_s) == 1.0

"""service/metrics.py and the metrics listener: what an operator's Prometheus scrapes."""
from __future__ import annotations

import http.client
import re

import orjson

from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.synthetic import generate
from gangplace.service.config import ServeConfig
from gangplace.service.testing import http_get, running_service


_get = http_get


def _filter(port: int, uid: str, names: list[str]) -> dict:
    pod = {"metadata": {"name": uid, "namespace": "default", "uid": uid,
                        "labels": {"gangplace.dev/gang": "m", "gangplace.dev/size": "2"}},
           "spec": {"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "8"}}}]}}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/filter", body=orjson.dumps({"Pod": pod, "NodeNames": names, "Nodes": None}),
                     headers={"Content-Type": "application/json"})
        return orjson.loads(conn.getresponse().read())
    finally:
        conn.close()


def _value(text: str, series: str) -> float:
    m = re.search(rf"^{re.escape(series)} ([0-9.e+]+)$", text, re.M)
    assert m, f"{series} not exposed:\n{text}"
    return float(m.group(1))


def test_the_metrics_listener_exports_the_extenders_decisions_on_its_own_port():
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", metrics_listen="127.0.0.1:0",
                      placer="heuristic", log_level="error")
    with running_service(cfg, ClusterState(generate("dgx-h100", gpus=256, fill=0.0, seed=1))) as svc:
        assert svc.metrics_port and svc.metrics_port != svc.http_port
        names = svc.state.node_names()
        assert _filter(svc.http_port, "m-0", names)["NodeNames"]
        huge = _filter(svc.http_port, "m-0", [])  # the same member offered no node
        assert not huge["NodeNames"]
        status, text = _get(svc.metrics_port, "/metrics")
        assert status == 200
        assert _value(text, 'gangplace_extender_events_total{event="filter_place"}') == 1
        assert _value(text, 'gangplace_extender_events_total{event="gang_planned"}') == 1
        assert _value(text, 'gangplace_extender_events_total{event="filter"}') == 2
        assert _value(text, "gangplace_gangs_waiting") == 0
        assert _value(text, "gangplace_active_reservations") == 1
        assert _get(svc.metrics_port, "/healthz")[0] == 200
        assert _get(svc.metrics_port, "/filter")[0] == 404  # only metrics and health on this port
        assert _value(_get(svc.http_port, "/metrics")[1], "gangplace_active_reservations") == 1


def test_without_a_metrics_listener_metrics_stay_on_the_http_port_only():
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic", log_level="error")
    with running_service(cfg, ClusterState(generate("dgx-h100", gpus=64, fill=0.0, seed=1))) as svc:
        assert svc.metrics_port is None
        assert _get(svc.http_port, "/metrics")[0] == 200

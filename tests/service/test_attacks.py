"""Attacks from the reliability review (issue "Reliability under attack"), re-run as tests.

Each test is named after the attack and asserts the contract's answer (docs/reliability.md): a
clean 4xx / an answer with a reason / INVALID_ARGUMENT, quickly, never a 5xx, an INTERNAL or a
stalled event loop, and no state change.
"""
from __future__ import annotations

import http.client
import threading
import time

import orjson
import pytest

from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.synthetic import generate
from gangplace.service.client import GangplaceClient
from gangplace.service.config import ServeConfig
from gangplace.service.testing import running_service


@pytest.fixture(scope="module")
def svc():
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic", log_level="error")
    with running_service(cfg, ClusterState(generate("dgx-h100", gpus=128, fill=0.5, seed=3))) as s:
        yield s


def _pod(memory: str) -> dict:
    return {"metadata": {"name": "q", "namespace": "default", "uid": f"uid-{memory[:12]}",
                         "labels": {"gangplace.dev/gang": "q", "gangplace.dev/size": "2"}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "8",
                                                                               "memory": memory}}}]}}


def _post(port: int, verb: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", f"/{verb}", body=orjson.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, orjson.loads(r.read())
    finally:
        conn.close()


def _healthz_while(port: int, fn) -> tuple[object, float]:
    """Run ``fn`` while polling /healthz; return its result and the slowest /healthz answer (s)."""
    worst, done = 0.0, threading.Event()

    def poll():
        nonlocal worst
        while not done.is_set():
            t0 = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.01)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        result = fn()
    finally:
        done.set()
        t.join(30)
    return result, worst


@pytest.mark.parametrize("memory", ["1e999999", "1e1000000", "1" * 60 + "Ei", "9" * 5000],
                         ids=["a million-digit memory request (80 s on the event loop before)",
                              "a memory exponent past the decimal context (HTTP 500 before)",
                              "sixty digits with the largest suffix", "a 5,000-digit memory request"])
@pytest.mark.parametrize("verb", ["filter", "prioritize", "preempt"])
def test_attack_6_a_huge_memory_quantity_is_answered_quickly_with_a_reason(svc, verb, memory):
    names = svc.state.node_names()[:8]
    body = {"Pod": _pod(memory), "NodeNames": names, "Nodes": None}
    if verb == "preempt":
        body = {"Pod": _pod(memory), "NodeNameToVictims": None, "NodeNameToMetaVictims": {}}
    before = svc.state.stats()["version"]
    (status, out), worst = _healthz_while(svc.http_port, lambda: _post(svc.http_port, verb, body))
    assert status == 200, out
    assert worst < 2.0, f"/healthz waited {worst:.1f} s behind the request"
    if verb == "filter":
        reasons = set(out["FailedAndUnresolvableNodes"].values())
        assert set(out["FailedAndUnresolvableNodes"]) == set(names) and len(reasons) == 1, out
        assert "memory" in reasons.pop()
    assert svc.state.stats()["version"] == before


def test_attack_6_over_grpc_the_extender_verb_answers_without_internal(svc):
    with GangplaceClient(f"127.0.0.1:{svc.grpc_port}", timeout_s=30) as c:
        status, out = c.extender("filter", {"Pod": _pod("1e1000000"), "NodeNames": svc.state.node_names()[:4],
                                            "Nodes": None})
    assert status == 200 and all("memory" in r for r in out["FailedAndUnresolvableNodes"].values()), out

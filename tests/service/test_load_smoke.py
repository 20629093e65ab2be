"""A 5-second run of the load test (benchmarks/load_test.py) on a small cluster, in-process.

The 60-second run on 16,384 GPUs is ``make load`` (figures in docs/reliability.md); this checks
that the driver and the service agree under concurrency: no errors, every acknowledged bind
held by the server and nothing else, the per-node accounting exact at the end."""
from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest

from gangplace.service.config import ClusterSource, ServeConfig
from gangplace.service.testing import running_service

LOAD_TEST = Path(__file__).resolve().parents[2] / "benchmarks" / "load_test.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("gangplace_load_test", LOAD_TEST)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_five_seconds_of_mixed_http_and_grpc_load_leave_no_errors_and_exact_accounting(tmp_path):
    lt = _load_module()
    cfg = ServeConfig(cluster=ClusterSource(synthetic="dgx-h100", gpus=1024, fill=0.5, seed=1),
                      grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", state_dir=str(tmp_path),
                      placer="auto", log_level="warning")
    with running_service(cfg) as svc:
        names = list(svc.state.node_names())
        driver = lt.Driver(f"http://127.0.0.1:{svc.http_port}", f"127.0.0.1:{svc.grpc_port}", names, seed=7)
        asyncio.run(driver.run(5.0, gang_workers=3, single_workers=1, grpc_workers=2))
        check = lt.server_check(svc.state)
    report = lt.summarize(driver, 5.0)
    audit = lt.audit(check, driver.res.ledger)
    assert report["errors"] == 0, report["error_samples"]
    assert report["outcomes"].get("gangs_bound", 0) > 0 and report["pods_finished"] > 0, report
    assert {"http filter", "http bind", "grpc Place+reserve", "grpc UnbindPods"} <= set(report["verbs"])
    assert audit["consistent"], audit


def test_the_end_of_run_audit_catches_a_lost_bind_an_extra_allocation_and_a_moved_pod():
    lt = _load_module()
    check = {"problems": [], "negative_free": [], "stats": {},
             "allocs": {"u-a": ("n1", 8), "u-b": ("n2", 8), "bg-1": ("n3", 8)}}
    assert lt.audit(check, {"u-a": ("n1", 8), "u-b": ("n2", 8)})["consistent"], "background pods are not ours"
    lost = lt.audit(check, {"u-a": ("n1", 8), "u-b": ("n2", 8), "u-c": ("n1", 8)})
    assert not lost["consistent"] and lost["ledger_missing_on_server"] == ["u-c"]
    extra = lt.audit(check, {"u-a": ("n1", 8)})
    assert not extra["consistent"] and extra["server_allocs_not_in_ledger"] == ["u-b"]
    moved = lt.audit(check, {"u-a": ("n1", 8), "u-b": ("n9", 8)})
    assert not moved["consistent"] and moved["ledger_node_mismatch"] == ["u-b"]
    bad = lt.audit({**check, "problems": ["node n1: gpus capacity 8 != ..."]}, {"u-a": ("n1", 8), "u-b": ("n2", 8)})
    assert not bad["consistent"]

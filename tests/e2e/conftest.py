"""Fixtures of the end-to-end tests: a real kube-scheduler v1.36.3 in front of gangplace.

The control plane comes from ``make kube`` (.kube/bin, see docs/e2e.md). Without it the tests
are skipped with the reason, except in CI (``CI`` set), where a missing control plane fails.
One control plane serves a whole test module; each test gets a fresh namespace, and its pods are
force-deleted afterwards (namespaces themselves never finish deleting: no controller runs).
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import urllib3

from tests.e2e.harness import (GPU, KUBE_BIN, ControlPlane, Kube, Proc, missing_components, pod_gpus,
                               scheduler_config, topology_nodes, wait_for)

# 2 blocks x 2 racks (leaves) x 4 nodes x 8 GPUs: a rack holds 32 GPUs, a block 64
BASE_NODES = topology_nodes(2, 2, 4)


def require_control_plane() -> None:
    missing = missing_components()
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI: {', '.join(missing)} missing from {KUBE_BIN}: `make kube` must run before the e2e tests")
    if not shutil.which("go"):
        pytest.skip("Go toolchain not found: e2e tests need `make kube` (docs/e2e.md)")
    pytest.skip(f"{', '.join(missing)} not built: run `make kube` (docs/e2e.md)")


@pytest.fixture(scope="module")
def control_plane():
    """etcd + kube-apiserver only (no scheduler)."""
    require_control_plane()
    cp = ControlPlane().start()
    try:
        yield cp
    finally:
        cp.stop()


@dataclass
class Gangplace:
    """A control plane with gangplace as the extender of the shipped scheduler configuration."""

    cp: ControlPlane
    kube: Kube
    proc: Proc
    url: str
    http_port: int

    def restart(self, *, kill: bool = True) -> None:
        """SIGKILL (or SIGTERM) gangplace and start it again on the same port."""
        self.kill() if kill else self.cp.stop_component("gangplace")
        self.start()

    def kill(self) -> None:
        self.cp.stop_component("gangplace", sig=9)

    def start(self) -> None:
        self.proc, self.url = self.cp.start_gangplace(http_port=self.http_port)

    def metric(self, name: str) -> float:
        text = urllib3.request("GET", f"{self.url}/metrics", timeout=5).data.decode()
        m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else float("nan")

    def idle(self) -> bool:
        """Every GPU free in gangplace's view: no allocation and no reservation left."""
        return self.metric("gangplace_free_gpus") == self.metric("gangplace_gpus")


@pytest.fixture(scope="module")
def gangplace():
    yield from control_plane_with_gangplace(
        lambda cp, url: cp.start_scheduler(scheduler_config(cp.kubeconfig("scheduler"), url)))


def control_plane_with_gangplace(start_scheduler, prepare=None, **control_plane):
    """A control plane (``ControlPlane(**control_plane)``) with the base nodes, RBAC and gangplace, then
    ``start_scheduler(cp, url)`` (the stock scheduler with the extender, or the gangplace-scheduler);
    yields a Gangplace. ``prepare(cp)`` runs before gangplace starts (CRDs gangplace must find at its
    first list)."""
    require_control_plane()
    cp = ControlPlane(**control_plane).start()
    try:
        cp.add_nodes(BASE_NODES)
        cp.apply_rbac()
        if prepare is not None:
            prepare(cp)
        proc, url = cp.start_gangplace()
        start_scheduler(cp, url)
        yield Gangplace(cp, cp.admin, proc, url, int(url.rsplit(":", 1)[1]))
    finally:
        cp.stop()


def ensure_priority_classes(kube, classes=(("e2e-low", 100), ("e2e-high", 1000))) -> None:
    """Create the PriorityClasses the preemption tests use (kept if an earlier test made them)."""
    for name, value in classes:
        try:
            kube.create("/apis/scheduling.k8s.io/v1/priorityclasses", {
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value})
        except Exception as e:  # noqa: BLE001 -- 409: created earlier on this control plane
            if "409" not in str(e):
                raise


_ns_ids = itertools.count()


@pytest.fixture
def ns(gangplace, request):
    """A fresh namespace; afterwards its pods are force-deleted and gangplace must be idle again."""
    name = f"t{next(_ns_ids)}-{re.sub(r'[^a-z0-9]+', '-', request.node.name.lower())[:40].strip('-')}"
    kube = gangplace.kube
    kube.ensure_namespace(name)
    yield name
    for pod in kube.pods(name):
        kube.delete_pod(name, pod["metadata"]["name"], grace=0)
    wait_for(lambda: not kube.pods(name), 30, f"pods of {name} deleted")
    if gangplace.proc.alive():
        wait_for(gangplace.idle, 30, "gangplace to release every GPU after the test")


# ------------------------------------------------------------------------------ checks
def bound(kube: Kube, namespace: str, gang: str | None = None) -> dict[str, str]:
    """pod name -> node of the bound, not terminating pods (of one gang)."""
    sel = f"gangplace.dev/gang={gang}" if gang else None
    return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in kube.pods(namespace, sel)
            if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")}


def assert_no_overcommit(kube: Kube) -> None:
    """No node holds more GPUs than it has, and no pod is bound to a node that does not exist."""
    alloc = {n["metadata"]["name"]: int(n["status"]["allocatable"][GPU]) for n in kube.nodes()}
    used: dict[str, int] = {}
    for pod in kube.pods():
        node = pod["spec"].get("nodeName")
        if node and not pod["metadata"].get("deletionTimestamp"):
            assert node in alloc, f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']} bound to missing node {node}"
            used[node] = used.get(node, 0) + pod_gpus(pod)
    over = {n: (u, alloc[n]) for n, u in used.items() if u > alloc[n]}
    assert not over, f"GPUs double-booked (used, allocatable): {over}"


@contextmanager
def reaping(kube: Kube, interval: float = 0.2):
    """Force-delete Terminating pods in the background, as kubelets would (preemption, evictions)."""
    stop = threading.Event()

    def loop():
        while not stop.wait(interval):
            try:
                kube.reap()
            except Exception:  # noqa: BLE001 -- a pod gone meanwhile; the next round retries
                pass
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(5)

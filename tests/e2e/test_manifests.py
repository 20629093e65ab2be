"""What deploy/ installs is accepted by a real v1.36.3 API server (``kubectl apply --dry-run=server``).

Each kustomize overlay is rendered with ``kubectl kustomize`` (the kubectl built by `make kube`)
and its output dry-run applied; deploy/base/rbac.yaml is applied for real first (the rest lives in
its namespace). The examples are applied as a user would: deploy/examples/namespace.yaml for real,
then each example; stand-in CRDs for JobSet, the coscheduling PodGroup, LeaderWorkerSet and the
Prometheus Operator's ServiceMonitor (schemaless: only the kinds must exist) are created, since their
controllers are not part of a bare control plane. The API server runs with the alpha Workload API on
(deploy/examples/workload-job-gang.yaml needs it), as docs/kubernetes.md says to run it.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import require_control_plane
from tests.e2e.harness import REPO, ControlPlane, wait_for

pytestmark = pytest.mark.e2e

DEPLOY = REPO / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
MANIFESTS = sorted((DEPLOY / "examples").glob("*.yaml"))
STAND_IN_CRDS = [("jobset.x-k8s.io", "v1alpha2", "JobSet", "jobsets"),
                 ("scheduling.x-k8s.io", "v1alpha1", "PodGroup", "podgroups"),
                 ("leaderworkerset.x-k8s.io", "v1", "LeaderWorkerSet", "leaderworkersets"),
                 ("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors")]


def stand_in_crd(group, version, kind, plural):
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                     "versions": [{"name": version, "served": True, "storage": True, "schema": {
                         "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


@pytest.fixture(scope="module")
def control_plane():
    """etcd + kube-apiserver with the Workload API (scheduling.k8s.io/v1alpha2) on."""
    require_control_plane()
    cp = ControlPlane(workload_api=True).start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def prepared(control_plane):
    cp = control_plane
    cp.apply_rbac()
    for crd in STAND_IN_CRDS:
        cp.admin.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", stand_in_crd(*crd))
    for group, version, kind, plural in STAND_IN_CRDS:
        wait_for(lambda: cp.admin.get(f"/apis/{group}/{version}", ok_missing=True), 30, f"{kind} served")
    r = cp.kubectl("apply", "-f", str(DEPLOY / "examples" / "namespace.yaml"), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return cp


def test_deploy_has_the_four_overlays_and_examples():
    assert OVERLAYS == ["file", "ha", "kubernetes", "plugin"]
    assert {p.name for p in MANIFESTS} >= {"namespace.yaml", "indexed-job-gang.yaml", "jobset-gang.yaml",
                                           "jobset-leader-workers.yaml", "leaderworkerset-gang.yaml",
                                           "workload-job-gang.yaml"}


def test_every_example_namespace_is_created_by_the_examples():
    made = {d["metadata"]["name"] for p in MANIFESTS for d in yaml.safe_load_all(p.read_text())
            if d and d.get("kind") == "Namespace"}
    used = {d["metadata"]["namespace"] for p in MANIFESTS for d in yaml.safe_load_all(p.read_text())
            if d and d.get("metadata", {}).get("namespace")}
    assert used - {"gangplace-system"} <= made


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_is_accepted_by_the_api_server(prepared, overlay, tmp_path):
    r = prepared.kubectl("kustomize", str(DEPLOY / "overlays" / overlay), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(r.stdout)
    kinds = {d["kind"] for d in yaml.safe_load_all(r.stdout) if d}
    assert {"Deployment", "ConfigMap", "ServiceAccount", "ClusterRole"} <= kinds
    r = prepared.kubectl("apply", "--dry-run=server", "-f", str(rendered), check=False)
    assert r.returncode == 0, f"kubectl kustomize deploy/overlays/{overlay} | kubectl apply --dry-run=server:\n{r.stdout}{r.stderr}"


# applied for real: the PodGroup's admission looks up its Workload, which a dry run does not create
# (no scheduler runs here, so nothing is placed; test_workload.py applies it where one does)
APPLIED_FOR_REAL = {"workload-job-gang.yaml"}


@pytest.mark.parametrize("path", MANIFESTS, ids=[str(p.relative_to(DEPLOY)) for p in MANIFESTS])
def test_manifest_is_accepted_by_the_api_server(prepared, path: Path):
    dry = [] if path.name in APPLIED_FOR_REAL else ["--dry-run=server"]
    r = prepared.kubectl("apply", *dry, "-f", str(path), check=False)
    assert r.returncode == 0, f"kubectl apply {' '.join(dry)} -f {path.relative_to(REPO)}:\n{r.stdout}{r.stderr}"

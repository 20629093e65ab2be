"""Every manifest under deploy/ is accepted by a real v1.36.3 API server (``kubectl apply --dry-run=server``).

deploy/rbac.yaml is applied for real first (the other manifests live in its namespace); the
examples' own namespace and stand-in CRDs for JobSet and the coscheduling PodGroup (schemaless:
only the kinds must exist) are created too. deploy/scheduler-config.yaml is not an API object:
the scheduler itself loads it in test_gangs.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import REPO, wait_for

pytestmark = pytest.mark.e2e

DEPLOY = REPO / "deploy"
MANIFESTS = sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "scheduler-config.yaml")
STAND_IN_CRDS = [("jobset.x-k8s.io", "v1alpha2", "JobSet", "jobsets"),
                 ("scheduling.x-k8s.io", "v1alpha1", "PodGroup", "podgroups")]


def stand_in_crd(group, version, kind, plural):
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                     "versions": [{"name": version, "served": True, "storage": True, "schema": {
                         "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


@pytest.fixture(scope="module")
def prepared(control_plane):
    cp = control_plane
    cp.apply_rbac()
    for crd in STAND_IN_CRDS:
        cp.admin.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", stand_in_crd(*crd))
    for group, version, kind, plural in STAND_IN_CRDS:
        wait_for(lambda: cp.admin.get(f"/apis/{group}/{version}", ok_missing=True), 30, f"{kind} served")
    namespaces = {doc["metadata"]["namespace"] for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text())
                  if doc and doc.get("metadata", {}).get("namespace")}
    for namespace in namespaces:
        cp.admin.ensure_namespace(namespace)
    return cp


def test_deploy_has_manifests():
    assert {p.name for p in MANIFESTS} >= {"rbac.yaml", "deployment.yaml"}


@pytest.mark.parametrize("path", MANIFESTS, ids=[str(p.relative_to(DEPLOY)) for p in MANIFESTS])
def test_manifest_is_accepted_by_the_api_server(prepared, path: Path):
    r = prepared.kubectl("apply", "--dry-run=server", "-f", str(path), check=False)
    assert r.returncode == 0, f"kubectl apply --dry-run=server -f {path.relative_to(REPO)}:\n{r.stdout}{r.stderr}"

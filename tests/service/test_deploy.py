"""deploy/: the shipped manifests parse, agree with each other and with the extender's defaults."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gangplace.service.dra import DraIndex
from gangplace.service.extender import ExtenderConfig
from gangplace.service.gangs import parse_pod
from gangplace.service.topology_presets import resolve_levels

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BASE = DEPLOY / "base"


def docs(name):
    path = BASE / name if (BASE / name).exists() else DEPLOY / name
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_scheduler_config_registers_every_verb_with_node_names_and_no_managed_resources():
    (cfg,) = docs("scheduler-config.yaml")
    assert cfg["kind"] == "KubeSchedulerConfiguration" and cfg["percentageOfNodesToScore"] == 100
    (ext,) = cfg["extenders"]
    assert {ext[f"{v}Verb"] for v in ("filter", "prioritize", "bind", "preempt")} == {
        "filter", "prioritize", "bind", "preempt"}
    assert ext["nodeCacheCapable"] is True and ext["ignorable"] is False
    # no managedResources: kube-scheduler v1.36 (HTTPExtender.IsInterested) would then skip pods whose GPUs
    # come from ResourceClaims, as their containers request no extended resource
    assert "managedResources" not in ext
    assert float(ext["httpTimeout"].rstrip("s")) > ExtenderConfig().bind_timeout_s
    (profile,) = cfg["profiles"]
    fit = next(p for p in profile["pluginConfig"] if p["name"] == "NodeResourcesFit")
    assert fit["args"]["scoringStrategy"]["type"] == "MostAllocated"


def test_the_base_generates_its_configmap_from_the_shipped_config_files():
    (kust,) = docs("kustomization.yaml")
    assert set(kust["resources"]) == {"rbac.yaml", "deployment.yaml"}
    (gen,) = kust["configMapGenerator"]
    assert gen["name"] == "gangplace-config" and set(gen["files"]) == {"scheduler-config.yaml", "gangplace.yaml"}
    (dep,) = docs("deployment.yaml")
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "gangplace-config"
    service = yaml.safe_load((BASE / "gangplace.yaml").read_text())
    assert service["cluster"]["in_cluster"] is True
    assert ExtenderConfig().bind_timeout_s < service["request_timeout_s"] < 30
    containers = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"kube-scheduler", "gangplace"}
    # both run as the image's non-root user (the stock kube-scheduler image runs as root unless told)
    for c in containers.values():
        ctx = c["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 65532 and ctx["readOnlyRootFilesystem"] is True
    port = service["metrics_listen"].rpartition(":")[2]
    assert {"containerPort": int(port), "name": "metrics"} in containers["gangplace"]["ports"]
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == port


@pytest.mark.parametrize("overlay", ["kubernetes", "ha", "file", "plugin"])
def test_every_overlay_builds_on_the_base(overlay):
    kust = yaml.safe_load((DEPLOY / "overlays" / overlay / "kustomization.yaml").read_text())
    assert "../../base" in kust["resources"]


def test_rbac_is_least_privilege():
    objs = docs("rbac.yaml")
    role = next(o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "gangplace")
    grants = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert ("pods/binding", "create") in grants and ("pods/eviction", "create") in grants
    assert {("nodes", v) for v in ("get", "list", "watch")} <= grants
    assert {("podgroups", v) for v in ("get", "list", "watch")} <= grants
    dra = ("resourceslices", "resourceclaims", "resourceclaimtemplates", "deviceclasses")
    assert {(r, v) for r in dra for v in ("get", "list", "watch")} <= grants
    assert not any(v not in ("get", "list", "watch") for r, v in grants if r in dra), "DRA objects are read only"
    assert not any("*" in r or "*" in v for r, v in grants)
    assert not any(v in ("delete", "update", "patch") for r, v in grants if r in ("pods", "nodes"))
    # a PodGroup's status, never its spec
    assert [v for r, v in grants if r.startswith("podgroups/")] == ["patch"] and ("podgroups", "patch") not in grants


def test_example_gangs_parse_as_gangs():
    levels = resolve_levels("topograph-v1")
    job = docs("examples/indexed-job-gang.yaml")[0]
    tmpl = job["spec"]["template"]
    pod = {"metadata": {"name": "train-7-0", "namespace": "ml", "uid": "u", **tmpl["metadata"]},
           "spec": tmpl["spec"]}
    info = parse_pod(pod, levels)
    assert info.gang.key == "ml/train-7" and info.gang.size == 16 and info.gpus == 8
    assert info.gang.required == "block" and info.gang.slices[0].size == 4
    jobset = docs("examples/jobset-gang.yaml")[0]
    tmpl = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    pod = {"metadata": {"name": "w", "namespace": "ml", "uid": "u", **tmpl["metadata"]}, "spec": tmpl["spec"]}
    info = parse_pod(pod, levels)
    assert info.gang.size == 16 and info.gang.preferred == "accelerator" and info.gpus == 4


def test_the_dra_example_is_a_gang_of_8_pods_with_4_gpus_each_from_its_claim_template():
    levels = resolve_levels([{"name": "clique", "label": "gpu.nvidia.com/cliqueId"}])
    tmpl, jobset = docs("examples/jobset-dra.yaml")
    dra = DraIndex()  # the defaults: NVIDIA's driver and DeviceClass, as the example assumes
    dra.put("resourceclaimtemplates", tmpl)
    rjob = jobset["spec"]["replicatedJobs"][0]
    pod_tmpl = rjob["template"]["spec"]["template"]
    pod = {"metadata": {"name": "w", "namespace": "ml", "uid": "u", **pod_tmpl["metadata"]}, "spec": pod_tmpl["spec"]}
    info = parse_pod(pod, levels, claim_gpus=dra.pod_gpus)
    assert info.gpus == 4 and info.gang.size == 8 == rjob["replicas"] * rjob["template"]["spec"]["completions"]
    assert info.gang.required == "clique" and tmpl["metadata"]["namespace"] == jobset["metadata"]["namespace"]


def test_the_plugin_overlay_points_the_gangplace_plugin_at_the_sidecars_grpc_port():
    cfg = yaml.safe_load((DEPLOY / "overlays" / "plugin" / "scheduler-config.yaml").read_text())
    service = yaml.safe_load((DEPLOY / "base" / "gangplace.yaml").read_text())
    (profile,) = cfg["profiles"]
    assert profile["schedulerName"] == "gangplace" and "extenders" not in cfg
    assert {"name": "Gangplace"} in profile["plugins"]["multiPoint"]["enabled"]
    (args,) = [pc["args"] for pc in profile["pluginConfig"] if pc["name"] == "Gangplace"]
    assert args["address"] == service["grpc_listen"]
    kust = yaml.safe_load((DEPLOY / "overlays" / "plugin" / "kustomization.yaml").read_text())
    assert kust["configMapGenerator"][0]["behavior"] == "merge"

"""deploy/: the shipped manifests parse, agree with each other and with the extender's defaults."""
from __future__ import annotations

from pathlib import Path

import yaml

from gangplace.service.extender import ExtenderConfig
from gangplace.service.gangs import parse_pod
from gangplace.service.topology_presets import resolve_levels

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def docs(name):
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def test_scheduler_config_registers_every_verb_with_node_names_and_the_gpu_resource():
    (cfg,) = docs("scheduler-config.yaml")
    assert cfg["kind"] == "KubeSchedulerConfiguration" and cfg["percentageOfNodesToScore"] == 100
    (ext,) = cfg["extenders"]
    assert {ext[f"{v}Verb"] for v in ("filter", "prioritize", "bind", "preempt")} == {
        "filter", "prioritize", "bind", "preempt"}
    assert ext["nodeCacheCapable"] is True and ext["ignorable"] is False
    assert ext["managedResources"] == [{"name": "nvidia.com/gpu", "ignoredByScheduler": False}]
    assert float(ext["httpTimeout"].rstrip("s")) > ExtenderConfig().bind_timeout_s
    (profile,) = cfg["profiles"]
    fit = next(p for p in profile["pluginConfig"] if p["name"] == "NodeResourcesFit")
    assert fit["args"]["scoringStrategy"]["type"] == "MostAllocated"


def test_deployment_embeds_the_same_scheduler_config_and_a_long_enough_request_timeout():
    cm, dep = docs("deployment.yaml")
    embedded = yaml.safe_load(cm["data"]["scheduler-config.yaml"])
    (shipped,) = docs("scheduler-config.yaml")
    assert embedded == shipped
    service = yaml.safe_load(cm["data"]["gangplace.yaml"])
    assert service["cluster"]["in_cluster"] is True
    assert ExtenderConfig().bind_timeout_s < service["request_timeout_s"] < 30
    containers = {c["name"] for c in dep["spec"]["template"]["spec"]["containers"]}
    assert containers == {"kube-scheduler", "gangplace"}


def test_rbac_is_least_privilege():
    objs = docs("rbac.yaml")
    role = next(o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "gangplace")
    grants = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert ("pods/binding", "create") in grants and ("pods/eviction", "create") in grants
    assert {("nodes", v) for v in ("get", "list", "watch")} <= grants
    assert {("podgroups", v) for v in ("get", "list", "watch")} <= grants
    assert not any("*" in r or "*" in v for r, v in grants)
    assert not any(v in ("delete", "update", "patch") for r, v in grants if r in ("pods", "nodes"))


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

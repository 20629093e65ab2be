"""Gangs through the gangplace-scheduler: kube-scheduler v1.36.3 with the Gangplace plugin
(kube/pkg/gangplace), which asks gangplace over gRPC (PlanMember) at PreFilter and holds each
gang at its Permit barrier. No HTTP extender.

The scheduler loads the shipped deploy/overlays/plugin/scheduler-config.yaml (kubeconfig, leader election,
gangplace's gRPC address and a shorter Permit timeout changed in memory). The extender's
scenarios (tests/e2e/test_gangs.py) are imported and run here unchanged against this fixture;
the cluster is the same 2 blocks x 2 racks x 4 nodes x 8 GPUs.
"""
from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import (assert_no_overcommit, bound, control_plane_with_gangplace,
                               ensure_priority_classes)
from tests.e2e.harness import BLOCK_LABEL, gpu_pod, plugin_scheduler_config, wait_for
# the extender's scenarios, collected again in this module: they run against the fixture below
from tests.e2e.test_gangs import (create_gang, labels_of,  # noqa: F401
                                  test_a_gang_is_bound_whole_at_the_topology_optimum,
                                  test_a_higher_priority_gang_preempts_a_lower_priority_gang,
                                  test_a_gang_that_does_not_fit_waits_without_holding_capacity_and_binds_when_capacity_frees,
                                  test_gangplace_killed_and_restarted_in_the_middle_of_a_gang_leaves_no_partial_gang,
                                  test_nodes_added_and_removed_while_gangs_arrive,
                                  test_two_gangs_racing_for_one_block_one_wins_whole_the_other_binds_nothing)

pytestmark = pytest.mark.e2e

PERMIT_TIMEOUT_S = 15   # the shipped 60 s, shortened so the restart scenario recovers within its 90 s


@pytest.fixture(scope="module")
def gangplace():
    """The control plane with gangplace and the gangplace-scheduler (overrides conftest's)."""
    yield from control_plane_with_gangplace(lambda cp, url: cp.start_scheduler(
        plugin_scheduler_config(cp.kubeconfig("scheduler"), cp.grpc_addresses["gangplace"],
                                permit_timeout_s=PERMIT_TIMEOUT_S),
        name="gangplace-scheduler", binary="gangplace-scheduler"))


def events(kube, ns, pod):
    return [e.get("message", "") for e in kube.get(f"/api/v1/namespaces/{ns}/events")["items"]
            if e["involvedObject"]["name"] == pod]


def test_the_plugin_and_not_an_extender_placed_the_gang(gangplace, ns):
    kube = gangplace.kube
    plan_member = 'gangplace_request_seconds_count{transport="grpc",verb="PlanMember"}'
    http_filter = 'gangplace_request_seconds_count{transport="http",verb="filter"}'
    before = gangplace.metric(plan_member)
    create_gang(kube, ns, "p", 4)
    nodes = wait_for(lambda: (b := bound(kube, ns, "p")) and len(b) == 4 and b, 30, "gang p bound")
    assert len({labels_of(kube)[n]["network.topology.nvidia.com/leaf"] for n in nodes.values()}) == 1, nodes
    calls = gangplace.metric(plan_member) - (0 if before != before else before)  # NaN: no call yet
    assert calls == 1, f"{calls} PlanMember calls for a gang of 4, want one (the others read the cached plan)"
    assert gangplace.metric(http_filter) != gangplace.metric(http_filter), "an HTTP filter call reached gangplace"


def test_a_gang_larger_than_the_cluster_says_why_and_binds_nothing(gangplace, ns):
    kube = gangplace.kube
    create_gang(kube, ns, "huge", 20)                    # 160 GPUs > 128 in the cluster
    wait_for(lambda: any("gangplace" in m for m in events(kube, ns, "huge-0")), 30,
             "a FailedScheduling event with gangplace's reason")
    assert not bound(kube, ns, "huge")


def test_a_gang_waits_while_gangplace_is_down_with_the_reason_and_binds_when_it_returns(gangplace, ns):
    kube = gangplace.kube
    gangplace.kill()
    try:
        create_gang(kube, ns, "d", 2)
        wait_for(lambda: any("gangplace unreachable" in m for m in events(kube, ns, "d-0")), 30,
                 "the pod's event names gangplace as unreachable")
        assert not bound(kube, ns, "d")
    finally:
        gangplace.start()
    nodes = wait_for(lambda: (b := bound(kube, ns, "d")) and len(b) == 2 and b, 60, "gang d bound after the restart")
    assert len(set(nodes.values())) == 2
    assert_no_overcommit(kube)


def test_a_gang_of_equal_priority_that_does_not_fit_evicts_nothing(gangplace, ns):
    """Gang preemption (the plugin's PostFilter asks gangplace's PreemptMember) evicts only
    lower-priority gangs, whole; and the stock DefaultPreemption never evicts pods of a gang one
    node at a time for a gang that still would not fit (its Filter fails every node)."""
    kube = gangplace.kube
    ensure_priority_classes(kube)
    create_gang(kube, ns, "low", 12, priority_class="e2e-low")        # 96 GPUs: no block stays free
    low = wait_for(lambda: (b := bound(kube, ns, "low")) and len(b) == 12 and b, 30, "gang low bound")
    create_gang(kube, ns, "peer", 8, priority_class="e2e-low", annotations={"gangplace.dev/topology-required": "block"})
    wait_for(lambda: any("preemption does not help" in m for m in events(kube, ns, "peer-0")), 30,
             "the peer gang's reason: no lower-priority gang to evict")
    time.sleep(3)
    assert bound(kube, ns, "low") == low, "a pod of the low gang was evicted"
    assert not [p for p in kube.pods(ns, "gangplace.dev/gang=low") if p["metadata"].get("deletionTimestamp")]
    assert not bound(kube, ns, "peer")
    assert_no_overcommit(kube)


def test_single_gpu_pods_stay_off_the_nodes_reserved_for_a_gang_still_arriving(gangplace, ns):
    kube = gangplace.kube
    create_gang(kube, ns, "g", 8, members=range(4))   # a block's 8 nodes reserved; 4 members wait at Permit
    time.sleep(2)
    assert not bound(kube, ns, "g")
    for i in range(8):
        kube.create_pod(ns, gpu_pod(f"s-{i}", gpus=1))
    singles = wait_for(lambda: (b := {p: n for p, n in bound(kube, ns).items() if p.startswith("s-")})
                       and len(b) == 8 and b, 30, "the single GPU pods bound")
    create_gang(kube, ns, "g", 8, members=range(4, 8))
    nodes = wait_for(lambda: (b := bound(kube, ns, "g")) and len(b) == 8 and b, 60, "gang g bound")
    assert not set(singles.values()) & set(nodes.values()), (singles, nodes)
    assert len({labels_of(kube)[n][BLOCK_LABEL] for n in nodes.values()}) == 1, nodes
    assert_no_overcommit(kube)


def test_a_leaderworkerset_group_binds_whole_in_one_leaf_through_the_plugin(gangplace, ns):
    """deploy/examples/leaderworkerset-gang.yaml: each leader (more CPU and memory than its workers)
    is reserved at Permit on a plan of 4 leaders before its workers exist; the workers have the gang
    planned again around the leader's slot, so the group binds whole in one leaf."""
    from tests.e2e.test_mixed_gangs import example, lws_pods
    kube = gangplace.kube
    (lws,) = example("leaderworkerset-gang.yaml")
    groups = [lws_pods(lws, ns, g) for g in range(lws["spec"]["replicas"])]
    for leader, _ in groups:
        kube.create_pod(ns, leader)
    time.sleep(2)  # the leaders are planned and wait at Permit
    assert not {p["metadata"]["name"] for p in kube.pods(ns) if p["spec"].get("nodeName")}
    for _, workers in groups:
        for pod in workers:
            kube.create_pod(ns, pod)
    leaf = {n: labels["network.topology.nvidia.com/leaf"] for n, labels in labels_of(kube).items()}
    for leader, workers in groups:
        names = {leader["metadata"]["name"]} | {p["metadata"]["name"] for p in workers}
        nodes = wait_for(lambda: (b := {p["metadata"]["name"]: p["spec"]["nodeName"] for p in kube.pods(ns)
                                         if p["metadata"]["name"] in names and p["spec"].get("nodeName")})
                         and len(b) == 4 and b, 60, f"group {leader['metadata']['name']} bound whole")
        assert len(set(nodes.values())) == 4 and len({leaf[n] for n in nodes.values()}) == 1, nodes
    assert_no_overcommit(kube)

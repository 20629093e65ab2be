"""Gangs through the real kube-scheduler v1.36.3 with gangplace as its extender.

The scheduler loads the shipped deploy/base/scheduler-config.yaml (kubeconfig, leader election and
extender URL changed in memory); gangplace runs under the deploy/base/rbac.yaml ServiceAccount. The
cluster: 2 blocks x 2 racks x 4 nodes x 8 GPUs (BASE_NODES in conftest.py), no kubelets: a
Terminating pod stays until ``reap`` force-deletes it.
"""
from __future__ import annotations

import threading
import time

import pytest

from tests.e2e.conftest import BASE_NODES, assert_no_overcommit, bound, ensure_priority_classes, reaping
from tests.e2e.harness import BLOCK_LABEL, LEAF_LABEL, gpu_pod, wait_for

pytestmark = pytest.mark.e2e

REQUIRED_BLOCK = {"gangplace.dev/topology-required": "block"}


def create_gang(kube, ns, gang, size, *, gpus=8, members=None, **kw):
    for i in members if members is not None else range(size):
        kube.create_pod(ns, gpu_pod(f"{gang}-{i}", gpus=gpus, gang=gang, size=size, **kw))


def wait_bound(kube, ns, gang, size, timeout=60):
    return wait_for(lambda: (b := bound(kube, ns, gang)) and len(b) == size and b, timeout,
                    f"all {size} members of gang {ns}/{gang} bound")


def pin(kube, ns, name, node, gpus=1):
    """A pod already bound to ``node`` (spec.nodeName: no scheduler involved)."""
    kube.create_pod(ns, gpu_pod(name, gpus=gpus, node_name=node, scheduler="default-scheduler"))


def labels_of(kube):
    return {n["metadata"]["name"]: n["metadata"]["labels"] for n in kube.nodes()}


def test_a_gang_is_bound_whole_at_the_topology_optimum(gangplace, ns):
    kube = gangplace.kube
    pin(kube, ns, "filler", "b0-r0-n0")   # rack b0-r0 has no 4 whole nodes left
    create_gang(kube, ns, "train", 4)
    nodes = wait_bound(kube, ns, "train", 4, timeout=30)
    # one rack, four whole nodes; best fit keeps block b1 whole: rack b0-r1 (block b0 has the filler)
    assert sorted(nodes.values()) == [f"b0-r1-n{i}" for i in range(4)], nodes
    assert_no_overcommit(kube)


def test_two_gangs_racing_for_one_block_one_wins_whole_the_other_binds_nothing(gangplace, ns):
    kube = gangplace.kube
    pin(kube, ns, "filler", "b1-r0-n0")   # block b1 cannot hold 64 GPUs any more: only b0 can
    for i in range(8):                    # interleaved arrivals
        for gang in ("a", "b"):
            create_gang(kube, ns, gang, 8, members=[i], annotations=REQUIRED_BLOCK)
    wait_for(lambda: len(bound(kube, ns, "a")) == 8 or len(bound(kube, ns, "b")) == 8, 60, "one gang bound")
    time.sleep(3)   # the loser must not trickle in
    a, b = bound(kube, ns, "a"), bound(kube, ns, "b")
    winner, loser = (a, b) if len(a) == 8 else (b, a)
    assert len(winner) == 8 and not loser, f"a: {a}  b: {b}"
    assert {labels_of(kube)[n][BLOCK_LABEL] for n in winner.values()} == {"b0"}
    assert_no_overcommit(kube)


def test_a_gang_that_does_not_fit_waits_without_holding_capacity_and_binds_when_capacity_frees(gangplace, ns):
    kube = gangplace.kube
    create_gang(kube, ns, "first", 6)                 # 48 of 128 GPUs
    wait_bound(kube, ns, "first", 6, timeout=30)
    create_gang(kube, ns, "big", 12)                  # 96 GPUs: does not fit in the 80 free
    time.sleep(3)
    assert not bound(kube, ns, "big")
    create_gang(kube, ns, "small", 2)                 # fits beside: "big" holds nothing
    wait_bound(kube, ns, "small", 2, timeout=30)
    assert not bound(kube, ns, "big")
    for i in range(6):                                # "first" finishes: Terminating, then reaped
        kube.delete_pod(ns, f"first-{i}")
    kube.reap(ns)
    wait_bound(kube, ns, "big", 12, timeout=90)
    assert_no_overcommit(kube)


def test_a_higher_priority_gang_preempts_a_lower_priority_gang(gangplace, ns):
    kube = gangplace.kube
    ensure_priority_classes(kube)
    create_gang(kube, ns, "low", 12, priority_class="e2e-low")        # 96 GPUs: no block stays free
    wait_bound(kube, ns, "low", 12, timeout=30)
    with reaping(kube):   # the victims terminate as if kubelets ran
        create_gang(kube, ns, "high", 8, priority_class="e2e-high", annotations=REQUIRED_BLOCK)
        high = wait_bound(kube, ns, "high", 8, timeout=60)
        assert len({labels_of(kube)[n][BLOCK_LABEL] for n in high.values()}) == 1, high
        # the low gang was preempted whole, not left partly running
        wait_for(lambda: not bound(kube, ns, "low"), 30, "the rest of the preempted gang evicted")
    assert_no_overcommit(kube)


def test_gangplace_killed_and_restarted_in_the_middle_of_a_gang_leaves_no_partial_gang(gangplace, ns):
    kube = gangplace.kube
    create_gang(kube, ns, "g", 8, members=range(4))   # half the gang: planned, held at the bind barrier
    time.sleep(3)
    assert not bound(kube, ns, "g")
    gangplace.kill()                                   # SIGKILL: reservations and waiting binds lost
    time.sleep(2)
    assert not bound(kube, ns, "g"), "a member was bound while gangplace was down"
    gangplace.start()
    create_gang(kube, ns, "g", 8, members=range(4, 8))
    nodes = wait_bound(kube, ns, "g", 8, timeout=90)
    assert len({labels_of(kube)[n][BLOCK_LABEL] for n in nodes.values()}) == 1, nodes
    assert len(set(nodes.values())) == 8, nodes
    assert_no_overcommit(kube)


def test_nodes_added_and_removed_while_gangs_arrive(gangplace, ns):
    kube, cp = gangplace.kube, gangplace.cp
    leaving = [n for n, labels in BASE_NODES if labels[LEAF_LABEL] == "b1-r1"]
    new = [(f"b2-r{r}-n{i}", {BLOCK_LABEL: "b2", LEAF_LABEL: f"b2-r{r}"}) for r in range(2) for i in range(4)]
    for i, node in enumerate(leaving):   # no 4 x 8 gang fits rack b1-r1 before it goes
        pin(kube, ns, f"filler-{i}", node)
    gangs = [f"g{i}" for i in range(5)]  # 5 racks of 4 nodes once b2 is in: b0-r0, b0-r1, b1-r0, b2-r0, b2-r1

    def churn():
        time.sleep(0.5)
        for node in leaving:
            kube.delete_node(node)
        for i in range(len(leaving)):
            kube.delete_pod(ns, f"filler-{i}", grace=0)
        cp.add_nodes(new)

    try:
        t = threading.Thread(target=churn)
        t.start()
        for gang in gangs:
            create_gang(kube, ns, gang, 4)
            time.sleep(0.3)
        t.join(30)
        placed = {gang: wait_bound(kube, ns, gang, 4, timeout=90) for gang in gangs}
        leaf = {n: labels[LEAF_LABEL] for n, labels in labels_of(kube).items()}
        for gang, nodes in placed.items():
            assert len({leaf[n] for n in nodes.values()}) == 1, f"{gang} not in one rack: {nodes}"
            assert not set(nodes.values()) & set(leaving), f"{gang} bound to a removed node: {nodes}"
        assert {leaf[n] for nodes in placed.values() for n in nodes.values()} >= {"b2-r0", "b2-r1"}
        assert_no_overcommit(kube)
    finally:   # back to the base cluster for the next test
        for pod in kube.pods(ns):
            kube.delete_pod(ns, pod["metadata"]["name"], grace=0)
        for name, _ in new:
            kube.delete_node(name)
        cp.add_nodes([(n, labels) for n, labels in BASE_NODES if n in leaving])

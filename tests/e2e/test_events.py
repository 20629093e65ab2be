"""Events gangplace writes on pods, read back from the real API server (and `kubectl describe pod`)."""
from __future__ import annotations

import time

import pytest

from tests.e2e.test_gangs import create_gang, wait_bound
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.e2e


def gangplace_events(kube, ns) -> list[tuple[str, str, str]]:
    """(pod, reason, note) of every Event gangplace posted in ``ns``."""
    return [(e["regarding"]["name"], e["reason"], e.get("note", ""))
            for e in kube.get(f"/apis/events.k8s.io/v1/namespaces/{ns}/events")["items"]
            if e.get("reportingController") == "gangplace.dev/extender"]


def test_a_held_member_says_why_in_describe_and_the_placed_gang_says_where(gangplace, ns):
    kube, cp = gangplace.kube, gangplace.cp
    create_gang(kube, ns, "w", 3, members=[0, 1])  # the third member is not created yet
    waiting = wait_for(lambda: [e for e in gangplace_events(kube, ns) if e[1] == "GangWaiting"
                                and "members reached bind" in e[2]], 30, "a GangWaiting Event")
    assert {e[2].split(";")[0] for e in waiting} <= {f"gang {ns}/w: {k} of 3 members reached bind" for k in (1, 2)}
    held = waiting[0][0]
    described = cp.kubectl("describe", "pod", "-n", ns, held).stdout
    assert "GangWaiting" in described and "members reached bind" in described, described[-1500:]
    create_gang(kube, ns, "w", 3, members=[2])
    nodes = wait_bound(kube, ns, "w", 3, timeout=60)
    placed = wait_for(lambda: (p := {e[0]: e[2] for e in gangplace_events(kube, ns) if e[1] == "GangPlaced"})
                      and len(p) == 3 and p, 30, "GangPlaced on every member")
    for pod, note in placed.items():
        assert note.startswith(f"gang {ns}/w bound: 3 nodes in ") and note.endswith(f"this pod on {nodes[pod]}"), note


def test_a_gang_that_can_never_fit_gets_one_event_per_member_however_often_it_is_filtered(gangplace, ns):
    kube = gangplace.kube
    create_gang(kube, ns, "huge", 20)  # 160 GPUs in a 128-GPU cluster
    wait_for(lambda: len({e[0] for e in gangplace_events(kube, ns) if e[1] == "GangUnschedulable"}) == 20, 60,
             "a GangUnschedulable Event on every member")
    time.sleep(6)  # the scheduler keeps retrying them meanwhile (backoff 1 s, 2 s, 4 s)
    events = [e for e in gangplace_events(kube, ns) if e[1] == "GangUnschedulable"]
    assert len(events) == 20, "at most one per member and reason within a minute"
    assert all("not even in the empty cluster" in e[2] for e in events), events[0]

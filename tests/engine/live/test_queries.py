"""engine/live/queries.py: answers that change nothing (a placement at once, an explanation)."""
from __future__ import annotations

import pytest
from gangplace.engine import GangRequest, PodSet
from gangplace.engine.live.queries import explain_now, place_at_once
from gangplace.engine.live.state import ClusterState

from tests.conftest import build_cluster, lock_held_elsewhere


@pytest.fixture
def state() -> ClusterState:
    return ClusterState(build_cluster({"b0": {"r0": [0, 0], "r1": [0, 0]}}))


def gang(*counts: int) -> GangRequest:
    return GangRequest("g", tuple(PodSet(f"s{i}", c, gpus=8) for i, c in enumerate(counts)))


def test_place_at_once_answers_the_heuristic_when_it_is_final_and_changes_nothing(state):
    version = state.version
    placement = place_at_once(state, gang(2), "heuristic", 100.0)
    assert placement is not None and placement.placed and len(set(placement.nodes)) == 2
    assert state.version == version and state.reservations() == {}


@pytest.mark.parametrize("placer, counts", [("cpsat", (2,)), ("auto", (1, 1))],
                         ids=["CP-SAT is never run inline", "several pod sets are never run inline"])
def test_place_at_once_leaves_the_rest_to_the_pool(state, placer, counts):
    assert place_at_once(state, gang(*counts), placer, 100.0) is None


def test_place_at_once_never_waits_for_a_busy_state_lock(state):
    with lock_held_elsewhere(state.lock):
        assert place_at_once(state, gang(2), "heuristic", 100.0) is None


def test_explain_now_says_whether_a_gang_fits_and_why_not(state):
    fits, reason, _ = explain_now(state, gang(4))
    assert fits and "fits now: 4 pods on 4 nodes" in reason
    fits, reason, explanation = explain_now(state, gang(5))
    assert not fits and reason and explanation

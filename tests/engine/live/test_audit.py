"""engine/live/audit.py: every unit of capacity accounted for exactly once."""
from __future__ import annotations

from gangplace.engine import GangRequest, PodSet
from gangplace.engine.live.state import ClusterState

from tests.conftest import build_cluster


def test_a_consistent_state_has_no_problems_and_a_lost_gpu_is_named():
    state = ClusterState(build_cluster({"b0": {"r0": [0, 2]}}))
    state.bind("a", state.node_names()[0], gpus=4)
    state.place(GangRequest("g", (PodSet("w", 1, gpus=4),)), placer="heuristic", reserve=True)
    assert state.check_consistency() == []
    state.cluster.take_free(1, gpus=1)  # a GPU vanishes from the books behind the state's back
    problems = state.check_consistency()
    assert len(problems) == 1 and problems[0].startswith(f"node {state.node_names()[1]}: gpus capacity 8 != base 2")

import numpy as np

from gangplace.engine.place.scoring import best_fit_scores
from gangplace.engine.model.cluster import Cluster
from tests.conftest import node


def _cluster():
    # block b0: one rack with 6 free GPUs; block b1: rack r1 with 8 free, rack r2 with 12 free
    return Cluster(("block", "rack"), [
        node("a0", {"block": "b0", "rack": "r0"}, used=2),
        node("b0", {"block": "b1", "rack": "r1"}),
        node("b1", {"block": "b1", "rack": "r2"}),
        node("b2", {"block": "b1", "rack": "r2"}, used=4),
        node("c0", {"block": "b1", "rack": "r2"}, used=8),
    ])


def test_bottom_up_the_tightest_node_then_the_fullest_rack_scores_highest():
    c = _cluster()
    idx, scores = best_fit_scores(c, np.arange(c.n_nodes), gpus=2)  # the default objective
    by_name = {c.node_names[i]: int(s) for i, s in zip(idx, scores)}
    assert "c0" not in by_name
    assert by_name["b2"] == 10  # 4 free: 2 left, the tightest node
    assert by_name["b2"] > by_name["a0"] > by_name["b0"] > by_name["b1"] >= 1  # a0 leaves 4; b0/b1 leave 6, r1 fuller


def test_top_down_the_fullest_block_then_rack_then_node_scores_highest():
    c = _cluster()
    idx, scores = best_fit_scores(c, np.arange(c.n_nodes), gpus=2, objective="topdown")
    by_name = {c.node_names[i]: int(s) for i, s in zip(idx, scores)}
    assert "c0" not in by_name  # full node: cannot hold the pod, left out
    assert by_name["a0"] == 10  # block b0 has the fewest free GPUs
    assert by_name["b0"] > by_name["b2"] > by_name["b1"] >= 1  # b1 block: rack r1 (8 free) before r2 (12 free)


def test_nodes_that_cannot_hold_the_pod_are_left_out():
    c = _cluster()
    idx, scores = best_fit_scores(c, np.arange(c.n_nodes), gpus=7)
    assert sorted(c.node_names[i] for i in idx) == ["b0", "b1"]
    assert len(scores) == 2 and scores.max() == 10

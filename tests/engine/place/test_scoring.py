import numpy as np
import pytest

from gangplace.engine.place.scoring import best_fit_scores
from gangplace.engine.model.cluster import Cluster
from gangplace.engine.model.types import NodeSpec
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


def test_podfit_measures_domains_in_pods_of_the_requested_size_first():
    # one 4-GPU pod on x0 or y0 (7 free each, 3 left): rack r1 has 7 + 4 = 11 free GPUs and two nodes
    # that could take the pod (room 2); r2 has 7 + 3 + 3 = 13 free GPUs but room 1. podfit takes the
    # rack with less room for the pod (r2), bottom-up in GPUs the rack with fewer free GPUs (r1)
    c = Cluster(("block", "rack"), [
        node("x0", {"block": "b0", "rack": "r1"}, used=1),
        node("x1", {"block": "b0", "rack": "r1"}, used=4, schedulable=False),  # counts in r1, takes no pod
        node("y0", {"block": "b0", "rack": "r2"}, used=1),
        node("y1", {"block": "b0", "rack": "r2"}, used=5),
        node("y2", {"block": "b0", "rack": "r2"}, used=5),
    ])
    best = {}
    for objective in ("podfit", "bottomup"):
        idx, scores = best_fit_scores(c, np.arange(c.n_nodes), gpus=4, objective=objective)
        best[objective] = c.node_names[int(idx[np.argmax(scores)])]
    assert best == {"podfit": "y0", "bottomup": "x0"}


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


@pytest.mark.parametrize("objective", ["podfit", "bottomup", "topdown"])
def test_ranks_are_the_dense_lexicographic_ranks_of_the_best_fit_keys(objective):
    """The fast rank agrees with np.unique's inverse on random clusters (ties included), in the
    objective's column order (bottom-up: the node's free GPUs first, then its domains upward)."""
    from gangplace.engine.place.capacity import domain_free_gpus
    rng = np.random.default_rng(7)
    for _ in range(20):
        specs = [NodeSpec(f"n{i}", {"block": f"b{i // 8}", "rack": f"r{i // 4}"}, gpus=8) for i in range(32)]
        c = Cluster(["block", "rack"], specs)
        c.free_gpus[:] = rng.integers(0, 9, c.n_nodes)
        idx, scores = best_fit_scores(c, np.arange(c.n_nodes), gpus=1, max_score=10, objective=objective)
        free = np.maximum(c.free_gpus, 0).astype(np.int64)
        dom = domain_free_gpus(c, free)
        cols = [dom[c.node_domain[lv, idx]] for lv in range(2)] + [free[idx] - 1]
        if objective == "podfit":  # node; rack's room (its nodes that can take the 1-GPU pod), rack; block's
            room = domain_free_gpus(c, np.minimum(free, 1))
            rooms = [room[c.node_domain[lv, idx]] for lv in range(2)]
            cols = [cols[0], rooms[0], cols[1], rooms[1], cols[2]]  # reversed below: node first
        keys = np.stack(cols[::-1] if objective != "topdown" else cols, axis=1)
        _, rank = np.unique(keys, axis=0, return_inverse=True)
        rank = rank.reshape(-1)
        step = 9 / max(1, int(rank.max()))
        assert (scores == 10 - np.rint(rank * step).astype(np.int64)).all()


@pytest.mark.parametrize("high", [3, 700, 2**40], ids=["small keys", "GPU counts", "past 62 bits together"])
def test_the_dense_rank_is_np_unique_of_the_rows_whether_folded_into_one_key_or_not(high):
    from gangplace.engine.place.scoring import _dense_rank
    rng = np.random.default_rng(high)
    for n in (1, 2, 50, 300):
        cols = [rng.integers(0, high, n) for _ in range(3)]
        expect = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)[1].reshape(-1)
        assert _dense_rank(cols).tolist() == expect.tolist()

"""The exact tree DP (engine/exact/tree_dp.py) against the brute-force oracle (tests/reference.py)."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gangplace.engine.api import solve
from gangplace.engine.exact.auto import unique_level
from gangplace.engine.exact.bounds import lex_bound
from gangplace.engine.exact import tree_dp
from gangplace.engine.exact.tree_dp import INF, _minconv, solve_tree_dp
from gangplace.engine.model.errors import GangplaceError
from gangplace.engine.place.capacity import node_fit
from gangplace.engine.place.request import prepare
from gangplace.engine.place.solution import Solution, objective_of
from tests.conftest import build_cluster, gang, instances, pod_set
from tests.reference import check_counts, reference_place

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)


def _one_pod_set(inst, objective="age"):
    """(cluster, gang, prepared) for a valid one-pod-set instance, else None (the DP's domain)."""
    cluster, g = inst
    if len(g.pod_sets) != 1:
        return None
    try:
        return cluster, g, prepare(cluster, g, objective)
    except GangplaceError:
        return None


@settings(max_examples=300, **SETTINGS)
@given(instances())
def test_tree_dp_matches_oracle_on_one_pod_set(inst):
    _check_dp(inst, "podfit")


@settings(max_examples=100, **SETTINGS)
@given(instances())
def test_tree_dp_matches_oracle_on_bottom_up_in_gpus_only(inst):
    _check_dp(inst, "bottomup")


@settings(max_examples=100, **SETTINGS)
@given(instances())
def test_tree_dp_matches_oracle_on_the_older_top_down_order(inst):
    _check_dp(inst, "topdown")


@settings(max_examples=150, **SETTINGS)
@given(instances())
def test_tree_dp_matches_oracle_with_the_node_level_as_one_knapsack(inst):
    """The batched node level (``_group_knapsack``, chosen on clusters of many small groups) on
    every instance, against the oracle."""
    real = tree_dp._use_knapsack
    tree_dp._use_knapsack = lambda max_fit, max_group, groups: True
    try:
        _check_dp(inst, "bottomup")
    finally:
        tree_dp._use_knapsack = real


@settings(max_examples=200, **SETTINGS)
@given(st.lists(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 30)), min_size=1, max_size=5),
                min_size=1, max_size=4), st.integers(1, 25))
def test_group_knapsack_is_the_cheapest_cover_per_group(groups, cap):
    """Per group, ``T[q]`` is the cheapest subset of its nodes (each taking 1..fit units for its cost)
    holding exactly q units, and the backtracking returns such a subset (brute force)."""
    fu = np.array([f for g in groups for f, _ in g], np.int64)
    cost = np.array([c for g in groups for _, c in g], np.int64)
    sizes = np.array([len(g) for g in groups])
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    tables = tree_dp._group_knapsack(fu, cost, starts, starts + sizes, cap)
    last = tables[-1]
    for r, g in enumerate(groups):
        best = {}
        for mask in range(1 << len(g)):
            used = [g[i] for i in range(len(g)) if mask >> i & 1]
            lo, hi, c = len(used), sum(f for f, _ in used), sum(v for _, v in used)
            for q in range(lo, hi + 1):
                best[q] = min(best.get(q, int(INF)), c)
        for q in range(last.shape[1]):
            assert int(last[r, q]) == best.get(q, int(INF))
            if best.get(q, int(INF)) < INF:
                take = tree_dp._knapsack_take(("knapsack", tables, r, 0, len(g), fu[starts[r]:], cost[starts[r]:]), q)
                assert sum(k for _, k in take) == q and all(1 <= k <= g[j][0] for j, k in take)
                assert len({j for j, _ in take}) == len(take) and sum(g[j][1] for j, _ in take) == best[q]


def _check_dp(inst, objective):
    cluster, g, p = _one_pod_set(inst, objective) or (None, None, None)
    if p is None:
        return
    h = solve(cluster, p, "heuristic")
    if not h.placed or int(h.counts[0].sum()) == 0:
        return
    ref = reference_place(cluster, g, objective=objective)
    fit = node_fit(cluster, p, 0)
    b = lex_bound(cluster, p, h, [fit], objective_of(cluster, p, h).domains)
    top = int(b.domain_counts[0]) if len(cluster.levels) else None  # an optimum uses at most h's count
    # plain DP, branch and bound over the unique level, at most the heuristic's top-level count
    for unique, top_count in ((None, None), (unique_level(b), None), (None, top)):
        out = solve_tree_dp(cluster, p, fit, int(h.counts[0].sum()), b.nodes, unique, top_count=top_count)
        assert out is not None
        counts, exact = out
        assert check_counts(cluster, g, [counts]) == []
        key = objective_of(cluster, p, Solution([counts], True, "dp")).key
        assert key[: 1 + exact] == ref.key[: 1 + exact]
        assert exact >= p.counted_levels  # part (2) always fits the encoding on small clusters


@settings(max_examples=200, **SETTINGS)
@given(instances())
def test_tree_dp_over_every_node_finds_the_oracles_optimum(inst):
    # no heuristic, no pruning: every node is a candidate and the DP must place the oracle's pod count
    # with the oracle's parts (1)-(2)
    cluster, g, p = _one_pod_set(inst) or (None, None, None)
    if p is None:
        return
    ref = reference_place(cluster, g)
    if not ref.placed or -ref.key[0] == 0:
        return
    fit = node_fit(cluster, p, 0)
    out = solve_tree_dp(cluster, p, fit, -ref.key[0], np.ones(cluster.n_nodes, bool))
    assert out is not None
    counts, exact = out
    assert check_counts(cluster, g, [counts]) == []
    key = objective_of(cluster, p, Solution([counts], True, "dp")).key
    assert key[: 1 + exact] == ref.key[: 1 + exact]


def test_tree_dp_returns_none_when_the_pods_do_not_fit():
    c = build_cluster({"b0": {"r0": [0, 0]}})
    p = prepare(c, gang(pod_set(3, 8)))
    assert solve_tree_dp(c, p, node_fit(c, p, 0), 3, np.ones(c.n_nodes, bool)) is None


finite = st.lists(st.one_of(st.integers(0, 50), st.just(int(INF))), min_size=1, max_size=6)


long = st.lists(st.one_of(st.integers(0, 10 ** 6), st.just(int(INF))), min_size=1, max_size=80)


@settings(max_examples=200, **SETTINGS)
@given(finite, finite, st.integers(0, 12))
def test_minconv_is_the_min_plus_convolution(a, b, cap):
    _check_minconv(a, b, cap)


@settings(max_examples=100, **SETTINGS)
@given(long, long, st.integers(0, 200))
def test_minconv_on_long_arrays(a, b, cap):
    """Arrays as long as the DP's (many finite entries on both sides, mostly-INF ones too)."""
    _check_minconv(a, b, cap)


def _check_minconv(a, b, cap):
    a, b = np.array(a, np.int64), np.array(b, np.int64)
    got = _minconv(a, b, cap)
    n = min(len(a) + len(b) - 1, cap + 1)
    assert len(got) == n
    for q in range(n):
        want = min((min(int(a[i]) + int(b[q - i]), int(INF)) for i in range(len(a)) if 0 <= q - i < len(b)),
                   default=int(INF))
        assert int(got[q]) == want


def test_the_best_pair_root_equals_the_chain_of_convolutions():
    """At most two top-level domains (the heuristic's count): the pair search at the root gives the
    same optimum as convolving every top-level domain, on clusters with many blocks."""
    from gangplace.engine.model.synthetic import generate
    seen = 0
    for preset, shapes in (("gb200-nvl72", ((128, 4), (320, 2), (448, 1), (100, 4))),
                           ("dgx-h100", ((384, 8), (448, 8), (200, 8)))):
        c = generate(preset, gpus=16384, fill=0.6, seed=1)
        for k, gpp in shapes:
            p = prepare(c, gang(pod_set(k, gpus=gpp)))
            h = solve(c, p, "heuristic")
            if not h.placed:
                continue
            fit = node_fit(c, p, 0)
            b = lex_bound(c, p, h, [fit], objective_of(c, p, h).domains)
            top = int(b.domain_counts[0])
            if top != 2:
                continue
            seen += 1
            keys = []
            for top_count in (None, top):
                counts, exact = solve_tree_dp(c, p, fit, k, b.nodes, None, top_count=top_count)
                assert check_counts(c, gang(pod_set(k, gpus=gpp)), [counts]) == []
                keys.append(objective_of(c, p, Solution([counts], True, "dp")).key[: 1 + exact])
            assert keys[0] == keys[1]
    assert seen >= 3  # the pair search ran

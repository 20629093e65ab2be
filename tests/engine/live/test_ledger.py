"""engine/live/ledger.py: bound pods with their node and gang indices, and ``apply``."""
from __future__ import annotations

from gangplace.engine.live.ledger import BindRecord, Ledger, apply

from tests.conftest import build_cluster


def test_add_and_remove_keep_the_node_and_gang_indices_in_step():
    ledger = Ledger()
    a = BindRecord("a", "n0", 4, gang="g")
    b = BindRecord("b", "n0", 2)
    ledger.add(a)
    ledger.add(b)
    assert ledger.on_node("n0") == [a, b] and ledger.of_gang("g") == [a] and len(ledger) == 2
    assert ledger.remove("a") == a
    assert ledger.of_gang("g") == [] and ledger.on_node("n0") == [b] and "a" not in ledger
    assert ledger.index_problems() == []


def test_apply_takes_and_gives_back_a_records_amounts_and_ignores_unknown_nodes():
    cluster = build_cluster({"b0": {"r0": [0, 0]}})
    node = cluster.node_names[0]
    before = (int(cluster.free_gpus[0]), int(cluster.free_pods[0]))
    rec = BindRecord("a", node, 3, gang="g")
    apply(cluster, rec, +1)
    assert (int(cluster.free_gpus[0]), int(cluster.free_pods[0])) == (before[0] - 3, before[1] - 1)
    assert [x.gang for x in cluster.allocations[0]] == ["g"]
    apply(cluster, rec, -1)
    assert (int(cluster.free_gpus[0]), int(cluster.free_pods[0])) == before and cluster.allocations[0] == ()
    apply(cluster, BindRecord("b", "no-such-node", 8), +1)
    assert int(cluster.free_gpus.sum()) == 16


def test_a_record_round_trips_through_its_journal_line():
    rec = BindRecord("a", "n0", 4, 1000, 2**30, "g", "ns", "pod-a", 3)
    assert BindRecord.from_json(rec.to_json()) == rec


def test_a_nodes_age_is_its_oldest_bound_pods_start():
    # objective "age" (engine/place/age.py) reads Cluster.oldest_start; apply keeps it in step
    cluster = build_cluster({"b0": {"r0": [0, 0]}})
    node = cluster.node_names[0]
    a, b = BindRecord("a", node, 2, started=200.0), BindRecord("b", node, 1, started=100.0)
    apply(cluster, a, +1)
    assert cluster.oldest_start[0] == 200.0
    apply(cluster, b, +1)
    assert cluster.oldest_start[0] == 100.0
    apply(cluster, b, -1)
    assert cluster.oldest_start[0] == 200.0
    apply(cluster, BindRecord("c", node, 1), +1)  # no start known (an older journal): the oldest
    assert cluster.oldest_start[0] == float("-inf")
    apply(cluster, BindRecord("c", node, 1), -1)
    apply(cluster, a, -1)
    assert cluster.oldest_start[0] == float("inf") and cluster.oldest_start[1] == float("inf")


def test_the_start_round_trips_and_does_not_make_a_repeated_bind_a_new_record():
    rec = BindRecord("a", "n0", 4, gang="g", started=1764900000.25)
    back = BindRecord.from_json(rec.to_json())
    assert back == rec and back.started == rec.started
    assert BindRecord("a", "n0", 4, gang="g", started=5.0) == rec  # a repeat, bound again later
    assert "started" not in BindRecord("a", "n0", 4).to_json()  # older journals read the same

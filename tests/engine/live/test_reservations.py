"""engine/live/reservations.py: TTLs, claims, re-planning and which slot a bind converts."""
from __future__ import annotations

import pytest
from gangplace.engine.live.ledger import BindRecord
from gangplace.engine.live.reservations import Reservations, Slot, fits_on, subtract_unbound

from tests.conftest import FakeClock, build_cluster


def book(*nodes: str) -> tuple[Reservations, FakeClock]:
    clock = FakeClock()
    r = Reservations(clock)
    slots = [Slot("w", i, n, 4, 0, 0) for i, n in enumerate(nodes)]
    r.put("g", gang=None, placement=None, slots=slots, ttl_s=30)
    return r, clock


@pytest.mark.parametrize("index, offered, expected", [
    (1, None, 1),
    (None, ["n2"], 2),
    (None, None, 0),
    (7, ["n1"], 1),
], ids=["a completion index asks for that slot", "else a slot on an offered node",
        "else the first free slot", "an index no slot has falls back to the offered nodes"])
def test_claim_picks_the_slot(index, offered, expected):
    r, _ = book("n0", "n1", "n2")
    slot, claimed = r.claim("g", "p", index, offered, None)
    assert claimed and r.get("g").slots.index(slot) == expected
    assert r.claim("g", "p", None, None, None) == (slot, False)  # idempotent


def test_a_reservation_expires_unless_refreshed():
    r, clock = book("n0")
    clock.t += 20
    assert r.refresh("g", 30)
    clock.t += 29
    assert r.get("g") is not None and r.expire() == []
    clock.t += 2
    assert r.get("g") is None and r.expire() == ["g"] and r.all() == {}


def test_shrink_keeps_claimed_and_offered_slots_and_unclaim_gives_a_slot_back():
    r, _ = book("n0", "n1", "n2")
    r.claim("g", "p", None, ["n0"], None)
    assert r.shrink("g", keep={"p"}, keep_nodes={"n2"}) == 1
    assert [s.node for s in r.get("g").slots] == ["n0", "n2"]
    assert r.unclaim("g", "p") and r.get("g").members == {}


def test_a_bind_converts_its_own_slot_else_a_free_slot_on_its_node():
    r, _ = book("n0", "n1")
    r.claim("g", "p", 0, None, None)
    for rec in (BindRecord("q", "n1", 4, gang="g"), BindRecord("p", "n0", 4, gang="g")):
        r.bind_slot(rec, r.slot_for(rec))  # q: an unclaimed slot on the bind's node; p: its own
    assert [s.bound for s in r.get("g").slots] == [True, True] and r.get("g").complete


def test_a_slot_already_used_by_an_earlier_record_of_the_batch_is_not_given_again():
    r, _ = book("n0", "n1")
    first = r.slot_for(BindRecord("x", "n0", 4, gang="g"))
    assert first is not None and first.node == "n0"
    assert r.slot_for(BindRecord("y", "n0", 4, gang="g"), {id(first)}) is None


def test_fits_on_and_subtract_unbound_count_unbound_slots_only():
    cluster = build_cluster({"b0": {"r0": [0, 0]}})
    n0, n1 = cluster.node_names
    bound = Slot("w", 0, n0, 8, 0, 0, bound=True)
    subtract_unbound(cluster, [bound, Slot("w", 1, n1, 4, 0, 0)])
    assert cluster.free_gpus.tolist() == [8, 4]
    assert fits_on(cluster.copy(), [Slot("w", 0, n1, 4, 0, 0)])
    assert not fits_on(cluster.copy(), [Slot("w", 0, n1, 5, 0, 0)])

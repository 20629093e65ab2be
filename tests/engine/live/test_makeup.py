"""engine/live/makeup.py: a gang's members grouped by shape into the pod sets of one request."""
from __future__ import annotations

import pytest
from gangplace.engine.live.coschedule import Member
from gangplace.engine.live.makeup import (SINGLE_POD_SET, gang_request, makeup_of, pod_set_counts, pod_set_for,
                                          pod_set_name, shape_of, subset)
from gangplace.engine.live.reservations import Slot
from gangplace.engine.model.types import TopologyConstraint


def m(uid: str, gpus: int = 8, cpu: int = 1000, **kw) -> Member:
    return Member(uid, gpus, cpu=cpu, memory=2**30, gang="ns/g", gang_size=9, **kw)


LEADER, W1, W2 = m("leader", gpus=4), m("w1"), m("w2")


@pytest.mark.parametrize("planning, seen, count, expected", [
    (W1, [], 8, {shape_of(W1): 8}),
    (LEADER, [], 3, {shape_of(LEADER): 3}),
    (LEADER, [W1], 3, {shape_of(LEADER): 1, shape_of(W1): 2}),
    (W1, [LEADER, W1, W2], 4, {shape_of(LEADER): 1, shape_of(W1): 3}),
    (LEADER, [m("a", gpus=2), m("b", gpus=2), W1], 5, {shape_of(LEADER): 1, shape_of(m("a", gpus=2)): 3,
                                                        shape_of(W1): 1}),
    (W1, [LEADER, W2, m("w3")], 2, {shape_of(W1): 1, shape_of(LEADER): 1}),
], ids=["a gang seen through one member is all alike",
        "a leader seen alone is assumed alike (re-planned when a worker arrives)",
        "on a tie the members not seen are assumed like the shape with more GPUs",
        "the planning member counts once however often it is seen",
        "the members not seen are assumed of the most common shape",
        "never more members than the count, the planning member first"])
def test_makeup_of(planning, seen, count, expected):
    assert dict(makeup_of(planning, seen, count)) == expected


def test_a_gang_of_one_shape_is_the_members_own_request_exactly():
    assert gang_request(W1, [W2], 8, min_count=4) == W1.gang_request(8, min_count=4)
    assert gang_request(W1, [W2], 8).pod_sets[0].name == SINGLE_POD_SET


def test_a_mixed_gang_is_one_pod_set_per_shape_largest_first_with_the_elastic_minimum_on_the_largest():
    topo = TopologyConstraint(required="block")
    leader = Member("leader", 0, cpu=8000, memory=2**30, gang="ns/g", gang_size=9, topology=topo, priority=5,
                    node_selector={"pool": "cpu"})
    worker = m("w1", topology=topo, priority=5)
    g = gang_request(leader, [worker], 9, min_count=5)
    assert [(ps.count, ps.gpus, ps.min_count) for ps in g.pod_sets] == [(8, 8, 4), (1, 0, None)]
    assert g.pod_sets[1].name == "0gpu-8000m-1073741824b-pool=cpu" and g.pod_sets[1].node_selector == {"pool": "cpu"}
    assert g.name == "ns/g" and g.topology == topo and g.priority == 5
    assert pod_set_for(g, m("w9")) == g.pod_sets[0].name and pod_set_for(g, m("x", gpus=2)) is None
    # a minimum the leaders alone meet still starts at least one worker
    assert gang_request(leader, [worker], 9, min_count=1).pod_sets[0].min_count == 1


def test_a_subset_keeps_the_pod_sets_with_slots_to_place_again_each_whole():
    g = gang_request(LEADER, [W1], 5, min_count=3)
    slots = [Slot(g.pod_sets[0].name, 0, "n0", 8, 1000, 2**30), Slot(g.pod_sets[0].name, 1, "n1", 8, 1000, 2**30)]
    part = subset(g, pod_set_counts(slots))
    assert [(ps.name, ps.count, ps.min_count) for ps in part.pod_sets] == [(pod_set_name(shape_of(W1)), 2, None)]


@pytest.mark.parametrize("wanted, planned, result", [
    ({"w": 8}, {"w": 8}, False),
    ({"w": 8}, {"w": 5}, False),
    ({"l": 1, "w": 2}, {"l": 3}, True),
    ({"l": 1, "w": 2}, {"l": 2, "w": 1}, True),
    ({"w": 8}, {"w": 9}, True),
], ids=["the plan is the gang", "an elastic gang started with fewer: not another gang",
        "a shape the plan lacks", "more slots of a shape than members of it", "the gang shrank below its plan"])
def test_differs(wanted, planned, result):
    from collections import Counter
    from gangplace.engine.live.makeup import differs
    assert differs(Counter(wanted), Counter(planned)) is result


def test_a_gang_grown_around_its_kept_slots_names_every_shape_and_places_only_the_rest():
    from collections import Counter
    from gangplace.engine.live.makeup import grown
    planned = gang_request(LEADER, [], 4)  # a leader seen alone: 4 alike, pod set "members"
    table, part = grown(planned, Counter({shape_of(LEADER): 1}), Counter({shape_of(W1): 3}))
    assert [(ps.name, ps.count, ps.gpus) for ps in table.pod_sets] == [
        (pod_set_name(shape_of(W1)), 3, 8), (SINGLE_POD_SET, 1, 4)]  # the leader's slot keeps its pod set's name
    assert [(ps.name, ps.count, ps.min_count) for ps in part.pod_sets] == [(pod_set_name(shape_of(W1)), 3, None)]
    assert part.name == table.name == planned.name and part.topology == planned.topology

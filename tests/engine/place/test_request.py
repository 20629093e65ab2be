"""Request preparation (engine/place/request.py): one validation, units, eligibility, order."""
from __future__ import annotations

import numpy as np
import pytest

from gangplace.engine.model.errors import InvalidRequest
from gangplace.engine.model.formats import gang_from_dict
from gangplace.engine.model.types import GangRequest, PodSet, SliceLayer, TopologyConstraint
from gangplace.engine.place.request import prepare
from tests.conftest import build_cluster, gang, pod_set


@pytest.fixture
def cluster():
    return build_cluster({"b0": {"r0": [0, 0], "r1": [0]}})


@pytest.mark.parametrize("g, field", [
    (GangRequest("g", ()), "pod_sets"),
    (gang(pod_set(0)), "pod_sets[0].count"),
    (gang(pod_set(2, min_count=3)), "pod_sets[0].min_count"),
    (gang(pod_set(2, gpus=-1)), "pod_sets[0].gpus"),
    (gang(pod_set(1, name="a"), pod_set(1, name="a")), "pod_sets[1].name"),
    (gang(pod_set(4), required="zone"), "topology.required"),
    (gang(pod_set(4), slices=((2, "rack"), (4, "node"))), "topology.slices[1].size"),
    (gang(pod_set(6), slices=((4, "rack"),)), "pod_sets[0].count"),
    (gang(pod_set(4), slices=((2, "node"), (1, "rack"))), "topology.slices[1].level"),
], ids=["no pod sets", "zero pods", "min_count above count", "negative GPUs", "duplicate pod set names",
        "unknown required level", "outer slice not a multiple of the inner one",
        "count not a multiple of the slice", "slice layers not outer first"])
def test_a_bad_gang_names_its_field(cluster, g, field):
    with pytest.raises(InvalidRequest) as e:
        prepare(cluster, g)
    assert e.value.field == field


def test_files_and_python_gangs_share_one_validation(cluster):
    # the same duplicate-name gang from a dict and built in Python: the same message and field
    data = {"name": "g", "pod_sets": [{"name": "a", "count": 1}, {"name": "a", "count": 1}]}
    with pytest.raises(InvalidRequest) as from_file:
        gang_from_dict(data)
    with pytest.raises(InvalidRequest) as from_python:
        prepare(cluster, gang(pod_set(1, name="a"), pod_set(1, name="a")))
    assert (from_file.value.message, from_file.value.field) == (from_python.value.message, from_python.value.field)


def test_units_eligibility_and_order(cluster):
    g = GangRequest("g", (PodSet("helper", 2, gpus=1), PodSet("worker", 4, gpus=8, node_selector={"gpu_type": "H100"})),
                    TopologyConstraint(required="block", preferred="rack", slices=(SliceLayer(2, "rack"),)))
    p = prepare(cluster, g)
    assert (p.required_level, p.preferred_level, p.counted_levels) == (0, 1, 2)
    assert p.order == (1, 0)  # most GPUs per pod first
    assert p.units[1].tolist() == [1, 2, 1]  # slice of 2 at the rack level, node level last
    assert all(e.dtype == np.uint8 and e.tolist() == [1, 1, 1] for e in p.eligible)
    assert p.eligible[0] is not cluster.schedulable

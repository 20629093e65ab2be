"""engine/live/nodes.py: node changes applied in place when they keep the topology, else a rebuild."""
from __future__ import annotations

from dataclasses import replace

import pytest
from gangplace.engine.live.nodes import NodeSpecs, check_specs
from gangplace.engine.model.errors import InvalidRequest

from tests.conftest import build_cluster


@pytest.mark.parametrize("change, rebuild", [
    ({"schedulable": False}, False),
    ({"gpus": 4}, False),
    ({"topology": {"block": "b0", "rack": "r9"}}, True),
    ({"labels": {"zone": "a"}}, True),
], ids=["a cordon is applied in place", "a new allocatable is applied in place",
        "a move in the topology needs a rebuild", "new labels need a rebuild (selector masks are cached)"])
def test_upsert(change, rebuild):
    cluster = build_cluster({"b0": {"r0": [0, 0]}})
    specs = NodeSpecs(cluster.nodes)
    old = cluster.spec(0)
    assert specs.upsert([replace(old, **change)], cluster) == (True, rebuild)
    assert specs.get(old.name) == replace(old, **change)
    assert specs.upsert([replace(old, **change)], cluster) == (False, False)  # identical: nothing


def test_bad_specs_are_refused_naming_the_node_field():
    cluster = build_cluster({"b0": {"r0": [0]}})
    with pytest.raises(InvalidRequest) as e:
        check_specs(cluster.levels, [replace(cluster.spec(0), gpus_used=9)])
    assert e.value.field == "node" and "gpus_used" in str(e.value)

"""service/extender_wire.py: ``RecentBodies``, the decoded bodies filter and prioritize share."""
from __future__ import annotations

import orjson
import pytest

from gangplace.service.extender_wire import BadBody, RecentBodies

POD = {"metadata": {"name": "p", "uid": "u", "labels": {"a": "b"}}, "spec": {}}


class Ext:
    max_selector_bytes = None


def test_the_same_bytes_decode_once_and_other_bytes_decode_anew():
    bodies, ext = RecentBodies(), Ext()
    raw = orjson.dumps({"Pod": POD, "Nodes": None, "NodeNames": ["n1", "n2"]})
    first = bodies.load(ext, raw)
    assert bodies.load(ext, bytes(raw)) is first and first["NodeNames"] == ["n1", "n2"]
    other = bodies.load(ext, orjson.dumps({"Pod": POD, "Nodes": None, "NodeNames": ["n1"]}))
    assert other is not first and other["NodeNames"] == ["n1"]


def test_a_body_with_a_duplicate_key_is_refused_every_time():
    bodies, ext = RecentBodies(), Ext()
    raw = b'{"Pod": {"metadata": {"name": "p", "uid": "u", "uid": "v"}}, "NodeNames": []}'
    for _ in range(2):
        with pytest.raises(BadBody, match="duplicate key 'uid'"):
            bodies.load(ext, raw)


def test_the_pod_size_limit_is_checked_again_when_it_changed():
    bodies, ext = RecentBodies(), Ext()
    raw = orjson.dumps({"Pod": POD, "Nodes": None, "NodeNames": ["n1"]})
    bodies.load(ext, raw)
    ext.max_selector_bytes = 4
    with pytest.raises(BadBody, match="limits.max_selector_bytes"):
        bodies.load(ext, raw)


def test_only_the_last_few_small_bodies_are_kept():
    bodies, ext = RecentBodies(size=2, max_body_bytes=200), Ext()
    raws = [orjson.dumps({"Pod": POD, "NodeNames": [f"n{i}"]}) for i in range(3)]
    first = bodies.load(ext, raws[0])
    for raw in raws[1:]:
        bodies.load(ext, raw)
    assert len(bodies._bodies) == 2 and bodies.load(ext, raws[0]) is not first
    big = orjson.dumps({"Pod": POD, "NodeNames": [f"node-{i}" for i in range(40)]})
    assert bodies.load(ext, big) is not bodies.load(ext, big)  # over max_body_bytes: not kept

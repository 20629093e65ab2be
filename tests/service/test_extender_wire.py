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


# ---------------------------------------------------------------------- loads_strict
def _reference(raw: bytes):
    """loads_strict as it was: always the second parse that refuses a key twice."""
    import json

    from gangplace.service.extender_wire import _no_duplicate_keys
    body = orjson.loads(raw)
    if isinstance(body, (dict, list)):
        try:
            json.loads(raw, object_pairs_hook=_no_duplicate_keys)
        except ValueError as e:
            raise BadBody(str(e)) from None
    return body


def _outcome(fn, raw):
    try:
        return "ok", fn(raw)
    except BadBody as e:
        return "bad", str(e)


@pytest.mark.parametrize("raw", [
    b'{"a": 1, "a": 2}',
    b'{"a": "x:y", "b": {"c": ":", "c": 1}}',
    b'[{"k": 1}, {"k": 2, "k": 3}]',
    b'{"a\\u003a": 1, "a:": 2}',  # the same key, once written with an escape
    b'{"x": "\\u003a", "x": 1}',  # an escaped colon in a value and a repeated key
    b'{"x": "\\u003a\\u003a", "y": 1}',
    b'{"k": "a:b:c", "l": [":", {"m": ":"}]}',
    b'{"Pod": {"metadata": {"uid": "u", "name": "n", "uid": "v"}}, "NodeNames": ["n:1"]}',
    b'{"a": ' * 300 + b'1' + b'}' * 300,  # nested deeper than orjson writes
    b'{"a": ' * 299 + b'{"b": 1, "b": 2}' + b'}' * 299,
], ids=range(10))
def test_loads_strict_answers_as_the_full_second_parse_did(raw):
    from gangplace.service.extender_wire import loads_strict
    assert _outcome(loads_strict, raw) == _outcome(_reference, raw)


def test_loads_strict_matches_the_full_second_parse_on_random_bodies():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gangplace.service.extender_wire import loads_strict
    text = st.text(alphabet=st.sampled_from(list('ab:"\\/é\n')), max_size=4)
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), text)

    def objects(children):  # a JSON object as pairs, so a key may repeat
        return st.lists(st.tuples(st.sampled_from(["a", "b", "a:", ":", "c\\"]), children), max_size=4)

    tree = st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3), objects(c)), max_leaves=12)

    def encode(v, escape: bool) -> bytes:
        if isinstance(v, list) and v and all(isinstance(p, tuple) for p in v):
            return b"{" + b", ".join(enc_str(k, escape) + b": " + encode(x, escape) for k, x in v) + b"}"
        if isinstance(v, list):
            return b"[" + b",".join(encode(x, escape) for x in v) + b"]"
        if isinstance(v, str):
            return enc_str(v, escape)
        return orjson.dumps(v)

    def enc_str(s: str, escape: bool) -> bytes:
        out = orjson.dumps(s)
        return out.replace(b":", b"\\u003a") if escape else out

    @settings(max_examples=400, deadline=None)
    @given(tree, st.booleans())
    def check(v, escape):
        raw = encode(v, escape)
        assert _outcome(loads_strict, raw) == _outcome(_reference, raw)
    check()

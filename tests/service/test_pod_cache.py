"""service/pod_cache.py: the cache is bounded by count and bytes; ``parse`` reuses a pod's reading
only when nothing it depends on can have changed (the extender's filter -> prioritize path)."""
from __future__ import annotations

import copy

import orjson

from gangplace.service.gangs import parse_pod
from gangplace.service.pod_cache import RECENT, PodCache
from gangplace.service.topology_presets import LevelMap

LEVELS = LevelMap(("block", "rack"), ("block", "rack"))


def pod(name: str, *, gpus: int = 1, labels=None) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": dict(labels or {})},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}]}}


class Counting:
    """``parse_pod`` with a count of calls and an optional PodGroup size lookup."""

    def __init__(self, sizes=None):
        self.calls, self.sizes = 0, {} if sizes is None else sizes

    def __call__(self, p, levels=LEVELS):
        self.calls += 1
        return parse_pod(p, levels, group_size=lambda kind, ns, name: self.sizes.get(name))


def test_the_same_pod_json_is_parsed_once_and_kept_as_newest():
    cache, parse = PodCache(), Counting()
    a = pod("a")
    first = cache.parse(a, parse, LEVELS)
    again = cache.parse(orjson.loads(orjson.dumps(a)), parse, LEVELS)  # equal JSON, another object
    assert again is first and parse.calls == 1
    assert cache.get("uid-a") is first and cache.bytes == len(orjson.dumps(a))


def test_a_changed_pod_or_another_context_is_parsed_again():
    cache, parse = PodCache(), Counting()
    a = pod("a")
    cache.parse(a, parse, LEVELS)
    b = copy.deepcopy(a)
    b["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "2"
    assert cache.parse(b, parse, LEVELS).gpus == 2 and parse.calls == 2
    other = LevelMap(("block", "rack"), ("block", "rack"))  # the sync resolved the levels again
    assert cache.parse(b, parse, other).gpus == 2 and parse.calls == 3
    assert cache.parse(b, parse, other).gpus == 2 and parse.calls == 3


def test_a_pod_group_member_is_always_parsed_again_its_size_is_looked_up():
    sizes = {}
    cache, parse = PodCache(), Counting(sizes)
    m = pod("m", labels={"scheduling.x-k8s.io/pod-group": "pg"})
    assert cache.parse(m, parse, LEVELS).gang.size is None
    sizes["pg"] = 4  # the PodGroup was synced between filter and prioritize
    assert cache.parse(m, parse, LEVELS).gang.size == 4 and parse.calls == 2
    g = pod("g", labels={"gangplace.dev/gang": "g", "gangplace.dev/size": "8"})
    cache.parse(g, parse, LEVELS)
    cache.parse(g, parse, LEVELS)
    assert parse.calls == 3  # a gangplace-label gang reads its size from the pod alone


def test_a_pod_with_dra_claims_is_always_parsed_again_its_gpus_come_from_the_sync():
    claims = {"n": 0}
    cache, calls = PodCache(), []

    def parse(p):  # a claim-based pod: its GPUs are what the sync's claim index says now
        calls.append(1)
        return parse_pod(p, LEVELS, claim_gpus=lambda obj: claims["n"])
    c = pod("c", gpus=0)
    c["spec"]["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": "four-gpus"}]
    assert cache.parse(c, parse, LEVELS).gpus == 0
    claims["n"] = 4  # the template was synced between filter and prioritize
    assert cache.parse(c, parse, LEVELS).gpus == 4 and len(calls) == 2


def test_a_pod_that_does_not_parse_is_not_kept_and_fails_again():
    cache, parse = PodCache(), Counting()
    bad = pod("bad", labels={"gangplace.dev/gang": "g", "gangplace.dev/size": "many"})
    for _ in range(2):
        try:
            cache.parse(bad, parse, LEVELS)
            raise AssertionError("parsed a bad size label")
        except Exception as e:
            assert "gangplace.dev/size" in str(e)
    assert parse.calls == 2 and len(cache) == 0 and cache.bytes == 0


def test_the_remembered_json_is_bounded_and_dropped_with_the_pod():
    cache, parse = PodCache(), Counting()
    for i in range(RECENT + 10):
        cache.parse(pod(f"p{i}"), parse, LEVELS)
    assert len(cache._recent) == RECENT and "uid-p0" not in cache._recent
    cache.parse(pod("p0"), parse, LEVELS)  # forgotten: parsed again
    assert parse.calls == RECENT + 11
    cache.pop("uid-p0")
    assert "uid-p0" not in cache._recent and cache.get("uid-p0") is None


def test_a_pod_with_a_large_json_is_not_remembered():
    from gangplace.service.pod_cache import RECENT_MAX_BYTES
    cache, parse = PodCache(), Counting()
    big = pod("big", labels={f"k{i}": "v" * 64 for i in range(RECENT_MAX_BYTES // 64)})
    for _ in range(2):
        assert cache.parse(big, parse, LEVELS).uid == "uid-big"
    assert parse.calls == 2 and "uid-big" not in cache._recent and cache.get("uid-big") is not None

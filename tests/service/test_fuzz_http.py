"""Hostile input on every HTTP entry point (hypothesis), against a real server on 127.0.0.1.

docs/placement.md's rule (failure behaviour) for the extender verbs: only a body that does not parse into the expected shape
gets HTTP 400; everything else gets HTTP 200, with the reason in FailedNodes /
FailedAndUnresolvableNodes / Error. Never a 5xx, never a dropped connection, and no state change
unless the request was a valid gang member that fits (then exactly one reservation appears, and
it is released here before the next example). Bodies over ``http_max_body_bytes`` get 413.
"""
from __future__ import annotations

import http.client
import json

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.synthetic import generate
from gangplace.service.config import ServeConfig
from gangplace.service.testing import running_service

MAX_BODY = 256 * 1024
VERBS = ("filter", "prioritize", "bind", "preempt")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def svc():
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic",
                      http_max_body_bytes=MAX_BODY, log_level="error")
    with running_service(cfg, ClusterState(generate("dgx-h100", gpus=128, fill=0.5, seed=3))) as s:
        s.test_conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=30)
        yield s
        s.test_conn.close()


def post(svc, path: str, body: bytes) -> tuple[int, bytes]:
    """POST on one kept-alive connection; a dropped connection is a test failure, not a retry."""
    conn = svc.test_conn
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.getheader("Connection", "").lower() == "close":
        conn.close()
    return r.status, data


def dumps(obj) -> bytes:
    """JSON the way any client may write it (integers of any size, unicode, lone surrogates)."""
    return json.dumps(obj).encode()


def fingerprint(state) -> tuple:
    s = state.stats()
    return s["version"], s["free_gpus"], s["reserved_gpus"], s["allocations"], s["reservations"]


def restore(svc) -> None:
    """Release what a valid, fitting request reserved, so examples stay independent."""
    for key in list(svc.state.reservations()):
        svc.state.release(key)


# ---------------------------------------------------------------------- strategies
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=10), kids, max_size=4)), max_leaves=20)

hostile_text = st.one_of(st.text(max_size=30), st.sampled_from(
    ["", " ", "\u0000", "💥", "ﷺ" * 50, "a" * 300, "../../etc/passwd", "${jndi:x}", "%n%n", "\ud7ff"]))
hostile_number_text = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["0", "-1", "1000000", "65536", "65537", "1e3", "0x10", "٣", "1.5", "NaN", "inf", " 2", "2 ",
                     "99999999999999999999999", ""]),
    hostile_text)
quantity = st.one_of(hostile_number_text, st.integers(min_value=-(2**70), max_value=2**70),
                     st.sampled_from(["8", "1e308", "1Ei", "100Ti", "-8", "8Gi", "500m", "0.5", "1e-9"]),
                     st.floats(allow_nan=False, allow_infinity=False), json_values)  # NaN/inf: not JSON


def level_names(svc) -> list[str]:
    return list(svc.state.levels)


@st.composite
def hostile_pod(draw, known_levels=("zone", "block", "su")):
    labels = draw(st.dictionaries(hostile_text, st.one_of(hostile_text, json_values), max_size=3))
    annotations = {}
    if draw(st.booleans()):
        labels["gangplace.dev/gang"] = draw(st.one_of(hostile_text, st.just("fuzz"), json_values))
        labels["gangplace.dev/size"] = draw(st.one_of(hostile_number_text, json_values))
    if draw(st.booleans()):
        labels["gangplace.dev/min-size"] = draw(hostile_number_text)
    level = st.one_of(st.sampled_from(list(known_levels) + ["node", "galaxy", "ZONE", ""]), hostile_text)
    for ann in ("gangplace.dev/topology-required", "gangplace.dev/topology-preferred",
                "gangplace.dev/slice-topology", "kueue.x-k8s.io/podset-required-topology"):
        if draw(st.integers(0, 3)) == 0:
            annotations[ann] = draw(level)
    if draw(st.booleans()):
        annotations["gangplace.dev/slice-size"] = draw(hostile_number_text)
    if draw(st.booleans()):
        labels["batch.kubernetes.io/job-completion-index"] = draw(hostile_number_text)
    if draw(st.booleans()):
        labels["scheduling.x-k8s.io/pod-group"] = draw(hostile_text)
    resources = {}
    for kind in ("requests", "limits"):
        if draw(st.booleans()):
            resources[kind] = draw(st.dictionaries(
                st.sampled_from(["nvidia.com/gpu", "cpu", "memory", "ephemeral-storage", "💥"]), quantity, max_size=3))
    containers = [{"name": draw(hostile_text), "resources": resources}] * draw(st.integers(0, 3))
    spec = {"containers": containers}
    if draw(st.booleans()):
        spec["priority"] = draw(st.one_of(st.integers(min_value=-(2**70), max_value=2**70), json_values))
    if draw(st.booleans()):
        spec["nodeSelector"] = draw(st.one_of(st.dictionaries(hostile_text, hostile_text, max_size=2), json_values))
    if draw(st.booleans()):
        spec["overhead"] = draw(st.dictionaries(st.sampled_from(["cpu", "nvidia.com/gpu"]), quantity, max_size=2))
    if draw(st.booleans()):
        spec["initContainers"] = draw(st.one_of(json_values, st.just([{"name": "i", "resources": resources}])))
    meta = {"name": draw(hostile_text.filter(bool)), "uid": draw(hostile_text.filter(bool)),
            "namespace": draw(st.one_of(st.none(), hostile_text)), "labels": labels, "annotations": annotations}
    return {"metadata": meta, "spec": spec, "status": draw(st.one_of(st.just({}), json_values))}


@st.composite
def nearly_valid_pod(draw, known_levels=("zone", "block", "su")):
    """A gang member or a plain GPU pod that is valid, with at most one field made hostile."""
    n = draw(st.integers(0, 10**9))
    labels = {"gangplace.dev/gang": f"fz-{n}", "gangplace.dev/size": str(draw(st.integers(1, 4)))}
    if draw(st.integers(0, 3)) == 0:
        labels = {}
    annotations = {}
    if draw(st.booleans()):
        annotations["gangplace.dev/topology-required"] = draw(st.sampled_from(list(known_levels)))
    if draw(st.booleans()):
        annotations["gangplace.dev/slice-size"] = draw(st.sampled_from(["1", "2"]))
        annotations["gangplace.dev/slice-topology"] = draw(st.sampled_from(list(known_levels)))
    pod = {"metadata": {"name": f"p{n}", "uid": f"uid-{n}", "namespace": "fz", "labels": labels,
                        "annotations": annotations},
           "spec": {"containers": [{"name": "c", "resources": {"requests": {
               "nvidia.com/gpu": draw(st.sampled_from(["1", "4", "8"])), "cpu": "1", "memory": "1Gi"}}}]}}
    spoil = draw(st.integers(0, 5))
    if spoil == 0:
        pod["metadata"]["labels"]["gangplace.dev/size"] = draw(hostile_number_text)
    elif spoil == 1:
        pod["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = draw(quantity)
    elif spoil == 2:
        pod["metadata"]["annotations"]["gangplace.dev/topology-preferred"] = draw(hostile_text)
    return pod


def node_names(svc, draw) -> list[str]:
    known = svc.state.node_names()
    names = draw(st.lists(st.one_of(st.sampled_from(known), hostile_text.filter(bool)), max_size=12))
    if draw(st.booleans()):
        names = names + known  # everything, with duplicates
    return names


# ---------------------------------------------------------------------- the checks
def check_filter_answer(names: list[str], out: dict) -> None:
    assert set(out) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    passing = out["NodeNames"] if out["Nodes"] is None else [n["metadata"]["name"] for n in out["Nodes"]["items"]]
    failed, unresolvable = out["FailedNodes"] or {}, out["FailedAndUnresolvableNodes"] or {}
    assert not set(failed) & set(unresolvable) and not set(passing) & (set(failed) | set(unresolvable))
    assert set(passing) | set(failed) | set(unresolvable) <= set(names), "only nodes that were offered"
    if not out["Error"] and not passing:  # rejected: every node offered gets a reason
        assert set(failed) | set(unresolvable) == set(names)
    assert all(isinstance(v, str) and v for v in {**failed, **unresolvable}.values())


def check_state(svc, before: tuple, *, may_reserve: bool) -> None:
    after = fingerprint(svc.state)
    problems = svc.state.check_consistency()
    assert problems == []
    if after != before:
        assert may_reserve, f"state changed on a request that placed nothing: {before} -> {after}"
        assert after[3] == before[3], "no allocation ever comes from filter"
        assert after[4] == before[4] + 1, "a fitting gang member reserves its one gang"
    restore(svc)


# ---------------------------------------------------------------------- properties
@SETTINGS
@given(data=st.data(), verb=st.sampled_from(VERBS))
def test_arbitrary_json_gets_400_or_an_answer_and_changes_nothing(svc, data, verb):
    body = data.draw(st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "Pod": json_values, "NodeNames": json_values, "Nodes": json_values, "PodName": json_values,
        "PodNamespace": json_values, "PodUID": json_values, "Node": json_values,
        "NodeNameToVictims": json_values, "NodeNameToMetaVictims": json_values})))
    before = fingerprint(svc.state)
    status, raw = post(svc, f"/{verb}", dumps(body))
    assert status in (200, 400), raw
    if status == 400:
        assert raw.startswith(b"gangplace: ")
    else:
        orjson.loads(raw)
    assert fingerprint(svc.state) == before


@SETTINGS
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                     st.sampled_from([b"", b"{", b"null", b"\xff\xfe", b'{"Pod": 1e999}', b"[" * 5000,
                                      b'{"a":' * 3000 + b"1" + b"}" * 3000, b"\x00" * 100])))
def test_unparseable_bodies_get_400_on_every_verb(svc, raw):
    before = fingerprint(svc.state)
    for verb in VERBS:
        status, text = post(svc, f"/{verb}", raw)
        if status == 200:  # some binary happens to be JSON of the right shape: it must still be an answer
            orjson.loads(text)
        else:
            assert status == 400, text
    assert fingerprint(svc.state) == before


@SETTINGS
@given(data=st.data())
def test_hostile_pods_on_filter_and_prioritize_get_200_with_a_reason_for_every_node(svc, data):
    pod = data.draw(st.one_of(hostile_pod(tuple(level_names(svc))), nearly_valid_pod(tuple(level_names(svc)))))
    names = node_names(svc, data.draw)
    restore(svc)
    before = fingerprint(svc.state)
    status, raw = post(svc, "/filter", dumps({"Pod": pod, "NodeNames": names, "Nodes": None}))
    assert status == 200, raw
    out = orjson.loads(raw)
    check_filter_answer(names, out)
    reserved = fingerprint(svc.state)[4] > before[4]
    event("reserved" if reserved else "unresolvable" if out["FailedAndUnresolvableNodes"] else
          "error" if out["Error"] else "passing" if (out["NodeNames"] or []) else "failed")
    if reserved:  # a valid gang member that fits: one node (repeated if offered twice), one reservation
        assert len(set(out["NodeNames"])) == 1
    status, raw = post(svc, "/prioritize", dumps({"Pod": pod, "NodeNames": names, "Nodes": None}))
    assert status == 200, raw
    scores = orjson.loads(raw)
    assert [s["Host"] for s in scores] == names and all(0 <= s["Score"] <= 10 for s in scores)
    check_state(svc, before, may_reserve=True)


@SETTINGS
@given(data=st.data())
def test_hostile_binds_are_refused_or_answered_with_an_error_and_bind_nothing(svc, data):
    body = {k: data.draw(st.one_of(hostile_text, json_values)) for k in ("PodName", "PodNamespace", "PodUID")}
    body["Node"] = data.draw(st.one_of(st.sampled_from(svc.state.node_names()), hostile_text, json_values))
    before = fingerprint(svc.state)
    status, raw = post(svc, "/bind", dumps(body))
    assert status in (200, 400), raw
    if status == 200:
        out = orjson.loads(raw)
        assert set(out) == {"Error"} and out["Error"].startswith("gangplace: "), "filter never saw this pod"
    assert fingerprint(svc.state) == before


@SETTINGS
@given(data=st.data())
def test_hostile_preemption_requests_choose_only_among_the_nodes_offered(svc, data):
    pod = data.draw(hostile_pod())
    victims = data.draw(st.dictionaries(
        st.one_of(st.sampled_from(svc.state.node_names()), hostile_text),
        st.fixed_dictionaries({"Pods": st.lists(st.fixed_dictionaries({"UID": hostile_text}), max_size=3),
                               "NumPDBViolations": st.one_of(st.integers(-(2**70), 2**70), json_values)}),
        max_size=4))
    before = fingerprint(svc.state)
    status, raw = post(svc, "/preempt", dumps({"Pod": pod, "NodeNameToVictims": None,
                                                      "NodeNameToMetaVictims": victims}))
    assert status in (200, 400), raw
    if status == 200:
        out = orjson.loads(raw)
        assert set(out["NodeNameToMetaVictims"] or {}) <= set(victims)
    assert fingerprint(svc.state)[:4] == before[:4]


# ---------------------------------------------------------------------- targeted cases
@pytest.mark.parametrize("size", ["1000000", "65537", "-1", "0", "99999999999999999999"])
def test_a_gang_of_a_million_pods_or_a_nonsense_size_is_unresolvable_on_every_node(svc, size):
    pod = {"metadata": {"name": "huge", "uid": f"huge-{size}", "labels": {
        "gangplace.dev/gang": "huge", "gangplace.dev/size": size}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "8"}}}]}}
    names = svc.state.node_names()
    before = fingerprint(svc.state)
    status, raw = post(svc, "/filter", dumps({"Pod": pod, "NodeNames": names, "Nodes": None}))
    assert status == 200
    out = orjson.loads(raw)
    assert set(out["FailedAndUnresolvableNodes"]) == set(names)
    assert len(set(out["FailedAndUnresolvableNodes"].values())) == 1
    assert "gangplace.dev/size" in next(iter(out["FailedAndUnresolvableNodes"].values()))
    assert fingerprint(svc.state) == before


def test_the_largest_allowed_gang_that_cannot_fit_is_rejected_whole_without_a_reservation(svc):
    pod = {"metadata": {"name": "big", "uid": "big-0", "labels": {
        "gangplace.dev/gang": "big", "gangplace.dev/size": "65536"}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "8"}}}]}}
    names = svc.state.node_names()
    before = fingerprint(svc.state)
    status, raw = post(svc, "/filter", dumps({"Pod": pod, "NodeNames": names, "Nodes": None}))
    assert status == 200
    out = orjson.loads(raw)
    assert set(out["FailedAndUnresolvableNodes"]) == set(names), "it cannot fit even in the empty cluster"
    assert fingerprint(svc.state) == before


@pytest.mark.parametrize("body", [
    b"[" * 200_000 + b"]" * 200_000,
    b'{"Pod": ' * 100_000 + b"1" + b"}" * 100_000,
    b'{"Pod": {"metadata": {"name": "x", "uid": "u", "labels": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001
    + b'}}, "NodeNames": []}',
], ids=["deep list", "deep object", "deep labels"])
def test_deeply_nested_json_is_400_not_a_recursion_crash(svc, body):
    body = body[:MAX_BODY - 1]  # under the size limit: the parser must refuse it by depth
    before = fingerprint(svc.state)
    for verb in VERBS:
        status, _ = post(svc, f"/{verb}", body)
        assert status == 400
    assert fingerprint(svc.state) == before


def test_bodies_over_the_limit_get_413_and_the_server_keeps_serving(svc):
    names = ["n" * 60] * (MAX_BODY // 60)
    status, _ = post(svc, "/filter", json.dumps({"Pod": {"metadata": {"name": "x", "uid": "u"}},
                                                 "NodeNames": names}).encode())
    assert status == 413
    conn = http.client.HTTPConnection("127.0.0.1", svc.http_port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200


def test_a_body_just_under_the_limit_with_thousands_of_unknown_node_names_is_answered(svc):
    names = [f"ghost-{i:06d}" for i in range(MAX_BODY // 20)]
    body = dumps({"Pod": {"metadata": {"name": "x", "uid": "u"}}, "NodeNames": names, "Nodes": None})
    assert len(body) < MAX_BODY
    status, raw = post(svc, "/filter", body)
    assert status == 200
    out = orjson.loads(raw)
    assert out["NodeNames"] == [] and set(out["FailedNodes"]) == set(names)


def test_unknown_paths_and_methods_are_4xx(svc):
    for method, path in (("GET", "/filter"), ("POST", "/nope"), ("PUT", "/bind"), ("POST", "/../filter")):
        conn = http.client.HTTPConnection("127.0.0.1", svc.http_port, timeout=10)
        conn.request(method, path, body=b"{}")
        r = conn.getresponse()
        r.read()
        assert 400 <= r.status < 500, (method, path, r.status)


def test_regression_slice_size_that_does_not_divide_the_gang_is_unresolvable_not_a_500(svc):
    # found by the fuzzer: size 1 with slice size 2 made the engine raise inside filter (HTTP 500);
    # a 1-pod gang is now one partial slice (valid), so the refused shape is 3 pods in slices of 2
    pod = {"metadata": {"name": "p0", "uid": "uid-slice", "namespace": "fz", "labels": {
        "gangplace.dev/gang": "fz-slice", "gangplace.dev/size": "3"}, "annotations": {
        "gangplace.dev/slice-size": "2", "gangplace.dev/slice-topology": "zone"}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "1"}}}]}}
    names = svc.state.node_names()
    before = fingerprint(svc.state)
    status, raw = post(svc, "/filter", dumps({"Pod": pod, "NodeNames": names, "Nodes": None}))
    assert status == 200, raw
    out = orjson.loads(raw)
    assert set(out["FailedAndUnresolvableNodes"]) == set(names)
    assert "slice size 2" in next(iter(out["FailedAndUnresolvableNodes"].values()))
    assert fingerprint(svc.state) == before

"""One gang scenario through both doors of a real server: the HTTP extender (POST /filter, /bind)
and the gRPC ``Extender`` method. Both are translations of the one gang planner
(engine/live/coschedule.py), so the scenario must come out the same either way."""
from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import orjson
import pytest
from gangplace.engine.live.state import ClusterState
from gangplace.service.client import GangplaceClient
from gangplace.service.config import ServeConfig
from gangplace.service.testing import running_service

from tests.service.test_extender import filter_args, member, passing, synthetic


def _http(svc) -> Callable[[str, dict], dict]:
    def call(verb: str, body: dict) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{svc.http_port}/{verb}", data=orjson.dumps(body),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200
            return json.loads(r.read())
    return call


def _grpc(svc) -> Callable[[str, dict], dict]:
    def call(verb: str, body: dict) -> dict:
        with GangplaceClient(f"127.0.0.1:{svc.grpc_port}", timeout_s=30) as c:
            status, out = c.extender(verb, body)
        assert status == 200, out
        return out
    return call


@pytest.mark.parametrize("door", [_http, _grpc], ids=["through the HTTP extender", "through the gRPC Extender method"])
def test_a_gang_is_planned_bound_whole_and_a_gang_too_big_is_unresolvable(door):
    state = ClusterState(synthetic(blocks=2, racks=4, nodes=4))
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic")
    with running_service(cfg, state) as svc:
        call = door(svc)
        names = state.node_names()
        pods = [member("both", i, 4) for i in range(4)]
        chosen = [passing(call("filter", filter_args(p, names))) for p in pods]
        assert all(len(c) == 1 for c in chosen) and len({c[0] for c in chosen}) == 4
        assert len({state.node_spec(c[0]).topology["rack"] for c in chosen}) == 1  # one rack holds the gang
        # the binds wait for each other (the barrier): all four at once, each answered when all arrived
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda pc: call("bind", {
                "PodName": pc[0]["metadata"]["name"], "PodNamespace": "default",
                "PodUID": pc[0]["metadata"]["uid"], "Node": pc[1][0]}), zip(pods, chosen)))
        assert answers == [{"Error": ""}] * 4
        assert sorted(r.node for r in state.gang_members("default/both")) == sorted(c[0] for c in chosen)
        assert state.reservation("default/both") is None and state.check_consistency() == []

        too_big = call("filter", filter_args(member("huge", 0, 1000), names))
        assert passing(too_big) == [] and set(too_big["FailedAndUnresolvableNodes"]) == set(names)
        assert all("not even in the empty cluster" in r for r in too_big["FailedAndUnresolvableNodes"].values())
        counters = svc.extender.planner.counters
        assert counters["gang_planned"] == 1 and counters["gang_bound"] == 1 and counters["gang_rejected_never"] == 1

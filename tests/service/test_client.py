"""The typed client: engine dataclasses in and out, errors mapped to exceptions."""
import grpc
import pytest

from gangplace.engine import Cluster, GangRequest, PodSet, TopologyConstraint
from gangplace.engine.model.errors import InvalidRequest
from gangplace.engine.model.types import Placement
from gangplace.engine.live.state import BindRecord, ClusterState
from gangplace.engine.model.synthetic import generate
from gangplace.service import convert
from gangplace.service.client import ClusterSnapshot, GangplaceClient, ServiceError, _split_field
from gangplace.service.config import ServeConfig
from gangplace.service.testing import running_service


@pytest.fixture(scope="module")
def served():
    state = ClusterState(generate("gb200-nvl72", gpus=288, fill=0.5, seed=3))
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", placer="heuristic")
    with running_service(cfg, state) as svc, GangplaceClient(f"127.0.0.1:{svc.grpc_port}") as c:
        yield svc, c


def test_place_returns_an_engine_placement_equal_to_its_json_shape(served):
    _, c = served
    g = GangRequest("rack-job", (PodSet("w", 4, gpus=4, cpu=8000, memory=2**34),), TopologyConstraint(required="rack"))
    p = c.place(g)
    assert isinstance(p, Placement) and p.placed
    assert len(p.pods) == 4 and {a.pod_set for a in p.pods} == {"w"}
    assert list(p.domains_used) == ["block", "rack", "node"]  # level order survives the wire
    d = p.to_dict()
    assert d["placed"] and d["gang"] == "rack-job" and d["placer"] == "heuristic"


def test_gang_and_node_conversions_round_trip_exactly():
    g = GangRequest("g", (PodSet("a", 8, gpus=4, cpu=1500, memory=3 * 2**30, min_count=4,
                                 node_selector={"gpu_type": "GB200"}), PodSet("b", 1, cpu=250)),
                    TopologyConstraint(required="block", preferred="rack"), priority=3)
    assert convert.gang_from_proto(convert.gang_to_proto(g)) == g
    cluster = generate("hetero", gpus=256, fill=0.5, seed=2)
    for i, n in enumerate(cluster.nodes):
        msg = convert.node_to_proto(n)
        assert convert.node_from_proto(msg, i, cluster.levels) == n
        assert convert.node_spec_from_proto_trusted(msg) == n


def test_placement_conversion_round_trips():
    p = Placement(gang="g", placed=False, placer="auto", gap=0.25, elapsed_ms=1.5, solver_import_ms=250.0, reason="nope",
                  explanation={"max_pods_in_one_domain": {"rack": 3}}, domains_used={"rack": 1, "node": 2})
    back = convert.placement_from_proto(convert.placement_to_proto(p))
    assert back.to_dict() == p.to_dict()


def test_snapshot_is_typed_and_rebuilds_a_cluster(served):
    svc, c = served
    s = c.snapshot()
    assert isinstance(s, ClusterSnapshot) and s.levels == ("block", "rack")
    cluster = s.cluster()
    assert isinstance(cluster, Cluster) and cluster.n_nodes == s.node_count == 72
    assert int(cluster.free_gpus.sum()) == s.free_gpus


def test_bind_many_accepts_engine_bind_records(served):
    svc, c = served
    s = c.snapshot()
    node = next(n for n in s.nodes if n.gpus - n.gpus_used >= 1)
    c.bind_many([BindRecord(pod_uid="uid-a", node=node.name, gpus=1, gang="g-a")])
    assert svc.state.allocation("uid-a").gang == "g-a"
    assert c.unbind(["uid-a"]) == 1


def test_invalid_argument_becomes_invalid_request_with_the_field(served):
    _, c = served
    with pytest.raises(InvalidRequest) as e:
        c.place(GangRequest("g", (PodSet("w", 1, gpus=4),), TopologyConstraint(required="galaxy")))
    assert e.value.field is not None and "galaxy" in str(e.value)


def test_an_unreachable_server_is_a_service_error():
    with GangplaceClient("127.0.0.1:1", timeout_s=0.5) as c:
        with pytest.raises(ServiceError) as e:
            c.ping()
    assert e.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


SPLITS = [
    ("a plain field", "pod_sets[0].count: must be >= 1", ("pod_sets[0].count", "must be >= 1")),
    ("a node field with its name", "nodes[3] (n-1).gpus: bad", ("nodes[3] (n-1).gpus", "bad")),
    ("a sentence is not a field", "gang 'x' needs 4 pods: no", (None, "gang 'x' needs 4 pods: no")),
    ("no colon at all", "plain message", (None, "plain message")),
]


@pytest.mark.parametrize("details,expected", [(d, e) for _, d, e in SPLITS], ids=[i for i, _, _ in SPLITS])
def test_error_details_split_into_field_and_message(details, expected):
    assert _split_field(details) == expected


def test_gangplace_grpc_exit_codes(served, tmp_path, capsys):
    import json

    from gangplace.service.cli import main
    svc, _ = served
    target = ["--target", f"127.0.0.1:{svc.grpc_port}"]
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: cli-ok\npod_sets: [{name: w, count: 2, gpus: 4}]\n")
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: cli-huge\npod_sets: [{name: w, count: 500, gpus: 4}]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: cli-bad\npod_sets: [{name: w, count: 2, gpus: 4}]\ntopology: {required: galaxy}\n")
    assert main(["grpc", "place", *target, "--gang", str(ok), "--reserve", "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["placed"] is True
    assert main(["grpc", "release", *target, "cli-ok"]) == 0
    assert "released" in capsys.readouterr().out
    assert main(["grpc", "place", *target, "--gang", str(huge)]) == 3
    assert main(["grpc", "preempt", *target, "--gang", str(huge)]) == 3  # no lower-priority gangs to evict
    assert main(["grpc", "preempt", *target, "--gang", str(ok)]) == 0
    assert main(["grpc", "batch", *target, "--gangs", str(huge)]) == 3
    assert main(["grpc", "explain", *target, "--gang", str(huge)]) == 3  # does not fit now
    assert main(["grpc", "explain", *target, "--gang", str(ok)]) == 0
    assert main(["grpc", "batch", *target, "--gangs", str(ok)]) == 0
    assert main(["grpc", "place", *target, "--gang", str(bad)]) == 2
    assert "galaxy" in capsys.readouterr().err
    assert main(["grpc", "snapshot", *target, "--output", "table"]) == 0
    assert "72 nodes" in capsys.readouterr().out
    assert main(["grpc", "snapshot", *target, "--nodes", "--output", "table"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 72  # the summary, then a line per node
    assert main(["grpc", "health", *target]) == 0
    assert main(["grpc", "ping", "--target", "127.0.0.1:1", "--timeout-s", "0.5"]) == 1


def test_grpc_place_prints_the_same_table_as_place_with_the_reservation_and_its_ttl(served, tmp_path, capsys):
    from gangplace.service.cli import main
    svc, _ = served
    target = ["--target", f"127.0.0.1:{svc.grpc_port}"]
    gang = tmp_path / "g.yaml"
    gang.write_text("name: table-ttl\npod_sets: [{name: w, count: 2, gpus: 4}]\n")
    assert main(["grpc", "place", *target, "--gang", str(gang), "--reserve", "--ttl-s", "45"]) == 0
    out = capsys.readouterr().out
    assert "gang table-ttl: placed by" in out and "proved optimal" in out
    assert "reserved: 2 pod slots held for" in out and "release table-ttl" in out
    held = float(out.split("held for ")[1].split(" s")[0])
    assert 30 <= held <= 45
    assert "domains used" in out and "pod set" in out  # the summary and the per-pod table of `place`
    assert main(["grpc", "release", *target, "table-ttl"]) == 0


def test_batch_table_keeps_whole_reasons_and_placer_names_at_80_columns(served, tmp_path, capsys):
    from gangplace.service.cli import main
    svc, _ = served
    gangs = tmp_path / "gangs.yaml"
    gangs.write_text("- {name: fits, pod_sets: [{name: w, count: 1, gpus: 4}]}\n"
                     "- {name: far-too-big, pod_sets: [{name: w, count: 500, gpus: 4}]}\n")
    assert main(["grpc", "batch", "--target", f"127.0.0.1:{svc.grpc_port}", "--gangs", str(gangs)]) == 3
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert " ".join(out.split()).count("far-too-big: gang 'far-too-big' needs 500 pods (2000 GPUs); only") == 1
    row = next(line for line in lines if line.startswith("│ fits "))
    assert "heuristic" in row, lines  # the placer's name whole, not cut

"""Cluster and gang files (engine/model/formats.py, engine/model/arrow_io.py): round trips and every invalid input."""
from __future__ import annotations

import copy
import json

import pytest
import yaml

from gangplace.engine import Cluster, GangRequest
from gangplace.engine.model.errors import InvalidFile, InvalidRequest, InvalidTopology
from gangplace.engine.model.formats import (MAX_GANG_PODS, cluster_from_dict, gang_from_dict, gang_to_dict, load_cluster,
                                      load_gang, load_gangs, save_cluster, save_gang)
from gangplace.engine.model.types import UNLIMITED
from gangplace.engine.place.request import prepare
from gangplace.engine.model.synthetic import generate

CLUSTER = {
    "levels": ["zone", "block", "rack"],
    "nodes": [
        {"name": "n0", "topology": {"zone": "z0", "block": "b0", "rack": "r0"}, "gpus": 8, "gpus_used": 2,
         "gpu_type": "H100", "cpu": 112, "cpu_used": "500m", "memory": "2Ti", "memory_used": "256Gi", "pods": 50,
         "pods_used": 3, "labels": {"nvidia.com/gpu.product": "H100-SXM"}},
        {"name": "n1", "topology": {"zone": "z0", "block": "b0"}, "gpus": 4, "schedulable": False,
         "allocations": [{"gang": "a", "priority": 1, "gpus": 2, "cpu": 4, "memory": "16Gi"},
                         {"gang": "b", "gpus": 1}]},
        {"name": "n2", "topology": {}, "gpus": 0},
    ],
}
GANG = {"name": "train-7", "priority": 3,
        "pod_sets": [{"name": "leader", "count": 4, "gpus": 0, "cpu": 8},
                     {"name": "worker", "count": 16, "gpus": 8, "cpu": "24", "memory": "200Gi", "min_count": 12,
                      "node_selector": {"gpu_type": "H100"}}],
        "topology": {"required": "zone", "preferred": "rack", "slices": [{"size": 4, "level": "rack"}]}}


def _snapshot(c: Cluster):
    return (c.levels, [(n.name, dict(n.topology), n.gpus, n.gpus_used, n.gpu_type, n.cpu, n.cpu_used, n.memory,
                        n.memory_used, n.pods, n.pods_used, n.schedulable, dict(n.labels), n.allocations)
                       for n in c.nodes])


# ------------------------------------------------------------------------------ round trips
def test_cluster_fields_and_defaults_are_read_as_documented():
    c = cluster_from_dict(CLUSTER)
    n0, n1, n2 = (c.spec(c.node_index[k]) for k in ("n0", "n1", "n2"))
    assert (n0.cpu, n0.cpu_used, n0.memory, n0.memory_used) == (112_000, 500, 2 * 2**40, 256 * 2**30)
    assert (n0.pods, n0.pods_used, n0.labels) == (50, 3, {"nvidia.com/gpu.product": "H100-SXM"})
    # absent: cpu/memory unlimited, 110 pod slots; usage defaults to the allocations' sums
    assert (n1.cpu, n1.memory, n1.pods) == (UNLIMITED, UNLIMITED, 110)
    assert (n1.gpus_used, n1.cpu_used, n1.memory_used) == (3, 4000, 16 * 2**30)
    assert n1.schedulable is False and n2.gpus == 0
    assert [a.gang for a in n1.allocations] == ["a", "b"] and n1.allocations[1].priority == 0


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json", ".parquet", ".arrow", ".feather"])
def test_cluster_round_trips_through_every_file_type(tmp_path, suffix):
    c = cluster_from_dict(CLUSTER)
    path = tmp_path / f"c{suffix}"
    c.save(path)
    again = Cluster.load(path)
    assert _snapshot(again) == _snapshot(c)
    assert again.node_names == c.node_names
    assert (again.free_gpus == c.free_gpus).all() and (again.node_domain == c.node_domain).all()


@pytest.mark.parametrize("suffix", [".yaml", ".parquet"])
def test_synthetic_cluster_round_trips_with_allocations(tmp_path, suffix):
    c = generate("hetero", gpus=256, fill=0.5, seed=4)
    c.save(tmp_path / f"c{suffix}")
    assert _snapshot(Cluster.load(tmp_path / f"c{suffix}")) == _snapshot(c)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_gang_round_trips(tmp_path, suffix):
    g = gang_from_dict(GANG)
    save_gang(g, tmp_path / f"g{suffix}")
    assert load_gang(tmp_path / f"g{suffix}") == g
    assert gang_from_dict(json.loads(json.dumps(gang_to_dict(g)))) == g
    assert GangRequest.load(tmp_path / f"g{suffix}") == g


def test_gang_shorthand_is_one_pod_set_named_worker():
    g = gang_from_dict({"name": "x", "count": 4, "gpus": 8, "min_count": 2, "topology": {"slice": {"size": 2,
                                                                                                  "level": "rack"}}})
    assert len(g.pod_sets) == 1
    ps = g.pod_sets[0]
    assert (ps.name, ps.count, ps.gpus, ps.min_count) == ("worker", 4, 8, 2)
    assert g.topology.slices[0].size == 2


def test_load_gangs_reads_a_directory_a_list_and_a_gangs_mapping(tmp_path):
    d = tmp_path / "gangs"
    d.mkdir()
    for i in (2, 1):
        (d / f"g{i}.yaml").write_text(yaml.safe_dump({"name": f"g{i}", "count": 1, "gpus": 1}))
    (d / "notes.txt").write_text("ignored")
    assert [g.name for g in load_gangs(d)] == ["g1", "g2"]
    (tmp_path / "list.json").write_text(json.dumps([{"name": "a", "count": 1}, {"name": "b", "count": 2}]))
    assert [g.name for g in load_gangs(tmp_path / "list.json")] == ["a", "b"]
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"gangs": [{"name": "a", "count": 1}]}))
    assert [g.name for g in load_gangs(tmp_path / "m.yaml")] == ["a"]
    (tmp_path / "one.yaml").write_text(yaml.safe_dump({"name": "solo", "count": 1}))
    assert [g.name for g in load_gangs(tmp_path / "one.yaml")] == ["solo"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump([{"name": "a", "count": 1}, {"name": "b", "count": 0}]))
    with pytest.raises(InvalidRequest) as e:
        load_gangs(tmp_path / "bad.yaml")
    assert e.value.field == "gangs[1].gang.count"


# ------------------------------------------------------------------------------ invalid clusters
def _node_case(**changes):
    d = copy.deepcopy(CLUSTER)
    for k, v in changes.items():
        if v is _DEL:
            del d["nodes"][0][k]
        else:
            d["nodes"][0][k] = v
    return d


_DEL = object()
N0 = "nodes[0] (n0)"
BAD_CLUSTERS = [
    ("the document is not a mapping", [1, 2], "cluster"),
    ("an unknown top-level field", {**CLUSTER, "extra": 1}, "cluster"),
    ("levels missing", {"nodes": []}, "levels"),
    ("an unsupported version", {**CLUSTER, "version": 2}, "version"),
    ("levels not a list of names", {"levels": "zone", "nodes": []}, "levels"),
    ("an empty level name", {"levels": [""], "nodes": []}, "levels"),
    ("a duplicate level", {"levels": ["a", "a"], "nodes": []}, "levels[1]"),
    ("a level named node", {"levels": ["node"], "nodes": []}, "levels[0]"),
    ("nodes not a list", {"levels": [], "nodes": {}}, "nodes"),
    ("a node that is not a mapping", {"levels": [], "nodes": [3]}, "nodes[0]"),
    ("an unknown node field", _node_case(gpu=8), "nodes[0]"),
    ("a node without a name", _node_case(name=_DEL), "nodes[0].name"),
    ("a node name that is not a string", _node_case(name=5), "nodes[0].name"),
    ("gpus missing", _node_case(gpus=_DEL), f"{N0}.gpus"),
    ("gpus not an integer", _node_case(gpus="8"), f"{N0}.gpus"),
    ("gpus fractional", _node_case(gpus=1.5), f"{N0}.gpus"),
    ("gpus negative", _node_case(gpus=-1), f"{N0}.gpus"),
    ("gpus a boolean", _node_case(gpus=True), f"{N0}.gpus"),
    ("gpus_used above gpus", _node_case(gpus_used=9), f"{N0}.gpus_used"),
    ("cpu not a quantity", _node_case(cpu="lots"), f"{N0}.cpu"),
    ("cpu_used above cpu", _node_case(cpu_used=113), f"{N0}.cpu_used"),
    ("memory negative", _node_case(memory="-1Gi"), f"{N0}.memory"),
    ("pods not an integer", _node_case(pods="many"), f"{N0}.pods"),
    ("pods_used above pods", _node_case(pods_used=51), f"{N0}.pods_used"),
    ("schedulable not a boolean", _node_case(schedulable="yes"), f"{N0}.schedulable"),
    ("gpu_type not a string", _node_case(gpu_type=3), f"{N0}.gpu_type"),
    ("topology not a mapping", _node_case(topology=["z0"]), f"{N0}.topology"),
    ("a topology key that is not a level", _node_case(topology={"row": "x"}), f"{N0}.topology"),
    ("a topology value that is a list", _node_case(topology={"zone": ["z0"]}), f"{N0}.topology"),
    ("labels not a mapping", _node_case(labels="a=b"), f"{N0}.labels"),
    ("allocations not a list", _node_case(allocations={"gang": "a"}), f"{N0}.allocations"),
    ("an allocation with an unknown field", _node_case(allocations=[{"gang": "a", "nodes": 1}]),
     f"{N0}.allocations[0]"),
    ("an allocation without a gang", _node_case(allocations=[{"gpus": 1}]), f"{N0}.allocations[0].gang"),
    ("an allocation with negative GPUs", _node_case(allocations=[{"gang": "a", "gpus": -1}]),
     f"{N0}.allocations[0].gpus"),
    ("allocations holding more GPUs than gpus_used", _node_case(allocations=[{"gang": "a", "gpus": 4}]),
     f"{N0}.allocations"),
    ("a duplicate node name", {"levels": [], "nodes": [{"name": "a", "gpus": 1}, {"name": "a", "gpus": 1}]},
     "nodes[1].name"),
]


@pytest.mark.parametrize("what, data, field", BAD_CLUSTERS, ids=[c[0] for c in BAD_CLUSTERS])
def test_invalid_cluster_is_rejected_naming_the_field(what, data, field):
    with pytest.raises(InvalidTopology) as e:
        cluster_from_dict(data)
    assert e.value.field == field
    assert str(e.value).startswith(field)


def test_unreadable_and_unparsable_files_are_invalid_files(tmp_path):
    with pytest.raises(InvalidFile):
        load_cluster(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("levels: [a\n")
    with pytest.raises(InvalidFile):
        load_cluster(tmp_path / "bad.yaml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InvalidFile):
        load_gang(tmp_path / "bad.json")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InvalidFile):
        load_cluster(tmp_path / "bad.parquet")
    with pytest.raises(InvalidFile):
        save_cluster(cluster_from_dict(CLUSTER), tmp_path / "c.csv")


def test_arrow_table_without_required_columns_is_rejected(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"name": ["a"]}), tmp_path / "c.parquet")
    with pytest.raises(InvalidTopology) as e:
        load_cluster(tmp_path / "c.parquet")
    assert "gpus" in e.value.field
    pq.write_table(pa.table({"name": ["a"], "gpus": pa.array([None], pa.int64())}), tmp_path / "d.parquet")
    with pytest.raises(InvalidTopology):
        load_cluster(tmp_path / "d.parquet")


def test_arrow_table_without_metadata_takes_levels_from_topology_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"name": ["a", "b"], "gpus": [8, 8], "topology.block": ["b0", None]}),
                   tmp_path / "c.parquet")
    c = load_cluster(tmp_path / "c.parquet")
    assert c.levels == ("block",)
    assert c.domain_name(int(c.node_domain[0, c.node_index["b"]])) == "node:b"
    assert c.spec(0).pods == 110 and c.spec(0).cpu == UNLIMITED


# ------------------------------------------------------------------------------ invalid gangs
def _gang_case(path, value):
    d = copy.deepcopy(GANG)
    target = d
    for k in path[:-1]:
        target = target[k]
    if value is _DEL:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


BAD_GANGS = [
    ("the document is not a mapping", "train", "gang"),
    ("an unknown field", {**GANG, "replicas": 2}, "gang"),
    ("no name", _gang_case(["name"], _DEL), "gang.name"),
    ("pod_sets empty", _gang_case(["pod_sets"], []), "pod_sets"),
    ("pod_sets not a list", _gang_case(["pod_sets"], {"a": 1}), "pod_sets"),
    ("count beside pod_sets", {**GANG, "count": 2}, "gang.count"),
    ("a pod set that is not a mapping", _gang_case(["pod_sets", 0], 5), "pod_sets[0]"),
    ("an unknown pod set field", _gang_case(["pod_sets", 0, "replicas"], 1), "pod_sets[0]"),
    ("count missing", _gang_case(["pod_sets", 0, "count"], _DEL), "pod_sets[0].count"),
    ("count zero", _gang_case(["pod_sets", 0, "count"], 0), "pod_sets[0].count"),
    ("count too large", _gang_case(["pod_sets", 0, "count"], MAX_GANG_PODS + 1), "pod_sets[0].count"),
    ("min_count above count", _gang_case(["pod_sets", 1, "min_count"], 20), "pod_sets[1].min_count"),
    ("min_count negative", _gang_case(["pod_sets", 1, "min_count"], -4), "pod_sets[1].min_count"),
    ("gpus negative", _gang_case(["pod_sets", 1, "gpus"], -8), "pod_sets[1].gpus"),
    ("cpu not a quantity", _gang_case(["pod_sets", 1, "cpu"], "fast"), "pod_sets[1].cpu"),
    ("memory not a quantity", _gang_case(["pod_sets", 1, "memory"], "1Gx"), "pod_sets[1].memory"),
    ("node_selector not a mapping", _gang_case(["pod_sets", 1, "node_selector"], ["H100"]),
     "pod_sets[1].node_selector"),
    ("an empty pod set name", _gang_case(["pod_sets", 0, "name"], ""), "pod_sets[0].name"),
    ("duplicate pod set names", _gang_case(["pod_sets", 0, "name"], "worker"), "pod_sets[1].name"),
    ("a top-level min_count with two pod sets", {**GANG, "min_count": 1}, "gang.min_count"),
    ("too many pods in total", {"name": "x", "pod_sets": [{"name": f"s{i}", "count": MAX_GANG_PODS}
                                                          for i in range(2)]}, "pod_sets"),
    ("priority not an integer", {**GANG, "priority": "high"}, "gang.priority"),
    ("topology not a mapping", _gang_case(["topology"], "rack"), "topology"),
    ("an unknown topology field", _gang_case(["topology", "spread"], "rack"), "topology"),
    ("required not a string", _gang_case(["topology", "required"], 3), "topology.required"),
    ("both slice and slices", _gang_case(["topology", "slice"], {"size": 4, "level": "rack"}), "topology.slices"),
    ("slices not a list", _gang_case(["topology", "slices"], {"size": 4, "level": "rack"}), "topology.slices"),
    ("a slice without a level", _gang_case(["topology", "slices"], [{"size": 4}]), "topology.slices[0].level"),
    ("a slice of size zero", _gang_case(["topology", "slices"], [{"size": 0, "level": "rack"}]),
     "topology.slices[0].size"),
    ("an unknown slice field", _gang_case(["topology", "slices"], [{"size": 4, "level": "rack", "x": 1}]),
     "topology.slices[0]"),
    ("count not a multiple of the slice size", _gang_case(["topology", "slices"], [{"size": 3, "level": "rack"}]),
     "pod_sets[0].count"),
    ("min_count not a multiple of the slice size", _gang_case(["pod_sets", 1, "min_count"], 10),
     "pod_sets[1].min_count"),
    ("an outer slice not a multiple of the inner", _gang_case(["topology", "slices"],
                                                               [{"size": 8, "level": "zone"}, {"size": 3,
                                                                                               "level": "rack"}]),
     "topology.slices[1].size"),
]


@pytest.mark.parametrize("what, data, field", BAD_GANGS, ids=[c[0] for c in BAD_GANGS])
def test_invalid_gang_is_rejected_naming_the_field(what, data, field):
    with pytest.raises(InvalidRequest) as e:
        gang_from_dict(data)
    assert e.value.field == field


def test_outer_slice_size_must_be_a_multiple_of_the_inner_one():
    g = {"name": "x", "count": 16, "topology": {"slices": [{"size": 8, "level": "a"}, {"size": 16, "level": "b"}]}}
    with pytest.raises(InvalidRequest) as e:
        gang_from_dict(g)
    assert e.value.field == "topology.slices[1].size"


BAD_AGAINST_CLUSTER = [
    ("an unknown required level", {"required": "row"}, "topology.required"),
    ("an unknown preferred level", {"preferred": "row"}, "topology.preferred"),
    ("an unknown slice level", {"slices": [{"size": 4, "level": "row"}]}, "topology.slices[0].level"),
    ("slice layers inner first", {"slices": [{"size": 4, "level": "rack"}, {"size": 2, "level": "zone"}]},
     "topology.slices[1].level"),
]


@pytest.mark.parametrize("what, topo, field", BAD_AGAINST_CLUSTER, ids=[c[0] for c in BAD_AGAINST_CLUSTER])
def test_gang_levels_are_checked_against_the_cluster(what, topo, field):
    g = gang_from_dict({"name": "x", "count": 4, "gpus": 1, "topology": topo})
    with pytest.raises(InvalidRequest) as e:
        prepare(cluster_from_dict(CLUSTER), g)
    assert e.value.field == field


def test_node_is_a_valid_slice_level_but_not_a_required_one():
    c = cluster_from_dict(CLUSTER)
    prepare(c, gang_from_dict({"name": "x", "count": 4, "topology": {"slice": {"size": 2, "level": "node"}}}))
    with pytest.raises(InvalidRequest):
        prepare(c, gang_from_dict({"name": "x", "count": 4, "topology": {"required": "node"}}))


def test_regression_a_null_gpu_type_is_no_gpu_type_not_a_crash(tmp_path):
    """Found by the format fuzzer: `gpu_type: null` reached Cluster as None and broke sorting."""
    from gangplace.engine.model.formats import cluster_from_dict
    c = cluster_from_dict({"levels": ["rack"], "nodes": [
        {"name": "n0", "topology": {"rack": "r0"}, "gpus": 8, "gpu_type": None},
        {"name": "n1", "topology": {"rack": "r0"}, "gpus": 8, "gpu_type": "H100"}]})
    assert c.spec(c.node_index["n0"]).gpu_type == ""
    assert c.gpu_type_names == ["", "H100"]


@pytest.mark.parametrize("name, text, where, problem", [
    ("gang.yaml", "name: x\npod_sets: [{name: w, count: 2, gpus: 4}\ntopology: {required: rack}\n",
     "line 3, column 1", "expected ',' or ']'"),
    ("gang.yaml", "name: x\n  pod_sets: 3\n", "line 2, column 11", "mapping values are not allowed here"),
    ("gang.json", '{"name": "x",\n "pod_sets": [}\n', "line 2, column 15", "Expecting value"),
], ids=["an unclosed YAML flow list is located where the parser stopped",
        "a YAML indentation error names its line and column",
        "a JSON syntax error names its line and column"])
def test_syntax_errors_name_the_file_line_and_column(tmp_path, name, text, where, problem):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidFile) as e:
        load_gang(path)
    msg = str(e.value)
    assert f"cannot parse {path} {where}: " in msg and problem in msg, msg


def test_an_allocations_start_loads_round_trips_and_ages_its_node(tmp_path):
    from gangplace.engine.model.formats import node_from_dict
    d = {"name": "n0", "gpus": 8, "allocations": [{"gang": "a", "gpus": 2, "started": 100.5},
                                                   {"gang": "b", "gpus": 1, "started": 50}]}
    spec = node_from_dict(d, 0, ())
    assert [a.started for a in spec.allocations] == [100.5, 50.0]
    c = Cluster((), [spec, node_from_dict({"name": "n1", "gpus": 8, "gpus_used": 1}, 1, ())])
    assert c.oldest_start.tolist() == [50.0, float("-inf")]  # n1: used, no start known
    c.save(tmp_path / "c.yaml")
    assert Cluster.load(tmp_path / "c.yaml").oldest_start.tolist() == [50.0, float("-inf")]
    for bad in ("soon", True, float("nan"), float("inf")):
        with pytest.raises(InvalidTopology, match="started"):
            node_from_dict({"name": "n0", "gpus": 8, "allocations": [{"gang": "a", "gpus": 1, "started": bad}]}, 0, ())

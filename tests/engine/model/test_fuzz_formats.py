"""Hostile input to the file loaders (hypothesis): cluster and gang documents, files of any bytes.

A loader either returns a valid object or raises a ``GangplaceError`` subclass naming the field
(InvalidTopology / InvalidRequest / InvalidFile); never TypeError, KeyError, RecursionError,
OverflowError or a numpy error. What it accepts satisfies the layout contract (engine/model/cluster.py):
domains are label *paths* (a rack value reused under two blocks is two racks), every domain is
a contiguous node range, domains nest, and node names are unique.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gangplace.engine.model.errors import GangplaceError
from gangplace.engine.model.formats import cluster_from_dict, gang_from_dict, load_cluster, load_gang

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(), st.text(max_size=12),
                    st.sampled_from(["8", "-1", "1e400", "2Ti", "500m", "0x10", "NaN", "inf", "", "💥", "1.5",
                                     "99999999999999999999999", "8Gi ", "1E", "  "]))
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                      st.dictionaries(st.text(max_size=8), kids, max_size=3)),
                      max_leaves=12)

VALID_CLUSTER = {"levels": ["block", "rack"], "nodes": [
    {"name": f"n{i}", "topology": {"block": f"b{i // 4}", "rack": f"r{i // 2}"}, "gpus": 8, "gpus_used": i % 3,
     "gpu_type": "H100", "cpu": 112, "cpu_used": "16", "memory": "2Ti", "memory_used": "256Gi", "pods": 110,
     "schedulable": i != 5, "labels": {"nvidia.com/gpu.product": "H100"},
     "allocations": [{"gang": "bg", "priority": 1, "gpus": i % 3}]} for i in range(8)]}
VALID_GANG = {"name": "train-7", "pod_sets": [
    {"name": "leader", "count": 1, "gpus": 0, "cpu": 8},
    {"name": "worker", "count": 8, "gpus": 8, "cpu": 24, "memory": "200Gi", "min_count": 4,
     "node_selector": {"gpu_type": "H100"}}],
    "topology": {"required": "block", "preferred": "rack", "slice": {"size": 4, "level": "rack"}}, "priority": 2}


def check_cluster(c) -> None:
    """The layout contract of an accepted cluster."""
    assert len(set(c.node_names)) == c.n_nodes, "node names are unique"
    for lv in range(len(c.levels)):
        for i in range(c.n_nodes):
            d = c.node_domain[lv, i]
            assert c.domain_start[d] <= i < c.domain_end[d], "each domain is a contiguous node range"
        if lv:
            assert np.array_equal(c.domain_parent[c.node_domain[lv]], c.node_domain[lv - 1]), "domains nest"
    assert (c.cap_gpus >= 0).all() and (c.cap_pods >= 0).all()
    # equal paths <=> equal domains
    for lv in range(len(c.levels)):
        paths = {}
        for i in range(c.n_nodes):
            key = tuple(c.nodes[i].topology.get(x, f"\0node:{c.node_names[i]}") for x in c.levels[:lv + 1])
            paths.setdefault(key, set()).add(int(c.node_domain[lv, i]))
        assert all(len(v) == 1 for v in paths.values())
        assert len({min(v) for v in paths.values()}) == len(paths)


@st.composite
def mutated(draw, base):
    """A valid document with 1-3 values replaced, keys removed or junk keys added, anywhere."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path, node = [], doc
        while isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            path.append((node, key))
            node = node[key]
        if not path:
            continue
        parent, key = path[-1]
        op = draw(st.integers(0, 3))
        if op == 0 and isinstance(parent, dict):
            del parent[key]
        elif op == 1 and isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(values)
        elif op == 2 and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))  # duplicates: nodes with the same name, ...
        else:
            parent[key] = draw(values)
    return doc


def _load(fn, doc, *, record: bool = True):
    try:
        out = fn(doc)
    except GangplaceError as e:
        assert str(e) and e.field is None or isinstance(e.field, str)
        if record:
            event(f"refused: {type(e).__name__}")
        return None
    if record:
        event("accepted")
    return out


@SETTINGS
@given(doc=st.one_of(values, mutated(VALID_CLUSTER)))
def test_cluster_documents_load_or_are_refused_with_a_named_field(doc):
    c = _load(cluster_from_dict, doc)
    if c is not None:
        check_cluster(c)


@SETTINGS
@given(doc=st.one_of(values, mutated(VALID_GANG)))
def test_gang_documents_load_or_are_refused_with_a_named_field(doc):
    g = _load(gang_from_dict, doc)
    if g is not None:
        assert g.name and g.pod_sets
        assert all(ps.count >= 0 and ps.gpus >= 0 for ps in g.pod_sets)


@SETTINGS
@given(data=st.data())
def test_topology_labels_that_reuse_values_across_parents_are_distinct_domains(data):
    # "cycles or mismatches": rack values reused in several blocks, block values equal to rack values,
    # nodes missing a level in the middle
    n = data.draw(st.integers(1, 12))
    values_ = st.sampled_from(["a", "b", "c"])
    nodes = []
    for i in range(n):
        topo = {"zone": data.draw(values_), "block": data.draw(values_), "rack": data.draw(values_)}
        for lv in data.draw(st.lists(st.sampled_from(["zone", "block", "rack"]), max_size=2)):
            topo.pop(lv, None)
        nodes.append({"name": f"n{i}", "topology": topo, "gpus": data.draw(st.integers(0, 8))})
    c = cluster_from_dict({"levels": ["zone", "block", "rack"], "nodes": nodes})
    check_cluster(c)


def test_duplicate_node_names_are_refused():
    doc = copy.deepcopy(VALID_CLUSTER)
    doc["nodes"].append(copy.deepcopy(doc["nodes"][0]))
    with pytest.raises(GangplaceError):
        cluster_from_dict(doc)


@pytest.mark.parametrize("count", [10**6, 2**31 - 1, 2**31, 10**30, -1])
def test_gangs_of_a_million_pods_or_overflowing_counts_load_or_are_refused_fast(count):
    doc = {"name": "huge", "pod_sets": [{"name": "w", "count": count, "gpus": 8}]}
    g = _load(gang_from_dict, doc, record=False)
    if count > 65_536 or count < 1:
        assert g is None, "gang sizes above MAX_GANG_SIZE are refused"
    if g is not None:
        from gangplace.engine import place
        from gangplace.engine.model.synthetic import generate
        p = place(generate("dgx-h100", gpus=64, fill=0.0), g, "auto")
        assert not p.placed and p.reason


# ---------------------------------------------------------------------- files
DEEP = {"deep list (json)": ("c.json", "[" * 100_000 + "]" * 100_000),
        "deep mapping (json)": ("c.json", '{"a":' * 100_000 + "1" + "}" * 100_000),
        "deep list (yaml)": ("c.yaml", "[" * 100_000 + "]" * 100_000),
        "deep mapping (yaml)": ("c.yaml", "a:\n" + "".join(" " * k + "a:\n" for k in range(1, 3000))),
        "yaml alias bomb": ("c.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + k)}: &{chr(98 + k)} [*{chr(97 + k)}, *{chr(97 + k)}, *{chr(97 + k)}, *{chr(97 + k)}, "
            f"*{chr(97 + k)}, *{chr(97 + k)}, *{chr(97 + k)}, *{chr(97 + k)}, *{chr(97 + k)}]\n"
            for k in range(8))),
        "python tag (yaml)": ("c.yaml", "!!python/object/apply:os.system ['echo pwned']\n"),
        "binary": ("c.yaml", "\x00\xff\xfe garbage"),
        "parquet of garbage": ("c.parquet", "PAR1 not really"),
        "arrow of garbage": ("c.arrow", "ARROW1 not really"),
        "empty": ("c.yaml", ""),
        "empty json": ("c.json", "")}


@pytest.mark.parametrize("name", list(DEEP))
def test_hostile_files_are_invalid_files_not_crashes(tmp_path, name):
    fname, text = DEEP[name]
    p = tmp_path / fname
    p.write_bytes(text.encode("utf-8", "surrogatepass"))
    with pytest.raises(GangplaceError):
        load_cluster(p)
    g = p.with_name("g" + p.suffix)
    g.write_bytes(p.read_bytes())
    if g.suffix in (".yaml", ".json"):
        with pytest.raises(GangplaceError):
            load_gang(g)


@SETTINGS
@given(raw=st.binary(max_size=400), suffix=st.sampled_from([".yaml", ".json", ".parquet", ".arrow"]))
def test_any_bytes_in_a_cluster_file_load_or_are_refused(tmp_path_factory, raw, suffix):
    p = tmp_path_factory.mktemp("f") / f"c{suffix}"
    p.write_bytes(raw)
    c = _load(load_cluster, p)
    if c is not None:
        check_cluster(c)


@SETTINGS
@given(doc=mutated(VALID_CLUSTER), suffix=st.sampled_from([".yaml", ".json"]))
def test_mutated_cluster_files_load_or_are_refused(tmp_path_factory, doc, suffix):
    p = tmp_path_factory.mktemp("f") / f"c{suffix}"
    try:
        p.write_text(json.dumps(doc))  # JSON is YAML too
    except (ValueError, UnicodeEncodeError):
        return
    c = _load(load_cluster, p)
    if c is not None:
        check_cluster(c)

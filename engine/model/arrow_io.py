"""Clusters as Arrow tables (Parquet or Feather): one row per node, docs/formats.md's fields as columns.

Columns: name, gpus, gpus_used, gpu_type, cpu, cpu_used (millicores, int64), memory, memory_used
(bytes, int64), pods, pods_used, schedulable, labels (map<string,string>), allocations
(list<struct{gang, priority, gpus, cpu, memory}>), and one ``topology.<level>`` string column per
level, top first (null = the node is its own domain at that level). Quantities are integers in
columns (millicores and bytes) so a 100k-node file reads zero-copy; ``-1`` means "unlimited".
The schema metadata carries ``gangplace.levels`` and ``gangplace.format_version``.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import InvalidFile, InvalidTopology
from .types import UNLIMITED, Allocation, NodeSpec

_INT_COLUMNS = ("gpus", "gpus_used", "cpu", "cpu_used", "memory", "memory_used", "pods", "pods_used")


def cluster_table(cluster):
    import pyarrow as pa
    nodes = cluster.nodes
    cols: dict[str, list] = {"name": [n.name for n in nodes]}
    for c in _INT_COLUMNS:
        cols[c] = [(-1 if getattr(n, c) == UNLIMITED else getattr(n, c)) for n in nodes]
    cols["gpu_type"] = [n.gpu_type for n in nodes]
    cols["schedulable"] = [n.schedulable for n in nodes]
    for lv in cluster.levels:
        cols[f"topology.{lv}"] = [n.topology.get(lv) for n in nodes]
    cols["labels"] = [list(n.labels.items()) for n in nodes]
    cols["allocations"] = [[{"gang": a.gang, "priority": a.priority, "gpus": a.gpus, "cpu": a.cpu,
                             "memory": a.memory} for a in n.allocations] for n in nodes]
    alloc_type = pa.list_(pa.struct([("gang", pa.string()), ("priority", pa.int64()), ("gpus", pa.int64()),
                                     ("cpu", pa.int64()), ("memory", pa.int64())]))
    types = {c: pa.int64() for c in _INT_COLUMNS} | {"name": pa.string(), "gpu_type": pa.string(),
                                                     "schedulable": pa.bool_(),
                                                     "labels": pa.map_(pa.string(), pa.string()),
                                                     "allocations": alloc_type}
    arrays = {k: pa.array(v, type=types.get(k, pa.string())) for k, v in cols.items()}
    meta = {"gangplace.levels": json.dumps(list(cluster.levels)), "gangplace.format_version": "1"}
    return pa.table(arrays).replace_schema_metadata(meta)


def write_cluster_table(cluster, path: Path) -> None:
    table = cluster_table(cluster)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq
        pq.write_table(table, tmp, compression="zstd")
    else:
        import pyarrow.feather as feather
        feather.write_feather(table, tmp, compression="lz4")
    tmp.replace(path)


def read_cluster_table(path: Path):
    from .cluster import Cluster
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq
            table = pq.read_table(path)
        else:
            import pyarrow.feather as feather
            table = feather.read_table(path)
    except Exception as e:
        raise InvalidFile(f"cannot read {path}: {e}", field=str(path)) from None
    meta = table.schema.metadata or {}
    if b"gangplace.levels" in meta:
        levels = tuple(json.loads(meta[b"gangplace.levels"]))
    else:
        levels = tuple(c[len("topology."):] for c in table.column_names if c.startswith("topology."))
    for required in ("name", "gpus"):
        if required not in table.column_names:
            raise InvalidTopology(f"column {required!r} is missing", field=f"{path.name}:{required}")
    data = table.to_pydict()
    n = table.num_rows
    nodes = []
    for i in range(n):
        name = data["name"][i]
        where = f"nodes[{i}] ({name})"

        def num(col, default):
            v = data.get(col, [None] * n)[i]
            if v is None:
                return default
            if not isinstance(v, int):
                raise InvalidTopology(f"must be an integer, got {v!r}", field=f"{where}.{col}")
            return UNLIMITED if v == -1 else v
        if not isinstance(name, str) or not name:
            raise InvalidTopology("node name must be a non-empty string", field=f"nodes[{i}].name")
        allocs = tuple(Allocation(**a) for a in (data.get("allocations", [None] * n)[i] or []))
        nodes.append(NodeSpec(
            name=name,
            topology={lv: data[f"topology.{lv}"][i] for lv in levels
                      if f"topology.{lv}" in data and data[f"topology.{lv}"][i] is not None},
            gpus=num("gpus", None) if data["gpus"][i] is not None else _missing(where, "gpus"),
            gpus_used=num("gpus_used", 0), gpu_type=data.get("gpu_type", [""] * n)[i] or "",
            cpu=num("cpu", UNLIMITED), cpu_used=num("cpu_used", 0),
            memory=num("memory", UNLIMITED), memory_used=num("memory_used", 0),
            pods=num("pods", 110), pods_used=num("pods_used", 0),
            schedulable=bool(data.get("schedulable", [True] * n)[i] if data.get("schedulable", [True] * n)[i]
                             is not None else True),
            labels=dict(data.get("labels", [None] * n)[i] or []), allocations=allocs))
    return Cluster(levels, nodes)


def _missing(where: str, col: str):
    raise InvalidTopology("is required", field=f"{where}.{col}")

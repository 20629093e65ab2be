"""The bind ledger: which pod runs on which node with how much, indexed by node and by gang.

Not thread-safe on its own: ``ClusterState`` calls it under its lock. The ledger only records;
``apply`` moves a record's amounts in or out of a ``Cluster``'s free arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from ..model.cluster import Cluster
from ..model.types import Allocation


@dataclass(frozen=True, slots=True)
class BindRecord:
    """One pod's allocation on one node."""

    pod_uid: str
    node: str
    gpus: int
    cpu: int = 0  # millicores
    memory: int = 0  # bytes
    gang: str | None = None
    namespace: str = ""
    name: str = ""
    priority: int = 0
    # wall-clock seconds when the pod started (objective "age": the bind's time, or Kubernetes'
    # status.startTime); None: unknown (a line of an older journal). Not part of equality: a repeated
    # bind is the same record.
    started: float | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, d: dict) -> "BindRecord":
        started = d.get("started")
        return cls(str(d["uid"]), str(d["node"]), int(d["gpus"]), int(d.get("cpu") or 0), int(d.get("memory") or 0),
                   d.get("gang"), d.get("namespace") or "", d.get("name") or "", int(d.get("priority") or 0),
                   None if started is None else float(started))

    def to_json(self) -> dict:
        d = {"op": "bind", "uid": self.pod_uid, "node": self.node, "gpus": self.gpus, "cpu": self.cpu,
             "memory": self.memory, "gang": self.gang, "namespace": self.namespace, "name": self.name,
             "priority": self.priority}
        if self.started is not None:
            d["started"] = self.started
        return d


def apply(cluster: Cluster, rec: BindRecord, sign: int) -> None:
    """Take (``sign`` +1) or give back (-1) a record's amounts on ``cluster``'s free arrays and
    its per-node allocation list; a record on a node the cluster lacks waits for its pod's
    deletion and changes nothing."""
    i = cluster.node_index.get(rec.node)
    if i is None:
        return
    cluster.take_free(i, sign * rec.gpus, sign * rec.cpu, sign * rec.memory, sign)
    alloc = Allocation(gang=rec.gang or f"pod:{rec.pod_uid}", priority=rec.priority, gpus=rec.gpus,
                       cpu=rec.cpu, memory=rec.memory, started=rec.started)
    if sign > 0:
        cluster.allocations[i] = cluster.allocations[i] + (alloc,)
    else:
        items = list(cluster.allocations[i])
        if alloc in items:
            items.remove(alloc)
        cluster.allocations[i] = tuple(items)
    cluster.refresh_oldest(i)


class Ledger:
    """Bound pods by UID, with indices by node and by gang kept in step."""

    def __init__(self) -> None:
        self._by_uid: dict[str, BindRecord] = {}
        self._by_node: dict[str, dict[str, BindRecord]] = {}
        self._by_gang: dict[str, dict[str, BindRecord]] = {}

    def __len__(self) -> int:
        return len(self._by_uid)

    def __contains__(self, pod_uid: str) -> bool:
        return pod_uid in self._by_uid

    def __iter__(self) -> Iterator[BindRecord]:
        return iter(self._by_uid.values())

    def get(self, pod_uid: str) -> BindRecord | None:
        return self._by_uid.get(pod_uid)

    def by_uid(self) -> dict[str, BindRecord]:
        return dict(self._by_uid)

    def on_node(self, node: str) -> list[BindRecord]:
        return list(self._by_node.get(node, {}).values())

    def of_gang(self, gang: str) -> list[BindRecord]:
        return list(self._by_gang.get(gang, {}).values())

    def add(self, rec: BindRecord) -> None:
        """Record ``rec`` (the caller removed an older record of the same pod first)."""
        self._by_uid[rec.pod_uid] = rec
        self._by_node.setdefault(rec.node, {})[rec.pod_uid] = rec
        if rec.gang:
            self._by_gang.setdefault(rec.gang, {})[rec.pod_uid] = rec

    def remove(self, pod_uid: str) -> BindRecord:
        rec = self._by_uid.pop(pod_uid)
        for index, k in ((self._by_node, rec.node), (self._by_gang, rec.gang)):
            entries = index.get(k) if k else None
            if entries is not None:
                entries.pop(rec.pod_uid, None)
                if not entries:
                    del index[k]
        return rec

    def index_problems(self) -> list[str]:
        """Entries of the node and gang indices that disagree with the records (the audit)."""
        problems = []
        for what, index in (("node", self._by_node), ("gang", self._by_gang)):
            for name, pods in index.items():
                for uid, r in pods.items():
                    if self._by_uid.get(uid) is not r:
                        problems.append(f"{what} index for {name} lists {uid} which is not allocated there")
        indexed = sum(len(p) for p in self._by_gang.values())
        if indexed != sum(1 for r in self._by_uid.values() if r.gang):
            problems.append("the gang index misses allocations")
        return problems

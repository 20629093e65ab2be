"""The consistency audit of the live state: every unit of capacity accounted for exactly once.

Per node and resource (GPUs, CPU, memory, pod slots)::

    capacity == base_used + allocated + reserved + free_in_snapshot

and the reservations' member claims and the ledger's indices agree with their records.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..model.cluster import Cluster
from ..model.types import NodeSpec
from .ledger import Ledger
from .reservations import Reservation


def audit(live: Cluster, snap: Cluster, specs: Mapping[str, NodeSpec], ledger: Ledger,
          reservations: Mapping[str, Reservation], now: float) -> list[str]:
    """Problems found (empty when consistent). ``live``: allocations subtracted; ``snap``:
    reservations too; ``specs``: the base specs by node name."""
    problems = []
    alloc = np.zeros((4, live.n_nodes), np.int64)
    for r in ledger:
        i = live.node_index.get(r.node)
        if i is not None:
            alloc[:, i] += (r.gpus, r.cpu, r.memory, 1)
    resv = np.zeros((4, live.n_nodes), np.int64)
    for res in reservations.values():
        if res.expires_at <= now:
            continue
        for s in res.slots:
            i = live.node_index.get(s.node)
            if i is not None and not s.bound:
                resv[:, i] += (s.gpus, s.cpu, s.memory, 1)
        for uid, pos in res.members.items():
            if res.slots[pos].pod_uid != uid:
                problems.append(f"reservation {res.key!r}: member {uid} and slot {pos} disagree")
    for i, name in enumerate(live.node_names):
        spec = specs[name]
        for k, (what, cap, base, free) in enumerate((
                ("gpus", live.cap_gpus, spec.gpus_used, snap.free_gpus),
                ("cpu", live.cap_cpu, spec.cpu_used, snap.free_cpu),
                ("memory", live.cap_mem, spec.memory_used, snap.free_mem),
                ("pods", live.cap_pods, spec.pods_used, snap.free_pods))):
            total = base + int(alloc[k, i]) + int(resv[k, i]) + int(free[i])
            if total != int(cap[i]):
                problems.append(f"node {name}: {what} capacity {int(cap[i])} != base {base} + allocated "
                                f"{int(alloc[k, i])} + reserved {int(resv[k, i])} + free {int(free[i])}")
    return problems + ledger.index_problems()

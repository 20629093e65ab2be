"""The data model: plain, frozen, typed dataclasses. No numpy in these signatures, no I/O.

Units: GPUs and pod slots are counts, CPU is millicores, memory is bytes (all ints), so that
every comparison the placers make is exact. ``UNLIMITED`` stands for "not constrained".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .quantity import MAX_QUANTITY

UNLIMITED = MAX_QUANTITY
DEFAULT_POD_SLOTS = 110  # the kubelet's default maxPods
NODE_LEVEL = "node"  # the key used for the node count in domains_used / stranded_gpus


@dataclass(frozen=True, slots=True)
class Allocation:
    """A running gang's share of one node (used by preemption planning and the state layer)."""

    gang: str
    priority: int = 0
    gpus: int = 0
    cpu: int = 0  # millicores
    memory: int = 0  # bytes
    # when it started (seconds, any epoch the cluster's allocations share); None: unknown, counted as
    # running since before every known start (objective "age", docs/placement.md)
    started: float | None = None


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node as described in a cluster file. ``topology`` maps level name -> label value."""

    name: str
    topology: Mapping[str, str]
    gpus: int
    gpus_used: int = 0
    gpu_type: str = ""
    cpu: int = UNLIMITED  # millicores
    cpu_used: int = 0
    memory: int = UNLIMITED  # bytes
    memory_used: int = 0
    pods: int = DEFAULT_POD_SLOTS
    pods_used: int = 0
    schedulable: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)
    allocations: tuple[Allocation, ...] = ()


@dataclass(frozen=True, slots=True)
class Topology:
    """Ordered topology level names, top first (e.g. ``("zone", "block", "rack")``)."""

    levels: tuple[str, ...]

    def index(self, level: str) -> int:
        return self.levels.index(level)


@dataclass(frozen=True, slots=True)
class SliceLayer:
    """Every ``size`` consecutive pods of a pod set share one domain of ``level``."""

    size: int
    level: str


def effective_slice_size(count: int, size: int) -> int | None:
    """The slice size a pod set of ``count`` pods really uses for a layer of ``size``.

    "Every ``size`` consecutive pods share one domain": a count that is a multiple of ``size``
    makes whole slices; a pod set smaller than one slice (a 1-pod leader next to 16 workers) is a
    single partial slice, all of it in one domain (``count``); any other count would leave a
    partial slice after whole ones and is refused (None).
    """
    if count % size == 0:
        return size
    return count if count < size else None


@dataclass(frozen=True, slots=True)
class TopologyConstraint:
    required: str | None = None  # all pods in one domain of this level, else infeasible
    preferred: str | None = None  # locality counted top-down only down to this level
    slices: tuple[SliceLayer, ...] = ()  # outer first


@dataclass(frozen=True, slots=True)
class PodSet:
    name: str
    count: int
    gpus: int = 0
    cpu: int = 0  # millicores
    memory: int = 0  # bytes
    min_count: int | None = None  # elastic: place at least this many, as many as fit
    node_selector: Mapping[str, str] = field(default_factory=dict)

    @property
    def required_count(self) -> int:
        return self.count if self.min_count is None else self.min_count


@dataclass(frozen=True, slots=True)
class GangRequest:
    name: str
    pod_sets: tuple[PodSet, ...]
    topology: TopologyConstraint = TopologyConstraint()
    priority: int = 0

    @property
    def size(self) -> int:
        return sum(ps.count for ps in self.pod_sets)

    @property
    def total_gpus(self) -> int:
        return sum(ps.count * ps.gpus for ps in self.pod_sets)

    @staticmethod
    def load(path) -> "GangRequest":
        from .formats import load_gang
        return load_gang(path)

    def to_dict(self) -> dict:
        from .formats import gang_to_dict
        return gang_to_dict(self)


@dataclass(frozen=True, slots=True)
class PodAssignment:
    pod_set: str
    index: int
    node: str


@dataclass(frozen=True, slots=True)
class Placement:
    """The answer for one gang. ``placed=False`` is a normal answer with a reason and explanation.

    ``domains_used`` and ``stranded_gpus`` are keyed by level name plus ``"node"``;
    ``objective`` is the lexicographic vector the placers minimise (see engine/place/objective.py).
    """

    gang: str
    placed: bool
    pods: tuple[PodAssignment, ...] = ()
    domains_used: Mapping[str, int] = field(default_factory=dict)
    stranded_gpus: Mapping[str, int] = field(default_factory=dict)
    placer: str = ""
    optimal: bool = False
    gap: float | None = None
    elapsed_ms: float = 0.0
    reason: str = ""
    explanation: Mapping | None = None
    objective: tuple = ()
    solver_import_ms: float = 0.0  # the one-time OR-Tools import this call paid (not in elapsed_ms)

    @property
    def nodes(self) -> list[str]:
        return [p.node for p in self.pods]

    def to_dict(self) -> dict:
        """The JSON shape of ``gangplace place --output json`` (docs/placement.md)."""
        return {
            "gang": self.gang,
            "placed": self.placed,
            "pods": [{"pod_set": p.pod_set, "index": p.index, "node": p.node} for p in self.pods],
            "domains_used": dict(self.domains_used),
            "stranded_gpus": dict(self.stranded_gpus),
            "placer": self.placer,
            "optimal": self.optimal,
            "gap": self.gap,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "solver_import_ms": round(self.solver_import_ms, 3),
            "reason": self.reason,
            "explanation": self.explanation,
        }

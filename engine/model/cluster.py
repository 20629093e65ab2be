"""The cluster, flattened once into per-node and per-domain numpy arrays.

Layout (the contract every kernel relies on):
- Nodes are sorted in *topology order*: by their domain path, top level first, then by name
  (natural order, so ``r2`` sorts before ``r10``). Hence every domain of every level owns a
  contiguous node range ``[domain_start[d], domain_end[d])`` and consecutive ranks of a gang sit
  in the lowest shared domains.
- Domains of all levels share one id space: level ``l`` owns ids
  ``level_offset[l] .. level_offset[l+1]-1``; ``domain_parent`` links each to its enclosing domain
  one level up (-1 at the top level); ``node_domain[l, i]`` is node ``i``'s domain at level ``l``.
- Capacities (``cap_*``) are static; ``free_*`` arrays are what the state layer updates. ``copy()``
  shares the static arrays and copies the free ones (a snapshot for one placement).
- Write tracking (opt in, ``track_writes()``): the free arrays and ``schedulable`` become read-only
  views, every write goes through ``take_free`` / ``set_schedulable`` / ``update_node``, and each
  write bumps the version of the node's lowest-level domain (``WriteTracker``). The heuristic
  keeps per-request-shape capacity sums on such a cluster and recomputes only the domains whose
  version changed (engine/place/heuristic.py ``fit_cache``); a writer that writes the arrays
  directly fails loudly (numpy: "assignment destination is read-only") instead of leaving a sum
  stale. ``copy()`` gives an untracked cluster with private writable arrays.
"""
from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Iterable, Mapping, Sequence

import numpy as np

from .errors import InvalidTopology
from .types import NODE_LEVEL, UNLIMITED, Allocation, NodeSpec, Topology

GPU_TYPE_KEY = "gpu_type"  # node selector key matched against NodeSpec.gpu_type
_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str):
    """'r10' after 'r2': digit runs compare as numbers."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _DIGITS.split(text) if p)


def own_domain_value(node_name: str) -> str:
    """The label value standing for "this node is its own domain" (the level label is missing)."""
    return f"node:{node_name}"


TRACKED_ARRAYS = ("free_gpus", "free_cpu", "free_mem", "free_pods", "schedulable")


class WriteTracker:
    """Versions of a tracked cluster's writes (see the module docstring).

    ``views``: the read-only arrays the cluster exposes (in TRACKED_ARRAYS order), ``bases``: the
    writable arrays under them (only the write methods use these). ``version[k]``: the generation
    of the last write to a node of lowest-level domain ``k`` (domain id ``level_offset[L-1] + k``;
    a cluster without levels has one). ``generation`` counts writes; ``sched_generation`` counts
    writes to ``schedulable`` (masks built from it are stale after one). ``caches``: storage for
    the placers' summaries of this cluster (engine/place/heuristic.py), dropped with the tracker."""

    __slots__ = ("views", "bases", "lowest", "version", "generation", "sched_generation", "caches")

    def __init__(self, cluster: "Cluster"):
        self.bases = tuple(np.ascontiguousarray(getattr(cluster, name)) for name in TRACKED_ARRAYS)
        views = []
        for base in self.bases:
            v = base.view()
            v.flags.writeable = False
            views.append(v)
        self.views = tuple(views)
        L = len(cluster.levels)
        if L and cluster.n_nodes:
            self.lowest = np.ascontiguousarray(cluster.node_domain[L - 1] - cluster.level_offset[L - 1])
            n_lowest = int(cluster.level_offset[L] - cluster.level_offset[L - 1])
        else:
            self.lowest = np.zeros(cluster.n_nodes, np.int32)
            n_lowest = 1
        self.version = np.zeros(n_lowest, np.int64)
        self.generation = 0
        self.sched_generation = 0
        self.caches: dict = {}

    def owns(self, cluster: "Cluster") -> bool:
        """Does ``cluster`` still expose exactly the tracked arrays (none replaced)?"""
        v = self.views
        return (cluster.free_gpus is v[0] and cluster.free_cpu is v[1] and cluster.free_mem is v[2]
                and cluster.free_pods is v[3] and cluster.schedulable is v[4])

    def touch(self, i: int) -> None:
        """Node ``i`` was written: a new generation for its lowest-level domain."""
        self.generation += 1
        self.version[self.lowest[i]] = self.generation


class Cluster:
    """A cluster: topology levels, node specs and their flat arrays. See the module docstring."""

    _tracker: WriteTracker | None = None  # set by track_writes(); copies are untracked

    def __init__(self, levels: Sequence[str], nodes: Iterable[NodeSpec], *, in_topology_order: bool = False):
        """``in_topology_order``: the caller guarantees the nodes come in topology order already
        (engine/model/synthetic.py builds them so), which skips sorting them by natural keys."""
        self.topology = Topology(tuple(levels))
        self.levels: tuple[str, ...] = self.topology.levels
        _check_levels(self.levels)
        specs = list(nodes)
        _check_nodes(self.levels, specs)
        paths = _paths(self.levels, specs)
        keys: dict[str, tuple] = {}  # domain values repeat across nodes: one natural key per distinct value

        def value_key(v: str) -> tuple:
            k = keys.get(v)
            if k is None:
                k = keys[v] = natural_key(v)
            return k
        if in_topology_order:
            self._specs: list[NodeSpec] = specs
        else:
            order = sorted(range(len(specs)),
                           key=lambda i: (tuple(value_key(v) for v in paths[i]), natural_key(specs[i].name)))
            self._specs = [specs[i] for i in order]
            paths = [paths[i] for i in order]
        self.node_names: list[str] = [n.name for n in self._specs]
        self.node_index: dict[str, int] = {name: i for i, name in enumerate(self.node_names)}
        self._build_node_arrays()
        self._build_domains(paths)
        self._mask_cache: dict[tuple, np.ndarray] = {}

    # ------------------------------------------------------------------ construction
    def _build_node_arrays(self) -> None:
        s = self._specs
        n = len(s)
        self.n_nodes = n
        self.cap_gpus = np.fromiter((x.gpus for x in s), np.int32, n)
        self.cap_cpu = np.fromiter((x.cpu for x in s), np.int64, n)
        self.cap_mem = np.fromiter((x.memory for x in s), np.int64, n)
        self.cap_pods = np.fromiter((x.pods for x in s), np.int32, n)
        self.free_gpus = self.cap_gpus - np.fromiter((x.gpus_used for x in s), np.int32, n)
        self.free_cpu = self.cap_cpu - np.fromiter((x.cpu_used for x in s), np.int64, n)
        self.free_mem = self.cap_mem - np.fromiter((x.memory_used for x in s), np.int64, n)
        self.free_pods = self.cap_pods - np.fromiter((x.pods_used for x in s), np.int32, n)
        self.schedulable = np.fromiter((x.schedulable for x in s), np.uint8, n)
        self.gpu_type_names: list[str] = sorted({x.gpu_type for x in s} | {""})
        code = {name: i for i, name in enumerate(self.gpu_type_names)}
        self.gpu_type = np.fromiter((code[x.gpu_type] for x in s), np.int32, n)
        self.allocations: list[tuple[Allocation, ...]] = [x.allocations for x in s]
        # per node: when its oldest running GPU pod started (objective "age"); see refresh_oldest
        self.oldest_start = np.array([oldest_start(x.allocations, x.gpus_used) for x in s], np.float64).reshape(n)

    def _build_domains(self, paths: list[tuple[str, ...]]) -> None:
        n_levels, n = len(self.levels), self.n_nodes
        node_domain = np.zeros((n_levels, n), np.int32)
        starts, ends, parents, dlevels, dpaths = [], [], [], [], []
        offsets = [0]
        for lv in range(n_levels):
            prev_key = None
            for i in range(n):
                key = paths[i][: lv + 1]
                if key != prev_key:
                    if dpaths and dlevels[-1] == lv:
                        ends[-1] = i
                    starts.append(i)
                    ends.append(n)
                    parents.append(int(node_domain[lv - 1, i]) if lv else -1)
                    dlevels.append(lv)
                    dpaths.append(key)
                    prev_key = key
                node_domain[lv, i] = len(dpaths) - 1
            if dpaths and dlevels[-1] == lv:
                ends[-1] = n
            offsets.append(len(dpaths))
        self.node_domain = node_domain
        self.level_offset = np.asarray(offsets, np.int32)
        self.domain_start = np.asarray(starts, np.int32)
        self.domain_end = np.asarray(ends, np.int32)
        self.domain_parent = np.asarray(parents, np.int32)
        self.domain_level = np.asarray(dlevels, np.int32)
        self.domain_paths: list[tuple[str, ...]] = dpaths
        self.n_domains = len(dpaths)

    # ------------------------------------------------------------------ public API
    @classmethod
    def load(cls, path) -> "Cluster":
        """Read a cluster file: YAML, JSON, or Arrow/Parquet (by extension)."""
        from .formats import load_cluster  # here: formats imports Cluster (a real cycle)
        return load_cluster(path)

    def save(self, path) -> None:
        from .formats import save_cluster  # here: formats imports Cluster (a real cycle)
        save_cluster(self, path)

    def to_dict(self) -> dict:
        from .formats import cluster_to_dict  # here: formats imports Cluster (a real cycle)
        return cluster_to_dict(self)

    @property
    def nodes(self) -> list[NodeSpec]:
        """Node specs in topology order, with the *current* usage (capacity minus free)."""
        out = []
        for i, spec in enumerate(self._specs):
            out.append(replace(
                spec,
                gpus_used=int(self.cap_gpus[i] - self.free_gpus[i]),
                cpu_used=int(self.cap_cpu[i] - self.free_cpu[i]),
                memory_used=int(self.cap_mem[i] - self.free_mem[i]),
                pods_used=int(self.cap_pods[i] - self.free_pods[i]),
                schedulable=bool(self.schedulable[i]),
                allocations=self.allocations[i],
            ))
        return out

    def spec(self, i: int) -> NodeSpec:
        return self._specs[i]

    # ------------------------------------------------------------------ writes
    def track_writes(self) -> WriteTracker:
        """Opt in to write tracking (module docstring): from now on the free arrays and
        ``schedulable`` are read-only and change only through ``take_free``, ``set_schedulable``
        and ``update_node``. Call it before handing the arrays out: a reference taken earlier
        still writes the same memory unseen. Idempotent; returns the tracker."""
        t = self._tracker
        if t is not None and t.owns(self):
            return t
        if t is not None:
            raise RuntimeError("a tracked cluster's free arrays were replaced; track a copy() instead")
        t = WriteTracker(self)
        for name, view in zip(TRACKED_ARRAYS, t.views):
            setattr(self, name, view)
        self._tracker = t
        return t

    @property
    def write_tracker(self) -> WriteTracker | None:
        """The tracker when this cluster tracks its writes and still exposes its arrays, else None."""
        t = self._tracker
        return t if t is not None and t.owns(self) else None

    def _bases(self) -> tuple | None:
        """The writable arrays of a tracked cluster (None when untracked); a tracked cluster whose
        arrays were replaced by assignment refuses writes (they would miss the visible arrays)."""
        t = self._tracker
        if t is None:
            return None
        if not t.owns(self):
            raise RuntimeError("a tracked cluster's free arrays were replaced: writes would be lost")
        return t.bases

    def take_free(self, i: int, gpus: int = 0, cpu: int = 0, memory: int = 0, pods: int = 0) -> None:
        """Take amounts off node ``i``'s free arrays (negative amounts give them back)."""
        b = self._bases()
        if b is None:
            self.free_gpus[i] -= gpus
            self.free_cpu[i] -= cpu
            self.free_mem[i] -= memory
            self.free_pods[i] -= pods
            return
        b[0][i] -= gpus
        b[1][i] -= cpu
        b[2][i] -= memory
        b[3][i] -= pods
        self._tracker.touch(i)

    def set_schedulable(self, i: int, schedulable: bool) -> None:
        b = self._bases()
        (self.schedulable if b is None else b[4])[i] = 1 if schedulable else 0
        if b is not None:
            self._tracker.sched_generation += 1
            self._tracker.touch(i)

    def update_node(self, old: NodeSpec, spec: NodeSpec) -> bool:
        """Apply a node change that keeps the node's place in the topology (cordon, drain, a new
        allocatable) to the arrays in place: capacity, free by the change in capacity minus the
        change in usage, schedulable, the spec. ``old`` is the spec the arrays were built from.
        False, changing nothing, when the change needs a new ``Cluster``: the node is unknown, or
        its topology, labels (selector masks are cached), GPU type or allocations changed.

        Capacity arrays are copied on write (``copy()`` shares them with snapshots); the free
        arrays are this cluster's own."""
        i = self.node_index.get(spec.name)
        if (i is None or old.topology != spec.topology or old.labels != spec.labels
                or old.gpu_type != spec.gpu_type or old.allocations != spec.allocations):
            return False
        deltas = []
        for cap_name, res in (("cap_gpus", "gpus"), ("cap_cpu", "cpu"), ("cap_mem", "memory"), ("cap_pods", "pods")):
            new_cap, old_cap = getattr(spec, res), getattr(old, res)
            deltas.append((new_cap - old_cap) - (getattr(spec, res + "_used") - getattr(old, res + "_used")))
            if new_cap != old_cap:
                cap = getattr(self, cap_name).copy()
                cap[i] = new_cap
                setattr(self, cap_name, cap)
        self.take_free(i, *(-d for d in deltas))
        self.refresh_oldest(i)
        if bool(self.schedulable[i]) != bool(spec.schedulable):
            self.set_schedulable(i, spec.schedulable)
        specs = list(self._specs)  # shared with snapshots too
        specs[i] = spec
        self._specs = specs
        return True

    def __getstate__(self) -> dict:
        """Pickling (and deepcopy) gives an untracked cluster with writable arrays: a copied
        tracker's views would no longer see the writes to its copied bases."""
        state = dict(self.__dict__)
        if state.get("_tracker") is not None:
            state["_tracker"] = None
            for name in TRACKED_ARRAYS:
                state[name] = np.array(state[name])
        return state

    def copy(self) -> "Cluster":
        """A snapshot: static topology arrays shared, free arrays and allocations copied."""
        other = object.__new__(Cluster)
        other.__dict__.update(self.__dict__)
        other._tracker = None  # a copy's arrays are its own and writable
        for name in TRACKED_ARRAYS:
            setattr(other, name, getattr(self, name).copy())
        other.allocations = list(self.allocations)
        other.oldest_start = self.oldest_start.copy()
        return other

    def refresh_oldest(self, i: int) -> None:
        """Recompute node ``i``'s ``oldest_start`` from its allocations and used GPUs."""
        self.oldest_start[i] = oldest_start(self.allocations[i], int(self.cap_gpus[i] - self.free_gpus[i]))

    @property
    def total_gpus(self) -> int:
        return int(self.cap_gpus.sum())

    @property
    def free_gpu_count(self) -> int:
        return int(self.free_gpus.sum())

    def level_index(self, level: str) -> int:
        """Index of a level name; ``"node"`` is ``len(levels)``. ValueError if unknown."""
        if level == NODE_LEVEL and NODE_LEVEL not in self.levels:
            return len(self.levels)
        return self.levels.index(level)

    def level_domains(self, level: int) -> range:
        return range(int(self.level_offset[level]), int(self.level_offset[level + 1]))

    def domain_name(self, domain: int) -> str:
        """A domain's path of label values from the top, joined by '/': ``z0/b1/b1-r3``."""
        return "/".join(self.domain_paths[domain])

    def node_path(self, i: int) -> str:
        top = int(self.node_domain[-1, i]) if self.levels else -1
        return (self.domain_name(top) + "/" if top >= 0 else "") + self.node_names[i]

    def selector_mask(self, selector: Mapping[str, str]) -> np.ndarray:
        """bool[n_nodes]: nodes matching every key of a node selector (``gpu_type`` or a label)."""
        mask = np.ones(self.n_nodes, bool)
        for key, value in sorted(selector.items()):
            ck = (key, value)
            m = self._mask_cache.get(ck)
            if m is None:
                if key == GPU_TYPE_KEY:
                    m = np.fromiter((s.gpu_type == value for s in self._specs), bool, self.n_nodes)
                else:
                    m = np.fromiter((s.labels.get(key) == value for s in self._specs), bool, self.n_nodes)
                self._mask_cache[ck] = m
            mask &= m
        return mask

    def __repr__(self) -> str:
        return (f"Cluster(levels={list(self.levels)}, nodes={self.n_nodes}, gpus={self.total_gpus}, "
                f"free_gpus={self.free_gpu_count})")


def oldest_start(allocations, gpus_used: int) -> float:
    """When the oldest GPU pod running on a node started: +inf when no GPU is used; -inf when some
    used GPUs have no known start (an allocation without ``started``, or used GPUs no allocation
    accounts for: running since before every known start)."""
    if gpus_used <= 0:
        return math.inf
    known = [a.started for a in allocations if a.gpus > 0]
    if sum(a.gpus for a in allocations) < gpus_used or None in known or not known:
        return -math.inf
    return float(min(known))


def _check_levels(levels: tuple[str, ...]) -> None:
    seen = set()
    for i, lv in enumerate(levels):
        if not isinstance(lv, str) or not lv:
            raise InvalidTopology(f"level names must be non-empty strings, got {lv!r}", field=f"levels[{i}]")
        if lv == NODE_LEVEL:
            raise InvalidTopology(f"'{NODE_LEVEL}' is reserved for the node count", field=f"levels[{i}]")
        if lv in seen:
            raise InvalidTopology(f"duplicate level {lv!r}", field=f"levels[{i}]")
        seen.add(lv)


def _paths(levels: tuple[str, ...], specs: list[NodeSpec]) -> list[tuple[str, ...]]:
    """Each node's label value at every level (its own domain where the label is missing). Nodes
    often share one topology mapping (engine/model/synthetic.py): a complete one is read once."""
    out = []
    seen: dict[int, tuple[str, ...]] = {}  # id of a complete mapping -> its path (mappings stay alive: specs hold them)
    for n in specs:
        t = n.topology
        p = seen.get(id(t))
        if p is None:
            p = tuple(t.get(lv) or own_domain_value(n.name) for lv in levels)
            if all(t.get(lv) for lv in levels):
                seen[id(t)] = p
        out.append(p)
    return out


def _check_nodes(levels: tuple[str, ...], nodes: list[NodeSpec]) -> None:
    seen: dict[str, int] = {}
    level_set = set(levels)
    for i, n in enumerate(nodes):
        if not isinstance(n.name, str) or not n.name:
            raise InvalidTopology("node name must be a non-empty string", field=f"nodes[{i}].name")
        if n.name in seen:
            raise InvalidTopology(f"duplicate node name {n.name!r} (also nodes[{seen[n.name]}])",
                                  field=f"nodes[{i}].name")
        seen[n.name] = i
        if not level_set.issuperset(n.topology):
            key = next(k for k in n.topology if k not in level_set)
            raise InvalidTopology(f"unknown level {key!r}; levels are {list(levels)}",
                                  field=f"nodes[{i}] ({n.name}).topology")
        if not (0 <= n.gpus_used <= n.gpus <= UNLIMITED and 0 <= n.cpu_used <= n.cpu <= UNLIMITED
                and 0 <= n.memory_used <= n.memory <= UNLIMITED and 0 <= n.pods_used <= n.pods <= UNLIMITED):
            _check_amounts(f"nodes[{i}] ({n.name})", n)
        if n.gpus > 2**30 or n.pods > 2**30:
            raise InvalidTopology("gpus and pods must be below 2^30", field=f"nodes[{i}] ({n.name}).gpus")
        if n.allocations:
            alloc_gpus = sum(a.gpus for a in n.allocations)
            if alloc_gpus > n.gpus_used:
                raise InvalidTopology(f"allocations hold {alloc_gpus} GPUs but gpus_used is {n.gpus_used}",
                                      field=f"nodes[{i}] ({n.name}).allocations")


def _check_amounts(where: str, n: NodeSpec) -> None:
    """The error for the first capacity or usage of ``n`` out of range (the common case, all in
    range, is one chained comparison in _check_nodes)."""
    for cap, used, label in ((n.gpus, n.gpus_used, "gpus"), (n.cpu, n.cpu_used, "cpu"),
                             (n.memory, n.memory_used, "memory"), (n.pods, n.pods_used, "pods")):
        if cap < 0 or cap > UNLIMITED:
            raise InvalidTopology(f"must be between 0 and {UNLIMITED}, got {cap}", field=f"{where}.{label}")
        if used < 0 or used > cap:
            raise InvalidTopology(f"must be between 0 and {label} ({cap}), got {used}", field=f"{where}.{label}_used")
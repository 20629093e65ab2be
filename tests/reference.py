"""A slow, obviously-correct placer: the oracle the engine's placers are tested against.

``reference_place(cluster, gang)`` enumerates *every* assignment of a gang's pods to nodes (pods
of one pod set are identical, so an assignment is a vector of pods per node per pod set), keeps
those that satisfy every constraint of the placement contract (docs/placement.md), and returns the one with the
smallest lexicographic objective. It shares no code with the engine's placers or scoring: it reads
only the cluster's per-node state (``free_*``, ``schedulable``), the node specs (labels, GPU type,
topology labels) and ``cluster.node_path`` for part (4) of the objective.

Constraints checked (each by its own small function below):
- capacity: per node, the pods of all pod sets together fit the free GPUs, CPU, memory and pod slots;
- eligibility: pods only on schedulable (not cordoned) nodes matching the pod set's node selector
  (``gpu_type`` matches the node's GPU type, any other key a node label);
- counts: each pod set places ``count`` pods, or with ``min_count`` any number in
  ``[min_count, count]``; with slices, a multiple of every slice size, except that a pod set
  smaller than one slice is a single (partial) slice: all or nothing (the file format requires
  ``count`` and ``min_count`` to be multiples of the size, or ``count`` smaller than it);
- ``required`` level: every pod of the gang in one domain of that level;
- slices (one or more layers): pod indices of a pod set are assigned in node topology order (the
  cluster's node order); every ``size`` consecutive indices sit in one domain of the layer's level
  (``node`` = one node).

A domain is identified by its path of label values from the top; a node without a level's label
is its own domain at that level (``node:<name>``), as docs/placement.md says.

The objective key (smallest wins), as a flat tuple:
``(-pods_placed, *domains_used[:counted], *part_3, node_paths)`` where ``domains_used``
is the number of distinct domains touched per level top first, then the number of nodes;
``counted`` is ``preferred_level + 1`` with a ``preferred`` level, else every level plus the node
count; ``stranded_gpus`` is, per level then for nodes, the free GPUs left after placement summed
over the touched domains (all their nodes, cordoned ones included) and over the touched nodes,
and ``pod_room`` is, per level, the pods of the gang's largest per-pod GPU request ``u`` (1 when no
pod set asks for GPUs) that the touched domains' nodes could take *before* placement, each node at
most ``n``, the gang's pods of ``u`` GPUs (the sum of ``min(free_gpus // u, n)`` over all their
nodes, negative free counted as 0). ``part_3`` (part (3) of
docs/placement.md) is, with ``objective="podfit"``: the nodes' stranded GPUs, then for
the lowest level its pod room and its stranded GPUs, ..., the top level's last; with ``"age"`` (the
default) the same, preceded for a gang of one pod set of one GPU pod by the node's age: when its oldest
running GPU pod started (``cluster.oldest_start``: -inf when unknown), the largest float when the
node's GPUs are used but no start is recorded, +inf when all its GPUs are free; ``"bottomup"``: the
stranded GPUs only in that order (nodes first, the top level last); ``"topdown"``: the stranded GPUs in
``stranded_gpus`` order, top level first;
``node_paths`` is the sorted tuple of ``cluster.node_path(i)`` of the used nodes.
This equals ``ObjectiveValue.key + (node_paths(...),)`` of engine/place/objective.py for the same counts.

Meant for tiny instances (<= 8 nodes, <= 6 pods in total); larger ones are refused.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np

MAX_NODES = 8
MAX_PODS = 6
NODE = "node"


@dataclass
class ReferenceResult:
    placed: bool  # some assignment satisfies every constraint
    key: tuple = ()  # the full objective of the best assignment (empty when not placed)
    counts: list[np.ndarray] = field(default_factory=list)  # int64[n_nodes] per pod set, gang order
    feasible: int = 0  # how many feasible assignments were enumerated (for statistics)


# ------------------------------------------------------------------------------ the instance
@dataclass
class _Instance:
    n: int
    levels: tuple[str, ...]
    paths: list[tuple[str, ...]]  # per node: its domain path, top level first
    free_gpus: list[int]
    free_cpu: list[int]
    free_mem: list[int]
    free_pods: list[int]
    eligible: list[list[bool]]  # per pod set, per node
    node_paths: list[str]
    age: list[float]  # per node, objective "age" (see the module docstring)


def _selector_matches(spec, selector) -> bool:
    for key, value in selector.items():
        have = spec.gpu_type if key == "gpu_type" else spec.labels.get(key)
        if have != value:
            return False
    return True


def _instance(cluster, gang) -> _Instance:
    n = cluster.n_nodes
    levels = tuple(cluster.levels)
    specs = [cluster.spec(i) for i in range(n)]
    paths = [tuple(s.topology.get(lv) or f"node:{s.name}" for lv in levels) for s in specs]
    sched = [bool(x) for x in cluster.schedulable.tolist()]
    eligible = [[sched[i] and _selector_matches(specs[i], ps.node_selector) for i in range(n)]
                for ps in gang.pod_sets]
    return _Instance(n, levels, paths, [int(x) for x in cluster.free_gpus.tolist()],
                     [int(x) for x in cluster.free_cpu.tolist()], [int(x) for x in cluster.free_mem.tolist()],
                     [int(x) for x in cluster.free_pods.tolist()], eligible,
                     [cluster.node_path(i) for i in range(n)],
                     [math.inf if int(f) >= int(cap) else (sys.float_info.max if math.isinf(s) and s > 0 else float(s))
                      for f, cap, s in zip(cluster.free_gpus.tolist(), cluster.cap_gpus.tolist(),
                                           cluster.oldest_start.tolist())])


def _level_of(inst: _Instance, name: str) -> int:
    if name == NODE and NODE not in inst.levels:
        return len(inst.levels)
    return inst.levels.index(name)


def _domain(inst: _Instance, node: int, level: int):
    """The domain of ``node`` at ``level`` as a hashable path (the node itself at the node level)."""
    if level >= len(inst.levels):
        return ("#node", node)
    return inst.paths[node][: level + 1]


# ------------------------------------------------------------------------------ constraints
def _capacity_ok(inst: _Instance, gang, counts) -> list[str]:
    out = []
    for i in range(inst.n):
        pods = sum(int(c[i]) for c in counts)
        if not pods:
            continue
        gpus = sum(int(c[i]) * ps.gpus for c, ps in zip(counts, gang.pod_sets))
        cpu = sum(int(c[i]) * ps.cpu for c, ps in zip(counts, gang.pod_sets))
        mem = sum(int(c[i]) * ps.memory for c, ps in zip(counts, gang.pod_sets))
        for what, need, have in (("gpus", gpus, inst.free_gpus[i]), ("cpu", cpu, inst.free_cpu[i]),
                                 ("memory", mem, inst.free_mem[i]), ("pod slots", pods, inst.free_pods[i])):
            if need > have:
                out.append(f"node {i}: {what} {need} > free {have}")
    return out


def _eligibility_ok(inst: _Instance, gang, counts) -> list[str]:
    return [f"pod set {ps.name!r} on ineligible node {i}"
            for p, (c, ps) in enumerate(zip(counts, gang.pod_sets))
            for i in range(inst.n) if c[i] and not inst.eligible[p][i]]


def _count_ok(gang, placed: list[int]) -> list[str]:
    out = []
    sizes = [layer.size for layer in gang.topology.slices]
    for ps, k in zip(gang.pod_sets, placed):
        lo = ps.count if ps.min_count is None else ps.min_count
        if not lo <= k <= ps.count:
            out.append(f"pod set {ps.name!r}: {k} pods placed, needs {lo}..{ps.count}")
        for s in sizes:
            whole = s if ps.count % s == 0 or ps.count > s else ps.count  # smaller than a slice: all or none
            if k % whole:
                out.append(f"pod set {ps.name!r}: {k} pods is not a multiple of slice size {whole}")
    return out


def _required_ok(inst: _Instance, gang, used_nodes: list[int]) -> list[str]:
    req = gang.topology.required
    if req is None or not used_nodes:
        return []
    lv = _level_of(inst, req)
    doms = {_domain(inst, i, lv) for i in used_nodes}
    return [] if len(doms) == 1 else [f"required {req}: pods span {len(doms)} domains"]


def _slices_ok(inst: _Instance, gang, pod_nodes: list[list[int]]) -> list[str]:
    """pod_nodes[p][j] = node of pod index j of pod set p."""
    out = []
    for layer in gang.topology.slices:
        lv = _level_of(inst, layer.level)
        for ps, nodes in zip(gang.pod_sets, pod_nodes):
            for start in range(0, len(nodes), layer.size):
                doms = {_domain(inst, i, lv) for i in nodes[start:start + layer.size]}
                if len(doms) > 1:
                    out.append(f"pod set {ps.name!r}: pods {start}..{start + layer.size - 1} span "
                               f"{len(doms)} {layer.level} domains")
    return out


def _pods_in_order(counts_p) -> list[int]:
    """Pod indices of one pod set laid out over nodes in topology order."""
    return [i for i in range(len(counts_p)) for _ in range(int(counts_p[i]))]


# ------------------------------------------------------------------------------ objective
def reference_key(cluster, gang, counts, objective: str = "age") -> tuple:
    """The full objective of an assignment (see the module docstring), computed from scratch."""
    inst = _instance(cluster, gang)
    return _key(inst, gang, counts, objective)


def _key(inst: _Instance, gang, counts, objective: str = "age") -> tuple:
    n_levels = len(inst.levels)
    total = [sum(int(c[i]) for c in counts) for i in range(inst.n)]
    taken = [sum(int(c[i]) * ps.gpus for c, ps in zip(counts, gang.pod_sets)) for i in range(inst.n)]
    after = [inst.free_gpus[i] - taken[i] for i in range(inst.n)]
    used = [i for i in range(inst.n) if total[i]]
    unit = max([ps.gpus for ps in gang.pod_sets] + [1])
    n_unit = sum(ps.count for ps in gang.pod_sets if max(ps.gpus, 1) == unit)
    domains, stranded, room = [], [], []
    for lv in range(n_levels + 1):
        touched = {_domain(inst, i, lv) for i in used}
        domains.append(len(touched))
        stranded.append(sum(after[j] for j in range(inst.n) if _domain(inst, j, lv) in touched))
        room.append(sum(min(max(inst.free_gpus[j], 0) // unit, n_unit) for j in range(inst.n)
                        if _domain(inst, j, lv) in touched))
    pref = gang.topology.preferred
    counted = _level_of(inst, pref) + 1 if pref is not None else n_levels + 1
    paths = tuple(sorted(inst.node_paths[i] for i in used))
    if objective == "topdown":
        part3 = stranded
    elif objective == "bottomup":
        part3 = stranded[::-1]  # nodes first, then the lowest level, ..., the top level
    else:  # podfit: nodes first, then per level from the lowest up its pod room, then its stranded GPUs
        part3 = [stranded[n_levels]]
        for lv in range(n_levels - 1, -1, -1):
            part3 += [room[lv], stranded[lv]]
        one_pod = len(gang.pod_sets) == 1 and gang.pod_sets[0].count == 1 and gang.pod_sets[0].gpus > 0
        if objective == "age" and one_pod and len(used) == 1:
            part3 = [inst.age[used[0]], *part3]
    return (-sum(total), *domains[:counted], *part3, paths)


# ------------------------------------------------------------------------------ enumeration
def _vectors(total: int, bounds: list[int]):
    """Every vector v with 0 <= v[i] <= bounds[i] and sum(v) == total."""
    n = len(bounds)
    suffix = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        suffix[i] = suffix[i + 1] + bounds[i]
    v = [0] * n

    def rec(i: int, left: int):
        if i == n:
            if left == 0:
                yield list(v)
            return
        if left > suffix[i]:
            return
        for x in range(min(left, bounds[i]), -1, -1):
            v[i] = x
            yield from rec(i + 1, left - x)
        v[i] = 0

    yield from rec(0, total)


def _fit(inst: _Instance, ps, p: int, i: int, gpus: int, cpu: int, mem: int, pods: int) -> int:
    """Most pods of pod set p node i holds with the given free resources (0 if ineligible)."""
    if not inst.eligible[p][i]:
        return 0
    k = pods
    for need, have in ((ps.gpus, gpus), (ps.cpu, cpu), (ps.memory, mem)):
        if need:
            k = min(k, have // need)
    return max(k, 0)


def reference_place(cluster, gang, objective: str = "age") -> ReferenceResult:
    """Exhaustive search for the best feasible assignment; see the module docstring."""
    inst = _instance(cluster, gang)
    if inst.n > MAX_NODES or gang.size > MAX_PODS:
        raise ValueError(f"reference_place is for tiny instances (<= {MAX_NODES} nodes, <= {MAX_PODS} pods), "
                         f"got {inst.n} nodes and {gang.size} pods")
    best: ReferenceResult = ReferenceResult(placed=False)
    free = [list(inst.free_gpus), list(inst.free_cpu), list(inst.free_mem), list(inst.free_pods)]
    chosen: list[list[int]] = []

    def rec(p: int):
        nonlocal best
        if p == len(gang.pod_sets):
            counts = [np.asarray(c, np.int64) for c in chosen]
            # every constraint re-checked from scratch on the complete assignment
            if violations(inst, gang, counts):
                return
            best.feasible += 1
            key = _key(inst, gang, counts, objective)
            if not best.placed or key < best.key:
                best = ReferenceResult(True, key, counts, best.feasible)
            return
        ps = gang.pod_sets[p]
        bounds = [_fit(inst, ps, p, i, free[0][i], free[1][i], free[2][i], free[3][i]) for i in range(inst.n)]
        lo = ps.count if ps.min_count is None else ps.min_count
        step = 1
        for layer in gang.topology.slices:  # a pod set smaller than one slice: all or nothing
            step = int(np.lcm(step, layer.size if ps.count % layer.size == 0 or ps.count > layer.size
                                    else ps.count))
        for k in range(ps.count, lo - 1, -1):
            if k % step:
                continue
            for v in _vectors(k, bounds):
                if _slices_ok(inst, _one_set(gang, ps), [_pods_in_order(v)]):
                    continue  # pruned early; the full check below repeats it
                for i, x in enumerate(v):
                    free[0][i] -= x * ps.gpus
                    free[1][i] -= x * ps.cpu
                    free[2][i] -= x * ps.memory
                    free[3][i] -= x
                chosen.append(v)
                rec(p + 1)
                chosen.pop()
                for i, x in enumerate(v):
                    free[0][i] += x * ps.gpus
                    free[1][i] += x * ps.cpu
                    free[2][i] += x * ps.memory
                    free[3][i] += x

    rec(0)
    return best


def _one_set(gang, ps):
    """The gang restricted to one pod set (for checking that set's slices early)."""
    from dataclasses import replace
    return replace(gang, pod_sets=(ps,))


def violations(inst: _Instance, gang, counts: list[np.ndarray]) -> list[str]:
    """Every constraint violated by pods-per-node counts (pod indices laid out in topology order)."""
    placed = [int(np.sum(c)) for c in counts]
    used = [i for i in range(inst.n) if any(c[i] for c in counts)]
    return (_count_ok(gang, placed) + _eligibility_ok(inst, gang, counts) + _capacity_ok(inst, gang, counts)
            + _required_ok(inst, gang, used) + _slices_ok(inst, gang, [_pods_in_order(c) for c in counts]))


# ------------------------------------------------------------------------------ checking an answer
def counts_of(cluster, gang, placement) -> list[np.ndarray]:
    """Pods per node per pod set (gang order) of a Placement."""
    index = {ps.name: p for p, ps in enumerate(gang.pod_sets)}
    counts = [np.zeros(cluster.n_nodes, np.int64) for _ in gang.pod_sets]
    for pod in placement.pods:
        counts[index[pod.pod_set]][cluster.node_index[pod.node]] += 1
    return counts


def check_feasible(cluster, gang, placement) -> list[str]:
    """Every way a Placement breaks the contract (empty list = feasible).

    Checks the placement's own pod numbering: indices 0..k-1 per pod set, each once, assigned in
    topology order, and slices over those indices; then capacity, eligibility, counts and the
    required level. A not-placed answer must carry no pods and a reason.
    """
    if not placement.placed:
        out = []
        if placement.pods:
            out.append("not placed but lists pods")
        if not placement.reason:
            out.append("not placed without a reason")
        return out
    inst = _instance(cluster, gang)
    out = []
    by_set: dict[str, dict[int, int]] = {ps.name: {} for ps in gang.pod_sets}
    for pod in placement.pods:
        if pod.pod_set not in by_set:
            out.append(f"unknown pod set {pod.pod_set!r}")
            continue
        if pod.node not in cluster.node_index:
            out.append(f"unknown node {pod.node!r}")
            continue
        if pod.index in by_set[pod.pod_set]:
            out.append(f"pod {pod.pod_set}[{pod.index}] assigned twice")
        by_set[pod.pod_set][pod.index] = cluster.node_index[pod.node]
    if out:
        return out
    pod_nodes = []
    for ps in gang.pod_sets:
        m = by_set[ps.name]
        if sorted(m) != list(range(len(m))):
            out.append(f"pod set {ps.name!r}: indices {sorted(m)} are not 0..{len(m) - 1}")
            return out
        nodes = [m[j] for j in range(len(m))]
        if nodes != sorted(nodes):
            out.append(f"pod set {ps.name!r}: indices not assigned in topology order")
        pod_nodes.append(nodes)
    counts = counts_of(cluster, gang, placement)
    placed = [int(c.sum()) for c in counts]
    used = [i for i in range(inst.n) if any(c[i] for c in counts)]
    out += _count_ok(gang, placed) + _eligibility_ok(inst, gang, counts) + _capacity_ok(inst, gang, counts)
    out += _required_ok(inst, gang, used) + _slices_ok(inst, gang, pod_nodes)
    return out


def check_counts(cluster, gang, counts: list[np.ndarray]) -> list[str]:
    """Every constraint violated by pods-per-node counts (a Solution's ``counts``)."""
    return violations(_instance(cluster, gang), gang, counts)


__all__ = ["MAX_NODES", "MAX_PODS", "ReferenceResult", "check_counts", "check_feasible", "counts_of",
           "reference_key", "reference_place"]

"""Placement policies for the simulator: gangplace's own and the baselines users run today.

One interface: ``policy.place(cluster, gang) -> Assignment | None`` chooses nodes for a whole
gang on the cluster's *current* free arrays, without modifying them (the simulator commits the
assignment). ``None`` means "does not fit now". All policies place all-or-nothing: the
baselines that pick pods one at a time do it on a scratch copy and give up if any pod fails
(the coscheduling plugin's behaviour, which is what makes a kube-scheduler gang atomic).

A job of ``G`` GPUs on nodes of ``g`` GPUs becomes a gang of ``G // min(G, g)`` pods of
``min(G, g)`` GPUs, plus one smaller pod with the remainder when ``g`` does not divide ``G``,
so GPU-seconds are kept exactly. Pods request GPUs only (CPU and memory are not modelled).

Policies (``POLICIES``; names starting with ``gangplace`` are this project's):

- ``gangplace-heuristic``: ``engine.api.solve(placer="heuristic")``, the native hierarchical
  best fit: fewest domains per level, then best fit bottom-up with each domain measured in the gang's
  pods first, a one-pod gang first to the node whose oldest running pod started first (objective age,
  docs/placement.md); ``gangplace-heuristic-podfit`` / ``gangplace-auto-podfit`` keep podfit without the
  age rule, ``gangplace-heuristic-bottomup`` / ``gangplace-auto-bottomup`` the bottom-up part (3) in GPUs
  only, ``gangplace-heuristic-topdown`` / ``gangplace-auto-topdown`` the older top-down one.
- ``gangplace-auto``: ``placer="auto"``: the heuristic, a lower-bound proof, and CP-SAT within
  ``time_limit_ms`` when the proof fails (engine/exact/auto.py; without it, the heuristic alone).
- ``k8s-default``: kube-scheduler's default scoring, NodeResourcesFit ``LeastAllocated`` (spread),
  no topology; see ``KubeDefault``.
- ``most-allocated``: NodeResourcesFit ``MostAllocated`` (bin packing), no topology.
- ``kueue-tas``: Kueue Topology Aware Scheduling of the current release, BestFit profile; see
  ``KueueTAS``. ``kueue-tas-unconstrained`` (LeastFreeCapacity, gangs without annotation) and
  ``kueue-tas-legacy`` (the older largest-first descent) are selectable by name.
- ``kai-binpack``: KAI-scheduler-like topology plugin with bin packing; see ``KaiBinpack``.
- ``random``: uniformly random feasible node for each pod (a floor, not a real scheduler).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..model.cluster import Cluster
from ..model.errors import InvalidRequest
from ..model.types import GangRequest, PodSet
from ..place.age import node_age
from ..place.objective import DEFAULT_OBJECTIVE


@dataclass(frozen=True, slots=True)
class Gang:
    """A trace job as a gang: ``full_pods`` pods of ``pod_gpus`` and maybe one pod of ``rest_gpus``."""

    gpus: int
    pod_gpus: int
    full_pods: int
    rest_gpus: int  # 0: no remainder pod

    @property
    def n_pods(self) -> int:
        return self.full_pods + (1 if self.rest_gpus else 0)

    def pod_sizes(self) -> list[int]:
        """GPUs of each pod, largest first (the order pods are scheduled in)."""
        return [self.pod_gpus] * self.full_pods + ([self.rest_gpus] if self.rest_gpus else [])

    @property
    def request(self) -> GangRequest:
        return _request(self.pod_gpus, self.full_pods, self.rest_gpus)


def make_gang(gpus: int, gpus_per_node: int) -> Gang:
    if gpus < 1 or gpus_per_node < 1:
        raise InvalidRequest(f"need gpus >= 1 and gpus_per_node >= 1, got {gpus}, {gpus_per_node}", field="num_gpus")
    pod = min(gpus, gpus_per_node)
    return Gang(gpus, pod, gpus // pod, gpus % pod)


@lru_cache(maxsize=4096)
def _request(pod_gpus: int, full_pods: int, rest_gpus: int) -> GangRequest:
    sets = [PodSet("worker", count=full_pods, gpus=pod_gpus)]
    if rest_gpus:
        sets.append(PodSet("rest", count=1, gpus=rest_gpus))
    return GangRequest(name=f"job-{pod_gpus}x{full_pods}+{rest_gpus}", pod_sets=tuple(sets))


@dataclass(slots=True)
class Assignment:
    """Where a gang goes: parallel arrays over the nodes it uses (sorted node indices)."""

    nodes: np.ndarray  # int64[k]
    gpus: np.ndarray  # int64[k]: GPUs taken on each node
    pods: np.ndarray  # int64[k]: pods on each node
    proved_optimal: bool = False  # the placer proved parts (1)-(2) of the objective
    lower_bound: np.ndarray | None = None  # int64[n_levels + 1] if the placer computed it


def assignment_from_counts(counts: list[np.ndarray], sizes: list[int], **kw) -> Assignment:
    pods = np.sum(counts, axis=0)
    gpus = sum(c * s for c, s in zip(counts, sizes))
    nodes = np.flatnonzero(pods)
    return Assignment(nodes.astype(np.int64), np.asarray(gpus[nodes], np.int64), np.asarray(pods[nodes], np.int64), **kw)


def assignment_from_picks(picks: list[int], sizes: list[int], n_nodes: int) -> Assignment:
    pods = np.bincount(picks, minlength=n_nodes)
    gpus = np.bincount(picks, weights=sizes, minlength=n_nodes).astype(np.int64)
    nodes = np.flatnonzero(pods)
    return Assignment(nodes.astype(np.int64), gpus[nodes], pods[nodes].astype(np.int64))


def domain_sums(cluster: Cluster, per_node: np.ndarray) -> np.ndarray:
    """int64[n_domains]: each domain's sum of a per-node value, every level at once."""
    out = np.zeros(cluster.n_domains, np.int64)
    for lv in range(len(cluster.levels)):
        out += np.bincount(cluster.node_domain[lv], weights=per_node, minlength=cluster.n_domains).astype(np.int64)
    return out


class Policy:
    """Base class. Subclasses set ``name`` and implement ``place``."""

    name = "policy"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def place(self, cluster: Cluster, gang: Gang) -> Assignment | None:  # pragma: no cover
        raise NotImplementedError


class GangplacePolicy(Policy):
    """gangplace itself: ``engine.api.solve`` on the live cluster (``heuristic`` or ``auto``).

    ``solve`` is ``place()`` without building the public Placement (pod names), which the
    simulator does not need; the answer is identical.
    """

    def __init__(self, seed: int = 0, placer: str = "heuristic", time_limit_ms: float = 50.0,
                 objective: str = DEFAULT_OBJECTIVE):
        super().__init__(seed)
        self.placer = placer
        self.time_limit_ms = time_limit_ms
        self.seed = seed
        self.objective = objective
        self.name = f"gangplace-{placer}" + ("" if objective == DEFAULT_OBJECTIVE else f"-{objective}")

    def place(self, cluster: Cluster, gang: Gang) -> Assignment | None:
        from ..exact.auto import solve
        from ..place.request import prepare
        prepared = prepare(cluster, gang.request, self.objective)
        sol = solve(cluster, prepared, self.placer, time_limit_ms=self.time_limit_ms, seed=self.seed)
        if not sol.placed:
            return None
        sizes = [ps.gpus for ps in gang.request.pod_sets]
        return assignment_from_counts(sol.counts, sizes, proved_optimal=bool(sol.optimal),
                                      lower_bound=sol.lower_bound)


class GangplaceTwin(GangplacePolicy):
    """gangplace-auto's tie-twin: the same objective, exact ties among single-pod placements broken the
    other way. The verdict's noise floor (docs/simulation.md, "The verdict's noise floor").

    A single-pod gang goes to the node the placement objective ranks first (docs/placement.md part (3),
    age: the node whose oldest running GPU pod started first, nodes with none last; then podfit: fewest
    free GPUs left on the node, then per level from the lowest up the domain's pod room, then its free
    GPUs; parts (1)-(2) are the same for every node that fits one pod), and among nodes equal on all of
    those to the *last* in topology order, where the engine takes the first (``last=False``,
    ``gangplace-control``, reproduces gangplace-auto: a check that this order is the engine's). Gangs of
    several pods: gangplace-auto itself. Only with the default objective (age).
    """

    def __init__(self, seed: int = 0, time_limit_ms: float = 50.0, last: bool = True):
        super().__init__(seed, "auto", time_limit_ms)
        self.last = last
        self.name = "gangplace-twin" if last else "gangplace-control"

    def place(self, cluster: Cluster, gang: Gang) -> Assignment | None:
        if gang.n_pods != 1:
            return super().place(cluster, gang)
        c = cluster
        free = c.free_gpus.astype(np.int64)
        ok = c.schedulable.astype(bool)
        fit = ok & (free >= gang.gpus) & (c.free_pods >= 1)
        idx = np.flatnonzero(fit)
        if not idx.size:
            return None
        room = domain_sums(c, fit.astype(np.int64))  # the gang's pods a domain could take (n = 1: nodes that fit)
        dfree = domain_sums(c, np.where(ok, free, 0))
        keys = [-idx if self.last else idx]  # np.lexsort: the last key is the primary one
        for lv in range(len(c.levels)):  # top level (minor) ... lowest level (major)
            d = c.node_domain[lv, idx]
            keys += [dfree[d], room[d]]
        keys.append(free[idx] - gang.gpus)
        if gang.gpus > 0:  # the age rule first (engine/place/age.py): the oldest running node, else podfit alone
            age = node_age(c, idx)
            if not np.isposinf(age).all():
                keep = ~np.isposinf(age)
                idx, keys = idx[keep], [k[keep] for k in keys] + [age[keep]]
        i = int(idx[np.lexsort(keys)[0]])
        return Assignment(np.array([i]), np.array([gang.gpus]), np.array([1]))


class _PodByPod(Policy):
    """Pods scheduled one at a time, each to the best-scoring feasible node (ties at random)."""

    def place(self, cluster: Cluster, gang: Gang) -> Assignment | None:
        free = cluster.free_gpus.astype(np.int64)
        slots = cluster.free_pods.astype(np.int64)
        ok_node = cluster.schedulable.astype(bool)
        sizes = gang.pod_sizes()
        picks = []
        for g in sizes:
            feasible = np.flatnonzero(ok_node & (free >= g) & (slots >= 1))
            if not feasible.size:
                return None
            i = self._choose(cluster, feasible, free, g)
            free[i] -= g
            slots[i] -= 1
            picks.append(i)
        return assignment_from_picks(picks, sizes, cluster.n_nodes)

    def _choose(self, cluster: Cluster, feasible: np.ndarray, free: np.ndarray, g: int) -> int:
        raise NotImplementedError  # pragma: no cover

    def _best(self, candidates: np.ndarray, scores: np.ndarray) -> int:
        top = candidates[scores == scores.max()]
        return int(top[self.rng.integers(len(top))]) if len(top) > 1 else int(top[0])


class KubeDefault(_PodByPod):
    """kube-scheduler's default node scoring for GPU pods: NodeResourcesFit ``LeastAllocated``.

    Models (from the kube-scheduler documentation): filter nodes with room for the pod; if the
    cluster has 100+ nodes, stop after ``percentageOfNodesToScore`` feasible nodes (default
    adaptive ``max(5, 50 - nodes/125)`` %, at least 100), searching from a start index that
    rotates between scheduling cycles; score each as ``(capacity - requested) * 100 // capacity``
    on the GPU resource (integer 0-100); pick a highest score, ties at random. A gang is
    all-or-nothing, as with the coscheduling plugin. Limits: no topology awareness at all (the
    point of the comparison); other default scores (BalancedAllocation, ImageLocality,
    TaintToleration, system-default PodTopologySpread, which skips bare Job pods) are constant for
    identical GPU pods and left out; CPU and memory are not modelled.
    """

    name = "k8s-default"
    sample = True

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.next_start = 0

    def _num_to_score(self, n: int) -> int:
        if n < 100:
            return n
        pct = max(5, 50 - n // 125)
        return max(n * pct // 100, 100)

    def _choose(self, cluster, feasible, free, g):
        n = cluster.n_nodes
        if self.sample and n >= 100:
            k = self._num_to_score(n)
            rotated = np.concatenate([feasible[feasible >= self.next_start], feasible[feasible < self.next_start]])
            cand = rotated[:k]
            last = int(cand[-1])
            examined = (last - self.next_start) % n + 1  # nodes visited, feasible or not
            self.next_start = (self.next_start + examined) % n
        else:
            cand = feasible
        cap = cluster.cap_gpus[cand].astype(np.int64)
        return self._best(cand, self._score(cap, free[cand], g))

    def _score(self, cap, free, g):
        return (free - g) * 100 // np.maximum(cap, 1)


class MostAllocated(KubeDefault):
    """NodeResourcesFit ``MostAllocated`` (bin packing), otherwise as ``KubeDefault``.

    Score ``(capacity - free + requested) * 100 // capacity`` on GPUs, highest first, so pods
    fill partly used nodes before empty ones. Limits: packs nodes, not racks or blocks; no
    topology; same sampling and tie-breaking as ``KubeDefault``.
    """

    name = "most-allocated"

    def _score(self, cap, free, g):
        return (cap - free + g) * 100 // np.maximum(cap, 1)


class RandomPolicy(_PodByPod):
    """Each pod on a uniformly random node with room (a floor for every metric)."""

    name = "random"

    def _choose(self, cluster, feasible, free, g):
        return int(feasible[self.rng.integers(len(feasible))])


def _largest_first(ids: np.ndarray, room: np.ndarray, want: int) -> list[tuple[int, int]]:
    """(id, pods) for ``ids`` most ``room`` first (ties in order) until ``want`` pods are given."""
    out = []
    for d in ids[np.argsort(-room[ids], kind="stable")].tolist():
        if want <= 0:
            break
        take = int(min(room[d], want))
        if take:
            out.append((d, take))
            want -= take
    return out


class _PodSetsInTurn(Policy):
    """Kueue's pod sets one after another (the workers, then the remainder pod), each on the
    capacity the previous ones left; a subclass's ``_pod_counts(cluster, cap, count)`` places one
    pod set given each node's capacity in pods of it."""

    def place(self, cluster: Cluster, gang: Gang) -> Assignment | None:
        free = cluster.free_gpus.astype(np.int64)
        slots = cluster.free_pods.astype(np.int64)
        ok = cluster.schedulable.astype(bool)
        picks = np.zeros(cluster.n_nodes, np.int64)
        gpus = np.zeros(cluster.n_nodes, np.int64)
        for size, count in ((gang.pod_gpus, gang.full_pods), (gang.rest_gpus, 1 if gang.rest_gpus else 0)):
            if not count:
                continue
            cap = np.where(ok, np.minimum(free // size, slots), 0)
            counts = self._pod_counts(cluster, cap, count)
            if counts is None:
                return None
            picks += counts
            gpus += counts * size
            free -= counts * size
            slots -= counts
        nodes = np.flatnonzero(picks)
        return Assignment(nodes.astype(np.int64), gpus[nodes], picks[nodes])

    def _pod_counts(self, cluster: Cluster, cap: np.ndarray, count: int) -> np.ndarray | None:  # pragma: no cover
        raise NotImplementedError


class KueueTASLegacy(_PodSetsInTurn):
    """An older Kueue Topology Aware Scheduling (public docs/KEP-2724), kept as ``kueue-tas-legacy``.

    Algorithm, on the capacity of each node in pods of the gang's size (``free // pod_gpus``):
    1. Sum capacities up the tree. From the node level upward, find the lowest level where one
       domain can hold the whole gang; among those domains take the best fit (least capacity that
       fits, ties by topology order). If no single top-level domain fits, take top-level domains
       largest first until the gang fits.
    2. Descend: inside each chosen domain, give pods to its children largest capacity first,
       down to the nodes.
    3. A remainder pod (job size not a multiple of the node size) is then placed the same way on
       its own (a best-fit node).
    Models a workload annotated ``kueue.x-k8s.io/podset-preferred-topology`` at the lowest level.
    Limits: no cohorts, quotas or preemption; the descent is the largest-first ("LargestFit")
    profile, not the newer best-fit-at-each-level one (``KueueTAS``); one pod size per pass.
    """

    name = "kueue-tas-legacy"

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self._children: dict[int, list[np.ndarray]] = {}

    def _child_lists(self, cluster: Cluster) -> list[np.ndarray]:
        key = id(cluster.domain_parent)
        if key not in self._children:
            kids: list[list[int]] = [[] for _ in range(cluster.n_domains)]
            for d, p in enumerate(cluster.domain_parent.tolist()):
                if p >= 0:
                    kids[p].append(d)
            self._children = {key: [np.asarray(k, np.int64) for k in kids]}
        return self._children[key]

    def _pod_counts(self, cluster: Cluster, cap: np.ndarray, count: int) -> np.ndarray | None:
        if cap.sum() < count:
            return None
        L = len(cluster.levels)
        dcap = domain_sums(cluster, cap)
        counts = np.zeros(cluster.n_nodes, np.int64)
        fits = np.flatnonzero(cap >= count)
        if fits.size:  # one node holds the gang: best-fit node
            counts[int(fits[np.argmin(cap[fits])])] = count
            return counts
        chosen: list[tuple[int, int]] = []  # (domain, pods)
        for lv in range(L - 1, -1, -1):
            doms = np.arange(cluster.level_offset[lv], cluster.level_offset[lv + 1])
            fit = doms[dcap[doms] >= count]
            if fit.size:
                chosen = [(int(fit[np.argmin(dcap[fit])]), count)]
                break
        else:
            doms = np.arange(cluster.level_offset[0], cluster.level_offset[1])
            chosen += _largest_first(doms, dcap, count)
        kids = self._child_lists(cluster)
        while chosen:
            nxt = []
            for d, want in chosen:
                if cluster.domain_level[d] == L - 1:  # lowest level: give pods to nodes
                    for i, take in _largest_first(np.arange(cluster.domain_start[d], cluster.domain_end[d]), cap, want):
                        counts[i] += take
                else:
                    nxt += _largest_first(kids[d], dcap, want)
            chosen = nxt
        return counts


class KueueTAS(_PodSetsInTurn):
    """Kueue Topology Aware Scheduling as in the current release (v0.15+), profile **BestFit**.

    Modelled on ``pkg/cache/scheduler/tas_flavor_snapshot.go`` and KEP-2724 ("Computing the
    assignment", "Selecting the algorithm"). The Kueue Topology is the cluster's levels plus
    ``kubernetes.io/hostname`` as its lowest level, and every gang is annotated
    ``kueue.x-k8s.io/podset-preferred-topology: kubernetes.io/hostname``; with the default
    profile (TASProfileMixed, default since v0.15) a ``preferred`` request runs BestFit.
    Per pod set, on each node's capacity in pods (the domain ``state``):
    1. Level search: start at the hostname level; sort the level's domains by state, most
       first (ties by topology order, Kueue's levelValues order); if the first holds the whole
       count, take the first domain with the smallest state that still holds it
       (``findBestFitDomainIdx``); else climb one level (``preferred`` climbs). At the top level,
       if no domain holds it, take domains most-free first, the last one chosen best fit.
    2. Descent (``updateCountsToMinimum``): the children of all chosen domains are pooled and
       sorted by state, most first; they take pods in that order, and when one holds the rest,
       the best-fitting of the remaining ones takes it (the last domain "optimized").
    3. Pod sets one after another (workers, then the remainder pod), each on the capacity the
       previous ones left.
    With ``unconstrained=True`` (a pod set without annotation: the "implicit default", which
    Kueue runs as ``podset-unconstrained-topology`` at the lowest level) the profile is
    LeastFreeCapacity: domains sorted least state first, the first that holds the count, else
    least-first greedy, never climbing (``kueue-tas-unconstrained``).
    Limits: no quotas, cohorts, preemption or node affinity scores; GPUs only.
    """

    name = "kueue-tas"
    unconstrained = False

    def _sorted(self, items: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Most state first (LeastFreeCapacity: least first), ties in topology order."""
        key = state[items] if self.unconstrained else -state[items]
        return items[np.argsort(key, kind="stable")]

    @staticmethod
    def _best_fit_idx(items: np.ndarray, state: np.ndarray, need: int) -> int:
        """findBestFitDomainIdx: the first of the (most-first sorted) items with the smallest state >= need."""
        st = state[items]
        fit = np.flatnonzero(st >= need)
        if not fit.size:
            return 0
        m = st[fit].min()
        return int(fit[np.flatnonzero(st[fit] == m)[0]])

    def _take(self, items: np.ndarray, state: np.ndarray, need: int) -> list[tuple[int, int]] | None:
        """Greedy over sorted items: (item, pods) until ``need`` is covered; BestFit optimizes the last."""
        out, left = [], need
        for k, it in enumerate(items.tolist()):
            if left <= 0:
                break
            if state[it] <= 0:
                if self.unconstrained:
                    continue
                break
            if not self.unconstrained and state[it] >= left:
                rest = items[k:]
                it = int(rest[self._best_fit_idx(rest, state, left)])
            take = int(min(state[it], left))
            out.append((it, take))
            left -= take
        return out if left <= 0 else None

    def _pod_counts(self, cluster: Cluster, cap: np.ndarray, count: int) -> np.ndarray | None:
        if cap.sum() < count:
            return None
        L = len(cluster.levels)
        N = cluster.n_domains
        # items: domains 0..N-1, nodes N..N+n-1 (the hostname level)
        state = np.zeros(N + cluster.n_nodes, np.int64)
        state[N:] = cap
        state[:N] = domain_sums(cluster, cap)
        levels = [np.arange(cluster.level_offset[lv], cluster.level_offset[lv + 1]) for lv in range(L)]
        levels.append(np.arange(N, N + cluster.n_nodes))
        chosen = None
        lv = L
        while chosen is None:
            items = self._sorted(levels[lv], state)
            if self.unconstrained:
                fit = items[state[items] >= count]
                if fit.size:
                    chosen = [(int(fit[0]), count)]
                else:
                    chosen = self._take(items, state, count)
                    if chosen is None:
                        return None
            elif state[items[0]] >= count:
                chosen = [(int(items[self._best_fit_idx(items, state, count)]), count)]
            elif lv > 0:
                lv -= 1
            else:
                chosen = self._take(items, state, count)
                if chosen is None:
                    return None
        kids = self._children(cluster)
        while lv < L:
            pool = np.concatenate([kids[d] for d, _ in chosen])
            chosen = self._take(self._sorted(pool, state), state, count)
            if chosen is None:  # pragma: no cover - capacities are sums of the children's
                return None
            lv += 1
        counts = np.zeros(cluster.n_nodes, np.int64)
        for it, k in chosen:
            counts[it - N] += k
        return counts

    def _children(self, cluster: Cluster) -> list[np.ndarray]:
        """Children item ids per domain (lowest-level domains: their nodes, as items N + i)."""
        key = id(cluster.domain_parent)
        if getattr(self, "_kids_key", None) != key:
            N = cluster.n_domains
            kids: list[list[int]] = [[] for _ in range(N)]
            for d, p in enumerate(cluster.domain_parent.tolist()):
                if p >= 0:
                    kids[p].append(d)
            L = len(cluster.levels)
            out = [np.asarray(k, np.int64) for k in kids]
            if L:
                for d in range(cluster.level_offset[L - 1], cluster.level_offset[L]):
                    out[d] = N + np.arange(cluster.domain_start[d], cluster.domain_end[d], dtype=np.int64)
            self._kids, self._kids_key = out, key
        return self._kids


class KueueTASUnconstrained(KueueTAS):
    """Kueue TAS for pod sets without a topology annotation (the implicit default): LeastFreeCapacity."""

    name = "kueue-tas-unconstrained"
    unconstrained = True


class KaiBinpack(Policy):
    """KAI-scheduler-like: its topology plugin with bin packing (public docs/topology/README.md).

    Every gang is annotated ``kai.scheduler/topology-preferred-placement`` at the lowest topology
    level (rack / SU). 1. Domain selection (bin packing): from the preferred level upward, the
    lowest level where some domain can hold the whole gang; among those, the domain with the
    least available GPUs (the highest requested-to-available ratio), ties in topology order; the
    whole cluster when none does. 2. Node order inside it: sub-domains at the preferred level with
    more available GPUs first, and inside each, nodes bin-packed (fewest free GPUs first, KAI's
    default ``binpack`` node order). Pods, largest first, each go to the first node in that order
    with room (all-or-nothing). Unlike Kueue, it compares free GPUs, not pods that fit.
    Limits: no queues, fair share, reclaim or preemption; GPUs only.
    """

    name = "kai-binpack"

    def place(self, cluster: Cluster, gang: Gang) -> Assignment | None:
        free = cluster.free_gpus.astype(np.int64)
        slots = cluster.free_pods.astype(np.int64)
        ok = cluster.schedulable.astype(bool)
        sizes = gang.pod_sizes()
        L = len(cluster.levels)
        avail = np.where(ok, free, 0)
        # pods of the gang one domain could hold (full pods by capacity, the remainder pod counted too)
        cap = np.where(ok, np.minimum(free // gang.pod_gpus, slots), 0)
        dcap = domain_sums(cluster, cap)
        dfree = domain_sums(cluster, avail)
        nodes = np.flatnonzero(ok)
        for lv in range(L - 1, -1, -1):
            doms = np.arange(cluster.level_offset[lv], cluster.level_offset[lv + 1])
            fit = doms[(dcap[doms] >= gang.full_pods) & (dfree[doms] >= gang.gpus)]
            if fit.size:
                d = int(fit[np.argmin(dfree[fit])])
                nodes = np.arange(cluster.domain_start[d], cluster.domain_end[d])
                nodes = nodes[ok[nodes]]
                break
        if L:
            sub = cluster.node_domain[L - 1, nodes]
            order = np.lexsort((nodes, free[nodes], -dfree[sub]))
            nodes = nodes[order]
        else:
            nodes = nodes[np.lexsort((nodes, free[nodes]))]
        picks = []
        for g in sizes:
            room = (free[nodes] >= g) & (slots[nodes] >= 1)
            if not room.any():
                return None
            i = int(nodes[int(np.argmax(room))])
            free[i] -= g
            slots[i] -= 1
            picks.append(i)
        return assignment_from_picks(picks, sizes, cluster.n_nodes)


POLICIES = ("gangplace-heuristic", "gangplace-auto", "k8s-default", "most-allocated", "kueue-tas", "kai-binpack",
            "random")
# selectable by name, not run by default
EXTRA_POLICIES = ("gangplace-heuristic-podfit", "gangplace-auto-podfit", "gangplace-heuristic-bottomup",
                  "gangplace-auto-bottomup", "gangplace-heuristic-topdown", "gangplace-auto-topdown",
                  "kueue-tas-unconstrained", "kueue-tas-legacy", "gangplace-twin",
                  "gangplace-control")


def make_policy(name: str, seed: int = 0, time_limit_ms: float = 50.0) -> Policy:
    """Build a policy by name (see ``POLICIES``)."""
    if name == "gangplace-heuristic":
        return GangplacePolicy(seed, "heuristic", time_limit_ms)
    if name == "gangplace-auto":
        return GangplacePolicy(seed, "auto", time_limit_ms)
    if name in EXTRA_POLICIES[:6]:  # the earlier orders of part (3), for comparison
        _, placer, objective = name.split("-")
        return GangplacePolicy(seed, placer, time_limit_ms, objective=objective)
    if name in ("gangplace-twin", "gangplace-control"):  # the verdict's noise floor, and its check
        return GangplaceTwin(seed, time_limit_ms, last=name == "gangplace-twin")
    table = {"k8s-default": KubeDefault, "most-allocated": MostAllocated, "kueue-tas": KueueTAS,
             "kueue-tas-unconstrained": KueueTASUnconstrained, "kueue-tas-legacy": KueueTASLegacy,
             "kai-binpack": KaiBinpack, "random": RandomPolicy}
    if name not in table:
        raise InvalidRequest(f"unknown policy {name!r}; choose from {list(POLICIES + EXTRA_POLICIES)}",
                             field="policies")
    return table[name](seed)


def parse_policies(text: str | None) -> list[str]:
    if not text:
        return list(POLICIES)
    names = [x.strip() for x in text.split(",") if x.strip()]
    for n in names:
        if n not in POLICIES + EXTRA_POLICIES:
            raise InvalidRequest(f"unknown policy {n!r}; choose from {list(POLICIES + EXTRA_POLICIES)}",
                                 field="policies")
    return names

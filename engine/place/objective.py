"""The topology-optimal objective of docs/placement.md, computed the same way for every placer.

Lexicographic, smallest first:
(1) ``-pods_placed``; (2) domains used at L0, L1, ..., then nodes (levels below a ``preferred``
level and the node count skipped); (3) best fit, bottom-up: the free GPUs left in the touched nodes,
then for the touched domains of the lowest level the gang's pods they could take (``pod_room``: per
node, its free GPUs // the gang's largest per-pod GPU request u, at most the gang's pods of u GPUs,
summed over the domains' nodes, before placement) and then their free GPUs left (``stranded_gpus``),
..., then the same for the top level
(objective ``"podfit"``). Objective ``"age"`` (the default) is podfit for every gang but one: a gang of
a single GPU pod goes to the node, among those that hold it, whose oldest running GPU pod started
first (nodes with nothing running last), then by podfit (engine/place/age.py). Objective
``"bottomup"`` compares the free GPUs only, in the same order; the older order ``"topdown"`` compares
them top level first. (4) the sorted list of the chosen nodes' paths.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._core import evaluate_nodes
from ..model.cluster import Cluster
from ..model.errors import InvalidRequest
from ..model.types import NODE_LEVEL

# part (3): podfit with a single-pod gang sent where pods have run longest (the default); best fit from
# the node up with each domain measured in the gang's pods, then in GPUs; from the node up in GPUs only;
# or from the top down in GPUs only
OBJECTIVES = ("age", "podfit", "bottomup", "topdown")
DEFAULT_OBJECTIVE = "age"
POD_ROOM = ("age", "podfit")  # the objectives that measure domains in the gang's pods
# the kernel's number for each (csrc/_core.pyx objective_key); "age" is podfit's in every kernel
OBJECTIVE_MODE = {"topdown": 0, "bottomup": 1, "podfit": 2, "age": 2}


def check_objective(name: str) -> str:
    if name not in OBJECTIVES:
        raise InvalidRequest(f"unknown objective {name!r}; choose one of {list(OBJECTIVES)}", field="objective")
    return name


def part3_order(n_levels: int, objective: str = DEFAULT_OBJECTIVE) -> list[tuple[str, int]]:
    """Part (3)'s components in the order they are compared: ``("gpus", i)``, the free GPUs left in the
    touched items of ``stranded`` index i (levels top first, the nodes ``n_levels``), and ``("pods", lv)``,
    the gang's pods the touched domains of level lv could take (``pod_room``). Top-down: the GPUs from
    the top level to the nodes; bottom-up: from the nodes to the top level; podfit: bottom-up with each
    level's pods before its GPUs."""
    if objective == "topdown":
        return [("gpus", i) for i in range(n_levels + 1)]
    out = [("gpus", n_levels)]
    for lv in range(n_levels - 1, -1, -1):
        if objective in POD_ROOM:
            out.append(("pods", lv))
        out.append(("gpus", lv))
    return out


def pod_unit(gang) -> tuple[int, int]:
    """What part (3)'s ``pod_room`` counts: ``(u, n)``, the gang's largest per-pod GPU request u (1 when
    no pod set asks for GPUs) and its pods of that size n (with u = 1 and no GPUs asked, all its pods).
    A node's room is ``min(free GPUs // u, n)``: the pods of this gang's size it could take."""
    u = max([ps.gpus for ps in gang.pod_sets] + [1])
    n = sum(ps.count for ps in gang.pod_sets if max(ps.gpus, 1) == u)
    return u, n


@dataclass(frozen=True, slots=True)
class ObjectiveValue:
    pods_placed: int
    domains: tuple[int, ...]  # per level, then nodes (all levels, counted or not)
    stranded: tuple[int, ...]  # per level, then nodes
    counted: int  # how many leading entries of ``domains`` count in (2)
    objective: str = DEFAULT_OBJECTIVE  # the order part (3) compares ``stranded`` (and ``pod_room``) in
    pod_room: tuple[int, ...] = ()  # per level: the gang's pods the touched domains could take (podfit)
    # objective "age", a one-pod gang: when its node's oldest running GPU pod started (engine/place/age.py);
    # None for every other gang (not in the key)
    age: float | None = None

    @property
    def key(self) -> tuple:
        """Parts (1)-(3) as one tuple to compare (part (4) is compared separately when needed)."""
        st = self.stranded
        if self.objective == "topdown":
            return (-self.pods_placed, *self.domains[: self.counted], *st)
        if self.objective == "bottomup":
            return (-self.pods_placed, *self.domains[: self.counted], *st[::-1])
        part3 = [st[-1]] if self.age is None else [self.age, st[-1]]
        for lv in range(len(st) - 2, -1, -1):
            part3 += (self.pod_room[lv], st[lv])
        return (-self.pods_placed, *self.domains[: self.counted], *part3)

    def domains_used(self, cluster: Cluster) -> dict[str, int]:
        return dict(zip((*cluster.levels, NODE_LEVEL), self.domains))

    def stranded_gpus(self, cluster: Cluster) -> dict[str, int]:
        return dict(zip((*cluster.levels, NODE_LEVEL), self.stranded))


def objective_of_counts(cluster: Cluster, counts: np.ndarray, gpus_used: np.ndarray, counted: int,
                        objective: str = DEFAULT_OBJECTIVE, *, unit: tuple[int, int]) -> ObjectiveValue:
    """ObjectiveValue a placement given as pods per node (``counts``) and GPUs it takes per node.

    counts : int64[n_nodes] (all pod sets together); gpus_used : int64[n_nodes], zero where
    ``counts`` is zero; unit: what ``pod_room`` counts, ``pod_unit(gang)``. Only the used nodes and the
    domains they touch are visited.
    """
    nodes = np.flatnonzero(counts)
    return objective_of_nodes(cluster, nodes, np.asarray(gpus_used)[nodes], int(np.asarray(counts)[nodes].sum()), counted,
                              objective, unit=unit)


def objective_of_nodes(cluster: Cluster, nodes: np.ndarray, taken: np.ndarray, pods_placed: int, counted: int,
                       objective: str = DEFAULT_OBJECTIVE, *, unit: tuple[int, int]) -> ObjectiveValue:
    """``objective_of_counts`` from the used nodes (increasing ids) and the GPUs taken on each of them."""
    n_out = len(cluster.levels) + 1
    domains = np.empty(n_out, np.int64)
    stranded = np.empty(n_out, np.int64)
    room = np.empty(n_out, np.int64)
    evaluate_nodes(nodes.astype(np.int64, copy=False), taken.astype(np.int64, copy=False), cluster.free_gpus,
                   cluster.node_domain, cluster.domain_start, cluster.domain_end, domains, stranded,
                   unit[0] if objective in POD_ROOM else 0, room, unit[1])
    pod_room = tuple(room[:-1].tolist()) if objective in POD_ROOM else ()
    return ObjectiveValue(pods_placed, tuple(domains.tolist()), tuple(stranded.tolist()), counted, objective, pod_room)


def node_paths(cluster: Cluster, counts: np.ndarray) -> tuple[str, ...]:
    """Part (4): the sorted paths of the chosen nodes."""
    return tuple(sorted(cluster.node_path(int(i)) for i in np.flatnonzero(counts)))

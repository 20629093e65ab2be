"""The topology-optimal objective of docs/placement.md, computed the same way for every placer.

Lexicographic, smallest first:
(1) ``-pods_placed``; (2) domains used at L0, L1, ..., then nodes (levels below a ``preferred``
level and the node count skipped); (3) best fit: the free GPUs left in the touched nodes, then in
the touched domains of the lowest level, ..., then of the top level (``stranded_gpus``, compared
bottom-up: objective ``"bottomup"``, the default); the older order compares them top level first
(objective ``"topdown"``); (4) the sorted list of the chosen nodes' paths.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._core import evaluate_nodes
from ..model.cluster import Cluster
from ..model.errors import InvalidRequest
from ..model.types import NODE_LEVEL

OBJECTIVES = ("bottomup", "topdown")  # part (3): best fit from the node up (default), or from the top down
DEFAULT_OBJECTIVE = "bottomup"


def check_objective(name: str) -> str:
    if name not in OBJECTIVES:
        raise InvalidRequest(f"unknown objective {name!r}; choose one of {list(OBJECTIVES)}", field="objective")
    return name


def stranded_order(n_levels: int, objective: str = DEFAULT_OBJECTIVE) -> list[int]:
    """The order in which part (3) compares the stranded GPUs: indices into ``stranded`` (levels
    top first, the node level ``n_levels`` last). Bottom-up: nodes, lowest level, ..., top level."""
    if objective == "topdown":
        return list(range(n_levels + 1))
    return list(range(n_levels, -1, -1))


@dataclass(frozen=True, slots=True)
class Score:
    pods_placed: int
    domains: tuple[int, ...]  # per level, then nodes (all levels, counted or not)
    stranded: tuple[int, ...]  # per level, then nodes
    counted: int  # how many leading entries of ``domains`` count in (2)
    objective: str = DEFAULT_OBJECTIVE  # the order part (3) compares ``stranded`` in

    @property
    def key(self) -> tuple:
        """Parts (1)-(3) as one tuple to compare (part (4) is compared separately when needed)."""
        st = self.stranded if self.objective == "topdown" else self.stranded[::-1]
        return (-self.pods_placed, *self.domains[: self.counted], *st)

    def domains_used(self, cluster: Cluster) -> dict[str, int]:
        return dict(zip((*cluster.levels, NODE_LEVEL), self.domains))

    def stranded_gpus(self, cluster: Cluster) -> dict[str, int]:
        return dict(zip((*cluster.levels, NODE_LEVEL), self.stranded))


def score(cluster: Cluster, counts: np.ndarray, gpus_used: np.ndarray, counted: int,
          objective: str = DEFAULT_OBJECTIVE) -> Score:
    """Score a placement given as pods per node (``counts``) and GPUs it takes per node.

    counts : int64[n_nodes] (all pod sets together); gpus_used : int64[n_nodes], zero where
    ``counts`` is zero. Only the used nodes and the domains they touch are visited.
    """
    nodes = np.flatnonzero(counts)
    return score_nodes(cluster, nodes, np.asarray(gpus_used)[nodes], int(np.asarray(counts)[nodes].sum()), counted,
                       objective)


def score_nodes(cluster: Cluster, nodes: np.ndarray, taken: np.ndarray, pods_placed: int, counted: int,
                objective: str = DEFAULT_OBJECTIVE) -> Score:
    """``score`` from the used nodes (increasing ids) and the GPUs taken on each of them."""
    n_out = len(cluster.levels) + 1
    domains = np.empty(n_out, np.int64)
    stranded = np.empty(n_out, np.int64)
    evaluate_nodes(nodes.astype(np.int64, copy=False), taken.astype(np.int64, copy=False), cluster.free_gpus,
                   cluster.node_domain, cluster.domain_start, cluster.domain_end, domains, stranded)
    return Score(pods_placed, tuple(domains.tolist()), tuple(stranded.tolist()), counted, objective)


def node_paths(cluster: Cluster, counts: np.ndarray) -> tuple[str, ...]:
    """Part (4): the sorted paths of the chosen nodes."""
    return tuple(sorted(cluster.node_path(int(i)) for i in np.flatnonzero(counts)))

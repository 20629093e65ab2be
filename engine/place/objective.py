"""The topology-optimal objective of DESIGN.md, computed the same way for every placer.

Lexicographic, smallest first:
(1) ``-pods_placed``; (2) domains used at L0, L1, ..., then nodes (levels below a ``preferred``
level and the node count skipped); (3) free GPUs left in the touched domains, per level top
first, then in the touched nodes (``stranded_gpus``); (4) the sorted list of the chosen nodes' paths.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._core import evaluate_nodes
from ..model.cluster import Cluster
from ..model.types import NODE_LEVEL


@dataclass(frozen=True, slots=True)
class ObjectiveValue:
    pods_placed: int
    domains: tuple[int, ...]  # per level, then nodes (all levels, counted or not)
    stranded: tuple[int, ...]  # per level, then nodes
    counted: int  # how many leading entries of ``domains`` count in (2)

    @property
    def key(self) -> tuple:
        """Parts (1)-(3) as one tuple to compare (part (4) is compared separately when needed)."""
        return (-self.pods_placed, *self.domains[: self.counted], *self.stranded)

    def domains_used(self, cluster: Cluster) -> dict[str, int]:
        return dict(zip((*cluster.levels, NODE_LEVEL), self.domains))

    def stranded_gpus(self, cluster: Cluster) -> dict[str, int]:
        return dict(zip((*cluster.levels, NODE_LEVEL), self.stranded))


def objective_of_counts(cluster: Cluster, counts: np.ndarray, gpus_used: np.ndarray, counted: int) -> ObjectiveValue:
    """ObjectiveValue a placement given as pods per node (``counts``) and GPUs it takes per node.

    counts : int64[n_nodes] (all pod sets together); gpus_used : int64[n_nodes], zero where
    ``counts`` is zero. Only the used nodes and the domains they touch are visited.
    """
    nodes = np.flatnonzero(counts)
    return objective_of_nodes(cluster, nodes, np.asarray(gpus_used)[nodes], int(np.asarray(counts)[nodes].sum()), counted)


def objective_of_nodes(cluster: Cluster, nodes: np.ndarray, taken: np.ndarray, pods_placed: int, counted: int) -> ObjectiveValue:
    """``objective_of_counts`` from the used nodes (increasing ids) and the GPUs taken on each of them."""
    n_out = len(cluster.levels) + 1
    domains = np.empty(n_out, np.int64)
    stranded = np.empty(n_out, np.int64)
    evaluate_nodes(nodes.astype(np.int64, copy=False), taken.astype(np.int64, copy=False), cluster.free_gpus,
                   cluster.node_domain, cluster.domain_start, cluster.domain_end, domains, stranded)
    return ObjectiveValue(pods_placed, tuple(domains.tolist()), tuple(stranded.tolist()), counted)


def node_paths(cluster: Cluster, counts: np.ndarray) -> tuple[str, ...]:
    """Part (4): the sorted paths of the chosen nodes."""
    return tuple(sorted(cluster.node_path(int(i)) for i in np.flatnonzero(counts)))

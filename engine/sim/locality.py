"""Locality cost model: a gang spread over more topology levels runs slower.

The simulator stretches a job's run time by ``1 + slowdown`` where ``slowdown`` depends on the
*highest* topology level the gang crosses (traffic between its pods must go at least that far up
the network). Levels are counted from the bottom, so one table fits every preset:

=====  ========================================================  =================  =======
index  the gang spans more than one ...                            dgx-h100 meaning   default
=====  ========================================================  =================  =======
0      node, but stays in one lowest-level domain                  nodes in one SU    0.00
1      lowest-level domain (rack / SU / edge), in one parent       SUs in one block   0.05
2      domain two levels up                                         blocks in one zone 0.15
3+     domain three (or more) levels up (the last value repeats)    zones              0.30
=====  ========================================================  =================  =======

A gang inside one node never slows down. The defaults are assumptions for illustration, in
the range reported for all-reduce-heavy training when traffic leaves a leaf switch or NVLink
domain (a few percent) and crosses an oversubscribed spine (more); they are configurable
(``gangplace simulate --slowdown 0,0.05,0.15,0.3``) and can be switched off (``--slowdown 0``).
"""
from __future__ import annotations

import math

import numpy as np

from ..model.errors import InvalidRequest

DEFAULT_SLOWDOWN: tuple[float, ...] = (0.0, 0.05, 0.15, 0.30)


def parse_slowdown(text: str) -> tuple[float, ...]:
    """``"0,0.05,0.15"`` -> (0.0, 0.05, 0.15); each value >= 0."""
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InvalidRequest(f"expected comma-separated numbers, got {text!r}", field="slowdown") from None
    if not values or any(v < 0 or not math.isfinite(v) for v in values):
        raise InvalidRequest(f"expected one or more numbers >= 0, got {text!r}", field="slowdown")
    return values


def crossed_level(domains: np.ndarray) -> int:
    """Highest level crossed, counted from the bottom: -1 = one node, 0 = several nodes in one
    lowest-level domain, 1 = several lowest-level domains, ... ``len(levels)`` = several top domains.

    domains : int[n_levels + 1], domains used per level top first, the node count last.
    """
    n = len(domains)
    for k in range(n):  # k = 0 is the top level
        if domains[k] > 1:
            return n - 1 - k
    return -1


def domains_spanned(node_domain: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Domains a gang on ``nodes`` spans per level (``node_domain``'s rows, top first), then its node
    count: int64[n_levels + 1], the ``domains`` that ``slowdown_factor`` and the locality verdict read."""
    out = np.empty(node_domain.shape[0] + 1, np.int64)
    for lv in range(node_domain.shape[0]):
        out[lv] = np.unique(node_domain[lv, nodes]).size
    out[-1] = len(nodes)
    return out


def slowdown_factor(domains: np.ndarray, slowdown: tuple[float, ...] = DEFAULT_SLOWDOWN) -> float:
    """Run-time multiplier (>= 1) for a gang using ``domains`` (see ``crossed_level``)."""
    lv = crossed_level(domains)
    if lv < 0 or not slowdown:
        return 1.0
    return 1.0 + slowdown[min(lv, len(slowdown) - 1)]


def stretched_duration(duration_s: int, factor: float) -> int:
    """Whole seconds, never shorter than the base duration."""
    return max(int(duration_s), int(math.ceil(duration_s * factor - 1e-9)))

"""The public entry point: ``place(cluster, gang, placer="auto") -> Placement``.

Thin on purpose: this module only re-exports. The placers live in the wings:
- ``heuristic``: the native hierarchical best fit (engine/place/heuristic.py);
- ``cpsat``: the exact CP-SAT model (engine/exact/cpsat.py), seeded with the heuristic's answer;
- ``auto``: the heuristic, then a lower-bound proof; the tree DP and CP-SAT only when the proof
  fails, within ``time_limit_ms``; the better answer is kept (engine/exact/auto.py, which also
  holds ``place`` and ``solve``: validate with engine/place/request.py, run a placer, wrap the
  answer with engine/place/solution.py).
"""
from __future__ import annotations

from .exact.auto import DEFAULT_TIME_LIMIT_MS, PLACERS, place, solve

__all__ = ["DEFAULT_TIME_LIMIT_MS", "PLACERS", "place", "solve"]

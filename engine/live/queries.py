"""Questions about the live state that change nothing: a placement answered at once, an explanation.

The gRPC server's ``Place`` (without a reservation) and ``Explain`` ask these; they run the same
engine calls as everything else (``exact.auto.place``, ``place.explain``) on a state snapshot.
"""
from __future__ import annotations

from ..exact.auto import place
from ..model.types import GangRequest, Placement
from ..place.explain import explain
from ..place.request import prepare
from .state import ClusterState


def place_at_once(state: ClusterState, gang: GangRequest, placer: str, time_limit_ms: float) -> Placement | None:
    """The native heuristic's answer when it is final and its cost bounded, else None.

    One pod set is one call of the native kernel (tens of microseconds at 16k GPUs, under a
    millisecond at 131k: O(nodes x levels)), cheaper than a hop to a worker thread and back
    (~0.1-0.2 ms of wake-ups), so an event loop may call this inline. The answer is final when the
    placer is ``heuristic``, or when its lower bounds prove it optimal: exactly when ``auto`` would
    return it unchanged. Everything else (the DP and CP-SAT, several pod sets, a busy state lock,
    a pending rebuild, many reservations to subtract) returns None: call ``state.place`` off the loop.
    """
    if placer == "cpsat" or len(gang.pod_sets) != 1:
        return None
    snap = state.try_snapshot()
    if snap is None:
        return None
    placement = place(snap, gang, "heuristic", time_limit_ms=time_limit_ms)
    if placer == "heuristic" or placement.optimal:
        return placement
    return None


def explain_now(state: ClusterState, gang: GangRequest) -> tuple[bool, str, dict]:
    """(fits now, one-line reason, the explanation: per level, how many pods one domain holds)."""
    snap = state.snapshot()
    placement = place(snap, gang, "heuristic")
    if placement.placed:
        _, explanation = explain(snap, prepare(snap, gang))
        nodes = len(set(placement.nodes))
        return True, f"gang '{gang.name}' fits now: {len(placement.pods)} pods on {nodes} nodes", explanation
    return False, placement.reason, dict(placement.explanation or {})

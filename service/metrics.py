"""Prometheus metrics for one server instance (its own registry, so tests can run several).

- ``gangplace_request_seconds{transport, verb}``: latency histogram per gRPC method / HTTP route;
- ``gangplace_placements_total{placer, result}``: placements answered (placed / not_placed);
- ``gangplace_reservations_total{event}``: reservations created / released;
- ``gangplace_solver_seconds{verb}``: time inside the engine (off the event loop);
- ``gangplace_rejections_total{kind}``: requests refused or failed, by kind (invalid_argument,
  not_placed, deadline_exceeded, unimplemented, too_large, internal, ...);
- gauges read from the live state at scrape time: version, nodes, GPUs, free GPUs, reservations;
- the extender's decisions: ``gangplace_extender_events_total{event}`` (filter outcomes by
  verdict, gangs planned / re-planned / rejected and why, binds by result, preemptions), read from
  the planner's counters at scrape time, and ``gangplace_gangs_waiting`` (gangs with members held
  at the bind barrier).
"""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the HTTP handler)

# request latencies are sub-millisecond to seconds: fine buckets at the low end
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5,
                   5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram("gangplace_request_seconds", "Request latency by transport and verb",
                                         ("transport", "verb"), buckets=LATENCY_BUCKETS, registry=r)
        self.placements = Counter("gangplace_placements_total", "Placements answered",
                                  ("placer", "result"), registry=r)
        self.reservations = Counter("gangplace_reservations_total", "Reservation events", ("event",), registry=r)
        self.solver_seconds = Histogram("gangplace_solver_seconds",
                                        "Engine time per request (worker pool, or inline on the loop)",
                                        ("verb",), buckets=LATENCY_BUCKETS, registry=r)
        self.rejections = Counter("gangplace_rejections_total", "Requests refused or failed, by kind",
                                  ("kind",), registry=r)
        self.state_version = Gauge("gangplace_state_version", "Live state version", registry=r)
        self.nodes = Gauge("gangplace_nodes", "Nodes in the live cluster", registry=r)
        self.gpus = Gauge("gangplace_gpus", "GPUs in the live cluster", registry=r)
        self.free_gpus = Gauge("gangplace_free_gpus", "Free GPUs (reservations count as taken)", registry=r)
        self.active_reservations = Gauge("gangplace_active_reservations", "Reservations held now", registry=r)
        self.binds_durable = Gauge("gangplace_binds_durable",
                                   "1 when acknowledged binds survive a restart (a journal, or Kubernetes as the record); "
                                   "0 in ephemeral mode: a restart forgets every bind", registry=r)
        self.pod_cache_bytes = Gauge("gangplace_pod_cache_bytes",
                                     "JSON bytes of the pods the extender keeps parsed (limits.pod_cache_max_bytes)",
                                     registry=r)
        self.gangs_waiting = Gauge("gangplace_gangs_waiting", "Gangs with members held at the bind barrier",
                                   registry=r)
        self._events: dict[str, int] = {}
        r.register(_EventCollector(lambda: self._events))
        self._refresh: Callable[["Metrics"], None] | None = None

    def watch_events(self, counters: dict[str, int]) -> None:
        """Export ``counters`` (the extender's and planner's event counts, updated in place by them)."""
        self._events = counters

    def on_scrape(self, refresh: Callable[["Metrics"], None]) -> None:
        """Call ``refresh(self)`` before each exposition (to read gauges from the state)."""
        self._refresh = refresh

    def observe_placement(self, placement) -> None:
        self.placements.labels(placement.placer or "none", "placed" if placement.placed else "not_placed").inc()
        if not placement.placed:
            self.rejections.labels("not_placed").inc()

    def expose(self) -> bytes:
        if self._refresh is not None:
            try:
                self._refresh(self)
            except Exception:  # a scrape must never fail because a gauge could not be read
                pass
        return generate_latest(self.registry)


class _EventCollector:
    """``gangplace_extender_events_total{event}`` from a dict of counts (read at scrape time)."""

    def __init__(self, counts: Callable[[], dict[str, int]]):
        self._counts = counts

    def collect(self):
        family = CounterMetricFamily("gangplace_extender_events", "Extender and gang planner events, by event",
                                     labels=("event",))
        for event, n in sorted(dict(self._counts()).items()):
            family.add_metric((event,), n)
        yield family

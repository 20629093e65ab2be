"""A typed Python client for gangplace.v1: engine dataclasses in, engine dataclasses out.

    from gangplace.service.client import GangplaceClient
    with GangplaceClient("127.0.0.1:50051") as c:
        placement = c.place(GangRequest.load("gang.yaml"), reserve=True)   # -> Placement
        c.release(placement.gang)

TLS: ``GangplaceClient(target, tls=ClientTLS(ca="ca.crt", cert="client.crt", key="client.key"))``.
INVALID_ARGUMENT comes back as ``InvalidRequest`` (``field`` set from the server's message); any
other failure as ``ServiceError`` carrying the gRPC status code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import grpc
import orjson

from gangplace.engine.model.cluster import Cluster
from gangplace.engine.model.errors import InvalidRequest
from gangplace.engine.model.types import GangRequest, NodeSpec, Placement, PodAssignment

from . import convert
from . import gangplace_pb2 as pb
from . import gangplace_pb2_grpc as pb_grpc
from .tls import ClientTLS

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT_S = 30.0


class ServiceError(Exception):
    """The server answered with an error other than INVALID_ARGUMENT, or could not be reached."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass(frozen=True, slots=True)
class Explanation:
    fits: bool
    reason: str
    explanation: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Victim:
    gang: str
    priority: int
    gpus: int
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PreemptionPlan:
    feasible: bool
    victims: tuple[Victim, ...]
    placement: Placement | None
    evicted_gpus: int
    cost: float
    reason: str
    optimal: bool = False  # the victim set is proved cheapest


@dataclass(frozen=True, slots=True)
class ReservationInfo:
    gang: str
    pods: tuple[PodAssignment, ...]
    expires_in_s: float


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """A consistent read of the server's live cluster. Node usage includes reservations."""

    version: int
    levels: tuple[str, ...]
    nodes: tuple[NodeSpec, ...]
    reservations: tuple[ReservationInfo, ...]
    node_count: int
    total_gpus: int
    free_gpus: int
    stats: Mapping[str, Any] = field(default_factory=dict)

    def cluster(self) -> Cluster:
        """The snapshot as an engine Cluster (needs ``include_nodes=True``)."""
        return Cluster(self.levels, self.nodes)


_FIELD = re.compile(r"[\w.\[\]/-]+(?: \([^)]*\))?[\w.\[\]/-]*")


def _split_field(details: str) -> tuple[str | None, str]:
    """'pod_sets[0].count: must be ...' -> ('pod_sets[0].count', 'must be ...')."""
    head, sep, rest = details.partition(": ")
    if sep and _FIELD.fullmatch(head):
        return head, rest
    return None, details


class GangplaceClient:
    """Blocking client; one channel, safe to share between threads."""

    def __init__(self, target: str = DEFAULT_TARGET, *, tls: ClientTLS | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, max_message_bytes: int = 64 * 2**20):
        self.target = target
        self.timeout_s = timeout_s
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if tls is not None:
            self.channel = grpc.secure_channel(target, tls.grpc_credentials(), options=options + tls.grpc_options())
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = pb_grpc.GangplaceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "GangplaceClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, request, timeout_s: float | None = None):
        try:
            return getattr(self.stub, method)(request, timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as e:
            code, details = e.code(), e.details() or ""
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                fld, msg = _split_field(details)
                raise InvalidRequest(msg, field=fld) from None
            raise ServiceError(code, details) from None

    # ------------------------------------------------------------------ placement
    def place(self, gang: GangRequest, *, placer: str = "", time_limit_ms: float = 0.0, reserve: bool = False,
              reservation_ttl_s: float = 0.0, timeout_s: float | None = None) -> Placement:
        """Place a gang on the live cluster (``reserve``: hold the answer until released or expired)."""
        r = self._call("Place", pb.PlaceRequest(gang=convert.gang_to_proto(gang), placer=placer,
                                                time_limit_ms=time_limit_ms, reserve=reserve,
                                                reservation_ttl_s=reservation_ttl_s), timeout_s)
        return convert.placement_from_proto(r.placement)

    def place_batch(self, gangs: Sequence[GangRequest], *, placer: str = "", time_limit_ms: float = 0.0,
                    timeout_s: float | None = None) -> list[Placement]:
        r = self._call("PlaceBatch", pb.PlaceBatchRequest(gangs=[convert.gang_to_proto(g) for g in gangs],
                                                          placer=placer, time_limit_ms=time_limit_ms), timeout_s)
        return [convert.placement_from_proto(p) for p in r.placements]

    def release(self, gang: str) -> bool:
        return self._call("Release", pb.ReleaseRequest(gang=gang)).released

    def explain(self, gang: GangRequest) -> Explanation:
        r = self._call("Explain", pb.ExplainRequest(gang=convert.gang_to_proto(gang)))
        return Explanation(r.fits, r.reason, orjson.loads(r.explanation_json) if r.explanation_json else {})

    def plan_preemption(self, gang: GangRequest, *, placer: str = "") -> PreemptionPlan:
        r = self._call("PlanPreemption", pb.PlanPreemptionRequest(gang=convert.gang_to_proto(gang), placer=placer))
        return PreemptionPlan(
            feasible=r.feasible,
            victims=tuple(Victim(v.gang, v.priority, v.gpus, tuple(v.nodes)) for v in r.victims),
            placement=convert.placement_from_proto(r.placement) if r.HasField("placement") else None,
            evicted_gpus=r.evicted_gpus, cost=r.cost, reason=r.reason, optimal=r.optimal)

    # ------------------------------------------------------------------ cluster updates
    def upsert_nodes(self, nodes: Iterable[NodeSpec]) -> int:
        """Add or replace nodes; returns the new state version."""
        return self._call("UpsertNodes", pb.UpsertNodesRequest(nodes=[convert.node_to_proto(n) for n in nodes])
                          ).state_version

    def remove_nodes(self, names: Iterable[str]) -> int:
        """Remove nodes by name; returns how many existed."""
        return self._call("RemoveNodes", pb.RemoveNodesRequest(names=list(names))).applied

    def bind(self, pod: str, node: str, *, gpus: int, cpu: int = 0, memory: int = 0, gang: str = "",
             priority: int = 0) -> int:
        """Record a running pod (its capacity becomes allocated); returns the new state version."""
        return self.bind_many([pb.PodBinding(pod=pod, node=node, gpus=gpus, cpu=cpu, memory=memory, gang=gang,
                                             priority=priority)])

    def bind_many(self, bindings: Iterable) -> int:
        """Bind several pods at once, all or none. Items: ``PodBinding`` messages or
        ``engine.state.BindRecord``s."""
        msgs = []
        for b in bindings:
            if isinstance(b, pb.PodBinding):
                msgs.append(b)
            else:
                msgs.append(pb.PodBinding(pod=b.pod_uid, node=b.node, gpus=b.gpus, cpu=b.cpu, memory=b.memory,
                                          gang=b.gang or "", priority=b.priority))
        return self._call("BindPods", pb.BindPodsRequest(pods=msgs)).state_version

    def unbind(self, pods: Iterable[str]) -> int:
        """Forget pods' allocations; returns how many were known."""
        return self._call("UnbindPods", pb.UnbindPodsRequest(pods=list(pods))).applied

    def snapshot(self, *, include_nodes: bool = True) -> ClusterSnapshot:
        r = self._call("GetSnapshot", pb.SnapshotRequest(include_nodes=include_nodes))
        return ClusterSnapshot(
            version=r.version, levels=tuple(r.levels),
            nodes=tuple(convert.node_spec_from_proto_trusted(n) for n in r.nodes),
            reservations=tuple(ReservationInfo(x.gang, tuple(PodAssignment(p.pod_set, p.index, p.node) for p in x.pods),
                                               x.expires_in_s) for x in r.reservations),
            node_count=r.node_count, total_gpus=r.total_gpus, free_gpus=r.free_gpus,
            stats=orjson.loads(r.stats_json) if r.stats_json else {})

    # ------------------------------------------------------------------ extender, health
    def extender(self, verb: str, args: Mapping[str, Any] | bytes) -> tuple[int, Any]:
        """One kube-scheduler extender verb with its JSON body; returns (HTTP status, parsed body)."""
        body = args if isinstance(args, bytes) else orjson.dumps(args)
        r = self._call("Extender", pb.ExtenderRequest(verb=verb, args_json=body))
        return r.http_status, (orjson.loads(r.result_json) if r.result_json else None)

    def ping(self) -> None:
        self._call("Ping", pb.PingRequest())

    def health(self, service: str = "") -> str:
        """The standard health check: "SERVING", "NOT_SERVING", ..."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            r = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout_s)
        except grpc.RpcError as e:
            raise ServiceError(e.code(), e.details() or "") from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

"""The gangplace.v1 gRPC servicer on ``grpc.aio``: converts messages, calls the live state
(engine/live/state.py), maps errors to status codes. No placement logic here.

- Engine work (placing, explaining, batch, preemption plans, snapshots) runs in a thread pool
  (``run_in_executor``), never on the event loop, under a per-request time limit
  (``request_timeout_s``: DEADLINE_EXCEEDED; the engine call itself is bounded by its
  ``time_limit_ms`` and finishes in the background).
- Bad input answers INVALID_ARGUMENT naming the field and changes nothing (the engine validates
  before it writes); a gang that does not fit is a normal answer (``placed=false``).
- Optional engine parts (engine/exact/batch.py, engine/exact/preempt.py) are imported when first called;
  a build without them answers UNIMPLEMENTED.
- The standard health service (grpc.health.v1) and server reflection are registered.

``create_server(state, address, tls=None) -> (server, port)`` binds (port 0: any free port) and
returns the server unstarted; ``await server.start()`` in the loop that will serve it.
"""
from __future__ import annotations

import asyncio
import errno
import functools
import importlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import grpc
import orjson
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gangplace.engine.live.queries import explain_now, place_at_once
from gangplace.engine.live.state import BindRecord
from gangplace.engine.model.errors import GangplaceError, InvalidRequest
from gangplace.engine.model.types import GangRequest

from . import convert
from . import gangplace_pb2 as pb
from . import gangplace_pb2_grpc as pb_grpc
from .config import PLACERS, ServeConfig, TLSConfig
from .extender_wire import BadBody, check_pod_limits, loads_strict
from .metrics import Metrics
from .tls import grpc_server_credentials

log = logging.getLogger("gangplace.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Gangplace"].full_name  # "gangplace.v1.Gangplace"
EXTENDER_VERBS = ("filter", "prioritize", "bind", "preempt")
MIN_RESERVATION_TTL_S = 0.1


class Unimplemented(Exception):
    """An optional part of the engine is not in this build."""


class Overloaded(Exception):
    """The engine already has ``limits.engine_queue`` calls running or waiting."""


def over_limit(what: str, got: int, limit: int, key: str, field: str) -> InvalidRequest:
    return InvalidRequest(f"{got} {what}; the server's limit is {limit} (limits.{key})", field=field)


def _rpc(verb: str):
    """Time the call, count rejections and map exceptions to status codes."""
    def deco(method):
        @functools.wraps(method)
        async def wrapper(self: "GangplaceServicer", request, context):
            t0 = time.perf_counter()
            try:
                return await method(self, request, context)
            except GangplaceError as e:
                code, kind, detail = grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", str(e)
            except Unimplemented as e:
                code, kind, detail = grpc.StatusCode.UNIMPLEMENTED, "unimplemented", str(e)
            except Overloaded as e:
                code, kind, detail = grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded", str(e)
            except asyncio.TimeoutError:
                code, kind = grpc.StatusCode.DEADLINE_EXCEEDED, "deadline_exceeded"
                detail = f"{verb} took longer than the server's {self.request_timeout_s:g} s limit"
            except OSError as e:  # the journal (disk full, read-only, out of descriptors): retry later
                code, kind = _os_error_code(e), "unavailable"
                detail = f"{verb} not done: {e}; retry (/readyz says when the journal is healthy again)"
            except Exception as e:  # a bug: answer INTERNAL, keep serving
                log.exception("internal error in %s", verb)
                code, kind, detail = grpc.StatusCode.INTERNAL, "internal", f"internal error: {type(e).__name__}: {e}"
            finally:
                self.metrics.request_seconds.labels("grpc", verb).observe(time.perf_counter() - t0)
            self.metrics.rejections.labels(kind).inc()
            log.info("rejected", extra={"verb": verb, "code": code.name, "detail": detail})
            await context.abort(code, detail)
        return wrapper
    return deco


class GangplaceServicer(pb_grpc.GangplaceServicer):
    def __init__(self, state, *, config: ServeConfig | None = None, metrics: Metrics | None = None,
                 extender=None, executor: ThreadPoolExecutor | None = None):
        cfg = config or ServeConfig()
        self.state = state
        self.extender = extender
        self.metrics = metrics or Metrics()
        self.placer = cfg.placer
        self.time_limit_ms = cfg.time_limit_ms
        self.reservation_ttl_s = cfg.reservation_ttl_s
        self.request_timeout_s = cfg.request_timeout_s
        self.limits = cfg.limits
        self._running: dict[int, float] = {}  # engine calls in a worker thread: id -> start (perf_counter)
        self._queued = 0  # engine calls submitted and not finished (running or waiting for a worker)
        # two workers: the machine budget is 2 cores; the state serialises writers anyway
        self.executor = executor or ThreadPoolExecutor(max_workers=2, thread_name_prefix="gangplace-engine")

    async def _engine(self, verb: str, fn: Callable, *args, **kwargs) -> Any:
        """Run engine work off the event loop, timed, within the request time limit; refused at
        once (RESOURCE_EXHAUSTED) when ``limits.engine_queue`` calls are already in."""
        if self._queued >= self.limits.engine_queue:
            raise Overloaded(f"the engine is busy: {self._queued} calls running or waiting (limits.engine_queue); "
                             f"retry later")
        loop = asyncio.get_running_loop()

        def timed():
            t0 = time.perf_counter()
            self._running[id(t0)] = t0
            try:
                return fn(*args, **kwargs)
            finally:
                self._running.pop(id(t0), None)
                self.metrics.solver_seconds.labels(verb).observe(time.perf_counter() - t0)
        self._queued += 1
        try:
            async with asyncio.timeout(self.request_timeout_s):  # cheaper than wait_for: no extra task
                return await loop.run_in_executor(self.executor, timed)
        finally:
            self._queued -= 1

    def saturated(self) -> str | None:
        """Why the engine cannot take more work now (None: it can), for /readyz: its queue is
        full, or a call has been running longer than the request time limit."""
        if self._queued >= self.limits.engine_queue:
            return f"engine saturated: {self._queued} calls running or waiting (limits.engine_queue)"
        now = time.perf_counter()
        oldest = max((now - t for t in list(self._running.values())), default=0.0)
        if oldest > self.request_timeout_s:
            return f"engine saturated: a call has been running for {oldest:.0f} s (request_timeout_s {self.request_timeout_s:g})"
        return None

    def _gang(self, msg: pb.Gang, field: str = "") -> GangRequest:
        """A Gang message within the limits, converted (checked before any conversion work)."""
        lim = self.limits
        field = f"{field}." if field else ""
        if len(msg.pod_sets) > lim.max_pod_sets:
            raise over_limit("pod sets", len(msg.pod_sets), lim.max_pod_sets, "max_pod_sets", f"{field}pod_sets")
        pods = sum(ps.count for ps in msg.pod_sets)
        if pods > lim.max_gang_pods:
            raise over_limit("pods", pods, lim.max_gang_pods, "max_gang_pods", f"{field}pod_sets")
        for i, ps in enumerate(msg.pod_sets):
            size = sum(len(k) + len(v) for k, v in ps.node_selector.items())
            if size > lim.max_selector_bytes:
                raise over_limit("bytes of node selector", size, lim.max_selector_bytes, "max_selector_bytes",
                                 f"{field}pod_sets[{i}].node_selector")
        return convert.gang_from_proto(msg)

    def _items(self, items, field: str):
        if len(items) > self.limits.max_items_per_request:
            raise over_limit(field, len(items), self.limits.max_items_per_request, "max_items_per_request", field)
        return items

    def _options(self, request) -> dict:
        placer = _check_placer(request.placer or self.placer)
        limit = self._check_time_limit(request.time_limit_ms) or self.time_limit_ms
        return {"placer": placer, "time_limit_ms": limit}

    def _check_time_limit(self, value: float) -> float:
        """A solver budget the request limit can hold (a worker thread must not be tied up longer)."""
        convert.check_nonnegative(value, "time_limit_ms")
        if value > self.request_timeout_s * 1e3:
            raise InvalidRequest(f"must be at most the server's request limit ({self.request_timeout_s * 1e3:g} ms), "
                                 f"got {value:g}", field="time_limit_ms")
        return value

    # ------------------------------------------------------------------ placement
    @_rpc("Place")
    async def Place(self, request: pb.PlaceRequest, context) -> pb.PlaceResponse:
        gang = self._gang(convert.require_gang(request))
        opts = self._options(request)
        ttl = convert.check_nonnegative(request.reservation_ttl_s, "reservation_ttl_s") or self.reservation_ttl_s
        if ttl < MIN_RESERVATION_TTL_S:  # a reservation that expires before the answer arrives holds nothing
            raise InvalidRequest(f"must be 0 (the server's default) or at least {MIN_RESERVATION_TTL_S:g} s, "
                                 f"got {ttl:g}", field="reservation_ttl_s")
        if request.reserve:
            placement = await self._engine("Place", self.state.place, gang, reserve=True, ttl_s=ttl,
                                           idempotent=True, **opts)
            if placement.placed:
                self.metrics.reservations.labels("created").inc()
        else:
            placement = self._place_inline(gang, opts)
            if placement is None:
                placement = await self._engine("Place", self.state.place, gang, **opts)
        self.metrics.observe_placement(placement)
        return pb.PlaceResponse(placement=convert.placement_to_proto(placement),
                                reserved=bool(request.reserve and placement.placed), state_version=self.state.version)

    def _place_inline(self, gang, opts: dict):
        """``place_at_once`` on the event loop: the heuristic's answer when it is final and cheap
        (a kernel call costs less than the hop to the worker pool), else None."""
        t0 = time.perf_counter()
        placement = place_at_once(self.state, gang, opts["placer"], opts["time_limit_ms"])
        if placement is not None:
            self.metrics.solver_seconds.labels("Place").observe(time.perf_counter() - t0)
        return placement

    @_rpc("PlaceBatch")
    async def PlaceBatch(self, request: pb.PlaceBatchRequest, context) -> pb.PlaceBatchResponse:
        if not request.gangs:
            raise InvalidRequest("must hold at least one gang", field="gangs")
        self._items(request.gangs, "gangs")
        gangs = []
        for i, g in enumerate(request.gangs):
            try:
                gangs.append(self._gang(g, ""))
            except GangplaceError as e:
                raise InvalidRequest(e.message, field=f"gangs[{i}].{e.field}" if e.field else f"gangs[{i}]") from None
        names = [g.name for g in gangs]
        for i, n in enumerate(names):
            if names.index(n) != i:
                raise InvalidRequest(f"duplicate gang name {n!r}", field=f"gangs[{i}].name")
        opts = {"placer": _check_placer(request.placer or self.placer)}
        if self._check_time_limit(request.time_limit_ms):
            opts["time_limit_ms"] = request.time_limit_ms  # else the engine's batch default
        place_batch = _optional("gangplace.engine.exact.batch", "place_batch", "PlaceBatch")
        t0 = time.perf_counter()

        def run():
            return place_batch(self.state.snapshot(), gangs, **opts)
        result = await self._engine("PlaceBatch", run)
        placements = list(result.placements)  # input order
        if [p.gang for p in placements] != names:
            raise RuntimeError(f"place_batch answered for {[p.gang for p in placements]}, asked for {names}")
        for p in placements:
            self.metrics.observe_placement(p)
        return pb.PlaceBatchResponse(placements=[convert.placement_to_proto(p) for p in placements],
                                     placed=sum(p.placed for p in placements),
                                     elapsed_ms=(time.perf_counter() - t0) * 1e3, state_version=self.state.version,
                                     method=getattr(result, "method", ""), optimal=bool(getattr(result, "optimal", False)))

    @_rpc("Release")
    async def Release(self, request: pb.ReleaseRequest, context) -> pb.ReleaseResponse:
        if not request.gang:
            raise InvalidRequest("is required", field="gang")
        released = self.state.release(request.gang)  # a dict pop under the lock: cheap
        if released:
            self.metrics.reservations.labels("released").inc()
        if self.extender is not None and hasattr(self.extender, "gang_released"):
            self.extender.gang_released(request.gang, f"gang {request.gang[:256]}'s reservation was released (gRPC "
                                                      f"Release) while members waited in bind; nothing was bound")
        return pb.ReleaseResponse(released=released, state_version=self.state.version)

    @_rpc("Explain")
    async def Explain(self, request: pb.ExplainRequest, context) -> pb.ExplainResponse:
        gang = self._gang(convert.require_gang(request))
        fits, reason, explanation = await self._engine("Explain", explain_now, self.state, gang)
        return pb.ExplainResponse(fits=fits, reason=reason, explanation_json=convert.json_text(explanation))

    @_rpc("PlanPreemption")
    async def PlanPreemption(self, request: pb.PlanPreemptionRequest, context) -> pb.PlanPreemptionResponse:
        gang = self._gang(convert.require_gang(request))
        placer = _check_placer(request.placer or self.placer)
        plan_preemption = _optional("gangplace.engine.exact.preempt", "plan_preemption", "PlanPreemption")

        def run():
            return plan_preemption(self.state.snapshot(), gang, placer=placer)
        plan = await self._engine("PlanPreemption", run)
        return convert.preemption_to_proto(plan)

    # ------------------------------------------------------------------ cluster updates
    @_rpc("UpsertNodes")
    async def UpsertNodes(self, request: pb.UpsertNodesRequest, context) -> pb.ClusterUpdateResponse:
        levels = self.state.levels
        specs = [convert.node_from_proto(n, i, levels) for i, n in enumerate(self._items(request.nodes, "nodes"))]
        await self._engine("UpsertNodes", self.state.upsert_nodes, specs)
        return pb.ClusterUpdateResponse(applied=len(specs), state_version=self.state.version)

    @_rpc("RemoveNodes")
    async def RemoveNodes(self, request: pb.RemoveNodesRequest, context) -> pb.ClusterUpdateResponse:
        names = convert.check_names(self._items(request.names, "names"), "names")
        applied = await self._engine("RemoveNodes", self.state.remove_nodes, names)  # journaled, one fsync
        return pb.ClusterUpdateResponse(applied=applied, state_version=self.state.version)

    @_rpc("BindPods")
    async def BindPods(self, request: pb.BindPodsRequest, context) -> pb.ClusterUpdateResponse:
        records = []
        for i, p in enumerate(self._items(request.pods, "pods")):
            for name in ("pod", "node"):
                if not getattr(p, name):
                    raise InvalidRequest("is required", field=f"pods[{i}].{name}")
            for name in ("gpus", "cpu", "memory"):
                if getattr(p, name) < 0:
                    raise InvalidRequest(f"must be >= 0, got {getattr(p, name)}", field=f"pods[{i}].{name}")
            records.append(BindRecord(pod_uid=p.pod, node=p.node, gpus=p.gpus, cpu=p.cpu, memory=p.memory,
                                      gang=p.gang or None, priority=p.priority, started=time.time()))
        try:
            await self._engine("BindPods", self.state.bind_many, records)  # all or none, one fsync
        except GangplaceError as e:  # the state names records[i]; our callers sent pods[i]
            raise InvalidRequest(e.message, field=(e.field or "pods").replace("records[", "pods[")) from None
        return pb.ClusterUpdateResponse(applied=len(records), state_version=self.state.version)

    @_rpc("UnbindPods")
    async def UnbindPods(self, request: pb.UnbindPodsRequest, context) -> pb.ClusterUpdateResponse:
        uids = convert.check_names(self._items(request.pods, "pods"), "pods")

        def run():  # one journal write and one (shared) fsync for the batch, outside the state lock
            return sum(self.state.unbind_many(uids))
        applied = await self._engine("UnbindPods", run)
        if self.extender is not None:  # the pods are gone: the extender forgets them too (its pod cache
            for u in uids:             # otherwise keeps ~1 KB per finished pod, up to its 200,000 cap)
                self.extender.pod_deleted(u)
        return pb.ClusterUpdateResponse(applied=applied, state_version=self.state.version)

    @_rpc("GetSnapshot")
    async def GetSnapshot(self, request: pb.SnapshotRequest, context) -> pb.Snapshot:
        return await self._engine("GetSnapshot", _snapshot, self.state, request.include_nodes)

    # ------------------------------------------------------------------ extender, ping
    @_rpc("Extender")
    async def Extender(self, request: pb.ExtenderRequest, context) -> pb.ExtenderResponse:
        verb = request.verb.lower()
        if verb not in EXTENDER_VERBS:
            raise InvalidRequest(f"unknown verb {request.verb!r}; choose one of {list(EXTENDER_VERBS)}", field="verb")
        if self.extender is None:
            raise Unimplemented("this server runs without the kube-scheduler extender")
        status, body = await extender_call(self.extender, verb, request.args_json)
        return pb.ExtenderResponse(http_status=status, result_json=body)

    # ------------------------------------------------------------------ scheduler plugin
    def _member(self, request: pb.PlanMemberRequest):
        """The extender (gang planner) and the request's pod as a ``Member``; the member is None
        while the cluster state is not synced yet. Bad JSON or labels: INVALID_ARGUMENT."""
        from .gangs import member_of
        ext = self.extender
        if ext is None:
            raise Unimplemented("the plugin's methods need the gang planner of `gangplace serve` (no extender here)")
        try:
            pod_json = orjson.loads(request.pod_json)
        except orjson.JSONDecodeError as e:
            raise InvalidRequest(f"not JSON: {e}", field="pod_json") from None
        if not isinstance(pod_json, dict):
            raise InvalidRequest("must be a JSON object (a Pod)", field="pod_json")
        if not ext.ready:
            return ext, None
        return ext, member_of(ext.parse(pod_json))  # bad labels: INVALID_ARGUMENT naming the label

    @_rpc("PlanMember")
    async def PlanMember(self, request: pb.PlanMemberRequest, context) -> pb.PlanMemberResponse:
        """The gang planner's decision for one pod, as the extender's filter asks it (parse the
        Pod, ``GangPlanner.decide`` on the loop when no placement is needed, else in the pool).
        A placed gang member's answer carries the gang's free slots (``_gang_plan``)."""
        ext, member = self._member(request)
        if member is None:
            return pb.PlanMemberResponse(verdict=pb.PlanMemberResponse.WAIT, reason="cluster state not synced yet")
        ext.tick()
        names = list(request.nodes) or self.state.node_names()
        if member.gang is not None:
            for i, c in enumerate(request.claimed):  # members the plugin gave slots of an earlier answer
                if not c.pod_uid or not c.node:
                    raise InvalidRequest("pod_uid and node are required", field=f"claimed[{i}]")
                self.state.claim(member.gang, c.pod_uid, nodes=(c.node,))
        decision = ext.planner.decide(member, names, plan=False)
        if decision is None:
            decision = await self._engine("PlanMember", ext.planner.decide, member, names)
        size = member.gang_size or 0
        out = pb.PlanMemberResponse(
            verdict=_VERDICTS[decision.verdict.value], nodes=list(decision.nodes), reason=decision.reason,
            gang=member.gang or "", gang_size=size,
            min_count=min(member.min_size, size) if member.min_size and size else size)
        if member.gang is None and decision.nodes:  # a pod outside any gang: best-fit scores, as prioritize
            out.scores.update(ext.planner.scores(member, list(decision.nodes), PLAN_MEMBER_MAX_SCORE))
        elif member.gang is not None and decision.verdict.value == "place":
            _gang_plan(self.state, member.gang, out)
        return out

    @_rpc("PreemptMember")
    async def PreemptMember(self, request: pb.PlanMemberRequest, context) -> pb.PreemptMemberResponse:
        """The cheapest set of running lower-priority gangs (whole) whose eviction lets the
        member's gang fit (``plan_preemption`` over the live snapshot, for its unbound members),
        with their pods' UIDs. Changes nothing."""
        ext, member = self._member(request)
        if member is None:
            return pb.PreemptMemberResponse(reason="cluster state not synced yet")
        if member.gang is None or member.gang_size is None:
            return pb.PreemptMemberResponse(reason="not a gang member of known size")
        plan_preemption = _optional("gangplace.engine.exact.preempt", "plan_preemption", "PreemptMember")
        remaining = member.gang_size - len(self.state.gang_members(member.gang))
        if remaining <= 0:
            return pb.PreemptMemberResponse(reason=f"gang {member.gang} has all its members bound")
        min_count = None if member.min_size is None else max(1, member.min_size - (member.gang_size - remaining))
        gang = member.gang_request(remaining, min_count=min_count)
        placer = ext.planner.policy.placer

        def run():
            return plan_preemption(self.state.snapshot(), gang, placer=placer)
        plan = await self._engine("PreemptMember", run)
        out = pb.PreemptMemberResponse(feasible=bool(plan.feasible and plan.victims), optimal=plan.optimal,
                                       reason=plan.reason or ("no victims needed" if not plan.victims else ""))
        if not out.feasible:
            return out
        for v in plan.victim_details:
            out.victims.add(gang=v["gang"], priority=v["priority"], gpus=v["gpus"], nodes=v["nodes"])
        for name in plan.victims:
            if name.startswith("pod:"):
                out.victim_pods.append(name[4:])
            else:
                out.victim_pods.extend(r.pod_uid for r in self.state.gang_members(name))
        out.nodes.extend(plan.placement.nodes)
        return out

    @_rpc("Unreserve")
    async def Unreserve(self, request: pb.UnreserveRequest, context) -> pb.UnreserveResponse:
        """Give a member's slot back (``GangPlanner.forget``); with ``release_gang``, the whole
        reservation of its gang (a Permit barrier that timed out)."""
        if not request.pod_uid:
            raise InvalidRequest("is required", field="pod_uid")
        if self.extender is not None:
            self.extender.planner.forget(request.pod_uid, request.gang or None)
        elif request.gang:
            self.state.unclaim(request.gang, request.pod_uid)
        released = bool(request.release_gang and request.gang and self.state.release(request.gang))
        if released:
            self.metrics.reservations.labels("released").inc()
        return pb.UnreserveResponse(released=released, state_version=self.state.version)

    async def Ping(self, request, context) -> pb.PingResponse:
        return pb.PingResponse()


def _os_error_code(e: OSError) -> grpc.StatusCode:
    """Exhausted resources (disk space, quota, descriptors, memory) vs. anything else that a
    retry may outlast (a read-only or failing disk)."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.UNAVAILABLE


PLAN_MEMBER_MAX_SCORE = 100  # the scheduler framework's MaxNodeScore


def _gang_plan(state, key: str, out: pb.PlanMemberResponse) -> None:
    """Add gang ``key``'s free slots (unclaimed, unbound, in topology order), their pod set and the
    reservation's time left to a PlanMember answer, for the plugin to hand out to the next members
    without a call. Nothing when the gang has several pod sets (each member must say which it is)."""
    with state.lock:
        res = state.reservation(key)
        if res is None:
            return
        if len({s.pod_set for s in res.slots}) != 1:
            return
        free = [s for s in res.slots if s.pod_uid is None and not s.bound]
        ttl = res.expires_at - state.clock()
    if not free or ttl <= 0:
        return
    first = free[0]
    out.gang_slots.extend(pb.PodAssignment(pod_set=s.pod_set, index=s.index, node=s.node) for s in free)
    out.gang_pod_set.CopyFrom(pb.PodSet(name=first.pod_set, count=len(res.slots), gpus=first.gpus, cpu=first.cpu,
                                        memory=first.memory))
    out.plan_ttl_s = ttl
_VERDICTS = {"place": pb.PlanMemberResponse.PLACE, "not_now": pb.PlanMemberResponse.NOT_NOW,
             "never": pb.PlanMemberResponse.NEVER, "wait": pb.PlanMemberResponse.WAIT}


def _check_placer(placer: str) -> str:
    if placer not in PLACERS:
        raise InvalidRequest(f"unknown placer {placer!r}; choose one of {list(PLACERS)}", field="placer")
    return placer


def _optional(module: str, name: str, verb: str):
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise Unimplemented(f"{verb} needs {module}.{name}, which this build does not have") from None


def _snapshot(state, include_nodes: bool) -> pb.Snapshot:
    with state.lock:  # one consistent read: nodes, reservations and version together
        snap = state.snapshot()
        reservations = state.reservations()
        now = state.clock()
        stats = state.stats()
    msg = pb.Snapshot(levels=list(snap.levels), version=stats["version"], node_count=snap.n_nodes,
                      total_gpus=int(snap.cap_gpus.sum()), free_gpus=stats["free_gpus"],
                      stats_json=convert.json_text(stats))
    if include_nodes:
        msg.nodes.extend(convert.node_to_proto(n) for n in snap.nodes)
    for key, res in reservations.items():
        msg.reservations.add(gang=key, expires_in_s=max(0.0, res.expires_at - now),
                             pods=[pb.PodAssignment(pod_set=s.pod_set, index=s.index, node=s.node) for s in res.slots])
    return msg


async def extender_call(extender, verb: str, body: bytes) -> tuple[int, bytes]:
    """Run one extender verb on a JSON body; returns (HTTP status, JSON body)."""
    try:
        args = loads_strict(body)
        check_pod_limits(extender, args)
        out = await getattr(extender, verb)(args)
    except (orjson.JSONDecodeError, BadBody) as e:  # what the HTTP extender answers 400 for
        return 400, orjson.dumps({"Error": f"gangplace: {e}"})
    return 200, orjson.dumps(out)


# ---------------------------------------------------------------------- server
def create_server(state, address: str = "127.0.0.1:0", tls: TLSConfig | None = None, *,
                  config: ServeConfig | None = None, metrics: Metrics | None = None, extender=None,
                  servicer: GangplaceServicer | None = None) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server with the gangplace, health and reflection services, bound to
    ``address`` (plaintext, or TLS/mTLS when ``tls`` has a cert). Returns (server, port); start
    it with ``await server.start()``. ``server.gangplace_health`` is the health servicer."""
    cfg = config or ServeConfig()
    limit = cfg.grpc_max_message_bytes
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                      ("grpc.max_send_message_length", limit),
                                      ("grpc.so_reuseport", 0)])
    servicer = servicer or GangplaceServicer(state, config=cfg, metrics=metrics, extender=extender)
    pb_grpc.add_GangplaceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    if tls is not None and tls.enabled:
        port = server.add_secure_port(address, grpc_server_credentials(tls))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind gRPC to {address}")
    server.gangplace_health = health_servicer  # type: ignore[attr-defined]
    server.gangplace_servicer = servicer  # type: ignore[attr-defined]
    return server, port


async def set_serving(server, serving: bool) -> None:
    """Mark the overall server and the gangplace service SERVING / NOT_SERVING."""
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    h = server.gangplace_health
    await h.set("", status)
    await h.set(SERVICE_NAME, status)

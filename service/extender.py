"""The kube-scheduler HTTP extender: POST /filter, /prioritize, /bind, /preempt.

Wire format: ``k8s.io/kube-scheduler/extender/v1`` exactly as a real kube-scheduler sends it
(recorded in tests/fixtures/kube-scheduler-extender): PascalCase field names, unset fields as
``null``, both ``nodeCacheCapable`` modes (``NodeNames`` or a full ``Nodes`` NodeList). Only a
body that does not parse into that shape gets HTTP 400; every other answer is HTTP 200, because
the scheduler turns any non-200 into an error it retries forever.

Gang algorithm overview (docs/kubernetes.md):
1. filter, first member: plan the whole gang (auto placer) over the nodes offered for it and hold
   the plan as a reservation in ``ClusterState`` under ``namespace/name``. Each member claims a
   slot (its Indexed Job completion index in topology order, else first come), keyed by pod UID
   so repeated filters agree, and is filtered to that slot's node. If the slot's node is not
   offered, the unbound rest of the gang is re-planned around the members already bound.
   Pods outside a gang only see capacity no reservation holds.
2. prioritize: 10 on a member's reserved node; for other GPU pods best-fit scores that keep
   large domains free.
3. bind: members wait until every member of the plan has reached bind (at most
   ``bind_timeout_s``, kept below the scheduler's ``httpTimeout``), then all are bound at once
   through the ``Binder``. A timeout answers Error and keeps the reservation (the scheduler
   retries the member); a gang not complete after ``gang_timeout_s`` loses its reservation.
4. preempt: only victim sets that evict whole gangs are accepted. When no candidate node has
   one, sets that break a gang are accepted and the rest of each broken gang is evicted through
   the Eviction API once the preemptor comes back with its nominated node.
Rejections put one identical reason on every node: ``FailedAndUnresolvableNodes`` when the gang
cannot fit even in the empty cluster, ``FailedNodes`` when it does not fit now, ``Error`` while
the answer is temporary (state not synced yet, gang size unknown).

Mounting (the service's aiohttp app)::

    ext = Extender(state, ExtenderConfig(...), binder=FileBinder(state))
    add_routes(app, ext)          # POST /filter /prioritize /bind /preempt
    ext.ready                     # False until the first full sync: /readyz
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import orjson
from aiohttp import web

from gangplace.engine.api import place as engine_place
from gangplace.engine.model.errors import GangplaceError, InvalidRequest
from gangplace.engine.model.types import Placement
from gangplace.engine.place.scoring import best_fit_scores
from gangplace.engine.live.state import BindRecord, ClusterState

from .binder import Binder, FileBinder, PodRef
from .extender_wire import BadBody, filter_args as _filter_args, preempt_args as _preempt_args
from .gangs import DEFAULT_GPU_RESOURCE, GroupSizeLookup, PodInfo, gang_request, parse_pod
from .topology_presets import LevelMap

log = logging.getLogger("gangplace.extender")

PREFIX = "gangplace: "
NOT_SYNCED = PREFIX + "cluster state not synced yet"
NODE_NOT_SYNCED = PREFIX + "node not yet synced"
MAX_SCORE = 10
POD_CACHE = 200_000


@dataclass(slots=True)
class Deadline:
    """Set by the service's middleware on an extender request (``request[DEADLINE_KEY]``)."""

    at: float  # loop.time() by which the verb must answer
    limit_s: float  # the limit that was applied (for the message)
    hit: bool = False  # the verb ran past it and was answered with its error shape


DEADLINE_KEY = web.RequestKey("gangplace.deadline", Deadline)


@dataclass(frozen=True, slots=True)
class ExtenderConfig:
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    placer: str = "auto"
    time_limit_ms: float = 100.0
    bind_timeout_s: float = 25.0  # below the scheduler's httpTimeout (30 s in deploy/)
    gang_timeout_s: float = 300.0  # an incomplete gang's reservation is released after this
    evict_partial_gangs: bool = True  # preempt: evict the rest of a gang a victim set breaks
    # A member that passes its one node: list every other node in FailedNodes too? The scheduler
    # drops nodes left out of both lists without a status, and reasons only surface when no node
    # passes, so the default leaves them out: at 5,000 nodes that is ~300 KB less per reply.
    report_all_failed: bool = False
    # A pod or gang that only other gangs' reservations keep out: FailedNodes (DESIGN: "does not fit
    # now", retried on cluster events) or, with this set, a temporary Error retried on a timer. A
    # reservation can end without a cluster event (a gang that never completes), and FailedNodes
    # lets the scheduler try preemption, which cannot free reserved capacity; Error avoids both
    # but shows as SchedulerError on the pod while it waits.
    reservation_blocked_error: bool = False


@dataclass(slots=True)
class _Barrier:
    """Members of one gang waiting in bind."""

    waiting: dict[str, tuple[BindRecord, asyncio.Future]] = field(default_factory=dict)
    reached: set[str] = field(default_factory=set)  # members that reached bind this round
    committing: bool = False


@dataclass(slots=True)
class _FilterResult:
    passing: list[str]
    failed: dict[str, str]
    unresolvable: dict[str, str]
    error: str = ""


class Extender:
    """The extender's logic over a ``ClusterState``; aiohttp handlers are ``handle_*``."""

    def __init__(self, state: ClusterState, config: ExtenderConfig | None = None, *,
                 binder: Binder | None = None, levels: LevelMap | None = None,
                 group_size: GroupSizeLookup | None = None, ready: bool = True,
                 pod_lookup: Callable[[str], Mapping | None] | None = None):
        self.state = state
        self.config = config or ExtenderConfig()
        self.binder: Binder = binder or FileBinder(state)
        self.levels = levels or LevelMap(tuple(state.levels), tuple(state.levels))
        self.group_size = group_size
        self.ready = ready  # /readyz; the Kubernetes sync sets it after the first full sync
        self.pod_lookup = pod_lookup  # uid -> Pod JSON, for binds of pods filter never saw
        self._pods: OrderedDict[str, PodInfo] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._barriers: dict[str, _Barrier] = {}
        self._evictions: dict[str, dict[str, list[PodRef]]] = {}  # preemptor uid -> node -> pods
        self.counters: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers
    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def parse(self, pod_json: Any) -> PodInfo:
        pod = parse_pod(pod_json, self.levels, gpu_resource=self.config.gpu_resource, group_size=self.group_size)
        self._pods[pod.uid] = pod
        self._pods.move_to_end(pod.uid)
        while len(self._pods) > POD_CACHE:
            self._pods.popitem(last=False)
        return pod

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def tick(self) -> list[str]:
        """Expire reservations (TTL) and release gangs older than ``gang_timeout_s``; returns
        the released keys. Called on every request; the service may also call it on a timer."""
        gone = self.state.expire()
        now = self.state.clock()
        for key, res in list(self.state.reservations().items()):
            if not res.complete and now - res.created_at > self.config.gang_timeout_s:
                log.warning("gang %s did not complete within %.0f s: releasing its reservation",
                            key, self.config.gang_timeout_s)
                self.state.release(key)
                gone.append(key)
        if len(self._locks) > 4096:  # forget the locks of gangs that are not being planned
            live = set(self.state.reservations())
            self._locks = {k: v for k, v in self._locks.items() if v.locked() or k in live}
        for key in gone:
            barrier = self._barriers.pop(key, None)
            if barrier:
                for _, fut in barrier.waiting.values():
                    if not fut.done():
                        fut.set_result(f"{PREFIX}gang {key} timed out before every member reached bind")
        return gone

    def pod_deleted(self, uid: str) -> None:
        """A pod is gone (the Kubernetes sync calls this): give back its reservation slot."""
        pod = self._pods.pop(uid, None)
        if pod is not None and pod.gang is not None:
            self.state.unclaim(pod.gang.key, uid)
        self._evictions.pop(uid, None)

    # ------------------------------------------------------------------ filter
    async def filter(self, args: Any) -> dict:
        pod_json, names, items = _filter_args(args)
        res = await self._filter(pod_json, names)
        return self._filter_reply(names, items, res)

    @staticmethod
    def _filter_reply(names: list[str], items: list | None, res: _FilterResult) -> dict:
        """ExtenderFilterResult in the request's nodeCacheCapable mode (NodeNames or Nodes)."""
        keep = set(res.passing)
        if items is None:
            return {"Nodes": None, "NodeNames": [n for n in names if n in keep],
                    "FailedNodes": res.failed, "FailedAndUnresolvableNodes": res.unresolvable, "Error": res.error}
        return {"Nodes": {"metadata": {}, "items": [it for it, n in zip(items, names) if n in keep]},
                "NodeNames": None, "FailedNodes": res.failed,
                "FailedAndUnresolvableNodes": res.unresolvable, "Error": res.error}

    async def _filter(self, pod_json: Mapping, names: list[str]) -> _FilterResult:
        self._count("filter")
        if not self.ready:
            return _FilterResult([], {}, {}, NOT_SYNCED)
        try:
            pod = self.parse(pod_json)
        except InvalidRequest as e:
            return _FilterResult([], {}, {n: f"{PREFIX}{e}" for n in names})
        self.tick()
        known, unknown = self.state.split_known(names)
        failed = dict.fromkeys(unknown, NODE_NOT_SYNCED)
        if pod.nominated_node and pod.uid in self._evictions:
            await self._evict_rest(pod)
        rec = self.state.allocation(pod.uid)
        if rec is not None:  # already bound here (a repeat after a lost reply)
            return self._only(rec.node, known, failed, f"{PREFIX}pod is bound to {rec.node}")
        if pod.gang is None:
            return self._filter_single(pod, known, failed)
        if pod.gang.size is None:
            return _FilterResult([], {}, {}, f"{PREFIX}gang {pod.gang.key}: size unknown, members still arriving "
                                             f"(no PodGroup synced and no gangplace.dev/size label)")
        async with self._lock(pod.gang.key):
            try:
                return await self._filter_member(pod, known, failed)
            except GangplaceError as e:  # the gang the labels describe is invalid (e.g. a slice size
                # that does not divide the gang size): the engine refuses it, the member never fits
                self._count("gang_invalid")
                return _FilterResult([], {}, {n: f"{PREFIX}gang {pod.gang.key}: {e}" for n in names})

    def _only(self, node: str, known: list[str], failed: dict[str, str], reason: str) -> _FilterResult:
        """Pass exactly ``node`` (if offered); the other offered nodes fail with ``reason``."""
        if node in set(known):
            if self.config.report_all_failed:
                failed.update((n, reason) for n in known if n != node)
            return _FilterResult([node], failed, {})
        failed.update(dict.fromkeys(known, reason))
        return _FilterResult([], failed, {})

    def _filter_single(self, pod: PodInfo, known: list[str], failed: dict[str, str]) -> _FilterResult:
        """A pod outside any gang: the offered nodes whose capacity no reservation holds."""
        with self.state.lock:  # both views of the same node arrays
            snap = self.state.snapshot()
            live = self.state.cluster
        if not known:
            return _FilterResult([], failed, {})
        idx = np.fromiter((snap.node_index[n] for n in known), np.int64, len(known))

        def fits(c) -> np.ndarray:
            return ((c.free_gpus[idx] >= pod.gpus) & (c.free_cpu[idx] >= pod.cpu) & (c.free_mem[idx] >= pod.memory)
                    & (c.free_pods[idx] >= 1))
        ok_now, ok_unreserved = fits(snap), fits(live)
        passing = [n for n, ok in zip(known, ok_now.tolist()) if ok]
        for n, ok, unres in zip(known, ok_now.tolist(), ok_unreserved.tolist()):
            if not ok:
                failed[n] = f"{PREFIX}capacity reserved for a gang" if unres else f"{PREFIX}insufficient free capacity"
        if not passing and self.config.reservation_blocked_error and bool(ok_unreserved.any()):
            # only reservations stand in the way: retry on a timer (see _reject)
            return _FilterResult([], failed, {}, f"{PREFIX}the free capacity is reserved for gangs being scheduled")
        return _FilterResult(passing, failed, {})

    async def _filter_member(self, pod: PodInfo, known: list[str], failed: dict[str, str]) -> _FilterResult:
        key = pod.gang.key
        if self.state.reservation(key) is None:
            placement, rejected = await self._plan(pod, known)
            if rejected is not None:
                rejected.failed = {**failed, **rejected.failed}
                return rejected
        slot = self.state.claim(key, pod.uid, index=pod.completion_index, nodes=known)
        if slot is None:
            reason = f"{PREFIX}gang {key} has no free slot: all its members are placed"
            return _FilterResult([], {**failed, **{n: reason for n in known}}, {})
        if pod.gpus > slot.gpus or pod.cpu > slot.cpu or pod.memory > slot.memory:
            # the gang was planned from its first member's requests (one pod set): a bigger member
            # would overcommit its slot's node; it can never fit this plan, so say so once, clearly
            self.state.unclaim(key, pod.uid)
            self._count("gang_member_mismatch")
            reason = (f"{PREFIX}gang {key}: this member requests {pod.gpus} GPUs, {pod.cpu}m CPU, {pod.memory} "
                      f"bytes of memory but the gang was planned for members like its first ({slot.gpus} GPUs, "
                      f"{slot.cpu}m CPU, {slot.memory} bytes); all GPU members of a gang must request the same")
            return _FilterResult([], failed, {n: reason for n in known})
        self.state.refresh(key)
        if slot.node not in set(known):
            rejected = await self._replan(pod, known)
            if rejected is not None:
                rejected.failed = {**failed, **rejected.failed}
                return rejected
            slot = self.state.claim(key, pod.uid, nodes=known)
            if slot is None or slot.node not in set(known):
                reason = f"{PREFIX}gang {key}: no slot on the nodes offered for this member"
                return _FilterResult([], {**failed, **{n: reason for n in known}}, {})
        self._count("filter_member")
        return self._only(slot.node, known, failed, f"{PREFIX}gang {key} places this member on {slot.node}")

    # ------------------------------------------------------------------ planning
    async def _plan(self, pod: PodInfo, known: list[str]) -> tuple[Placement | None, _FilterResult | None]:
        """Plan the gang's members that are not bound yet and reserve them. Returns (placement,
        None) or (None, a rejection for every offered node)."""
        g = pod.gang
        bound = self.state.gang_members(g.key)
        remaining = g.size - len(bound)
        if remaining <= 0:
            reason = f"{PREFIX}gang {g.key} already has all {g.size} members bound"
            return None, _FilterResult([], {n: reason for n in known}, {})
        min_count = None if g.min_size is None else max(1, g.min_size - len(bound))
        gang = gang_request(pod, remaining, min_count=min_count)
        placement = await self._place_around(gang, [r.node for r in bound], known, reserve_key=g.key)
        if placement.placed:
            self._count("gang_planned")
            return placement, None
        return None, self._reject(gang, placement, known)

    async def _replan(self, pod: PodInfo, known: list[str]) -> _FilterResult | None:
        """The member's slot is on a node not offered for it: drop that slot and the unclaimed
        slots on nodes not offered either, and place that many again around the slots kept and
        the members bound. Other members keep their claims: a node missing from this member's
        list may only be full of its gang mates' assumed pods."""
        key = pod.gang.key
        res = self.state.reservation(key)
        if res is None:
            return None
        others = set(res.members) - {pod.uid}
        dropped = self.state.shrink(key, keep=others, keep_nodes=known)
        res = self.state.reservation(key)
        if res is None or dropped == 0:
            return None
        anchors = [s.node for s in res.slots] + [r.node for r in self.state.gang_members(key)]
        gang = gang_request(pod, dropped, min_count=None)
        placement = await self._place_around(gang, anchors, known, reserve_key=None)
        if placement.placed and self.state.extend(key, placement):
            self._count("gang_replanned")
            return None
        if not placement.placed:
            self.state.release(key)  # what is left cannot run here: plan from scratch next time
            return self._reject(gang, placement, known)
        return _FilterResult([], {}, {}, f"{PREFIX}gang {key}: capacity changed while re-planning, retrying")

    async def _place_around(self, gang, anchors: list[str], known: list[str], *,
                            reserve_key: str | None) -> Placement:
        """Place ``gang`` on the offered nodes, inside the lowest domain holding every anchor
        node first, widening one level at a time (never above a required level)."""
        cluster = self.state.cluster
        tries: list[list[str]] = []
        idx = [cluster.node_index[n] for n in anchors if n in cluster.node_index]
        if idx:
            top = 0
            if gang.topology.required in cluster.levels:
                top = cluster.levels.index(gang.topology.required)
            for lv in range(len(cluster.levels) - 1, top - 1, -1):
                doms = set(cluster.node_domain[lv, idx].tolist())
                if len(doms) != 1:
                    continue
                d = doms.pop()
                inside = set(cluster.node_names[int(cluster.domain_start[d]):int(cluster.domain_end[d])])
                tries.append([n for n in known if n in inside])
        tries.append(known)
        placement = None
        for nodes in tries:
            placement = await asyncio.to_thread(
                self.state.place, gang, placer=self.config.placer, time_limit_ms=self.config.time_limit_ms,
                reserve=reserve_key is not None, key=reserve_key, nodes=nodes)
            if placement.placed:
                return placement
        return placement

    def _reject(self, gang, placement: Placement, known: list[str]) -> _FilterResult:
        """One identical reason on every node; unresolvable if it cannot fit the empty cluster.
        With ``reservation_blocked_error``, a gang that only other gangs' reservations keep out
        gets a temporary ``Error`` instead of ``FailedNodes`` (see ExtenderConfig)."""
        reason = PREFIX + (placement.reason or f"gang {gang.name} does not fit")
        if not self._fits_empty(gang):
            self._count("gang_rejected_never")
            return _FilterResult([], {}, {n: reason + " (not even in the empty cluster)" for n in known})
        if self.config.reservation_blocked_error and self._fits_unreserved(gang, known):
            self._count("gang_waits_for_reservations")
            return _FilterResult([], {}, {}, f"{PREFIX}gang {gang.name} waits for capacity reserved for other gangs")
        self._count("gang_rejected_now")
        return _FilterResult([], {n: reason for n in known}, {})

    def _fits_unreserved(self, gang, known: list[str]) -> bool:
        """Would the gang fit the offered nodes if no reservation held any capacity?"""
        if not self.state.reservations():
            return False
        with self.state.lock:
            live = self.state.cluster.copy()
        allowed = np.zeros(live.n_nodes, bool)
        allowed[[live.node_index[n] for n in known if n in live.node_index]] = True
        live.schedulable &= allowed.astype(np.uint8)
        try:
            return engine_place(live, gang, "heuristic").placed
        except GangplaceError:
            return False

    def _fits_empty(self, gang) -> bool:
        empty = self.state.cluster.copy()
        empty.free_gpus[:] = empty.cap_gpus
        empty.free_cpu[:] = empty.cap_cpu
        empty.free_mem[:] = empty.cap_mem
        empty.free_pods[:] = empty.cap_pods
        try:
            return engine_place(empty, gang, "heuristic").placed
        except GangplaceError:
            return False

    # ------------------------------------------------------------------ prioritize
    async def prioritize(self, args: Any) -> list[dict]:
        pod_json, names, _ = _filter_args(args)
        self._count("prioritize")
        scores = dict.fromkeys(names, 0)
        try:
            pod = self.parse(pod_json)
        except InvalidRequest:
            pod = None
        if pod is not None and self.ready:
            if pod.gang is not None:
                res = self.state.reservation(pod.gang.key)
                slot = res.slot_of(pod.uid) if res is not None else None
                if slot is not None and slot.node in scores:
                    scores[slot.node] = MAX_SCORE
            else:
                scores.update(self._best_fit_scores(pod, names))
        return [{"Host": n, "Score": int(scores[n])} for n in names]

    def _best_fit_scores(self, pod: PodInfo, names: list[str]) -> dict[str, int]:
        """Best-fit scores for a pod outside any gang (engine/place/scoring.py); unknown nodes: none."""
        snap = self.state.snapshot()
        idx = np.fromiter((snap.node_index[n] for n in names if n in snap.node_index), np.int64)
        fitting, scores = best_fit_scores(snap, idx, gpus=pod.gpus, cpu=pod.cpu, memory=pod.memory,
                                          max_score=MAX_SCORE)
        return {snap.node_names[i]: int(sc) for i, sc in zip(fitting.tolist(), scores.tolist())}

    # ------------------------------------------------------------------ bind
    async def bind(self, args: Any) -> dict:
        if not isinstance(args, Mapping):
            raise BadBody("body must be a JSON object")
        fields = {}
        for f in ("PodName", "PodNamespace", "PodUID", "Node"):
            v = args.get(f)
            if not isinstance(v, str) or (not v and f != "PodNamespace"):
                raise BadBody(f"{f} must be a non-empty string")
            fields[f] = v
        self._count("bind")
        return {"Error": await self._bind(fields["PodName"], fields["PodNamespace"] or "default",
                                          fields["PodUID"], fields["Node"])}

    async def _bind(self, name: str, namespace: str, uid: str, node: str) -> str:
        cur = self.state.allocation(uid)
        if cur is not None and cur.node == node:
            # a repeat: the answer to the first bind was lost (or it timed out while its journal line
            # was being made durable, or the process restarted after writing it): success, but only
            # once that line is on disk. Needs no filter first: after a restart the pod is unknown here
            self._count("bind_repeat")
            return await self._durable()
        pod = self._pods.get(uid)
        if pod is None and self.pod_lookup is not None:
            raw = self.pod_lookup(uid)
            if raw is not None:
                try:
                    pod = self.parse(raw)
                except InvalidRequest as e:
                    return f"{PREFIX}{e}"
        if pod is None:
            return f"{PREFIX}pod {namespace}/{name} was not seen by filter; it will be retried"
        if not self.state.has_node(node):
            return f"{PREFIX}node {node} not yet synced"
        gang_key = pod.gang.key if pod.gang is not None else None
        rec = BindRecord(uid, node, pod.gpus, pod.cpu, pod.memory, gang_key, namespace, name, pod.priority)
        if gang_key is None:
            return (await self.binder.bind([rec]))[0] or ""
        self.tick()
        res = self.state.reservation(gang_key)
        if res is None:
            if self.state.allocation(uid) is not None:  # bound already (a repeated bind)
                return await self._durable()
            return f"{PREFIX}gang {gang_key} has no reservation (expired or timed out); it will be re-planned"
        self.state.refresh(gang_key)
        barrier = self._barriers.setdefault(gang_key, _Barrier())
        old = barrier.waiting.pop(uid, None)
        if old is not None and not old[1].done():
            old[1].set_result(f"{PREFIX}superseded by a newer bind of the same pod")
        fut = asyncio.get_running_loop().create_future()
        barrier.waiting[uid] = (rec, fut)
        barrier.reached.add(uid)
        need = len(res.unbound())
        if len(barrier.waiting) >= need and not barrier.committing:
            barrier.committing = True
            asyncio.ensure_future(self._commit(gang_key, barrier))
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.config.bind_timeout_s) or ""
        except asyncio.TimeoutError:
            self._count("bind_timeout")
            reached = len(barrier.reached)
            if barrier.waiting.get(uid, (None, None))[1] is fut:
                del barrier.waiting[uid]
            if not barrier.waiting:
                barrier.reached.clear()
            return (f"{PREFIX}gang {gang_key}: {reached} of {need} members reached bind within "
                    f"{self.config.bind_timeout_s:g} s; the reservation is kept")
        finally:
            if not fut.done():  # the scheduler hung up: this member is no longer waiting
                if barrier.waiting.get(uid, (None, None))[1] is fut:
                    del barrier.waiting[uid]

    async def _durable(self) -> str:
        """"" once everything the journal holds so far is on disk (in a thread: the fsync may be
        slow and the loop serves everyone); an error message if the journal cannot vouch for it."""
        if self.state.is_durable():
            return ""
        try:
            await asyncio.to_thread(self.state.wait_durable)
        except OSError as e:
            return f"{PREFIX}{e}"
        return ""

    async def _commit(self, key: str, barrier: _Barrier) -> None:
        """Every member reached bind: bind them all, then answer each member."""
        entries = list(barrier.waiting.items())
        try:
            errors = await self.binder.bind([rec for _, (rec, _) in entries])
        except Exception as e:  # the binder failed as a whole
            log.exception("binding gang %s failed", key)
            errors = [f"{PREFIX}binding gang {key} failed: {e}"] * len(entries)
        barrier.reached.clear()
        for (uid, (rec, fut)), err in zip(entries, errors):
            barrier.waiting.pop(uid, None)
            if not fut.done():
                fut.set_result(err)
        barrier.committing = False
        self._count("gang_bound" if not any(errors) else "gang_bind_errors")
        res = self.state.reservation(key)
        if res is not None and res.complete:
            self.state.release(key)  # the allocations hold the capacity now
            self._barriers.pop(key, None)

    # ------------------------------------------------------------------ preempt
    async def preempt(self, args: Any) -> dict:
        pod_json, victims = _preempt_args(args)
        self._count("preempt")
        try:
            pod = self.parse(pod_json)
        except InvalidRequest:
            pod = None
        gangs_of: dict[str, str | None] = {}
        for node, (uids, _, full) in victims.items():
            for uid, pod_obj in zip(uids, full or [None] * len(uids)):
                rec = self.state.allocation(uid)
                gang = rec.gang if rec is not None else None
                if gang is None and pod_obj is not None:
                    try:
                        info = parse_pod(pod_obj, self.levels, gpu_resource=self.config.gpu_resource)
                        gang = info.gang.key if info.gang is not None else None
                    except InvalidRequest:
                        gang = None
                gangs_of[uid] = gang
        whole, partial = {}, {}
        for node, (uids, pdb, _) in victims.items():
            on_node = set(uids)
            others: list[PodRef] = []
            for gang in {gangs_of[u] for u in uids if gangs_of[u]}:
                for m in self.state.gang_members(gang):
                    if m.pod_uid not in on_node:
                        others.append(PodRef(m.namespace, m.name, m.pod_uid))
            entry = {"Pods": [{"UID": u} for u in uids], "NumPDBViolations": pdb}
            (partial if others else whole)[node] = (entry, others)
        preferred = self._plan_preemption(pod, {**whole, **partial}, gangs_of, victims)
        chosen = whole or (partial if self.config.evict_partial_gangs else {})
        if preferred:
            narrowed = {n: v for n, v in chosen.items() if n in preferred}
            chosen = narrowed or chosen
        if pod is not None:
            intents = {n: others for n, (_, others) in chosen.items() if others}
            if intents:
                self._evictions[pod.uid] = intents
        return {"NodeNameToMetaVictims": {n: entry for n, (entry, _) in chosen.items()}}

    def _plan_preemption(self, pod: PodInfo | None, candidates: dict, gangs_of: dict, victims: dict) -> set[str]:
        """Nodes whose victims are all in the engine's preemption plan (empty: no preference)."""
        if pod is None:
            return set()
        try:
            from gangplace.engine.exact.preempt import plan_preemption
        except ImportError:
            return set()
        try:
            plan = plan_preemption(self.state.snapshot(), gang_request(pod, 1 if pod.gang is None else None),
                                   placer="heuristic")
            planned = {getattr(v, "gang", v) for v in (getattr(plan, "victims", None) or ())}
        except Exception as e:  # the plan is advice only
            log.info("preemption plan unavailable: %s", e)
            return set()
        out = set()
        for node in candidates:
            uids = victims[node][0]
            names = {gangs_of[u] or f"pod:{u}" for u in uids}
            if names and names <= planned:
                out.add(node)
        return out

    async def _evict_rest(self, pod: PodInfo) -> None:
        intents = self._evictions.pop(pod.uid, {})
        victims = intents.get(pod.nominated_node, [])
        if victims:
            errors = await self.binder.evict(victims)
            self._count("gang_evictions")
            for v, err in zip(victims, errors):
                if err:
                    log.warning("evicting %s/%s: %s", v.namespace, v.name, err)

    # ------------------------------------------------------------------ time limit
    def timed_out(self, verb: str, body: Any, limit_s: float) -> Any:
        """The verb's answer when it ran past the request time limit: HTTP 200 with the verb's
        error shape (the scheduler retries an ``Error``; any non-200 it retries as a failure
        forever). Raises ``BadBody`` if the body does not parse into the verb's arguments."""
        self._count("timed_out")
        msg = f"{PREFIX}{verb} took longer than {limit_s:g} s; retrying"
        if verb == "filter":
            _, names, items = _filter_args(body)
            return self._filter_reply(names, items, _FilterResult([], {}, {}, msg))
        if verb == "prioritize":
            _filter_args(body)
            return []  # no scores: the scheduler ranks the nodes without this extender
        if verb == "preempt":
            _preempt_args(body)
            return {"NodeNameToMetaVictims": {}}  # no victim set accepted
        return {"Error": msg}  # bind: the scheduler retries the pod

    # ------------------------------------------------------------------ aiohttp
    def _handler(self, verb: str, method):
        async def handle(request: web.Request) -> web.Response:
            # the service's middleware sets the deadline (request_timeout_s, or the /bind limit);
            # a standalone app (make_app) has none
            deadline = request.get(DEADLINE_KEY)
            if deadline is None:
                raw = await request.read()
            else:  # a client that stalls mid-body: TimeoutError reaches the middleware (HTTP 504:
                async with asyncio.timeout_at(deadline.at):  # there is no request to answer in shape)
                    raw = await request.read()
            try:
                body = orjson.loads(raw)
                if deadline is None:
                    out = await method(body)
                else:
                    try:
                        async with asyncio.timeout_at(deadline.at):  # no extra task, unlike wait_for
                            out = await method(body)
                    except TimeoutError:
                        log.warning("%s took longer than %g s: answering with the verb's error", verb, deadline.limit_s)
                        deadline.hit = True
                        out = self.timed_out(verb, body, deadline.limit_s)
            except (orjson.JSONDecodeError, BadBody) as e:
                self._count("bad_request")
                return web.Response(status=400, text=f"{PREFIX}{e}\n", content_type="text/plain")
            return web.Response(body=orjson.dumps(out), content_type="application/json")
        return handle

    @property
    def handle_filter(self):
        return self._handler("filter", self.filter)

    @property
    def handle_prioritize(self):
        return self._handler("prioritize", self.prioritize)

    @property
    def handle_bind(self):
        return self._handler("bind", self.bind)

    @property
    def handle_preempt(self):
        return self._handler("preempt", self.preempt)


def add_routes(app: web.Application, ext: Extender, prefix: str = "") -> None:
    """Mount POST {prefix}/filter, /prioritize, /bind and /preempt on an aiohttp app."""
    app.router.add_post(f"{prefix}/filter", ext.handle_filter)
    app.router.add_post(f"{prefix}/prioritize", ext.handle_prioritize)
    app.router.add_post(f"{prefix}/bind", ext.handle_bind)
    app.router.add_post(f"{prefix}/preempt", ext.handle_preempt)


def make_app(ext: Extender, *, max_body_bytes: int = 64 * 2**20) -> web.Application:
    """A standalone app with only the extender routes (tests, or running without gRPC)."""
    app = web.Application(client_max_size=max_body_bytes)
    add_routes(app, ext)
    return app

"""The kube-scheduler HTTP extender: POST /filter, /prioritize, /bind, /preempt.

A thin translation over the gang planner (engine/live/coschedule.py), like scheduler-plugins' coscheduling plugin
over its core: a Pod becomes a ``Member`` (service/gangs.py), the planner's ``Decision`` becomes an
``ExtenderFilterResult``, its bind steps the waiting and the Bindings (through the ``Binder``), its victim grouping
``NodeNameToMetaVictims``. Here live only the wire format, the waiting and the side effects.

Wire format: ``k8s.io/kube-scheduler/extender/v1`` exactly as a real kube-scheduler sends it (recorded in
tests/fixtures/kube-scheduler-extender): PascalCase field names, unset fields as ``null``, both ``nodeCacheCapable``
modes (``NodeNames`` or a full ``Nodes`` NodeList). Only a body that does not parse into that shape gets HTTP 400;
every other answer is HTTP 200, because the scheduler turns any non-200 into an error it retries forever. Decisions
map to the reply as: PLACE -> the node(s) pass; NOT_NOW -> ``FailedNodes``; NEVER -> ``FailedAndUnresolvableNodes``
(also a pod gangplace cannot read, with an ``InvalidPod`` Event); WAIT -> ``Error`` (retried within seconds; also a
pod whose ResourceClaims are not synced yet); each with one reason on every node.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from gangplace.engine.live.coschedule import BindKind, Decision, GangPlanner, GangPolicy, Member, Verdict, Victims
from gangplace.engine.live.state import ClusterState
from gangplace.engine.model.errors import InvalidRequest

from .binder import Binder, FileBinder, PodRef
from .extender_wire import (DEADLINE_KEY, PREFIX, BadBody, Deadline, add_routes, bind_args as _bind_args,  # noqa: F401
                            filter_args as _filter_args, filter_reply as _filter_reply, make_app,
                            preempt_args as _preempt_args, timed_out_reply)
from .gangs import DEFAULT_GPU_RESOURCE, ClaimsPending, GroupSizeLookup, PodInfo, member_of, parse_pod
from .pod_cache import PodCache
from .topology_presets import LevelMap

log = logging.getLogger("gangplace.extender")

NOT_SYNCED = PREFIX + "cluster state not synced yet"
MAX_SCORE = 10


@dataclass(frozen=True, slots=True)
class ExtenderConfig(GangPolicy):
    """The gang policy (placer, time limit, gang timeout, preemption, reservation waits) plus
    what only the HTTP extender needs."""

    gpu_resource: str = DEFAULT_GPU_RESOURCE
    bind_timeout_s: float = 25.0  # below the scheduler's httpTimeout (30 s in deploy/)
    # A member that passes its one node: list every other node in FailedNodes too? The scheduler
    # drops nodes left out of both lists without a status, and reasons only surface when no node
    # passes, so the default leaves them out: at 5,000 nodes that is ~300 KB less per reply.
    report_all_failed: bool = False
    single_pod_one_node: bool = False  # a GPU pod of no gang: pass its best-fit node only (serve turns it on)


class Extender:
    """The extender verbs over a ``GangPlanner``; ``add_routes(app, ext)`` mounts them (extender_wire.py)."""

    def __init__(self, state: ClusterState, config: ExtenderConfig | None = None, *,
                 binder: Binder | None = None, levels: LevelMap | None = None,
                 group_size: GroupSizeLookup | None = None, ready: bool = True,
                 pod_lookup: Callable[[str], Mapping | None] | None = None):
        self.state = state
        self.config = config or ExtenderConfig()
        self.binder: Binder = binder or FileBinder(state)
        self.levels = levels or LevelMap(tuple(state.levels), tuple(state.levels))
        self.group_size = group_size
        self.claim_gpus = None  # pod -> GPUs of its ResourceClaims (DraIndex.pod_gpus, set by the Kubernetes sync)
        self.ready = ready  # /readyz; the Kubernetes sync sets it after the first full sync
        self.pod_lookup = pod_lookup  # uid -> Pod JSON, for binds of pods filter never saw
        self.events = None  # an EventRecorder (service/events.py) in Kubernetes mode: Events on pods
        self.counters: dict[str, int] = {}
        self.planner = GangPlanner(state, self.config, counters=self.counters)
        self.pods = PodCache()  # the service sets its max_bytes from limits.pod_cache_max_bytes

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def parse(self, pod_json: Any) -> PodInfo:
        return self.pods.parse(pod_json, lambda p: parse_pod(p, self.levels, gpu_resource=self.config.gpu_resource,
                                                             group_size=self.group_size, claim_gpus=self.claim_gpus),
                               self.levels)

    def tick(self) -> list[str]:
        """Expire reservations and incomplete gangs (``GangPlanner.tick``), answering their
        waiting binds; returns the released keys. Called on every request and on a timer."""
        gone, answers = self.planner.tick()
        for fut, message in answers:
            if not fut.done():
                fut.set_result(PREFIX + message)
        return gone

    def gang_released(self, key: str, why: str) -> int:
        """A gang's reservation was dropped from outside (gRPC ``Release``): answer the members
        waiting in bind for the rest now, with ``why``, instead of at the bind timeout."""
        waiters = self.planner.drop_barrier(key)
        for fut in waiters:
            if not fut.done():
                fut.set_result(PREFIX + why)
        return len(waiters)

    def pod_deleted(self, uid: str) -> None:
        """A pod is gone (the Kubernetes sync calls this): give back its reservation slot."""
        pod = self.pods.pop(uid)
        self.planner.forget(uid, pod.gang.key if pod is not None and pod.gang is not None else None)

    # ------------------------------------------------------------------ filter
    async def filter(self, args: Any) -> dict:
        pod_json, names, items = _filter_args(args)
        self._count("filter")
        if not self.ready:
            return _filter_reply(names, items, [], {}, {}, NOT_SYNCED)
        try:
            pod = self.parse(pod_json)
        except ClaimsPending as e:
            return _filter_reply(names, items, [], {}, {}, f"{PREFIX}{e}")
        except InvalidRequest as e:  # bad labels, claims or a malformed PodGroup: said on the pod too
            self._tell(PodRef.of(pod_json), "InvalidPod", str(e), warning=True)
            return _filter_reply(names, items, [], {}, {n: f"{PREFIX}{e}" for n in names})
        self.tick()
        member = member_of(pod)
        await self._evict_rest(member)
        # what needs no placement is answered on the loop (cheaper than a thread hop); planning may
        # run CP-SAT within its time limit, so it runs off the loop
        one = self.config.single_pod_one_node  # one node passing: the scheduler skips prioritize
        decision = (self.planner.decide(member, names, plan=False, one_node=one)
                    or await asyncio.to_thread(self.planner.decide, member, names, one_node=one))
        if self.planner.answers_due:  # a new plan dropped members waiting in bind: answer them now
            self.tick()
        if member.gang is not None and decision.verdict is not Verdict.PLACE:
            self._tell(PodRef(pod.namespace, pod.name, pod.uid), "GangUnschedulable" if decision.verdict
                       is Verdict.NEVER else "GangWaiting", decision.reason, warning=decision.verdict is Verdict.NEVER)
        return _filter_reply(names, items, *self._translate(decision, names))

    def _tell(self, pod: PodRef, reason: str, message: str, *, warning: bool = False) -> None:
        if self.events is not None:  # rate-limited by the recorder (service/events.py)
            self.events.emit(pod, reason, message, warning=warning)

    def _translate(self, d: Decision, names: list[str]) -> tuple[list, dict, dict, str]:
        """A decision as (passing, FailedNodes, FailedAndUnresolvableNodes, Error)."""
        self._count(f"filter_{d.verdict.value}")
        failed = {n: PREFIX + r for n, r in d.node_reasons.items()}
        rest = [n for n in names if n not in d.node_reasons]
        why = PREFIX + d.reason
        if d.verdict is Verdict.PLACE:
            keep = set(d.nodes)
            passing = [n for n in rest if n in keep]
            if not passing or self.config.report_all_failed:
                failed.update((n, why) for n in rest if n not in keep)
            return passing, failed, {}, ""
        if d.verdict is Verdict.NOT_NOW:
            return [], {**failed, **dict.fromkeys(rest, why)}, {}, ""
        if d.verdict is Verdict.NEVER:
            return [], failed, dict.fromkeys(rest, why), ""
        return [], failed, {}, why

    # ------------------------------------------------------------------ prioritize
    async def prioritize(self, args: Any) -> list[dict]:
        pod_json, names, _ = _filter_args(args)
        self._count("prioritize")
        try:
            pod = self.parse(pod_json)
        except InvalidRequest:
            pod = None
        scores = self.planner.scores(member_of(pod), names, MAX_SCORE) if pod is not None and self.ready else {}
        get = scores.get  # one attribute lookup, not one per node
        return [{"Host": n, "Score": get(n, 0)} for n in names]

    # ------------------------------------------------------------------ bind
    async def bind(self, args: Any) -> dict:
        name, namespace, uid, node = _bind_args(args)
        self._count("bind")
        return {"Error": await self._bind(name, namespace, uid, node)}

    async def _bind(self, name: str, namespace: str, uid: str, node: str) -> str:
        cur = self.state.allocation(uid)
        if cur is not None and cur.node == node:
            # a repeat: the answer to the first bind was lost (or it timed out while its journal line
            # was being made durable, or the process restarted after writing it): success, but only
            # once that line is on disk. Needs no filter first: after a restart the pod is unknown here
            self._count("bind_repeat")
            return await self._durable()
        if cur is not None:  # kube-scheduler never moves a bound pod: a second node is a client error
            self._count("bind_rebind_refused")
            return f"{PREFIX}pod {uid} is already bound to node {cur.node!r}; a bind to {node!r} is refused"
        pod = self.pods.get(uid)
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
        member = member_of(pod)
        if member.gang is not None:
            self.tick()
        fut = asyncio.get_running_loop().create_future()
        step = self.planner.arrive(member, node, namespace=namespace, name=name, waiter=fut)
        if step.kind is BindKind.ALONE:
            return (await self.binder.bind([step.record]))[0] or ""
        if step.kind is BindKind.DURABLE:
            return await self._durable()
        if step.kind is BindKind.REFUSED:
            return PREFIX + step.reason
        if step.superseded is not None and not step.superseded.done():
            step.superseded.set_result(f"{PREFIX}superseded by a newer bind of the same pod")
        if step.commit:
            asyncio.ensure_future(self._commit(member.gang))
        else:
            self._tell(PodRef(namespace, name, uid), "GangWaiting", f"gang {member.gang}: {step.reached} of "
                       f"{step.need} members reached bind; waiting for the other {step.need - step.reached}")
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.config.bind_timeout_s) or ""
        except asyncio.TimeoutError:
            self._count("bind_timeout")
            reached = self.planner.left(member.gang, uid, fut, timed_out=True)
            return (f"{PREFIX}gang {member.gang}: {reached} of {step.need} members reached bind within "
                    f"{self.config.bind_timeout_s:g} s; the reservation is kept")
        finally:
            if not fut.done():  # the scheduler hung up: this member is no longer waiting
                self.planner.left(member.gang, uid, fut, timed_out=False)

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

    async def _commit(self, key: str) -> None:
        """Every member reached bind: bind them all, then answer each member. After a partial bind
        the planner hands back the members bound in this batch: they are evicted (docs/kubernetes.md)."""
        batch = self.planner.take_batch(key)
        try:
            errors = await self.binder.bind([rec for _, rec, _ in batch])
        except Exception as e:  # the binder failed as a whole
            log.exception("binding gang %s failed", key)
            errors = [f"{PREFIX}binding gang {key} failed: {e}"] * len(batch)
        for (_, _, fut), err in zip(batch, errors):
            if not fut.done():
                fut.set_result(err)
        undo = self.planner.committed(key, [uid for uid, _, _ in batch], failed=any(errors))
        where = self.planner.where([rec.node for _, rec, _ in batch])
        for (_, rec, _), err in zip(batch, errors):
            if err or not undo:
                self._tell(PodRef(rec.namespace, rec.name, rec.pod_uid), "FailedBinding" if err else "GangPlaced",
                           err or f"gang {key} bound: {where}; this pod on {rec.node}", warning=bool(err))
        pods = [PodRef(r.namespace, r.name, r.pod_uid) for r in undo or ()]
        await self._evict(pods, f"gang {key} after a partial bind")
        for ref in pods:
            self._tell(ref, "GangPartialBindUndone", f"gang {key}: another member's bind was refused; this "
                       f"bound member is evicted and the gang re-planned", warning=True)

    # ------------------------------------------------------------------ preempt
    async def preempt(self, args: Any) -> dict:
        pod_json, victims = _preempt_args(args)
        self._count("preempt")
        try:
            preemptor = member_of(self.parse(pod_json))
        except InvalidRequest:
            preemptor = None
        proposed = {node: Victims(tuple(uids), pdb, {u: self._gang_key(obj) for u, obj in zip(uids, full or ())})
                    for node, (uids, pdb, full) in victims.items()}
        chosen = self.planner.group_victims(preemptor, proposed)
        return {"NodeNameToMetaVictims": {n: {"Pods": [{"UID": u} for u in v.pod_uids],
                                              "NumPDBViolations": v.pdb_violations} for n, v in chosen.items()}}

    def _gang_key(self, pod_obj: Any) -> str | None:
        """The gang a victim's Pod object names (None: none, or labels that do not parse)."""
        try:
            info = parse_pod(pod_obj, self.levels, gpu_resource=self.config.gpu_resource, group_size=self.group_size)
        except InvalidRequest:
            return None
        return info.gang.key if info.gang is not None else None

    async def _evict_rest(self, member: Member) -> None:
        """The preemptor came back nominated: evict the rest of the gangs its victims broke."""
        victims = [PodRef(r.namespace, r.name, r.pod_uid) for r in self.planner.take_evictions(member)]
        if victims:
            self._count("gang_evictions")
            await self._evict(victims, "preemption")

    async def _evict(self, pods: list[PodRef], why: str) -> None:
        """Evict ``pods``; a refusal is logged (the planner already decided what happens next)."""
        for ref, err in zip(pods, await self.binder.evict(pods) if pods else ()):
            if err:
                log.warning("%s: evicting %s/%s: %s", why, ref.namespace, ref.name, err)

    def timed_out(self, verb: str, body: Any, limit_s: float) -> Any:
        """The verb's answer when it ran past the request time limit (``timed_out_reply``)."""
        self._count("timed_out")
        return timed_out_reply(verb, body, limit_s)

"""Gang semantics over the live state: where each member of a gang goes, and when it may bind.

The core the adapters share, like scheduler-plugins' ``pkg/coscheduling/core`` under its framework
plugin: the HTTP extender (service/extender.py) and the gRPC server translate their wire formats
into a ``Member`` and a ``Decision`` back; anything else that wants gang semantics (a scheduler
plugin, the simulator) calls ``GangPlanner`` directly. No I/O, no asyncio: the adapters own the
waiting (their waiters are opaque objects here) and the calls to the outside world.

Algorithm overview (docs/kubernetes.md; the contract: docs/placement.md):
1. ``decide`` (filter): the first member of a gang plans the whole gang (the configured placer)
   over the nodes offered for it and holds the plan as a reservation in ``ClusterState`` under
   the gang key. Each member claims a slot (its Indexed Job completion index in topology order,
   else first come), keyed by pod UID so repeated filters agree, and goes to that slot's node.
   If the slot's node is not offered, the unbound rest of the gang is re-planned around the
   slots kept and the members bound, inside the lowest domain holding them first. A pod outside
   any gang only sees capacity no reservation holds.
2. ``arrive`` / ``take_batch`` / ``committed`` (bind): members wait until every unbound slot of
   the plan has a member waiting, then the adapter binds them all at once; a gang older than
   ``gang_timeout_s`` that never completed loses its reservation (``tick``).
3. ``group_victims`` (preempt): victim sets that evict whole gangs are preferred; when none
   exists, sets that break a gang are accepted and the rest of each broken gang is handed back
   (``take_evictions``) once the preemptor returns with its nominated node.
A gang that cannot fit whole is rejected whole with one reason: ``NEVER`` when it could not fit
even in the empty cluster, ``NOT_NOW`` when it does not fit now, ``WAIT`` while the answer is
temporary (size unknown, capacity changing while re-planning, reservations in the way when
``reservation_blocked_error`` asks for it).
"""
from __future__ import annotations

import enum
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..exact.auto import place as engine_place
from ..exact.preempt import plan_preemption
from ..model.cluster import Cluster
from ..model.errors import GangplaceError, InvalidRequest
from ..model.types import GangRequest, Placement, PodSet, TopologyConstraint
from ..place.capacity import ancestors, common_domain
from ..place.scoring import best_fit_scores
from . import makeup
from .ledger import BindRecord
from .state import ClusterState

log = logging.getLogger("gangplace.coschedule")

NODE_NOT_SYNCED = "node not yet synced"


# ---------------------------------------------------------------------- the typed edges
@dataclass(frozen=True, slots=True)
class Member:
    """A pod as the planner sees it: who it is, what it requests, which gang it belongs to."""

    pod_uid: str
    gpus: int
    cpu: int = 0  # millicores
    memory: int = 0  # bytes
    ref: str = ""  # "namespace/name": names the one-pod gang of a pod outside any gang
    gang: str | None = None  # the gang key ("namespace/name"); None: a pod outside any gang
    gang_size: int | None = None  # members of the gang; None while it is unknown
    min_size: int | None = None  # elastic: at least this many members
    topology: TopologyConstraint = TopologyConstraint()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0
    completion_index: int | None = None  # an Indexed Job's index: asks for that slot
    nominated_node: str = ""  # set after preemption

    @property
    def held(self) -> bool:
        """A gang member the planner places and holds in its gang's barrier: one that requests
        GPUs. A member without GPUs (a JobSet or LeaderWorkerSet leader) is placed like a pod of
        no gang and binds at once (docs/kubernetes.md, "Mixed gangs")."""
        return self.gang is not None and self.gpus > 0

    def gang_request(self, count: int | None = None, *, min_count: int | None = None,
                     name: str | None = None) -> GangRequest:
        """The engine request for ``count`` members like this one (default: the gang size), or a
        one-pod gang for a pod outside any gang: one pod set (a gang whose members differ is
        planned from its makeup, engine/live/makeup.py)."""
        if self.gang is None:
            return GangRequest(name or self.ref, (PodSet("pod", 1, self.gpus, self.cpu, self.memory, None,
                                                         dict(self.node_selector)),), priority=self.priority)
        n = self.gang_size if count is None else count
        if n is None:
            raise InvalidRequest("gang size unknown", field="size")
        mc = self.min_size if min_count is None else min_count
        if mc is not None:
            mc = min(mc, n)
            if mc == n:
                mc = None
        ps = PodSet(makeup.SINGLE_POD_SET, n, self.gpus, self.cpu, self.memory, mc, dict(self.node_selector))
        return GangRequest(name or self.gang, (ps,), self.topology, priority=self.priority)


class Verdict(enum.Enum):
    PLACE = "place"  # the member goes to ``Decision.nodes`` (one node for a gang member)
    NOT_NOW = "not_now"  # does not fit now; retried on cluster events (FailedNodes)
    NEVER = "never"  # cannot fit as asked, not even in the empty cluster (FailedAndUnresolvableNodes)
    WAIT = "wait"  # the answer is temporary: retry within seconds (Error)


@dataclass(frozen=True, slots=True)
class Decision:
    """The planner's answer for one member over the nodes offered for it.

    ``reason`` applies to every offered node without a reason of its own in ``node_reasons``
    (nodes not synced yet, or a pod outside any gang's per-node capacity)."""

    verdict: Verdict
    reason: str
    nodes: tuple[str, ...] = ()  # PLACE: where it may go
    node_reasons: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GangPolicy:
    """The knobs of gang semantics (the extender's config extends these)."""

    placer: str = "auto"
    time_limit_ms: float = 100.0
    gang_timeout_s: float = 300.0  # an incomplete gang's reservation is released after this
    evict_partial_gangs: bool = True  # preempt: evict the rest of a gang a victim set breaks
    # A pod or gang that only other gangs' reservations keep out: NOT_NOW (DESIGN: "does not fit
    # now", retried on cluster events) or, with this set, WAIT (a temporary Error retried on a
    # timer). A reservation can end without a cluster event (a gang that never completes), and
    # FailedNodes lets the scheduler try preemption, which cannot free reserved capacity; Error
    # avoids both but shows as SchedulerError on the pod while it waits.
    reservation_blocked_error: bool = False


class BindKind(enum.Enum):
    DURABLE = "durable"  # already bound there (a repeat): answer success once the journal has it
    REFUSED = "refused"  # answer ``reason`` (an error the scheduler retries)
    ALONE = "alone"  # not a gang member: bind ``record`` on its own
    WAITING = "waiting"  # in the gang's barrier: wait for its waiter's answer


@dataclass(frozen=True, slots=True)
class BindStep:
    kind: BindKind
    reason: str = ""
    record: BindRecord | None = None
    need: int = 0  # WAITING: members the barrier waits for
    reached: int = 0  # WAITING: members waiting in the barrier, this one included
    commit: bool = False  # WAITING: this arrival completed the barrier: commit (``take_batch``)
    superseded: object | None = None  # WAITING: an older waiter of the same pod to answer


@dataclass(slots=True)
class _Barrier:
    """Members of one gang waiting in bind."""

    waiting: dict[str, tuple[BindRecord, object]] = field(default_factory=dict)  # uid -> (record, waiter)
    reached: set[str] = field(default_factory=set)  # members that reached bind this round
    committing: bool = False


@dataclass(frozen=True, slots=True)
class Victims:
    """One node's victim set as the scheduler proposed it."""

    pod_uids: tuple[str, ...]
    pdb_violations: int
    gangs: Mapping[str, str | None]  # uid -> gang key read from the pod object (when sent)


# ---------------------------------------------------------------------- the planner
class GangPlanner:
    """Gang semantics over a ``ClusterState``. Thread-safe: one member of a gang is decided at a
    time (a lock per gang key); the state serialises its own writers."""

    def __init__(self, state: ClusterState, policy: GangPolicy | None = None, *,
                 counters: dict[str, int] | None = None):
        self.state = state
        self.policy = policy or GangPolicy()
        self.counters = {} if counters is None else counters
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._barriers: dict[str, _Barrier] = {}
        self._evictions: dict[str, dict[str, list[BindRecord]]] = {}  # preemptor uid -> node -> pods
        self._undoing: dict[str, tuple[set[str], float]] = {}  # gang -> (uids being evicted, since)
        self._seen: dict[str, dict[str, Member]] = {}  # gang -> uid -> member: its makeup (makeup.py)
        self._replanned: dict[str, set[str]] = {}  # gang -> uids whose claims a new plan dropped
        self._answers: list[tuple[object, str]] = []  # bind waiters to answer at the next tick

    def _count(self, name: str) -> None:
        with self._locks_guard:  # decisions run on several threads
            self.counters[name] = self.counters.get(name, 0) + 1

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    # ------------------------------------------------------------------ housekeeping
    def tick(self) -> tuple[list[str], list[tuple[object, str]]]:
        """Expire reservations (TTL) and release gangs older than ``gang_timeout_s``. Returns the
        released keys and the bind waiters to answer (with their message)."""
        gone = self.state.expire()
        now = self.state.clock()
        for key, res in list(self.state.reservations().items()):
            if not res.complete and now - res.created_at > self.policy.gang_timeout_s:
                log.warning("gang %s did not complete within %.0f s: releasing its reservation",
                            key, self.policy.gang_timeout_s)
                self.state.release(key)
                gone.append(key)
        if len(self._locks) > 4096:  # forget the locks of gangs that are not being planned
            live = set(self.state.reservations())
            with self._locks_guard:
                self._locks = {k: v for k, v in self._locks.items() if v.locked() or k in live}
        with self._locks_guard:
            answers, self._answers = self._answers, []
        for key in gone:
            barrier = self._barriers.pop(key, None)
            if barrier:
                answers += [(waiter, f"gang {key} timed out before every member reached bind")
                            for _, waiter in barrier.waiting.values()]
        return gone, answers

    def drop_barrier(self, key: str) -> list[object]:
        """Forget gang ``key``'s bind barrier (its reservation was released from outside); returns
        the waiters of the members that were waiting in bind, for the caller to answer."""
        barrier = self._barriers.pop(key, None)
        return [w for _, w in barrier.waiting.values()] if barrier is not None else []

    @property
    def answers_due(self) -> bool:
        """Bind waiters wait for an answer the next ``tick`` gives (a gang was planned again)."""
        return bool(self._answers)

    def gangs_at_barrier(self) -> int:
        """Gangs with at least one member waiting in bind for the rest."""
        return sum(1 for b in list(self._barriers.values()) if b.waiting)

    def forget(self, pod_uid: str, gang: str | None) -> None:
        """A pod is gone: give back its reservation slot and drop its eviction intents."""
        if gang is not None:
            self.state.unclaim(gang, pod_uid)
            seen = self._seen.get(gang)
            if seen is not None:
                seen.pop(pod_uid, None)
                if not seen:
                    del self._seen[gang]
        self._evictions.pop(pod_uid, None)

    # ------------------------------------------------------------------ filter
    def decide(self, member: Member, offered: Sequence[str], *, plan: bool = True,
               one_node: bool = False) -> Decision | None:
        """Where ``member`` may go among the ``offered`` node names (see the module docstring).

        ``plan=False`` answers only what needs no placement (a member of a planned gang whose slot
        is offered, a pod outside any gang, ...) and never waits for another thread deciding the
        same gang: None means "call again with ``plan=True``", off any event loop (planning may
        run CP-SAT for ``time_limit_ms``). It may have claimed the member's slot (claims are
        idempotent: the full call finds the same one). ``one_node``: a GPU pod outside any gang
        is placed on its best-fit node alone (``_best_fit_node``), not on every node it fits."""
        known, unknown = self.state.split_known(offered)
        not_synced = dict.fromkeys(unknown, NODE_NOT_SYNCED)
        rec = self.state.allocation(member.pod_uid)
        if rec is not None:  # already bound here (a repeat after a lost reply)
            return Decision(Verdict.PLACE, f"pod is bound to {rec.node}", (rec.node,), not_synced)
        if not member.held:
            return self._decide_single(member, known, not_synced, one_node)
        if member.gang_size is None:
            return Decision(Verdict.WAIT, f"gang {member.gang}: size unknown, members still arriving "
                                          f"(no gangplace.dev/size label, and its PodGroup is not synced yet or "
                                          f"its pods are still being created)")
        undoing = self._still_undoing(member.gang)
        if undoing:
            return Decision(Verdict.WAIT, f"gang {member.gang}: a member's bind was refused after {undoing} other "
                                          f"member(s) were bound; they are being evicted, then the gang is re-planned")
        lock = self._lock(member.gang)
        if not lock.acquire(blocking=plan):
            return None
        try:
            return self._decide_member(member, known, not_synced, plan)
        except GangplaceError as e:  # the gang the labels describe is invalid (e.g. a slice size that
            # does not divide the gang size): the engine refuses it, the member never fits
            self._count("gang_invalid")
            return Decision(Verdict.NEVER, f"gang {member.gang}: {e}")
        finally:
            lock.release()

    def _decide_single(self, member: Member, known: list[str], not_synced: dict[str, str],
                       one_node: bool = False) -> Decision:
        """A pod outside any gang: the offered nodes whose capacity no reservation holds."""
        with self.state.lock:  # both views of the same node arrays
            snap = self.state.snapshot()
            live = self.state.cluster
        if not known:
            return Decision(Verdict.NOT_NOW, "no node offered", (), not_synced)
        idx = np.fromiter(map(snap.node_index.__getitem__, known), np.int64, len(known))

        def fits(c: Cluster) -> np.ndarray:
            return ((c.free_gpus[idx] >= member.gpus) & (c.free_cpu[idx] >= member.cpu)
                    & (c.free_mem[idx] >= member.memory) & (c.free_pods[idx] >= 1))
        ok_now = fits(snap).tolist()
        passing = tuple(compress(known, ok_now))
        reasons = dict(not_synced)
        if len(passing) == len(known):  # every offered node fits (the common case): no reasons to give
            return Decision(Verdict.PLACE, "", self._best_fit_node(snap, idx, ok_now, member, passing) if one_node
                            else passing, reasons)
        ok_unreserved = fits(live)
        for n, ok, unres in zip(known, ok_now, ok_unreserved.tolist()):
            if not ok:
                reasons[n] = "capacity reserved for a gang" if unres else "insufficient free capacity"
        if passing:
            return Decision(Verdict.PLACE, "", self._best_fit_node(snap, idx, ok_now, member, passing) if one_node
                            else passing, reasons)
        if self.policy.reservation_blocked_error and bool(ok_unreserved.any()):
            # only reservations stand in the way: retry on a timer (see GangPolicy)
            return Decision(Verdict.WAIT, "the free capacity is reserved for gangs being scheduled", (), reasons)
        return Decision(Verdict.NOT_NOW, "insufficient free capacity", (), reasons)

    @staticmethod
    def _best_fit_node(snap: Cluster, idx: np.ndarray, ok: list[bool], member: Member,
                       passing: tuple[str, ...]) -> tuple[str, ...]:
        """``passing`` (the offered nodes ``idx`` where ``ok``) cut to its best-fit node for a pod
        outside any gang: the top of ``scores`` on the same snapshot, the first offered on a tie;
        ``passing`` itself for a pod without GPUs. One node passing filter makes kube-scheduler
        skip scoring, so the extender's prioritize call is saved."""
        if member.gpus <= 0 or len(passing) < 2:
            return passing
        fitting, scores = best_fit_scores(snap, idx[np.asarray(ok, bool)], gpus=member.gpus, cpu=member.cpu,
                                          memory=member.memory, max_score=1 << 20)
        if not len(fitting):
            return passing
        return (snap.node_names[int(fitting[int(np.argmax(scores))])],)

    def _decide_member(self, member: Member, known: list[str], not_synced: dict[str, str],
                       plan: bool) -> Decision | None:
        key = member.gang
        self._seen.setdefault(key, {})[member.pod_uid] = member
        slot, exact = self._claim(member, known)  # (None, False) while the gang has no plan
        fresh = self.state.reservation(key) is None
        if fresh or ((slot is None or not exact or self._fewer_members(member)) and self._makeup_changed(member)):
            # no plan yet, or not the gang that was planned (a member of a shape the plan did not
            # foresee, or fewer members): plan it again, while none of it is being bound
            if slot is not None:
                self.state.unclaim(key, member.pod_uid)
            if not plan:
                return None
            rejected = self._plan(member, known) if fresh else self._plan_again(member, known)
            if rejected is not None:
                return _with_reasons(rejected, not_synced)
            slot, exact = self._claim(member, known)
        if slot is None:
            return Decision(Verdict.NOT_NOW, f"gang {key} has no free slot: all its members are placed",
                            (), not_synced)
        if member.gpus > slot.gpus or member.cpu > slot.cpu or member.memory > slot.memory:
            # the plan cannot change now (some of the gang is being bound): a bigger member would
            # overcommit its slot's node; it can never fit this plan, so say so once, clearly
            self.state.unclaim(key, member.pod_uid)
            self._count("gang_member_mismatch")
            return Decision(Verdict.NEVER, (
                f"gang {key}: this member requests {member.gpus} GPUs, {member.cpu}m CPU, {member.memory} "
                f"bytes of memory but no slot of the gang's plan is that big ({slot.gpus} GPUs, {slot.cpu}m "
                f"CPU, {slot.memory} bytes) and the plan cannot change while its members are being bound"),
                (), not_synced)
        self._replanned.get(key, set()).discard(member.pod_uid)
        self.state.refresh(key)
        if slot.node not in set(known):
            if not plan:
                return None
            rejected = self._replan(member, known)
            if rejected is not None:
                return _with_reasons(rejected, not_synced)
            res = self.state.reservation(key)
            slot = self.state.claim(key, member.pod_uid, nodes=known,
                                    pod_set=makeup.pod_set_for(res.gang, member) if res is not None else None)
            if slot is None or slot.node not in set(known):
                return Decision(Verdict.NOT_NOW, f"gang {key}: no slot on the nodes offered for this member",
                                (), not_synced)
        self._count("filter_member")
        return Decision(Verdict.PLACE, f"gang {key} places this member on {slot.node}", (slot.node,), not_synced)

    def _claim(self, member: Member, known: list[str]):
        """(the member's slot, whether its pod set is of the member's shape): a slot of its own
        shape when the plan has that shape, else any free slot (None: no free slot)."""
        res = self.state.reservation(member.gang)
        if res is None:
            return None, False
        pod_set = makeup.pod_set_for(res.gang, member)
        slot = self.state.claim(member.gang, member.pod_uid, index=member.completion_index, nodes=known,
                                pod_set=pod_set)
        return slot, slot is not None and slot.pod_set == pod_set

    def _bound(self, key: str) -> list[BindRecord]:
        """The bound members of gang ``key`` that count toward its size: those with GPUs (a
        leader without GPUs bound by the stock scheduler is not one, see ``Member.held``)."""
        return [r for r in self.state.gang_members(key) if r.gpus > 0]

    def _unbound_seen(self, key: str) -> list[Member]:
        seen = list(self._seen.get(key, {}).values())  # a copy: ``forget`` runs on another thread
        return [m for m in seen if self.state.allocation(m.pod_uid) is None]

    def _fewer_members(self, member: Member) -> bool:
        """Cheap test: does the plan hold more slots than the gang has members now (its size
        shrank, e.g. a PodGroup's leader without GPUs was seen after the plan was made)?"""
        res = self.state.reservation(member.gang)
        return res is not None and len(res.slots) > member.gang_size

    def _makeup_changed(self, member: Member) -> bool:
        """Would the gang be planned with other pod sets now than its reservation holds, and may
        it be planned again (no member of it is being bound)?"""
        key = member.gang
        res = self.state.reservation(key)
        barrier = self._barriers.get(key)
        if res is None or (barrier is not None and barrier.committing):
            return False
        remaining = member.gang_size - len(self._bound(key))
        planned = makeup.planned_makeup(res.gang, makeup.pod_set_counts(s for s in res.slots if not s.bound))
        return remaining > 0 and makeup.differs(makeup.makeup_of(member, self._unbound_seen(key), remaining), planned)

    def _plan_again(self, member: Member, known: list[str]) -> Decision | None:
        """Plan the gang again from its makeup now. The members that hold a slot of their own
        shape keep it (they may be waiting in bind, or at a plugin's Permit, on that node): the
        other unbound slots are dropped and the members not placed yet are planned around the
        kept slots and the bound members. When they do not fit there, the whole plan is dropped
        and the gang planned from scratch. The members whose slots were dropped are filtered
        again: their binds are refused until then (``arrive``), and those waiting in bind are
        answered at the next ``tick``, so the scheduler retries them. None when planned."""
        key = member.gang
        res = self.state.reservation(key)
        if res is None:
            return self._plan(member, known)
        shapes = {ps.name: makeup.pod_set_shape(ps) for ps in res.gang.pod_sets}
        seen = dict(self._seen.get(key, {}))
        kept = [s for s in res.slots if not s.bound and s.pod_uid not in (None, member.pod_uid)
                and s.pod_uid in seen and makeup.shape_of(seen[s.pod_uid]) == shapes[s.pod_set]]
        remaining = member.gang_size - len(self._bound(key))
        kept_makeup = Counter(shapes[s.pod_set] for s in kept)
        rest = makeup.makeup_of(member, self._unbound_seen(key), remaining) - kept_makeup
        self._count("gang_makeup_replanned")
        table, part = makeup.grown(res.gang, kept_makeup, rest)
        if rest and kept:
            keep = {s.pod_uid for s in kept}
            self._drop_claims(key, (set(res.members) | {member.pod_uid}) - keep)
            self.state.shrink(key, keep=keep)
            anchors = [s.node for s in kept] + [r.node for r in self._bound(key)]
            placement = self._place_around(part, anchors, known, reserve_key=None)
            if placement.placed and self.state.extend(key, placement, gang=table):
                return None
        self._drop_claims(key, set(res.members) | {member.pod_uid})
        self.state.release(key)
        return self._plan(member, known)

    def _drop_claims(self, key: str, uids: set[str]) -> None:
        """Members whose slots a new plan drops: refused in bind until filtered again, and answered
        at the next ``tick`` if they wait in bind now."""
        self._replanned.setdefault(key, set()).update(uids)
        barrier = self._barriers.get(key)
        waiting = [barrier.waiting.pop(uid) for uid in uids if barrier is not None and uid in barrier.waiting]
        answers = [(w, f"gang {key} was planned again (a member of another shape arrived); this member is "
                       f"retried") for _, w in waiting]
        with self._locks_guard:  # ``tick`` takes them on the adapter's thread
            self._answers.extend(answers)

    # ------------------------------------------------------------------ planning
    def _plan(self, member: Member, known: list[str]) -> Decision | None:
        """Plan the gang's members that are not bound yet and reserve them; None when reserved,
        else the rejection."""
        key = member.gang
        bound = self._bound(key)
        remaining = member.gang_size - len(bound)
        if remaining <= 0:
            return Decision(Verdict.NOT_NOW, f"gang {key} already has all {member.gang_size} members bound")
        min_count = None if member.min_size is None else max(1, member.min_size - len(bound))
        gang = makeup.gang_request(member, self._unbound_seen(key), remaining, min_count=min_count)
        placement = self._place_around(gang, [r.node for r in bound], known, reserve_key=key)
        if placement.placed:
            self._count("gang_planned")
            return None
        return self._reject(gang, placement, known)

    def _replan(self, member: Member, known: list[str]) -> Decision | None:
        """The member's slot is on a node not offered for it: place its slot, and the unclaimed
        slots on nodes not offered either, again around the slots kept and the members bound, and
        only then swap them in. Other members keep their claims: a node missing from this member's
        list may only be full of its gang mates' assumed pods. When they cannot be placed again
        and their nodes are still in the cluster and schedulable (terminating victims or a
        nominated pod hold them for a moment), the plan stays and the member waits; only a plan
        whose nodes are gone or cordoned is dropped. None when re-planned."""
        key = member.gang
        res = self.state.reservation(key)
        if res is None:
            return None
        others = set(res.members) - {member.pod_uid}
        offered = set(known)
        moving = [s for s in res.slots if not (s.bound or (s.pod_uid is not None and s.pod_uid in others)
                                               or (s.pod_uid is None and s.node in offered))]
        if not moving:
            return None
        anchors = [s.node for s in res.slots if s not in moving] + [r.node for r in self._bound(key)]
        gang = makeup.subset(res.gang, makeup.pod_set_counts(moving))
        placement = self._place_around(gang, anchors, known, reserve_key=None)
        if placement.placed:
            self.state.shrink(key, keep=others, keep_nodes=offered)
            if self.state.extend(key, placement):
                self._count("gang_replanned")
                return None
            return Decision(Verdict.WAIT, f"gang {key}: capacity changed while re-planning, retrying")
        if self._nodes_usable([s.node for s in moving]):
            self._count("gang_waits_for_its_nodes")
            return Decision(Verdict.NOT_NOW, (
                f"gang {key}: this member's planned node is not offered now and the rest of the gang "
                f"cannot move ({placement.reason or 'no room around its other members'}); the plan is "
                f"kept, retried when the cluster changes"))
        self.state.release(key)  # what is left cannot run here: plan from scratch next time
        return self._reject(gang, placement, known)

    def _nodes_usable(self, names: list[str]) -> bool:
        """Every node still in the cluster and schedulable (not cordoned)."""
        cluster = self.state.cluster
        return all(n in cluster.node_index and cluster.schedulable[cluster.node_index[n]] for n in names)

    def _place_around(self, gang: GangRequest, anchors: list[str], known: list[str], *,
                      reserve_key: str | None) -> Placement:
        """Place ``gang`` on the offered nodes, inside the lowest domain holding every anchor node
        first (the heuristic's own common-domain search), widening one level at a time, then on
        every offered node. With a required level and anchors, never beyond the anchors' domain of
        that level: the anchors (slots kept, members bound) already fix which domain the whole gang
        must share, so the members placed here go there or nowhere."""
        cluster = self.state.cluster
        tries: list[list[str]] = []
        idx = [cluster.node_index[n] for n in anchors if n in cluster.node_index]
        required = gang.topology.required if gang.topology.required in cluster.levels else None
        if idx:
            top = cluster.levels.index(required) if required else 0
            used = np.zeros(cluster.n_nodes, bool)
            used[idx] = True
            for d in ancestors(cluster, common_domain(cluster, used), -1):
                if d < 0 or cluster.domain_level[d] < top:
                    break
                inside = set(cluster.node_names[int(cluster.domain_start[d]):int(cluster.domain_end[d])])
                tries.append([n for n in known if n in inside])
        if not (idx and required):
            tries.append(known)
        if not tries:  # the anchors already span several domains of the required level
            return Placement(gang=gang.name, placed=False, reason=(
                f"gang {gang.name}: its members already placed span more than one {required}; "
                f"the rest cannot join them in one {required}"))
        placement = None
        for nodes in tries:
            placement = self.state.place(gang, placer=self.policy.placer, time_limit_ms=self.policy.time_limit_ms,
                                         reserve=reserve_key is not None, key=reserve_key, nodes=nodes)
            if placement.placed:
                return placement
        return placement

    def _reject(self, gang: GangRequest, placement: Placement, known: list[str]) -> Decision:
        """One identical reason on every node; NEVER if it cannot fit the empty cluster. With
        ``reservation_blocked_error``, a gang that only other gangs' reservations keep out WAITs."""
        reason = placement.reason or f"gang {gang.name} does not fit"
        if not self._fits_empty(gang):
            self._count("gang_rejected_never")
            return Decision(Verdict.NEVER, reason + " (not even in the empty cluster)")
        if self.policy.reservation_blocked_error and self._fits_unreserved(gang, known):
            self._count("gang_waits_for_reservations")
            return Decision(Verdict.WAIT, f"gang {gang.name} waits for capacity reserved for other gangs")
        self._count("gang_rejected_now")
        return Decision(Verdict.NOT_NOW, reason)

    def _fits_unreserved(self, gang: GangRequest, known: list[str]) -> bool:
        """Would the gang fit the offered nodes if no reservation held any capacity?"""
        if not self.state.reservations():
            return False
        with self.state.lock:
            live = self.state.cluster.copy()
        allowed = np.zeros(live.n_nodes, bool)
        allowed[[live.node_index[n] for n in known if n in live.node_index]] = True
        live.schedulable &= allowed.astype(np.uint8)
        return _heuristic_places(live, gang)

    def _fits_empty(self, gang: GangRequest) -> bool:
        empty = self.state.cluster.copy()
        empty.free_gpus[:] = empty.cap_gpus
        empty.free_cpu[:] = empty.cap_cpu
        empty.free_mem[:] = empty.cap_mem
        empty.free_pods[:] = empty.cap_pods
        return _heuristic_places(empty, gang)

    # ------------------------------------------------------------------ prioritize
    def scores(self, member: Member, offered: Sequence[str], max_score: int) -> dict[str, int]:
        """Node scores for ``member`` (nodes not listed score 0): ``max_score`` on a gang member's
        reserved node; best-fit scores that keep large domains free for a pod outside any gang."""
        if member.held:
            res = self.state.reservation(member.gang)
            slot = res.slot_of(member.pod_uid) if res is not None else None
            return {} if slot is None else {slot.node: max_score}
        snap = self.state.snapshot()
        try:  # one C loop when every offered node is known (the common case)
            idx = np.fromiter(map(snap.node_index.__getitem__, offered), np.int64, len(offered))
        except KeyError:
            idx = np.fromiter((snap.node_index[n] for n in offered if n in snap.node_index), np.int64)
        fitting, scores = best_fit_scores(snap, idx, gpus=member.gpus, cpu=member.cpu, memory=member.memory,
                                          max_score=max_score)
        return dict(zip(map(snap.node_names.__getitem__, fitting.tolist()), scores.tolist()))

    # ------------------------------------------------------------------ bind barrier
    def arrive(self, member: Member, node: str, *, namespace: str, name: str, waiter: object) -> BindStep:
        """A member reached bind on ``node``; ``waiter`` is the adapter's handle for its answer."""
        rec = BindRecord(member.pod_uid, node, member.gpus, member.cpu, member.memory, member.gang,
                         namespace, name, member.priority, time.time())
        if not member.held:
            return BindStep(BindKind.ALONE, record=rec)
        key = member.gang
        res = self.state.reservation(key)
        if res is None:
            if self.state.allocation(member.pod_uid) is not None:  # bound already (a repeated bind)
                return BindStep(BindKind.DURABLE)
            return BindStep(BindKind.REFUSED, f"gang {key} has no reservation (expired or timed out); "
                                              f"it will be re-planned")
        if member.pod_uid in self._replanned.get(key, ()):
            return BindStep(BindKind.REFUSED, f"gang {key} was planned again after this member was placed; "
                                              f"it is filtered again")
        self.state.refresh(key)
        barrier = self._barriers.setdefault(key, _Barrier())
        old = barrier.waiting.pop(member.pod_uid, None)
        barrier.waiting[member.pod_uid] = (rec, waiter)
        barrier.reached.add(member.pod_uid)
        need = len(res.unbound())
        commit = len(barrier.waiting) >= need and not barrier.committing
        if commit:
            barrier.committing = True
        return BindStep(BindKind.WAITING, record=rec, need=need, reached=len(barrier.waiting), commit=commit,
                        superseded=None if old is None else old[1])

    def take_batch(self, key: str) -> list[tuple[str, BindRecord, object]]:
        """The members to bind now that the barrier of gang ``key`` is complete: (uid, record, waiter)."""
        barrier = self._barriers.get(key)
        return [] if barrier is None else [(uid, rec, w) for uid, (rec, w) in barrier.waiting.items()]

    def committed(self, key: str, uids: Iterable[str], failed: bool) -> list[BindRecord]:
        """The batch of ``take_batch`` was bound (``failed``: some bind answered an error).

        Returns the pods to evict: after a partial bind (the API server refused a member's Binding
        after others of the batch were bound), the members of this batch that were bound, so the gang
        is not left half-running (members bound in earlier rounds, e.g. the running part of a gang
        whose lost member is being replaced, are kept); its reservation is released and its members WAIT in ``decide`` until those
        pods are gone (the watch removes them from the state), then the gang is planned again from
        scratch -- what coscheduling's Permit does for a gang that fails before it is whole. When
        no member was bound, nothing is evicted and the plan is kept: the refused members retry."""
        uids = list(uids)
        barrier = self._barriers.get(key)
        if barrier is not None:
            barrier.reached.clear()
            for uid in uids:
                barrier.waiting.pop(uid, None)
            barrier.committing = False
        self._count("gang_bind_errors" if failed else "gang_bound")
        res = self.state.reservation(key)
        if failed:
            batch = set(uids)
            bound = [r for r in self.state.gang_members(key) if r.pod_uid in batch]
            if bound:
                self._count("gang_partial_bind_undone")
                log.warning("gang %s: a bind was refused after %d member(s) were bound: evicting them and "
                            "re-planning the gang", key, len(bound))
                if res is not None:
                    self.state.release(key)
                self._barriers.pop(key, None)
                self._undoing[key] = ({r.pod_uid for r in bound}, self.state.clock())
                return list(bound)
            return []
        if res is not None and res.complete:
            self.state.release(key)  # the allocations hold the capacity now
            self._barriers.pop(key, None)
            self._seen.pop(key, None)
            self._replanned.pop(key, None)
        return []

    def _still_undoing(self, key: str) -> int:
        """How many pods of gang ``key``'s undone partial bind are still bound (0: none, or done).
        An eviction that never completes (refused by a PodDisruptionBudget, say) stops holding the
        gang back after ``gang_timeout_s``: it is then planned around the members still bound."""
        uids, since = self._undoing.get(key, (None, 0.0))
        if not uids:
            return 0
        left = sum(1 for u in uids if self.state.allocation(u) is not None)
        if left and self.state.clock() - since > self.policy.gang_timeout_s:
            log.warning("gang %s: %d member(s) of an undone partial bind are still bound after %.0f s; planning "
                        "the gang around them", key, left, self.policy.gang_timeout_s)
            left = 0
        if not left:
            del self._undoing[key]
        return left

    def where(self, nodes: Sequence[str]) -> str:
        """Where a placed gang is, for people: its lowest common domain and its node count."""
        cluster = self.state.cluster
        idx = sorted({cluster.node_index[n] for n in nodes if n in cluster.node_index})
        count = f"{len(set(nodes))} node{'s' if len(set(nodes)) != 1 else ''}"
        if not idx or not cluster.levels:
            return count
        used = np.zeros(cluster.n_nodes, bool)
        used[idx] = True
        d = common_domain(cluster, used)
        if d < 0:
            return f"{count} across {len({int(cluster.node_domain[0, i]) for i in idx})} {cluster.levels[0]}s"
        return f"{count} in {cluster.levels[int(cluster.domain_level[d])]} {cluster.domain_name(d)}"

    def left(self, key: str, uid: str, waiter: object, *, timed_out: bool) -> int:
        """A waiting member stopped waiting without an answer: its wait timed out (then, once
        nobody waits, the round starts over) or its caller hung up. Returns how many members had
        reached bind this round."""
        barrier = self._barriers.get(key)
        if barrier is None:
            return 0
        reached = len(barrier.reached)
        if barrier.waiting.get(uid, (None, None))[1] is waiter:
            del barrier.waiting[uid]
        if timed_out and not barrier.waiting:
            barrier.reached.clear()
        return reached

    # ------------------------------------------------------------------ preempt
    def group_victims(self, preemptor: Member | None, victims: Mapping[str, Victims]) -> dict[str, Victims]:
        """The victim sets to accept, by node. Sets that evict whole gangs win; when there is
        none and ``evict_partial_gangs`` is set, sets that break a gang are accepted and the rest
        of each broken gang is kept for ``take_evictions``. Among them, the nodes whose victims
        are all in the engine's preemption plan are preferred when there are any."""
        gangs_of: dict[str, str | None] = {}
        for v in victims.values():
            for uid in v.pod_uids:
                rec = self.state.allocation(uid)
                gangs_of[uid] = (rec.gang if rec is not None else None) or v.gangs.get(uid)
        whole: dict[str, tuple[Victims, list[BindRecord]]] = {}
        partial: dict[str, tuple[Victims, list[BindRecord]]] = {}
        for node, v in victims.items():
            on_node = set(v.pod_uids)
            others = [m for gang in {gangs_of[u] for u in v.pod_uids if gangs_of[u]}
                      for m in self.state.gang_members(gang) if m.pod_uid not in on_node]
            (partial if others else whole)[node] = (v, others)
        preferred = self._preemption_advice(preemptor, {**whole, **partial}, gangs_of)
        chosen = whole or (partial if self.policy.evict_partial_gangs else {})
        if preferred:
            chosen = {n: c for n, c in chosen.items() if n in preferred} or chosen
        if preemptor is not None:
            intents = {n: others for n, (_, others) in chosen.items() if others}
            if intents:
                self._evictions[preemptor.pod_uid] = intents
        return {n: v for n, (v, _) in chosen.items()}

    def _preemption_advice(self, preemptor: Member | None, candidates: Mapping[str, tuple[Victims, list]],
                           gangs_of: Mapping[str, str | None]) -> set[str]:
        """Nodes whose victims are all in the engine's preemption plan (empty: no preference)."""
        if preemptor is None:
            return set()
        try:
            plan = plan_preemption(self.state.snapshot(),
                                   preemptor.gang_request(1 if preemptor.gang is None else None), placer="heuristic")
            planned = {getattr(v, "gang", v) for v in (getattr(plan, "victims", None) or ())}
        except Exception as e:  # the plan is advice only
            log.info("preemption plan unavailable: %s", e)
            return set()
        out = set()
        for node, (v, _) in candidates.items():
            names = {gangs_of[u] or f"pod:{u}" for u in v.pod_uids}
            if names and names <= planned:
                out.add(node)
        return out

    def take_evictions(self, member: Member) -> list[BindRecord]:
        """The pods to evict now that the preemptor ``member`` came back with its nominated node
        (the rest of the gangs its victim set broke); each intent is handed out once."""
        if not member.nominated_node or member.pod_uid not in self._evictions:
            return []
        return self._evictions.pop(member.pod_uid, {}).get(member.nominated_node, [])


def _with_reasons(decision: Decision, node_reasons: Mapping[str, str]) -> Decision:
    return Decision(decision.verdict, decision.reason, decision.nodes, {**node_reasons, **decision.node_reasons})


def _heuristic_places(cluster: Cluster, gang: GangRequest) -> bool:
    try:
        return engine_place(cluster, gang, "heuristic").placed
    except GangplaceError:
        return False

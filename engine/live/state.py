"""The live cluster: allocations, gang reservations with a TTL, versioned snapshots.

One writer at a time under ``lock`` (a ``threading.RLock``: the asyncio extender, the gRPC
servicer and the Kubernetes watch thread all call in); placements are computed on a consistent
snapshot and committed only if they still fit. ``version`` increases with every change.

Accounting, per node (``check_consistency`` verifies it)::

    capacity == base_used + allocated + reserved + free_in_snapshot

- ``base_used``: usage given by the node spec itself (a cluster file's ``gpus_used``: background
  load this process does not track pod by pod);
- ``allocated``: pods bound through ``bind`` (per pod UID: node, GPUs/CPU/memory, gang);
- ``reserved``: slots of gang reservations that are not bound yet and not expired.

The live ``Cluster`` owned here has allocations subtracted from its ``free_*`` arrays;
``snapshot()`` additionally subtracts the unexpired reservations. ``free_*`` can go negative
only when the outside world overcommits (a replayed or observed bind on a node that shrank);
then the node simply fits nothing.

Journal (file mode, ``journal_dir`` set; engine/live/journal.py): append-only JSON lines in
``<journal_dir>/gangplace-journal.jsonl``,
``{"op": "bind", "uid", "node", "gpus", "cpu", "memory", "gang", "namespace", "name", "priority"}``
and ``{"op": "unbind", "uid"}``, group-committed: under the lock a change is written to the file
(no fsync) and applied; after the lock is released the caller waits until the fsync covering its
line has returned (one fsync serves every caller waiting at the time), and only then
acknowledges, so every acknowledged bind survives a crash while the lock is never held across
an fsync. ``bind``/``bind_many``/``unbind``/``unbind_many`` wait by default; with ``wait=False``
they return the sequence number for ``wait_durable(seq)``, which async callers run in a thread.
Crash semantics (a line on disk that was never acknowledged, never the reverse): engine/live/journal.py. On start the journal is replayed (a torn last line, from a crash mid-write,
is ignored) and compacted: rewritten atomically with one bind line per live allocation (again
while running, once it holds more than ``COMPACT_MIN_LINES`` lines and 4x the live allocations).

API (kept stable; the gRPC servicer and the HTTP extender code against it)::

    state = ClusterState(cluster, journal_dir=None, reservation_ttl_s=60.0, clock=time.monotonic)
    state.version, state.lock
    state.snapshot(exclude=None, nodes=None) -> Cluster
    state.place(gang, placer="auto", time_limit_ms=100.0, reserve=False, key=None,
                nodes=None, exclude=None) -> Placement
    state.reserve(key, gang, placement, ttl_s=None); state.release(key) -> bool
    state.reservation(key) -> Reservation | None; state.refresh(key) -> bool
    state.claim(key, pod_uid, index=None, nodes=None) -> Slot | None
    state.bind(pod_uid, node, gpus=, cpu=0, memory=0, gang=None, namespace="", name="", priority=0)
    state.bind_many([BindRecord...], wait=True) -> seq; state.unbind(pod_uid) -> bool
    state.unbind_many([pod_uid...], wait=True) -> list[bool]; state.wait_durable(seq=None)
    state.upsert_node(spec); state.upsert_nodes(specs); state.remove_node(name) -> bool
    state.replace_nodes(specs)        # a full re-list: nodes not listed are removed
    state.expire() -> list[str]; state.stats() -> dict; state.check_consistency() -> list[str]
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..model.cluster import Cluster
from ..model.errors import InvalidFile, InvalidRequest
from .journal import COMPACT_MIN_LINES, JOURNAL_NAME, Journal  # noqa: F401  (re-exported)
from ..model.types import Allocation, GangRequest, NodeSpec, Placement

log = logging.getLogger("gangplace.state")

DEFAULT_RESERVATION_TTL_S = 60.0


@dataclass(frozen=True, slots=True)
class BindRecord:
    """One pod's allocation on one node."""

    pod_uid: str
    node: str
    gpus: int
    cpu: int = 0  # millicores
    memory: int = 0  # bytes
    gang: str | None = None
    namespace: str = ""
    name: str = ""
    priority: int = 0

    @classmethod
    def from_json(cls, d: dict) -> "BindRecord":
        return cls(str(d["uid"]), str(d["node"]), int(d["gpus"]), int(d.get("cpu") or 0), int(d.get("memory") or 0),
                   d.get("gang"), d.get("namespace") or "", d.get("name") or "", int(d.get("priority") or 0))

    def to_json(self) -> dict:
        return {"op": "bind", "uid": self.pod_uid, "node": self.node, "gpus": self.gpus, "cpu": self.cpu,
                "memory": self.memory, "gang": self.gang, "namespace": self.namespace, "name": self.name,
                "priority": self.priority}


@dataclass(slots=True)
class Slot:
    """One pod position of a reserved gang: where it goes and who took it."""

    pod_set: str
    index: int  # within the pod set, topology order
    node: str
    gpus: int
    cpu: int
    memory: int
    pod_uid: str | None = None  # the member that claimed it
    bound: bool = False  # bound: its capacity moved from the reservation to an allocation


@dataclass(slots=True)
class Reservation:
    key: str
    gang: GangRequest
    placement: Placement
    slots: list[Slot]
    expires_at: float
    created_at: float
    members: dict[str, int] = field(default_factory=dict)  # pod uid -> slot position

    @property
    def nodes(self) -> list[str]:
        return [s.node for s in self.slots]

    def unbound(self) -> list[Slot]:
        return [s for s in self.slots if not s.bound]

    def slot_of(self, pod_uid: str) -> Slot | None:
        pos = self.members.get(pod_uid)
        return None if pos is None else self.slots[pos]

    @property
    def complete(self) -> bool:
        return all(s.bound for s in self.slots)


def _check_amount(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidRequest(f"must be a non-negative integer, got {value!r}", field=field)
    return int(value)


def _check_name(value, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"must be a non-empty string, got {value!r}", field=field)
    return value


class ClusterState:
    """The live cluster state. Thread-safe; see the module docstring."""

    def __init__(self, cluster: Cluster, *, journal_dir: str | Path | None = None,
                 reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S,
                 clock: Callable[[], float] = time.monotonic):
        if not reservation_ttl_s > 0:
            raise InvalidRequest(f"must be > 0, got {reservation_ttl_s!r}", field="reservation_ttl_s")
        self.lock = threading.RLock()
        self.version = 0
        self.levels: tuple[str, ...] = tuple(cluster.levels)
        self.reservation_ttl_s = float(reservation_ttl_s)
        self.clock = clock
        # base specs: the node as given, usage included (not tracked pod by pod)
        self._specs: dict[str, NodeSpec] = {s.name: s for s in cluster.nodes}
        self._allocs: dict[str, BindRecord] = {}
        self._by_node: dict[str, dict[str, BindRecord]] = {}
        self._by_gang: dict[str, dict[str, BindRecord]] = {}
        self._reservations: dict[str, Reservation] = {}
        self._cluster = cluster.copy()
        self._dirty = False
        self._journal: Journal | None = None
        if journal_dir is not None:
            self._open_journal(Path(journal_dir))

    # ------------------------------------------------------------------ live cluster
    def _live(self) -> Cluster:
        """The live cluster (allocations subtracted); rebuilt lazily after node changes."""
        if self._dirty:
            self._rebuild()
        return self._cluster

    def _rebuild(self) -> None:
        cluster = Cluster(self.levels, self._specs.values())
        self._cluster = cluster
        self._dirty = False
        for rec in self._allocs.values():
            self._apply(cluster, rec, +1)

    @staticmethod
    def _apply(cluster: Cluster, rec: BindRecord, sign: int) -> None:
        i = cluster.node_index.get(rec.node)
        if i is None:  # the node is gone; the allocation waits for its pod's deletion
            return
        cluster.free_gpus[i] -= sign * rec.gpus
        cluster.free_cpu[i] -= sign * rec.cpu
        cluster.free_mem[i] -= sign * rec.memory
        cluster.free_pods[i] -= sign
        alloc = Allocation(gang=rec.gang or f"pod:{rec.pod_uid}", priority=rec.priority, gpus=rec.gpus,
                           cpu=rec.cpu, memory=rec.memory)
        if sign > 0:
            cluster.allocations[i] = cluster.allocations[i] + (alloc,)
        else:
            items = list(cluster.allocations[i])
            if alloc in items:
                items.remove(alloc)
            cluster.allocations[i] = tuple(items)

    @property
    def cluster(self) -> Cluster:
        """The live cluster (do not mutate; use ``snapshot()`` for placements)."""
        with self.lock:
            return self._live()

    def node_names(self) -> list[str]:
        with self.lock:
            return list(self._live().node_names)

    def has_node(self, name: str) -> bool:
        with self.lock:
            return name in self._specs

    def split_known(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """(names of nodes the state has, the others), each in the given order; one lock."""
        with self.lock:
            specs = self._specs
            known = [n for n in names if n in specs]
            unknown = [n for n in names if n not in specs] if len(known) != len(names) else []
        return known, unknown

    def node_spec(self, name: str) -> NodeSpec | None:
        with self.lock:
            return self._specs.get(name)

    # ------------------------------------------------------------------ snapshots and placement
    def snapshot(self, *, exclude: str | Iterable[str] | None = None,
                 nodes: Iterable[str] | None = None) -> Cluster:
        """A copy with allocations and unexpired reservations subtracted from ``free_*``.

        ``exclude``: reservation key(s) not subtracted (re-planning a gang around itself).
        ``nodes``: only these nodes stay schedulable (the nodes the scheduler offered).
        """
        skip = {exclude} if isinstance(exclude, str) else set(exclude or ())
        with self.lock:
            snap = self._live().copy()
            now = self.clock()
            for key, res in self._reservations.items():
                if key in skip or res.expires_at <= now:
                    continue
                self._subtract_reservation(snap, res)
            snap.version = self.version
        if nodes is not None:
            allowed = np.zeros(snap.n_nodes, bool)
            idx = [snap.node_index[n] for n in nodes if n in snap.node_index]
            allowed[idx] = True
            snap.schedulable &= allowed.astype(np.uint8)
        return snap

    def try_snapshot(self, max_slots: int = 1024) -> Cluster | None:
        """``snapshot()`` only when it is cheap right now, else None (take the slow path).

        For callers that must never block, such as the event loop: the lock must be free at once,
        the arrays built (no rebuild after a node change pending), and the unexpired reservations
        must hold at most ``max_slots`` slots (subtracting them is a Python loop).
        """
        if not self.lock.acquire(blocking=False):
            return None
        try:
            if self._dirty or sum(len(r.slots) for r in self._reservations.values()) > max_slots:
                return None
            return self.snapshot()
        finally:
            self.lock.release()

    @staticmethod
    def _subtract_reservation(snap: Cluster, res: Reservation) -> None:
        for s in res.slots:
            if s.bound:
                continue
            i = snap.node_index.get(s.node)
            if i is None:
                continue
            snap.free_gpus[i] -= s.gpus
            snap.free_cpu[i] -= s.cpu
            snap.free_mem[i] -= s.memory
            snap.free_pods[i] -= 1

    def place(self, gang: GangRequest, *, placer: str = "auto", time_limit_ms: float = 100.0,
              reserve: bool = False, key: str | None = None, nodes: Iterable[str] | None = None,
              exclude: str | Iterable[str] | None = None, ttl_s: float | None = None) -> Placement:
        """Place a gang on a consistent snapshot; with ``reserve`` hold the answer under ``key``.

        The solver runs outside the lock (CP-SAT may take ``time_limit_ms``); the reservation is
        committed only if the placement still fits the state at commit time, else the gang is
        placed again under the lock (rare: another writer took the same capacity meanwhile).
        Reserving under an existing key replaces that reservation (the gang is planned around
        itself: pass ``exclude=key`` to ignore its old slots while planning).
        """
        from ..exact.auto import place as engine_place
        key = gang.name if key is None else key
        nodes = None if nodes is None else list(nodes)
        snap = self.snapshot(exclude=exclude, nodes=nodes)
        placement = engine_place(snap, gang, placer, time_limit_ms=time_limit_ms)
        if not reserve or not placement.placed:
            return placement
        with self.lock:
            if not self._fits_now(gang, placement, exclude={key} | self._as_set(exclude)):
                snap = self.snapshot(exclude=exclude, nodes=nodes)
                placement = engine_place(snap, gang, placer, time_limit_ms=time_limit_ms)
                if not placement.placed:
                    return placement
            self.reserve(key, gang, placement, ttl_s=ttl_s)
        return placement

    @staticmethod
    def _as_set(x) -> set[str]:
        return {x} if isinstance(x, str) else set(x or ())

    def _fits_now(self, gang: GangRequest, placement: Placement, exclude: set[str]) -> bool:
        snap = self.snapshot(exclude=exclude)
        need = self._slots(gang, placement)
        for s in need:
            i = snap.node_index.get(s.node)
            if i is None or not snap.schedulable[i]:
                return False
            snap.free_gpus[i] -= s.gpus
            snap.free_cpu[i] -= s.cpu
            snap.free_mem[i] -= s.memory
            snap.free_pods[i] -= 1
            if snap.free_gpus[i] < 0 or snap.free_cpu[i] < 0 or snap.free_mem[i] < 0 or snap.free_pods[i] < 0:
                return False
        return True

    @staticmethod
    def _slots(gang: GangRequest, placement: Placement) -> list[Slot]:
        sets = {ps.name: ps for ps in gang.pod_sets}
        out = []
        for p in placement.pods:
            ps = sets.get(p.pod_set)
            if ps is None:
                raise InvalidRequest(f"placement names pod set {p.pod_set!r} that gang {gang.name!r} lacks",
                                     field="placement.pods")
            out.append(Slot(p.pod_set, p.index, p.node, ps.gpus, ps.cpu, ps.memory))
        return out

    # ------------------------------------------------------------------ reservations
    def reserve(self, key: str, gang: GangRequest, placement: Placement, ttl_s: float | None = None) -> None:
        """Hold a placement's capacity under ``key`` until ``ttl_s`` passes without a refresh."""
        _check_name(key, "key")
        if not placement.placed:
            raise InvalidRequest("cannot reserve a placement that was not placed", field="placement")
        slots = self._slots(gang, placement)
        ttl = self.reservation_ttl_s if ttl_s is None else float(ttl_s)
        if not ttl > 0:
            raise InvalidRequest(f"must be > 0, got {ttl_s!r}", field="ttl_s")
        with self.lock:
            for s in slots:
                if s.node not in self._specs:
                    raise InvalidRequest(f"unknown node {s.node!r}", field="placement.pods")
            now = self.clock()
            self._reservations[key] = Reservation(key, gang, placement, slots, now + ttl, now)
            self.version += 1

    def shrink(self, key: str, keep: Iterable[str] = (), *, keep_nodes: Iterable[str] = ()) -> int:
        """Drop a reservation's unbound slots except those claimed by ``keep`` pod UIDs and the
        unclaimed ones on ``keep_nodes`` (dropped slots lose their claims); returns how many slots
        were dropped. Used to re-plan part of a gang: shrink, place the rest on a snapshot (which
        still subtracts the kept slots), ``extend``."""
        keep = set(keep)
        keep_nodes = set(keep_nodes)
        with self.lock:
            res = self.reservation(key)
            if res is None:
                return 0
            kept = [s for s in res.slots if s.bound or (s.pod_uid is not None and s.pod_uid in keep)
                    or (s.pod_uid is None and s.node in keep_nodes)]
            dropped = len(res.slots) - len(kept)
            if dropped:
                res.slots = kept
                res.members = {s.pod_uid: i for i, s in enumerate(kept) if s.pod_uid is not None}
                self.version += 1
            return dropped

    def extend(self, key: str, placement: Placement) -> bool:
        """Add a placement's pods to reservation ``key`` as new slots (indices continue after the
        existing ones). False, changing nothing, if the reservation is gone or they no longer fit."""
        with self.lock:
            res = self.reservation(key)
            if res is None or not placement.placed:
                return False
            if not self._fits_now(res.gang, placement, exclude=set()):
                return False
            slots = self._slots(res.gang, placement)
            base = 1 + max((s.index for s in res.slots), default=-1)
            for k, s in enumerate(slots):
                s.index = base + k
            res.slots.extend(slots)
            res.slots.sort(key=lambda s: (self._live().node_index.get(s.node, -1), s.index))
            for i, s in enumerate(res.slots):  # renumber in topology order, keep claims
                s.index = i
            res.members = {s.pod_uid: i for i, s in enumerate(res.slots) if s.pod_uid is not None}
            self.version += 1
            return True

    def reservation(self, key: str) -> Reservation | None:
        """The unexpired reservation under ``key`` (None if absent or expired)."""
        with self.lock:
            res = self._reservations.get(key)
            if res is None or res.expires_at <= self.clock():
                return None
            return res

    def reservations(self) -> dict[str, Reservation]:
        with self.lock:
            now = self.clock()
            return {k: r for k, r in self._reservations.items() if r.expires_at > now}

    def refresh(self, key: str, ttl_s: float | None = None) -> bool:
        """Push a reservation's expiry to now + TTL (each member's filter does this)."""
        with self.lock:
            res = self.reservation(key)
            if res is None:
                return False
            res.expires_at = self.clock() + (self.reservation_ttl_s if ttl_s is None else float(ttl_s))
            return True

    def release(self, key: str) -> bool:
        """Drop a reservation (its unbound slots' capacity becomes free)."""
        with self.lock:
            if self._reservations.pop(key, None) is None:
                return False
            self.version += 1
            return True

    def expire(self) -> list[str]:
        """Drop expired reservations; returns their keys."""
        with self.lock:
            now = self.clock()
            gone = [k for k, r in self._reservations.items() if r.expires_at <= now]
            for k in gone:
                del self._reservations[k]
            if gone:
                self.version += 1
                log.info("reservations expired: %s", gone)
            return gone

    def claim(self, key: str, pod_uid: str, *, index: int | None = None,
              nodes: Iterable[str] | None = None, pod_set: str | None = None) -> Slot | None:
        """Give member ``pod_uid`` a slot of reservation ``key`` (idempotent: a repeated claim
        returns the same slot). ``index`` asks for the slot at that position in topology order
        (an Indexed Job's completion index); else the first free slot, preferring one whose node
        is in ``nodes``. None when the reservation is gone or has no free slot."""
        _check_name(pod_uid, "pod_uid")
        with self.lock:
            res = self.reservation(key)
            if res is None:
                return None
            pos = res.members.get(pod_uid)
            if pos is not None:
                return res.slots[pos]
            taken = set(res.members.values())
            free = [i for i, s in enumerate(res.slots)
                    if i not in taken and not s.bound and (pod_set is None or s.pod_set == pod_set)]
            if not free:
                return None
            pick = None
            if index is not None:
                cands = [i for i in free if res.slots[i].index == index]
                pick = cands[0] if cands else None
            if pick is None and nodes is not None:
                offered = set(nodes)
                pick = next((i for i in free if res.slots[i].node in offered), None)
            if pick is None:
                pick = free[0]
            res.members[pod_uid] = pick
            res.slots[pick].pod_uid = pod_uid
            self.version += 1
            return res.slots[pick]

    def unclaim(self, key: str, pod_uid: str) -> bool:
        """Give a member's unbound slot back (the pod was deleted before binding)."""
        with self.lock:
            res = self._reservations.get(key)
            if res is None or pod_uid not in res.members:
                return False
            slot = res.slots[res.members[pod_uid]]
            if slot.bound:
                return False
            del res.members[pod_uid]
            slot.pod_uid = None
            self.version += 1
            return True

    # ------------------------------------------------------------------ allocations
    def allocation(self, pod_uid: str) -> BindRecord | None:
        with self.lock:
            return self._allocs.get(pod_uid)

    def allocations(self) -> dict[str, BindRecord]:
        with self.lock:
            return dict(self._allocs)

    def bind(self, pod_uid: str, node: str, *, gpus: int, cpu: int = 0, memory: int = 0,
             gang: str | None = None, namespace: str = "", name: str = "", priority: int = 0,
             allow_overcommit: bool = False) -> None:
        """Record pod ``pod_uid`` as running on ``node`` (journaled). Idempotent for identical
        repeats; a changed record replaces the old one. If ``gang`` names a reservation, the
        member's slot (claimed by this UID, else a free slot on ``node``) becomes bound.
        ``allow_overcommit``: accept a bind the node cannot hold (observed from Kubernetes)."""
        rec = BindRecord(_check_name(pod_uid, "pod_uid"), _check_name(node, "node"),
                         _check_amount(gpus, "gpus"), _check_amount(cpu, "cpu"), _check_amount(memory, "memory"),
                         gang, namespace or "", name or "", int(priority))
        self.bind_many([rec], allow_overcommit=allow_overcommit)

    def bind_many(self, records: Iterable[BindRecord], *, allow_overcommit: bool = False, wait: bool = True) -> int:
        """Bind several pods atomically: all or none, one journal write. Returns the journal
        sequence number that makes the binds durable (0 without a journal). ``wait`` (default):
        return only once it is on disk (group commit: the fsync runs after the state lock is
        released and is shared with concurrent callers). ``wait=False``: the change is applied
        and written but maybe not on disk yet; call ``wait_durable(seq)`` before acknowledging
        it (the async callers do that in a thread, so the event loop keeps serving)."""
        recs = list(records)
        with self.lock:
            cluster = self._live()
            snap = None if allow_overcommit else self.snapshot()
            for k, rec in enumerate(recs):
                _check_name(rec.pod_uid, f"records[{k}].pod_uid")
                if rec.node not in self._specs:
                    raise InvalidRequest(f"unknown node {rec.node!r}", field=f"records[{k}].node")
                for f in ("gpus", "cpu", "memory"):
                    _check_amount(getattr(rec, f), f"records[{k}].{f}")
                if snap is not None:
                    self._check_fits(snap, rec, k)
            changed = [r for r in recs if self._allocs.get(r.pod_uid) != r]
            if not changed and not any(self._binds_slot(r) for r in recs):
                # a repeat of binds already applied: their line may still await its fsync (the
                # first caller's), so the repeat waits for everything written so far
                seq = self._written()
            else:
                seq = self._journal_write([r.to_json() for r in changed])
                for rec in changed:
                    old = self._allocs.get(rec.pod_uid)
                    if old is not None:
                        self._remove_alloc(cluster, old)
                    self._index(rec)
                    self._apply(cluster, rec, +1)
                for rec in recs:
                    self._bind_slot(rec)
                self.version += 1
                self._maybe_compact()
        if wait:
            self.wait_durable(seq)
        return seq

    def is_durable(self, seq: int | None = None) -> bool:
        """Is journal sequence number ``seq`` (default: everything written) on disk already?
        (Async callers skip the thread hop of ``wait_durable`` when it is.)"""
        j = self._journal
        return j is None or (not j.failed and j.synced >= (j.written if seq is None else seq))

    def wait_durable(self, seq: int | None = None) -> None:
        """Block until journal sequence number ``seq`` (default: everything written so far) is
        on disk; at once without a journal. Raises ``JournalError`` (an ``OSError``) if the
        journal cannot vouch for it. Call it without holding ``lock`` and off the event loop."""
        if self._journal is not None:
            self._journal.sync(seq)

    def _check_fits(self, snap: Cluster, rec: BindRecord, k: int) -> None:
        """The bind must fit free capacity plus what it already holds (its old allocation and
        the reservation slot it converts)."""
        i = snap.node_index[rec.node]
        old = self._allocs.get(rec.pod_uid)
        back = [0, 0, 0, 0]
        if old is not None and old.node == rec.node:
            back = [old.gpus, old.cpu, old.memory, 1]
        slot = self._slot_for(rec)
        if slot is not None and slot.node == rec.node:
            back = [b + v for b, v in zip(back, (slot.gpus, slot.cpu, slot.memory, 1))]
        need = ((rec.gpus, snap.free_gpus, 0, "GPUs"), (rec.cpu, snap.free_cpu, 1, "CPU"),
                (rec.memory, snap.free_mem, 2, "memory"), (1, snap.free_pods, 3, "pod slots"))
        for amount, free, j, what in need:
            if amount > int(free[i]) + back[j]:
                raise InvalidRequest(f"node {rec.node!r} has {int(free[i]) + back[j]} free {what}, "
                                     f"pod {rec.pod_uid!r} needs {amount}", field=f"records[{k}].{what.split()[0].lower()}")
            free[i] -= amount - back[j]

    def _slot_for(self, rec: BindRecord) -> Slot | None:
        """The reservation slot a bind converts: the member's own slot when it is on the bind's
        node, else a free slot of the gang on that node, else the member's own slot elsewhere
        (the scheduler chose another node: the slot is consumed, the pod counts where it runs)."""
        if not rec.gang:
            return None
        res = self._reservations.get(rec.gang)
        if res is None:
            return None
        own = res.slot_of(rec.pod_uid)
        if own is not None and (own.bound or own.node == rec.node):
            return None if own.bound else own
        taken = set(res.members.values())
        for i, s in enumerate(res.slots):
            if i not in taken and not s.bound and s.node == rec.node:
                return s
        return own

    def _binds_slot(self, rec: BindRecord) -> bool:
        return self._slot_for(rec) is not None

    def _bind_slot(self, rec: BindRecord) -> None:
        slot = self._slot_for(rec)
        if slot is None:
            return
        res = self._reservations[rec.gang]
        old = res.slot_of(rec.pod_uid)
        if old is not None and old is not slot:  # claimed elsewhere, bound here: free the old slot
            old.pod_uid = None
        res.members[rec.pod_uid] = res.slots.index(slot)
        slot.pod_uid = rec.pod_uid
        slot.bound = True

    def _index(self, rec: BindRecord) -> None:
        self._allocs[rec.pod_uid] = rec
        self._by_node.setdefault(rec.node, {})[rec.pod_uid] = rec
        if rec.gang:
            self._by_gang.setdefault(rec.gang, {})[rec.pod_uid] = rec

    def _remove_alloc(self, cluster: Cluster, rec: BindRecord) -> None:
        self._apply(cluster, rec, -1)
        for index, k in ((self._by_node, rec.node), (self._by_gang, rec.gang)):
            entries = index.get(k) if k else None
            if entries is not None:
                entries.pop(rec.pod_uid, None)
                if not entries:
                    del index[k]

    def unbind(self, pod_uid: str, *, wait: bool = True) -> bool:
        """Forget a pod's allocation (deleted or finished); journaled. False if unknown."""
        if not isinstance(pod_uid, str) or not pod_uid:  # never allocated (unbind_many would refuse it)
            return False
        return self.unbind_many([pod_uid], wait=wait)[0]

    def unbind_many(self, pod_uids: Iterable[str], *, wait: bool = True) -> list[bool]:
        """Forget several pods' allocations at once: all or none, one journal write and one
        durability wait. Per UID: True if it was allocated (a repeated UID: only its first
        occurrence). ``wait=False``: call ``wait_durable()`` before acknowledging."""
        uids = list(pod_uids)
        for k, uid in enumerate(uids):
            _check_name(uid, f"pod_uids[{k}]")
        with self.lock:
            found, gone = [], set()
            for uid in uids:
                known = uid in self._allocs and uid not in gone
                found.append(known)
                if known:
                    gone.add(uid)
            if gone:
                seq = self._journal_write([{"op": "unbind", "uid": u} for u, f in zip(uids, found) if f])
                cluster = self._live()
                for uid in gone:
                    self._remove_alloc(cluster, self._allocs.pop(uid))
                self.version += 1
                self._maybe_compact()
            else:  # nothing to do, but an unbind of these pods may still await its fsync
                seq = self._written()
        if wait:
            self.wait_durable(seq)
        return found

    def pods_on(self, node: str) -> list[BindRecord]:
        with self.lock:
            return list(self._by_node.get(node, {}).values())

    def gang_members(self, gang: str) -> list[BindRecord]:
        """The bound pods of a gang (allocations whose ``gang`` is this key)."""
        with self.lock:
            return list(self._by_gang.get(gang, {}).values())

    # ------------------------------------------------------------------ nodes
    def upsert_node(self, spec: NodeSpec) -> None:
        self.upsert_nodes([spec])

    def upsert_nodes(self, specs: Iterable[NodeSpec]) -> None:
        """Add or replace nodes (no-op for identical specs). The arrays are rebuilt lazily, so a
        burst of node events costs one rebuild."""
        specs = list(specs)
        with self.lock:
            self._check_specs(specs)
            changed = False
            for s in specs:
                old = self._specs.get(s.name)
                if old != s:
                    if old is None or not self._update_in_place(old, s):
                        self._dirty = True
                    self._specs[s.name] = s
                    changed = True
            if changed:
                self.version += 1

    def _update_in_place(self, old: NodeSpec, spec: NodeSpec) -> bool:
        """Apply a node change that keeps its place in the topology (cordon, drain, a new
        allocatable) to the live arrays without rebuilding them (a rebuild of 12,500 nodes takes
        ~0.3 s). False when the change needs a rebuild: topology, labels (selector masks are
        cached), GPU type or the spec's own allocations changed."""
        c = self._cluster
        i = c.node_index.get(spec.name)
        if (self._dirty or i is None or old.topology != spec.topology or old.labels != spec.labels
                or old.gpu_type != spec.gpu_type or old.allocations != spec.allocations):
            return False
        for cap_name, free_name, res in (("cap_gpus", "free_gpus", "gpus"), ("cap_cpu", "free_cpu", "cpu"),
                                         ("cap_mem", "free_mem", "memory"), ("cap_pods", "free_pods", "pods")):
            new_cap, old_cap = getattr(spec, res), getattr(old, res)
            delta = (new_cap - old_cap) - (getattr(spec, res + "_used") - getattr(old, res + "_used"))
            if new_cap != old_cap:  # copy on write: snapshots share the capacity arrays
                cap = getattr(c, cap_name).copy()
                cap[i] = new_cap
                setattr(c, cap_name, cap)
            getattr(c, free_name)[i] += delta  # the live free arrays are this state's own
        c.schedulable[i] = 1 if spec.schedulable else 0
        specs = list(c._specs)  # shared with snapshots too
        specs[i] = spec
        c._specs = specs
        return True

    def replace_nodes(self, specs: Iterable[NodeSpec], *, levels: Iterable[str] | None = None) -> None:
        """A full re-list: exactly these nodes; ``levels`` changes the topology levels too
        (node topologies must then use the new level names)."""
        specs = list(specs)
        with self.lock:
            old_levels = self.levels
            if levels is not None:
                self.levels = tuple(levels)
            try:
                self._check_specs(specs)
            except InvalidRequest:
                self.levels = old_levels
                raise
            new = {s.name: s for s in specs}
            if new != self._specs or self.levels != old_levels:
                self._specs = new
                self._dirty = True
                self.version += 1

    def remove_node(self, name: str) -> bool:
        with self.lock:
            if self._specs.pop(name, None) is None:
                return False
            self._dirty = True
            self.version += 1
            return True

    def _check_specs(self, specs: list[NodeSpec]) -> None:
        for s in specs:
            if not isinstance(s, NodeSpec):
                raise InvalidRequest(f"expected a NodeSpec, got {type(s).__name__}", field="node")
        try:  # validates names, levels, capacities exactly as a cluster file would be
            Cluster(self.levels, specs)
        except Exception as e:  # InvalidTopology names the field
            raise InvalidRequest(str(e), field="node") from None

    # ------------------------------------------------------------------ reporting
    def stats(self) -> dict:
        with self.lock:
            live = self._live()
            snap = self.snapshot()
            reserved = int(live.free_gpus.sum() - snap.free_gpus.sum())
            return {
                "nodes": live.n_nodes,
                "gpus": int(live.cap_gpus.sum()),
                "free_gpus": int(np.maximum(snap.free_gpus, 0).sum()),
                "allocated_gpus": sum(r.gpus for r in self._allocs.values() if r.node in live.node_index),
                "reserved_gpus": reserved,
                "base_used_gpus": sum(s.gpus_used for s in self._specs.values()),
                "allocations": len(self._allocs),
                "reservations": len(self.reservations()),
                "version": self.version,
            }

    def check_consistency(self) -> list[str]:
        """Problems found (empty when consistent): capacity == base + allocated + reserved + free
        on every node, for GPUs, CPU, memory and pod slots; slots and allocations agree."""
        problems = []
        with self.lock:
            live = self._live()
            snap = self.snapshot()
            alloc = np.zeros((4, live.n_nodes), np.int64)
            for r in self._allocs.values():
                i = live.node_index.get(r.node)
                if i is not None:
                    alloc[:, i] += (r.gpus, r.cpu, r.memory, 1)
            resv = np.zeros((4, live.n_nodes), np.int64)
            now = self.clock()
            for res in self._reservations.values():
                if res.expires_at <= now:
                    continue
                for s in res.slots:
                    i = live.node_index.get(s.node)
                    if i is not None and not s.bound:
                        resv[:, i] += (s.gpus, s.cpu, s.memory, 1)
                for uid, pos in res.members.items():
                    if res.slots[pos].pod_uid != uid:
                        problems.append(f"reservation {res.key!r}: member {uid} and slot {pos} disagree")
            for i, name in enumerate(live.node_names):
                spec = self._specs[name]
                for k, (what, cap, base, free) in enumerate((
                        ("gpus", live.cap_gpus, spec.gpus_used, snap.free_gpus),
                        ("cpu", live.cap_cpu, spec.cpu_used, snap.free_cpu),
                        ("memory", live.cap_mem, spec.memory_used, snap.free_mem),
                        ("pods", live.cap_pods, spec.pods_used, snap.free_pods))):
                    total = base + int(alloc[k, i]) + int(resv[k, i]) + int(free[i])
                    if total != int(cap[i]):
                        problems.append(f"node {name}: {what} capacity {int(cap[i])} != base {base} + allocated "
                                        f"{int(alloc[k, i])} + reserved {int(resv[k, i])} + free {int(free[i])}")
            for what, index in (("node", self._by_node), ("gang", self._by_gang)):
                for name, pods in index.items():
                    for uid, r in pods.items():
                        if self._allocs.get(uid) is not r:
                            problems.append(f"{what} index for {name} lists {uid} which is not allocated there")
            indexed = sum(len(p) for p in self._by_gang.values())
            if indexed != sum(1 for r in self._allocs.values() if r.gang):
                problems.append("the gang index misses allocations")
        return problems

    # ------------------------------------------------------------------ journal
    def journal_failed(self) -> bool:
        """True once the journal can no longer vouch for durability (binds answer errors)."""
        return self._journal is not None and self._journal.failed

    @property
    def journal_path(self) -> Path | None:
        return None if self._journal is None else self._journal.path

    def _open_journal(self, directory: Path) -> None:
        """Replay the journal onto the allocations, then compact it (engine/live/journal.py)."""
        self._journal = Journal(directory)
        for d in self._journal.replay():
            try:
                rec = BindRecord.from_json(d)
            except (KeyError, TypeError, ValueError) as e:
                raise InvalidFile(f"journal {self._journal.path}: bad entry {d!r}: {e}",
                                  field=str(self._journal.path)) from None
            if rec.node not in self._specs:
                log.warning("journal: pod %s is on node %r which the cluster no longer has", rec.pod_uid, rec.node)
            self._index(rec)
            self._apply(self._cluster, rec, +1)
        self._journal.rewrite(r.to_json() for r in self._allocs.values())

    def _journal_write(self, entries: list[dict]) -> int:
        """Write (no fsync) under the lock; the sequence number to make durable (0: no journal)."""
        return 0 if self._journal is None else self._journal.write(entries)

    def _written(self) -> int:
        return 0 if self._journal is None else self._journal.written

    def _maybe_compact(self) -> None:
        """Rewrite the journal once it holds many more lines than live allocations (called
        after the in-memory change, so the rewrite matches the state)."""
        if self._journal is not None and self._journal.needs_compaction(len(self._allocs)):
            self._journal.rewrite(r.to_json() for r in self._allocs.values())

    def close(self) -> None:
        with self.lock:
            if self._journal is not None:
                try:  # whatever was written becomes durable (callers that waited have it already)
                    self._journal.sync()
                except OSError:
                    pass
                self._journal.close()

    def __repr__(self) -> str:
        s = self.stats()
        return (f"ClusterState(nodes={s['nodes']}, gpus={s['gpus']}, free={s['free_gpus']}, "
                f"allocations={s['allocations']}, reservations={s['reservations']}, version={s['version']})")

"""The live cluster: a facade over the bind ledger, the reservations, the node specs, the journal
and the audit, keeping them in step under one lock.

The jobs live in their own modules; this class owns the lock, the version and the live arrays:
- engine/live/ledger.py: ``BindRecord`` and the ``Ledger`` (bound pods, indexed by node and gang);
- engine/live/reservations.py: ``Slot``, ``Reservation`` and ``Reservations`` (TTL, claims);
- engine/live/nodes.py: the node specs and how a node change reaches the arrays;
- engine/live/journal.py and engine/live/replay.py: the journal and its replay at start;
- engine/live/audit.py: ``check_consistency``.

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

Journal (file mode, ``journal_dir`` set; engine/live/journal.py): append-only, checksummed JSON
lines in ``<journal_dir>/gangplace-journal.jsonl`` (format version 2: a header, then
``<crc32> <record number> <JSON>``),
``{"op": "bind", "uid", "node", "gpus", "cpu", "memory", "gang", "namespace", "name", "priority"}``,
``{"op": "unbind", "uid"}`` and the node changes (``{"op": "node", "spec"}``,
``{"op": "remove_node", "name"}``: replayed over the nodes given at start), group-committed: under the lock a change is written to the file
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
    state.remove_nodes(names) -> int; state.journal_problem() -> str | None; state.recover_journal() -> bool
    state.replace_nodes(specs)        # a full re-list: nodes not listed are removed
    state.expire() -> list[str]; state.stats() -> dict; state.check_consistency() -> list[str]
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..exact.auto import place as engine_place
from ..model.cluster import Cluster
from ..model.errors import InvalidFile, InvalidRequest, InvalidTopology
from ..model.formats import node_from_dict, node_to_dict
from ..model.types import GangRequest, NodeSpec, Placement
from .audit import audit
from .journal import COMPACT_MIN_LINES, JOURNAL_NAME, Journal  # noqa: F401  (re-exported)
from .ledger import BindRecord, Ledger, apply
from .nodes import NodeSpecs, check_specs
from .replay import replay
from .reservations import Reservation, Reservations, Slot, fits_on, slots_of, subtract_unbound  # noqa: F401  (Reservation, Slot: re-exported)

DEFAULT_RESERVATION_TTL_S = 60.0
log = logging.getLogger("gangplace.state")


def _check_amount(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidRequest(f"must be a non-negative integer, got {value!r}", field=field)
    return int(value)


def _check_name(value, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"must be a non-empty string, got {value!r}", field=field)
    return value


def _as_set(x) -> set[str]:
    return {x} if isinstance(x, str) else set(x or ())


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
        self._nodes = NodeSpecs(cluster.nodes)
        self._base_nodes = dict(self._nodes.by_name)  # as given: the journal records changes to these
        self._ledger = Ledger()
        self._reservations = Reservations(clock)
        self._cluster = cluster.copy()
        self._cluster.track_writes()  # every write bumps a version; a direct write raises (model/cluster.py)
        self._dirty = False  # node changes the arrays do not reflect yet: rebuild on next use
        self._journal: Journal | None = None
        if journal_dir is not None:
            self._open_journal(Path(journal_dir))

    # ------------------------------------------------------------------ live cluster
    def _live(self) -> Cluster:
        """The live cluster (allocations subtracted); rebuilt lazily after node changes."""
        if self._dirty:
            cluster = Cluster(self.levels, self._nodes.values())
            for rec in self._ledger:
                apply(cluster, rec, +1)
            cluster.track_writes()
            self._cluster = cluster
            self._dirty = False
        return self._cluster

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
            return name in self._nodes

    def split_known(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """(names of nodes the state has, the others), each in the given order; one lock."""
        with self.lock:
            specs = self._nodes.by_name
            known = [n for n in names if n in specs]
            unknown = [n for n in names if n not in specs] if len(known) != len(names) else []
        return known, unknown

    def node_spec(self, name: str) -> NodeSpec | None:
        with self.lock:
            return self._nodes.get(name)

    # ------------------------------------------------------------------ snapshots and placement
    def snapshot(self, *, exclude: str | Iterable[str] | None = None,
                 nodes: Iterable[str] | None = None) -> Cluster:
        """A copy with allocations and unexpired reservations subtracted from ``free_*``.

        ``exclude``: reservation key(s) not subtracted (re-planning a gang around itself).
        ``nodes``: only these nodes stay schedulable (the nodes the scheduler offered).
        """
        skip = _as_set(exclude)
        with self.lock:
            snap = self._live().copy()
            for key, res in self._reservations.active().items():
                if key not in skip:
                    subtract_unbound(snap, res.slots)
            snap.version = self.version
        if nodes is not None:
            allowed = np.zeros(snap.n_nodes, bool)
            idx = [snap.node_index[n] for n in nodes if n in snap.node_index]
            allowed[idx] = True
            # what the offer excluded, apart from what was cordoned anyway: explanations name it
            snap.not_offered = snap.schedulable.astype(bool) & ~allowed
            snap.schedulable &= allowed.astype(np.uint8)
        return snap

    def try_snapshot(self, max_slots: int = 1024) -> Cluster | None:
        """``snapshot()`` only when it is cheap right now, else None (take the slow path).

        For callers that must never block, such as the event loop: the lock must be free at once,
        the arrays built (no rebuild after a node change pending), and the reservations must hold
        at most ``max_slots`` slots (subtracting them is a Python loop).
        """
        if not self.lock.acquire(blocking=False):
            return None
        try:
            if self._dirty or self._reservations.slot_count() > max_slots:
                return None
            return self.snapshot()
        finally:
            self.lock.release()

    def place(self, gang: GangRequest, *, placer: str = "auto", time_limit_ms: float = 100.0,
              reserve: bool = False, key: str | None = None, nodes: Iterable[str] | None = None,
              exclude: str | Iterable[str] | None = None, ttl_s: float | None = None,
              idempotent: bool = False) -> Placement:
        """Place a gang on a consistent snapshot; with ``reserve`` hold the answer under ``key``.

        The solver runs outside the lock (CP-SAT may take ``time_limit_ms``); the reservation is
        committed only if the placement still fits the state at commit time, else the gang is
        placed again under the lock (rare: another writer took the same capacity meanwhile).
        Reserving under an existing key replaces that reservation (the gang is planned around
        itself: pass ``exclude=key`` to ignore its old slots while planning).

        ``idempotent`` (gRPC ``Place`` with ``reserve``): a reservation under ``key`` for the very
        same request is kept as it is, its TTL refreshed, and its placement answered again; a
        changed request is planned again around the old reservation (which it then replaces).
        """
        key = gang.name if key is None else key
        if reserve and idempotent:
            with self.lock:
                res = self._reservations.get(key)
                if res is not None and res.gang == gang:
                    self._reservations.refresh(key, self.reservation_ttl_s if ttl_s is None else float(ttl_s))
                    return res.placement
            exclude = {key} | _as_set(exclude)
        nodes = None if nodes is None else list(nodes)
        snap = self.snapshot(exclude=exclude, nodes=nodes)
        placement = engine_place(snap, gang, placer, time_limit_ms=time_limit_ms)
        if not reserve or not placement.placed:
            return placement
        with self.lock:
            if not fits_on(self.snapshot(exclude={key} | _as_set(exclude)), slots_of(gang, placement)):
                snap = self.snapshot(exclude=exclude, nodes=nodes)
                placement = engine_place(snap, gang, placer, time_limit_ms=time_limit_ms)
                if not placement.placed:
                    return placement
            self.reserve(key, gang, placement, ttl_s=ttl_s)
        return placement

    # ------------------------------------------------------------------ reservations
    def reserve(self, key: str, gang: GangRequest, placement: Placement, ttl_s: float | None = None) -> None:
        """Hold a placement's capacity under ``key`` until ``ttl_s`` passes without a refresh."""
        _check_name(key, "key")
        if not placement.placed:
            raise InvalidRequest("cannot reserve a placement that was not placed", field="placement")
        slots = slots_of(gang, placement)
        ttl = self.reservation_ttl_s if ttl_s is None else float(ttl_s)
        if not ttl > 0:
            raise InvalidRequest(f"must be > 0, got {ttl_s!r}", field="ttl_s")
        with self.lock:
            for s in slots:
                if s.node not in self._nodes:
                    raise InvalidRequest(f"unknown node {s.node!r}", field="placement.pods")
            self._reservations.put(key, gang, placement, slots, ttl)
            self.version += 1

    def shrink(self, key: str, keep: Iterable[str] = (), *, keep_nodes: Iterable[str] = ()) -> int:
        """Drop a reservation's unbound slots except those claimed by ``keep`` pod UIDs and the
        unclaimed ones on ``keep_nodes`` (dropped slots lose their claims); returns how many slots
        were dropped. Used to re-plan part of a gang: shrink, place the rest on a snapshot (which
        still subtracts the kept slots), ``extend``."""
        with self.lock:
            dropped = self._reservations.shrink(key, set(keep), set(keep_nodes))
            if dropped:
                self.version += 1
            return dropped

    def extend(self, key: str, placement: Placement, gang: GangRequest | None = None) -> bool:
        """Add a placement's pods to reservation ``key`` as new slots (indices continue after the
        existing ones); with ``gang``, the reservation's request becomes ``gang`` (its pod sets
        name the new slots' shapes: a mixed gang planned again). False, changing nothing, if the
        reservation is gone or they no longer fit."""
        with self.lock:
            res = self._reservations.get(key)
            if res is None or not placement.placed:
                return False
            slots = slots_of(gang or res.gang, placement)
            if not fits_on(self.snapshot(), slots):
                return False
            if gang is not None:
                res.gang = gang
            self._reservations.add_slots(res, slots, self._live().node_index)
            self.version += 1
            return True

    def reservation(self, key: str) -> Reservation | None:
        """The unexpired reservation under ``key`` (None if absent or expired)."""
        with self.lock:
            return self._reservations.get(key)

    def reservations(self) -> dict[str, Reservation]:
        with self.lock:
            return self._reservations.active()

    def refresh(self, key: str, ttl_s: float | None = None) -> bool:
        """Push a reservation's expiry to now + TTL (each member's filter does this)."""
        with self.lock:
            return self._reservations.refresh(key, self.reservation_ttl_s if ttl_s is None else float(ttl_s))

    def release(self, key: str) -> bool:
        """Drop a reservation (its unbound slots' capacity becomes free)."""
        with self.lock:
            if not self._reservations.release(key):
                return False
            self.version += 1
            return True

    def expire(self) -> list[str]:
        """Drop expired reservations; returns their keys."""
        with self.lock:
            gone = self._reservations.expire()
            if gone:
                self.version += 1
            return gone

    def claim(self, key: str, pod_uid: str, *, index: int | None = None,
              nodes: Iterable[str] | None = None, pod_set: str | None = None) -> Slot | None:
        """Give member ``pod_uid`` a slot of reservation ``key`` (idempotent: a repeated claim
        returns the same slot). ``index`` asks for the slot at that position in topology order
        (an Indexed Job's completion index); else the first free slot, preferring one whose node
        is in ``nodes``. None when the reservation is gone or has no free slot."""
        _check_name(pod_uid, "pod_uid")
        with self.lock:
            slot, claimed = self._reservations.claim(key, pod_uid, index, nodes, pod_set)
            if claimed:
                self.version += 1
            return slot

    def unclaim(self, key: str, pod_uid: str) -> bool:
        """Give a member's unbound slot back (the pod was deleted before binding)."""
        with self.lock:
            if not self._reservations.unclaim(key, pod_uid):
                return False
            self.version += 1
            return True

    # ------------------------------------------------------------------ allocations
    def allocation(self, pod_uid: str) -> BindRecord | None:
        with self.lock:
            return self._ledger.get(pod_uid)

    def allocations(self) -> dict[str, BindRecord]:
        with self.lock:
            return self._ledger.by_uid()

    def bind(self, pod_uid: str, node: str, *, gpus: int, cpu: int = 0, memory: int = 0,
             gang: str | None = None, namespace: str = "", name: str = "", priority: int = 0,
             allow_overcommit: bool = False, started: float | None = None) -> None:
        """Record pod ``pod_uid`` as running on ``node`` (journaled). Idempotent for identical
        repeats; a changed record replaces the old one. If ``gang`` names a reservation, the
        member's slot (claimed by this UID, else a free slot on ``node``) becomes bound.
        ``allow_overcommit``: accept a bind the node cannot hold (observed from Kubernetes).
        ``started``: when the pod started (wall-clock seconds; default now), the node's age for
        objective "age" (engine/place/age.py)."""
        rec = BindRecord(_check_name(pod_uid, "pod_uid"), _check_name(node, "node"),
                         _check_amount(gpus, "gpus"), _check_amount(cpu, "cpu"), _check_amount(memory, "memory"),
                         gang, namespace or "", name or "", int(priority),
                         time.time() if started is None else float(started))
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
            # each record's reservation slot is chosen, and its capacity consumed, as the record is
            # checked: two records of one batch never get the same slot's capacity back
            slots, used = [], set()
            for k, rec in enumerate(recs):
                _check_name(rec.pod_uid, f"records[{k}].pod_uid")
                if rec.node not in self._nodes:
                    raise InvalidRequest(f"unknown node {rec.node!r}", field=f"records[{k}].node")
                for f in ("gpus", "cpu", "memory"):
                    _check_amount(getattr(rec, f), f"records[{k}].{f}")
                slot = self._reservations.slot_for(rec, used)
                if slot is not None:
                    used.add(id(slot))
                slots.append(slot)
                if snap is not None:
                    self._check_fits(snap, rec, k, slot)
            changed = [r for r in recs if self._ledger.get(r.pod_uid) != r]
            if not changed and not any(s is not None for s in slots):
                # a repeat of binds already applied: their line may still await its fsync (the
                # first caller's), so the repeat waits for everything written so far
                seq = self._written()
            else:
                seq = self._journal_write([r.to_json() for r in changed])
                for rec in changed:
                    if rec.pod_uid in self._ledger:
                        apply(cluster, self._ledger.remove(rec.pod_uid), -1)
                    self._ledger.add(rec)
                    apply(cluster, rec, +1)
                for rec, slot in zip(recs, slots):
                    self._reservations.bind_slot(rec, slot)
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

    def _check_fits(self, snap: Cluster, rec: BindRecord, k: int, slot: Slot | None) -> None:
        """The bind must fit free capacity plus what it already holds (its old allocation and
        ``slot``, the reservation slot it converts); consumes the capacity on ``snap``."""
        i = snap.node_index[rec.node]
        old = self._ledger.get(rec.pod_uid)
        back = [0, 0, 0, 0]
        if old is not None and old.node == rec.node:
            back = [old.gpus, old.cpu, old.memory, 1]
        if slot is not None and slot.node == rec.node:
            back = [b + v for b, v in zip(back, (slot.gpus, slot.cpu, slot.memory, 1))]
        need = ((rec.gpus, snap.free_gpus, 0, "GPUs"), (rec.cpu, snap.free_cpu, 1, "CPU"),
                (rec.memory, snap.free_mem, 2, "memory"), (1, snap.free_pods, 3, "pod slots"))
        for amount, free, j, what in need:
            if amount > int(free[i]) + back[j]:
                raise InvalidRequest(f"node {rec.node!r} has {int(free[i]) + back[j]} free {what}, "
                                     f"pod {rec.pod_uid!r} needs {amount}", field=f"records[{k}].{what.split()[0].lower()}")
            free[i] -= amount - back[j]

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
                known = uid in self._ledger and uid not in gone
                found.append(known)
                if known:
                    gone.add(uid)
            if gone:
                seq = self._journal_write([{"op": "unbind", "uid": u} for u, f in zip(uids, found) if f])
                cluster = self._live()
                for uid in gone:
                    apply(cluster, self._ledger.remove(uid), -1)
                self.version += 1
                self._maybe_compact()
            else:  # nothing to do, but an unbind of these pods may still await its fsync
                seq = self._written()
        if wait:
            self.wait_durable(seq)
        return found

    def pods_on(self, node: str) -> list[BindRecord]:
        with self.lock:
            return self._ledger.on_node(node)

    def gang_members(self, gang: str) -> list[BindRecord]:
        """The bound pods of a gang (allocations whose ``gang`` is this key)."""
        with self.lock:
            return self._ledger.of_gang(gang)

    # ------------------------------------------------------------------ nodes
    def upsert_node(self, spec: NodeSpec) -> None:
        self.upsert_nodes([spec])

    def upsert_nodes(self, specs: Iterable[NodeSpec]) -> None:
        """Add or replace nodes (no-op for identical specs). A change that keeps a node's place
        in the topology updates the arrays in place; others rebuild them lazily, so a burst of
        node events costs one rebuild."""
        specs = list(specs)
        with self.lock:
            check_specs(self.levels, specs)
            seq = self._journal_write([self._node_entry(s) for s in specs if self._nodes.get(s.name) != s])
            changed, rebuild = self._nodes.upsert(specs, None if self._dirty else self._cluster)
            self._dirty |= rebuild
            if changed:
                self.version += 1
                self._maybe_compact()
        self.wait_durable(seq)

    def replace_nodes(self, specs: Iterable[NodeSpec], *, levels: Iterable[str] | None = None) -> None:
        """A full re-list: exactly these nodes; ``levels`` changes the topology levels too
        (node topologies must then use the new level names)."""
        specs = list(specs)
        with self.lock:
            new_levels = self.levels if levels is None else tuple(levels)
            check_specs(new_levels, specs)
            if self._journal is not None and new_levels != self.levels:
                raise InvalidRequest("the topology levels of a journaled (file-mode) state cannot change; "
                                     "edit the cluster file and restart", field="levels")
            listed = {s.name for s in specs}
            seq = self._journal_write([self._node_entry(s) for s in specs if self._nodes.get(s.name) != s]
                                      + [{"op": "remove_node", "name": n} for n in self._nodes.by_name
                                         if n not in listed])
            if self._nodes.replace(specs) or new_levels != self.levels:
                self.levels = new_levels
                self._dirty = True
                self.version += 1
                self._maybe_compact()
        self.wait_durable(seq)

    def remove_node(self, name: str) -> bool:
        return self.remove_nodes([name]) == 1

    def remove_nodes(self, names: Iterable[str]) -> int:
        """Remove nodes (journaled, one write and one durability wait); returns how many existed.
        Their pods' allocations stay until the pods are unbound."""
        names = list(dict.fromkeys(names))
        with self.lock:
            gone = [n for n in names if n in self._nodes]
            seq = self._journal_write([{"op": "remove_node", "name": n} for n in gone])
            for n in gone:
                self._nodes.remove(n)
            if gone:
                self._dirty = True
                self.version += 1
                self._maybe_compact()
        self.wait_durable(seq)
        return len(gone)

    def _node_entry(self, spec: NodeSpec) -> dict:
        return {"op": "node", "spec": node_to_dict(spec, self.levels)}

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
                "allocated_gpus": sum(r.gpus for r in self._ledger if r.node in live.node_index),
                "reserved_gpus": reserved,
                "base_used_gpus": sum(s.gpus_used for s in self._nodes.values()),
                "allocations": len(self._ledger),
                "reservations": len(self._reservations.active()),
                "version": self.version,
            }

    def check_consistency(self) -> list[str]:
        """Problems found (empty when consistent): capacity == base + allocated + reserved + free
        on every node, for GPUs, CPU, memory and pod slots; slots and allocations agree
        (engine/live/audit.py)."""
        with self.lock:
            return audit(self._live(), self.snapshot(), self._nodes.by_name, self._ledger,
                         self._reservations.all(), self.clock())

    # ------------------------------------------------------------------ journal
    def journal_failed(self) -> bool:
        """True while the journal cannot vouch for durability (binds answer errors)."""
        return self._journal is not None and self._journal.failed

    def journal_problem(self) -> str | None:
        """Why the journal is not healthy right now (None: it is, or there is none): for /readyz."""
        return None if self._journal is None else self._journal.problem

    def recover_journal(self) -> bool:
        """If the journal failed, rewrite it from memory (the truth: every change applied, none
        acknowledged unless durable); True once healthy. The service calls it every second."""
        j = self._journal
        if j is None or j.problem is None:
            return True
        with self.lock:
            try:  # a whole new file, fsync'd and renamed: proves the cause (space, writability, fds) is gone
                j.rewrite(self._journal_entries())
            except OSError:
                return False
            return j.problem is None

    @property
    def journal_path(self) -> Path | None:
        return None if self._journal is None else self._journal.path

    def _open_journal(self, directory: Path) -> None:
        """Replay the journal (node changes, then allocations), then compact it
        (engine/live/journal.py). A file that cannot be rewritten stops the start, saying why."""
        self._journal = Journal(directory)
        records = list(replay(self._journal, None))
        for name, d in self._journal.nodes.items():
            if d is None:
                self._nodes.remove(name)
                continue
            try:
                spec = node_from_dict(d, 0, self.levels)
                check_specs(self.levels, [spec])
            except (InvalidTopology, InvalidRequest) as e:
                raise InvalidFile(f"journal {self._journal.path}: node {name!r} does not fit this cluster's "
                                  f"levels {list(self.levels)}: {e}", field=str(self._journal.path)) from None
            self._nodes.by_name[name] = spec
        self._dirty = bool(self._journal.nodes)
        for rec in records:
            if rec.node not in self._nodes:
                log.warning("journal: pod %s is on node %r which the cluster no longer has", rec.pod_uid, rec.node)
            self._ledger.add(rec)
            if not self._dirty:
                apply(self._cluster, rec, +1)
        try:
            self._journal.rewrite(self._journal_entries())
        except OSError as e:
            size = self._journal.path.stat().st_size if self._journal.path.exists() else 0
            raise InvalidFile(f"cannot compact journal {self._journal.path} at start: {self._journal.problem}. "
                              f"Compaction writes a second copy of the journal (about {size:,} bytes) next to it "
                              f"before replacing it: free that much space in {directory} (or make it writable) "
                              f"and start again", field=str(self._journal.path)) from None

    def _journal_entries(self) -> list[dict]:
        """The whole state as journal records: node changes against the nodes given, then binds."""
        out = [self._node_entry(s) for n, s in self._nodes.by_name.items() if self._base_nodes.get(n) != s]
        out += [{"op": "remove_node", "name": n} for n in self._base_nodes if n not in self._nodes]
        return out + [r.to_json() for r in self._ledger]

    def _journal_write(self, entries: list[dict]) -> int:
        """Write (no fsync) under the lock; the sequence number to make durable (0: no journal)."""
        return 0 if self._journal is None else self._journal.write(entries)

    def _written(self) -> int:
        return 0 if self._journal is None else self._journal.written

    def _maybe_compact(self) -> None:
        """Rewrite the journal once it holds many more lines than live allocations (called
        after the in-memory change, so the rewrite matches the state)."""
        if self._journal is not None and self._journal.needs_compaction(len(self._ledger)):
            try:
                self._journal.rewrite(self._journal_entries())
            except OSError:  # the old file stays in use and complete; retried at the next change
                pass

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

"""Gang reservations: planned placements held with a TTL, one slot per pod, claimed by members.

A ``Reservation`` holds the capacity of its unbound slots until ``expires_at`` (each member's
filter refreshes it). Members claim slots by pod UID; a bind converts the member's slot into an
allocation (``bind_slot``). Not thread-safe on its own: ``ClusterState`` calls ``Reservations``
under its lock, and bumps its version when a method reports a change.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..model.cluster import Cluster
from ..model.errors import InvalidRequest
from ..model.types import GangRequest, Placement
from .ledger import BindRecord

log = logging.getLogger("gangplace.state")


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


def slots_of(gang: GangRequest, placement: Placement) -> list[Slot]:
    """One unclaimed slot per placed pod, with its pod set's requests."""
    sets = {ps.name: ps for ps in gang.pod_sets}
    out = []
    for p in placement.pods:
        ps = sets.get(p.pod_set)
        if ps is None:
            raise InvalidRequest(f"placement names pod set {p.pod_set!r} that gang {gang.name!r} lacks",
                                 field="placement.pods")
        out.append(Slot(p.pod_set, p.index, p.node, ps.gpus, ps.cpu, ps.memory))
    return out


def _subtract(cluster: Cluster, i: int, s: Slot) -> None:
    cluster.take_free(i, s.gpus, s.cpu, s.memory, 1)


def subtract_unbound(cluster: Cluster, slots: Iterable[Slot]) -> None:
    """Subtract the unbound slots from ``cluster``'s free arrays (nodes it lacks are skipped)."""
    for s in slots:
        i = cluster.node_index.get(s.node)
        if i is not None and not s.bound:
            _subtract(cluster, i, s)


def fits_on(cluster: Cluster, slots: Iterable[Slot]) -> bool:
    """Do the slots fit ``cluster``'s free capacity on schedulable nodes? Subtracts them as it
    checks (pass a snapshot)."""
    for s in slots:
        i = cluster.node_index.get(s.node)
        if i is None or not cluster.schedulable[i]:
            return False
        _subtract(cluster, i, s)
        if (cluster.free_gpus[i] < 0 or cluster.free_cpu[i] < 0 or cluster.free_mem[i] < 0
                or cluster.free_pods[i] < 0):
            return False
    return True


class Reservations:
    """The reservations by key, with their TTL clock."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self._by_key: dict[str, Reservation] = {}

    def all(self) -> dict[str, Reservation]:
        """Every reservation, expired ones included (until ``expire`` drops them)."""
        return self._by_key

    def get(self, key: str) -> Reservation | None:
        """The unexpired reservation under ``key`` (None if absent or expired)."""
        res = self._by_key.get(key)
        if res is None or res.expires_at <= self.clock():
            return None
        return res

    def active(self) -> dict[str, Reservation]:
        now = self.clock()
        return {k: r for k, r in self._by_key.items() if r.expires_at > now}

    def slot_count(self) -> int:
        return sum(len(r.slots) for r in self._by_key.values())

    def put(self, key: str, gang: GangRequest, placement: Placement, slots: list[Slot], ttl_s: float) -> None:
        now = self.clock()
        self._by_key[key] = Reservation(key, gang, placement, slots, now + ttl_s, now)

    def refresh(self, key: str, ttl_s: float) -> bool:
        res = self.get(key)
        if res is None:
            return False
        res.expires_at = self.clock() + ttl_s
        return True

    def release(self, key: str) -> bool:
        return self._by_key.pop(key, None) is not None

    def expire(self) -> list[str]:
        """Drop expired reservations; returns their keys."""
        now = self.clock()
        gone = [k for k, r in self._by_key.items() if r.expires_at <= now]
        for k in gone:
            del self._by_key[k]
        if gone:
            log.info("reservations expired: %s", gone)
        return gone

    def shrink(self, key: str, keep: set[str], keep_nodes: set[str]) -> int:
        """Drop the unbound slots except those claimed by ``keep`` and the unclaimed ones on
        ``keep_nodes``; returns how many were dropped."""
        res = self.get(key)
        if res is None:
            return 0
        kept = [s for s in res.slots if s.bound or (s.pod_uid is not None and s.pod_uid in keep)
                or (s.pod_uid is None and s.node in keep_nodes)]
        dropped = len(res.slots) - len(kept)
        if dropped:
            res.slots = kept
            res.members = {s.pod_uid: i for i, s in enumerate(kept) if s.pod_uid is not None}
        return dropped

    @staticmethod
    def add_slots(res: Reservation, slots: list[Slot], node_order: dict[str, int]) -> None:
        """Append slots (indices continue after the existing ones), then renumber every slot in
        topology order (``node_order``: node name -> position), keeping the claims."""
        base = 1 + max((s.index for s in res.slots), default=-1)
        for k, s in enumerate(slots):
            s.index = base + k
        res.slots.extend(slots)
        res.slots.sort(key=lambda s: (node_order.get(s.node, -1), s.index))
        for i, s in enumerate(res.slots):
            s.index = i
        res.members = {s.pod_uid: i for i, s in enumerate(res.slots) if s.pod_uid is not None}

    def claim(self, key: str, pod_uid: str, index: int | None, nodes: Iterable[str] | None,
              pod_set: str | None) -> tuple[Slot | None, bool]:
        """(the member's slot or None, whether a new claim was made); see ``ClusterState.claim``."""
        res = self.get(key)
        if res is None:
            return None, False
        pos = res.members.get(pod_uid)
        if pos is not None:
            return res.slots[pos], False
        taken = set(res.members.values())
        free = [i for i, s in enumerate(res.slots)
                if i not in taken and not s.bound and (pod_set is None or s.pod_set == pod_set)]
        if not free:
            return None, False
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
        return res.slots[pick], True

    def unclaim(self, key: str, pod_uid: str) -> bool:
        res = self._by_key.get(key)
        if res is None or pod_uid not in res.members:
            return False
        slot = res.slots[res.members[pod_uid]]
        if slot.bound:
            return False
        del res.members[pod_uid]
        slot.pod_uid = None
        return True

    def slot_for(self, rec: BindRecord, used: set[int] = frozenset()) -> Slot | None:
        """The slot a bind converts: the member's own slot when it is on the bind's node, else a
        free slot of the gang on that node, else the member's own slot elsewhere (the scheduler
        chose another node: the slot is consumed, the pod counts where it runs). ``used`` holds
        the ``id`` of slots earlier records of the same batch convert: a slot's capacity is given
        back to one record only (two pods of one batch never share a slot)."""
        if not rec.gang:
            return None
        res = self._by_key.get(rec.gang)
        if res is None:
            return None
        own = res.slot_of(rec.pod_uid)
        if own is not None and (own.bound or own.node == rec.node):
            return None if own.bound or id(own) in used else own
        taken = set(res.members.values())
        for i, s in enumerate(res.slots):
            if i not in taken and not s.bound and s.node == rec.node and id(s) not in used:
                return s
        return None if own is None or id(own) in used else own

    def bind_slot(self, rec: BindRecord, slot: Slot | None) -> None:
        """Mark ``slot`` (what ``slot_for`` chose for ``rec``) as bound to its pod."""
        if slot is None:
            return
        res = self._by_key[rec.gang]
        old = res.slot_of(rec.pod_uid)
        if old is not None and old is not slot:  # claimed elsewhere, bound here: free the old slot
            old.pod_uid = None
        res.members[rec.pod_uid] = res.slots.index(slot)
        slot.pod_uid = rec.pod_uid
        slot.bound = True

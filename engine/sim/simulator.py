"""Event-driven replay of a job trace on a cluster through one placement policy.

Algorithm overview (``simulate``):
1. Each job becomes a gang (engine/sim/baselines.py ``make_gang``). A gang that cannot be placed even on
   the cluster as it is before the simulation (background load only) is *rejected* and counted,
   never left blocking the queue.
2. Events are processed in time order: completions first (their GPUs return), then arrivals (they
   join the FIFO queue), then one scheduling pass. Nothing happens between events.
3. Scheduling pass: start queued gangs from the head while the policy places them (all-or-nothing:
   a gang's GPUs are taken in one step or not at all). With ``scheduler="easy"`` (the default),
   when the head does not fit, EASY backfill: find the earliest time the head fits given the
   running jobs' known end times (the *shadow time*) and the nodes the policy would then give it
   (the *reservation*); later jobs (up to ``backfill_depth``) may start now if they fit on nodes
   outside the reservation, or if they finish by the shadow time. So freed capacity is held for
   the head and large gangs do not starve. While backfilling, what the head needs is held for it
   and is not free in the arrays the policy sees (a best-fit policy must not see it as free room):
   ``reservation_hold="gpus"`` (the default) holds, on each reserved node, only the GPUs and pod
   slots the head will need there at the shadow time that the running jobs ending by then do not
   return (a job that runs past the shadow time may take the rest, as on a live scheduler that
   subtracts reservations per node); ``"nodes"`` holds every free GPU of the reserved nodes.
   ``scheduler="fifo"`` never starts past the head.
4. A started job runs ``duration * (1 + slowdown)`` (engine/sim/locality.py), the slowdown set by the
   highest topology level its gang crosses.
5. For every gang of two or more pods, the per-level domain counts are compared with the proved
   lower bound for the free capacity at that moment (``engine.heuristic.bounds``): equal on every
   level = optimal locality. Above the bound, the gangplace heuristic is run on the same state as a
   witness: if it uses lexicographically fewer domains the placement is proved suboptimal, else the
   verdict is ``unknown`` (the bound is not tight there) and counted apart.

The cluster's ``free_gpus``/``free_pods`` arrays are mutated in place (one Cluster for the whole
run); pass ``cluster.copy()`` to keep the original. Invariants (``check=True``, used by the
tests): no node ever has negative or more-than-capacity free GPUs, each job starts at most once,
GPU-seconds are conserved (sum of gpus x run time = integral of busy GPUs over time).
"""
from __future__ import annotations

import heapq
import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..model.cluster import Cluster
from ..model.errors import InvalidRequest
from .locality import DEFAULT_SLOWDOWN, domains_spanned, slowdown_factor, stretched_duration
from .baselines import Assignment, Gang, GangplacePolicy, Policy, make_gang
from .traces import Trace

SCHEDULERS = ("easy", "fifo")
RESERVATION_HOLDS = ("gpus", "nodes")
# verdicts of the locality check, per job (int8)
LOC_SINGLE, LOC_OPTIMAL, LOC_SUBOPTIMAL, LOC_UNKNOWN, LOC_NOT_RUN = 0, 1, 2, 3, -1
# where the GPUs free while a job waited were: nodes at most half free, nodes more than half free but
# not whole (a few GPUs in use pin them), whole free nodes (SimResult.extra["idle_by_node_state"])
NODE_STATES = ("at_most_half_free", "mostly_free", "whole_free")


@dataclass
class SimConfig:
    scheduler: str = "easy"
    backfill_depth: int = 64  # queued jobs examined per pass behind the head (like Slurm's bf_max_job_test)
    slowdown: tuple[float, ...] = DEFAULT_SLOWDOWN
    samples: int = 400  # cluster snapshots kept for the analytics (fragmentation over time)
    judge_locality: bool = True
    check: bool = False  # assert invariants at every event (tests)
    # what EASY holds for the head while backfilling: "gpus" = per node, the GPUs and pod slots the
    # head needs at the shadow time beyond what running jobs return by then; "nodes" = every free
    # GPU of the reserved nodes (the model before; kept for comparison)
    reservation_hold: str = "gpus"

    def __post_init__(self):
        if self.scheduler not in SCHEDULERS:
            raise InvalidRequest(f"unknown scheduler {self.scheduler!r}; choose from {list(SCHEDULERS)}",
                                 field="scheduler")
        if self.backfill_depth < 0:
            raise InvalidRequest(f"must be >= 0, got {self.backfill_depth}", field="backfill_depth")
        if self.reservation_hold not in RESERVATION_HOLDS:
            raise InvalidRequest(f"unknown reservation hold {self.reservation_hold!r}; choose from "
                                 f"{list(RESERVATION_HOLDS)}", field="reservation_hold")


@dataclass
class SimResult:
    """Everything one run produced. Per-job arrays are indexed like the trace (-1 = never)."""

    policy: str
    trace: str
    n_levels: int
    level_names: tuple[str, ...]
    capacity_gpus: int  # GPUs available to the trace (capacity minus background, schedulable nodes)
    gpus_per_node: int
    submit_s: np.ndarray
    num_gpus: np.ndarray
    duration_s: np.ndarray  # base run time from the trace
    start_s: np.ndarray  # int64, -1 if never started
    end_s: np.ndarray  # int64, -1 if never started
    rejected: np.ndarray  # bool
    domains: np.ndarray  # int32[n_jobs, n_levels + 1], per level then nodes (0 if not started)
    locality: np.ndarray  # int8 verdict (LOC_*)
    lower_bound: np.ndarray  # int32[n_jobs, n_levels + 1] for multi-pod gangs (0 otherwise)
    latency_ms: np.ndarray  # float64: every placement decision (successful or not), in call order
    timeline_t: np.ndarray  # float64[n_events]: event times
    timeline_busy: np.ndarray  # int64: busy GPUs right after each event
    timeline_queue: np.ndarray  # int64: queued jobs right after each event
    snapshot_t: np.ndarray  # float64[n_samples]
    snapshots: np.ndarray  # int16[n_samples, n_nodes]: free GPUs per node
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)


class _Job:
    __slots__ = ("idx", "gang", "dur")

    def __init__(self, idx: int, gang: Gang, dur: int):
        self.idx, self.gang, self.dur = idx, gang, dur


def cluster_gpus_per_node(cluster: Cluster) -> int:
    """The pod size used to cut jobs into gangs: the largest node's GPU count."""
    return int(cluster.cap_gpus.max()) if cluster.n_nodes else 0


def simulate(cluster: Cluster, trace: Trace, policy: Policy, config: SimConfig | None = None, *,
             progress=None) -> SimResult:
    """Replay ``trace`` on ``cluster`` (mutated in place) with ``policy``. See the module docstring."""
    return _Simulator(cluster, trace, policy, config or SimConfig(), progress).run()


class _Simulator:
    # the backfill head's reserved nodes are held: not schedulable and their GPUs not free (False:
    # only unschedulable, the behaviour before the fix; benchmarks/fleet_rootcause.py measures both)
    hold_reservation_gpus = True

    def __init__(self, cluster: Cluster, trace: Trace, policy: Policy, cfg: SimConfig, progress):
        self.c, self.trace, self.policy, self.cfg, self.progress = cluster, trace, policy, cfg, progress
        n = len(trace)
        self.L = len(cluster.levels)
        self.gpn = cluster_gpus_per_node(cluster)
        self.start = np.full(n, -1, np.int64)
        self.end = np.full(n, -1, np.int64)
        self.rejected = np.zeros(n, bool)
        self.domains = np.zeros((n, self.L + 1), np.int32)
        self.lbs = np.zeros((n, self.L + 1), np.int32)
        self.locality = np.full(n, LOC_NOT_RUN, np.int8)
        self.latency: list[float] = []
        self.queue: deque[_Job] = deque()
        self.running: list[tuple[int, int, int]] = []  # heap (end, idx, seq)
        self.assign: dict[int, Assignment] = {}
        self.version = 0  # bumps whenever free capacity changes
        self.failed: dict[tuple, int] = {}  # (gpus, mode, head) -> version at which the policy said no
        self.reservation: tuple[int, int, np.ndarray | None] | None = None  # (head idx, shadow, nodes)
        # reservation_hold="gpus": per reserved node (aligned with the reservation's nodes), the GPUs
        # and pod slots a job running past the shadow time may still take; None = hold whole nodes
        self.spare_gpus: np.ndarray | None = None
        self.spare_pods: np.ndarray | None = None
        self.head_need: tuple[np.ndarray, np.ndarray] | None = None
        self.heads_late = 0  # reservation heads that started after their shadow time
        self.busy = 0
        self.tl_t: list[float] = []
        self.tl_busy: list[int] = []
        self.tl_queue: list[int] = []
        self.capacity = int(cluster.free_gpus[cluster.schedulable.astype(bool)].sum())
        # free GPU-seconds while a job waited, by the state of the node they were on (NODE_STATES)
        self.sched = cluster.schedulable.astype(bool).copy()
        self.sched_cap = cluster.cap_gpus[self.sched].astype(np.int64)
        self.idle_by_state = np.zeros(len(NODE_STATES), np.float64)
        self._idle_split: np.ndarray | None = None
        self._feasible_cache: dict[int, bool] = {}
        self.initial = cluster.copy()
        # per node, the start times of the trace's jobs running there (objective "age": the cluster's
        # oldest_start is kept as the earliest of these and the background's, which never ends)
        self.base_oldest = cluster.oldest_start.copy()
        self.node_starts: dict[int, dict[int, int]] = {}
        self.witness = GangplacePolicy(0, "heuristic")

    # ------------------------------------------------------------------ main loop
    def run(self) -> SimResult:
        t0 = time.perf_counter()
        tr, c = self.trace, self.c
        n = len(tr)
        submit = tr.submit_s
        horizon_guess = float(tr.span_s + (np.percentile(tr.duration_s, 99) if n else 0)) + 1.0
        snap_every = max(horizon_guess / max(self.cfg.samples, 1), 1.0)
        snaps_t: list[float] = []
        snaps: list[np.ndarray] = []
        next_snap = 0.0
        i = 0
        done = 0
        while i < n or self.running or self.queue:
            t_arr = submit[i] if i < n else math.inf
            t_end = self.running[0][0] if self.running else math.inf
            t = min(t_arr, t_end)
            if t == math.inf:  # queue non-empty, nothing running or arriving: the head can never start
                job = self.queue.popleft()
                self.rejected[job.idx] = True
                self.reservation = None
                self._schedule(self.tl_t[-1] if self.tl_t else 0)
                continue
            while self.running and self.running[0][0] == t:
                _, idx, _ = heapq.heappop(self.running)
                self._release(idx)
                done += 1
            while i < n and submit[i] == t:
                gang = make_gang(int(tr.num_gpus[i]), self.gpn)
                if not self._ever_fits(gang):
                    self.rejected[i] = True
                else:
                    self.queue.append(_Job(i, gang, int(tr.duration_s[i])))
                i += 1
            self._schedule(int(t))
            if self.cfg.check:
                self._check()
            if self.tl_t and self._idle_split is not None:  # the state after the previous event, until t
                self.idle_by_state += self._idle_split * (t - self.tl_t[-1])
            self._idle_split = self._free_split() if self.queue else None
            self.tl_t.append(float(t))
            self.tl_busy.append(self.busy)
            self.tl_queue.append(len(self.queue))
            if t >= next_snap:
                snaps_t.append(float(t))
                snaps.append(c.free_gpus.astype(np.int16))
                next_snap = t + snap_every
            if self.progress is not None:
                self.progress(i, done)
        return SimResult(
            policy=self.policy.name, trace=tr.name, n_levels=self.L, level_names=tuple(c.levels),
            capacity_gpus=self.capacity, gpus_per_node=self.gpn, submit_s=tr.submit_s, num_gpus=tr.num_gpus,
            duration_s=tr.duration_s, start_s=self.start, end_s=self.end, rejected=self.rejected,
            domains=self.domains, locality=self.locality, lower_bound=self.lbs,
            latency_ms=np.asarray(self.latency), timeline_t=np.asarray(self.tl_t),
            timeline_busy=np.asarray(self.tl_busy, np.int64), timeline_queue=np.asarray(self.tl_queue, np.int64),
            snapshot_t=np.asarray(snaps_t),
            snapshots=np.asarray(snaps, np.int16) if snaps else np.zeros((0, c.n_nodes), np.int16),
            wall_s=time.perf_counter() - t0,
            extra={"heads_late": self.heads_late,
                   "idle_by_node_state": dict(zip(NODE_STATES, self.idle_by_state.tolist()))})

    def _free_split(self) -> np.ndarray:
        """Free GPUs on the schedulable nodes, split as ``NODE_STATES``."""
        free, cap = self.c.free_gpus[self.sched].astype(np.int64), self.sched_cap
        whole = free == cap
        mostly = (2 * free > cap) & ~whole
        return np.array([free[~whole & ~mostly].sum(), free[mostly].sum(), free[whole].sum()], np.float64)

    # ------------------------------------------------------------------ scheduling
    def _schedule(self, t: int) -> None:
        while self.queue:
            head = self.queue[0]
            a = self._try(head, "now")
            if a is None:
                break
            self.queue.popleft()
            if self.reservation is not None and self.reservation[0] == head.idx and t > self.reservation[1]:
                self.heads_late += 1
            self.reservation = None
            self._start(head, a, t)
        if self.cfg.scheduler == "easy" and len(self.queue) > 1 and self.cfg.backfill_depth:
            self._backfill(t)

    def _backfill(self, t: int) -> None:
        head = self.queue[0]
        if self.reservation is None or self.reservation[0] != head.idx:
            shadow, got = self._shadow(head)
            if got is not None and (np.diff(got.nodes) <= 0).any():  # keep the reserved nodes sorted
                o = np.argsort(got.nodes)
                got = Assignment(got.nodes[o], got.gpus[o], got.pods[o])
            self.reservation = (head.idx, shadow, None if got is None else got.nodes)
            self._hold(shadow, got)
        _, shadow, reserved = self.reservation
        started = []
        free_total = int(self.c.free_gpus[self.c.schedulable.astype(bool)].sum())
        for k, job in enumerate(self.queue):
            if k == 0:
                continue
            if k > self.cfg.backfill_depth or free_total == 0:
                break
            if job.gang.gpus > free_total:
                continue
            a = None
            if reserved is not None:
                a = self._try(job, "outside", mask=reserved, head=head.idx)
                if a is not None and self.spare_gpus is not None:
                    self._use_spare(job, a, t, shadow, reserved)
            if a is None and t + job.dur <= shadow:
                cand = self._try(job, "now")
                if cand is not None and t + stretched_duration(job.dur, self._factor(cand)) <= shadow:
                    a = cand
            if a is not None:
                self._start(job, a, t)
                started.append(job)
                free_total -= job.gang.gpus
        for job in started:
            self.queue.remove(job)

    def _returned_by(self, shadow: float) -> tuple[np.ndarray, np.ndarray]:
        """GPUs and pod slots per node that running jobs ending at or before ``shadow`` return."""
        n = self.c.n_nodes
        gpus, pods = np.zeros(n, np.int64), np.zeros(n, np.int64)
        for end, idx, _ in self.running:
            if end <= shadow:
                a = self.assign[idx]
                np.add.at(gpus, a.nodes, a.gpus)
                np.add.at(pods, a.nodes, a.pods)
        return gpus, pods

    def _hold(self, shadow: float, got: Assignment | None) -> None:
        """With ``reservation_hold="gpus"``: per reserved node, what a job running past the shadow time
        may still take there (free now + returned by the shadow time - the head's need; >= 0)."""
        self.spare_gpus = self.spare_pods = self.head_need = None
        if got is None or self.cfg.reservation_hold != "gpus":
            return
        back_g, back_p = self._returned_by(shadow)
        c, nodes = self.c, got.nodes
        self.spare_gpus = c.free_gpus[nodes].astype(np.int64) + back_g[nodes] - got.gpus.astype(np.int64)
        self.spare_pods = c.free_pods[nodes].astype(np.int64) + back_p[nodes] - got.pods.astype(np.int64)
        self.head_need = (got.gpus.astype(np.int64), got.pods.astype(np.int64))
        if (self.spare_gpus < 0).any() or (self.spare_pods < 0).any():
            raise AssertionError("the head's reservation does not fit at its shadow time")

    def _use_spare(self, job: _Job, a: Assignment, t: int, shadow: float, reserved: np.ndarray) -> None:
        """A backfilled job that runs past the shadow time consumes the spare room it took."""
        if t + stretched_duration(job.dur, self._factor(a)) <= shadow:
            return  # returned by the shadow time: the head's room is untouched
        pos = np.searchsorted(reserved, a.nodes)
        pos = np.minimum(pos, len(reserved) - 1)
        on = reserved[pos] == a.nodes
        np.subtract.at(self.spare_gpus, pos[on], a.gpus[on].astype(np.int64))
        np.subtract.at(self.spare_pods, pos[on], a.pods[on].astype(np.int64))

    def _shadow(self, head: _Job) -> tuple[float, Assignment | None]:
        """Earliest time the head fits given the known end times, and the placement it would get."""
        c = self.c
        saved_free, saved_pods = c.free_gpus, c.free_pods
        proj_free, proj_pods = c.free_gpus.copy(), c.free_pods.copy()
        ok = c.schedulable.astype(bool)
        g = head.gang
        try:
            for end, idx, _ in sorted(self.running):
                a = self.assign[idx]
                proj_free[a.nodes] += a.gpus.astype(np.int32)
                proj_pods[a.nodes] += a.pods.astype(np.int32)
                # cheap necessary condition before asking the policy
                if (np.where(ok, proj_free, 0) // g.pod_gpus).sum() < g.full_pods:
                    continue
                c.free_gpus, c.free_pods = proj_free, proj_pods
                got = self.policy.place(c, g)
                c.free_gpus, c.free_pods = saved_free, saved_pods
                if got is not None:
                    return float(end), got
        finally:
            c.free_gpus, c.free_pods = saved_free, saved_pods
        return math.inf, None

    def _try(self, job: _Job, mode: str, mask: np.ndarray | None = None, head: int = -1) -> Assignment | None:
        key = (job.gang.gpus, mode, head)
        if self.failed.get(key) == self.version:
            return None
        c = self.c
        if mask is not None:
            # the head's reservation is capacity held for it, as a live scheduler holds it (the
            # extender's state subtracts reservations from free capacity): held GPUs and pod slots
            # are not free, and a reserved node with nothing left is not schedulable, so a best-fit
            # policy does not count held GPUs as free room
            saved = c.schedulable.copy()
            saved_free, saved_pods = c.free_gpus, c.free_pods
            if self.spare_gpus is not None:  # reservation_hold="gpus": only what the head needs
                c.free_gpus, c.free_pods = saved_free.copy(), saved_pods.copy()
                c.free_gpus[mask] = np.minimum(c.free_gpus[mask], self.spare_gpus)
                c.free_pods[mask] = np.minimum(c.free_pods[mask], self.spare_pods)
                c.schedulable[mask[(c.free_gpus[mask] == 0) | (c.free_pods[mask] == 0)]] = 0
            else:  # "nodes": the whole reserved nodes
                c.schedulable[mask] = 0
                if self.hold_reservation_gpus:
                    c.free_gpus = saved_free.copy()
                    c.free_gpus[mask] = 0
        t0 = time.perf_counter()
        try:
            a = self.policy.place(c, job.gang)
        finally:
            self.latency.append((time.perf_counter() - t0) * 1e3)
            if mask is not None:
                c.schedulable[:] = saved
                c.free_gpus, c.free_pods = saved_free, saved_pods
        if a is None:
            self.failed[key] = self.version
        return a

    def _ever_fits(self, gang: Gang) -> bool:
        """Whether the gang fits on the cluster as it was before the simulation (any placement)."""
        hit = self._feasible_cache.get(gang.gpus)
        if hit is None:
            hit = self.witness.place(self.initial, gang) is not None
            self._feasible_cache[gang.gpus] = hit
        return hit

    # ------------------------------------------------------------------ state changes
    def _factor(self, a: Assignment) -> float:
        return slowdown_factor(self._domains(a), self.cfg.slowdown)

    def _domains(self, a: Assignment) -> np.ndarray:
        return domains_spanned(self.c.node_domain, a.nodes)

    def _start(self, job: _Job, a: Assignment, t: int) -> None:
        c, idx = self.c, job.idx
        if self.start[idx] >= 0:
            raise AssertionError(f"job {idx} started twice")
        if int(a.gpus.sum()) != job.gang.gpus or int(a.pods.sum()) != job.gang.n_pods:
            raise AssertionError(f"policy {self.policy.name} returned a partial gang for job {idx}")
        doms = self._domains(a)
        if self.cfg.judge_locality and job.gang.n_pods > 1:
            self._judge(job, a, doms)
        elif job.gang.n_pods == 1:
            self.locality[idx] = LOC_SINGLE
        c.free_gpus[a.nodes] -= a.gpus.astype(np.int32)
        c.free_pods[a.nodes] -= a.pods.astype(np.int32)
        for i in a.nodes.tolist():
            d = self.node_starts.setdefault(i, {})
            d[t] = d.get(t, 0) + 1
            if t < c.oldest_start[i]:
                c.oldest_start[i] = t
        self.version += 1
        self.busy += job.gang.gpus
        dur = stretched_duration(job.dur, slowdown_factor(doms, self.cfg.slowdown))
        self.start[idx], self.end[idx] = t, t + dur
        self.domains[idx] = doms
        self.assign[idx] = a
        heapq.heappush(self.running, (t + dur, idx, idx))

    def _release(self, idx: int) -> None:
        a = self.assign.pop(idx)
        self.c.free_gpus[a.nodes] += a.gpus.astype(np.int32)
        self.c.free_pods[a.nodes] += a.pods.astype(np.int32)
        t0 = int(self.start[idx])
        for i in a.nodes.tolist():
            d = self.node_starts[i]
            d[t0] -= 1
            if not d[t0]:
                del d[t0]
                if self.c.oldest_start[i] == t0:
                    self.c.oldest_start[i] = min(self.base_oldest[i], min(d)) if d else self.base_oldest[i]
        self.busy -= int(self.trace.num_gpus[idx])
        self.version += 1

    def _judge(self, job: _Job, a: Assignment, doms: np.ndarray) -> None:
        """Locality verdict on the free capacity just before the gang starts (see module docstring)."""
        from ..place.heuristic import bounds
        from ..place.request import prepare
        lb = a.lower_bound
        if lb is None:
            lb, _ = bounds(self.c, prepare(self.c, job.gang.request))
        self.lbs[job.idx] = lb
        if np.array_equal(doms, lb) or a.proved_optimal:
            self.locality[job.idx] = LOC_OPTIMAL
            return
        ref = self.witness.place(self.c, job.gang)
        if ref is not None and tuple(self._domains(ref)) < tuple(doms):
            self.locality[job.idx] = LOC_SUBOPTIMAL
        else:
            self.locality[job.idx] = LOC_UNKNOWN

    def _check(self) -> None:
        c = self.c
        if (c.free_gpus < 0).any() or (c.free_gpus > c.cap_gpus).any():
            raise AssertionError("a node has negative or more-than-capacity free GPUs (double booking)")
        held = sum(int(a.gpus.sum()) for a in self.assign.values())
        if held != self.busy or int(self.initial.free_gpus.sum()) - int(c.free_gpus.sum()) != held:
            raise AssertionError("GPUs held by running jobs do not match the free arrays")
        res = self.reservation
        if self.spare_gpus is not None and res is not None and self.queue and self.queue[0].idx == res[0]:
            # the head still fits on its reserved nodes at the shadow time, and the spare room is
            # exactly free now + returned by then - the head's need (nothing else took it)
            nodes = res[2]
            back_g, back_p = self._returned_by(res[1])
            if not (np.array_equal(c.free_gpus[nodes] + back_g[nodes] - self.head_need[0], self.spare_gpus)
                    and np.array_equal(c.free_pods[nodes] + back_p[nodes] - self.head_need[1], self.spare_pods)):
                raise AssertionError("the reservation's spare room drifted from the cluster's state")
            if (self.spare_gpus < 0).any() or (self.spare_pods < 0).any():
                raise AssertionError("a backfilled job took GPUs the head needs at its shadow time")

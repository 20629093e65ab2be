"""engine/sim/simulator.py: invariants on random traces for every policy, and hand-checked schedules."""
import numpy as np
import pytest

from gangplace.engine.sim.locality import crossed_level, slowdown_factor, stretched_duration
from gangplace.engine.sim.summary import busy_integral, idle_while_queued, summarize
from gangplace.engine.sim.baselines import POLICIES, Policy, make_policy
from gangplace.engine.sim.simulator import LOC_OPTIMAL, LOC_SINGLE, NODE_STATES, SimConfig, _Simulator, simulate
from gangplace.engine.model.synthetic import generate
from gangplace.engine.sim.traces import Trace
from tests.conftest import build_cluster


def trace(rows, name="t"):
    """rows: (submit_s, gpus, duration_s)."""
    a = np.asarray(rows, np.int64).reshape(-1, 3)
    return Trace(name, np.asarray([f"j{i}" for i in range(len(a))], object), a[:, 0], a[:, 1], a[:, 2])


def random_trace(seed, n=150, max_gpus=40):
    rng = np.random.default_rng(seed)
    submit = np.sort(rng.integers(0, 2000, n))
    gpus = rng.choice([1, 1, 2, 4, 8, 8, 12, 16, 24, 32, max_gpus], n)
    dur = rng.integers(1, 400, n)
    return trace(np.stack([submit, gpus, dur], 1))


class Recording(Policy):
    """Wraps a policy and records every assignment it hands out."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.name, self.given = inner, inner.name, []

    def place(self, cluster, gang):
        a = self.inner.place(cluster, gang)
        if a is not None:
            self.given.append((gang.gpus, int(a.gpus.sum()), int(a.pods.sum()), gang.n_pods))
        return a


@pytest.mark.parametrize("scheduler", ["easy", "fifo"])
@pytest.mark.parametrize("name", POLICIES)
def test_invariants_hold_for_every_policy_on_a_random_trace(name, scheduler):
    cluster = generate("gb200-nvl72", gpus=288, fill=0.2, seed=2)  # 4-GPU nodes, 18 per rack
    tr = random_trace(7)
    pol = Recording(make_policy(name, seed=1, time_limit_ms=20))
    r = simulate(cluster, tr, pol, SimConfig(scheduler=scheduler, check=True))
    started = r.start_s >= 0
    # every job either ran exactly once or was rejected (too big for what the background leaves)
    assert (started ^ r.rejected).all()
    assert (r.start_s[started] >= r.submit_s[started]).all()
    assert (r.end_s[started] - r.start_s[started] >= r.duration_s[started]).all()
    # all-or-nothing: every assignment handed out carries the whole gang
    assert all(total == gpus and pods == n_pods for gpus, total, pods, n_pods in pol.given)
    # conservation of GPU-seconds: the busy-GPU step function integrates to sum(gpus x run time)
    held = int((r.num_gpus * (r.end_s - r.start_s))[started].sum())
    assert busy_integral(r.timeline_t, r.timeline_busy, 0, float(r.end_s.max())) == held
    # nothing is left running and the cluster is back to its background load
    assert r.timeline_busy[-1] == 0 and r.timeline_queue[-1] == 0
    idle, queued = idle_while_queued(r.timeline_t, r.timeline_busy, r.timeline_queue, r.capacity_gpus)
    assert 0 <= idle <= r.capacity_gpus * queued and queued <= float(r.timeline_t[-1] - r.timeline_t[0])
    # the split by node state adds up to it, every part non-negative
    split = r.extra["idle_by_node_state"]
    assert list(split) == list(NODE_STATES) and min(split.values()) >= 0
    assert sum(split.values()) == pytest.approx(idle, rel=1e-12, abs=1e-9)
    before = generate("gb200-nvl72", gpus=288, fill=0.2, seed=2)
    assert (cluster.free_gpus == before.free_gpus).all()
    assert (cluster.oldest_start == before.oldest_start).all()  # the background's ages only (-inf or none)


class AgeCheck(Policy):
    """gangplace-auto that checks, at every decision, the cluster's oldest_start against the running jobs."""

    def __init__(self):
        super().__init__()
        self.inner, self.name, self.sim, self.checked = make_policy("gangplace-auto", time_limit_ms=20), "check", None, 0

    def place(self, cluster, gang):
        sim = self.sim
        want = sim.base_oldest.copy()
        for idx, a in sim.assign.items():
            for i in a.nodes.tolist():
                want[i] = min(want[i], float(sim.start[idx]))
        assert (cluster.oldest_start == want).all()
        self.checked += 1
        return self.inner.place(cluster, gang)


@pytest.mark.parametrize("scheduler", ["easy", "fifo"])
def test_the_clusters_node_ages_follow_the_running_jobs(scheduler):
    cluster = generate("dgx-h100", gpus=256, fill=0.3, seed=3)
    assert np.isneginf(cluster.oldest_start).any() and np.isposinf(cluster.oldest_start).any()
    pol = AgeCheck()
    sim = _Simulator(cluster, random_trace(5, n=200), pol, SimConfig(scheduler=scheduler), None)
    pol.sim = sim
    sim.run()
    assert pol.checked > 200


def two_nodes():
    return build_cluster({"b0": {"r0": [0, 0]}})


@pytest.mark.parametrize("small,state", [(1, "mostly_free"), (5, "at_most_half_free")])
def test_the_gpus_free_while_a_job_waits_are_split_by_the_state_of_their_node(small, state):
    # a small job on one node and a whole-node job on the other until t=100; a 16-GPU job waits over
    # [1, 100): the small job's node has 8 - small GPUs free (7: more than half, 3: at most half);
    # with small = 5 it ends at 50 and its node is whole free over [50, 100)
    end = 100 if small == 1 else 50
    c = two_nodes()
    r = simulate(c, trace([(0, small, end), (0, 8, 100), (1, 16, 10)]), make_policy("gangplace-heuristic"),
                 SimConfig(check=True))
    s = summarize(r, c.node_domain, c.level_offset, c.cap_gpus)
    want = dict.fromkeys(NODE_STATES, 0.0)
    want[state] = (8 - small) * (end - 1)
    want["whole_free"] = 8 * (100 - end)
    assert s["idle_gpu_s_by_node_state"] == want
    assert s["idle_gpu_s_while_queued"] == sum(want.values()) and s["queued_s"] == 99


def test_easy_backfill_holds_capacity_for_the_head_and_fills_the_gap():
    # j0 holds one node until 100; j1 (both nodes) waits at the head; j2 fits the gap and ends by 100;
    # j3 would run past 100 on the node j1 needs, so it waits
    tr = trace([(0, 8, 100), (1, 16, 10), (2, 8, 50), (3, 8, 500)])
    r = simulate(two_nodes(), tr, make_policy("gangplace-heuristic"), SimConfig(check=True))
    assert r.start_s.tolist() == [0, 100, 2, 110]


def test_fifo_never_starts_past_the_head():
    tr = trace([(0, 8, 100), (1, 16, 10), (2, 8, 50), (3, 8, 500)])
    r = simulate(two_nodes(), tr, make_policy("gangplace-heuristic"), SimConfig(scheduler="fifo", check=True))
    assert r.start_s.tolist() == [0, 100, 110, 110]


def test_backfill_may_use_nodes_outside_the_reservation_even_past_the_shadow_time():
    c = build_cluster({"b0": {"r0": [0, 0, 0], "r1": [0]}})
    # j0 takes 2 nodes until 100; head j1 needs 3 nodes (reserved: 3 of the 4 nodes at t=100);
    # j2 is long but fits on the one node outside the reservation
    tr = trace([(0, 16, 100), (1, 24, 10), (2, 8, 1000)])
    r = simulate(c, tr, make_policy("gangplace-heuristic"), SimConfig(check=True, slowdown=(0.0,)))
    assert r.start_s.tolist() == [0, 100, 2]


def test_a_job_larger_than_the_cluster_is_rejected_and_does_not_block_the_queue():
    tr = trace([(0, 32, 10), (1, 8, 10), (2, 16, 5)])
    r = simulate(two_nodes(), tr, make_policy("k8s-default"), SimConfig(check=True))
    assert r.rejected.tolist() == [True, False, False]
    assert r.start_s.tolist() == [-1, 1, 11]


def test_locality_slows_a_gang_that_crosses_racks():
    # two racks of one node: a 16-GPU gang must cross racks (level 1 from the bottom: +5 %)
    c = build_cluster({"b0": {"r0": [0], "r1": [0]}})
    r = simulate(c, trace([(0, 16, 100)]), make_policy("kueue-tas"), SimConfig(slowdown=(0.0, 0.05, 0.15)))
    assert r.end_s.tolist() == [105]
    assert r.domains[0].tolist() == [1, 2, 2]
    assert r.locality[0] == LOC_OPTIMAL  # 2 racks is the fewest possible


def test_single_pod_jobs_are_not_judged_for_locality():
    r = simulate(two_nodes(), trace([(0, 4, 10)]), make_policy("random"), SimConfig())
    assert r.locality.tolist() == [LOC_SINGLE]


@pytest.mark.parametrize("domains,level,factor", [
    ([1, 1, 1], -1, 1.0), ([1, 1, 3], 0, 1.0), ([1, 2, 3], 1, 1.05), ([2, 3, 4], 2, 1.15),
], ids=["one node", "nodes in one rack", "racks in one block", "several blocks"])
def test_slowdown_depends_on_the_highest_level_crossed(domains, level, factor):
    d = np.asarray(domains)
    assert crossed_level(d) == level
    assert slowdown_factor(d) == pytest.approx(factor)
    assert stretched_duration(100, slowdown_factor(d)) == round(100 * factor)


def test_summary_metrics_are_consistent_on_a_hand_checked_run():
    c = two_nodes()
    tr = trace([(0, 8, 100), (1, 16, 10), (2, 8, 50), (3, 8, 500)])
    r = simulate(c, tr, make_policy("gangplace-heuristic"), SimConfig(samples=50))
    s = summarize(r, c.node_domain, c.level_offset, c.cap_gpus)
    assert s["jobs_completed"] == 4 and s["jobs_rejected"] == 0
    assert s["mean_queue_delay_s"] == pytest.approx((0 + 99 + 0 + 107) / 4)
    assert s["gpu_weighted_mean_queue_delay_s"] == pytest.approx((8 * 0 + 16 * 99 + 8 * 0 + 8 * 107) / 40)
    # per size class: jobs, and its GPU-time (GPUs x the trace's run time, slowdown excluded)
    assert {b: (v["jobs"], v["gpu_s"]) for b, v in s["queue_delay_by_size"].items()} == {
        "5-8": (3, 8 * 100 + 8 * 50 + 8 * 500), "9-16": (1, 16 * 10)}
    assert s["makespan_s"] == 610
    # a job waits over [1, 110); GPUs free meanwhile: 8 over [1, 2) and over [52, 100) (j2 done, the head's
    # reservation holds node 1 for j1, and j3 would run past it)
    assert s["queued_s"] == 109 and s["idle_gpu_s_while_queued"] == 8 * 1 + 8 * 48
    assert s["idle_gpu_s_by_node_state"] == {"at_most_half_free": 0.0, "mostly_free": 0.0, "whole_free": 8 * 49}
    assert s["utilization"] == pytest.approx((8 * 100 + 16 * 10 + 8 * 50 + 8 * 500) / (16 * 610))
    assert s["multi_pod_gangs"] == 1 and s["optimal_locality_fraction"] == 1.0
    assert 0.0 <= s["stranded_free_fraction_mean"] <= 1.0
    assert s["placement_decisions"] >= 4


def test_backfill_sees_the_heads_reservation_as_held_capacity_not_free_room():
    # 4 nodes; a 2-node job runs until t=100, so the 4-node head waits and reserves every node;
    # while the policy is asked to backfill outside the reservation, reserved nodes show 0 free GPUs
    seen = []

    class Spy(Policy):
        name = "spy"

        def __init__(self):
            super().__init__(0)
            self.inner = make_policy("gangplace-heuristic")

        def place(self, c, g):
            off = ~c.schedulable.astype(bool)
            if off.any():
                seen.append(int(c.free_gpus[off].sum()))
            return self.inner.place(c, g)

    c = build_cluster({"b0": {"r0": [0, 0, 0, 0]}})
    r = simulate(c, trace([(0, 16, 100), (1, 32, 100), (2, 8, 50)]), Spy(), SimConfig())
    assert seen and all(v == 0 for v in seen)
    assert (r.start_s >= 0).all()


def one_node():
    return build_cluster({"b0": {"r0": [0]}})


# one 8-GPU node: j0 holds 4 GPUs until 100; the head j1 needs 6, so it reserves the node for t=100,
# where it needs 6 of the 8 GPUs: 2 are spare. j2 and j3 are long 1-GPU jobs, j4 a third one;
# j5 is short (ends by 100) and may use any free GPU.
SPARE = [(0, 4, 100), (1, 6, 500), (2, 1, 1000), (3, 1, 1000), (4, 1, 1000), (5, 1, 50)]


@pytest.mark.parametrize("name", ["gangplace-heuristic", "gangplace-auto", "kueue-tas", "kai-binpack",
                                  "most-allocated", "k8s-default", "random"])
def test_a_long_job_backfills_onto_the_spare_gpus_of_a_reserved_node_but_not_onto_the_heads(name):
    r = simulate(one_node(), trace(SPARE), make_policy(name, seed=1), SimConfig(check=True, slowdown=(0.0,)))
    # j2 and j3 take the 2 GPUs the head will not need; j4 waits for the head to end (t=600);
    # j5 ends before the shadow time; the head starts at its shadow time
    assert r.start_s.tolist() == [0, 100, 2, 3, 600, 5]
    assert r.extra["heads_late"] == 0


def test_the_whole_node_hold_stays_selectable_and_holds_every_free_gpu_of_a_reserved_node():
    cfg = SimConfig(check=True, slowdown=(0.0,), reservation_hold="nodes")
    r = simulate(one_node(), trace(SPARE), make_policy("gangplace-heuristic"), cfg)
    # j2-j4 may not run past t=100 on the reserved node: they start when the head has (2 GPUs left)
    # or when it ends; j5 still fits before the shadow time
    assert r.start_s.tolist() == [0, 100, 100, 100, 600, 5]
    with pytest.raises(Exception, match="reservation hold"):
        SimConfig(reservation_hold="racks")


def test_the_hold_counts_pod_slots_as_well_as_gpus():
    c = one_node()
    c.free_pods[:] = 2  # two pods per node: j0 takes one; the head needs one at t=100
    tr = trace([(0, 4, 100), (1, 6, 500), (2, 1, 1000), (3, 1, 1000)])
    r = simulate(c, tr, make_policy("gangplace-heuristic"), SimConfig(check=True, slowdown=(0.0,)))
    # 2 GPUs are spare but only 1 pod slot: j2 backfills, j3 waits for the head to end
    assert r.start_s.tolist() == [0, 100, 2, 600]


def test_a_backfilled_job_that_ends_by_the_shadow_time_leaves_the_spare_room_to_the_next():
    # j2 ends at 52 (before 100): it may use the spare GPUs without consuming them, so j3 and j4
    # (long) still get the 2 spare GPUs
    tr = trace([(0, 4, 100), (1, 6, 500), (2, 1, 50), (3, 1, 1000), (4, 1, 1000), (5, 1, 1000)])
    r = simulate(one_node(), tr, make_policy("gangplace-heuristic"), SimConfig(check=True, slowdown=(0.0,)))
    assert r.start_s.tolist() == [0, 100, 2, 3, 4, 600]


@pytest.mark.parametrize("name", ["gangplace-heuristic", "kueue-tas", "k8s-default"])
def test_with_whole_node_jobs_both_holds_give_the_same_schedule(name):
    # every job a multiple of the node size: a head needs whole nodes at its shadow time, so
    # nothing on a reserved node is spare and the per-GPU hold is the whole-node hold
    rng = np.random.default_rng(3)
    n = 120
    tr = trace(np.stack([np.sort(rng.integers(0, 3000, n)), rng.choice([4, 4, 8, 16, 32, 64], n),
                         rng.integers(10, 600, n)], 1))
    runs = [simulate(generate("gb200-nvl72", gpus=288, seed=2), tr, make_policy(name, seed=1),
                     SimConfig(check=True, reservation_hold=hold)) for hold in ("gpus", "nodes")]
    assert runs[0].start_s.tolist() == runs[1].start_s.tolist()
    assert (runs[0].start_s >= 0).all()
    # not vacuous: backfill reorders most of this queue (FIFO starts them differently)
    fifo = simulate(generate("gb200-nvl72", gpus=288, seed=2), tr, make_policy(name, seed=1), SimConfig(scheduler="fifo"))
    assert (fifo.start_s != runs[0].start_s).sum() > n // 2


@pytest.mark.parametrize("name", ["gangplace-auto", "most-allocated"])
def test_invariants_hold_with_the_whole_node_hold_too(name):
    cluster = generate("gb200-nvl72", gpus=288, fill=0.2, seed=2)
    r = simulate(cluster, random_trace(7), make_policy(name, seed=1, time_limit_ms=20),
                 SimConfig(check=True, reservation_hold="nodes"))
    assert ((r.start_s >= 0) ^ r.rejected).all()
    assert r.extra["heads_late"] == 0

"""Synthetic clusters (engine/model/synthetic.py): shape, rounding to whole nodes, fill accuracy."""
from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gangplace.engine import InvalidRequest
from gangplace.engine.model import synthetic
from gangplace.engine.model.cluster import Cluster
from gangplace.engine.model.formats import cluster_to_dict
from gangplace.engine.model.synthetic import PRESETS, generate

SIZES = [64, 2048, 16384, 131072]


# every preset at 64..16,384 GPUs; at 131,072 the two presets of the budget table
CASES = [(p, g) for p in sorted(PRESETS) for g in SIZES[:-1]] + [("dgx-h100", 131072), ("gb200-nvl72", 131072)]


@pytest.mark.parametrize("preset, gpus", CASES, ids=[f"{p}-{g}gpus" for p, g in CASES])
def test_every_preset_builds_at_every_size_with_whole_nodes_and_fill_just_under_target(preset, gpus):
    c = generate(preset, gpus=gpus, fill=0.6, seed=1)
    p = PRESETS[preset]
    assert c.levels == p.levels
    # rounded up to whole nodes: never fewer GPUs than asked, less than one node more
    assert gpus <= c.total_gpus < gpus + int(c.cap_gpus.max())
    used = 1 - c.free_gpu_count / c.total_gpus
    assert used <= 0.6 + 1e-9
    assert used >= 0.6 - (0.05 if gpus <= 64 else 0.01)
    # background usage is recorded as allocations that add up
    nodes = c.nodes
    for i in range(0, c.n_nodes, max(1, c.n_nodes // 50)):
        spec = nodes[i]
        assert sum(a.gpus for a in spec.allocations) == spec.gpus_used
        assert all(a.gang.startswith("bg-") and 0 <= a.priority <= 2 for a in spec.allocations)


def test_gb200_64_gpus_is_one_partial_rack():
    c = generate("gb200-nvl72", gpus=64, fill=0.0, seed=1)
    assert c.n_nodes == 16 and c.total_gpus == 64 and c.free_gpu_count == 64
    assert len(c.level_domains(1)) == 1  # one rack of 16 nodes (a full NVL72 rack has 18)


def test_dgx_node_names_and_paths():
    c = generate("dgx-h100", gpus=512, fill=0.0, seed=1)
    assert c.n_nodes == 64
    assert c.node_names[0] == "z0-b0-su0-n00"
    assert c.node_path(0) == "z0/z0-b0/z0-b0-su0/z0-b0-su0-n00"
    assert c.node_names[32] == "z0-b0-su1-n00"


def test_hetero_mixes_gpu_types_and_node_sizes():
    c = generate("hetero", gpus=2048, fill=0.5, seed=2)
    assert set(c.gpu_type_names) >= {"H100", "A100", "L40S"}
    assert set(c.cap_gpus.tolist()) == {4, 8}


def test_same_seed_same_cluster_other_seed_other_load():
    a, b = generate("dgx-h100", gpus=1024, seed=5), generate("dgx-h100", gpus=1024, seed=5)
    assert (a.free_gpus == b.free_gpus).all()
    assert not (a.free_gpus == generate("dgx-h100", gpus=1024, seed=6).free_gpus).all()


def test_fill_zero_and_one():
    assert generate("fat-tree", gpus=256, fill=0.0).free_gpu_count == 256
    full = generate("fat-tree", gpus=256, fill=1.0)
    assert full.free_gpu_count <= 8


@pytest.mark.parametrize("kwargs, field", [({"preset": "tpu"}, "preset"), ({"gpus": 4}, "gpus"),
                                           ({"gpus": 10**9}, "gpus"), ({"gpus": 64.0}, "gpus"),
                                           ({"fill": 1.5}, "fill"), ({"fill": -0.1}, "fill")])
def test_invalid_arguments_name_the_field(kwargs, field):
    with pytest.raises(InvalidRequest) as e:
        generate(**{"preset": "dgx-h100", "gpus": 64, **kwargs})
    assert e.value.field == field


def _fill_reference(rng, p, shapes, used, owners, fill):
    """The straightforward fill loop (whole-array scans per job): the oracle for the blocked one."""
    cap = np.array([s[1] for s in shapes], np.int64)
    target = int(fill * cap.sum())
    n, group = len(cap), p.group_sizes[-1]
    weights = synthetic._JOB_WEIGHT / synthetic._JOB_WEIGHT.sum()
    job, misses = 0, 0
    while used.sum() < target and misses < 200:
        size = int(rng.choice(synthetic._JOB_GPUS, p=weights))
        if used.sum() + size > target:
            size = int(target - used.sum())
        prio = int(rng.integers(0, 3))
        if size <= cap.max() and size <= 8:
            ok = np.flatnonzero(cap - used >= size)
            if not len(ok):
                misses += 1
                continue
            i = int(rng.choice(ok))
            used[i] += size
            owners[i].append((job, size, prio))
        else:
            start = int(rng.integers(0, max(1, n // group))) * group
            need, taken = size, []
            for k in range(n):
                j = (start + k) % n
                if used[j] == 0 and need > 0:
                    taken.append((j, int(min(cap[j], need))))
                    need -= min(cap[j], need)
                if need <= 0:
                    break
            if need > 0:
                misses += 1
                continue
            for j, take in taken:
                used[j] += take
                owners[j].append((job, take, prio))
        job += 1


@settings(max_examples=40, deadline=None)
@given(preset=st.sampled_from(sorted(PRESETS)), gpus=st.integers(8, 6000), fill=st.floats(0, 1),
       seed=st.integers(0, 2**16))
def test_the_blocked_fill_gives_exactly_the_cluster_of_the_straightforward_loop(preset, gpus, fill, seed):
    with patch.object(synthetic, "_BLOCK", 8):  # many blocks, partial last ones, scans across them
        fast = generate(preset, gpus=gpus, fill=fill, seed=seed)
    with patch.object(synthetic, "_fill", _fill_reference):
        slow = generate(preset, gpus=gpus, fill=fill, seed=seed)
    assert cluster_to_dict(fast) == cluster_to_dict(slow)


@pytest.mark.slow
def test_a_million_gpus_generate_with_whole_nodes_and_the_fill_reached():
    c = generate("dgx-h100", gpus=1_048_576, fill=0.6, seed=1)
    assert c.n_nodes == 131_072 and c.total_gpus == 1_048_576
    assert 0.595 <= 1 - c.free_gpu_count / c.total_gpus <= 0.6


@settings(max_examples=30, deadline=None)
@given(preset=st.sampled_from(sorted(PRESETS)), gpus=st.integers(8, 6000), seed=st.integers(0, 2**16))
def test_the_nodes_are_built_in_the_topology_order_sorting_them_gives(preset, gpus, seed):
    """generate skips the cluster's natural-key sort (``in_topology_order``): the nodes, shuffled
    and sorted by the cluster, come out in the same order with the same domains."""
    fast = generate(preset, gpus=gpus, fill=0.5, seed=seed)
    nodes = fast.nodes
    np.random.default_rng(seed).shuffle(nodes)
    sorted_ = Cluster(fast.levels, nodes)
    assert sorted_.node_names == fast.node_names and sorted_.domain_paths == fast.domain_paths
    for name in ("node_domain", "domain_start", "domain_end", "domain_parent", "free_gpus", "free_cpu"):
        assert np.array_equal(getattr(sorted_, name), getattr(fast, name)), name

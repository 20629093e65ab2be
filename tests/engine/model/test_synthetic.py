"""Synthetic clusters (engine/model/synthetic.py): shape, rounding to whole nodes, fill accuracy."""
from __future__ import annotations

import pytest

from gangplace.engine import InvalidRequest
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

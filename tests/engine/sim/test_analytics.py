"""engine/sim/analytics.py: the Numba kernels against slow, obvious numpy references."""
import numpy as np
import pytest

from gangplace.engine.sim.analytics import fragmentation, free_histogram, largest_gang, stranded_gpus
from gangplace.engine.model.synthetic import generate


def naive_largest(snap, cluster, pod):
    out = []
    for lv in range(len(cluster.levels)):
        best = 0
        for d in cluster.level_domains(lv):
            s, e = cluster.domain_start[d], cluster.domain_end[d]
            best = max(best, int((snap[s:e] // pod).sum()))
        out.append(best * pod)
    out.append(int((snap // pod).max()) * pod)
    return out


@pytest.mark.parametrize("preset,pod", [("dgx-h100", 8), ("gb200-nvl72", 4), ("hetero", 8)])
def test_kernels_match_the_naive_computation_on_random_snapshots(preset, pod):
    c = generate(preset, gpus=1024, fill=0.0, seed=1)
    rng = np.random.default_rng(0)
    snaps = rng.integers(0, c.cap_gpus + 1, size=(6, c.n_nodes)).astype(np.int16)
    got = largest_gang(snaps, c.node_domain, c.level_offset, pod)
    for s in range(len(snaps)):
        assert got[s].tolist() == naive_largest(snaps[s], c, pod)
        strand = int(snaps[s][snaps[s] < pod].sum())
        assert stranded_gpus(snaps, c.cap_gpus, pod)[s] == strand
        assert fragmentation(snaps, c.cap_gpus, pod)[s] == pytest.approx(strand / snaps[s].sum())
    hist = free_histogram(snaps, int(c.cap_gpus.max()))
    for s in range(len(snaps)):
        assert hist[s].tolist() == np.bincount(snaps[s], minlength=int(c.cap_gpus.max()) + 1).tolist()


def test_an_empty_or_full_cluster_has_no_fragmentation():
    cap = np.full(4, 8, np.int32)
    assert fragmentation(np.zeros((1, 4), np.int16), cap).tolist() == [0.0]
    assert fragmentation(np.full((1, 4), 8, np.int16), cap).tolist() == [0.0]
    assert fragmentation(np.array([[3, 8, 0, 1]], np.int16), cap).tolist() == [pytest.approx(4 / 12)]

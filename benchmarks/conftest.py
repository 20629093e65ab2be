"""Benchmarks (pytest-benchmark): collected only when ``benchmarks/`` is given to pytest.

``make bench`` runs ``pytest benchmarks --benchmark-only``. Files are ``bench_*.py``. Synthetic
clusters come from ``engine/synthetic.generate`` and are built once per session (``cluster``
fixture), so only ``place()`` is timed, as the budget table of docs/placement.md says.
"""
from __future__ import annotations

import functools

import pytest


def pytest_configure(config):
    config.addinivalue_line("python_files", "bench_*.py")


@functools.lru_cache(maxsize=None)
def synthetic(preset: str, gpus: int, fill: float = 0.6, seed: int = 1):
    from gangplace.engine.model.synthetic import generate
    return generate(preset, gpus=gpus, fill=fill, seed=seed)


@pytest.fixture(scope="session")
def cluster_cache():
    """``cluster_cache(preset, gpus, fill=0.6, seed=1)`` -> a Cluster, generated once per session."""
    return synthetic

"""Synthetic job traces, generated from a seed: the ``large-gang`` workload.

``large-gang`` stands in for an LLM-era trace dominated by large gangs (issue 9's held-out
workload, docs/simulation.md "Holdout (not tuned on)"): job sizes drawn from 1-256 GPUs (powers of
two; 1 GPU 30 %, 2 and 4 GPUs 8 % each, 8 GPUs 20 %, 16 and 32 GPUs 10 % each, 64 GPUs 7 %, 128 GPUs
4 %, 256 GPUs 3 %), log-normal run times (median 1 h, sigma 1.2, clipped to 1 min-3 days), then the
run times of the gangs of 32 GPUs or more scaled so that they hold half of the GPU-time (to within
the rounding to whole seconds and the 1-minute floor), Poisson arrivals 300 s apart on average
(the simulator's ``--load`` rescales them).

Trace names (``--trace`` of ``gangplace simulate``, ``load_trace``): ``large-gang`` (seed 1, 1,500
jobs) or with parameters after colons, in any order: ``large-gang:seed=2``,
``large-gang:seed=2:jobs=1500``. The same seed and size give the same jobs on every machine (numpy's
PCG64 ``default_rng``); they are the jobs ``benchmarks/fleet_rootcause.py gen-large`` wrote.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model.errors import InvalidRequest
from .traces import Trace

LARGE_GANG = "large-gang"
DEFAULT_SEED = 1
DEFAULT_JOBS = 1500
MAX_JOBS = 10_000_000
BIG_GANG_GPUS = 32  # "large": gangs of this many GPUs or more hold half of the GPU-time
_SIZES = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256])
_WEIGHTS = np.array([30, 8, 8, 20, 10, 10, 7, 4, 3], float)
_PARAMS = {"seed": (0, 2**63 - 1), "jobs": (2, MAX_JOBS)}


def is_synthetic(name: str | Path) -> bool:
    """True when ``name`` names a generated trace (``large-gang`` or ``large-gang:...``)."""
    key = str(name)
    return key == LARGE_GANG or key.startswith(LARGE_GANG + ":")


def parse_name(name: str) -> dict[str, int]:
    """``large-gang[:seed=S][:jobs=N]`` -> ``{"seed": S, "jobs": N}`` (defaults 1 and 1,500)."""
    key = str(name)
    if not is_synthetic(key):
        raise InvalidRequest(f"not a synthetic trace name: {key!r} (expected {LARGE_GANG}[:seed=S][:jobs=N])",
                             field="trace")
    out = {"seed": DEFAULT_SEED, "jobs": DEFAULT_JOBS}
    seen = set()
    for part in key.split(":")[1:]:
        k, sep, v = part.partition("=")
        k = k.strip()
        if not sep or k not in _PARAMS:
            raise InvalidRequest(f"{key!r}: expected seed=S or jobs=N after a colon, got {part!r}", field="trace")
        if k in seen:
            raise InvalidRequest(f"{key!r}: {k} given twice", field="trace")
        seen.add(k)
        try:
            value = int(v.strip())
        except ValueError:
            raise InvalidRequest(f"{key!r}: {k} must be an integer, got {v!r}", field="trace") from None
        out[k] = _checked(k, value, field="trace", where=f"{key!r}: ")
    return out


def _checked(param: str, value: int, *, field: str, where: str = "") -> int:
    lo, hi = _PARAMS[param]
    if not lo <= value <= hi:
        raise InvalidRequest(f"{where}{param} must be in [{lo:,}, {hi:,}], got {value:,}", field=field)
    return value


def trace_name(seed: int = DEFAULT_SEED, jobs: int = DEFAULT_JOBS) -> str:
    """The canonical name of a large-gang trace, e.g. ``large-gang:seed=2:jobs=1500``."""
    return f"{LARGE_GANG}:seed={seed}:jobs={jobs}"


def large_gang(seed: int = DEFAULT_SEED, jobs: int = DEFAULT_JOBS, *, name: str | None = None) -> Trace:
    """The large-gang workload (module docstring): ``jobs`` jobs from ``seed``, submit times from 0."""
    _checked("seed", int(seed), field="seed")
    n = _checked("jobs", int(jobs), field="jobs")
    rng = np.random.default_rng(seed)
    g = rng.choice(_SIZES, n, p=_WEIGHTS / _WEIGHTS.sum())
    dur = np.exp(rng.normal(np.log(3600), 1.2, n)).clip(60, 3 * 86400).astype(int)
    gt = g * dur
    big = g >= BIG_GANG_GPUS
    if not big.any() or big.all():
        raise InvalidRequest(f"{n} jobs drew {'no' if not big.any() else 'only'} gangs of >= {BIG_GANG_GPUS} GPUs "
                             f"(seed {seed}): use more jobs", field="jobs")
    f = gt[~big].sum() / gt[big].sum()  # scale the large gangs' run times so their GPU-time equals the rest's
    dur[big] = np.maximum((dur[big] * f).astype(int), 60)
    sub = np.cumsum(rng.exponential(300, n)).astype(int)
    sub -= sub[0]
    return Trace(name or trace_name(seed, jobs), np.array([f"j{i}" for i in range(n)], dtype=object),
                 sub.astype(np.int64), g.astype(np.int64), dur.astype(np.int64))


def load(name: str) -> Trace:
    """The trace a synthetic name stands for (``parse_name``); its ``name`` is the one given."""
    p = parse_name(name)
    return large_gang(p["seed"], p["jobs"], name=str(name))


def big_gang_share(trace: Trace, gpus: int = BIG_GANG_GPUS) -> float:
    """Share of the trace's GPU-time in gangs of ``gpus`` GPUs or more."""
    gt = trace.num_gpus * trace.duration_s
    return float(gt[trace.num_gpus >= gpus].sum() / max(gt.sum(), 1))


def write_csv(trace: Trace, path) -> Path | None:
    """Write ``trace`` in the trace CSV schema (engine/sim/traces.py): job_id,submit_s,num_gpus,duration_s.
    ``path``: a file path (returned as a Path) or an open text stream such as ``sys.stdout`` (returns None)."""
    if hasattr(path, "write"):
        _write_rows(trace, path)
        return None
    path = Path(path)
    with open(path, "w") as fh:
        _write_rows(trace, fh)
    return path


def _write_rows(trace: Trace, fh) -> None:
    fh.write("job_id,submit_s,num_gpus,duration_s\n")
    for j, s, g, d in zip(trace.job_id, trace.submit_s, trace.num_gpus, trace.duration_s):
        fh.write(f"{j},{s},{g},{d}\n")

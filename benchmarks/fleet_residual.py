"""How much longer a job runs, given how long it has run: the bundled traces' mean residual run time
(docs/simulation.md, "The age rule"). Not a pytest-benchmark file: run it directly.

    .venv/bin/python benchmarks/fleet_residual.py [TRACE ...]    # default: philly helios

Per trace and age a (0, 10 min, 1 h, 6 h, 1 day): of the jobs that ran longer than a, how many, their mean
remaining run time, and the share that ran at least one more hour. Rising with a: the longer a pod has run,
the longer it is expected to keep running (the age rule sends small pods beside it).
"""
from __future__ import annotations

import sys

import numpy as np

from gangplace.engine.sim.traces import load_trace

AGES = ((0, "0"), (600, "10 min"), (3600, "1 h"), (6 * 3600, "6 h"), (86400, "1 day"))


def residual(durations_s: np.ndarray, age_s: float) -> tuple[int, float, float]:
    """(jobs that ran longer than ``age_s``, their mean remaining seconds, share with >= 1 h remaining)."""
    left = durations_s[durations_s > age_s] - age_s
    if not left.size:
        return 0, float("nan"), float("nan")
    return int(left.size), float(left.mean()), float(np.mean(left >= 3600))


def main(argv: list[str]) -> int:
    for name in argv or ["philly", "helios"]:
        d = np.asarray(load_trace(name).duration_s, np.float64)
        print(f"{name} ({len(d):,} jobs)")
        print("| has run | jobs | mean remaining | runs >= 1 h more |")
        print("|---|---:|---:|---:|")
        for a, label in AGES:
            n, mean, share = residual(d, a)
            print(f"| {label} | {n:,} | {mean / 3600:.2f} h | {share:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The bench's "Head to head" section: gangplace-auto against each other policy alone, over the whole grid.

The verdict judges every cell against the *best* baseline of that cell. That is the bar a user cares
about, but it is not a comparison of two policies: with five baselines, each moved a few percent by a
queue run's chaos, the best of them is ahead of any one policy in many cells by chance alone (the
tie-twin, the same objective with exact ties broken the other way, loses about as many cells to the
best baseline as gangplace-auto does: docs/simulation.md, "The verdict's noise floor"). This section
answers the question a platform team asks instead: does a cluster queue less under gangplace-auto than
under Kueue's TAS (or KAI, or the default scheduler), over every cell of the grid?

Per other policy and verdict metric:
1. per cell, ours over it, the geometric mean over the replicas (``--replicas``; the nominal run
   alone otherwise) where both ran; a ratio of two values (almost) equal is 1, as in the verdict;
2. the cell is *ahead* when that is below 1 / (1 + tol), *behind* above 1 + tol, else *within*;
3. the geometric mean of the cells' ratios, and with two cells or more its 95 % interval from a
   percentile bootstrap over the cells (``RESAMPLES`` resamples, fixed seed: the same runs give the
   same interval, whichever other policies ran). Cells where one of the two waited 0 (ratio 0 or
   infinite) are counted ahead or behind but left out of the mean.
``gangplace-twin``'s row, when it ran, shows what ahead and behind look like between two policies
that are the same up to exact ties.
"""
from __future__ import annotations

import math

import numpy as np

TITLE = "Head to head: gangplace-auto against each policy"
RESAMPLES = 2000
SEED = 0


def head_to_head(rows, ours: str, tol: float, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, dict]:
    """``rows``: (cell, replica index, run result ``{"summary": ...}``), as ``cmd_bench.replica_ratios``
    takes them. Returns {policy: {metric key: {"geomean", "lo", "hi", "cells", "in_mean", "ahead",
    "within", "behind"}}} for every policy that ran next to ``ours``, in order of first appearance."""
    from .cmd_bench import VERDICT_METRICS, _ratio, by_replica, geometric_mean
    groups = by_replica(rows)
    order = list(dict.fromkeys(r["summary"]["policy"] for _, _, r in rows if r["summary"]["policy"] != ours))
    out: dict[str, dict] = {}
    for p in order:
        for key, _, _ in VERDICT_METRICS:
            per_cell = []
            for reps in groups.values():
                ratios = [_ratio(runs[ours][key], runs[p][key]) for runs in reps.values() if ours in runs and p in runs]
                if ratios:
                    per_cell.append(geometric_mean(ratios))
            if not per_cell:
                continue
            logs = np.log([x for x in per_cell if 0 < x < math.inf])
            m = {"cells": len(per_cell), "in_mean": int(logs.size),
                 "ahead": sum(x < 1 / (1 + tol) for x in per_cell), "behind": sum(x > 1 + tol for x in per_cell)}
            m["within"] = m["cells"] - m["ahead"] - m["behind"]
            m.update(geomean=math.exp(logs.mean()) if logs.size else math.nan, lo=math.nan, hi=math.nan)
            if logs.size > 1:  # a fresh generator per row: its interval does not depend on the other policies
                rng = np.random.default_rng(seed)
                boot = logs[rng.integers(0, logs.size, (resamples, logs.size))].mean(axis=1)
                m.update(lo=math.exp(np.percentile(boot, 2.5)), hi=math.exp(np.percentile(boot, 97.5)))
            out.setdefault(p, {})[key] = m
    return out


def _shown(m: dict) -> str:
    """"0.975 [0.943-1.004] (its interval includes 1)"; the ratio alone without an interval (one cell)."""
    fmt = "{:.3f}".format
    if math.isnan(m["lo"]):
        return fmt(m["geomean"])
    tie = m["lo"] <= 1 <= m["hi"]
    return f"{fmt(m['geomean'])} [{fmt(m['lo'])}-{fmt(m['hi'])}]" + (" (its interval includes 1)" if tie else "")


def summary(table: dict[str, dict]) -> list[tuple[str, str]]:
    """Per verdict metric, (label, text): the baselines ``ours`` is behind on the grid's geometric mean, or
    that it is ahead of every baseline and which one is closest (other gangplace policies are no baseline)."""
    from .cmd_bench import VERDICT_METRICS
    out = []
    baselines = [p for p in table if not p.startswith("gangplace")]
    for key, label, _ in VERDICT_METRICS:
        rated = [(p, table[p][key]) for p in baselines if key in table[p] and not math.isnan(table[p][key]["geomean"])]
        if not rated:
            continue
        behind = [(p, m) for p, m in rated if m["geomean"] > 1]
        if behind:
            out.append((label, "behind " + "; ".join(f"{p}, {_shown(m)}" for p, m in behind)))
        else:
            p, m = max(rated, key=lambda pm: pm[1]["geomean"])
            where = "ahead of every baseline" if m["geomean"] < 1 else "level with the closest baseline, ahead of the rest"
            out.append((label, f"{where}; the closest is {p}, {_shown(m)}"))
    return out


def verdict_line(table: dict[str, dict]) -> str:
    """The summary as one line for the report's verdict ("" without a baseline)."""
    parts = summary(table)
    if not parts:
        return ""
    return ("- **head to head** (each baseline alone, geometric mean over the cells; section \"Head to head\"): "
            + "; ".join(f"{label}: {text}" for label, text in parts) + ".\n")


def head_to_head_section(rows, replicas: int = 1, ours: str | None = None) -> tuple[str, dict]:
    """The section's markdown and its results.json entry (``head_to_head``); ``ours`` is the policy judged
    (gangplace-auto by default)."""
    from .cmd_bench import OURS, TWIN, VERDICT_METRICS, VERDICT_TOLERANCE
    ours = ours or OURS
    table = head_to_head(rows, ours, VERDICT_TOLERANCE)
    if not table:
        return f"No cell ran `{ours}` next to another policy.\n", {}
    tol = VERDICT_TOLERANCE
    fmt = "{:.3f}".format
    n = max(m["cells"] for t in table.values() for m in t.values())
    per = f"the geometric mean over the {replicas} replicas" if replicas > 1 else "the nominal run"
    lines = [f"`{ours}` over each other policy alone (not the best baseline of each cell, as in the verdict): per "
             f"cell {per}; then the geometric mean over the {n} cells with its 95 % bootstrap interval over the "
             f"cells, and the cells where `{ours}` is ahead by more than {tol:.0%}, within {tol:.0%}, or behind by "
             f"more. Below 1 = `{ours}` queues less; an interval that includes 1 is a tie within the grid's noise."
             + (f" `{TWIN}` is `{OURS}` with exact ties broken the other way: its row is the noise between two "
                f"policies that differ only where the objective does not care." if TWIN in table else "") + "\n"]
    lines += [f"- **{label}**, geometric mean over the cells: {text}." for label, text in summary(table)]
    head = "| policy |" + "".join(f" {label}: ours / it [95 %] | ahead / within / behind |"
                                  for _, label, _ in VERDICT_METRICS)
    lines += ["", head, "|---|" + "---:|---:|" * len(VERDICT_METRICS)]
    for p, t in sorted(table.items(), key=lambda pt: pt[0] == TWIN):  # the twin last
        row = f"| {p}{' (tie-twin)' if p == TWIN else ''} |"
        for key, _, _ in VERDICT_METRICS:
            m = t.get(key)
            if m is None:
                row += " - | - |"
                continue
            mean = ("-" if math.isnan(m["geomean"]) else fmt(m["geomean"])
                    + ("" if math.isnan(m["lo"]) else f" [{fmt(m['lo'])}-{fmt(m['hi'])}]"))
            left = f" ({m['cells'] - m['in_mean']} not in the mean)" if m["in_mean"] < m["cells"] else ""
            row += f" {mean}{left} | {m['ahead']} / {m['within']} / {m['behind']} |"
        lines.append(row)
    return "\n".join(lines) + "\n", table

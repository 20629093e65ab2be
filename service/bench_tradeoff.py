"""``gangplace bench``: the report section that explains every lost cell ("the trade-off and why").

A cell is *lost* when a baseline beats gangplace-auto by more than the verdict's tolerance (1 %) on a
verdict metric (mean wait, p99 wait, mean JCT): on the nominal run, or, when ``--replicas`` ran, on
the geometric mean of the per-replica ratios, exactly as the replicated verdict judges. For each lost
cell, one block: which baseline beat it on which metric and by how much; a table of the nominal runs,
ours against that baseline (mean wait per job-size class with its jobs and share of the GPU-time,
GPU-weighted mean wait, mean and p99 wait, mean JCT, optimal locality, utilization over the arrival
window, GPUs free while a job waited); and labels computed from those numbers (never per cell by hand), in this order:

- **replica noise**: with replicas, ours is ahead or tied in at least one replica on the lost metric
  (its min-max ratio range reaches 1);
- **tie noise** (when ``gangplace-twin`` ran: gangplace-auto's tie-twin, the same objective with exact
  ties broken the other way): on the lost metric, ours and its twin are at least as far apart as ours
  and the baseline (the larger over the smaller value; with replicas, geometric means over them), so
  exact ties alone move the cell by as much as the loss;
- **near-idle**: the mean wait is below ``NEAR_IDLE_SHARE`` (1 %) of the mean JCT for ours and the
  baseline alike, so the queue barely forms; the absolute differences in seconds are given;
- **small-for-large trade**: 1-GPU jobs wait longer under ours (by more than the tolerance) while ours
  waits less (by more than the tolerance) on the GPU-weighted mean wait, or in the multi-GPU size
  classes that together hold at least ``MAJORITY_SHARE`` (half) of the GPU-time;
- **GPU-weighted trade** (when the small-for-large trade does not apply): the mean wait is lost but the
  GPU-weighted mean wait is lower under ours by more than the tolerance, so counted per GPU the jobs wait less; names the size
  classes that wait less and longer;
- **locality trade**: the baseline places a smaller share of the multi-pod gangs at optimal locality
  than ours, by at least ``LOCALITY_MARGIN`` (1 percentage point);
- **idle capacity** or **same capacity, other order** (one of the two, against every baseline that
  beat the cell, when the runs carry ``idle_gpu_s_while_queued``): whether ours left more GPU-hours
  free while at least one job waited than the baseline did (by more than the tolerance): capacity the
  waiting jobs could not use (fragmentation, or room held for the backfill's head), split by the node
  those GPUs were on (at most half free, more than half free, whole) when the runs carry
  ``idle_gpu_s_by_node_state``; or not, so the waiting jobs had as much of the cluster under ours,
  and the loss is in which jobs the capacity served first;
- **loss without a measured compensating gain**: whenever neither trade applies (noise and near-idle
  are no gain, so this label can follow them).

docs/simulation.md, "Lost cells: the trade-off and why", describes the section.
"""
from __future__ import annotations

import math
from collections import Counter

from .cmd_bench import (CELL_FIELDS, OURS, TWIN, VERDICT_METRICS, VERDICT_TOLERANCE, _best_baseline, _cell_name, _ratio,
                        by_cell, geometric_mean)
from .output import fmt_duration

TITLE = "Lost cells: the trade-off and why"
NEAR_IDLE_SHARE = 0.01  # mean wait below 1 % of the mean JCT, for both: the queue barely forms
MAJORITY_SHARE = 0.5  # size classes holding at least half of the GPU-time "hold most of it"
LOCALITY_MARGIN = 0.01  # a locality trade needs the baseline at least 1 point below ours
SMALL = "1"  # the 1-GPU size class of engine/sim/summary.py's queue_delay_by_size

IDLE, ORDER = "idle capacity", "same capacity, other order"
# the simulator's split of the free GPUs while jobs waited (engine/sim/simulator.py NODE_STATES)
NODE_STATE_TEXT = {"at_most_half_free": "on nodes at most half free", "mostly_free": "on nodes more than half free",
                   "whole_free": "on whole free nodes"}
NODE_STATE_NOTE = {"mostly_free": " (a few GPUs in use pin them)"}
GW = "GPU-weighted trade"
LABEL_ORDER = ("replica noise", "tie noise", "near-idle", "small-for-large trade", GW, "locality trade", IDLE, ORDER,
               "loss without a measured compensating gain")


def _secs(x: float) -> str:
    """fmt_duration with a decimal below a minute (near-idle waits differ by fractions of a second)."""
    if math.isinf(x):
        return "inf"
    return f"{x:.1f} s" if abs(x) < 60 else fmt_duration(x, digits=2)


def _pair(mine: float, theirs: float) -> str:
    """"12.1 min against 11.5 min"; in seconds with up to 3 decimals when the two would look equal."""
    a, b = _secs(mine), _secs(theirs)
    for digits in (1, 2, 3):
        if a != b or mine == theirs:
            break
        a, b = f"{mine:,.{digits}f} s", f"{theirs:,.{digits}f} s"
    return f"{a} against {b}"


_fmt_ratio = "{:.3f}".format  # inf prints as "inf"


def _gpu_shares(summary: dict) -> dict[str, float]:
    """Each size class's share of the GPU-time (``gpu_s``); empty when the run predates ``gpu_s``."""
    by = summary.get("queue_delay_by_size", {})
    if not by or any("gpu_s" not in b for b in by.values()):
        return {}
    total = sum(b["gpu_s"] for b in by.values())
    return {k: b["gpu_s"] / total for k, b in by.items()} if total > 0 else {}


def _worse(mine: float, theirs: float, tol: float) -> bool:
    """``mine`` higher than ``theirs`` by more than ``tol`` (the verdict's test, lower is better)."""
    return _ratio(mine, theirs) > 1 + tol


def lost_cells(results: list[dict], table: dict[tuple, dict] | None = None, ours: str = OURS,
               tol: float = VERDICT_TOLERANCE) -> tuple[list[dict], dict]:
    """The lost cells, each ``{"cell", "runs", "losses", "nominal_only", "labels"}``, and counts ``{"cells", "nominal_only"}``.

    ``results``: the nominal runs (``spec`` and ``summary``, as ``verdict()`` takes them); ``table``: the
    output of ``replica_ratios()`` when replicas ran, else None. ``losses``: per lost metric, the nominal
    best baseline, both values and the nominal ratio, and with replicas the replicated figures
    (``nominal_only``: the same for metrics lost on the nominal run only, within ``tol`` on the replicas);
    ``labels``: ``{"label", "baseline", "text"}``, noise first, then per baseline in ``LABEL_ORDER``."""
    cells = {c: runs for c, runs in by_cell(results).items() if ours in runs and len(runs) > 1}
    out, nominal_only = [], []
    for cell, runs in cells.items():
        losses, nominal_lost = [], []
        for key, label, pick in VERDICT_METRICS:
            best_p, best = _best_baseline(runs, key, pick)
            if best_p is None:
                continue
            nominal = _ratio(runs[ours][key], best)
            rep = (table or {}).get(cell, {}).get(key)
            loss = {"metric": key, "label": label, "baseline": best_p, "ours": runs[ours][key], "theirs": best,
                    "nominal_ratio": nominal, "replicated": rep}
            if (rep["geomean"] if rep is not None else nominal) > 1 + tol:
                losses.append(loss)
            elif nominal > 1 + tol:
                nominal_lost.append(loss)
        if losses:
            out.append({"cell": cell, "runs": runs, "losses": losses, "nominal_only": nominal_lost,
                        "labels": classify(runs, losses, ours, tol)})
        elif nominal_lost:
            nominal_only.append(cell)
    return out, {"cells": len(cells), "nominal_only": nominal_only}


def classify(runs: dict[str, dict], losses: list[dict], ours: str = OURS,
             tol: float = VERDICT_TOLERANCE) -> list[dict]:
    """The labels of one lost cell from its runs' numbers (see the module docstring): replica noise first
    (``baseline`` None), then each baseline's labels in LABEL_ORDER."""
    labels = []
    for loss in losses:
        rep = loss["replicated"]
        if rep is not None and rep["ahead"] > 0:
            labels.append({"label": "replica noise", "baseline": None, "metric": loss["label"], "text": (
                f"on {loss['label']} `{ours}` is ahead or tied in {rep['ahead']} of {len(rep['ratios'])} replicas "
                f"(ratios {_fmt_ratio(rep['min'])}-{_fmt_ratio(rep['max'])}, geometric mean "
                f"{_fmt_ratio(rep['geomean'])})")})
        tie = _tie_noise(runs, loss, ours)
        if tie:
            labels.append(tie)
    mine = runs[ours]
    for base in dict.fromkeys(loss["baseline"] for loss in losses):
        theirs = runs[base]
        mine_losses = [loss for loss in losses if loss["baseline"] == base]
        labels += _against(mine, theirs, base, mine_losses, ours, tol)
    order = {None: -1, **{b: i for i, b in enumerate(dict.fromkeys(loss["baseline"] for loss in losses))}}
    return sorted(labels, key=lambda lb: (order[lb["baseline"]], LABEL_ORDER.index(lb["label"])))


def _gap(ratios: list[float]) -> float:
    """How far apart two policies are over runs: the geometric mean of larger / smaller, per run."""
    return geometric_mean([max(r, 1 / r) if r > 0 else math.inf for r in ratios])


def _tie_noise(runs: dict[str, dict], loss: dict, ours: str) -> dict | None:
    """ours and its tie-twin at least as far apart on the lost metric as ours and the baseline."""
    rep = loss["replicated"]
    if rep is not None and "twin" in rep:
        twin, lost = rep["twin"], rep["geomean"]
    elif rep is None and TWIN in runs:
        twin, lost = [_ratio(runs[ours][loss["metric"]], runs[TWIN][loss["metric"]])], loss["nominal_ratio"]
    else:
        return None
    gap = _gap(twin)
    if gap < lost:
        return None
    spread = (f" ({len(twin)} replicas, ratios {_fmt_ratio(min(twin))}-{_fmt_ratio(max(twin))})" if len(twin) > 1
              else f" (ratio {_fmt_ratio(twin[0])})")
    return {"label": "tie noise", "baseline": None, "metric": loss["label"], "text": (
        f"on {loss['label']} `{ours}` and `{TWIN}` (the same objective, exact ties broken the other way) are "
        f"{(gap - 1) * 100:.1f} % apart{spread}, at least the loss ({(lost - 1) * 100:.1f} %): exact ties alone move "
        "this cell by as much")}


def _against(mine: dict, theirs: dict, base: str, losses: list[dict], ours: str, tol: float) -> list[dict]:
    """The labels computed against one baseline: near-idle, then the trades, or the honest "no gain"."""
    small = _small_for_large(mine, theirs, base, tol)
    out = [lb for lb in (_near_idle(mine, theirs, base, losses, ours), small,
                         None if small else _gpu_weighted(mine, theirs, base, losses, tol),
                         _locality(mine, theirs, base, ours), _capacity(mine, theirs, base, ours, tol)) if lb]
    if not any(lb["label"] in ("small-for-large trade", GW, "locality trade") for lb in out):
        gw_m, gw_t = mine.get("gpu_weighted_mean_queue_delay_s"), theirs.get("gpu_weighted_mean_queue_delay_s")
        out.append({"label": "loss without a measured compensating gain", "baseline": base, "text": (
            (f"GPU-weighted mean wait {_pair(gw_m, gw_t)}, " if gw_m is not None and gw_t is not None
             else "") + f"optimal locality {mine['optimal_locality_fraction']:.1%} against "
            f"{theirs['optimal_locality_fraction']:.1%}: no gain for the large jobs or in locality beyond the "
            "thresholds")})
    return out


def _near_idle(mine: dict, theirs: dict, base: str, losses: list[dict], ours: str) -> dict | None:
    share = {p: s["mean_queue_delay_s"] / s["mean_jct_s"] if s["mean_jct_s"] > 0 else math.inf
             for p, s in ((ours, mine), (base, theirs))}
    if max(share.values()) >= NEAR_IDLE_SHARE:
        return None
    diffs = [("mean wait", mine["mean_queue_delay_s"] - theirs["mean_queue_delay_s"])]
    diffs += [(loss["label"], loss["ours"] - loss["theirs"]) for loss in losses if loss["metric"] == "p99_queue_delay_s"]
    return {"label": "near-idle", "baseline": base, "text": (
        f"the mean wait is {_secs(mine['mean_queue_delay_s'])}, {share[ours]:.2%} of the mean JCT, under "
        f"`{ours}` and {_secs(theirs['mean_queue_delay_s'])} ({share[base]:.2%}) under {base}: waiting is a "
        "negligible part of a job's completion time; ours minus theirs: "
        + ", ".join(f"{name} {'+' if d >= 0 else '-'}{_secs(abs(d))}" for name, d in diffs))}


def _small_for_large(mine: dict, theirs: dict, base: str, tol: float) -> dict | None:
    """1-GPU jobs wait longer under ours, and ours waits less on the GPU-weighted mean or in the multi-GPU
    size classes holding at least MAJORITY_SHARE of the GPU-time."""
    by_m, by_t = mine.get("queue_delay_by_size", {}), theirs.get("queue_delay_by_size", {})
    if not (SMALL in by_m and SMALL in by_t and _worse(by_m[SMALL]["mean_s"], by_t[SMALL]["mean_s"], tol)):
        return None
    gw_m, gw_t = mine.get("gpu_weighted_mean_queue_delay_s"), theirs.get("gpu_weighted_mean_queue_delay_s")
    gw_gain = gw_m is not None and gw_t is not None and _worse(gw_t, gw_m, tol)
    shares = _gpu_shares(mine)
    multi = [b for b in by_m if b != SMALL and b in by_t]
    ahead = [b for b in multi if _worse(by_t[b]["mean_s"], by_m[b]["mean_s"], tol)]
    behind = [b for b in multi if _worse(by_m[b]["mean_s"], by_t[b]["mean_s"], tol)]
    if not (gw_gain or (shares and sum(shares.get(b, 0.0) for b in ahead) >= MAJORITY_SHARE)):
        return None

    small = (f"1-GPU jobs wait {_pair(by_m[SMALL]['mean_s'], by_t[SMALL]['mean_s'])}"
             f" ({by_m[SMALL]['jobs']:,} jobs" + (f", {shares[SMALL]:.0%} of the GPU-time)" if shares else ")"))
    gw = (f"; GPU-weighted mean wait {_pair(gw_m, gw_t)} ({'lower' if gw_gain else 'not lower'})"
          if gw_m is not None and gw_t is not None else "")
    return {"label": "small-for-large trade", "baseline": base,
            "text": small + gw + _classes(ahead, "less", by_m, by_t, shares) + _classes(behind, "longer", by_m, by_t, shares)}


def _gpu_weighted(mine: dict, theirs: dict, base: str, losses: list[dict], tol: float) -> dict | None:
    """The mean wait over jobs lost, but the mean over GPUs (each job weighted by its GPUs) lower under ours."""
    gw_m, gw_t = mine.get("gpu_weighted_mean_queue_delay_s"), theirs.get("gpu_weighted_mean_queue_delay_s")
    if not any(loss["metric"] == "mean_queue_delay_s" for loss in losses):
        return None
    if gw_m is None or gw_t is None or not _worse(gw_t, gw_m, tol):
        return None
    by_m, by_t = mine.get("queue_delay_by_size", {}), theirs.get("queue_delay_by_size", {})
    both = [b for b in by_m if b in by_t]
    less = [b for b in both if _worse(by_t[b]["mean_s"], by_m[b]["mean_s"], tol)]
    longer = [b for b in both if _worse(by_m[b]["mean_s"], by_t[b]["mean_s"], tol)]
    shares = _gpu_shares(mine)
    return {"label": GW, "baseline": base, "text": (
        f"GPU-weighted mean wait {_pair(gw_m, gw_t)}: counted per GPU the jobs wait less under ours"
        + _classes(less, "less", by_m, by_t, shares) + _classes(longer, "longer", by_m, by_t, shares))}


def _classes(names: list[str], verb: str, by_m: dict, by_t: dict, shares: dict[str, float]) -> str:
    """"; waits less for 9-16 GPUs (10.8 min against 16.7 min): size classes holding 90% of the GPU-time"."""
    if not names:
        return ""
    return (f"; waits {verb} for " + ", ".join(
        f"{b} GPU{'s' if b != SMALL else ''} ({_pair(by_m[b]['mean_s'], by_t[b]['mean_s'])})" for b in names)
        + (f": size classes holding {sum(shares.get(b, 0.0) for b in names):.0%} of the GPU-time" if shares else ""))


def _locality(mine: dict, theirs: dict, base: str, ours: str) -> dict | None:
    loc_m, loc_t = mine["optimal_locality_fraction"], theirs["optimal_locality_fraction"]
    if loc_m - loc_t < LOCALITY_MARGIN:
        return None
    return {"label": "locality trade", "baseline": base, "text": (
        f"{base} places {loc_t:.1%} of the multi-pod gangs at optimal locality against {loc_m:.1%} for "
        f"`{ours}`" + (f" (of {mine['multi_pod_gangs']:,} gangs)" if "multi_pod_gangs" in mine else ""))}


def _gpu_h(gpu_s: float) -> str:
    return f"{gpu_s / 3600:,.1f} GPU-h"


def _idle_share(s: dict) -> float | None:
    """Free GPUs' share of the capacity over the time a job waited (None without the fields)."""
    idle, queued, cap = s.get("idle_gpu_s_while_queued"), s.get("queued_s"), s.get("capacity_gpus")
    if idle is None or queued is None or not cap:
        return None
    return idle / (cap * queued) if queued > 0 else 0.0


def _capacity(mine: dict, theirs: dict, base: str, ours: str, tol: float) -> dict | None:
    """Idle capacity (ours left more GPU-hours free while jobs waited) or the same capacity in another order."""
    idle_m, idle_t = mine.get("idle_gpu_s_while_queued"), theirs.get("idle_gpu_s_while_queued")
    if idle_m is None or idle_t is None:
        return None
    shares = [_idle_share(x) for x in (mine, theirs)]
    share = (f" ({shares[0]:.1%} against {shares[1]:.1%} of the capacity while a job waited)"
             if None not in shares else "")
    split_m, split_t = mine.get("idle_gpu_s_by_node_state"), theirs.get("idle_gpu_s_by_node_state")
    if split_m and split_t:  # where they were: which node state holds most of the difference
        parts = [f"{text}{NODE_STATE_NOTE.get(k, '')} {_gpu_h(split_m[k])} against {_gpu_h(split_t[k])}"
                 for k, text in NODE_STATE_TEXT.items()]
        most = max(NODE_STATE_TEXT, key=lambda k: split_m[k] - split_t[k])
        free = f"; by the node they were on: {', '.join(parts)}" + (
            f"; most of the difference {NODE_STATE_TEXT[most]}" if split_m[most] > split_t[most] else "")
    elif "stranded_free_fraction_mean" in mine and "stranded_free_fraction_mean" in theirs:
        free = (f"; on average {mine['stranded_free_fraction_mean']:.0%} against "
                f"{theirs['stranded_free_fraction_mean']:.0%} of the free GPUs were off whole free nodes")
    else:
        free = ""
    head = f"while jobs waited, `{ours}` left {_gpu_h(idle_m)} free against {_gpu_h(idle_t)} under {base}{share}"
    if _worse(idle_m, idle_t, tol):
        return {"label": IDLE, "baseline": base, "text": head + free + ": capacity the waiting jobs could not use "
                "(no room of their shape, or room held for the backfill's head)"}
    return {"label": ORDER, "baseline": base, "text": head + ": the waiting jobs had at least as much of the "
            "cluster under ours; the loss is in which jobs that capacity served first (where each job landed "
            "decides which queued jobs fit next), not in capacity left idle"}


def _loss_line(loss: dict, ours: str, tol: float) -> str:
    """"**mean wait**: kueue-tas by 4.9 %, 12.1 min against 11.5 min", after the replicated figures if any."""
    nominal = (f"{loss['baseline']} by {(loss['nominal_ratio'] - 1) * 100:.1f} %"
               if loss["nominal_ratio"] > 1 + tol else
               f"within {tol:.0%} of {loss['baseline']} or ahead (ratio {_fmt_ratio(loss['nominal_ratio'])})")
    values = f", {_pair(loss['ours'], loss['theirs'])}"
    rep = loss["replicated"]
    if rep is None:
        return f"**{loss['label']}**: {nominal}{values}"
    k = len(rep["ratios"])
    bests = ", ".join(f"{p} {n}" for p, n in Counter(rep["best"]).most_common())
    return (f"**{loss['label']}**: geometric mean over {k} replicas {_fmt_ratio(rep['geomean'])} "
            f"[{_fmt_ratio(rep['min'])}-{_fmt_ratio(rep['max'])}], behind in {k - rep['ahead']} of {k} (best "
            f"baseline per replica: {bests}); nominal run: {nominal}{values}")


def _table(runs: dict[str, dict], baselines: list[str], ours: str) -> str:
    """Measures as rows; ours, then each baseline with ours / it."""
    mine = runs[ours]
    shares = _gpu_shares(mine)
    head = f"| nominal run | `{ours}` |" + "".join(f" {b} | ours / {b} |" for b in baselines)
    lines = [head, "|---|---:|" + "---:|---:|" * len(baselines)]

    def row(name: str, get, fmt, ratio: bool = True) -> None:
        vals = [get(runs[p]) for p in (ours, *baselines)]
        cells = [fmt(vals[0]) if vals[0] is not None else "-"]
        for v in vals[1:]:
            cells.append(fmt(v) if v is not None else "-")
            cells.append(_fmt_ratio(_ratio(vals[0], v)) if ratio and None not in (vals[0], v) else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    buckets = list(dict.fromkeys(b for p in (ours, *baselines) for b in runs[p].get("queue_delay_by_size", {})))
    for b in buckets:
        jobs = mine.get("queue_delay_by_size", {}).get(b, {}).get("jobs")
        what = ", ".join(x for x in ((f"{jobs:,} jobs" if jobs is not None else ""),
                                     (f"{shares[b]:.0%} of the GPU-time" if b in shares else "")) if x)
        row(f"mean wait, {b} GPU{'s' if b != SMALL else ''}" + (f" ({what})" if what else ""),
            lambda s, b=b: s.get("queue_delay_by_size", {}).get(b, {}).get("mean_s"), _secs)
    row("GPU-weighted mean wait", lambda s: s.get("gpu_weighted_mean_queue_delay_s"), _secs)
    row("mean wait", lambda s: s["mean_queue_delay_s"], _secs)
    row("p99 wait", lambda s: s["p99_queue_delay_s"], _secs)
    row("mean JCT", lambda s: s["mean_jct_s"], _secs)
    row("optimal locality" + (f" ({mine['multi_pod_gangs']:,} multi-pod gangs)" if "multi_pod_gangs" in mine else ""),
        lambda s: s["optimal_locality_fraction"], lambda x: f"{x:.1%}", ratio=False)
    row("utilization (arrival window)", lambda s: s.get("utilization_window"), lambda x: f"{x:.1%}", ratio=False)
    if all("idle_gpu_s_while_queued" in runs[p] for p in (ours, *baselines)):
        row("GPUs free while a job waited", lambda s: s["idle_gpu_s_while_queued"], _gpu_h)
    return "\n".join(lines) + "\n"


def _why(item: dict, ours: str) -> str:
    """The one-line classification: "near-idle; locality trade", or per baseline when several beat the cell
    ("replica noise (p99 wait); against kai-binpack (mean wait): near-idle, small-for-large trade; ...")."""
    labels = item["labels"]
    noise = [f"{lb['label']} ({lb['metric']})" for lb in labels if lb["baseline"] is None]
    bases = list(dict.fromkeys(lb["baseline"] for lb in labels if lb["baseline"]))
    if len(bases) == 1:
        return "; ".join(noise + [lb["label"] for lb in labels if lb["baseline"]])
    per = [f"against {b} ({', '.join(loss['label'] for loss in item['losses'] if loss['baseline'] == b)}): "
           + ", ".join(lb["label"] for lb in labels if lb["baseline"] == b) for b in bases]
    return "; ".join(noise + per)


def tradeoff_section(results: list[dict], table: dict[tuple, dict] | None = None, ours: str = OURS,
                     tol: float = VERDICT_TOLERANCE) -> tuple[str, list[dict]]:
    """The section's markdown body (its title is ``TITLE``) and the lost cells as JSON-ready dicts."""
    lost, counts = lost_cells(results, table, ours, tol)
    n = counts["cells"]
    if not n:
        return f"No cell ran `{ours}` next to a baseline.\n", []
    how = ("the geometric mean over the replicas, as in the replicated verdict (the numbers below are the "
           "nominal run's)" if table is not None else "the nominal run")
    md = [f"`{ours}` is within {tol:.0%} of every baseline or ahead on {', '.join(lb for _, lb, _ in VERDICT_METRICS)} "
          f"in {n - len(lost)} of {n} cells (not listed); {len(lost)} lost cell{'s' if len(lost) != 1 else ''} "
          f"below, judged on {how}. Labels and thresholds: docs/simulation.md, \"{TITLE}\"."]
    if counts["nominal_only"]:
        md[0] += (f" Lost on the nominal run but within {tol:.0%} on the geometric mean (not listed): "
                  + "; ".join(_cell_name(c) for c in counts["nominal_only"]) + ".")
    md.append("")
    for item in lost:
        cell, losses = item["cell"], item["losses"]
        md.append(f"### {_cell_name(cell)}\n")
        md += [f"- {_loss_line(loss, ours, tol)}" for loss in losses]
        md += [f"- {loss['label']}: lost on the nominal run ({loss['baseline']} by "
               f"{(loss['nominal_ratio'] - 1) * 100:.1f} %) but within {tol:.0%} on the geometric mean over the "
               f"replicas ({_fmt_ratio(loss['replicated']['geomean'])}): not counted" for loss in item["nominal_only"]]
        md.append("")
        md.append(_table(item["runs"], list(dict.fromkeys(loss["baseline"] for loss in losses)), ours))
        md.append(f"**Why: {_why(item, ours)}.**\n")
        multi = len({lb["baseline"] for lb in item["labels"] if lb["baseline"]}) > 1
        md += [f"- **{lb['label']}**" + (f" (against {lb['baseline']})" if multi and lb["baseline"] else "")
               + f": {lb['text']}." for lb in item["labels"]]
        md.append("")
    doc = [{"cell": dict(zip(CELL_FIELDS, it["cell"])),
            "losses": [{k: v for k, v in loss.items() if k != "replicated"} for loss in it["losses"]],
            "nominal_only": [loss["metric"] for loss in it["nominal_only"]],
            "labels": it["labels"]} for it in lost]
    return "\n".join(md) + "\n", doc


FIELD_TITLE = "Every policy held to the same bar"


def field_table(results: list[dict], ours: str = OURS, tol: float = VERDICT_TOLERANCE) -> list[dict]:
    """The verdict's bar applied to every policy in turn: per policy (``ours`` and every baseline) and
    verdict metric, in how many cells no other of these policies beats it by more than ``tol``, and the
    geometric mean over the cells of its value over the best of the others. Nominal runs only. Other
    gangplace variants (e.g. gangplace-heuristic) are neither judged nor part of the field."""
    from .cmd_bench import geometric_mean
    groups = by_cell(results)
    field = lambda runs: {p: s for p, s in runs.items() if p == ours or not p.startswith("gangplace")}  # noqa: E731
    cells = [field(runs) for runs in groups.values() if len(field(runs)) > 1]
    policies = list(dict.fromkeys(p for runs in cells for p in runs))
    policies.sort(key=lambda p: (p != ours,))
    rows = []
    for p in policies:
        row = {"policy": p}
        for key, _, pick in VERDICT_METRICS:
            ratios = []
            for runs in cells:
                if p not in runs:
                    continue
                best = pick(s[key] for q, s in runs.items() if q != p)
                ratios.append(_ratio(runs[p][key], best))
            row[key] = {"cells": len(ratios), "within": sum(x <= 1 + tol for x in ratios),
                        "geomean": geometric_mean(ratios) if ratios else math.nan}
        rows.append(row)
    return rows


def field_section(results: list[dict], ours: str = OURS, tol: float = VERDICT_TOLERANCE) -> tuple[str, list[dict]]:
    """Markdown for ``field_table`` (title ``FIELD_TITLE``) and its rows, JSON-ready."""
    rows = field_table(results, ours, tol)
    if len(rows) < 2:
        return "Fewer than two policies ran side by side.\n", rows
    md = [f"The verdict's bar (no other policy better by more than {tol:.0%}) applied to each policy in turn, "
          f"against the best of all the others in the same cell (`{ours}` included), on the nominal runs: how "
          f"often any single policy clears it, for scale. Per metric: cells cleared, and the geometric mean over "
          f"the cells of the policy's value over the best other.\n",
          "| policy |" + "".join(f" {label}: cells within {tol:.0%} | geometric mean |" for _, label, _ in VERDICT_METRICS),
          "|---|" + "---:|---:|" * len(VERDICT_METRICS)]
    for row in rows:
        md.append(f"| {row['policy']} |" + "".join(
            f" {row[key]['within']} of {row[key]['cells']} | {_fmt_ratio(row[key]['geomean'])} |" for key, _, _ in VERDICT_METRICS))
    return "\n".join(md) + "\n", rows

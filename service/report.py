"""Report folders for ``gangplace simulate --report`` and ``gangplace bench``.

``write_report(out_dir, results, ...)`` writes:
- ``report.md``: the command, the machine, one table per (trace, cluster, seed) group, the plots;
- ``results.json`` (every run's metrics and spec, plus any extra sections) and ``results.parquet``
  (one row per run, flat columns); ``timeseries.parquet`` (one row per run and cluster sample:
  busy GPUs, queue, stranded GPUs, largest gang per level); ``latency.parquet`` when
  placement-latency rows are given;
- PNG plots (matplotlib, Agg backend): utilization and queue length over time per policy, the
  queueing-delay CDF, the locality histogram (highest level each multi-pod gang crossed), latency
  vs cluster size, and the cluster's racks coloured by occupancy mid-run for each policy.
"""
from __future__ import annotations

import json
import os
import re
import platform
import sys
from pathlib import Path

import numpy as np

from .output import fmt_duration



def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    commit = None
    try:
        import subprocess
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb, "python": sys.version.split()[0],
            "platform": platform.platform(), "git_commit": commit}


def _group_key(summary_spec: dict) -> tuple:
    s = summary_spec
    where = s.get("cluster_file") or f"{s['preset']} {s['gpus']} GPUs fill {s['fill']}"
    where += f", load {s['load']}, {s['scheduler']}"
    return (s["trace"], where, s["seed"])


def _flat(summary: dict, spec: dict) -> dict:
    row = {f"spec_{k}": (json.dumps(v) if isinstance(v, (list, tuple)) else v) for k, v in spec.items()}
    for k, v in summary.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                if isinstance(v2, dict):
                    for k3, v3 in v2.items():
                        row[f"{k}.{k2}.{k3}"] = v3
                else:
                    row[f"{k}.{k2}"] = v2
        else:
            row[k] = v
    return row


def _fmt_s(x: float) -> str:
    return fmt_duration(x, digits=2)


def results_table(summaries: list[dict]) -> str:
    head = ("| policy | done | rejected | mean wait | p50 wait | p99 wait | mean JCT | makespan | util (window) "
            "| util (all) | optimal locality | unknown | mean slowdown | stranded free | latency p50 / p99 |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    rows = []
    for s in summaries:
        rows.append(
            f"| {s['policy']} | {s['jobs_completed']} | {s['jobs_rejected']} | {_fmt_s(s['mean_queue_delay_s'])} "
            f"| {_fmt_s(s['p50_queue_delay_s'])} | {_fmt_s(s['p99_queue_delay_s'])} | {_fmt_s(s['mean_jct_s'])} "
            f"| {_fmt_s(s['makespan_s'])} | {s['utilization_window']:.1%} | {s['utilization']:.1%} "
            f"| {s['optimal_locality_fraction']:.1%} | {s['unknown_locality_fraction']:.1%} "
            f"| {s['slowdown_mean']:.3f} | {s['stranded_free_fraction_mean']:.1%} "
            f"| {s['placement_latency_ms_p50']:.3f} / {s['placement_latency_ms_p99']:.3f} ms |")
    return head + "\n".join(rows) + "\n"


def domains_table(summaries: list[dict]) -> str:
    levels = list(summaries[0]["domains_per_level"])
    head = ("| policy | multi-pod gangs | " + " | ".join(f"mean {lv}s spanned" for lv in levels) + " | "
            + " | ".join(f"largest free {lv} (GPUs)" for lv in levels) + " |\n|---|---:|"
            + "---:|" * (2 * len(levels)) + "\n")
    rows = []
    for s in summaries:
        rows.append(f"| {s['policy']} | {s['multi_pod_gangs']} | "
                    + " | ".join(f"{s['domains_per_level'][lv]:.2f}" for lv in levels) + " | "
                    + " | ".join(f"{s['largest_gang_gpus_mean'][lv]:.0f}" for lv in levels) + " |")
    return head + "\n".join(rows) + "\n"


def delay_by_size_table(summaries: list[dict]) -> str:
    buckets = []
    for s in summaries:
        for b in s["queue_delay_by_size"]:
            if b not in buckets:
                buckets.append(b)
    head = "| policy | " + " | ".join(f"{b} GPUs" for b in buckets) + " |\n|---|" + "---:|" * len(buckets) + "\n"
    rows = []
    for s in summaries:
        cells = [_fmt_s(s["queue_delay_by_size"][b]["mean_s"]) if b in s["queue_delay_by_size"] else "-"
                 for b in buckets]
        rows.append(f"| {s['policy']} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def write_report(out_dir, results: list[dict], *, title: str = "gangplace report", command: str | None = None,
                 intro: str = "", latency_rows: list[dict] | None = None, sections: list[tuple[str, str]] = (),
                 extra_json: dict | None = None, machine: dict | None = None) -> Path:
    """Write the report folder (see the module docstring); returns the path of report.md."""
    import matplotlib
    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine or machine_info()  # pass the one taken when the run started
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault(_group_key(r["spec"]), []).append(r)

    md = [f"# {title}\n"]
    if command:
        md.append(f"Command: `{command}`\n")
    md.append(f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB RAM, "
              f"Python {machine['python']}, {machine['platform']}; gangplace at git `{machine['git_commit']}` when the run started.\n")
    if intro:
        md.append(intro + "\n")
    for name, body in sections:
        if name.startswith("!"):  # sections placed before the simulation results
            md.append(f"## {name[1:]}\n\n{body}\n")
    if latency_rows:
        md.append(f"## Placement latency vs cluster size\n\n{latency_table(latency_rows)}\n"
                  "![latency vs cluster size](latency_vs_size.png)\n")
        plot_latency(latency_rows, out / "latency_vs_size.png")
    for gi, (key, runs) in enumerate(groups.items()):
        trace, where, seed = key
        spec = runs[0]["spec"]
        summaries = [r["summary"] for r in runs]
        md.append(f"## Trace `{trace}` on {where} (seed {seed})\n")
        md.append(f"{summaries[0]['jobs_submitted']} jobs (max {spec['max_jobs']}, window start {spec['start_s']:.0f} s), "
                  f"load {spec['load']} of {summaries[0]['capacity_gpus']} GPUs, scheduler {spec['scheduler']}, "
                  f"slowdown per level crossed (bottom up) {list(spec['slowdown'])}, CP-SAT cap "
                  f"{spec['time_limit_ms']} ms per decision.\n")
        md.append(results_table(summaries))
        md.append("\nLocality and fragmentation (mean over multi-pod gangs / over time):\n\n" + domains_table(summaries))
        md.append("\nMean queueing delay by gang size:\n\n" + delay_by_size_table(summaries))
        tag = f"g{gi}-" + re.sub(r"[^A-Za-z0-9_-]", "_", Path(trace).name.split(".")[0])
        plot_timelines(runs, out / f"{tag}-utilization.png", out / f"{tag}-queue.png")
        plot_delay_cdf(runs, out / f"{tag}-delay-cdf.png")
        plot_locality(runs, out / f"{tag}-locality.png")
        plot_racks(runs, out / f"{tag}-racks.png")
        md.append(f"\n![utilization]({tag}-utilization.png)\n![queue]({tag}-queue.png)\n"
                  f"![queueing delay CDF]({tag}-delay-cdf.png)\n![locality]({tag}-locality.png)\n"
                  f"![racks by occupancy]({tag}-racks.png)\n")
    for name, body in sections:
        if not name.startswith("!"):
            md.append(f"## {name}\n\n{body}\n")
    (out / "report.md").write_text("\n".join(md))
    doc = {"title": title, "command": command, "machine": machine,
           "runs": [dict(r["summary"], spec=r["spec"]) for r in results], "latency": latency_rows or []}
    if extra_json:
        doc.update(extra_json)
    (out / "results.json").write_text(json.dumps(doc, indent=2, default=_json_default))
    _write_parquet(out / "results.parquet", [_flat(r["summary"], r["spec"]) for r in results])
    if latency_rows:
        _write_parquet(out / "latency.parquet", latency_rows)
    _write_parquet(out / "timeseries.parquet", timeseries_rows(results))
    return out / "report.md"


def timeseries_rows(results: list[dict]) -> list[dict]:
    """One row per run and cluster sample: time, busy GPUs and queue length (nearest event before),
    stranded free GPUs, and per level the largest gang (GPUs) one domain could take."""
    rows = []
    for r in results:
        s = r["series"]
        t_ev, busy, queue = np.asarray(s["t"]), np.asarray(s["busy"]), np.asarray(s["queue"])
        levels = [*s["levels"], "node"]
        for k, t in enumerate(np.asarray(s.get("sample_t", [])).tolist()):
            j = max(int(np.searchsorted(t_ev, t, side="right")) - 1, 0) if t_ev.size else 0
            row = {"label": r["summary"]["label"], "policy": r["summary"]["policy"], "t_s": t,
                   "busy_gpus": int(busy[j]) if busy.size else 0, "queued_jobs": int(queue[j]) if queue.size else 0,
                   "stranded_free_gpus": int(s["sample_stranded_gpus"][k])}
            for lv, v in zip(levels, np.asarray(s["sample_largest_gang_gpus"][k]).tolist()):
                row[f"largest_gang_gpus.{lv}"] = int(v)
            rows.append(row)
    return rows


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def _write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    if not rows:
        return
    cols = sorted({k for r in rows for k in r})
    table = pa.table({c: [r.get(c) for r in rows] for c in cols})
    pq.write_table(table, path)


def latency_table(rows: list[dict]) -> str:
    head = "| preset | GPUs | nodes | gang | placer | median ms | p99 ms | proved optimal | samples |\n" \
           "|---|---:|---:|---|---|---:|---:|---:|---:|\n"
    return head + "\n".join(
        f"| {r['preset']} | {r['gpus']} | {r['nodes']} | {r['gang']} | {r['placer']} | {r['median_ms']:.3f} "
        f"| {r['p99_ms']:.3f} | {r['optimal_fraction']:.0%} | {r['samples']} |" for r in rows) + "\n"


# ------------------------------------------------------------------------------ plots
def _fig(w=8, h=4):
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=(w, h), dpi=100)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_timelines(runs: list[dict], util_path: Path, queue_path: Path) -> None:
    fig, ax = _fig()
    fig2, ax2 = _fig()
    for r in runs:
        s = r["series"]
        t = np.asarray(s["t"]) / 3600
        ax.step(t, np.asarray(s["busy"]) / max(s["capacity"], 1), where="post", label=r["summary"]["policy"], lw=0.9)
        ax2.step(t, s["queue"], where="post", label=r["summary"]["policy"], lw=0.9)
    ax.set(xlabel="time (h)", ylabel="GPUs busy (fraction)", title="GPU utilization over time", ylim=(0, 1.05))
    ax2.set(xlabel="time (h)", ylabel="jobs queued", title="queue length over time")
    for a in (ax, ax2):
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    _save(fig, util_path)
    _save(fig2, queue_path)


def plot_delay_cdf(runs: list[dict], path: Path) -> None:
    fig, ax = _fig()
    for r in runs:
        d = np.asarray(r["series"]["delays"], float)
        if d.size:
            ax.plot(np.maximum(d, 1.0), np.linspace(0, 1, d.size), label=r["summary"]["policy"], lw=1)
    ax.set_xscale("log")
    ax.set(xlabel="queueing delay (s, delays below 1 s drawn at 1 s)", ylabel="fraction of jobs",
           title="queueing delay CDF")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_locality(runs: list[dict], path: Path) -> None:
    levels = runs[0]["series"]["levels"]
    n = len(levels)
    # crossed_hist index k = crossed level + 1: 0 one node, 1 several nodes in one lowest domain,
    # k >= 2 several domains of level n - k + 1 (top first indexing)
    labels = ["1 node", f"nodes in 1 {levels[-1]}"] + [f"2+ {levels[n - k + 1]}s" for k in range(2, n + 2)]
    fig, ax = _fig()
    width = 0.8 / max(len(runs), 1)
    for j, r in enumerate(runs):
        h = np.asarray(r["series"]["crossed_hist"], float)
        if h.sum():
            h = h / h.sum()
        ax.bar(np.arange(len(h)) + j * width, h, width, label=r["summary"]["policy"])
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, fontsize=8)
    ax.set(ylabel="share of multi-pod gangs", title="locality: the highest level each multi-pod gang spans")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_racks(runs: list[dict], path: Path) -> None:
    """Each lowest-level domain (rack/SU) a row of node cells, coloured by GPUs in use."""
    import matplotlib.pyplot as plt
    k = len(runs)
    cols = min(3, k)
    rows_ = -(-k // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4.2 * cols, 3.2 * rows_), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, runs):
        s = r["series"]
        cap = np.asarray(s["cap_gpus"], float)
        used = 1 - np.asarray(s["snapshot"], float) / np.maximum(cap, 1)
        dom = np.asarray(s["lowest_domain"])
        n_dom = int(dom.max()) + 1 if dom.size else 0
        width = int(np.bincount(dom).max()) if dom.size else 0
        img = np.full((n_dom, width), np.nan)
        pos = np.zeros(n_dom, int)
        for i, d in enumerate(dom.tolist()):
            img[d, pos[d]] = used[i]
            pos[d] += 1
        ax.imshow(img, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{r['summary']['policy']} @ {s['snapshot_t'] / 3600:.1f} h", fontsize=9)
        ax.axis("on")
        ax.set_xlabel("node", fontsize=7)
        ax.set_ylabel(s["levels"][-1] if s["levels"] else "domain", fontsize=7)
        ax.tick_params(labelsize=6)
        from matplotlib.ticker import MaxNLocator
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("nodes by GPUs in use (yellow = full), one row per " + (runs[0]["series"]["levels"][-1]
                                                                         if runs[0]["series"]["levels"] else "domain"),
                 fontsize=9)
    _save(fig, path)


def plot_latency(rows: list[dict], path: Path) -> None:
    fig, ax = _fig()
    keys = sorted({(r["placer"], r["gang"]) for r in rows})
    for placer, gang in keys:
        pts = sorted((r["gpus"], r["median_ms"]) for r in rows if r["placer"] == placer and r["gang"] == gang)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{placer}, {gang}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(xlabel="cluster GPUs", ylabel="median placement latency (ms)", title="placement latency vs cluster size")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    _save(fig, path)

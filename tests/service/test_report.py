"""service/report.py: the plots a person reads (axes, crop, colour bar, no always-empty bars)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from gangplace.engine.sim.sweep import RunSpec, run_one
from gangplace.service import report


@pytest.fixture(scope="module")
def runs():
    base = RunSpec(trace="philly", start_s=42 * 86400, preset="dgx-h100", gpus=256, max_jobs=300, load=0.9)
    return [run_one(replace(base, policy=p)) for p in ("gangplace-heuristic", "random")]


@pytest.fixture
def figures(monkeypatch):
    saved = {}

    def keep(fig, path, tight=True):
        saved[path.name] = fig
    monkeypatch.setattr(report, "_save", keep)
    return saved


def test_timelines_are_cropped_to_the_arrivals_and_queue_with_labelled_axes(runs, figures, tmp_path):
    report.plot_timelines(runs, tmp_path / "u.png", tmp_path / "q.png")
    ax = figures["u.png"].axes[0]
    assert ax.get_xlabel() == "time since the first arrival (h)" and "share of all GPUs" in ax.get_ylabel()
    lo, hi = ax.get_xlim()
    end_of_run = max(float(r["series"]["t"][-1]) for r in runs) / 3600
    last_arrival = max(r["series"]["last_arrival_s"] for r in runs) / 3600
    assert hi >= last_arrival and hi < end_of_run  # the long tail after the queue drained is cut
    assert figures["q.png"].axes[0].get_ylabel() == "jobs queued"


def test_the_rack_heat_map_has_a_labelled_colour_bar(runs, figures, tmp_path):
    report.plot_racks(runs, tmp_path / "r.png")
    fig = figures["r.png"]
    bars = [a for a in fig.axes if a.get_ylabel() == "share of the node's GPUs in use"]
    assert len(bars) == 1
    heat = [a for a in fig.axes if a.get_xlabel() == "node"]
    assert len(heat) == len(runs)


def test_the_locality_chart_has_an_axis_label_and_no_always_empty_bars(runs, figures, tmp_path):
    report.plot_locality(runs, tmp_path / "l.png")
    ax = figures["l.png"].axes[0]
    assert ax.get_xlabel().startswith("the highest level a gang spans")
    labels = [t.get_text() for t in ax.get_xticklabels()]
    heights = {}
    for bar_container in ax.containers:
        for label, bar in zip(labels, bar_container):
            heights[label] = heights.get(label, 0.0) + bar.get_height()
    assert labels and all(h > 0 for h in heights.values()), heights
    assert all("gangs)" in t.get_text() for t in ax.get_legend().get_texts())  # the denominator per policy

"""``gangplace bench --holdout`` (service/bench_holdout.py): the held-out cells, reported apart and last."""
import argparse
import json
import re

import pytest

import gangplace.service.bench_holdout as holdout
from gangplace.engine.sim.baselines import POLICIES
from gangplace.service.cli import main

TINY = (holdout.HoldoutCell("helios tiny", "helios", gpus=128, load=0.8, start_s=12 * 86400, end_s=21 * 86400,
                            max_jobs=60),
        holdout.HoldoutCell("large-gang tiny", "large-gang:seed=2:jobs=60", gpus=256, load=0.95))
POLICY_ARGS = ["--policies", "gangplace-auto,kueue-tas,random"]


@pytest.fixture
def tiny_cells(monkeypatch):
    monkeypatch.setattr(holdout, "HOLDOUT_CELLS", TINY)


def _args(**kw):
    base = dict(policies=None, reservation_hold="gpus", time_limit_ms=None, slowdown=None)
    return argparse.Namespace(**{**base, **kw})


def test_the_cells_are_the_documented_holdout():
    specs = holdout.holdout_specs(_args())
    assert len(specs) == 5 * len(POLICIES)
    cells = {(s.trace, s.start_s, s.end_s, s.max_jobs, s.gpus, s.load) for s in specs}
    assert cells == {("helios", 12 * 86400, 21 * 86400, None, 2048, 0.8),
                     ("philly", 60 * 86400, 75 * 86400, 8000, 2048, 0.8),
                     ("large-gang:seed=2:jobs=1500", 0.0, None, None, 1024, 0.95),
                     ("large-gang:seed=4:jobs=1500", 0.0, None, None, 1024, 0.95),
                     ("large-gang:seed=6:jobs=1500", 0.0, None, None, 1024, 0.95)}
    assert {(s.preset, s.fill, s.seed, s.scheduler, s.time_limit_ms) for s in specs} == {
        ("dgx-h100", 0.0, 1, "easy", 50.0)}
    assert {s.policy for s in specs} == set(POLICIES)
    limited = holdout.holdout_specs(_args(policies="random", time_limit_ms=20.0))
    assert {(s.policy, s.time_limit_ms) for s in limited} == {("random", 20.0)}


def _sections(md: str) -> list[str]:
    return re.findall(r"^## (.+)$", md, flags=re.M)


def test_holdout_alone_writes_its_section_verdict_and_tables_and_keeps_its_runs_apart(tmp_path, capsys, tiny_cells):
    out = tmp_path / "b"
    assert main(["bench", "--holdout", "--skip", "latency,quality,service", "--out", str(out), *POLICY_ARGS]) == 0
    md = (out / "report.md").read_text()
    assert _sections(md) == ["Holdout (not tuned on)"]
    part = md.split("## Holdout (not tuned on)")[1]
    assert "Cells: helios tiny; large-gang tiny." in part and "6 runs in" in part
    assert "**mean wait**: `gangplace-auto` wins or is within 1% of every baseline in" in part and "of 2 cells" in part
    for title in ("Mean wait:", "p99 wait:", "Mean JCT:", "Optimal locality:"):
        assert title in part
    assert "| cell | gangplace-auto | kueue-tas | random | gangplace-auto / best baseline |" in part
    assert "| large-gang tiny |" in part and "| helios tiny |" in part
    doc = json.loads((out / "results.json").read_text())
    assert doc["runs"] == []  # the main grid's runs only
    runs = doc["holdout"]["runs"]
    assert len(runs) == 6 and {r["spec"]["trace"] for r in runs} == {"helios", "large-gang:seed=2:jobs=60"}
    lg = [r for r in runs if r["spec"]["trace"].startswith("large-gang")]
    assert all(r["jobs_submitted"] == 60 for r in lg)
    assert max(r["mean_queue_delay_s"] for r in lg) > 0  # a loaded cell, not an empty one
    assert "**Lost cells: the trade-off and why** (the holdout cells" in part
    assert "Head to head on the holdout cells alone" in part and "over the 2 cells" in part
    assert set(doc["holdout"]["head_to_head"]) == {"kueue-tas", "random"}


def test_the_holdout_explains_exactly_the_cells_its_own_verdict_lost():
    # 120 jobs at load 0.95 on 128 GPUs: gangplace-auto loses the Helios cell here (deterministic)
    cells = (holdout.HoldoutCell("helios small", "helios", gpus=128, load=0.95, start_s=12 * 86400, end_s=21 * 86400,
                                 max_jobs=120),
             holdout.HoldoutCell("large-gang small", "large-gang:seed=2:jobs=120", gpus=256, load=0.95))
    extra = {}
    args = _args(policies="gangplace-auto,kueue-tas,random,most-allocated,kai-binpack", workers=1, ray=None)
    _, md = holdout.holdout_section(args, extra, cells)
    lost = extra["holdout"]["lost_cells"]
    verdict = md.split("Verdict on the holdout cells alone")[1].split("Mean wait:")[0]
    named = {c for line in verdict.splitlines() if "Beaten in:" in line for c in ("helios", "large-gang")
             if f"`{c}" in line}
    assert named  # something to explain, so the check below is not vacuous
    assert {d["cell"]["trace"].split(":")[0] for d in lost} == named
    tail = md.split("**Lost cells: the trade-off and why** (the holdout cells")[1]
    assert tail.count("**Why: ") == len(lost) and "### `helios` dgx-h100 128 GPUs" in tail


def test_with_the_quality_grid_the_holdout_comes_last_and_stays_out_of_the_verdict(tmp_path, capsys, tiny_cells):
    out = tmp_path / "b"
    assert main(["bench", "--holdout", "--skip", "latency,service", "--traces", "helios", "--sim-gpus", "256",
                 "--max-jobs", "30", "--out", str(out), *POLICY_ARGS]) == 0
    md = (out / "report.md").read_text()
    names = _sections(md)
    assert names[0] == "Verdict" and names[-1] == "Holdout (not tuned on)"
    verdict = md.split("## Verdict")[1].split("\n## ")[0]
    assert "of 1 cells" in verdict and "of 2 cells" not in verdict
    doc = json.loads((out / "results.json").read_text())
    assert {r["spec"]["trace"] for r in doc["runs"]} == {"helios"} and len(doc["runs"]) == 3
    assert {r["spec"]["max_jobs"] for r in doc["runs"]} == {30}
    assert len(doc["holdout"]["runs"]) == 6


def test_full_includes_the_holdout_unless_skipped(tmp_path, capsys, tiny_cells):
    common = ["bench", "--full", "--skip", "latency,quality,service", *POLICY_ARGS]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert _sections((tmp_path / "a" / "report.md").read_text()) == ["Holdout (not tuned on)"]
    assert main([*common[:3], "latency,quality,service,holdout", *POLICY_ARGS, "--out", str(tmp_path / "b")]) == 0
    assert "Holdout" not in (tmp_path / "b" / "report.md").read_text()
    assert "holdout" not in json.loads((tmp_path / "b" / "results.json").read_text())


def test_the_quick_profile_leaves_the_holdout_out(tmp_path, capsys, tiny_cells):
    assert main(["bench", "--skip", "latency,service", "--traces", "helios", "--sim-gpus", "256", "--max-jobs", "20",
                 "--out", str(tmp_path), "--policies", "gangplace-auto,random"]) == 0
    assert "Holdout" not in (tmp_path / "report.md").read_text()


def test_the_metric_table_names_the_best_baseline_and_the_ratio():
    def run(policy, wait):
        return {"spec": {"trace": "t", "start_s": 0.0, "end_s": None}, "summary": {"policy": policy,
                                                                                  "mean_queue_delay_s": wait}}
    results = [run("gangplace-auto", 120.0), run("gangplace-heuristic", 60.0), run("kueue-tas", 100.0),
               run("random", 150.0)]
    table = holdout.metric_table(results, {("t", 0.0, None): "cell t"}, "mean_queue_delay_s", min)
    assert "| cell t | 2.0 min | 1.0 min | 1.7 min | 2.5 min | 1.200 (kueue-tas) |" in table

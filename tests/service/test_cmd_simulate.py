"""``gangplace simulate``: the JSON contract, grids, reports and input errors."""
import json

import pytest

from gangplace.engine.sim.baselines import POLICIES
from gangplace.service.cli import main

SMALL = ["simulate", "--trace", "helios", "--synthetic", "dgx-h100", "--gpus", "256", "--max-jobs", "120",
         "--time-limit-ms", "20"]
REQUIRED = ("mean_queue_delay_s", "p99_queue_delay_s", "mean_jct_s", "utilization", "optimal_locality_fraction",
            "jobs_completed", "jobs_rejected")


def run_json(capsys, *extra):
    assert main([*SMALL, *extra, "--output", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_without_policies_every_policy_runs_and_reports_the_required_metrics(capsys):
    doc = run_json(capsys)
    assert set(doc["policies"]) == set(POLICIES)
    assert [p for p in doc["policies"] if p.startswith("gangplace")] == ["gangplace-heuristic", "gangplace-auto"]
    for name, m in doc["policies"].items():
        for key in REQUIRED:
            assert key in m, (name, key)
        assert 0.0 <= m["utilization"] <= 1.0
        assert 0.0 <= m["optimal_locality_fraction"] <= 1.0
        assert m["jobs_completed"] + m["jobs_rejected"] == 120


def test_a_grid_reports_every_run_and_averages_per_policy(capsys):
    doc = run_json(capsys, "--policies", "random,kueue-tas", "--seeds", "1,2", "--gpus", "256,512")
    assert len(doc["runs"]) == 8
    assert set(doc["policies"]) == {"random", "kueue-tas"}
    assert doc["policies"]["random"]["runs"] == 4


def test_a_cluster_file_and_a_report_folder(tmp_path, capsys):
    from gangplace.engine.model.synthetic import generate
    generate("gb200-nvl72", gpus=288, fill=0.1, seed=3).save(tmp_path / "c.yaml")
    out = tmp_path / "rep"
    code = main(["simulate", "--trace", "philly", "--start", "42d", "--cluster", str(tmp_path / "c.yaml"),
                 "--max-jobs", "100", "--policies", "gangplace-heuristic,k8s-default", "--report", str(out),
                 "--output", "json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["policies"]["k8s-default"]["capacity_gpus"] < 288  # background fill is not the trace's
    for name in ("report.md", "results.json", "results.parquet"):
        assert (out / name).is_file()
    assert len(list(out.glob("*.png"))) == 5
    assert "k8s-default" in (out / "report.md").read_text()


def test_the_table_output_names_every_policy(capsys):
    assert main([*SMALL, "--policies", "most-allocated,random"]) == 0
    out = capsys.readouterr().out
    assert "most-allocated" in out and "random" in out


@pytest.mark.parametrize("args,field", [
    (["--policies", "gangplace,foo"], "policies"),
    (["--trace", "/no/such/file.csv"], "trace"),
    (["--max-jobs", "-1"], "--max-jobs"),
    (["--start", "yesterday"], "--start"),
    (["--slowdown", "fast"], "slowdown"),
    (["--synthetic", "tpu-v5"], "--synthetic"),
    (["--trace", "helios,large-gang:seed=x"], "trace"),
    (["--trace", "large-gang:jobs=1"], "trace"),
], ids=["an unknown policy", "a missing trace file", "a negative job limit", "a bad window start",
        "a bad slowdown table", "an unknown preset", "a bad large-gang seed", "too few large-gang jobs"])
def test_bad_input_exits_2_with_one_line_naming_the_field(capsys, args, field):
    assert main([*SMALL, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and field in err


def test_the_generated_large_gang_trace_runs_by_name_with_its_own_seed(capsys):
    doc = run_json(capsys, "--trace", "large-gang:seed=2:jobs=90,large-gang:jobs=90", "--max-jobs", "0",
                   "--policies", "kueue-tas")
    runs = {r["spec"]["trace"]: r for r in doc["runs"]}
    assert set(runs) == {"large-gang:seed=2:jobs=90", "large-gang:jobs=90"}
    assert all(r["jobs_submitted"] == 90 and r["spec"]["seed"] == 1 for r in runs.values())
    assert runs["large-gang:seed=2:jobs=90"]["mean_jct_s"] != runs["large-gang:jobs=90"]["mean_jct_s"]


def test_a_malformed_trace_file_names_its_line(tmp_path, capsys):
    p = tmp_path / "bad.csv"
    p.write_text("job_id,submit_s,num_gpus,duration_s\na,0,1,10\nb,5,two,10\n")
    assert main(["simulate", "--trace", str(p), "--gpus", "256"]) == 2
    assert "bad.csv line 3: num_gpus" in capsys.readouterr().err


def test_a_trace_file_whose_jobs_are_all_too_big_is_reported_not_crashed(tmp_path, capsys):
    p = tmp_path / "big jobs.csv"
    p.write_text("job_id,submit_s,num_gpus,duration_s\na,0,5000,10\nb,1,4000,10\n")
    out = tmp_path / "rep"
    assert main(["simulate", "--trace", str(p), "--gpus", "256", "--policies", "kueue-tas,random",
                 "--report", str(out), "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {k: (v["jobs_completed"], v["jobs_rejected"]) for k, v in doc["policies"].items()} == \
        {"kueue-tas": (0, 2), "random": (0, 2)}
    assert (out / "g0-big_jobs-racks.png").is_file()


def test_simulate_help_lists_every_policy_name(capsys):
    from gangplace.engine.sim.baselines import POLICIES
    from gangplace.service.cli import main
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in POLICIES), text


def test_a_sparse_window_with_few_gangs_is_flagged_on_stderr_and_in_the_json(capsys):
    # Philly's first 300 jobs on 1,024 GPUs: 4 multi-pod gangs, the cluster mostly idle at --load 0.8
    assert main(["simulate", "--trace", "philly", "--gpus", "1024", "--max-jobs", "300", "--policies",
                 "gangplace-heuristic,kueue-tas", "--output", "json"]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert len(doc["warnings"]) == 2  # one window: each warning once, not once per policy
    few, sparse = doc["warnings"]
    assert "only 4 multi-pod gangs among 300 jobs" in few and "--start 42d" in few
    assert "of the GPUs busy on average while --load asks for 80%" in sparse
    assert out.err.count("gangplace: warning: ") == 2


def test_a_dense_window_is_not_flagged(capsys):
    doc = run_json(capsys, "--policies", "kueue-tas", "--max-jobs", "400", "--gpus", "64")
    assert doc["warnings"] == [] or all("multi-pod gangs" in w for w in doc["warnings"])
    assert not any("busy on average" in w for w in doc["warnings"])


def test_the_table_puts_window_utilization_first_and_a_denominator_next_to_every_share(capsys):
    assert main([*SMALL, "--policies", "kueue-tas"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "util (window)" in text and text.index("util (window)") < text.index("util (makespan)")
    assert "of 120" in text  # jobs done of submitted
    assert " gangs" in text and "% of " in text  # optimal locality: "97.1% of 1,240 gangs"


def test_the_report_uses_human_units_warnings_and_singular_gpu(tmp_path, capsys):
    assert main(["simulate", "--trace", "philly", "--start", "42d", "--gpus", "256", "--max-jobs", "200",
                 "--policies", "kueue-tas", "--report", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "window from 42.0 d" in md and "3628800" not in md
    assert "| 1 GPU |" in md and "1 GPUs" not in md
    assert "of 200" in md and " gangs |" in md

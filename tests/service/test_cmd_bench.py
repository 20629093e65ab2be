"""``gangplace bench``: a tiny configuration writes the whole report folder."""
import json

from gangplace.service.cli import main


def test_a_tiny_bench_writes_tables_plots_and_machine_readable_results(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--quick", "--out", str(out), "--sizes", "2048", "--sim-gpus", "256", "--max-jobs", "80",
                 "--policies", "gangplace-heuristic,kueue-tas,k8s-default", "--traces", "helios", "--skip", "service"])
    assert code == 0
    md = (out / "report.md").read_text()
    assert "## Placement latency vs cluster size" in md and "## Which policy wins where" in md
    assert "kueue-tas" in md and "Machine:" in md
    doc = json.loads((out / "results.json").read_text())
    assert {r["policy"] for r in doc["runs"]} == {"gangplace-heuristic", "kueue-tas", "k8s-default"}
    assert {r["placer"] for r in doc["latency"]} == {"heuristic", "auto"}
    for name in ("results.parquet", "latency.parquet", "timeseries.parquet", "latency_vs_size.png", "g0-helios-racks.png",
                 "g0-helios-delay-cdf.png", "g0-helios-utilization.png", "g0-helios-queue.png",
                 "g0-helios-locality.png"):
        assert (out / name).is_file(), name


def test_an_unknown_section_to_skip_is_rejected(tmp_path, capsys):
    assert main(["bench", "--out", str(tmp_path), "--skip", "everything"]) == 2
    assert "--skip" in capsys.readouterr().err


def test_the_quality_grid_crosses_loads_schedulers_backgrounds_and_presets(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--quick", "--out", str(out), "--sim-gpus", "256", "--max-jobs", "20",
                 "--policies", "gangplace-auto,kueue-tas", "--traces", "helios", "--skip", "latency,service",
                 "--loads", "0.7,0.95", "--schedulers", "fifo,easy", "--fills", "0,0.3",
                 "--presets", "dgx-h100,gb200-nvl72"])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    cells = {(s["preset"], s["fill"], s["load"], s["scheduler"]) for s in (run["spec"] for run in doc["runs"])}
    assert len(cells) == 16 and len(doc["runs"]) == 32
    md = (out / "report.md").read_text()
    assert "## Verdict" in md and "**mean wait**: `gangplace-auto` wins or is within 1% of every baseline in" in md
    assert "of 16 cells" in md


def test_the_verdict_names_the_cells_where_a_baseline_wins_by_more_than_one_percent():
    from gangplace.service.cmd_bench import verdict

    def run(policy, wait, p99=100.0, jct=1000.0, load=0.7):
        spec = {"trace": "helios", "preset": "dgx-h100", "gpus": 2048, "fill": 0.0, "load": load,
                "scheduler": "easy", "seed": 1}
        return {"spec": spec, "summary": {"policy": policy, "mean_queue_delay_s": wait, "p99_queue_delay_s": p99,
                                          "mean_jct_s": jct, "optimal_locality_fraction": 1.0}}
    text = verdict([run("gangplace-auto", 100.5), run("kueue-tas", 100.0),  # within 1 %: not beaten
                    run("gangplace-auto", 120.0, load=0.95), run("kueue-tas", 100.0, load=0.95)])
    assert "in 1 of 2 cells. Beaten in: `helios` dgx-h100 2048 GPUs, fill 0.0, load 0.95, easy, seed 1: kueue-tas by 20.0 %" in text
    assert "**p99 wait**: `gangplace-auto` wins or is within 1% of every baseline in 2 of 2 cells." in text

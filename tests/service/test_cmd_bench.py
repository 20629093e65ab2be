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

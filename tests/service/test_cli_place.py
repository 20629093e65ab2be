"""``gangplace place`` and ``gangplace gen-cluster`` (service/cmd_place.py, service/cmd_gen.py).

In-process through ``cli.main([...])``, plus one real subprocess of the installed entry point.
Exit codes: 0 placed, 3 does not fit (JSON still printed), 2 invalid input (one line on stderr).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gangplace.engine import Cluster
from gangplace.service.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def cluster_file(tmp_path):
    return _write(tmp_path / "c.yaml", {"levels": ["block", "rack"], "nodes": [
        {"name": f"n{i}", "topology": {"block": "b0", "rack": f"r{i // 2}"}, "gpus": 8} for i in range(4)]})


def test_place_json_prints_the_documented_object_and_exits_0(tmp_path, cluster_file, capsys):
    gang = _write(tmp_path / "g.yaml", {"name": "train", "count": 2, "gpus": 8, "topology": {"required": "rack"}})
    code = main(["place", "--cluster", str(cluster_file), "--gang", str(gang), "--output", "json",
                 "--placer", "heuristic"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(out) == {"gang", "placed", "pods", "domains_used", "stranded_gpus", "placer", "optimal", "gap",
                        "elapsed_ms", "solver_import_ms", "reason", "explanation"}
    assert out["placed"] and out["gang"] == "train" and out["placer"] == "heuristic"
    assert [p["node"] for p in out["pods"]] == ["n0", "n1"]
    assert out["domains_used"] == {"block": 1, "rack": 1, "node": 2}


def test_place_not_fitting_exits_3_with_the_reason_in_the_json(tmp_path, cluster_file, capsys):
    gang = _write(tmp_path / "g.yaml", {"name": "big", "count": 3, "gpus": 8, "topology": {"required": "rack"}})
    code = main(["place", "--cluster", str(cluster_file), "--gang", str(gang), "--output", "json",
                 "--placer", "heuristic"])
    out = json.loads(capsys.readouterr().out)
    assert code == 3
    assert not out["placed"] and out["pods"] == []
    assert out["reason"].startswith("gang 'big' needs 3 pods (24 GPUs) in one rack")


@pytest.mark.parametrize("gang, field", [
    ({"name": "x", "count": 0}, "gang.count"),
    ({"name": "x", "count": 2, "topology": {"required": "row"}}, "topology.required"),
    ({"count": 2}, "gang.name"),
])
def test_invalid_gang_exits_2_with_one_line_naming_the_field(tmp_path, cluster_file, capsys, gang, field):
    g = _write(tmp_path / "g.yaml", gang)
    code = main(["place", "--cluster", str(cluster_file), "--gang", str(g), "--output", "json"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and field in err and err.startswith("gangplace: error: ")


def test_invalid_cluster_and_missing_files_exit_2(tmp_path, capsys):
    bad = _write(tmp_path / "c.yaml", {"levels": ["rack"], "nodes": [{"name": "a", "gpus": -1}]})
    gang = _write(tmp_path / "g.yaml", {"name": "x", "count": 1})
    assert main(["place", "--cluster", str(bad), "--gang", str(gang)]) == 2
    assert "nodes[0] (a).gpus" in capsys.readouterr().err
    assert main(["place", "--cluster", str(tmp_path / "none.yaml"), "--gang", str(gang)]) == 2
    assert main(["place", "--cluster", str(bad)]) == 2  # no --gang
    assert "--gang" in capsys.readouterr().err


def test_place_table_output_lists_every_pod(capsys):
    code = main(["place", "--cluster", str(EXAMPLES / "cluster.yaml"), "--gang", str(EXAMPLES / "gang.yaml"),
                 "--output", "table", "--placer", "heuristic"])
    out = capsys.readouterr().out
    assert code == 0
    assert "placed" in out and out.count("worker") >= 6 and "leader" in out


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".parquet"])
def test_gen_cluster_writes_a_loadable_file_rounded_to_whole_nodes(tmp_path, capsys, suffix):
    out = tmp_path / f"c{suffix}"
    assert main(["gen-cluster", "--preset", "gb200-nvl72", "--gpus", "70", "--fill", "0.5", "--seed", "3",
                 "-o", str(out)]) == 0
    c = Cluster.load(out)
    assert c.n_nodes == 18 and c.total_gpus == 72  # 70 GPUs round up to 18 whole 4-GPU nodes
    out_text = capsys.readouterr().out
    assert "18 nodes, 72 GPUs" in out_text
    assert len(out_text.strip().splitlines()) == 1  # one line, however long the path (not wrapped at 80 columns)
    assert 0.45 <= 1 - c.free_gpu_count / c.total_gpus <= 0.5


def test_gen_cluster_rejects_bad_arguments(tmp_path, capsys):
    assert main(["gen-cluster", "--gpus", "4", "-o", str(tmp_path / "c.yaml")]) == 2
    assert "gpus" in capsys.readouterr().err
    assert main(["gen-cluster", "--fill", "2", "-o", str(tmp_path / "c.yaml")]) == 2
    assert main(["gen-cluster", "--gpus", "64", "-o", str(tmp_path / "c.txt")]) == 2


def test_gen_trace_writes_the_large_gang_workload_that_simulate_generates_by_name(tmp_path, capsys):
    from gangplace.engine.sim.traces import load_trace
    out = tmp_path / "lg.csv"
    assert main(["gen-trace", "--seed", "4", "--jobs", "300", "-o", str(out)]) == 0
    assert "300 jobs" in capsys.readouterr().out
    written, named = load_trace(out), load_trace("large-gang:seed=4:jobs=300")
    for col in ("submit_s", "num_gpus", "duration_s"):
        assert getattr(written, col).tolist() == getattr(named, col).tolist()


def test_gen_trace_to_standard_output_writes_only_the_csv_there(tmp_path, capsys, monkeypatch):
    from gangplace.engine.sim.traces import load_trace
    monkeypatch.chdir(tmp_path)
    assert main(["gen-trace", "--seed", "4", "--jobs", "300", "-o", "-"]) == 0
    out, err = capsys.readouterr()
    assert not (tmp_path / "-").exists()  # "-" is standard output, not a file of that name
    assert out.startswith("job_id,submit_s,num_gpus,duration_s\n") and "wrote" not in out
    assert "wrote standard output: 300 jobs" in err
    (tmp_path / "piped.csv").write_text(out)
    assert load_trace(tmp_path / "piped.csv").num_gpus.tolist() == load_trace("large-gang:seed=4:jobs=300").num_gpus.tolist()


def test_gen_trace_rejects_bad_arguments(tmp_path, capsys):
    assert main(["gen-trace", "--jobs", "1", "-o", str(tmp_path / "t.csv")]) == 2
    assert "jobs must be in" in capsys.readouterr().err
    assert main(["gen-trace", "--seed", "-3", "-o", str(tmp_path / "t.csv")]) == 2
    assert "seed must be in" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()


def test_installed_entry_point_runs_place_in_a_subprocess(tmp_path):
    exe = Path(sys.executable).parent / "gangplace"
    if not exe.exists():
        exe = ROOT / ".venv" / "bin" / "gangplace"
    gen = subprocess.run([str(exe), "gen-cluster", "--preset", "dgx-h100", "--gpus", "512", "--fill", "0.5",
                          "-o", str(tmp_path / "c.yaml")], capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr
    _write(tmp_path / "g.yaml", {"name": "sub", "count": 4, "gpus": 8, "topology": {"required": "block"}})
    run = subprocess.run([str(exe), "place", "--cluster", str(tmp_path / "c.yaml"), "--gang",
                          str(tmp_path / "g.yaml"), "--output", "json", "--placer", "heuristic"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["placed"] and len(out["pods"]) == 4 and out["domains_used"]["block"] == 1


def test_place_objective_selects_the_order_of_best_fit(tmp_path, capsys):
    # block b0: one empty node (8 free); block b1: a node with 1 GPU free and an empty one (9 free).
    # A 1-GPU pod: bottom-up (default) takes the node with 1 free, top-down the emptier node of b0.
    cluster = _write(tmp_path / "c.yaml", {"levels": ["block", "rack"], "nodes": [
        {"name": "a0", "topology": {"block": "b0", "rack": "r0"}, "gpus": 8},
        {"name": "a1", "topology": {"block": "b0", "rack": "r0"}, "gpus": 8, "gpus_used": 8},
        {"name": "b0", "topology": {"block": "b1", "rack": "r1"}, "gpus": 8, "gpus_used": 7},
        {"name": "b1", "topology": {"block": "b1", "rack": "r1"}, "gpus": 8}]})
    gang = _write(tmp_path / "g.yaml", {"name": "one", "count": 1, "gpus": 1})
    nodes = {}
    for objective in ("bottomup", "topdown"):
        assert main(["place", "--cluster", str(cluster), "--gang", str(gang), "--output", "json",
                     "--placer", "heuristic", "--objective", objective]) == 0
        nodes[objective] = [p["node"] for p in json.loads(capsys.readouterr().out)["pods"]]
    assert nodes == {"bottomup": ["b0"], "topdown": ["a0"]}


def test_place_objective_podfit_measures_racks_in_the_gangs_pods(tmp_path, capsys):
    # one 4-GPU pod; x0 and y0 both leave 3 free. Rack r1 (x0: 7 free, x1: 8) has 15 free GPUs and two
    # nodes that could take the pod (room 2); rack r2 (y0: 7 free, four nodes with 3) has 19 free GPUs
    # but room 1. podfit (the default) takes r2, the rack with less room for the pod; bottomup r1.
    nodes = [{"name": "x0", "topology": {"block": "b0", "rack": "r1"}, "gpus": 8, "gpus_used": 1},
             {"name": "x1", "topology": {"block": "b0", "rack": "r1"}, "gpus": 8},
             {"name": "y0", "topology": {"block": "b0", "rack": "r2"}, "gpus": 8, "gpus_used": 1}]
    nodes += [{"name": f"y{i}", "topology": {"block": "b0", "rack": "r2"}, "gpus": 8, "gpus_used": 5} for i in range(1, 5)]
    cluster = _write(tmp_path / "c.yaml", {"levels": ["block", "rack"], "nodes": nodes})
    gang = _write(tmp_path / "g.yaml", {"name": "one", "count": 1, "gpus": 4})
    chosen = {}
    for objective in (None, "podfit", "bottomup"):
        assert main(["place", "--cluster", str(cluster), "--gang", str(gang), "--output", "json",
                     *(["--objective", objective] if objective else [])]) == 0
        chosen[objective] = [p["node"] for p in json.loads(capsys.readouterr().out)["pods"]]
    assert chosen == {None: ["y0"], "podfit": ["y0"], "bottomup": ["x0"]}


def test_a_fresh_place_process_loads_neither_the_solver_nor_unused_subcommands(tmp_path):
    """Cold start: `gangplace place` answered by the tree DP imports no OR-Tools, no gRPC client,
    no numpy.ma (np.unique's lazy import, 0.1-0.3 s) and no importlib.metadata; it reports no
    solver import."""
    from gangplace.engine.model.synthetic import generate
    cluster = tmp_path / "c.arrow"
    generate("gb200-nvl72", gpus=2048, fill=0.6, seed=1).save(cluster)
    gang = _write(tmp_path / "g.yaml", {"name": "g", "count": 160, "gpus": 1})
    code = ("import json, sys\n"
            "from gangplace.service.cli import main\n"
            f"rc = main(['place', '--cluster', {str(cluster)!r}, '--gang', {str(gang)!r}, '--output', 'json'])\n"
            "mods = [m for m in ('ortools', 'grpc', 'numpy.ma', 'importlib.metadata') if m in sys.modules]\n"
            "print(json.dumps({'rc': rc, 'mods': mods}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    placement, status = out.strip().rsplit("\n", 1)
    placement, status = json.loads(placement), json.loads(status)
    assert status == {"rc": 0, "mods": []}
    assert placement["placer"] == "dp" and placement["optimal"] and placement["solver_import_ms"] == 0.0

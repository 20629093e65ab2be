"""engine/sim/synthetic_trace.py: the large-gang workload, its trace names and its CSV export."""
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gangplace.engine.model.errors import InvalidFile, InvalidRequest
from gangplace.engine.sim.synthetic_trace import (big_gang_share, is_synthetic, large_gang, parse_name, trace_name,
                                                  write_csv)
from gangplace.engine.sim.traces import check_trace, load_trace

ROOT = Path(__file__).resolve().parents[3]

# sha256 of the CSVs that benchmarks/fleet_rootcause.py gen-large wrote with its own generator (commit
# d0b03ef, before the generator moved into the engine): the holdout workloads of docs/simulation.md
OLD_SCRIPT_SHA256 = {
    (1, 1500): "e82289cb6a210f499bbeed0eeb3811fa4938bb7f889eb242722973ebfde9d2b8",
    (2, 1500): "92b926824f9b64fa4354a9535123527cb87a9871b871109b67d129810c43601e",
    (4, 1500): "4488921564d4355845cd47aa545fa6eb4c21fc7557ec3e5060ef8ff73461e9f6",
    (6, 1500): "928d9a53902bebf90ddefff62d803ff98bb494d88776bfd4fd5b488ac79c4f1d",
    (3, 200): "67e70d52def3a01da1a3b9a7e343f3088adee2eae20c5af9278507276fe71c55",
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("seed,jobs", sorted(OLD_SCRIPT_SHA256))
def test_the_csv_is_byte_for_byte_the_one_the_old_research_script_wrote(tmp_path, seed, jobs):
    path = write_csv(large_gang(seed, jobs), tmp_path / "t.csv")
    assert _sha(path) == OLD_SCRIPT_SHA256[(seed, jobs)]


def test_fleet_rootcause_gen_large_writes_the_engines_jobs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("fleet_rootcause", ROOT / "benchmarks" / "fleet_rootcause.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["gen-large", "--seed", "4", "--jobs", "300", "--out", str(tmp_path / "old.csv")]) == 0
    assert "share>=32: 0.5" in capsys.readouterr().out
    assert _sha(tmp_path / "old.csv") == _sha(write_csv(large_gang(4, 300), tmp_path / "new.csv"))


def test_the_same_seed_gives_the_same_jobs_and_another_seed_other_jobs():
    a, b, c = large_gang(5, 400), large_gang(5, 400), large_gang(7, 400)
    for col in ("submit_s", "num_gpus", "duration_s"):
        assert np.array_equal(getattr(a, col), getattr(b, col))
    assert not np.array_equal(a.num_gpus, c.num_gpus)
    assert a.job_id.tolist() == [f"j{i}" for i in range(400)]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_half_of_the_gpu_time_is_in_gangs_of_32_gpus_or_more(seed):
    tr = large_gang(seed)
    assert len(tr) == 1500
    assert abs(big_gang_share(tr) - 0.5) < 1e-3  # half, to within the rounding to whole seconds
    assert big_gang_share(tr, 9) > 0.6  # and most of it in gangs of more than one 8-GPU node
    assert set(np.unique(tr.num_gpus)) <= {1, 2, 4, 8, 16, 32, 64, 128, 256}
    assert tr.submit_s[0] == 0 and (np.diff(tr.submit_s) >= 0).all()
    assert tr.duration_s.min() >= 60 and tr.duration_s[tr.num_gpus < 32].max() <= 3 * 86400


@pytest.mark.parametrize("name,expected", [
    ("large-gang", {"seed": 1, "jobs": 1500}),
    ("large-gang:seed=2", {"seed": 2, "jobs": 1500}),
    ("large-gang:jobs=300:seed=9", {"seed": 9, "jobs": 300}),
    ("large-gang: seed = 0 ", {"seed": 0, "jobs": 1500}),
])
def test_good_trace_names(name, expected):
    assert is_synthetic(name)
    assert parse_name(name) == expected


@pytest.mark.parametrize("name,message", [
    ("large-gang:seed=x", "seed must be an integer"),
    ("large-gang:seed=-1", "seed must be in"),
    ("large-gang:jobs=1", "jobs must be in"),
    ("large-gang:size=3", "expected seed=S or jobs=N"),
    ("large-gang:2", "expected seed=S or jobs=N"),
    ("large-gang:seed=1:seed=2", "seed given twice"),
    ("large-gang:", "expected seed=S or jobs=N"),
])
def test_bad_trace_names_are_refused_naming_the_problem(name, message):
    with pytest.raises(InvalidRequest, match=message) as e:
        check_trace(name)
    assert e.value.field == "trace"


def test_other_names_are_not_synthetic_and_a_missing_file_names_the_generated_trace():
    assert not is_synthetic("large-gangs") and not is_synthetic("helios") and not is_synthetic("x/large-gang")
    with pytest.raises(InvalidFile, match=r"large-gang\[:seed=S\]"):
        check_trace("large-gangs")


def test_load_trace_generates_by_name_and_keeps_the_name():
    tr = load_trace("large-gang:seed=2:jobs=200")
    assert tr.name == "large-gang:seed=2:jobs=200" and len(tr) == 200
    assert np.array_equal(tr.duration_s, large_gang(2, 200).duration_s)
    assert trace_name(2, 200) == "large-gang:seed=2:jobs=200"


def test_too_few_jobs_to_draw_a_large_gang_is_an_error_not_a_division_by_zero():
    with pytest.raises(InvalidRequest, match="drew no gangs of >= 32 GPUs"):
        large_gang(0, 2)
    with pytest.raises(InvalidRequest, match="drew only gangs of >= 32 GPUs"):
        large_gang(5, 2)


def test_the_written_csv_reads_back_as_the_same_trace(tmp_path):
    tr = large_gang(3, 250)
    back = load_trace(write_csv(tr, tmp_path / "lg.csv"))
    for col in ("submit_s", "num_gpus", "duration_s"):
        assert np.array_equal(getattr(back, col), getattr(tr, col))

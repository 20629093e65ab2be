"""engine/sim/traces.py: the bundled traces, malformed rows, windows and load scaling."""
import gzip

import numpy as np
import pytest

from gangplace.engine.model.errors import InvalidFile, InvalidRequest
from gangplace.engine.sim.traces import BUNDLED, load_trace, parse_trace, scale_load, select, window_load

HEADER = b"job_id,submit_s,num_gpus,duration_s,num_nodes\n"


@pytest.mark.parametrize("name,jobs,max_gpus", [("philly", 111_539, 128), ("helios", 10_796, 160)])
def test_bundled_traces_load_with_their_documented_sizes(name, jobs, max_gpus):
    tr = load_trace(name)
    assert tr.name == name
    assert len(tr) == jobs
    assert int(tr.num_gpus.max()) == max_gpus
    assert (np.diff(tr.submit_s) >= 0).all() and tr.submit_s[0] == 0
    assert (tr.duration_s >= 1).all()


def test_bundled_files_live_inside_the_package():
    from gangplace.engine.sim.traces import DATA_DIR
    for fname in BUNDLED.values():
        assert (DATA_DIR / fname).is_file()


@pytest.mark.parametrize("body,message", [
    (b"a,0,1,5,1\nb,3,x,4,1\n", "line 3: num_gpus: not an integer: 'x'"),
    (b"a,0,1,5,1\nb,3,1,4\n", "line 3: expected 5 fields, got 4"),
    (b"a,0,1,5,1\nb,3,0,4,1\n", "line 3: num_gpus: must be >= 1, got 0"),
    (b"a,0,1,5,1\nb,3,1,0,1\nc,4,1,1,1\n", "line 3: duration_s: must be >= 1, got 0"),
    (b"a,0,1,5,1\nb,-3,1,2,1\n", "line 3: submit_s: must be >= 0, got -3"),
    (b"a,0,1,5,1\nb,3,,4,1\n", "line 3: num_gpus"),
], ids=["a non-integer GPU count", "a row with a missing field", "zero GPUs", "zero duration",
        "a negative submit time", "an empty GPU count"])
def test_a_malformed_row_is_an_error_naming_its_line(body, message):
    with pytest.raises(InvalidFile) as e:
        parse_trace(HEADER + body, source="t.csv")
    assert message in str(e.value)
    assert "t.csv" in str(e.value)


def test_a_missing_column_is_named():
    with pytest.raises(InvalidFile, match=r"line 1: missing column\(s\) \['num_gpus'\]"):
        parse_trace(b"job_id,submit_s,duration_s\na,0,5\n")


def test_gzip_and_plain_files_read_the_same_and_rows_are_sorted(tmp_path):
    body = HEADER + b"b,5,2,10,1\na,1,16,20,2\n"
    (tmp_path / "t.csv").write_bytes(body)
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(body))
    for p in ("t.csv", "t.csv.gz"):
        tr = load_trace(tmp_path / p)
        assert tr.job_id.tolist() == ["a", "b"]
        assert tr.submit_s.tolist() == [1, 5] and tr.num_gpus.tolist() == [16, 2]
        assert tr.num_nodes.tolist() == [2, 1]


def test_an_unknown_trace_name_is_an_error():
    with pytest.raises(InvalidFile, match="no such trace"):
        load_trace("nope-not-here")


def test_select_takes_a_window_and_a_job_limit_and_rebases_time():
    tr = parse_trace(HEADER + b"".join(b"j%d,%d,1,5,1\n" % (i, 10 * i) for i in range(10)))
    w = select(tr, start_s=20, end_s=70, max_jobs=3)
    assert w.job_id.tolist() == ["j2", "j3", "j4"]
    assert w.submit_s.tolist() == [0, 10, 20]
    with pytest.raises(InvalidRequest):
        select(tr, max_jobs=0)


@pytest.mark.parametrize("target", [100.0, 500.0, 2000.0])
def test_load_scaling_reaches_the_target_demand_and_keeps_durations(target):
    tr = select(load_trace("helios"), max_jobs=2000)
    scaled = scale_load(tr, target)
    assert window_load(scaled) == pytest.approx(target, rel=0.02)
    assert (scaled.duration_s == tr.duration_s).all()
    assert (np.diff(scaled.submit_s) >= 0).all()

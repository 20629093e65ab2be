"""Job traces for the simulator: the CSV schema of the bundled traces, read with pyarrow.

Schema (header line, comma separated, optionally gzip-compressed; extra columns are ignored):
``job_id`` (string), ``submit_s`` (int >= 0), ``num_gpus`` (int >= 1), ``duration_s`` (int >= 1),
optional ``num_nodes`` (int >= 1; kept for reference, the simulator ignores the trace's own
placement). Bad input raises ``InvalidFile`` naming the file, the line (1 = the header) and the
column, e.g. ``philly.csv.gz line 12: num_gpus: must be >= 1, got 0``.

Bundled traces (``engine/sim/data/``, CC-BY-4.0, see engine/sim/data/README.md for provenance and the
citations the licenses require): ``philly`` (Microsoft Philly 2017, 111,539 jobs) and ``helios``
(SenseTime Helios 2020, a 10,796-GPU-job excerpt). ``load_trace("philly")`` finds them by name.
Generated traces (engine/sim/synthetic_trace.py): ``large-gang[:seed=S][:jobs=N]``.
"""
from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model.errors import InvalidFile, InvalidRequest

DATA_DIR = Path(__file__).resolve().parent / "data"
BUNDLED = {"philly": "philly.csv.gz", "helios": "helios_gpw15k.csv.gz"}
REQUIRED_COLUMNS = ("job_id", "submit_s", "num_gpus", "duration_s")
_INT_COLUMNS = ("submit_s", "num_gpus", "duration_s", "num_nodes")
_MINIMUM = {"submit_s": 0, "num_gpus": 1, "duration_s": 1, "num_nodes": 1}


@dataclass(frozen=True)
class Trace:
    """Jobs sorted by submit time (stable). Arrays are parallel, one entry per job."""

    name: str
    job_id: np.ndarray  # object[n_jobs] (str)
    submit_s: np.ndarray  # int64[n_jobs], seconds
    num_gpus: np.ndarray  # int64[n_jobs]
    duration_s: np.ndarray  # int64[n_jobs], run time without queueing
    num_nodes: np.ndarray | None = None  # int64[n_jobs] or None when the file has no such column

    def __len__(self) -> int:
        return len(self.submit_s)

    def take(self, idx) -> "Trace":
        idx = np.asarray(idx)
        return Trace(self.name, self.job_id[idx], self.submit_s[idx], self.num_gpus[idx], self.duration_s[idx],
                     None if self.num_nodes is None else self.num_nodes[idx])

    @property
    def span_s(self) -> int:
        return int(self.submit_s[-1] - self.submit_s[0]) if len(self) else 0

    @property
    def gpu_seconds(self) -> int:
        return int((self.num_gpus * self.duration_s).sum())

    def offered_load(self) -> float:
        """Mean GPUs busy if every job started at submission: sum(gpus * duration) / span."""
        return self.gpu_seconds / max(self.span_s, 1)


def resolve_trace_path(name_or_path: str | Path) -> Path:
    """A bundled trace name (``philly``, ``helios``) or a file path."""
    key = str(name_or_path)
    if key in BUNDLED:
        return DATA_DIR / BUNDLED[key]
    path = Path(key)
    if not path.exists():
        raise InvalidFile(f"no such trace file {key!r} (bundled traces: {sorted(BUNDLED)}; generated: "
                          f"large-gang[:seed=S][:jobs=N])", field="trace")
    return path


def check_trace(name_or_path: str | Path) -> None:
    """Fail early, naming the trace, on a name that ``load_trace`` would refuse (without reading files)."""
    from .synthetic_trace import is_synthetic, parse_name
    if is_synthetic(name_or_path):
        parse_name(str(name_or_path))
    else:
        resolve_trace_path(name_or_path)


def load_trace(name_or_path: str | Path) -> Trace:
    """A generated trace by name (``large-gang:seed=2``), else read a trace CSV (plain or .gz).
    Raises InvalidFile naming the first bad line."""
    from .synthetic_trace import is_synthetic, load
    if is_synthetic(name_or_path):
        return load(str(name_or_path))
    path = resolve_trace_path(name_or_path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise InvalidFile(f"{path.name}: not a valid gzip file ({e})", field="trace") from None
    name = str(name_or_path) if str(name_or_path) in BUNDLED else path.name.split(".")[0]
    return parse_trace(raw, name=name, source=path.name)


def parse_trace(data: bytes, *, name: str = "trace", source: str = "trace") -> Trace:
    """Parse CSV bytes in the trace schema. ``source`` names the input in error messages."""
    import pyarrow as pa
    from pyarrow import csv

    header = _header(data, source)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InvalidFile(f"{source} line 1: missing column(s) {missing}; the header is {header}", field="trace")
    types = {c: pa.int64() for c in _INT_COLUMNS if c in header}
    types["job_id"] = pa.string()
    wanted = [c for c in (*REQUIRED_COLUMNS, "num_nodes") if c in header]
    try:
        table = csv.read_csv(io.BytesIO(data), read_options=csv.ReadOptions(block_size=1 << 24),
                             convert_options=csv.ConvertOptions(column_types=types, include_columns=wanted,
                                                                strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise _locate_error(data, header, source, str(e)) from None
    cols = {}
    for c in wanted:
        col = table.column(c)
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise InvalidFile(f"{source} line {row + 2}: {c}: missing value", field="trace")
        cols[c] = col.to_numpy() if c != "job_id" else np.asarray(col.to_pylist(), dtype=object)
    for c, lo in _MINIMUM.items():
        if c in cols:
            bad = np.flatnonzero(cols[c] < lo)
            if bad.size:
                row = int(bad[0])
                raise InvalidFile(f"{source} line {row + 2}: {c}: must be >= {lo}, got {int(cols[c][row])}",
                                  field="trace")
    order = np.argsort(cols["submit_s"], kind="stable")
    cols = {c: v[order] for c, v in cols.items()}
    return Trace(name, cols["job_id"], cols["submit_s"].astype(np.int64), cols["num_gpus"].astype(np.int64),
                 cols["duration_s"].astype(np.int64), cols.get("num_nodes"))


def _header(data: bytes, source: str) -> list[str]:
    end = data.find(b"\n")
    line = (data if end < 0 else data[:end]).decode("utf-8", "replace").strip()
    if not line:
        raise InvalidFile(f"{source} line 1: empty file, expected a CSV header", field="trace")
    return [h.strip() for h in line.split(",")]


def _locate_error(data: bytes, header: list[str], source: str, arrow_message: str) -> InvalidFile:
    """pyarrow's messages do not always carry a line number: find the first bad line ourselves."""
    idx = {c: header.index(c) for c in (*REQUIRED_COLUMNS, "num_nodes") if c in header}
    for lineno, line in enumerate(data.decode("utf-8", "replace").splitlines()[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != len(header):
            return InvalidFile(f"{source} line {lineno}: expected {len(header)} fields, got {len(parts)}",
                               field="trace")
        for c in _INT_COLUMNS:
            if c in idx:
                value = parts[idx[c]].strip()
                try:
                    int(value)
                except ValueError:
                    return InvalidFile(f"{source} line {lineno}: {c}: not an integer: {value!r}", field="trace")
    return InvalidFile(f"{source}: cannot parse ({arrow_message.splitlines()[0]})", field="trace")


def select(trace: Trace, *, start_s: float = 0.0, end_s: float | None = None, max_jobs: int | None = None) -> Trace:
    """Jobs submitted in ``[start_s, end_s)``, at most the first ``max_jobs``; submit times shifted to 0."""
    if max_jobs is not None and max_jobs < 1:
        raise InvalidRequest(f"must be >= 1, got {max_jobs}", field="max_jobs")
    mask = trace.submit_s >= start_s
    if end_s is not None:
        mask &= trace.submit_s < end_s
    idx = np.flatnonzero(mask)
    if max_jobs is not None:
        idx = idx[:max_jobs]
    out = trace.take(idx)
    if len(out):
        out = Trace(out.name, out.job_id, out.submit_s - out.submit_s[0], out.num_gpus, out.duration_s, out.num_nodes)
    return out


def window_load(trace: Trace) -> float:
    """Mean GPUs demanded *inside the trace's own span* if every job started on arrival:
    sum(gpus * min(duration, span end - submit)) / span.

    Unlike ``offered_load`` this does not count work that runs past the window, which on
    heavy-tailed traces (Philly's p99 run time is 8.7 days) is most of it.
    """
    span = max(trace.span_s, 1)
    left = trace.submit_s[-1] - trace.submit_s
    return float((trace.num_gpus * np.minimum(trace.duration_s, left)).sum() / span)


def scale_load(trace: Trace, target_gpus: float) -> Trace:
    """Compress (or stretch) inter-arrival times so ``window_load`` is ``target_gpus`` busy GPUs.

    Durations are untouched: only the arrival process changes, so a trace recorded on a cluster
    of one size can drive a cluster of another at a chosen utilisation. The factor is found by
    bisection (the window load falls as the span grows); a target above what all jobs at once
    would demand gives the shortest span tried (everything arrives almost together).
    """
    if target_gpus <= 0:
        raise InvalidRequest(f"must be > 0, got {target_gpus}", field="load")
    if len(trace) < 2 or trace.span_s == 0:
        return trace
    rel = (trace.submit_s - trace.submit_s[0]).astype(np.float64)
    span = float(rel[-1])
    g = trace.num_gpus.astype(np.float64)
    d = trace.duration_s.astype(np.float64)

    left = span - rel

    def load(f: float) -> float:  # window_load of the trace with its times scaled by f
        s = max(span * f, 1.0)
        return float((g * np.minimum(d, left * f)).sum() / s)

    lo, hi = -12.0, 12.0  # log2 of the factor
    for _ in range(60):
        mid = (lo + hi) / 2
        if load(2.0 ** mid) > target_gpus:
            lo = mid
        else:
            hi = mid
    submit = np.round(rel * 2.0 ** hi).astype(np.int64)
    return Trace(trace.name, trace.job_id, submit, trace.num_gpus, trace.duration_s, trace.num_nodes)

"""service/output.py: the shared CLI output helpers."""
from __future__ import annotations

import io
import time

from gangplace.service.output import Heartbeat, fmt_duration


def test_a_heartbeat_prints_while_work_runs_and_once_at_the_end():
    out = io.StringIO()
    with Heartbeat("simulating", total=3, every_s=0.05, stream=out) as hb:
        time.sleep(0.22)  # one long step: the line keeps coming anyway
        hb.advance(last="philly/dgx-h100-2048/seed1/kueue-tas")
        time.sleep(0.12)
        hb.advance(2)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 4, lines
    assert lines[0].startswith("simulating: 0/3 done, ") and lines[0].endswith(" s elapsed")
    assert any("last: philly/dgx-h100-2048/seed1/kueue-tas" in line for line in lines)
    assert lines[-1].startswith("simulating: 3/3 done in ")


def test_durations_read_in_human_units():
    assert [fmt_duration(s) for s in (42, 210, 3 * 3600, 42 * 86400)] == ["42 s", "3.5 min", "3.0 h", "42.0 d"]

"""Every command the `gangplace serve` banner prints (what `make run` shows) runs as printed,
from the repository root, against the server that printed it."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GANGPLACE = Path(sys.executable).parent / "gangplace"


def _banner(proc: subprocess.Popen, timeout: float = 90.0) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "the server exited before printing its banner:\n" + "".join(lines)
        lines.append(line)
        if line.startswith("Stop with Ctrl-C"):
            return lines
    raise AssertionError("no banner within the time limit:\n" + "".join(lines))


def test_every_command_the_banner_prints_runs_as_printed_from_the_repository_root(tmp_path):
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    env["PATH"] = "/usr/bin:/bin"  # as on a fresh machine: the venv is not on PATH
    proc = subprocess.Popen([str(GANGPLACE.relative_to(ROOT)) if GANGPLACE.is_relative_to(ROOT) else str(GANGPLACE),
                             "serve", "--synthetic", "dgx-h100", "--gpus", "2048",
                             "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = _banner(proc)
        commands = [line.strip() for line in banner[banner.index("Try:\n") + 1:-1]]
        assert len(commands) >= 8, banner
        ran = 0
        for cmd in commands:
            tool = cmd.split()[0]
            if tool == "grpcurl":
                assert "separate tool" in "".join(banner), banner
                if shutil.which("grpcurl") is None:
                    continue  # not part of gangplace; the banner says so
            res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd.split("   #")[0]], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=120)
            assert res.returncode == 0, f"{cmd!r} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
            ran += 1
        assert ran >= 7
        assert any(c.startswith(".venv/bin/gangplace grpc place") or c.startswith(str(GANGPLACE))
                   for c in commands), commands
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)

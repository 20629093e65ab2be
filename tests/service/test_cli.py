"""gangplace's top-level command line (service/cli.py)."""
from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version

import pytest

from gangplace.service.cli import main


def test_version_prints_the_installed_version_and_exits_0(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"gangplace {version('gangplace')}"
    assert re.fullmatch(r"gangplace \d+\.\d+\.\d+\S*", out)


def test_the_console_script_answers_version():
    bin_dir = __import__("pathlib").Path(sys.executable).parent
    res = subprocess.run([str(bin_dir / "gangplace"), "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("gangplace "), res


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out

"""The console entry point (``dejavu.cli:run``): exit codes and flushed output survive ``os._exit``."""

from __future__ import annotations

import subprocess
import sys


def test_run_exit_codes_and_output(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "dejavu", "--version"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("dejavu ")
    bad = subprocess.run([sys.executable, "-m", "dejavu", "track", str(tmp_path / "missing.mp4"), "-o",
                          str(tmp_path / "out")], capture_output=True, text=True)
    assert bad.returncode == 2
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("dejavu track: error:") and "missing.mp4" in lines[-1]
    assert "Traceback" not in bad.stderr

"""The console entry point (``dejavu.cli:run``): exit codes and flushed output survive ``os._exit``."""

from __future__ import annotations

import re
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


def test_help_lists_every_command_without_importing_them():
    """`dejavu --help` comes from the table of summaries: no command module, no torch."""
    from dejavu.cli import COMMANDS

    code = ("import sys\nfrom dejavu.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('dejavu.cli.') and "
            "m not in ('dejavu.cli.subcommands',)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *listing, imported = out.stdout.strip().splitlines()
    assert imported == "[]"
    text = "\n".join(listing)
    assert all(re.search(rf"^    {name} ", text, re.M) for name in COMMANDS), text


def test_a_chosen_command_gets_its_own_arguments(capsys):
    """The chosen command's module adds its arguments before parsing: its --help and its options work."""
    import pytest

    from dejavu.cli import main

    with pytest.raises(SystemExit) as done:
        main(["bench", "render", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--gaussians" in out and "--json" in out
    with pytest.raises(SystemExit):
        main(["track", "in.mp4", "-o", "out", "--no-such-option"])
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err

"""Worker processes of one machine: next-free claims, results in order, one failure stops everyone."""

from __future__ import annotations

import pytest

from dejavu.errors import DejavuError
from dejavu.recon.workers import STOPPED, UnitClaims, run_workers

TARGET = "tests.recon.worker_targets:take_units"


def test_claims_hand_out_each_index_once_and_stop():
    claims = UnitClaims(("a", "b"))
    assert [claims.claim("a") for _ in range(3)] == [0, 1, 2] and claims.claim("b") == 0
    claims.stop()
    assert claims.claim("a") == claims.claim("b") == STOPPED


@pytest.mark.slow
def test_processes_split_the_units_next_free():
    claims = UnitClaims(("a",))
    got = run_workers(TARGET, [(claims, p, 40) for p in range(3)], claims)
    assert sorted(i for part in got for i in part) == list(range(40))  # every unit once, whoever took it
    assert all(part == sorted(part) for part in got)


@pytest.mark.slow
@pytest.mark.parametrize("fail, error, match", [
    ("error", DejavuError, r"^unit \d+: broken input$"),  # the worker's own one-line error
    ("bug", RuntimeError, r"(?s)data worker process 1 failed:\n.*ZeroDivisionError: a bug"),
    ("killed", DejavuError, r"data worker process 1 ended without a result \(exit code 3"),
])
def test_a_failing_process_stops_the_others(fail, error, match):
    claims = UnitClaims(("a",))
    with pytest.raises(error, match=match):
        run_workers(TARGET, [(claims, p, 10_000, fail) for p in range(2)], claims)
    assert claims.claim("a") == STOPPED  # this process stopped long before its 10,000 units


def test_the_command_starts_its_workers_before_torch_loads():
    """`dejavu prepare recon` spawns its helpers before it imports torch, so their start-up runs beside its
    own: what it imports until then (the CLI parser, the config, outputs checks, workers.py) is torch-free."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from dejavu.cli import build_parser; build_parser(); import dejavu.recon.workers, "
            "dejavu.recon.config, dejavu.outputs, dejavu.io; print(sorted({'torch', 'numba'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip() == "[]"

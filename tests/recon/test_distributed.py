"""Training under torchrun: 2 CPU processes (gloo) on tiny shards, against one process.

The job itself is tests/recon/ddp_job.py; see its docstring for what each rank checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.recon.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
JOB = Path(__file__).with_name("ddp_job.py")


@pytest.fixture(scope="module")
def ddp_config(tmp_path_factory):
    """A config file for 2-process runs on 4 procedural identities in 2 shard files (prepared here)."""
    from dejavu.recon.config import config_from_dict
    from dejavu.recon.dataprep import prepare

    root = tmp_path_factory.mktemp("ddp")
    d = tiny_config(root / "shards", root / "run", identities_per_batch=1, steps=3)
    d["data"].update(synthetic_identities=4, synthetic_views=2, synthetic_uv_size=16, shard_identities=2)
    d["log"].update(sync_check_every=1, preview_every=1, checkpoint_every=2)
    d["cpu_threads"] = 1
    prepare(config_from_dict(d))
    path = root / "config.json"
    path.write_text(json.dumps(d))
    return path


def torchrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_two_ranks_match_one_process_stay_identical_and_resume_exactly(ddp_config, tmp_path):
    t0 = time.perf_counter()
    proc = torchrun(str(JOB), "train", str(ddp_config), str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"result_rank{r}.json").read_text()) for r in (0, 1))
    # 2 x batch b == 1 x batch 2b: gradients (averaged over ranks) and the weights after the step
    assert r0["grad_max_abs_diff"] <= 1e-5 * r0["grad_max_abs"] + 1e-9, r0
    assert r0["weight_max_abs_diff"] <= 1e-3 * r0["lr"], r0
    assert abs(r0["loss_logged"] - r0["loss_single"]) < 2e-5  # scalars.csv: the whole global batch's loss
    # every step was followed by the all-ranks weight check (it raises on a mismatch)
    assert r0["steps_checked"] == r1["steps_checked"] == 4
    # only rank 0 wrote: its run folder has everything, rank 1's was never created
    assert {"checkpoint.pt", "config.json", "scalars.csv", "weights.safetensors"} <= set(r0["own_dir_files"])
    assert any(f.startswith("previews/") for f in r0["own_dir_files"])
    assert r1["own_dir_files"] == [] and not (tmp_path / "A_rank1").exists()
    # --resume under torchrun: 2 + 2 steps == 4 steps, bit for bit, data positions included
    assert r0["resumed_at"] == r1["resumed_at"] == 2
    assert r0["resume_bit_exact"] and r1["resume_bit_exact"]
    assert r0["resume_positions"][0] == r0["resume_positions"][1]
    # a rank holding other weights is caught, on both ranks
    assert r0["divergence_caught"] and r1["divergence_caught"]
    assert time.perf_counter() - t0 < 90


def test_a_failing_rank_ends_the_job_with_one_line(ddp_config, tmp_path):
    from tests.recon.ddp_job import INJECTED

    cfg = json.loads(ddp_config.read_text())
    cfg["log"]["run_dir"] = str(tmp_path / "run")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    proc = torchrun(str(JOB), "fail", str(path), str(tmp_path), timeout=90)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    # the failing rank's line (rank 0's progress bar may share its terminal line)
    lines = [line for line in out.splitlines() if INJECTED in line]
    assert len(lines) == 1 and lines[0].endswith(f"dejavu train: error: rank 1/2: {INJECTED}"), out[-3000:]
    # no Python traceback from any rank (torchrun's own failure summary follows, without one)
    assert "dejavu/recon" not in out, out[-3000:]

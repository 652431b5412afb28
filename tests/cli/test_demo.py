"""`make demo`'s job end to end on the sample that installs with the dependencies (the astronaut photo)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_writes_every_output_and_says_where(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("mediapipe")
    out = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "dejavu", "demo", "-o", str(out), "--device", "cpu"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    # no MediaPipe start-up lines, and the photo is tracked once (the refinement reuses that tracking)
    assert "W0000" not in run.stderr and "XNNPACK" not in run.stderr
    said = run.stdout + run.stderr
    assert said.count("tracking written to") == 1
    assert "no held-out frames to score" in said and "held-out PSNR {}" not in said
    listed = dict(line.split(None, 1) for line in run.stdout.split("demo outputs:")[1].strip().splitlines())
    assert set(listed) == {"photo", "avatar", "views", "expressions", "ply"}
    for path in listed.values():
        assert Path(path.strip()).exists(), path

    from dejavu.avatar import Avatar
    from dejavu.export import read_ply

    avatar = Avatar.load(out / "astronaut_avatar")
    assert avatar.training["steps"] == 150
    ply = read_ply(out / "avatar.ply")
    assert len(ply["x"]) == avatar.settings["n_gaussians"]
    assert (out / "expressions.mp4").stat().st_size > 10_000
    import imageio.v2 as imageio

    assert imageio.get_reader(out / "expressions.mp4").get_data(0).shape == (512, 512, 3)

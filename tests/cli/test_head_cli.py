"""`dejavu head info` on the procedural head."""

from __future__ import annotations

import numpy as np

from dejavu.cli import main
from dejavu.io import read_image


def test_head_info_procedural(tmp_path, capsys):
    rc = main(["head", "info", "--head", "procedural", "--uv-size", "64", "-o", str(tmp_path / "info")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "vertices 1539" in out and "expression components 6" in out
    assert "at 64" in out and "at 320" in out and "region texel shares at 64" in out
    assert "jaw (parent neck)" in out
    uv = read_image(tmp_path / "info" / "uv_layout.png")
    mesh = read_image(tmp_path / "info" / "mesh.png")
    assert uv.shape == (512, 512, 3) and mesh.shape == (512, 1024, 3)
    assert str(tmp_path / "info" / "mesh.png") in out
    # The face-region colour appears in both pictures; the mesh is centred on white.
    skin = np.array([0.93, 0.76, 0.64])
    assert (np.abs(uv - skin).max(-1) < 0.02).mean() > 0.05
    assert mesh[0, 0].min() == 1.0 and mesh[256, 256].max() < 1.0


def test_head_info_errors(tmp_path, capsys):
    assert main(["head", "info", "--head", "procedural", "--uv-size", "3", "-o", str(tmp_path)]) == 2
    assert "--uv-size 3" in capsys.readouterr().err
    assert main(["head", "info", "--head", f"flame:{tmp_path / 'missing'}", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no such FLAME file" in err and "Traceback" not in err
    assert main(["head", "info", "--head", "nonsense"]) == 2

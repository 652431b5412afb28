"""3DGS .ply export: round trip through the reader, header layout, errors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dejavu.errors import DejavuError
from dejavu.export import PLY_PROPERTIES, ply_to_activated, read_ply, write_ply


def _gaussians(B: int = 2, N: int = 50):
    g = torch.Generator().manual_seed(1)
    quats = torch.randn(B, N, 4, generator=g)
    return SimpleNamespace(
        means=torch.randn(B, N, 3, generator=g) * 0.1,
        quats=quats / quats.norm(dim=-1, keepdim=True),
        scales=torch.rand(B, N, 3, generator=g) * 0.01 + 1e-4,
        opacities=torch.rand(B, N, generator=g) * 0.98 + 0.01,
        colors=torch.rand(B, N, 3, generator=g),
    )


def test_round_trip(tmp_path):
    g = _gaussians()
    path = write_ply(tmp_path / "a.ply", g, index=1, up="y")
    props = read_ply(path)
    assert list(props) == list(PLY_PROPERTIES)
    act = ply_to_activated(props)
    for name in ("means", "quats", "scales", "opacities", "colors"):
        np.testing.assert_allclose(act[name], getattr(g, name)[1].numpy(), rtol=1e-4, atol=1e-5)
    assert np.all(props["nx"] == 0)


def test_header_is_standard_3dgs(tmp_path):
    path = write_ply(tmp_path / "a.ply", _gaussians(N=7))
    raw = path.read_bytes()
    header = raw[: raw.index(b"end_header\n") + 11].decode()
    assert header.startswith("ply\nformat binary_little_endian 1.0\n")
    assert "element vertex 7\n" in header
    assert [line.split()[-1] for line in header.splitlines() if line.startswith("property")] == list(PLY_PROPERTIES)
    assert len(raw) - len(header) == 7 * 17 * 4


def test_reader_errors(tmp_path):
    with pytest.raises(DejavuError, match="no such"):
        read_ply(tmp_path / "missing.ply")
    (tmp_path / "bad.ply").write_bytes(b"hello")
    with pytest.raises(DejavuError, match="not a .ply"):
        read_ply(tmp_path / "bad.ply")
    path = write_ply(tmp_path / "t.ply", _gaussians(N=5))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DejavuError, match="truncated"):
        read_ply(path)


def test_frame_out_of_range(tmp_path):
    with pytest.raises(DejavuError, match="out of range"):
        write_ply(tmp_path / "a.ply", _gaussians(B=2), index=5)

"""The torch reference: projection vs gsplat's own torch implementation, golden raster, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

from dejavu.render import render
from dejavu.render.reference import project, quat_to_rotmat

from .conftest import make_scene


def test_projection_matches_gsplat_torch_impl():
    gs = pytest.importorskip("gsplat.cuda._torch_impl")
    s = make_scene(B=2, N=300, W=48, H=40, spread=0.2)
    proj = project(s["means"], s["quats"], s["scales"], torch.ones(2, 300), s["world_to_cam"], s["K"], 48, 40)
    for b in range(2):
        R = quat_to_rotmat(s["quats"][b])
        M = R * s["scales"][b][:, None, :]
        covars = M @ M.transpose(-1, -2)
        radii, means2d, depths, conics, _ = gs._fully_fused_projection(
            s["means"][b], covars, s["world_to_cam"][b:b + 1], s["K"][b:b + 1], 48, 40, eps2d=0.3)
        ok = proj.radii[b, :, 0] > 0
        assert ok.sum() > 100
        torch.testing.assert_close(proj.means2d[b][ok], means2d[0][ok], rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(proj.conics[b][ok], conics[0][ok], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(proj.depths[b][ok], depths[0][ok])


def _single_gaussian(backend, opacity=0.5, s=0.002):
    """One isotropic Gaussian projecting onto the centre of pixel (row 5, col 9) of a 16x16 image."""
    K = torch.tensor([[[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]]])
    mean = torch.tensor([[[(9.5 - 8) / 20, (5.5 - 8) / 20, 1.0]]])
    out = render(mean, torch.tensor([[[1.0, 0, 0, 0]]]), torch.full((1, 1, 3), s), torch.full((1, 1), opacity),
                 torch.tensor([[[1.0, 0.0, 0.0]]]), torch.eye(4)[None], K, 16, 16, background=(0.0, 0.0, 0.0),
                 backend=backend)
    return out, 400 * s * s + 0.3  # pixel variance incl. the 0.3 low-pass


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_golden_pixel_centre(backend, request):
    if backend == "cpu":
        request.getfixturevalue("cpu_backend")
    out, var = _single_gaussian(backend)
    a = out.alpha[0, ..., 0]
    assert divmod(int(a.argmax()), 16) == (5, 9)
    assert a[5, 9].item() == pytest.approx(0.5, abs=1e-6)
    side = 0.5 * math.exp(-0.5 / var)
    for i, j in ((5, 8), (5, 10), (4, 9), (6, 9)):
        assert a[i, j].item() == pytest.approx(side, rel=2e-4)  # float32 pixel offsets
    torch.testing.assert_close(out.rgb[0, 5, 9], torch.tensor([0.5, 0.0, 0.0]))
    assert out.depth[0, 5, 9, 0].item() == pytest.approx(0.5, rel=1e-6)  # w * z with z = 1
    assert a[0, 0].item() == 0.0  # outside the Gaussian's tiles / below 1/255


def test_gradcheck_float64():
    """Finite differences for colours and opacities (and means/scales/quats) of the reference."""
    s = make_scene(B=1, N=6, W=16, H=16, spread=0.01, dtype=torch.float64)
    s["scales"] = s["scales"] + 0.004
    s["opacities"] = 0.2 + 0.5 * s["opacities"]

    weights = torch.randn(1, 16, 16, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def f(colors, opacities, means, scales, quats):  # a random linear functional of the outputs
        out = render(means, quats, scales, opacities, colors, s["world_to_cam"], s["K"], 16, 16, backend="reference")
        return (torch.cat([out.rgb, out.alpha, out.depth], -1) * weights).sum()

    args = tuple(s[k].clone().requires_grad_(True) for k in ("colors", "opacities", "means", "scales", "quats"))
    assert torch.autograd.gradcheck(f, args, eps=1e-7, atol=1e-5, rtol=1e-4)

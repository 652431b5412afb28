"""UVGaussianMap: texel tables, surface positions, activation, offsets and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavu.gaussians import channels as ch
from dejavu.head.texels import rasterize_uv, texel_table
from dejavu.gaussians.uvmap import Gaussians, UVGaussianMap
from dejavu.head.base import REGION_ID, HeadModel


@pytest.fixture(scope="module")
def uvmap(procedural_head):
    return UVGaussianMap(procedural_head, 64)


def test_golden_raster_one_triangle():
    # Lower-left half of the square (u + v <= 1): at S=4 texel centres with u + v <= 1 are inside.
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    table = rasterize_uv(uv, np.array([[0, 1, 2]]), 4)
    rows, cols = np.divmod(table.flat_index, 4)
    u, v = (cols + 0.5) / 4, 1 - (rows + 0.5) / 4
    assert np.all(u + v <= 1 + 1e-9)
    assert len(table.flat_index) == 10  # rows of 1 + 2 + 3 + 4 (centres on the diagonal count as inside)
    # Barycentrics reproduce the texel centre.
    np.testing.assert_allclose(table.bary @ uv, np.stack([u, v], 1), atol=1e-12)
    assert np.all(np.diff(table.flat_index) > 0)


def test_table_is_cached(procedural_head):
    a = procedural_head.assets
    assert texel_table(a.uv_coords, a.uv_faces, 32) is texel_table(a.uv_coords, a.uv_faces, 32)


def test_counts_and_masks(uvmap):
    S = uvmap.size
    assert uvmap.n_gaussians == int(uvmap.mask.sum())
    assert uvmap.mask.shape == (S, S) and uvmap.mask.dtype == torch.bool
    assert torch.equal(uvmap.region >= 0, uvmap.mask)
    assert uvmap.mouth_mask.any() and not (uvmap.mouth_mask & ~uvmap.mask).any()
    assert torch.equal(uvmap.mouth_mask, uvmap.region == REGION_ID["mouth"])
    pw = uvmap.position_weight[0]
    assert torch.all(pw[uvmap.region == REGION_ID["face"]] == 10.0)
    assert torch.all(pw[uvmap.region == REGION_ID["scalp"]] == 0.1)
    assert torch.all(pw[~uvmap.mask] == 0)
    op = uvmap.opacity_prior[0]
    assert torch.all(op[uvmap.region == REGION_ID["face"]] == 1.0)
    assert torch.all(op[uvmap.region == REGION_ID["scalp"]] == 0.0)
    assert abs(sum(uvmap.region_share().values()) - 1) < 1e-9


def test_positions_lie_on_the_mesh(procedural_head, uvmap):
    g = torch.Generator().manual_seed(0)
    head = HeadModel(procedural_head.assets).double()
    uvmap = UVGaussianMap(head, uvmap.size).double()
    v = head(shape=torch.randn(3, head.n_shape, generator=g, dtype=torch.float64),
             expression=torch.randn(3, head.n_expr, generator=g, dtype=torch.float64),
             jaw=torch.tensor([[0.2, 0.0, 0.0]] * 3, dtype=torch.float64))
    pos = uvmap.gather(uvmap.position_map(v))  # (B, N, 3)
    tri = v[:, uvmap.texel_verts]  # (B, N, 3, 3)
    n = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])
    n = n / n.norm(dim=-1, keepdim=True)
    dist = ((pos - tri[:, :, 0]) * n).sum(-1).abs()
    assert dist.max() < 1e-8  # metres; barycentrics are stored in float32
    # Inside the triangle: recompute 3D barycentrics by least squares; all >= 0.
    e1, e2, d = tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], pos - tri[:, :, 0]
    A = torch.stack([e1, e2], -1)  # (B, N, 3, 2)
    w = torch.linalg.lstsq(A, d[..., None]).solution[..., 0]
    bary = torch.cat([1 - w.sum(-1, keepdim=True), w], -1)
    assert bary.min() > -1e-6
    assert (pos.norm(dim=-1) > 0.05).all()  # head-sized, not at the origin


def test_initial_map_and_activation(procedural_head, uvmap):
    v = procedural_head(batch_size=2)
    m = uvmap.initial_map(v)
    assert m.shape == (2, ch.N_CHANNELS, uvmap.size, uvmap.size)
    assert torch.all(m[:, :, ~uvmap.mask] == 0)
    valid = uvmap.mask
    assert torch.allclose(m[:, ch.LOG_SCALE][:, :, valid], torch.tensor(ch.INIT_LOG_SCALE))
    assert torch.allclose(m[:, ch.COLOR][:, :, valid], torch.tensor(ch.INIT_COLOR_DC))
    g = uvmap.to_gaussians(m)
    assert isinstance(g, Gaussians) and g.n == uvmap.n_gaussians
    assert g.means.shape == (2, g.n, 3) and g.quats.shape == (2, g.n, 4) and g.opacities.shape == (2, g.n)
    assert torch.allclose(g.scales, torch.tensor(np.exp(ch.INIT_LOG_SCALE), dtype=torch.float32))
    assert torch.allclose(g.quats, torch.tensor([1.0, 0, 0, 0]))
    # near-black, and strictly above the clamp so colour offsets receive gradients
    assert torch.all(g.colors > 0.01) and torch.all(g.colors < 0.03)
    assert torch.allclose(g.opacities, torch.sigmoid(uvmap.gather(uvmap.opacity_prior[None])[..., 0]))
    # Custom values activate as documented.
    x = torch.randn(1, ch.N_CHANNELS, uvmap.size, uvmap.size)
    g = uvmap.to_gaussians(x)
    xv = uvmap.gather(x)
    q = torch.cat([torch.ones_like(xv[..., :1]), xv[..., ch.ROT]], -1)
    assert torch.allclose(g.quats, q / q.norm(dim=-1, keepdim=True), atol=1e-6)
    assert torch.allclose(g.colors, (0.5 + ch.SH_C0 * xv[..., ch.COLOR]).clamp_min(0))
    assert torch.allclose(g.opacities, torch.sigmoid(xv[..., ch.OPACITY][..., 0]))


def test_offsets_units_and_frozen_mouth(procedural_head, uvmap):
    v = procedural_head(batch_size=1)
    base = uvmap.initial_map(v)
    off = torch.ones_like(base)
    out = uvmap.apply_offsets(base, off)
    d = out - base
    mouth, other = uvmap.mouth_mask, uvmap.mask & ~uvmap.mouth_mask
    assert torch.allclose(d[:, ch.XYZ][:, :, other], torch.tensor(ch.XYZ_UNIT_M))
    assert torch.all(d[:, ch.XYZ][:, :, mouth] == 0)
    assert torch.allclose(d[:, ch.LOG_SCALE][:, :, mouth], torch.tensor(1.0))
    g0, g1 = uvmap.gaussians(v), uvmap.gaussians(v, off)
    moved = (g1.means - g0.means).norm(dim=-1)[0]
    in_mouth = uvmap.gather(mouth[None, None].float())[0, :, 0] > 0
    assert torch.all(moved[in_mouth] == 0)
    assert torch.allclose(moved[~in_mouth], torch.tensor(ch.XYZ_UNIT_M * 3**0.5), atol=1e-6)


def test_gradient_to_expression_matches_finite_differences(procedural_head):
    head = HeadModel(procedural_head.assets).double()
    uvmap = UVGaussianMap(head, 32).double()
    torch.manual_seed(0)
    w_means = torch.randn(1, uvmap.n_gaussians, 3, dtype=torch.float64)
    offsets = 0.3 * torch.randn(1, ch.N_CHANNELS, 32, 32, dtype=torch.float64)

    def loss(expr: torch.Tensor) -> torch.Tensor:
        g = uvmap.gaussians(head(expression=expr, jaw=torch.tensor([[0.1, 0, 0]], dtype=torch.float64)), offsets)
        return (g.means * w_means).sum() + (g.scales * g.opacities[..., None]).sum()

    expr = 0.5 * torch.randn(1, head.n_expr, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss(expr), expr)
    eps = 1e-6
    fd = torch.zeros_like(grad)
    for k in range(head.n_expr):
        e = torch.zeros_like(expr)
        e[0, k] = eps
        fd[0, k] = (loss(expr.detach() + e) - loss(expr.detach() - e)) / (2 * eps)
    assert torch.allclose(grad, fd, rtol=1e-6, atol=1e-8)
    assert grad.abs().max() > 0


def test_raster_matches_naive_twin():
    rng = np.random.default_rng(3)
    uv = rng.random((30, 2))
    faces = rng.integers(0, 30, size=(12, 3))
    S = 24
    table = rasterize_uv(uv, faces, S)
    # Naive: every texel centre against every triangle, the deepest containing triangle wins.
    expect = {}
    for r in range(S):
        for c in range(S):
            p = np.array([(c + 0.5) / S, 1 - (r + 0.5) / S])
            best = None
            for f, tri in enumerate(uv[faces]):
                T = np.array([tri[1] - tri[0], tri[2] - tri[0]]).T
                if abs(np.linalg.det(T)) < 1e-12:
                    continue
                w12 = np.linalg.solve(T, p - tri[0])
                w = np.array([1 - w12.sum(), *w12])
                if w.min() >= -1e-7 and (best is None or w.min() > best[1].min()):
                    best = (f, w)
            if best is not None:
                expect[r * S + c] = best
    assert sorted(expect) == table.flat_index.tolist()
    for k, f, w in zip(table.flat_index, table.face, table.bary):
        np.testing.assert_allclose(w, expect[k][1], atol=1e-9)
        assert f == expect[k][0] or abs(w.min()) < 1e-6  # ties on shared edges may pick either


def test_gaussians_render_calls_the_renderer(procedural_head):
    from dejavu.render import render
    from dejavu.render.camera import default_pose6, intrinsics, pose6_to_world_to_cam

    uvmap = UVGaussianMap(procedural_head, 16)
    off = torch.zeros(1, ch.N_CHANNELS, 16, 16)
    off[:, ch.LOG_SCALE] = 4.5  # ~2 cm Gaussians so 16 x 16 texels cover the face
    off[:, ch.COLOR] = 1.0
    g = uvmap.gaussians(procedural_head(batch_size=1), off)
    w2c, K = pose6_to_world_to_cam(default_pose6()), intrinsics(24, 24)
    out = g.render(w2c, K, 24, 24, backend="reference")
    ref = render(g.means, g.quats, g.scales, g.opacities, g.colors, w2c, K, 24, 24, backend="reference")
    assert torch.equal(out.rgb, ref.rgb)
    assert out.alpha[0, 12, 12, 0] > 0.9 and out.alpha[0, 0, 0, 0] < 0.05

"""The left-right mirror of driving parameters: a mirrored frame's head, seen through the mirrored camera,
lands where the original head lands in the flipped image."""

from __future__ import annotations

import pytest
import torch

from dejavu.errors import DejavuError
from dejavu.head import load_head
from dejavu.head.base import batch_rodrigues
from dejavu.head.mirror import expression_mirror, mirror_axis_angle, mirror_params, mirror_vertex_index
from dejavu.head.params import HeadParams
from dejavu.render.camera import intrinsics, mirror_cameras, orbit_pose6, pose6_to_world_to_cam, project_points

WIDTH = 256


@pytest.fixture(scope="module")
def builtin():
    pytest.importorskip("anny")
    return load_head("builtin")


def _cameras(T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """T turned cameras with an off-centre principal point (so that cx -> width - cx is tested)."""
    w2c = pose6_to_world_to_cam(orbit_pose6(torch.linspace(-40, 30, T), pitch_deg=10.0))
    K = intrinsics(WIDTH, WIDTH, batch=T)
    K[:, 0, 2] += 9.0
    K[:, 1, 2] -= 4.0
    return w2c, K


def _flipped_vs_mirrored(head, params: HeadParams, P: torch.Tensor) -> torch.Tensor:
    """(T, V) pixel distance between each vertex in the flipped image of ``params`` and its mirror vertex
    seen through the mirrored cameras at the mirrored parameters."""
    w2c, K = _cameras(len(params))
    uv = project_points(head(**params.kwargs()), w2c, K)
    w2c_m, K_m = mirror_cameras(w2c, K, WIDTH)
    uv_m = project_points(head(**mirror_params(params, P).kwargs()), w2c_m, K_m)
    flipped = uv[:, mirror_vertex_index(head.v_template)].clone()
    flipped[..., 0] = WIDTH - flipped[..., 0]
    return (uv_m - flipped).norm(dim=-1)


def test_builtin_expression_units_swap_by_name(builtin):
    P = expression_mirror(builtin.expr_names, builtin.exprdirs, builtin.v_template)
    names = builtin.expr_names
    twin = {names[i]: names[int(P[i].argmax())] for i in range(len(names))}
    assert twin["eyeBlinkLeft"] == "eyeBlinkRight" and twin["mouthSmileRight"] == "mouthSmileLeft"
    assert twin["jawOpen"] == "jawOpen" and twin["browInnerUp"] == "browInnerUp"
    assert torch.equal(P @ P, torch.eye(len(names)))  # a swap undone by itself


def test_builtin_mirrored_frame_draws_the_flipped_head(builtin):
    g = torch.Generator().manual_seed(0)
    T = 4
    params = HeadParams(0.5 * torch.rand(T, builtin.n_expr, generator=g), 0.2 * torch.randn(T, 3, generator=g),
                        0.2 * torch.randn(T, 6, generator=g))
    P = expression_mirror(builtin.expr_names, builtin.exprdirs, builtin.v_template)
    # jaw, eyes and cameras are mirrored exactly; the artist's blendshapes are symmetric to a fraction of a pixel
    rigid = HeadParams(torch.zeros_like(params.expression), params.jaw, params.eyes)
    assert _flipped_vs_mirrored(builtin, rigid, P).max() < 0.02
    err = _flipped_vs_mirrored(builtin, params, P)
    assert err.mean() < 0.05 and err.max() < 1.0


def test_unnamed_components_mirror_by_least_squares(procedural_head):
    """The procedural head's units (names without sides) are symmetric: the least-squares mirror is the identity,
    and it draws the flipped head."""
    h = procedural_head
    P = expression_mirror(h.expr_names, h.exprdirs, h.v_template)
    assert torch.allclose(P, torch.eye(h.n_expr), atol=1e-5)
    params = HeadParams(torch.rand(3, h.n_expr), 0.2 * torch.randn(3, 3), torch.zeros(3, 6))
    assert _flipped_vs_mirrored(h, params, P).max() < 1e-3


def test_antisymmetric_component_changes_sign(procedural_head):
    """A unit that moves the left side one way and the right side the other mirrors to minus itself."""
    h = procedural_head
    idx = mirror_vertex_index(h.v_template)
    E = h.exprdirs[:, :, :1].clone()
    anti = torch.zeros_like(E)
    x = h.v_template[:, :1]
    anti[:, 1] = torch.where(x.abs() > 1e-9, torch.sign(x), 0.0) * 0.01  # up on the left, down on the right
    dirs = torch.cat([E, anti], dim=2)
    P = expression_mirror(["a", "b"], dirs, h.v_template)
    assert torch.allclose(P, torch.diag(torch.tensor([1.0, -1.0])), atol=1e-5)
    assert idx.shape == (h.n_verts,)


def test_asymmetric_head_is_refused(procedural_head):
    v = procedural_head.v_template.clone()
    v[v[:, 0] > 0, 0] *= 1.2  # the left half wider
    with pytest.raises(DejavuError, match="head lopsided: not left-right symmetric"):
        mirror_vertex_index(v, "lopsided")
    with pytest.raises(DejavuError, match="no left-right mirror"):
        expression_mirror(["a"], torch.randn(len(v), 3, 1), procedural_head.v_template, "noisy")


def test_mirror_axis_angle_is_the_reflected_rotation():
    rotvec = torch.randn(16, 3, dtype=torch.float64)
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    assert torch.allclose(batch_rodrigues(mirror_axis_angle(rotvec)), M @ batch_rodrigues(rotvec) @ M, atol=1e-12)

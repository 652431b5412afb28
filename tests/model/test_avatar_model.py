"""AvatarModel: the one definition of the avatar at given parameters."""

from __future__ import annotations

import pytest
import torch

from dejavu.avatar import Avatar
from dejavu.errors import DejavuError
from dejavu.model.avatar_model import AvatarModel
from dejavu.model.blend import compose_delta, fit_pca_basis
from dejavu.model.rigid import apply_rigid, predict_corrections
from dejavu.model.views import VIEW_YAWS, views_image


def _avatar(procedural_head, S: int = 8, K: int = 3) -> Avatar:
    head = procedural_head
    g = torch.Generator().manual_seed(1)
    blend = fit_pca_basis(torch.rand(30, head.n_expr, generator=g), k=K)
    pose_model = torch.randn(6, K + 4, generator=g) * 0.01
    return Avatar(head="procedural", uv_size=S, shape=torch.randn(head.n_shape, generator=g) * 0.1,
                  mean_offsets=torch.randn(13, S, S, generator=g) * 0.1,
                  global_delta=torch.randn(13, S, S, generator=g) * 0.1,
                  blendmaps=torch.randn(K, 13, S, S, generator=g) * 0.1, blend=blend, pose_model=pose_model,
                  vertex_offsets=torch.randn(head.n_verts, 3, generator=g) * 1e-3)


def test_forward_is_head_then_offsets_then_pose_model(procedural_head):
    avatar = _avatar(procedural_head)
    model = avatar.model("cpu", head=procedural_head)
    g = torch.Generator().manual_seed(2)
    expr, jaw = torch.rand(3, procedural_head.n_expr, generator=g), torch.randn(3, 3, generator=g) * 0.05
    verts = procedural_head(shape=avatar.shape, vertex_offsets=avatar.vertex_offsets, expression=expr, jaw=jaw)
    offsets = avatar.mean_offsets + compose_delta(avatar.blend.weights(expr), avatar.blendmaps)
    expected = apply_rigid(model.uvmap.gaussians(verts, offsets),
                           predict_corrections(avatar.pose_model, avatar.blend, expr, jaw))
    got = model(expr, jaw)
    for name in ("means", "quats", "scales", "opacities", "colors"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name))
    # the reconstruction stage has neither deltas nor the pose correction
    mean = model(expr, jaw, stage="mean")
    torch.testing.assert_close(mean.means, model.uvmap.gaussians(verts, avatar.mean_offsets[None].expand(3, -1, -1, -1)).means)
    assert model.stage == "full" and model.blend.k == 3


def test_texel_path_equals_the_map_path_at_every_stage(procedural_head):
    """forward evaluates at the valid texels only; the maps' path (uvmap.gaussians of model.offsets) is its
    reference, and a stored map changed in place is seen (the gathered maps are cached)."""
    model = _avatar(procedural_head).model("cpu", head=procedural_head)
    expr = torch.rand(2, procedural_head.n_expr, generator=torch.Generator().manual_seed(3))
    verts = model.vertices(expr)
    for stage in ("full", "global", "mean"):
        offsets = model.offsets(expr, stage)
        assert model.texel_offsets(expr, stage).shape[1:] == (13, model.uvmap.n_gaussians)
        got = model.uvmap.texel_gaussians(verts, model.texel_offsets(expr, stage))
        expected = model.uvmap.gaussians(verts, offsets)
        for name in ("means", "quats", "scales", "opacities", "colors"):
            torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=1e-6, atol=1e-6)
    before = model(expr).colors.clone()
    model.blendmaps[:, 10:13] += 0.5  # colour channels, in place
    assert not torch.allclose(model(expr).colors, before)
    torch.testing.assert_close(model(expr).colors, model.uvmap.gaussians(verts, model.offsets(expr)).colors)
    own = _avatar(procedural_head).model("cpu")  # its own head model: .double() converts it
    own(expr)
    assert own.double()(expr.double()).means.dtype == torch.float64  # the cache follows the dtype


def test_buffers_move_and_the_state_is_the_avatar(procedural_head):
    model = _avatar(procedural_head).model("cpu")  # its own head model: .double() below converts it
    names = {n for n, _ in model.named_buffers(recurse=False)}
    assert {"shape", "mean_offsets", "global_delta", "blendmaps", "pose_model", "vertex_offsets", "blend_basis"} <= names
    assert model.double().mean_offsets.dtype == torch.float64  # buffers follow .to()/.double()


def test_wrong_parameters_are_one_line_errors(procedural_head):
    model = _avatar(procedural_head).model("cpu", head=procedural_head)
    with pytest.raises(DejavuError, match="expressions have 2 components"):
        model(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="stage"):
        model(torch.zeros(1, procedural_head.n_expr), stage="nope")
    with pytest.raises(DejavuError, match="UV size"):
        AvatarModel(procedural_head, model.uvmap, model.shape, torch.zeros(13, 4, 4))


def test_views_image_shows_every_yaw(procedural_head):
    model = _avatar(procedural_head).model("cpu", head=procedural_head)
    img = views_image(model, resolution=32, backend="reference")
    assert img.shape == (32, 32 * len(VIEW_YAWS), 3)
    # the head is in every view: each tile has non-white pixels
    assert all((img[:, i * 32:(i + 1) * 32] < 0.95).any() for i in range(len(VIEW_YAWS)))

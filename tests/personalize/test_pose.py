"""Per-frame pose corrections: the rigid move equals a camera move, has the right gradients, and training
recovers known pose errors of a synthetic video."""

from __future__ import annotations

import pytest
import torch
from conftest import BACKEND, tiny_config

from dejavu.head.base import batch_rodrigues
from dejavu.model.blend import fit_pca_basis
from dejavu.personalize.frames import FrameSet
from dejavu.model.rigid import TRANS_UNIT_M, apply_rigid, centred, pose_features
from dejavu.personalize.pose import fit_pose_model, refine_poses
from dejavu.personalize.train import Trainer
from dejavu.render.reference import quat_to_rotmat


def _gaussians(tiny, frames: FrameSet, idx):
    head, uvmap, true = tiny
    verts = head(shape=frames.shape, **frames.params[idx].kwargs())
    return uvmap.gaussians(verts, true[None])


def _frames_with_pose_errors(tiny, tiny_frames, truth: torch.Tensor) -> FrameSet:
    """``tiny_frames`` re-rendered with each frame's Gaussians moved by ``truth`` (T, 6)."""
    with torch.no_grad():
        moved = apply_rigid(_gaussians(tiny, tiny_frames, torch.arange(len(truth))), truth)
        rgb = moved.render(tiny_frames.world_to_cam, tiny_frames.K, 32, 32, background=(1.0, 1.0, 1.0),
                           backend=BACKEND).rgb
    return FrameSet(images=(rgb.clamp(0, 1) * 255).round().to(torch.uint8), params=tiny_frames.params,
                    world_to_cam=tiny_frames.world_to_cam, K=tiny_frames.K,
                    shape=tiny_frames.shape, index=tiny_frames.index)


def test_rigid_move_is_a_camera_move(tiny, tiny_frames):
    idx = torch.arange(3)
    g = _gaussians(tiny, tiny_frames, idx)
    p = torch.tensor([[0.05, -0.1, 0.02, 0.1, -0.05, 0.2], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                      [-0.2, 0.05, 0.1, -0.1, 0.0, 0.05]])
    moved = apply_rigid(g, p)
    # the same move as a camera: world_to_cam @ [R, c - R c + t]
    R, t = batch_rodrigues(p[:, :3]), p[:, 3:] * TRANS_UNIT_M
    c = g.means.mean(1)
    M = torch.eye(4).repeat(3, 1, 1)
    M[:, :3, :3] = R
    M[:, :3, 3] = c - (R @ c[..., None])[..., 0] + t
    w2c, K = tiny_frames.world_to_cam[idx], tiny_frames.K[idx]
    a = moved.render(w2c, K, 32, 32, background=(1.0, 1.0, 1.0), backend=BACKEND).rgb
    b = g.render(w2c @ M, K, 32, 32, background=(1.0, 1.0, 1.0), backend=BACKEND).rgb
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # orientations turn with the means
    torch.testing.assert_close(quat_to_rotmat(moved.quats), R[:, None] @ quat_to_rotmat(g.quats), atol=1e-5, rtol=1e-5)
    assert torch.allclose(apply_rigid(g, p[1:2].expand(3, -1)).means, g.means)


def test_rigid_move_gradients_match_finite_differences(tiny, tiny_frames):
    g = _gaussians(tiny, tiny_frames, torch.arange(2))
    means, quats = g.means.detach().double()[:, :40], g.quats.detach().double()[:, :40]

    def f(p):
        from dejavu.gaussians.uvmap import Gaussians

        moved = apply_rigid(Gaussians(means, quats, means, means[..., 0], means), p)
        return moved.means, moved.quats

    p = (torch.randn(2, 6, dtype=torch.float64) * 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(f, (p,))


def test_centred_corrections_have_zero_mean():
    p = torch.randn(7, 6)
    out = centred(p, torch.arange(7))
    torch.testing.assert_close(out.mean(0), torch.zeros(6), atol=1e-6, rtol=0)
    torch.testing.assert_close(centred(p, torch.tensor([2, 5])), out[[2, 5]])


def test_training_recovers_pose_errors(tiny, tiny_frames, tmp_path):
    """Targets rendered with known (centred) pose errors; the avatar is right, only the poses are off."""
    head, uvmap, true = tiny
    T = len(tiny_frames)
    g = torch.Generator().manual_seed(3)
    truth = torch.cat([torch.randn(T, 3, generator=g) * 0.03, torch.randn(T, 3, generator=g) * 0.05], 1)
    truth = truth - truth.mean(0)
    frames = _frames_with_pose_errors(tiny, tiny_frames, truth)
    # maps frozen (lr 0): only the poses can explain the images
    cfg = tiny_config(steps=60, batch_size=8, lr=0.0, lr_pose=0.01, lr_decay_every=1000, w_lpips=0.0,
                      checkpoint_every=0)
    blend = fit_pca_basis(frames.params.expression, k=cfg.n_blendmaps)
    state = Trainer(head, uvmap, frames, true, blend, cfg, tmp_path, torch.device("cpu"), progress=False).run()
    learnt = centred(state.pose, torch.arange(T))
    err_before, err_after = truth.norm(), (learnt - truth).norm()
    assert err_after < 0.3 * err_before, (err_before, err_after)
    assert state.history[-1]["psnr"] > state.history[0]["psnr"] + 5.0


def test_pose_model_fit_recovers_a_linear_map():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(50, 5, generator=g), torch.ones(50, 1)], 1)
    w = torch.randn(6, 6, generator=g) * 0.1
    torch.testing.assert_close(fit_pose_model(x @ w.T, x, ridge=1e-8), w, atol=1e-5, rtol=1e-4)
    # a feature that never changes (a still jaw) leaves the fit finite
    x[:, 2] = 0.0
    assert torch.isfinite(fit_pose_model(x @ w.T, x)).all()


def test_avatar_applies_and_stores_its_pose_model(tiny, tiny_frames, tmp_path):
    from dejavu.avatar import Avatar
    from dejavu.errors import DejavuError

    head, uvmap, true = tiny
    blend = fit_pca_basis(tiny_frames.params.expression, k=3).with_training_range(tiny_frames.params.expression)
    model = torch.zeros(6, 3 + 4)
    model[0, 0], model[5, -1] = 0.05, 0.2  # pitch with the first blend input, and a constant depth shift
    avatar = Avatar(head="procedural", uv_size=uvmap.size, shape=tiny_frames.shape, mean_offsets=true,
                    global_delta=torch.zeros_like(true), blend=blend, pose_model=model)
    e, jaw = tiny_frames.params.expression[:4], tiny_frames.params.jaw[:4]
    moved = avatar.model(head=head, uvmap=uvmap)(e, jaw)
    plain = avatar.model(head=head, uvmap=uvmap)(e, jaw, stage="mean")  # the reconstruction stage is not corrected
    expected = apply_rigid(plain, pose_features(blend, e, jaw) @ model.T)
    torch.testing.assert_close(moved.means, expected.means)
    assert (moved.means - plain.means).abs().max() > 1e-3
    loaded = Avatar.load(avatar.save(tmp_path / "a"))
    torch.testing.assert_close(loaded.pose_model, model)
    torch.testing.assert_close(loaded.model(head=head, uvmap=uvmap)(e, jaw).means, moved.means)
    with pytest.raises(DejavuError, match="pose_model has shape"):
        Avatar(head="procedural", uv_size=uvmap.size, shape=tiny_frames.shape, mean_offsets=true, blend=blend,
               pose_model=torch.zeros(6, 5))


def test_refine_poses_recovers_known_pose_errors(tiny, tiny_frames):
    """Targets rendered with known pose errors; refining each frame's pose against them finds the errors."""
    head, uvmap, true = tiny
    T = len(tiny_frames)
    g = torch.Generator().manual_seed(5)
    truth = torch.cat([torch.randn(T, 3, generator=g) * 0.03, torch.randn(T, 3, generator=g) * 0.05], 1)
    frames = _frames_with_pose_errors(tiny, tiny_frames, truth)

    def gaussians(b):
        verts = head(shape=frames.shape, **b["params"].kwargs())
        return uvmap.gaussians(verts, true[None])

    found = refine_poses(gaussians, frames, torch.device("cpu"), steps=80, lr=0.01, chunk=4, backend=BACKEND)
    assert found.shape == (T, 6)
    assert (found - truth).norm() < 0.3 * truth.norm(), ((found - truth).norm(), truth.norm())

"""Landmark fitting on synthetic landmarks from the procedural head (known camera and expression)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from dejavu.render.camera import intrinsics, pose6_to_world_to_cam, project_points
from dejavu.track.fit import FitConfig, LandmarkModel, estimate_fov, expression_bounds, fit_landmarks


def _synthetic(head, B: int, seed: int = 0, video: bool = False, fov: float = 20.0):
    g = torch.Generator().manual_seed(seed)
    shape = torch.randn(head.n_shape, generator=g) * 0.5
    expr = torch.randn(B, head.n_expr, generator=g) * 0.5
    jaw = torch.zeros(B, 3)
    jaw[:, 0] = torch.rand(B, generator=g) * 0.2
    pose = torch.zeros(B, 6)
    pose[:, 0] = torch.randn(B, generator=g) * 0.2
    pose[:, 1] = torch.randn(B, generator=g) * 0.1
    pose[:, 2] = torch.randn(B, generator=g) * 0.05
    pose[:, 3:5] = torch.randn(B, 2, generator=g) * 0.01
    pose[:, 5] = 1.0 + torch.randn(B, generator=g) * 0.05
    pose[:, 5] *= math.tan(math.radians(10.0)) / math.tan(math.radians(fov / 2))  # same size in the crop
    if video:  # smooth trajectories
        t = torch.linspace(0, 1, B)[:, None]
        expr = expr[:1] * torch.cos(3 * t) + expr[1:2] * torch.sin(3 * t)
        pose = pose[:1] + (pose[1:2] - pose[:1]) * t
        jaw = jaw[:1] * (1 + torch.sin(5 * t))
    lm = head.landmarks(head(shape, expr, jaw))
    target = project_points(lm, pose6_to_world_to_cam(pose), intrinsics(512, 512, fov, batch=B))
    return shape, expr, jaw, pose, target


def test_landmark_model_matches_head(procedural_head):
    head = procedural_head
    g = torch.Generator().manual_seed(1)
    shape, expr = torch.randn(head.n_shape, generator=g) * 0.5, torch.randn(3, head.n_expr, generator=g) * 0.5
    jaw = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [0.2, 0.02, 0]])
    ref = head.landmarks(head(shape, expr, jaw))
    got = LandmarkModel(head)(shape, expr, jaw)
    err = (got - ref).norm(dim=-1)
    assert err[0].max() < 1e-6  # no rotation: exact
    assert err.max() < 2e-3  # point skinning: within 2 mm on this coarse mesh


def test_fit_recovers_camera_and_expression(procedural_head):
    shape, expr, jaw, pose, target = _synthetic(procedural_head, 6)
    res = fit_landmarks(procedural_head, target, 512, video=False)
    assert res.error_px.max() < 1.0
    assert (res.pose6[:, :3] - pose[:, :3]).abs().max() < 0.08  # radians
    assert (res.pose6[:, 3:5] - pose[:, 3:5]).abs().max() < 0.01  # metres
    assert (res.params.expression - expr).abs().mean() < 0.15
    assert (res.params.jaw[:, 0] - jaw[:, 0]).abs().max() < 0.08
    assert res.world_to_cam.shape == (6, 4, 4) and res.projected.shape == (6, 478, 2)


def test_fit_video_chunks_and_smoothness(procedural_head):
    shape, expr, jaw, pose, target = _synthetic(procedural_head, 20, seed=2, video=True)
    cfg = FitConfig(n_keyframes=4, chunk_size=8)
    res = fit_landmarks(procedural_head, target, 512, video=True, config=cfg)
    assert res.params.expression.shape == (20, procedural_head.n_expr)
    assert res.error_px.max() < 1.5
    assert (res.pose6[:, 0] - pose[:, 0]).abs().max() < 0.08


def test_activation_expressions_stay_in_unit_range(procedural_head, monkeypatch):
    monkeypatch.setitem(procedural_head.assets.info, "expression_range", [0.0, 1.0])
    assert expression_bounds(procedural_head) == (0.0, 1.0)
    *_, target = _synthetic(procedural_head, 2, seed=3)
    res = fit_landmarks(procedural_head, target, 512, config=FitConfig(key_steps=40, key_rigid_steps=20))
    assert res.params.expression.min() >= 0.0 and res.params.expression.max() <= 1.0


def test_landmark_model_with_vertex_offsets_matches_head(procedural_head):
    from dejavu.head.detail import detail_basis

    head = procedural_head
    basis = detail_basis(head)
    detail = torch.randn(basis.shape[1], 3, generator=torch.Generator().manual_seed(4)) * 2.0  # mm
    expr = torch.zeros(2, head.n_expr)
    jaw = torch.tensor([[0.0, 0, 0], [0.15, 0, 0]])
    ref = head.landmarks(head(torch.zeros(head.n_shape), expr, jaw, vertex_offsets=basis @ detail * 1e-3))
    got = LandmarkModel(head, basis)(torch.zeros(head.n_shape), expr, jaw, detail=detail)
    assert (got - ref).norm(dim=-1)[0].max() < 1e-6
    assert (got - ref).norm(dim=-1).max() < 2e-3


def test_fit_recovers_shape_outside_the_identity_basis(procedural_head):
    """Landmarks of a face the identity basis cannot make (a smooth 2-4 mm change): the offset field
    takes it up, the fit error drops, and the fitted offsets follow the true ones."""
    from dejavu.head.detail import detail_basis

    head = procedural_head
    basis = detail_basis(head)
    g = torch.Generator().manual_seed(5)
    offsets = basis @ torch.randn(basis.shape[1], 3, generator=g) * 0.6e-3  # metres
    B = 12
    pose = torch.zeros(B, 6)
    pose[:, 0] = torch.linspace(-0.5, 0.5, B)  # yaw sweep: several views of one face
    pose[:, 5] = 1.0
    expr = torch.zeros(B, head.n_expr)
    lm = head.landmarks(head(torch.zeros(head.n_shape), expr, vertex_offsets=offsets))
    target = project_points(lm, pose6_to_world_to_cam(pose), intrinsics(512, 512, batch=B))
    cfg = FitConfig(n_keyframes=B, fov_deg=20.0)
    plain = fit_landmarks(head, target, 512, video=True, config=dataclasses.replace(cfg, detail=False))
    fitted = fit_landmarks(head, target, 512, video=True, config=cfg)
    assert fitted.vertex_offsets.shape == (head.n_verts, 3)
    assert plain.vertex_offsets.abs().max() == 0
    rms = lambda e: float(e.pow(2).mean().sqrt())  # noqa: E731
    assert rms(fitted.error_px) < 0.6 * rms(plain.error_px)
    on_face = offsets.norm(dim=-1) > 0.5e-3
    cos = torch.nn.functional.cosine_similarity(fitted.vertex_offsets[on_face, :2].flatten(),
                                                offsets[on_face, :2].flatten(), dim=0)
    assert cos > 0.5  # in-image directions; depth is weakly seen by landmarks


def _fov_of(K) -> float:
    return math.degrees(2 * math.atan(256.0 / float(K[0, 0, 0])))


@pytest.mark.parametrize("fov", [20.0, 40.0])
def test_fit_video_estimates_the_field_of_view(procedural_head, fov):
    *_, target = _synthetic(procedural_head, 12, seed=4, video=True, fov=fov)
    res = fit_landmarks(procedural_head, target, 512, video=True, config=FitConfig(n_keyframes=6))
    assert abs(_fov_of(res.K) - fov) < 4.0
    assert res.error_px.max() < 1.5
    # given in degrees, it is used as is; photos keep the default unless told
    fixed = fit_landmarks(procedural_head, target, 512, video=True, config=FitConfig(fov_deg=30.0, n_keyframes=6))
    assert _fov_of(fixed.K) == pytest.approx(30.0)
    photo = fit_landmarks(procedural_head, target[:1], 512, video=False)
    assert _fov_of(photo.K) == pytest.approx(20.0)


def test_estimate_fov_finds_the_minimum_and_keeps_the_default_when_flat():
    calls = []

    def fit_at(depth, best=37.0):
        def f(fov):
            calls.append(fov)
            return {"fov": fov}, 2.0 + depth * (fov - best) ** 2

        return f

    fov, params = estimate_fov(fit_at(1e-3), 10.0, 60.0, default=20.0, min_gain=0.01)
    assert fov == pytest.approx(37.0, abs=0.1) and params == {"fov": fov}
    assert len(calls) == 4  # three probes and the parabola's vertex, none repeated
    # 17 degrees off the minimum costs 0.5% of the error: the landmarks do not determine the FOV
    fov, params = estimate_fov(fit_at(3e-5), 10.0, 60.0, default=20.0, min_gain=0.01)
    assert fov == 20.0 and params == {"fov": 20.0}
    # a minimum beyond the range: the estimate stays inside it
    fov, _ = estimate_fov(fit_at(1e-3, best=90.0), 10.0, 60.0, default=20.0, min_gain=0.01)
    assert fov == 60.0


def test_head_terms_are_built_once_and_fit_as_fresh_ones(procedural_head):
    """The fit's head-dependent parts are kept per process (a data worker fits hundreds of people): a second
    head model of the same assets reuses them, and the fit equals one with freshly built parts."""
    from dejavu.head import load_head
    from dejavu.track import fit as fit_module

    target = _synthetic(procedural_head, 2)[-1]
    fit_module._HEAD_TERMS.clear()
    fresh = fit_landmarks(procedural_head, target, 512, config=FitConfig(key_steps=30, key_rigid_steps=10))
    terms = fit_module._head_terms(procedural_head, FitConfig())
    again = fit_landmarks(load_head("procedural"), target, 512, config=FitConfig(key_steps=30, key_rigid_steps=10))
    assert fit_module._head_terms(load_head("procedural"), FitConfig()) is terms and len(fit_module._HEAD_TERMS) == 1
    for name in ("shape", "pose6", "vertex_offsets"):
        assert torch.equal(getattr(fresh, name), getattr(again, name)), name
    assert torch.equal(fresh.params.expression, again.params.expression)

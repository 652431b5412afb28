"""Per-person vertex offsets: the RBF basis and the head model's ``vertex_offsets`` argument."""

from __future__ import annotations

import torch

from dejavu.head.base import JOINT_EYE_L, REGION_ID
from dejavu.head.detail import detail_basis, farthest_points, landmark_rest_positions, support


def test_farthest_points_cover_within_spacing():
    pts = torch.rand(500, 3, generator=torch.Generator().manual_seed(0))
    idx = farthest_points(pts, 0.2)
    d = torch.cdist(pts, pts[idx]).min(1).values
    assert d.max() <= 0.2 and len(idx) < 200
    assert torch.equal(idx, farthest_points(pts, 0.2))  # deterministic


def test_basis_is_local_and_moves_eyeballs_rigidly(procedural_head):
    head = procedural_head
    basis = detail_basis(head)
    V = head.n_verts
    assert basis.shape[0] == V and basis.min() >= 0
    # one at each control point's own position (a landmark), nothing far from the landmarks
    lm = landmark_rest_positions(head)
    far = torch.cdist(head.v_template, lm).min(1).values > 0.05
    assert far.any() and basis[far].abs().max() == 0
    # every vertex of an eyeball gets the same row: a rigid shift, so the eye still turns about its joint
    eye = head.lbs_weights[:, head.joint_index(JOINT_EYE_L)] > 0.5
    assert eye.sum() >= 3 and torch.allclose(basis[eye], basis[eye][:1].expand_as(basis[eye]))
    assert support(basis).sum() < V


def test_forward_adds_offsets_before_expressions_and_skinning(procedural_head):
    head = procedural_head
    g = torch.Generator().manual_seed(0)
    shape, expr = torch.randn(head.n_shape, generator=g) * 0.3, torch.randn(2, head.n_expr, generator=g) * 0.3
    offsets = detail_basis(head) @ torch.randn(detail_basis(head).shape[1], 3, generator=g) * 1e-3
    plain = head(shape, expr)
    assert torch.allclose(head(shape, expr, vertex_offsets=torch.zeros(head.n_verts, 3)), plain)
    # no pose: offsets add as they are (a (V, 3) field broadcast over the batch)
    assert torch.allclose(head(shape, expr, vertex_offsets=offsets) - plain, offsets.expand(2, -1, -1), atol=1e-6)
    # jaw open: mouth vertices move with the jaw, so the offsets are rotated with it (not simply added)
    jaw = torch.tensor([[0.3, 0.0, 0.0]]).expand(2, 3)
    moved = head(shape, expr, jaw, vertex_offsets=offsets) - head(shape, expr, jaw)
    mouth = head.faces[head.face_region == REGION_ID["mouth"]].unique()
    assert (moved[:, mouth] - offsets[mouth]).norm(dim=-1).max() > 1e-5

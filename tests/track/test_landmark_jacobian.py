"""The live fit's closed-form landmarks and Jacobian against LandmarkModel + projection and autograd."""

from __future__ import annotations

import copy

import pytest
import torch

from dejavu.render.camera import intrinsics, pose6_to_world_to_cam, project_points
from dejavu.track.fit import LandmarkModel
from dejavu.track.landmark_jacobian import LandmarkJacobian, rodrigues_with_derivative


def _double_model(head, offsets=None) -> LandmarkModel:
    """A float64 LandmarkModel on a copy of ``head`` (``.double()`` would convert the shared fixture too)."""
    model = LandmarkModel(copy.deepcopy(head), offsets).double()
    if model.posedirs is not None:
        model.posedirs = model.posedirs.double()
    return model


def _jacobian(f, theta):
    return torch.autograd.functional.jacobian(f, theta, vectorize=True, strategy="forward-mode")


def _head_with_posedirs(head, seed: int = 0):
    """The procedural head with random pose correctives (no shipped head with them is small enough for tests)."""
    head = copy.deepcopy(head)
    g = torch.Generator().manual_seed(seed)
    head.posedirs = torch.randn(9 * (len(head.joint_names) - 1), head.n_verts * 3, generator=g) * 2e-3
    return head


def _theta(ne: int, seed: int, rotations: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pose = torch.tensor([0.25, -0.1, 0.08, 0.01, -0.02, 1.0])
    joints = torch.cat([torch.tensor([0.2, 0.03, -0.02]), torch.randn(6, generator=g) * 0.1])
    return torch.cat([pose, torch.randn(ne, generator=g) * 0.5, joints if rotations else torch.zeros(9)]).double()


def _reference(model: LandmarkModel, shape: torch.Tensor, K: torch.Tensor, ne: int):
    def f(theta):
        lm = model(shape, theta[None, 6:6 + ne], theta[None, 6 + ne:9 + ne], theta[None, 9 + ne:15 + ne])
        return project_points(lm, pose6_to_world_to_cam(theta[None, :6]), K[None])[0]
    return f


@pytest.mark.parametrize("posedirs", [False, True])
@pytest.mark.parametrize("rotations", [True, False])
def test_values_and_jacobian_match_autograd(procedural_head, posedirs, rotations):
    head = _head_with_posedirs(procedural_head) if posedirs else procedural_head
    ne = head.n_expr
    model = _double_model(head)
    shape = torch.randn(head.n_shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.5
    K = intrinsics(256, 256, 20.0, dtype=torch.float64)[0]
    fast = LandmarkJacobian(model, shape, None, K)
    theta = _theta(ne, 1, rotations)
    ref = _reference(model, shape, K, ne)
    proj, jac = fast(theta)
    torch.testing.assert_close(proj, ref(theta), rtol=0, atol=1e-9)
    want = _jacobian(ref, theta)  # (L, 2, N)
    assert jac.shape == want.shape == (478, 2, 15 + ne)
    torch.testing.assert_close(jac, want, rtol=1e-6, atol=1e-6 * float(want.abs().max()))
    assert fast(theta, jacobian=False)[1] is None


def test_vertex_offsets_enter_like_landmark_model(procedural_head):
    """The person's offsets as a 3-column basis with coefficients 1e3 I (as the live fitters pass them)."""
    head = procedural_head
    offsets = torch.randn(head.n_verts, 3, generator=torch.Generator().manual_seed(2)) * 3e-3
    model = _double_model(head, offsets)
    shape, detail = torch.zeros(head.n_shape, dtype=torch.float64), 1e3 * torch.eye(3, dtype=torch.float64)
    K = intrinsics(256, 256, 20.0, dtype=torch.float64)[0]
    theta = _theta(head.n_expr, 4)
    ne = head.n_expr
    lm = model(shape, theta[None, 6:6 + ne], theta[None, 6 + ne:9 + ne], theta[None, 9 + ne:], detail=detail)
    want = project_points(lm, pose6_to_world_to_cam(theta[None, :6]), K[None])[0]
    torch.testing.assert_close(LandmarkJacobian(model, shape, detail, K)(theta)[0], want, rtol=0, atol=1e-9)


@pytest.mark.parametrize("scale", [0.0, 1e-9, 1e-3, 1.0, 3.0])
def test_rodrigues_derivative(scale):
    w = torch.tensor([[0.3, -0.5, 0.8], [1.0, 0.0, 0.0], [0.2, 0.2, -0.1]], dtype=torch.float64) * scale
    _, dR = rodrigues_with_derivative(w)
    from dejavu.head.base import batch_rodrigues

    for i in range(len(w)):
        want = _jacobian(lambda v: batch_rodrigues(v[None])[0], w[i])  # (3, 3, 3k)
        torch.testing.assert_close(dR[i], want.permute(2, 0, 1), rtol=1e-6, atol=2e-6)


def test_refuses_a_fitted_joint_under_another(procedural_head):
    head = copy.deepcopy(procedural_head)
    parents = head.parents.clone()
    parents[head.joint_index("eye_left")] = head.joint_index("jaw")
    head.parents = parents
    with pytest.raises(ValueError, match="under fitted joint"):
        LandmarkJacobian(LandmarkModel(head), torch.zeros(head.n_shape), None, intrinsics(256, 256)[0])

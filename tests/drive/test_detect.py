"""Driving files told apart by content, and turned into Drives for the head they drive."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dejavu.drive import drive_from_file
from dejavu.drive.arkit import ARKIT_NAMES, ArkitSequence
from dejavu.drive.convert import drive_from_arkit, drive_from_flame, euler_to_axis_angle
from dejavu.drive.detect import detect_drive_format, read_drive_file
from dejavu.drive.flame_seq import FlameSequence
from dejavu.errors import DejavuError
from tests.drive.conftest import blendshape_json, live_link_csv


def _files(tmp, rng):
    w = rng.uniform(0, 1, size=(8, 52)).astype(np.float32)
    live_link_csv(tmp / "take.txt", w)  # suffix says nothing: content decides
    (tmp / "bs.csv").write_text("jawOpen,mouthSmileLeft\n0.5,0.25\n0.1,0.2\n")
    blendshape_json(tmp / "lam.json", w)
    np.savez(tmp / "flame.npz", exp=rng.normal(size=(8, 50)), jaw=np.zeros((8, 3)), fps=np.array(25.0))
    (tmp / "params.json").write_text(json.dumps({"expression": [[0.0] * 6] * 3, "fps": 10}))
    np.savez(tmp / "params.npz", expression=np.zeros((3, 6)))


def test_detect_each_format(tmp_path, rng):
    _files(tmp_path, rng)
    want = {"take.txt": "live_link_csv", "bs.csv": "blendshape_csv", "lam.json": "blendshape_json",
            "flame.npz": "flame_npz", "params.json": "params_json", "params.npz": "params_npz"}
    for name, fmt in want.items():
        assert read_drive_file(tmp_path / name)[0] == fmt, name


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"),
    (b"\x00\x01binary junk", "not a driving file"),
    (b"0.1,0.2\n0.3,0.4\n", "without a header"),
    (b'{"foo": 1}', "JSON object with keys foo"),
    (b"[1, 2]", "not a driving file"),
])
def test_unknown_content_is_refused_in_one_line(tmp_path, content, match):
    (tmp_path / "x.csv").write_bytes(content)
    with pytest.raises(DejavuError, match=match) as info:
        read_drive_file(tmp_path / "x.csv")
    assert "x.csv" in str(info.value) and "\n" not in str(info.value)


def test_npz_without_known_keys(tmp_path):
    np.savez(tmp_path / "x.npz", foo=np.zeros(3))
    with pytest.raises(DejavuError, match="an .npz with foo"):
        detect_drive_format(tmp_path / "x.npz")


def test_arkit_drives_an_arkit_named_head_by_name(arkit_head, rng):
    w = rng.uniform(0, 1, size=(5, 52)).astype(np.float32)
    head = np.zeros((5, 3), np.float32)
    head[:, 0] = 0.3
    d = drive_from_arkit(ArkitSequence(weights=w, fps=60, head_pose=head), arkit_head)
    for i, name in enumerate(arkit_head.expr_names):
        np.testing.assert_array_equal(d.params.expression[:, i].numpy(), w[:, ARKIT_NAMES.index(name)])
    assert d.fps == 60 and torch.equal(d.head_pose, torch.from_numpy(head)) and d.params.jaw.abs().sum() == 0


def test_arkit_drives_flame_through_the_map(arkit_head, fake_flame_head, rng):
    w = np.zeros((2, 52), np.float32)
    w[1, ARKIT_NAMES.index("jawOpen")] = 1.0
    d = drive_from_arkit(ArkitSequence(weights=w, fps=30), fake_flame_head, builtin_head=arkit_head)
    assert d.params.expression.shape == (2, fake_flame_head.n_expr) and d.params.expression[0].abs().max() == 0
    assert d.params.expression[1].abs().max() > 0


def test_flame_sequence_drives_flame_and_arkit_heads(arkit_head, fake_flame_head, rng):
    seq = FlameSequence(exp=rng.normal(size=(4, 50)).astype(np.float32), jaw=np.full((4, 3), 0.1, np.float32))
    d = drive_from_flame(seq, fake_flame_head, "f.npz")
    assert d.params.expression.shape == (4, 100) and torch.all(d.params.expression[:, 50:] == 0)
    np.testing.assert_array_equal(d.params.expression[:, :50].numpy(), seq.exp)
    with pytest.raises(DejavuError, match="DEJAVU_FLAME"):
        drive_from_flame(seq, arkit_head, "f.npz")
    d = drive_from_flame(seq, arkit_head, "f.npz", flame_head=fake_flame_head)
    assert d.params.expression.shape == (4, 52) and d.params.expression.min() >= 0 and d.params.expression.max() <= 1
    np.testing.assert_array_equal(d.params.jaw.numpy(), seq.jaw)


def test_drive_from_file_params_and_flame(tmp_path, rng, fake_flame_dir):
    _files(tmp_path, rng)
    d = drive_from_file(tmp_path / "params.json", "procedural")
    assert d.params.expression.shape == (3, 6) and d.fps == 10
    d = drive_from_file(tmp_path / "flame.npz", f"flame:{fake_flame_dir}")
    assert d.params.expression.shape == (8, 100) and d.fps == 25


def test_euler_to_axis_angle_matches_the_camera_convention(rng):
    from dejavu.head.base import batch_rodrigues
    from dejavu.render.camera import euler_to_matrix

    a = rng.normal(scale=0.4, size=(6, 3)).astype(np.float32)
    t = torch.from_numpy(a)
    want = euler_to_matrix(t[:, 0], t[:, 1], t[:, 2])
    got = batch_rodrigues(torch.from_numpy(euler_to_axis_angle(a)))
    assert torch.allclose(got, want, atol=1e-5)

"""`dejavu animate --drive` and `dejavu export` with the interchange files, on a minimal built-in-head avatar."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dejavu.cli import main
from tests.drive.conftest import live_link_csv


@pytest.fixture(scope="module")
def avatar_dir(tmp_path_factory):
    """A built-in-head avatar with zero offsets (no training): enough to drive and export."""
    from dejavu.avatar import Avatar
    from dejavu.errors import DejavuError
    from dejavu.head import load_head

    try:
        head = load_head("builtin")
    except DejavuError as exc:  # pragma: no cover - anny is a dependency
        pytest.skip(f"built-in head unavailable: {exc}")
    out = tmp_path_factory.mktemp("av")
    Avatar(head="builtin", uv_size=16, shape=torch.zeros(head.n_shape), mean_offsets=torch.zeros(13, 16, 16)).save(out)
    return out


@pytest.fixture
def take(tmp_path):
    rng = np.random.default_rng(0)
    w = np.zeros((12, 52), np.float32)
    w[:, 17] = np.linspace(0, 1, 12)  # jawOpen
    head = np.zeros((12, 3))
    head[:, 0] = np.linspace(-0.3, 0.3, 12)
    live_link_csv(tmp_path / "take.csv", w, fps=60, head=head, eyes=rng.normal(scale=0.05, size=(12, 6)))
    return tmp_path / "take.csv"


def test_export_sequence_with_index(avatar_dir, take, tmp_path, capsys):
    from dejavu.splat_formats import read_splat

    out = tmp_path / "seq"
    assert main(["export", str(avatar_dir), "--drive", str(take), "-o", str(out), "--format", "splat",
                 "--frames", "4"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["fps"] == 60 and index["frames"] == 4 and index["format"] == ".splat" and index["up"] == "-y"
    first, last = (read_splat(out / index["files"][i]) for i in (0, 3))
    assert len(first["means"]) == index["gaussians"] and not np.allclose(np.sort(first["means"][:, 1]),
                                                                         np.sort(last["means"][:, 1]))
    assert str(out) in capsys.readouterr().out
    assert main(["export", str(avatar_dir), "--drive", str(take), "-o", str(out)]) == 2
    assert "already holds an exported sequence" in capsys.readouterr().err


def test_export_one_frame_of_a_live_link_take(avatar_dir, take, tmp_path):
    from dejavu.export import read_ply

    out = tmp_path / "a.ply"
    assert main(["export", str(avatar_dir), "--params", str(take), "--frame", "11", "-o", str(out),
                 "--sh-degree", "3", "--up", "y"]) == 0
    props = read_ply(out)
    assert "f_rest_44" in props and b"+Y up" in out.read_bytes()[:600]


def test_export_refuses_unknown_suffix_in_one_line(avatar_dir, tmp_path, capsys):
    assert main(["export", str(avatar_dir), "-o", str(tmp_path / "x.splatt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "x.splatt: no writer for '.splatt'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.splatt").exists()


def test_animate_live_link_take_turns_the_head(avatar_dir, take, tmp_path):
    import imageio.v3 as iio

    out = tmp_path / "a.mp4"
    assert main(["animate", str(avatar_dir), "--drive", str(take), "-o", str(out), "--resolution", "32",
                 "--device", "cpu"]) == 0
    frames = iio.imread(out)
    assert len(frames) == 12
    assert np.abs(frames[0].astype(float) - frames[-1].astype(float)).mean() > 1.0  # the head turned


def test_bad_drive_file_is_one_line(avatar_dir, tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("Timecode,BlendShapeCount,Foo\n")
    assert main(["animate", str(avatar_dir), "--drive", str(tmp_path / "bad.csv"), "-o", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.csv: no frames" in err and len(err.splitlines()) == 1


def test_export_params_errors_name_the_option(avatar_dir, tmp_path, capsys):
    (tmp_path / "bad.json").write_text('{"names": ["jawOpen"], "frames": []}')
    assert main(["export", str(avatar_dir), "--params", str(tmp_path / "bad.json"), "-o", str(tmp_path / "a.ply")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("--params") == 1 and "bad.json: no frames" in err and not (tmp_path / "a.ply").exists()

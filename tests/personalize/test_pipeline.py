"""End to end on a synthetic tracking directory: personalize -> evaluate -> animate -> export, via the CLI."""

from __future__ import annotations

import dataclasses
import json
import logging

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from conftest import BACKEND, R, S

from dejavu.cli import main


@pytest.fixture(scope="module")
def tracked(tiny, tmp_path_factory):
    from synthetic import synthetic_tracking_dir

    head, uvmap, true = tiny
    d = tmp_path_factory.mktemp("tracking")
    synthetic_tracking_dir(d, head, uvmap, true, T=10, crop=64, backend=BACKEND)
    return d


@pytest.fixture(scope="module")
def avatar_dir(tracked, tmp_path_factory, monkeypatch_module):
    from dejavu.personalize import config

    # the CLI's cpu preset, shrunk to the tiny synthetic scene
    small = dict(uv_size=S, resolution=R, batch_size=4, n_blendmaps=3, lpips_start=2, preview_every=0,
                 checkpoint_every=4, render_backend=BACKEND, head="procedural")
    monkeypatch_module.setitem(config.PRESETS, "cpu", lambda: config.PersonalizeConfig(**small))
    out = tmp_path_factory.mktemp("avatar")
    assert main(["personalize", str(tracked), "-o", str(out), "--steps", "10", "--device", "cpu"]) == 0
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_personalize_writes_an_avatar(avatar_dir):
    from dejavu.avatar import Avatar

    avatar = Avatar.load(avatar_dir)
    assert avatar.head == "procedural" and avatar.uv_size == S and avatar.blendmaps.shape[0] == 3
    assert avatar.training["steps"] == 10 and avatar.settings["train_frames"] == 9
    assert avatar.training["metrics"]["psnr_full"] > 10
    assert avatar.blend.kind == "pca_softmax" and avatar.blend.temperature == 2.0  # the scheme's default
    assert (avatar_dir / "train" / "checkpoint.pt").is_file()
    # the avatar from six sides: every tile shows the head
    views = imageio.imread(avatar_dir / "views.png")
    assert views.shape == (R, 6 * R, 3)
    tiles = views.reshape(R, 6, R, 3).transpose(1, 0, 2, 3)
    assert all((tile < 200).any(axis=-1).mean() > 0.05 for tile in tiles)


def test_evaluate_video(avatar_dir, tracked, tmp_path):
    out = tmp_path / "m.json"
    assert main(["evaluate", str(avatar_dir), "--video", str(tracked), "--json", str(out), "--frames",
                 str(tmp_path / "f"), "--device", "cpu", "--refine-pose"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["frames"] == 1 and metrics["frame_index"] == [9]
    assert set(metrics["stages"]) == {"full", "global", "full_refined_pose"}
    assert set(metrics["refined_pose"]) == {"steps", "mean_rotation_deg", "mean_translation_mm"}
    # fitted to the image, the refined pose cannot score worse than the tracked one
    refined, tracked_pose = metrics["stages"]["full_refined_pose"]["image"], metrics["stages"]["full"]["image"]
    assert refined["PSNR"] > tracked_pose["PSNR"] - 0.1
    for stage in metrics["stages"].values():
        assert set(stage) == {"face", "head", "image"}
        assert set(stage["head"]) == {"L1", "PSNR", "SSIM", "LPIPS-alex", "LPIPS-vgg"}
    assert (tmp_path / "f" / "full" / "pred_000009.png").is_file()
    assert (tmp_path / "f" / "full_refined_pose" / "pred_000009.png").is_file()
    assert (tmp_path / "f" / "target" / "000009.png").is_file()
    # per-frame PSNRs average to the stage's; the overview is one row: target, 3 stages, error map
    for stage, pf in metrics["per_frame"].items():
        assert np.mean(pf["image"]) == pytest.approx(metrics["stages"][stage]["image"]["PSNR"], abs=1e-3)
        assert np.mean(pf["face"]) == pytest.approx(metrics["stages"][stage]["face"]["PSNR"], abs=1e-3)
    target = imageio.imread(tmp_path / "f" / "target" / "000009.png")
    assert imageio.imread(tmp_path / "f" / "overview.png").shape[:2] == (target.shape[0], 5 * target.shape[1])


def test_evaluate_other_holdout_and_resolution(avatar_dir, tracked, tmp_path, caplog):
    """--holdout yaw on an avatar trained with the last-10% split: the most turned frame is scored, and the
    frames the avatar trained on are counted and logged; --resolution renders at another side."""
    out = tmp_path / "m.json"
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", str(avatar_dir), "--video", str(tracked), "--json", str(out), "--holdout", "yaw",
                     "--resolution", str(2 * R), "--device", "cpu"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["holdout"] == "yaw" and metrics["resolution"] == 2 * R and metrics["frames"] == 1
    assert metrics["trained_on"] == (0 if metrics["frame_index"] == [9] else 1)
    assert ("trained the avatar" in caplog.text) == bool(metrics["trained_on"])


def test_evaluate_argument_errors(avatar_dir, tracked, tmp_path, capsys):
    for args, message in ((["--video", str(tracked)], "--json FILE: required with --video and --image"),
                          (["--novel-views", "--holdout", "yaw"], "--holdout: only with --video"),
                          (["--video", str(tracked), "--json", "x.json", "--stage", "mean"], "--stage: only with"),
                          (["--novel-views", "--resolution", "0"], "--resolution 0: expected a positive")):
        assert main(["evaluate", str(avatar_dir), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_evaluate_novel_views_cli(avatar_dir, tmp_path, capsys):
    """A procedural head barely looks like a face to MediaPipe: views without one are reported as such."""
    out = tmp_path / "nv.json"
    assert main(["evaluate", str(avatar_dir), "--novel-views", "--json", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    record = json.loads(out.read_text())
    assert len(record["views"]) == 33 and record["summary"]["faces_found"] < 33 and record["resolution"] == R
    assert "no face" in printed and "yaw +-30/+-45" in printed and f"renders in {out.with_suffix('.png')}" in printed
    assert imageio.imread(out.with_suffix(".png")).shape[:2] == (3 * 192, 11 * 192)


def test_evaluate_takes_no_error_outside_the_source_frame(avatar_dir, tracked, tmp_path):
    """A tracking whose crops ran past the bottom of the source frame: the prediction is scored as equal to the
    target there (those target pixels are repeated border pixels, not the person), except under the jaw line,
    which is known to be outside the head wherever it lies."""
    import shutil

    from dejavu.track.result import load_tracking, save_tracking

    d = tmp_path / "tracking"
    shutil.copytree(tracked, d)
    res = load_tracking(d)
    crop = int(res.crop_size)
    res.source_hw = np.tile([crop - crop // 4, crop], (len(res), 1))  # the bottom quarter lay below the frame
    save_tracking(res, d)
    assert main(["evaluate", str(avatar_dir), "--video", str(d), "--json", str(tmp_path / "m.json"), "--frames",
                 str(tmp_path / "f"), "--device", "cpu"]) == 0
    pred = imageio.imread(tmp_path / "f" / "full" / "pred_000009.png").astype(int)
    target = imageio.imread(tmp_path / "f" / "target" / "000009.png").astype(int)
    rows = pred.shape[0] - pred.shape[0] // 4
    r, i = pred.shape[0], int(np.flatnonzero(res.frame_index == 9)[0])
    known = res.known(i).reshape(r, crop // r, r, crop // r)
    unknown = ~known.any((1, 3))
    assert unknown[rows:].mean() > 0.3 and not unknown[:rows].any()
    assert np.abs(pred - target)[unknown].max() <= 1
    assert np.abs(pred[:rows] - target[:rows]).max() > 1
    assert known.all((1, 3))[rows:].any()  # under the jaw line: known although off the frame


def test_animate_sweep_and_params(avatar_dir, tmp_path):
    out = tmp_path / "sweep.mp4"
    assert main(["animate", str(avatar_dir), "--expressions", "--frames", "6", "--resolution", "32",
                 "-o", str(out), "--device", "cpu"]) == 0
    frames = imageio.mimread(out)
    assert len(frames) == 6 and frames[0].shape == (32, 32, 3)
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"expression": np.zeros((3, 6)).tolist(), "jaw": [[0.1, 0, 0]] * 3, "fps": 10}))
    assert main(["animate", str(avatar_dir), "--drive", str(params), "--camera", "fixed",
                 "-o", str(tmp_path / "p.mp4"), "--device", "cpu"]) == 0
    frames = imageio.mimread(tmp_path / "p.mp4")
    assert len(frames) == 3 and frames[0].shape == (512, 512, 3)  # the default side


def test_animate_source_cameras_side_by_side(avatar_dir, tracked, tmp_path):
    out = tmp_path / "reenact.mp4"
    assert main(["animate", str(avatar_dir), "--drive", str(tracked), "--side-by-side", "--resolution", "32",
                 "-o", str(out), "--device", "cpu"]) == 0
    frames = imageio.mimread(out)
    assert len(frames) == 10 and frames[0].shape == (32, 64, 3)


def test_animate_refine_pose(avatar_dir, tracked, tmp_path, capsys):
    """Re-rendering the tracked video with each frame's pose fitted to its crop: as close to the crops as
    the tracked poses or closer, and clear errors where there is no image or no source camera."""
    from dejavu.animate import refine_drive_poses, render_sequence
    from dejavu.drive.sources import load_drive
    from dejavu.avatar import Avatar
    from dejavu.personalize.frames import frames_from_tracking

    out = tmp_path / "refined.mp4"
    assert main(["animate", str(avatar_dir), "--drive", str(tracked), "--refine-pose", "--frames", "4",
                 "--resolution", str(R), "-o", str(out), "--device", "cpu"]) == 0
    assert "refined poses:" in capsys.readouterr().out
    assert len(imageio.mimread(out)) == 4

    avatar = Avatar.load(avatar_dir)
    model = avatar.model("cpu")
    drive = load_drive(tracked, avatar.head)
    corr, w2c, K = refine_drive_poses(model, drive, R, progress=False)
    target = frames_from_tracking(drive.tracking, R).images.float() / 255.0
    first = frames_from_tracking(drive.tracking, R, n_frames=3)  # reads only the first 3 crops
    assert len(first) == 3 and first.index.tolist() == drive.tracking.frame_index[:3].tolist()
    torch.testing.assert_close(first.images.float() / 255.0, target[:3])
    assert first.shape.shape == (len(drive.tracking.shape),) and first.world_to_cam.shape == (3, 4, 4)

    def l1(c):
        return float(np.mean([np.abs(f - t.numpy()).mean() for f, t in zip(
            render_sequence(model, drive, w2c, K, R, backend=BACKEND, progress=False, corrections=c), target)]))

    assert corr.shape == (len(drive), 6)
    assert l1(corr) <= l1(None) + 1e-4

    params = tmp_path / "p.json"
    params.write_text(json.dumps({"expression": np.zeros((3, 6)).tolist()}))
    assert main(["animate", str(avatar_dir), "--drive", str(params), "--refine-pose", "-o", str(out)]) == 2
    assert "--drive must be a video or a tracking directory" in capsys.readouterr().err
    assert main(["animate", str(avatar_dir), "--drive", str(tracked), "--refine-pose", "--camera", "fixed",
                 "-o", str(out)]) == 2
    assert "needs --camera source" in capsys.readouterr().err


def test_bad_drive_file(avatar_dir, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"expression": np.zeros((3, 4)).tolist()}))
    assert main(["animate", str(avatar_dir), "--drive", str(bad), "-o", str(tmp_path / "x.mp4")]) == 2
    assert "4 components" in capsys.readouterr().err
    bad.write_text(json.dumps({"jaw": [[0, 0, 0]]}))
    assert main(["animate", str(avatar_dir), "--drive", str(bad), "-o", str(tmp_path / "x.mp4")]) == 2
    assert "no 'expression'" in capsys.readouterr().err


def test_export_ply(avatar_dir, tmp_path):
    from dejavu.avatar import Avatar
    from dejavu.export import ply_to_activated, read_ply

    out = tmp_path / "a.ply"
    assert main(["export", str(avatar_dir), "-o", str(out), "--device", "cpu"]) == 0
    act = ply_to_activated(read_ply(out))
    assert act["means"].shape == (Avatar.load(avatar_dir).model("cpu").uvmap.n_gaussians, 3)
    assert np.all(np.isfinite(act["means"])) and np.all(act["scales"] > 0)


def test_fov_errors_are_one_line(tracked, tmp_path, capsys):
    assert main(["personalize", str(tracked), "-o", str(tmp_path / "a"), "--fov", "30"]) == 2
    assert "is a tracking directory" in capsys.readouterr().err
    assert main(["track", str(tracked), "-o", str(tmp_path / "t"), "--fov", "wide"]) == 2
    assert "--fov wide: expected degrees between 1 and 120, or auto" in capsys.readouterr().err


def test_missing_avatar_is_a_clear_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "-o", str(tmp_path / "a.ply")]) == 2
    assert "no such avatar directory" in capsys.readouterr().err


def test_personalize_refine_pose_stores_a_pose_model(tracked, avatar_dir, tmp_path):
    from dejavu.avatar import Avatar

    out = tmp_path / "posed"
    assert main(["personalize", str(tracked), "-o", str(out), "--steps", "6", "--refine-pose", "--device", "cpu"]) == 0
    avatar = Avatar.load(out)
    assert avatar.pose_model is not None and avatar.pose_model.shape == (6, avatar.blend.k + 4)
    record = avatar.training["pose_refinement"]
    assert set(record) == {"mean_rotation_deg", "mean_translation_mm", "explained_by_expression"}
    assert avatar.settings["config"]["lr_pose"] > 0
    assert Avatar.load(avatar_dir).pose_model is None  # off by default


def test_refine_pose_needs_a_video(avatar_dir, tmp_path, capsys):
    assert main(["evaluate", str(avatar_dir), "--image", str(tmp_path / "x.png"), "--json", str(tmp_path / "m.json"),
                 "--refine-pose"]) == 2
    assert "--refine-pose: only with --video" in capsys.readouterr().err


def test_personalize_one_frame_says_nothing_is_held_out(tiny, avatar_dir, tmp_path, capsys, caplog):
    """One photo trains on its only frame: the summary and the log say so instead of a PSNR of nan or {}."""
    from synthetic import synthetic_tracking_dir

    # avatar_dir: its fixture shrinks the cpu preset to the tiny scene for this module
    caplog.set_level(logging.INFO, logger="dejavu")
    head, uvmap, true = tiny
    synthetic_tracking_dir(tmp_path / "photo", head, uvmap, true, T=1, crop=64, backend=BACKEND)
    assert main(["personalize", str(tmp_path / "photo"), "-o", str(tmp_path / "one"), "--steps", "2",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "no held-out frames to score" in out and "nan" not in out
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("personalize: 2 steps")]
    assert logged and logged[-1].endswith("no held-out frames to score"), logged


def test_steps_replace_a_presets_budget(avatar_dir, tracked, tmp_path, monkeypatch):
    """`--preset fidelity` carries a 15-minute budget; `--steps N` runs exactly N steps instead."""
    from dejavu.avatar import Avatar
    from dejavu.personalize import config

    assert (config.preset("fidelity").uv_size, config.preset("fidelity").resolution) == (256, 512)
    assert config.preset("fidelity").minutes == 15.0 and config.preset("cpu").minutes is None
    # avatar_dir: its fixture shrinks the cpu preset to the tiny scene; a budgeted twin of it
    monkeypatch.setitem(config.PRESETS, "fidelity", lambda: dataclasses.replace(config.preset("cpu"), minutes=10.0))
    assert main(["personalize", str(tracked), "-o", str(tmp_path / "a"), "--preset", "fidelity", "--steps", "3",
                 "--device", "cpu"]) == 0
    assert Avatar.load(tmp_path / "a").training["steps"] == 3


def test_heldout_summary_reads_both_stages():
    from dejavu.personalize.pipeline import heldout_summary

    assert heldout_summary({"psnr_global": 17.8, "psnr_full": 23.104}) == \
        "held-out PSNR 23.10 dB (stage 1 alone 17.80)"
    assert heldout_summary({}) == "no held-out frames to score"


def test_bench_quality_scores_against_the_targets_and_resumes(avatar_dir, tracked, tmp_path, capsys):
    """`dejavu bench quality`: personalize + evaluate per video, a pass/fail per target, a JSON record;
    a second run reads the evaluation it finds instead of training again."""
    import json

    from dejavu.bench.quality import check_targets

    out, record = tmp_path / "q", tmp_path / "q.json"
    args = ["bench", "quality", str(tracked), "--steps", "4", "-o", str(out), "--device", "cpu", "--json", str(record)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"| {tracked.name} | last 1 | 4 |" in printed and f"avatars and evaluations in {out}" in printed
    assert f"| {tracked.name}_yaw | yaw 1 | 4 |" in printed  # both held-out protocols, one avatar each
    row, yaw_row = json.loads(record.read_text())["rows"]
    assert row["steps"] == 4 and row["frames"] == 1 and set(row["image"]) >= {"PSNR", "SSIM", "LPIPS-alex"}
    assert set(row["checks"]) == {"PSNR >= 24", "SSIM >= 0.88", "LPIPS-alex <= 0.12", "stage 2 > stage 1",
                                  "<= 15 min"}  # the procedural head has no face MediaPipe finds: no novel-view ratio
    assert row["novel_views"]["ratio_to_network"] is None and "checks" not in yaw_row
    yaw_avatar = json.loads((out / f"{tracked.name}_yaw" / "avatar.json").read_text())
    assert yaw_avatar["settings"]["config"]["holdout"] == "yaw" and yaw_avatar["settings"]["train_frames"] < 9
    mtime = (out / tracked.name / "avatar.safetensors").stat().st_mtime
    assert main(args) == 0
    assert (out / tracked.name / "avatar.safetensors").stat().st_mtime == mtime
    # the rules themselves
    good = {"stages": {"full": {"image": {"PSNR": 24.5, "SSIM": 0.9, "LPIPS-alex": 0.05}},
                       "global": {"image": {"PSNR": 20.0}}}}
    assert all(check_targets(good, 600.0).values())
    bad = {"stages": {"full": {"image": {"PSNR": 23.1, "SSIM": 0.92, "LPIPS-alex": 0.13}},
                      "global": {"image": {"PSNR": 23.5}}}}
    assert [k for k, ok in check_targets(bad, 901.0).items() if not ok] == \
        ["PSNR >= 24", "LPIPS-alex <= 0.12", "stage 2 > stage 1", "<= 15 min"]


def test_orbit_camera_sweeps_the_asked_yaw(avatar_dir, tmp_path, capsys):
    from dejavu.animate import cameras

    center = (0.0, 0.02, 0.01)
    w2c, K = cameras("orbit", 4, 64, center, orbit_deg=60.0)  # yaw 60 sin(2 pi t / 4): 0, 60, 0, -60
    eye = -(w2c[:, :3, :3].transpose(1, 2) @ w2c[:, :3, 3:])[..., 0] - torch.tensor(center)
    front = eye[0] / eye[0].norm()
    angles = torch.rad2deg(torch.arccos((eye @ front) / eye.norm(dim=1)))
    torch.testing.assert_close(angles, torch.tensor([0.0, 60.0, 0.0, 60.0]), atol=1e-2, rtol=0)
    assert torch.sign(eye[1, 0]) == -torch.sign(eye[3, 0])  # one side, then the other
    assert main(["animate", str(avatar_dir), "--expressions", "--orbit-degrees", "200", "-o",
                 str(tmp_path / "o.mp4")]) == 2
    assert "--orbit-degrees 200" in capsys.readouterr().err

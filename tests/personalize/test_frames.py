"""Frame sets: feature masks from landmarks, intrinsics rescaling, the 90/10 split, the expression sweep."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavu.errors import DejavuError
from dejavu.personalize.frames import FEATURE_POLYGONS, NOSE_POINTS, feature_masks, resize_images, scale_intrinsics


def test_feature_mask_fills_the_polygons():
    lm = np.zeros((1, 478, 2), np.float32) + 1000.0  # everything off-image...
    square = np.array([[10, 10], [20, 10], [20, 20], [10, 20]], np.float32)
    ids = FEATURE_POLYGONS["lips"]
    lm[0, list(ids)] = np.resize(square, (len(ids), 2))  # ...except the lips, a 10 px square
    lm[0, list(NOSE_POINTS)] = 40.0  # a degenerate nose (all one point) is skipped
    m = feature_masks(lm, 64)[0, ..., 0] > 0
    assert m[15, 15] and not m[5, 5] and not m[30, 30]
    assert 80 <= m.sum() <= 121  # the 10 x 10 square (pixel centres inside)


def test_scale_intrinsics_keeps_the_view():
    from dejavu.render.camera import intrinsics, project_points

    K512 = intrinsics(512, 512)
    K256 = scale_intrinsics(K512, 512, 256)
    pts = torch.tensor([[[0.05, -0.02, 0.1]]])
    w2c = torch.eye(4)[None]
    w2c[0, 2, 3] = 1.0
    torch.testing.assert_close(project_points(pts, w2c, K256), project_points(pts, w2c, K512) / 2)
    torch.testing.assert_close(K256[0, :2, 2], torch.tensor([128.0, 128.0]))


def test_split_and_subset(tiny_frames):
    train, held = tiny_frames.split(0.9)
    assert len(train) == 7 and len(held) == 1  # round(8 * 0.9) = 7
    assert torch.equal(held.images[0], tiny_frames.images[7]) and torch.equal(train.shape, tiny_frames.shape)
    b = tiny_frames.batch(torch.tensor([0, 2]), "cpu")
    assert b["images"].shape == (2, 3, 32, 32) and b["images"].max() <= 1.0 and b["feature"].shape == (2, 1, 32, 32)


def test_resize_images_constant_stays_constant():
    img = np.full((2, 64, 64, 3), 77, np.uint8)
    out = resize_images(img, 16)
    assert out.shape == (2, 16, 16, 3) and int(out.min()) == 77 and int(out.max()) == 77


def test_expression_sweep_for_arkit_and_pca_heads(procedural_head):
    from types import SimpleNamespace

    from dejavu.drive.sources import expression_sweep

    seq = expression_sweep(procedural_head, 40)
    assert seq.params.expression.shape == (40, procedural_head.n_expr) and seq.params.expression.abs().max() > 1.0
    names = ["eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight", "browInnerUp"]
    arkit = SimpleNamespace(expr_names=names, n_expr=len(names))
    seq = expression_sweep(arkit, 60)
    assert 0.0 <= float(seq.params.expression.min()) and float(seq.params.expression.max()) <= 1.0
    assert float(seq.params.expression[:, 2].max()) > 0.9 and float(seq.params.jaw[:, 0].max()) > 0.2  # jaw opens
    assert float(seq.params.expression[:, 0].max()) > 0.9  # blinks happen


def test_cli_rejects_bad_numbers(tmp_path, capsys):
    from dejavu.cli import main

    assert main(["personalize", str(tmp_path), "-o", str(tmp_path / "a"), "--steps", "0"]) == 2
    assert "--steps 0" in capsys.readouterr().err
    assert main(["personalize", str(tmp_path), "-o", str(tmp_path / "a"), "--resolution", "255"]) == 2
    assert "even" in capsys.readouterr().err
    assert main(["animate", str(tmp_path), "--expressions", "-o", str(tmp_path / "x.mp4"), "--resolution", "31"]) == 2
    assert "even" in capsys.readouterr().err


def test_world_to_cam_yaw_inverts_the_pose():
    from dejavu.render.camera import pose6_to_world_to_cam, world_to_cam_yaw

    pose = torch.tensor([[0.4, 0.2, -0.1, 0.01, 0.0, 1.0], [-0.7, -0.3, 0.2, 0.0, 0.02, 0.9], [0.0, 0.5, 0.0, 0, 0, 1]])
    torch.testing.assert_close(world_to_cam_yaw(pose6_to_world_to_cam(pose)), pose[:, 0])


def test_yaw_holdout_takes_the_most_turned_frames_and_a_margin():
    from dejavu.personalize.frames import holdout_split
    from dejavu.render.camera import pose6_to_world_to_cam

    T = 40
    yaw = torch.zeros(T)
    yaw[10], yaw[30], yaw[31], yaw[5] = 0.5, -0.6, -0.55, 0.1  # the 4 most turned frames: 30, 31, 10, 5
    pose = torch.zeros(T, 6)
    pose[:, 0], pose[:, 5] = yaw, 1.0
    w2c = pose6_to_world_to_cam(pose)
    train, held = holdout_split(w2c, 0.9, "yaw", margin=2)
    assert held.tolist() == [5, 10, 30, 31]  # 10% of 40, in frame order
    kept_out = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 28, 29, 30, 31, 32, 33}
    assert set(train.tolist()) == set(range(T)) - kept_out
    train, held = holdout_split(w2c, 0.9, "last", margin=2)  # the paper's split ignores the margin
    assert train.tolist() == list(range(36)) and held.tolist() == [36, 37, 38, 39]
    train, held = holdout_split(w2c[:3], 0.5, "yaw", margin=5)  # margins swallow everything: one frame trains
    assert len(train) == 1 and len(held) >= 1 and not set(train.tolist()) & set(held.tolist())


def test_holdout_names_are_checked():
    import pytest

    from dejavu.errors import DejavuError
    from dejavu.personalize.frames import holdout_split

    with pytest.raises(DejavuError, match="--holdout 'side'"):
        holdout_split(torch.eye(4)[None].repeat(4, 1, 1), 0.9, "side")


def test_downsampled_batch_sees_the_same_view(tiny, tiny_frames):
    """A render at R/2 with the halved batch's intrinsics has the full render's silhouette centre (to 0.02
    px) and matches it averaged over 2x2 blocks; every pixel field is averaged the same way."""
    from conftest import BACKEND
    from synthetic import synthetic_frames

    from dejavu.personalize.frames import BATCH_PIXELS, downsample_batch

    batch = tiny_frames.batch(torch.arange(4), "cpu")
    half = downsample_batch(batch, 2)
    R = tiny_frames.resolution
    for name in BATCH_PIXELS:
        if batch[name] is not None:
            assert half[name].shape[-2:] == (R // 2, R // 2)
            torch.testing.assert_close(half[name], torch.nn.functional.avg_pool2d(batch[name], 2))
    with pytest.raises(DejavuError, match="not divisible"):
        downsample_batch(batch, 3)

    head, uvmap, true = tiny
    R = 128  # Gaussians a few pixels wide, so that 2x2 averaging is close to rendering at half size
    frames = synthetic_frames(head, uvmap, true, T=2, R=R, backend=BACKEND)
    batch = frames.batch(torch.arange(2), "cpu")
    half = downsample_batch(batch, 2)
    g = uvmap.gaussians(head(**frames.identity(), **batch["params"].kwargs()), true[None])
    full = g.render(batch["world_to_cam"], batch["K"], R, R, background=(1.0, 1.0, 1.0), backend=BACKEND)
    small = g.render(half["world_to_cam"], half["K"], R // 2, R // 2, background=(1.0, 1.0, 1.0), backend=BACKEND)

    def centre(alpha):  # (B, H, W, 1) -> (B, 2) x, y in pixels (pixel centres at i + 0.5)
        a = alpha[..., 0]
        ys, xs = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) + 0.5 for n in a.shape[1:]), indexing="ij")
        return torch.stack([(a * xs).sum((1, 2)), (a * ys).sum((1, 2))], -1) / a.sum((1, 2))[:, None]

    torch.testing.assert_close(centre(small.alpha), centre(full.alpha) / 2, atol=0.02, rtol=0)
    pooled = torch.nn.functional.avg_pool2d(full.rgb.permute(0, 3, 1, 2), 2)
    assert (small.rgb.permute(0, 3, 1, 2) - pooled).abs().mean() < 0.01

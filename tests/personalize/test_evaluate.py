"""Per-frame scores and the overview picture of ``dejavu evaluate``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavu.personalize.evaluate import overview, per_frame_psnr, silhouette_iou


def test_per_frame_psnr_known_errors():
    target = torch.full((3, 3, 8, 8), 0.5)
    pred = target.clone()
    pred[0] += 0.1  # MSE 0.01 everywhere: 20 dB
    pred[1, :, :4] += 0.01  # MSE 1e-4 on the top half only
    pred[2] += 0.001  # 60 dB
    face = torch.zeros(3, 1, 8, 8)
    face[:, :, :4] = 1.0
    out = per_frame_psnr({"full": pred}, target, face)["full"]
    assert out["image"] == pytest.approx([20.0, 43.01, 60.0], abs=0.01)  # 1e-4 over half the image: 43 dB
    assert out["face"] == pytest.approx([20.0, 40.0, 60.0], abs=0.01)  # the face is the top half


def test_overview_rows_columns_and_error_map():
    T, R = 10, 32
    target = torch.rand(T, 3, R, R)
    preds = {"full": target.clone(), "global": 1.0 - target}
    pic = overview(preds, target, per_frame_psnr(preds, target, torch.ones(T, 1, R, R)), rows=4)
    assert pic.shape == (4 * R, 4 * R, 3) and pic.dtype == np.uint8  # target | full | global | error
    # a perfect prediction's error cell is the colour map's zero, uniform below the label
    err = pic[R - 8:R, 3 * R:]
    assert (err == err[0, 0]).all()


def test_quick_heldout_psnr_is_the_mean_per_frame_psnr(monkeypatch):
    """What personalize prints is the evaluation's whole-image PSNR (mean over frames), not the PSNR of the
    pooled error: two frames with errors 0.1 and 0.01 give (20 + 40) / 2 = 30 dB, not 23.0."""
    import dejavu.personalize.pipeline as pipeline
    from dejavu.personalize.pipeline import quick_heldout_psnr

    target = torch.full((2, 3, 4, 4), 0.5)
    pred = target + torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)
    monkeypatch.setattr(pipeline, "render_avatar", lambda *args, **kwargs: pred)

    class Frames:
        def pixels(self, name):
            return target if name == "images" else None

    out = quick_heldout_psnr(None, Frames())
    assert out["psnr_full"] == pytest.approx(30.0, abs=1e-3) and out["psnr_global"] == pytest.approx(30.0, abs=1e-3)


def test_silhouette_iou_counts_what_sticks_out_and_what_is_missing():
    mask = torch.zeros(2, 1, 10, 10)
    mask[:, :, 2:8, 2:8] = 1.0  # a 6x6 head
    alpha = mask.clone()
    assert silhouette_iou(alpha, mask) == pytest.approx(1.0)
    alpha[0, :, 0:2, 2:8] = 0.9  # frame 0: 12 pixels of hair sticking out -> 36 / 48
    alpha[1, :, 2:5, 2:8] = 0.2  # frame 1: the top half missing (below 0.5) -> 18 / 36
    assert silhouette_iou(alpha, mask) == pytest.approx((36 / 48 + 18 / 36) / 2)
    seen = torch.ones_like(mask)
    seen[0, :, 0:2] = 0.0  # unknown pixels (outside the source frame) count neither way
    assert silhouette_iou(alpha, mask, seen) == pytest.approx((1.0 + 0.5) / 2)

"""Image metrics against skimage.metrics and plain numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from dejavu.errors import DejavuError
from dejavu.metrics import image as im


def _pair(b: int = 2, h: int = 48, w: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, 3, h, w, generator=g, dtype=torch.float64)
    pred = (target + 0.1 * torch.randn(b, 3, h, w, generator=g, dtype=torch.float64)).clamp(0, 1)
    return pred, target


def _np(x: torch.Tensor, i: int) -> np.ndarray:
    return x[i].permute(1, 2, 0).numpy()


def _sk_ssim(p: np.ndarray, t: np.ndarray, **kw):
    return structural_similarity(p, t, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, **kw)


def test_psnr_l1_match_numpy_and_skimage():
    pred, target = _pair()
    got = im.psnr(pred, target)
    for i in range(2):
        assert got[i].item() == pytest.approx(peak_signal_noise_ratio(_np(target, i), _np(pred, i), data_range=1.0),
                                              rel=1e-10)
    assert im.l1(pred, target).tolist() == pytest.approx((pred - target).abs().mean(dim=(1, 2, 3)).tolist())


def test_masked_psnr_l1_average_over_mask_pixels():
    pred, target = _pair()
    mask = torch.zeros(2, 1, 48, 40, dtype=torch.float64)
    mask[0, :, 10:30, 5:25] = 1
    mask[1, :, :20] = 1
    for i in range(2):
        sel = mask[i, 0].bool()
        diff = (pred[i] - target[i])[:, sel]
        assert im.l1(pred, target, mask)[i].item() == pytest.approx(diff.abs().mean().item(), rel=1e-12)
        assert im.psnr(pred, target, mask)[i].item() == pytest.approx(
            -10 * np.log10(diff.square().mean().item()), rel=1e-12)


def test_ssim_matches_skimage_and_pytorch_msssim():
    from pytorch_msssim import ssim as pm_ssim

    pred, target = _pair()
    got = im.ssim(pred, target)
    for i in range(2):
        assert got[i].item() == pytest.approx(_sk_ssim(_np(pred, i), _np(target, i)), abs=1e-6)
    assert got.tolist() == pytest.approx(pm_ssim(pred, target, data_range=1.0, size_average=False).tolist(), abs=1e-6)
    assert im.ssim(target, target).tolist() == pytest.approx([1.0, 1.0])


def test_masked_ssim_is_mean_of_skimage_map_over_mask():
    pred, target = _pair(b=1)
    mask = torch.zeros(1, 1, 48, 40, dtype=torch.float64)
    mask[..., 8:40, 12:36] = 1
    _, smap = _sk_ssim(_np(pred, 0), _np(target, 0), full=True)  # (H, W, 3), valid inside a 5 px border
    sel = mask[0, 0].numpy().astype(bool)
    sel[:5], sel[-5:], sel[:, :5], sel[:, -5:] = False, False, False, False
    assert im.ssim(pred, target, mask).item() == pytest.approx(smap[sel].mean(), abs=1e-6)
    ones = torch.ones(1, 1, 48, 40, dtype=torch.float64)
    assert im.ssim(pred, target, ones).item() == pytest.approx(im.ssim(pred, target).item(), rel=1e-12)


def test_ms_ssim():
    from pytorch_msssim import ms_ssim as pm_ms_ssim

    pred, target = _pair(b=1, h=176, w=176)
    assert im.ms_ssim(pred, target).item() == pytest.approx(pm_ms_ssim(pred, target, data_range=1.0).item())
    assert im.ms_ssim(target, target).item() == pytest.approx(1.0)
    mask = torch.zeros(1, 1, 176, 176, dtype=torch.float64)
    mask[..., 40:120, 40:120] = 1
    assert im.ms_ssim(pred, target, mask).item() > im.ms_ssim(pred, target).item()  # white outside = identical
    with pytest.raises(DejavuError, match="160"):
        im.ms_ssim(*_pair(b=1, h=64, w=64))


def test_bad_shapes():
    pred, target = _pair()
    with pytest.raises(DejavuError, match="pred/target"):
        im.l1(pred, target[:, :, :10])
    with pytest.raises(DejavuError, match="mask"):
        im.psnr(pred, target, torch.ones(2, 3, 48, 40))
    with pytest.raises(DejavuError, match="11x11"):
        im.ssim(pred[..., :8, :8], target[..., :8, :8])


def test_masked_lpips_composites_on_white(lpips_weights):
    pred, target = (x.float() for x in _pair(b=1, h=64, w=64))
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    white = torch.ones_like(pred)
    inside = lambda x: x * mask + white * (1 - mask)  # noqa: E731
    from dejavu.metrics.lpips import get_lpips

    assert im.lpips(pred, target, mask).item() == pytest.approx(get_lpips("alex")(inside(pred), inside(target)).item())
    # differences outside the mask do not count
    noisy = pred.clone()
    noisy[..., :8, :] = 0
    assert im.lpips(noisy, target, mask, net="vgg").item() == pytest.approx(im.lpips(pred, target, mask, net="vgg").item())


def test_evaluate_images(lpips_weights):
    pred, target = (x.float() for x in _pair(b=2, h=64, w=64))
    face = torch.zeros(2, 1, 64, 64)
    face[..., 16:48, 16:48] = 1
    out = im.evaluate_images(pred, target, {"face": face, "head": None})
    assert set(out) == {"face", "head"}
    assert set(out["face"]) == set(im.METRIC_NAMES)
    assert all(isinstance(v, float) for r in out.values() for v in r.values())
    assert out["head"]["PSNR"] == pytest.approx(im.psnr(pred, target).mean().item())
    assert out["face"]["SSIM"] == pytest.approx(im.ssim(pred, target, face).mean().item())
    assert 0 < out["face"]["LPIPS-alex"] < out["head"]["LPIPS-alex"]
    assert im.evaluate_images(pred, target, metrics=("L1",)) == {"full": {"L1": pytest.approx(im.l1(pred, target).mean().item())}}
    with pytest.raises(DejavuError, match="unknown"):
        im.evaluate_images(pred, target, metrics=("FID",))


def test_evaluate_predictions_matches_one_at_a_time(lpips_weights):
    """Several predictions against shared targets (target LPIPS features computed once) give exactly
    what evaluate_images gives for each."""
    pred, target = (x.float() for x in _pair(b=2, h=64, w=64))
    other = (pred * 0.7 + 0.1).clamp(0, 1)
    face = torch.zeros(2, 1, 64, 64)
    face[..., 16:48, 16:48] = 1
    masks = {"face": face, "image": None}
    both = im.evaluate_predictions({"a": pred, "b": other}, target, masks)
    assert list(both) == ["a", "b"]
    for name, p in (("a", pred), ("b", other)):
        one = im.evaluate_images(p, target, masks)
        for region in masks:
            assert both[name][region] == pytest.approx(one[region], rel=1e-6)


def test_real_photo_metrics_degrade_with_blur(shared_data, lpips_weights):
    """On a real face photo, stronger blur -> lower PSNR/SSIM and higher LPIPS (both nets)."""
    import torch.nn.functional as F

    from dejavu.io import read_image

    photo = read_image(shared_data / "lfw" / "Tara_Reid" / "Tara_Reid_0001.jpg")  # (250, 250, 3)
    target = torch.from_numpy(photo[61:189, 61:189]).permute(2, 0, 1)[None].contiguous()  # central 128x128
    blurred = [F.avg_pool2d(F.pad(target, (k // 2,) * 4, mode="replicate"), k, stride=1) for k in (3, 7)]
    pred = torch.cat(blurred)
    out = [im.evaluate_images(p[None], target)["full"] for p in pred]
    for name in ("PSNR", "SSIM"):
        assert out[0][name] > out[1][name], name
    for name in ("L1", "LPIPS-alex", "LPIPS-vgg"):
        assert 0 < out[0][name] < out[1][name], name

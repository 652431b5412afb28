"""Image metrics: L1, PSNR, SSIM, MS-SSIM, LPIPS, each batched and optionally restricted to a mask.

Every function takes ``pred`` and ``target`` as (B, 3, H, W) float tensors in [0, 1] and an optional
``mask`` (B, 1, H, W) (or (B, H, W)) in {0, 1} (soft values act as weights) and returns one value per
image, shape (B,). :func:`evaluate_images` averages them over the batch and returns python floats.

How masks are applied (the paper's "face" / "head" region metrics):
    * L1, PSNR: averaged over mask pixels (and channels) only.
    * SSIM: the SSIM map (valid 11x11 Gaussian window, sigma 1.5, as pytorch-msssim and skimage with
      ``gaussian_weights=True, use_sample_covariance=False``) averaged over the mask; the mask is
      cropped by the window radius (5 px) to line up with the valid map.
    * MS-SSIM, LPIPS: these see whole images, so both images get the pixels outside the mask set to the
      background (white, 1.0) and the metric is computed on the composites.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from dejavu.errors import DejavuError
from dejavu.metrics.lpips import get_lpips

#: Gaussian SSIM window (pytorch-msssim / skimage / Wang et al. 2004 defaults).
SSIM_WIN_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K = (0.01, 0.03)
#: PSNR is capped where the images are identical (MSE clamped to this).
MIN_MSE = 1e-10
#: Metric names :func:`evaluate_images` reports, in order.
METRIC_NAMES = ("L1", "PSNR", "SSIM", "LPIPS-alex", "LPIPS-vgg")


def _check(pred: Tensor, target: Tensor, mask: Tensor | None) -> Tensor | None:
    """Validate shapes; return the mask as (B, 1, H, W) in the images' dtype (or None)."""
    if pred.ndim != 4 or pred.shape != target.shape:
        raise DejavuError(f"pred/target: expected two (B, C, H, W) tensors of one shape, got "
                          f"{tuple(pred.shape)} and {tuple(target.shape)}")
    if mask is None:
        return None
    if mask.ndim == 3:
        mask = mask[:, None]
    b, _, h, w = pred.shape
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2:] != (h, w) or mask.shape[0] not in (1, b):
        raise DejavuError(f"mask: expected shape ({b}, 1, {h}, {w}), got {tuple(mask.shape)}")
    return mask.to(dtype=pred.dtype).expand(b, 1, h, w)


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Per-image mean of ``values`` (B, C, H, W) over the mask (B, 1, H, W) and channels -> (B,)."""
    if mask is None:
        return values.flatten(1).mean(1)
    weight = mask.expand_as(values)
    return (values * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1e-8)


def composite(image: Tensor, mask: Tensor | None, background: float = 1.0) -> Tensor:
    """Keep ``image`` (B, C, H, W) inside ``mask`` (B, 1, H, W), ``background`` outside."""
    if mask is None:
        return image
    return image * mask + background * (1.0 - mask)


def l1(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error per image over (mask) pixels and channels -> (B,)."""
    mask = _check(pred, target, mask)
    return _masked_mean((pred - target).abs(), mask)


def mse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error per image over (mask) pixels and channels -> (B,)."""
    mask = _check(pred, target, mask)
    return _masked_mean((pred - target).square(), mask)


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio in dB, data range 1, per image -> (B,). Masked: MSE over mask pixels."""
    return 10.0 * torch.log10(1.0 / mse(pred, target, mask).clamp_min(MIN_MSE))


def _gauss_window(size: int, sigma: float, like: Tensor) -> Tensor:
    """Normalised 1-D Gaussian, shape (size,), on ``like``'s device/dtype."""
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - size // 2
    g = torch.exp(-coords.square() / (2.0 * sigma**2))
    return g / g.sum()


def _blur_valid(x: Tensor, win: Tensor) -> Tensor:
    """Separable 'valid' Gaussian filter of (B, C, H, W) -> (B, C, H - k + 1, W - k + 1)."""
    c = x.shape[1]
    k = win.numel()
    x = F.conv2d(x, win.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, win.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def ssim_map(pred: Tensor, target: Tensor, win_size: int = SSIM_WIN_SIZE, sigma: float = SSIM_SIGMA) -> Tensor:
    """Per-pixel SSIM (B, C, H - win_size + 1, W - win_size + 1) with a valid Gaussian window, range 1."""
    if min(pred.shape[-2:]) < win_size:
        raise DejavuError(f"ssim: images must be at least {win_size}x{win_size} pixels, got "
                          f"{tuple(pred.shape[-2:])}")
    win = _gauss_window(win_size, sigma, pred)
    c1, c2 = SSIM_K[0] ** 2, SSIM_K[1] ** 2
    mu_x, mu_y = _blur_valid(pred, win), _blur_valid(target, win)
    sxx = _blur_valid(pred * pred, win) - mu_x.square()
    syy = _blur_valid(target * target, win) - mu_y.square()
    sxy = _blur_valid(pred * target, win) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x.square() + mu_y.square() + c1)
    contrast_structure = (2 * sxy + c2) / (sxx + syy + c2)
    return luminance * contrast_structure


def ssim(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Structural similarity per image -> (B,). Masked: mean of the SSIM map over the (cropped) mask."""
    mask = _check(pred, target, mask)
    smap = ssim_map(pred, target)
    if mask is not None:
        r = SSIM_WIN_SIZE // 2
        mask = mask[..., r:-r, r:-r]
    return _masked_mean(smap, mask)


def ms_ssim(pred: Tensor, target: Tensor, mask: Tensor | None = None, background: float = 1.0) -> Tensor:
    """Multi-scale SSIM (pytorch-msssim, 5 scales: images need a side > 160 px) per image -> (B,).

    Masked: computed on both images with the outside of the mask set to ``background``.
    """
    from pytorch_msssim import ms_ssim as _ms_ssim

    mask = _check(pred, target, mask)
    if min(pred.shape[-2:]) <= (SSIM_WIN_SIZE - 1) * 2**4:
        raise DejavuError(f"ms_ssim: images must be larger than 160 px on each side, got {tuple(pred.shape[-2:])}")
    return _ms_ssim(composite(pred, mask, background), composite(target, mask, background),
                    data_range=1.0, size_average=False)


def lpips(pred: Tensor, target: Tensor, mask: Tensor | None = None, net: str = "alex",
          background: float = 1.0) -> Tensor:
    """LPIPS distance per image -> (B,) with the cached pretrained ``net`` ("alex" | "vgg").

    Masked: both images get the outside of the mask set to ``background`` (white) first, as the
    paper's face/head region metrics do.
    """
    mask = _check(pred, target, mask)
    model = get_lpips(net, pred.device)  # float32 weights
    x, y = (composite(v, mask, background).float() for v in (pred, target))
    return model(x, y)


@torch.no_grad()
def evaluate_images(pred: Tensor, target: Tensor, masks: Mapping[str, Tensor | None] | None = None,
                    metrics: tuple[str, ...] = METRIC_NAMES) -> dict[str, dict[str, float]]:
    """All metrics per region, averaged over the batch, as python floats.

    Args:
        pred, target: (B, 3, H, W) in [0, 1].
        masks: region name -> (B, 1, H, W) mask (``None`` = whole image), e.g. {"face": ..., "head": ...}.
            Default: one region "full" covering the whole image.
        metrics: a subset of :data:`METRIC_NAMES`.

    Returns:
        ``{region: {metric: value}}``, e.g. ``out["face"]["PSNR"]``.
    """
    return evaluate_predictions({"pred": pred}, target, masks, metrics)["pred"]


@torch.no_grad()
def evaluate_predictions(preds: Mapping[str, Tensor], target: Tensor, masks: Mapping[str, Tensor | None] | None = None,
                         metrics: tuple[str, ...] = METRIC_NAMES) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`evaluate_images` for several predictions of the same targets (e.g. the stages of a model):
    ``{name: {region: {metric: value}}}``. The LPIPS features of each region's target are computed once
    for all predictions (LPIPS-VGG is ~0.4 s per 256^2 image on a 2-core CPU)."""
    unknown = set(metrics) - set(METRIC_NAMES)
    if unknown:
        raise DejavuError(f"metrics: unknown {sorted(unknown)}; expected a subset of {list(METRIC_NAMES)}")
    fns = {"L1": l1, "PSNR": psnr, "SSIM": ssim}
    lpips_nets = {k: get_lpips(k.removeprefix("LPIPS-"), target.device) for k in metrics if k not in fns}
    masks = {"full": None} if masks is None else masks
    out: dict = {name: {} for name in preds}
    for region, mask in masks.items():
        m = _check(target, target, mask)
        y = composite(target, m).float()
        # the target composite's features, shared by every prediction
        target_feats = {k: model.unit_features(y) for k, model in lpips_nets.items()} if preds else {}
        for name, pred in preds.items():
            _check(pred, target, mask)
            vals = {k: float(fns[k](pred, target, mask).mean()) for k in metrics if k in fns}
            x = composite(pred, m).float()
            for k, model in lpips_nets.items():
                vals[k] = float(model.distance(model.unit_features(x), target_feats[k]).mean())
            out[name][region] = {k: vals[k] for k in metrics}
    return out

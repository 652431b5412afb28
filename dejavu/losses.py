"""Training losses shared by reconstruction (paper Eq. 4-8) and personalization.

Images are (B, 3, H, W) in [0, 1]; masks (B, 1, H, W) in {0, 1}; UV maps (B, C, S, S) with channels
from :mod:`dejavu.gaussians.channels`. Every loss returns a scalar tensor (mean over the batch).
Loss weights are arguments: the defaults live in the reconstruction/personalization configs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu.errors import DejavuError
from dejavu.metrics import image as im
from dejavu.render.reference import quat_to_rotmat

# --- pixels without a ground truth --------------------------------------------------------------

def fill_unseen(pred: Tensor, target: Tensor, seen: Tensor | None) -> Tensor:
    """``pred`` where ``seen`` (B, 1, R, R) is 1, ``target`` elsewhere (B, C, R, R): pixels outside the
    source frame then carry no error and no gradient, whatever the loss or metric."""
    return pred if seen is None else pred * seen + target.detach() * (1.0 - seen)


def fade_outside(pred: Tensor, alpha: Tensor, mask: Tensor, background: float = 1.0) -> Tensor:
    """``pred`` (B, 3, R, R) over a uniform ``background``, with the same values but, outside ``mask``
    (B, 1, R, R; soft at the outline), gradients that reach only the opacity ``alpha`` (B, 1, R, R), not the
    Gaussians' colours: there the target is the background, and the Gaussians may only fade into it."""
    a = alpha.clamp_min(1e-4)
    color = ((pred - (1.0 - alpha) * background) / a).detach()  # what covers the pixel, opacity-weighted mean
    faded = alpha * color + (1.0 - alpha) * background
    return mask * pred + (1.0 - mask) * faded


# --- reconstruction: the render term (Eq. 4) -----------------------------------------------------

def render_loss_terms(pred: Tensor, target: Tensor, mask: Tensor | None = None,
                      lpips_net: nn.Module | None = None, ssim_kind: str = "ssim") -> dict[str, Tensor]:
    """Unweighted render terms, each a scalar averaged over the batch.

    Args:
        pred: (B, 3, H, W) rendered image in [0, 1].
        target: (B, 3, H, W) ground truth in [0, 1] (background white).
        mask: optional (B, 1, H, W) region the loss sees; ``None`` = whole image. L1 and SSIM average
            over it; LPIPS compares both images with the outside set to white.
        lpips_net: a :class:`dejavu.metrics.lpips.LPIPS` (or any module mapping two (B, 3, H, W) images
            in [0, 1] to (B,) distances); ``None`` leaves the "lpips" term out.
        ssim_kind: "ssim" or "ms_ssim" (MS-SSIM needs a side > 160 px; masked by compositing).

    Returns:
        {"l1": ..., "ssim": 1 - SSIM, "lpips": ...} (scalars).
    """
    terms = {"l1": im.l1(pred, target, mask).mean()}
    if ssim_kind == "ssim":
        terms["ssim"] = 1.0 - im.ssim(pred, target, mask).mean()
    elif ssim_kind == "ms_ssim":
        terms["ssim"] = 1.0 - im.ms_ssim(pred, target, mask).mean()
    else:
        raise DejavuError(f"ssim_kind: expected 'ssim' or 'ms_ssim', got {ssim_kind!r}")
    if lpips_net is not None:
        m = None if mask is None else im._check(pred, target, mask)
        terms["lpips"] = lpips_net(im.composite(pred, m), im.composite(target, m)).mean()
    return terms


def render_loss(pred: Tensor, target: Tensor, mask: Tensor | None, lpips_net: nn.Module | None,
                w_l1: float = 1.0, w_lpips: float = 0.1, w_ssim: float = 0.2,
                ssim_kind: str = "ssim") -> Tensor:
    """Weighted render loss w_l1 * L1 + w_lpips * LPIPS + w_ssim * (1 - SSIM) -> scalar.

    Shapes as :func:`render_loss_terms`. LPIPS is skipped (and costs nothing) when ``w_lpips == 0`` or
    ``lpips_net is None``.
    """
    net = lpips_net if w_lpips else None
    terms = render_loss_terms(pred, target, mask, net, ssim_kind)
    loss = w_l1 * terms["l1"] + w_ssim * terms["ssim"]
    if "lpips" in terms:
        loss = loss + w_lpips * terms["lpips"]
    return loss


# --- reconstruction: regularisers (Eq. 5-7) -------------------------------------------------------

def _weighted_norm_mean(offsets: Tensor, weight_map: Tensor) -> Tensor:
    """mean over (B, S, S) of weight * ||offsets|| (L2 over channels); offsets (B, C, S, S), weight (1|B, S, S)."""
    if offsets.ndim != 4:
        raise DejavuError(f"offsets: expected (B, C, S, S), got {tuple(offsets.shape)}")
    if weight_map.ndim == 4:
        weight_map = weight_map[:, 0]
    norm = torch.linalg.vector_norm(offsets, dim=1)  # (B, S, S); gradient 0 at exactly 0
    return (weight_map.to(norm.dtype) * norm).mean()


def position_regularizer(xyz_offsets: Tensor, weight_map: Tensor) -> Tensor:
    """Position regulariser mean(weight * ||xyz offset||) -> scalar.

    Args:
        xyz_offsets: (B, 3, S, S) position offsets (the map's XYZ channels, in the units the caller
            trains in: network units = cm for reconstruction).
        weight_map: (1, S, S) or (B, S, S) per-texel weights (``UVGaussianMap.position_weight``:
            ~10 face/ears/eyes, 0.1 scalp, 0 off the map).
    """
    return _weighted_norm_mean(xyz_offsets, weight_map)


def ray_regularizer(xyz_offsets: Tensor, rays: Tensor, weight_map: Tensor) -> Tensor:
    """Along-ray regulariser mean(weight * |<xyz offset, ray>|) -> scalar: penalises only the part of each
    offset along the unit direction ``rays`` (1|B, 3, S, S) (the training camera's viewing ray through the
    texel), the part a single view cannot see; shapes otherwise as :func:`position_regularizer`."""
    if xyz_offsets.ndim != 4 or rays.ndim != 4:
        raise DejavuError(f"offsets and rays: expected (B, 3, S, S), got {tuple(xyz_offsets.shape)} and {tuple(rays.shape)}")
    if weight_map.ndim == 4:
        weight_map = weight_map[:, 0]
    along = (xyz_offsets * rays.to(xyz_offsets.dtype)).sum(1).abs()  # (B, S, S)
    return (weight_map.to(along.dtype) * along).mean()


def scale_regularizer(log_scale_offsets: Tensor, weight_map: Tensor) -> Tensor:
    """Scale regulariser mean(weight * ||log-scale offset||) -> scalar; shapes as :func:`position_regularizer`."""
    return _weighted_norm_mean(log_scale_offsets, weight_map)


def needle_regularizer(log_scales: Tensor, weight_map: Tensor, max_ratio: float = 4.0) -> Tensor:
    """Needle penalty mean(weight * relu(log(largest / middle axis) - log(max_ratio))) -> scalar.

    A Gaussian whose largest axis is many times its second is a needle; seen end-on from the training
    views it covers a pixel, seen from the side it is a spike. Flat discs (two long axes, one short,
    what surfaces want) are not penalised.

    Args:
        log_scales: (B, 3, S, S) log-scales, or anything differing from them by the same constant on the
            three axes (offsets over an isotropic start).
        weight_map: (1|B, S, S) per-texel weights (0 off the map).
        max_ratio: largest-to-middle axis ratio allowed free.
    """
    top2 = log_scales.topk(2, dim=1).values  # (B, 2, S, S), largest first
    excess = torch.relu(top2[:, 0] - top2[:, 1] - math.log(max_ratio))
    if weight_map.ndim == 4:
        weight_map = weight_map[:, 0]
    return (weight_map.to(excess.dtype) * excess).mean()


def ray_needle_regularizer(means: Tensor, quats: Tensor, scales: Tensor, centres: Tensor, weights: Tensor,
                           max_ratio: float = 2.0) -> Tensor:
    """Depth-needle penalty mean(weight * relu(log(along / across) - log(max_ratio))) -> scalar.

    ``along`` is a Gaussian's standard deviation along the ray from its frame's camera through its mean,
    ``across`` the RMS of its standard deviations across that ray. A Gaussian stretched along the ray
    looks the same to that camera however long it is, so near-frontal training views leave hair and the
    head's sides free to grow into streaks that point away from the camera and show from every other
    side. Discs seen edge-on (the head's sides: a ratio of ~1.4) stay free at the default ratio of 2.

    Args:
        means: (B, N, 3) Gaussian centres, metres (used for the rays only; no gradient through them).
        quats: (B, N, 4) wxyz rotations, any norm.
        scales: (B, N, 3) standard deviations, metres.
        centres: (B, 3) camera centres of the B frames, metres.
        weights: (1|B, N) per-Gaussian weights (e.g. opacities, detached).
        max_ratio: along-to-across ratio left free.
    """
    if means.ndim != 3 or centres.shape != (means.shape[0], 3):
        raise DejavuError(f"means and centres: expected (B, N, 3) and (B, 3), got {tuple(means.shape)} and "
                          f"{tuple(centres.shape)}")
    rays = F.normalize(means.detach() - centres.to(means.dtype)[:, None], dim=-1)  # (B, N, 3)
    M = quat_to_rotmat(quats) * scales[..., None, :]  # (B, N, 3, 3) R S: covariance M M^T
    along2 = (M * rays[..., :, None]).sum(-2).square().sum(-1)  # r^T M M^T r
    across2 = (M.square().sum((-2, -1)) - along2).clamp_min(1e-20) / 2
    excess = torch.relu(0.5 * torch.log(along2.clamp_min(1e-20) / across2) - math.log(max_ratio))
    return (weights.to(excess.dtype) * excess).mean()


def color_regularizer(color_offsets: Tensor, weight_map: Tensor) -> Tensor:
    """Colour regulariser mean(weight * ||colour offset||) -> scalar (colour offsets in SH DC units);
    shapes as :func:`position_regularizer`."""
    return _weighted_norm_mean(color_offsets, weight_map)


def view_consistency(offsets: Tensor, identity_ids: Tensor) -> Tensor:
    """View-consistency loss: mean over batch and texels of ||offsets_b - mean offsets of b's identity||.

    The norm is the L2 norm over channels per texel. Vectorised (index_add), no Python loop; zero when
    all views of each identity give identical offsets (and for identities seen once).

    Args:
        offsets: (B, C, S, S) network offset maps (C = 13).
        identity_ids: (B,) integer identity label per batch element (any values).
    """
    if identity_ids.ndim != 1 or identity_ids.shape[0] != offsets.shape[0]:
        raise DejavuError(f"identity_ids: expected shape ({offsets.shape[0]},), got {tuple(identity_ids.shape)}")
    _, inverse = torch.unique(identity_ids.to(offsets.device), return_inverse=True)  # (B,) in [0, G)
    n_groups = int(inverse.max()) + 1
    sums = offsets.new_zeros((n_groups,) + offsets.shape[1:]).index_add(0, inverse, offsets)
    counts = torch.bincount(inverse, minlength=n_groups).to(offsets.dtype)
    means = sums / counts.view(-1, 1, 1, 1)
    return torch.linalg.vector_norm(offsets - means[inverse], dim=1).mean()


# --- personalization -------------------------------------------------------------------------------

def huber(pred: Tensor, target: Tensor, delta: float = 0.1, mask: Tensor | None = None) -> Tensor:
    """Huber loss (torch's ``huber_loss``: 0.5 x^2 for |x| <= delta, delta (|x| - delta/2) beyond) -> scalar.

    Args:
        pred, target: (B, 3, H, W) images in [0, 1].
        mask: optional (B, 1, H, W) weights; then the mean is over the mask's pixels (and channels).
    """
    per_pixel = F.huber_loss(pred, target, reduction="none", delta=delta)
    if mask is None:
        return per_pixel.mean()
    weight = mask.to(per_pixel.dtype).expand_as(per_pixel)
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1e-8)


def feature_mask_huber(pred: Tensor, target: Tensor, feature_mask: Tensor, weight: float = 10.0,
                       delta: float = 0.1) -> Tensor:
    """Stage-2 facial-feature term: weight * mean over all pixels of feature_mask * Huber -> scalar.

    The mean is over the whole image (as Huber on mask-multiplied images), so the term scales with the
    features' area; this is ``weight * huber(pred * m, target * m)`` for a binary mask.

    Args:
        pred, target: (B, 3, H, W) images in [0, 1].
        feature_mask: (B, 1, H, W) brows/eyes/nose/lips mask in [0, 1].
    """
    per_pixel = F.huber_loss(pred, target, reduction="none", delta=delta)
    return weight * (per_pixel * feature_mask.to(per_pixel.dtype)).mean()

"""Colour the avatar's visible Gaussians from the photo(s) it was made from.

The reconstruction network predicts geometry and appearance in one pass, but a small CPU-trained
network blurs appearance (face PSNR 15-17 dB on unseen photos). The colour of a Gaussian that the
camera sees is, to first order, the colour of the pixel its centre lands on, so we read it off the
photo (texture unprojection), then correct the remaining blur from overlapping footprints with a
few steps of iterative back-projection. Rendering is linear in colour (image = A c + T bg, the
compositing weights A do not depend on colours), so each step is a SART step on the least-squares
colour fit, c += (A^T r) / (A^T 1): every Gaussian takes the residual r averaged over its own
footprint with its compositing weights (one compositing pass, :func:`dejavu.render.render_transpose`,
gives both products). It converges monotonically; adding the residual at each Gaussian's centre
pixel instead (a Jacobi step) overshoots where footprints overlap and embossed ripples into the skin.
Geometry, scales and opacities stay the network's. Gaussians the photo does not see (hidden, grazing
or outside the head mask) take the seen colours spread over the UV layout by push-pull filling (the
back of the head gets the hair colour the photo shows at the sides and top, the neck the chin's
skin), except in the mouth interior, which keeps the network's colours (a closed mouth in the photo
says nothing about teeth).

With several views (B > 1, e.g. frames of a video with one identity) colours and residuals are
averaged with each view's visibility weight.

Letters: B views, N Gaussians (valid texels), S UV side, H/W pixels, V vertices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dejavu.gaussians import channels as ch
from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.head.base import REGION_ID
from dejavu.render import render_transpose
from dejavu.render.camera import camera_to_pixels, to_camera

#: A texel counts as seen when its Gaussian centre is within this distance (m) of the rendered depth.
DEPTH_TOLERANCE_M = 0.01
#: Facing ramp: weight 0 at cos(normal, view) <= FACING_LO, 1 at >= FACING_HI (grazing views smear).
FACING_LO, FACING_HI = 0.1, 0.4
#: Colours read from the photo are kept above 0: the colour activation clamps at 0 (no gradient below).
MIN_RGB = 0.02
#: Only colours read this far (a fraction of the image side) inside the head mask fill the unseen
#: texels: outline pixels mix the person with the white background (antialiased crops, flyaway hair),
#: and a texel read there spread its grey over the unseen back of the head (2 px at 256^2). The texels
#: there keep their own reading: in the photo's own view it is right (a 4 px erosion of the reading
#: itself cost the four sample photos 0.7-2 dB face PSNR).
MASK_ERODE_FRACTION = 1 / 128


@dataclass
class PhotoTexture:
    """Result of :func:`photo_texture`.

    offsets: (13, S, S) the input offsets with the colour channels replaced where the photo sees them.
    weight: (S, S) how much of each texel's colour came from the photo, in [0, 1].
    residual_rmse: per iteration, RMS colour residual (0-1 units) over seen Gaussians, before the update.
    """

    offsets: torch.Tensor
    weight: torch.Tensor
    residual_rmse: list[float]


def _sample(images: torch.Tensor, pix: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of images (B, H, W, C) at pixel coordinates pix (B, N, 2) -> (B, N, C)."""
    B, H, W, C = images.shape
    grid = torch.stack([pix[..., 0] / W * 2 - 1, pix[..., 1] / H * 2 - 1], -1)[:, None]  # (B, 1, N, 2)
    out = F.grid_sample(images.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :, 0].transpose(1, 2)


def texel_normals(uvmap: UVGaussianMap, vertices: torch.Tensor) -> torch.Tensor:
    """Outward unit normals (B, N, 3) of the mesh triangle under each texel, world frame."""
    tri = vertices[:, uvmap.texel_verts]  # (B, N, 3, 3)
    return F.normalize(torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1), dim=-1)


def erode_masks(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """masks (B, H, W) in [0, 1] -> the same eroded by ``radius`` pixels (a min over a square window)."""
    if radius <= 0:
        return masks
    return -F.max_pool2d(-masks[:, None], 2 * radius + 1, stride=1, padding=radius)[:, 0]


def visibility_weights(uvmap: UVGaussianMap, vertices: torch.Tensor, offsets: torch.Tensor,
                       masks: torch.Tensor, world_to_cam: torch.Tensor, K: torch.Tensor,
                       backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """How well each view sees each Gaussian, and where.

    Args:
        uvmap: the avatar's UVGaussianMap. vertices: (B, V, 3) posed mesh per view (m).
        offsets: (13, S, S) the avatar's offsets. masks: (B, H, W) head masks in [0, 1]. world_to_cam: (B, 4, 4). K: (B, 3, 3).

    Returns:
        weight (B, N) in [0, 1] (depth test x facing ramp x head mask) and pixel positions (B, N, 2).
    """

    B, H, W = masks.shape
    g = uvmap.gaussians(vertices, offsets[None])
    r = g.render(world_to_cam, K, W, H, backend=backend)
    depth = r.depth / r.alpha.clamp_min(1e-6)  # (B, H, W, 1) expected depth of the front surface
    cam = to_camera(g.means, world_to_cam)
    pix = camera_to_pixels(cam, K)
    seen = (cam[..., 2] < _sample(depth, pix)[..., 0] + DEPTH_TOLERANCE_M) & (_sample(r.alpha, pix)[..., 0] > 0.5)
    n_cam = torch.einsum("bij,bnj->bni", world_to_cam[:, :3, :3], texel_normals(uvmap, vertices))
    cos = -(n_cam * F.normalize(cam, dim=-1)).sum(-1)
    facing = ((cos - FACING_LO) / (FACING_HI - FACING_LO)).clamp(0, 1)
    inside = (pix[..., 0] >= 0) & (pix[..., 0] < W) & (pix[..., 1] >= 0) & (pix[..., 1] < H)
    weight = seen.float() * inside.float() * facing * _sample(masks[..., None], pix)[..., 0].clamp(0, 1)
    return weight, pix


@torch.no_grad()
def best_view_weight(uvmap: UVGaussianMap, vertices: torch.Tensor, offsets: torch.Tensor, masks: torch.Tensor,
                     world_to_cam: torch.Tensor, K: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """(S, S) in [0, 1]: each texel's :func:`visibility_weights` in the view that sees it best (0 off the map).

    The best view and not the sum: a texel every view sees edge-on (the sides of the head in a frontal
    video) is never well seen, however many views there are. Arguments as :func:`visibility_weights`.
    """
    weight, _ = visibility_weights(uvmap, vertices, offsets, masks, world_to_cam, K, backend)
    return uvmap.scatter(weight.max(0).values[None, :, None])[0, 0]


def push_pull_fill(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Fill a UV map where ``weight`` is low from where it is high (pull-push, coarse-to-fine).

    Args:
        values: (C, S, S) map. weight: (S, S) confidence in [0, 1] (0 = unknown).

    Returns:
        (C, S, S): ``values`` where weight is 1, a weight-normalised blend with the next coarser level
        elsewhere; every texel gets a value if any weight is positive.
    """
    w = weight[None, None].float()
    v = (values[None] * w)
    pyramid = [(v, w)]
    while pyramid[-1][1].shape[-1] > 1:
        v, w = F.avg_pool2d(v, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)
        pyramid.append((v, w))
    v, w = pyramid[-1]
    filled = v / w.clamp_min(1e-12)
    for level in range(len(pyramid) - 2, -1, -1):
        v, w = pyramid[level]
        up = F.interpolate(filled, size=v.shape[-2:], mode="bilinear", align_corners=False)
        # Coarse cells trust their own mean once a quarter of them is seen; a texel trusts its own value
        # only as far as it is seen (grazing views blend with the neighbourhood).
        a = w if level == 0 else (4 * w).clamp(max=1.0)
        filled = a * v / w.clamp_min(1e-12) + (1 - a) * up
    return filled[0]


#: A region needs this share of its texels seen to be filled from itself (else from everything seen).
MIN_REGION_SEEN = 0.02


def fill_unseen_texels(uvmap: UVGaussianMap, values: torch.Tensor, weight: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Values (N, C) for every Gaussian: seen ones spread to unseen ones region by region.

    Each region of the head (scalp, ears, face, neck, eyes) is filled from its own seen texels, so the
    back of the head takes the hair colour and not the face's; a region the views barely see (the neck,
    masked out of every target) is filled from everything seen. The mouth interior keeps ``keep``.

    Args:
        uvmap: the UVGaussianMap. values: (N, C) per-Gaussian values. weight: (N,) seen-ness in [0, 1].
        keep: (N, C) values for the mouth interior.
    """

    region = uvmap.region.reshape(-1)[uvmap.flat_index]  # (N,)
    vmap, wmap = uvmap.scatter(values[None])[0], uvmap.scatter(weight[None, :, None])[0, 0]
    everywhere = uvmap.gather(push_pull_fill(vmap, wmap)[None])[0]
    out = everywhere.clone()
    for name, rid in REGION_ID.items():
        inside = region == rid
        if name == "mouth":
            out[inside] = keep[inside]
            continue
        if not bool(inside.any()) or float(weight[inside].mean()) < MIN_REGION_SEEN:
            continue
        w_r = wmap * (uvmap.region == rid).float()
        out[inside] = uvmap.gather(push_pull_fill(vmap, w_r)[None])[0][inside]
    return out


@torch.no_grad()
def photo_texture(uvmap: UVGaussianMap, vertices: torch.Tensor, offsets: torch.Tensor, images: torch.Tensor,
                  masks: torch.Tensor, world_to_cam: torch.Tensor, K: torch.Tensor, iterations: int = 3,
                  fill: bool = True, backend: str = "auto") -> PhotoTexture:
    """Replace the colours of the Gaussians the photo(s) see by the photo's colours (module docstring).

    Args:
        uvmap: the avatar's UVGaussianMap (size S). vertices: (B, V, 3) posed mesh per view (m).
        offsets: (13, S, S) avatar offsets (network units).
        images: (B, H, W, 3) aligned crops in [0, 1]. masks: (B, H, W) head masks in [0, 1]; outside them
            the target is white, as in every loss and metric of the project.
        world_to_cam: (B, 4, 4). K: (B, 3, 3). iterations: back-projection steps after the first read.
        fill: give unseen Gaussians (outside the mouth) the seen colours spread over the UV layout;
            False keeps the network's colours there.
        backend: renderer backend.

    Returns:
        :class:`PhotoTexture`.
    """
    H, W = masks.shape[1:]
    m = masks[..., None]
    target = images * m + (1 - m)
    weight, pix = visibility_weights(uvmap, vertices, offsets, masks, world_to_cam, K, backend)
    wsum = weight.sum(0)  # (N,)
    blend = wsum.clamp(max=1.0)[:, None]
    norm = wsum.clamp_min(1e-6)[:, None]

    def views_mean(values: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (N, C), visibility-weighted
        return (weight[..., None] * values).sum(0) / norm

    base = uvmap.gather(offsets[None])[0]  # (N, 13)
    rgb = views_mean(_sample(target, pix)).clamp(MIN_RGB, 1.0)
    seen_dc = (rgb - 0.5) / ch.SH_C0 - ch.INIT_COLOR_DC  # colour offsets read off the photo(s)
    if fill:
        interior = erode_masks(masks, math.ceil(MASK_ERODE_FRACTION * max(H, W)))
        source = (weight * _sample(interior[..., None], pix)[..., 0]).sum(0).clamp(max=1.0)
        other = fill_unseen_texels(uvmap, seen_dc, source, base[:, ch.COLOR])
    else:
        other = base[:, ch.COLOR]
    dc = blend * seen_dc + (1 - blend) * other
    out = offsets.clone()
    rmse = []
    seen = wsum > 0.5
    # Stay inside the colour activation's live range (rgb >= MIN_RGB), or the next render ignores the step.
    lo = (MIN_RGB - 0.5) / ch.SH_C0 - ch.INIT_COLOR_DC

    footprint = None
    for _ in range(iterations):
        out[ch.COLOR] = uvmap.scatter(dc[None])[0]
        g = uvmap.gaussians(vertices, out[None])
        # outside the head mask the photo says nothing about a Gaussian's colour
        resid = (target - g.render(world_to_cam, K, W, H, backend=backend).rgb) * m
        rmse.append(float(views_mean(_sample(resid, pix))[seen].pow(2).mean().sqrt()) if bool(seen.any()) else 0.0)
        # A^T r, and once A^T m (each Gaussian's compositing weight over its footprint inside the head;
        # it does not depend on colours), in one compositing pass; summed over the views
        v = torch.cat([resid, m], -1) if footprint is None else resid
        back = render_transpose(g.means, g.quats, g.scales, g.opacities, world_to_cam, K, W, H, v,
                                backend=backend).sum(0)
        if footprint is None:
            back, footprint = back[:, :3], back[:, 3:]
        step = back / footprint.clamp_min(1e-6) / ch.SH_C0  # footprint-weighted mean residual, in dc units
        dc = (dc + blend * step).clamp_min(lo)
    out[ch.COLOR] = uvmap.scatter(dc[None])[0]
    return PhotoTexture(offsets=out, weight=uvmap.scatter(blend[None])[0, 0], residual_rmse=rmse)

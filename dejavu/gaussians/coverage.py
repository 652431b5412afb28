"""Gaussians big enough to cover the surface between their texels: a scale floor from the texel spacing.

The reconstruction network learnt its scales from training views in which the chin's underside, the
neck and the far sides of the cheeks are hidden or outside the head mask (white), so it shrinks the
Gaussians there to a tenth of the spacing between neighbouring texels (the astronaut's network avatar:
neck median 0.12 x the spacing, face 0.51). Nothing in a frontal view shows it; turned 30-60 degrees or
seen from below, the background shows through between them as pale stripes under the jaw. Raising the
two larger scales of each Gaussian (the axes along the surface; the smallest, across it, is left so
that flat Gaussians stay flat) to a share of its texel spacing closes those gaps and leaves Gaussians
that are already that large as they were.
"""

from __future__ import annotations

import torch

from dejavu.gaussians import channels as ch
from dejavu.gaussians.uvmap import UVGaussianMap

#: Default floor: the two larger scale axes at least this share of the texel spacing (a Gaussian's
#: ~2-sigma visible footprint then reaches past half the spacing, so neighbours overlap).
MIN_SCALE_PER_SPACING = 0.3
#: Neighbours farther than this many times the nearest one are across a UV seam, not on the surface.
SEAM_RATIO = 4.0


def texel_spacing(uvmap: UVGaussianMap, positions: torch.Tensor) -> torch.Tensor:
    """Distance (S, S) in metres from each valid texel to its farthest surface neighbour in the UV grid.

    positions: (3, S, S) Gaussian centres in metres. Of the 4 grid neighbours that are valid texels,
    those farther than ``SEAM_RATIO`` x the nearest are dropped (they lie across a UV seam); the largest
    of the rest is the spacing, so a texel stretched along one UV direction is covered along it too.
    0 where a texel has no valid neighbour or is not valid.
    """
    S = uvmap.size
    mask = uvmap.mask
    pad = torch.nn.functional.pad(positions[None], (1, 1, 1, 1), mode="replicate")[0]  # (3, S+2, S+2)
    mpad = torch.nn.functional.pad(mask[None].float(), (1, 1, 1, 1))[0] > 0
    dists = []
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        nb = pad[:, dy:dy + S, dx:dx + S]
        ok = mpad[dy:dy + S, dx:dx + S] & mask
        dists.append(torch.where(ok, (positions - nb).norm(dim=0), torch.full_like(positions[0], float("inf"))))
    d = torch.stack(dists)  # (4, S, S), inf where no neighbour
    nearest = d.min(0).values
    on_surface = d <= SEAM_RATIO * nearest
    spacing = torch.where(on_surface & torch.isfinite(d), d, torch.zeros_like(d)).max(0).values
    return torch.where(mask & torch.isfinite(nearest), spacing, torch.zeros_like(spacing))


def close_gaps(uvmap: UVGaussianMap, vertices: torch.Tensor, offsets: torch.Tensor,
               min_ratio: float = MIN_SCALE_PER_SPACING) -> torch.Tensor:
    """``offsets`` (13, S, S) with the two larger log-scales of each texel raised to at least
    log(``min_ratio`` x texel spacing) (:func:`texel_spacing`).

    vertices: (1, V, 3) the mesh the spacing is measured on (metres; the person's neutral pose).
    Scales already above the floor, each texel's smallest scale and every other channel are unchanged.
    """
    with torch.no_grad():
        x = uvmap.apply_offsets(uvmap.initial_map(vertices), offsets[None])[0]  # (13, S, S)
        spacing = texel_spacing(uvmap, x[ch.XYZ])
        floor = torch.log((min_ratio * spacing).clamp_min(1e-12))
        log_scale = x[ch.LOG_SCALE]  # (3, S, S)
        lift = (floor[None] - log_scale).clamp_min(0) * (spacing > 0)[None]
        thinnest = torch.nn.functional.one_hot(log_scale.argmin(0), 3).permute(2, 0, 1).bool()
        lift = lift.masked_fill(thinnest, 0.0)
    out = offsets.clone()
    out[ch.LOG_SCALE] += lift / uvmap.offset_gain[ch.LOG_SCALE]
    return out


def normals_and_spacing(pos: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Outward normals (B, 3, S, S) and texel spacing (B, 1, S, S) in metres from a position map ``pos``
    (B, 3, S, S) valid on ``mask`` (S, S): half the central differences along u and v, the larger one,
    clamped to 0.5-3 x its median (seams, edges). The synthetic training maps of the reconstruction
    network are sized from it; :func:`texel_spacing` is the per-texel version the scale floor uses (seams
    dropped neighbour by neighbour, no clamp), kept apart so that neither's figures move."""
    du = torch.zeros_like(pos)
    dv = torch.zeros_like(pos)
    du[..., :, 1:-1] = pos[..., :, 2:] - pos[..., :, :-2]
    dv[..., 1:-1, :] = pos[..., :-2, :] - pos[..., 2:, :]
    m = mask.float()
    ok_u = torch.zeros_like(m)
    ok_v = torch.zeros_like(m)
    ok_u[:, 1:-1] = m[:, 2:] * m[:, :-2]
    ok_v[1:-1, :] = m[:-2, :] * m[2:, :]
    n = torch.cross(du, dv, dim=1)
    n = n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)
    centre = (pos * m).sum((2, 3), keepdim=True) / m.sum()
    outward = ((pos - centre) * n).sum(1, keepdim=True)
    n = torch.where(outward < 0, -n, n) * (ok_u * ok_v)
    spacing = 0.5 * torch.maximum(du.norm(dim=1, keepdim=True) * ok_u, dv.norm(dim=1, keepdim=True) * ok_v)
    med = spacing[spacing > 0].median() if (spacing > 0).any() else torch.tensor(2e-3)
    spacing = torch.where(spacing > 0, spacing, med).clamp(0.5 * med, 3.0 * med)
    return n, spacing

"""Pure-torch Gaussian splatting: the shared projection and the test-oracle rasterizer.

``project`` (EWA projection, gsplat 1.5.3's ``fully_fused_projection`` math) is differentiable by
autograd and is used by the reference and the CPU backend alike. ``rasterize`` composites tiles of
pixels with plain torch ops (padded chunks of tiles, memory bounded by
``config.REFERENCE_CHUNK_ELEMENTS``); slow, simple, and the oracle the fast backends are tested
against. Constants: ``dejavu.render.config``.

Letters: B frames (one camera each), N Gaussians per frame, H/W pixels, I tile-Gaussian intersections.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dejavu.render import config


@dataclass
class Projected:
    """Per-Gaussian screen-space quantities (B, N, ...).

    means2d: (B, N, 2) pixel coordinates (x right, y down; pixel centres at +0.5).
    conics:  (B, N, 3) inverse 2D covariance (a, b, c): power = 0.5 (a dx^2 + c dy^2) + b dx dy.
    depths:  (B, N) camera z, metres.
    radii:   (B, N, 2) int32 box half-sizes in pixels (x, y); 0 = culled. No gradient.
    """

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    radii: torch.Tensor


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """(..., 4) wxyz quaternions, any norm -> (..., 3, 3) rotation matrices."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    r = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return r.reshape(*quats.shape[:-1], 3, 3)


def project(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
            world_to_cam: torch.Tensor, K: torch.Tensor, width: int, height: int) -> Projected:
    """EWA-project B x N Gaussians into their frame's camera (gsplat's pinhole ``persp_proj``).

    Args: means (B, N, 3) m, quats (B, N, 4) wxyz, scales (B, N, 3) m, opacities (B, N),
    world_to_cam (B, 4, 4) OpenCV, K (B, 3, 3) pixels.
    Culled (radii 0): camera z outside [NEAR_PLANE, FAR_PLANE], 2D covariance not positive definite,
    opacity < ALPHA_MIN, or the box entirely off the image. Culled entries hold finite values.
    """
    R = world_to_cam[:, None, :3, :3]  # (B, 1, 3, 3)
    t = world_to_cam[:, None, :3, 3]
    mean_c = (R @ means[..., None])[..., 0] + t  # (B, N, 3)
    x, y, z = mean_c.unbind(-1)
    in_depth = (z >= config.NEAR_PLANE) & (z <= config.FAR_PLANE)
    z = torch.where(in_depth, z, torch.ones_like(z))  # safe value for culled entries (no inf/NaN grads)

    M = quat_to_rotmat(quats) * scales[..., None, :]  # R S
    cov_w = M @ M.transpose(-1, -2)
    cov_c = R @ cov_w @ R.transpose(-1, -2)  # (B, N, 3, 3)

    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]  # (B, 1)
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + config.CLAMP_MARGIN * tan_fovx
    lim_x_neg = cx / fx + config.CLAMP_MARGIN * tan_fovx
    lim_y_pos = (height - cy) / fy + config.CLAMP_MARGIN * tan_fovy
    lim_y_neg = cy / fy + config.CLAMP_MARGIN * tan_fovy
    rz = 1.0 / z
    tx = z * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))
    ty = z * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    zero = torch.zeros_like(z)
    J = torch.stack([fx * rz, zero, -fx * tx * rz * rz, zero, fy * rz, -fy * ty * rz * rz], -1).reshape(*z.shape, 2, 3)
    cov2d = J @ cov_c @ J.transpose(-1, -2)
    a = cov2d[..., 0, 0] + config.EPS2D
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + config.EPS2D
    det = a * c - b * b
    ok = in_depth & (det > 0)
    det = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c / det, -b / det, a / det], -1)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], -1)

    with torch.no_grad():
        o = opacities.detach()
        ok = ok & (o >= config.ALPHA_MIN)
        extend = torch.sqrt(2.0 * torch.log(o.clamp_min(config.ALPHA_MIN) / config.ALPHA_MIN)).clamp_max(config.EXTEND)
        rx = torch.ceil(extend * torch.sqrt(a.detach().clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(c.detach().clamp_min(0)))
        ok = ok & ((rx > 0) | (ry > 0))
        mx, my = means2d.detach().unbind(-1)
        ok = ok & ~((mx + rx <= 0) | (mx - rx >= width) | (my + ry <= 0) | (my - ry >= height))
        radii = torch.stack([rx, ry], -1).where(ok[..., None], torch.zeros_like(means2d)).to(torch.int32)
    return Projected(means2d=means2d, conics=conics, depths=mean_c[..., 2], radii=radii)


def tile_bounds(means2d: torch.Tensor, radii: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, ...]:
    """Tile box of each Gaussian, gsplat's ``isect_tiles``: (x0, y0) inclusive, (x1, y1) exclusive.

    means2d (..., 2) float, radii (..., 2) int -> four (...,) int64 tensors; empty box where radii is 0.
    """
    ts = float(config.TILE_SIZE)
    tw, th = (width + config.TILE_SIZE - 1) // config.TILE_SIZE, (height + config.TILE_SIZE - 1) // config.TILE_SIZE
    m = means2d.detach().float()
    r = radii.float()
    tx, ty = m[..., 0] / ts, m[..., 1] / ts
    rx, ry = r[..., 0] / ts, r[..., 1] / ts
    x0 = torch.floor(tx - rx).clamp(0, tw).long()
    y0 = torch.floor(ty - ry).clamp(0, th).long()
    x1 = torch.ceil(tx + rx).clamp(0, tw).long()
    y1 = torch.ceil(ty + ry).clamp(0, th).long()
    live = (radii[..., 0] > 0) & (radii[..., 1] > 0)
    x1 = torch.where(live, x1, x0)
    return x0, y0, x1, y1


def intersect(means2d: torch.Tensor, radii: torch.Tensor, depths: torch.Tensor, width: int, height: int):
    """Sorted tile-Gaussian intersections over all frames.

    Returns (gauss_ids (I,) int64 flat index into B*N, tile_offsets (B * n_tiles + 1,) int64): the
    Gaussians of global tile g = b * n_tiles + tile are gauss_ids[tile_offsets[g]:tile_offsets[g+1]],
    front to back (by depth, ties by index).
    """
    B, N = depths.shape
    tw, th = (width + config.TILE_SIZE - 1) // config.TILE_SIZE, (height + config.TILE_SIZE - 1) // config.TILE_SIZE
    n_tiles = tw * th
    x0, y0, x1, y1 = (v.reshape(-1) for v in tile_bounds(means2d, radii, width, height))
    w, h = x1 - x0, (y1 - y0).clamp_min(0)
    counts = (w * h).clamp_min(0)
    flat = torch.arange(B * N, device=depths.device)
    gid = torch.repeat_interleave(flat, counts)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(gid.numel(), device=depths.device) - start[gid]
    wg = w[gid].clamp_min(1)
    tile = (y0[gid] + local // wg) * tw + x0[gid] + local % wg + (gid // N) * n_tiles
    d = depths.detach().reshape(-1)[gid]
    order = torch.sort(d, stable=True).indices
    order = order[torch.sort(tile[order], stable=True).indices]
    gid, tile = gid[order], tile[order]
    tile_offsets = torch.zeros(B * n_tiles + 1, dtype=torch.int64, device=depths.device)
    tile_offsets[1:] = torch.cumsum(torch.bincount(tile, minlength=B * n_tiles), 0)
    return gid, tile_offsets


def _composite_chunk(px: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor, means2d, conics, opac, feats):
    """Front-to-back compositing of one padded chunk of tiles.

    px (T, P, 2) pixel centres; ids (T, K) flat Gaussian ids (padding any valid id); valid (T, K) bool;
    means2d (BN, 2), conics (BN, 3), opac (BN,), feats (BN, C). Returns (T, P, C) sum_i w_i f_i and
    (T, P) final transmittance.
    """
    m = means2d[ids]  # (T, K, 2)
    cn = conics[ids]
    dx = m[:, None, :, 0] - px[:, :, None, 0]  # (T, P, K)
    dy = m[:, None, :, 1] - px[:, :, None, 1]
    power = 0.5 * (cn[:, None, :, 0] * dx * dx + cn[:, None, :, 2] * dy * dy) + cn[:, None, :, 1] * dx * dy
    alpha = torch.clamp(opac[ids][:, None, :] * torch.exp(-power), max=config.ALPHA_MAX)
    keep = valid[:, None, :] & (power >= 0) & (alpha >= config.ALPHA_MIN)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    one_minus = 1.0 - alpha
    T_before = torch.cumprod(torch.cat([torch.ones_like(one_minus[..., :1]), one_minus[..., :-1]], -1), -1)
    with torch.no_grad():
        stop = keep & (T_before * one_minus <= config.T_MIN)  # exclusive: this one and all after are dropped
        used = torch.cumsum(stop.int(), -1) == 0
    w = torch.where(used, alpha * T_before, torch.zeros_like(alpha))
    T_final = torch.where(used, one_minus, torch.ones_like(one_minus)).prod(-1)
    out = torch.einsum("tpk,tkc->tpc", w, feats[ids])
    return out, T_final


def rasterize(proj: Projected, colors: torch.Tensor, opacities: torch.Tensor, background: torch.Tensor,
              width: int, height: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite projected Gaussians. colors (B, N, 3), opacities (B, N), background (B, 3).

    Returns rgb (B, H, W, 3), alpha (B, H, W, 1), depth (B, H, W, 1) (sum of w_i z_i).
    """
    B, N = opacities.shape
    ts = config.TILE_SIZE
    tw, th = (width + ts - 1) // ts, (height + ts - 1) // ts
    n_tiles = tw * th
    dev, dt = colors.device, colors.dtype
    gid, offsets = intersect(proj.means2d, proj.radii, proj.depths, width, height)
    means2d = proj.means2d.reshape(B * N, 2)
    conics = proj.conics.reshape(B * N, 3)
    opac = opacities.reshape(B * N)
    feats = torch.cat([colors, proj.depths[..., None]], -1).reshape(B * N, 4)
    if B * N == 0:  # nothing to gather from: pad with one transparent dummy
        means2d, conics = means2d.new_zeros(1, 2), conics.new_zeros(1, 3)
        opac, feats = opac.new_zeros(1), feats.new_zeros(1, 4)

    iy, ix = torch.meshgrid(torch.arange(ts, device=dev), torch.arange(ts, device=dev), indexing="ij")
    local = torch.stack([ix.reshape(-1), iy.reshape(-1)], -1).to(dt) + 0.5  # (P, 2) (x, y)
    g_all = torch.arange(B * n_tiles, device=dev)
    tile_xy = torch.stack([(g_all % n_tiles) % tw, (g_all % n_tiles) // tw], -1).to(dt) * ts  # (G, 2)
    counts = (offsets[1:] - offsets[:-1]).tolist()

    outs, Ts = [], []
    g = 0
    budget = max(1, config.REFERENCE_CHUNK_ELEMENTS // (ts * ts))
    while g < B * n_tiles:  # greedy chunks: n_tiles_in_chunk * max_count <= budget
        g1, kmax = g, 0
        while g1 < B * n_tiles and (g1 == g or max(kmax, counts[g1], 1) * (g1 + 1 - g) <= budget):
            kmax = max(kmax, counts[g1])
            g1 += 1
        kmax = max(kmax, 1)
        rng = torch.arange(kmax, device=dev)
        starts = offsets[g:g1, None]
        valid = rng[None, :] < (offsets[g + 1:g1 + 1, None] - starts)
        pos = (starts + rng[None, :]).clamp_max(max(gid.numel() - 1, 0))
        ids = gid[pos] if gid.numel() else torch.zeros_like(pos)
        ids = torch.where(valid, ids, torch.zeros_like(ids))
        px = tile_xy[g:g1, None, :] + local[None]
        out, T = _composite_chunk(px, ids, valid, means2d, conics, opac, feats)
        outs.append(out)
        Ts.append(T)
        g = g1
    out = torch.cat(outs, 0).reshape(B, th, tw, ts, ts, 4).permute(0, 1, 3, 2, 4, 5).reshape(B, th * ts, tw * ts, 4)
    T = torch.cat(Ts, 0).reshape(B, th, tw, ts, ts).permute(0, 1, 3, 2, 4).reshape(B, th * ts, tw * ts, 1)
    out, T = out[:, :height, :width], T[:, :height, :width]
    rgb = out[..., :3] + T * background[:, None, None, :]
    return rgb, 1.0 - T, out[..., 3:4]


def render_reference(means, quats, scales, opacities, colors, world_to_cam, K, width: int, height: int,
                     background: torch.Tensor):
    """The whole reference pipeline (validated inputs, background (B, 3)) -> (rgb, alpha, depth)."""
    proj = project(means, quats, scales, opacities, world_to_cam, K, width, height)
    return rasterize(proj, colors, opacities, background, width, height)

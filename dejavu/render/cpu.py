"""CPU backend: numba tile rasterizer with a hand-written backward (the standard 3DGS one).

Pipeline per call (B frames at once, tiles of all frames in one parallel loop):

1. ``reference.project`` (torch autograd, O(N)): EWA projection -> means2d, conics, depths, radii.
   Its backward (to means, quats, scales, world_to_cam, K) is torch's.
2. ``_prep`` (parallel over Gaussians): packs per-Gaussian screen parameters, the tile box (gsplat's
   ``isect_tiles``) and a tight pixel box (the ellipse where opacity * exp(-power) >= ALPHA_MIN).
3. ``_bin``: counting sort of intersections by global tile id (frame * n_tiles + tile), then a stable
   per-tile depth sort (ties by Gaussian index), as gsplat's radix sort gives.
4. ``_forward`` (parallel over tiles): front to back, Gaussian-major inside a tile: each Gaussian
   updates only the pixels of its pixel box, each pixel keeps its transmittance and stops (exclusively)
   when it would fall to <= T_MIN; the tile stops when all its pixels have. Saves final T and the
   index of each pixel's last contributing Gaussian.
5. ``_backward`` (parallel over tiles): back to front from each pixel's last Gaussian, recovering
   T_i = T_final / prod(1 - alpha_j); per-intersection gradient rows (no races: a tile owns its rows),
   then ``_reduce`` sums rows per Gaussian.

Memory: O(pixels + intersections); no (pixels x Gaussians) arrays. Everything is float32/int32.
All numba kernels live in this file (numba's disk cache does not see edits to other modules).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange

from dejavu.render import config
from dejavu.render.reference import project

_TS = config.TILE_SIZE
_ALPHA_MIN = np.float32(config.ALPHA_MIN)
_ALPHA_MAX = np.float32(config.ALPHA_MAX)
_T_MIN = np.float32(config.T_MIN)
_LN_255 = np.float32(math.log(1.0 / config.ALPHA_MIN))
_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_FH = np.float32(0.5)
_F2 = np.float32(2.0)

# params columns
_MX, _MY, _CA, _CB, _CC, _OP, _R, _G, _B, _Z, _EX, _EY = range(12)
_NP = 12
# gradient columns (per intersection / per Gaussian)
_NV = 10  # v_mx, v_my, v_ca, v_cb, v_cc, v_op, v_r, v_g, v_b, v_z

_KW = dict(cache=True, nogil=True, fastmath=True)


@njit(parallel=True, **_KW)
def _prep(means2d, conics, colors, opac, depths, radii, tw, th):
    """Per-Gaussian params (G, 12), tile boxes (G, 4) int32 [x0, y0, x1, y1) and tile counts (G,)."""
    G = means2d.shape[0]
    params = np.empty((G, _NP), np.float32)
    boxes = np.zeros((G, 4), np.int32)
    counts = np.zeros(G, np.int64)
    tsf = np.float32(_TS)
    for g in prange(G):
        mx, my = means2d[g, 0], means2d[g, 1]
        a, b, c = conics[g, 0], conics[g, 1], conics[g, 2]
        o = opac[g]
        params[g, _MX] = mx
        params[g, _MY] = my
        params[g, _CA] = a
        params[g, _CB] = b
        params[g, _CC] = c
        params[g, _OP] = o
        params[g, _R] = colors[g, 0]
        params[g, _G] = colors[g, 1]
        params[g, _B] = colors[g, 2]
        params[g, _Z] = depths[g]
        # pixel box: ellipse power <= ln(o / ALPHA_MIN) (alpha below it is skipped), +1 px margin
        det = a * c - b * b
        lim = math.log(max(o, _ALPHA_MIN)) + _LN_255
        if det > _F0 and lim > _F0:
            params[g, _EX] = math.sqrt(_F2 * lim * c / det) + _F1
            params[g, _EY] = math.sqrt(_F2 * lim * a / det) + _F1
        else:
            params[g, _EX] = _F0
            params[g, _EY] = _F0
        rx, ry = radii[g, 0], radii[g, 1]
        if rx <= 0 or ry <= 0:
            continue
        tx, ty = mx / tsf, my / tsf
        trx, try_ = np.float32(rx) / tsf, np.float32(ry) / tsf
        x0 = min(max(0, int(math.floor(tx - trx))), tw)
        y0 = min(max(0, int(math.floor(ty - try_))), th)
        x1 = min(max(0, int(math.ceil(tx + trx))), tw)
        y1 = min(max(0, int(math.ceil(ty + try_))), th)
        boxes[g, 0], boxes[g, 1], boxes[g, 2], boxes[g, 3] = x0, y0, x1, y1
        counts[g] = max(0, x1 - x0) * max(0, y1 - y0)
    return params, boxes, counts


@njit(parallel=True, **_KW)
def _bin(boxes, counts, depths, N, tw, n_tiles, n_tiles_total):
    """Counting sort by global tile, then stable depth sort per tile.

    Returns tile_offsets (n_tiles_total + 1,) int64 and gids (I,) int32.
    """
    G = boxes.shape[0]
    hist = np.zeros(n_tiles_total + 1, np.int64)
    for g in range(G):
        if counts[g] == 0:
            continue
        base = (g // N) * n_tiles
        for ty in range(boxes[g, 1], boxes[g, 3]):
            for tx in range(boxes[g, 0], boxes[g, 2]):
                hist[base + ty * tw + tx + 1] += 1
    offsets = np.cumsum(hist)
    cursor = offsets[:-1].copy()
    I = offsets[-1]
    gids = np.empty(I, np.int32)
    for g in range(G):  # serial: Gaussian order within a tile = index order
        if counts[g] == 0:
            continue
        base = (g // N) * n_tiles
        for ty in range(boxes[g, 1], boxes[g, 3]):
            for tx in range(boxes[g, 0], boxes[g, 2]):
                t = base + ty * tw + tx
                gids[cursor[t]] = g
                cursor[t] += 1
    for t in prange(n_tiles_total):
        s, e = offsets[t], offsets[t + 1]
        if e - s > 1:
            seg = gids[s:e].copy()
            keys = np.empty(e - s, np.float32)
            for k in range(e - s):
                keys[k] = depths[seg[k]]
            order = np.argsort(keys, kind="mergesort")
            for k in range(e - s):
                gids[s + k] = seg[order[k]]
    return offsets, gids


@njit(parallel=True, **_KW)
def _forward(params, offsets, gids, bg, N, W, H, tw, th):
    """Front-to-back compositing. Returns out (B, H, W, 5) [r, g, b, depth, alpha], T (B, H, W), last (B, H, W)."""
    n_tiles = tw * th
    n_total = offsets.shape[0] - 1
    B = n_total // n_tiles
    out = np.empty((B, H, W, 5), np.float32)
    T_out = np.empty((B, H, W), np.float32)
    last_out = np.empty((B, H, W), np.int32)
    for tid in prange(n_total):
        b = tid // n_tiles
        t = tid % n_tiles
        X0, Y0 = (t % tw) * _TS, (t // tw) * _TS
        X1, Y1 = min(X0 + _TS, W), min(Y0 + _TS, H)
        T = np.ones((_TS, _TS), np.float32)
        acc = np.zeros((_TS, _TS, 4), np.float32)
        last = np.full((_TS, _TS), -1, np.int32)
        done = np.zeros((_TS, _TS), np.bool_)
        n_live = (X1 - X0) * (Y1 - Y0)
        s, e = offsets[tid], offsets[tid + 1]
        for k in range(s, e):
            if n_live == 0:
                break
            g = gids[k]
            mx, my = params[g, _MX], params[g, _MY]
            ex, ey = params[g, _EX], params[g, _EY]
            px0 = max(X0, int(math.floor(mx - ex)))
            px1 = min(X1, int(math.ceil(mx + ex)) + 1)
            py0 = max(Y0, int(math.floor(my - ey)))
            py1 = min(Y1, int(math.ceil(my + ey)) + 1)
            if px0 >= px1 or py0 >= py1:
                continue
            ca, cb, cc, o = params[g, _CA], params[g, _CB], params[g, _CC], params[g, _OP]
            cr, cg, cbl, z = params[g, _R], params[g, _G], params[g, _B], params[g, _Z]
            kl = np.int32(k - s)
            for py in range(py0, py1):
                dy = my - (np.float32(py) + _FH)
                i = py - Y0
                for px in range(px0, px1):
                    j = px - X0
                    if done[i, j]:
                        continue
                    dx = mx - (np.float32(px) + _FH)
                    power = _FH * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if power < _F0:
                        continue
                    alpha = min(_ALPHA_MAX, o * math.exp(-power))
                    if alpha < _ALPHA_MIN:
                        continue
                    Ti = T[i, j]
                    nT = Ti * (_F1 - alpha)
                    if nT <= _T_MIN:
                        done[i, j] = True
                        n_live -= 1
                        continue
                    w = alpha * Ti
                    acc[i, j, 0] += w * cr
                    acc[i, j, 1] += w * cg
                    acc[i, j, 2] += w * cbl
                    acc[i, j, 3] += w * z
                    T[i, j] = nT
                    last[i, j] = kl
        for py in range(Y0, Y1):
            i = py - Y0
            for px in range(X0, X1):
                j = px - X0
                Ti = T[i, j]
                out[b, py, px, 0] = acc[i, j, 0] + Ti * bg[b, 0]
                out[b, py, px, 1] = acc[i, j, 1] + Ti * bg[b, 1]
                out[b, py, px, 2] = acc[i, j, 2] + Ti * bg[b, 2]
                out[b, py, px, 3] = acc[i, j, 3]
                out[b, py, px, 4] = _F1 - Ti
                T_out[b, py, px] = Ti
                last_out[b, py, px] = last[i, j]
    return out, T_out, last_out


@njit(parallel=True, **_KW)
def _backward(params, offsets, gids, bg, T_final, last_idx, v_out, tw, th):
    """Back-to-front gradients. v_out (B, H, W, 5) [rgb, depth, alpha]. Returns (I, 10) per-intersection rows."""
    n_tiles = tw * th
    n_total = offsets.shape[0] - 1
    H, W = T_final.shape[1], T_final.shape[2]
    v_isect = np.zeros((gids.shape[0], _NV), np.float32)
    for tid in prange(n_total):
        b = tid // n_tiles
        t = tid % n_tiles
        X0, Y0 = (t % tw) * _TS, (t // tw) * _TS
        X1, Y1 = min(X0 + _TS, W), min(Y0 + _TS, H)
        s, e = offsets[tid], offsets[tid + 1]
        if e == s:
            continue
        T = np.empty((_TS, _TS), np.float32)
        buf = np.zeros((_TS, _TS, 4), np.float32)
        vpix = np.zeros((_TS, _TS, 5), np.float32)  # v_r, v_g, v_b, v_depth, v_alpha_from_T_final
        last = np.full((_TS, _TS), -1, np.int32)
        max_last = -1
        for py in range(Y0, Y1):
            i = py - Y0
            for px in range(X0, X1):
                j = px - X0
                Tf = T_final[b, py, px]
                T[i, j] = Tf
                vr, vg, vb = v_out[b, py, px, 0], v_out[b, py, px, 1], v_out[b, py, px, 2]
                vpix[i, j, 0], vpix[i, j, 1], vpix[i, j, 2] = vr, vg, vb
                vpix[i, j, 3] = v_out[b, py, px, 3]
                # d loss / d T_final (background + alpha = 1 - T_final), times T_final
                vpix[i, j, 4] = Tf * (vr * bg[b, 0] + vg * bg[b, 1] + vb * bg[b, 2] - v_out[b, py, px, 4])
                last[i, j] = last_idx[b, py, px]
                max_last = max(max_last, last[i, j])
        for k in range(s + max_last, s - 1, -1):
            g = gids[k]
            mx, my = params[g, _MX], params[g, _MY]
            ex, ey = params[g, _EX], params[g, _EY]
            px0 = max(X0, int(math.floor(mx - ex)))
            px1 = min(X1, int(math.ceil(mx + ex)) + 1)
            py0 = max(Y0, int(math.floor(my - ey)))
            py1 = min(Y1, int(math.ceil(my + ey)) + 1)
            if px0 >= px1 or py0 >= py1:
                continue
            ca, cb, cc, o = params[g, _CA], params[g, _CB], params[g, _CC], params[g, _OP]
            cr, cg, cbl, z = params[g, _R], params[g, _G], params[g, _B], params[g, _Z]
            kl = np.int32(k - s)
            g_mx = g_my = g_ca = g_cb = g_cc = g_o = g_r = g_g = g_b = g_z = _F0
            for py in range(py0, py1):
                dy = my - (np.float32(py) + _FH)
                i = py - Y0
                for px in range(px0, px1):
                    j = px - X0
                    if kl > last[i, j]:
                        continue
                    dx = mx - (np.float32(px) + _FH)
                    power = _FH * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if power < _F0:
                        continue
                    vis = math.exp(-power)
                    alpha = min(_ALPHA_MAX, o * vis)
                    if alpha < _ALPHA_MIN:
                        continue
                    ra = _F1 / (_F1 - alpha)
                    Ti = T[i, j] * ra
                    T[i, j] = Ti
                    fac = alpha * Ti
                    vr, vg, vb, vz = vpix[i, j, 0], vpix[i, j, 1], vpix[i, j, 2], vpix[i, j, 3]
                    g_r += fac * vr
                    g_g += fac * vg
                    g_b += fac * vb
                    g_z += fac * vz
                    v_alpha = ((cr * Ti - buf[i, j, 0] * ra) * vr + (cg * Ti - buf[i, j, 1] * ra) * vg
                               + (cbl * Ti - buf[i, j, 2] * ra) * vb + (z * Ti - buf[i, j, 3] * ra) * vz
                               - vpix[i, j, 4] * ra)
                    buf[i, j, 0] += cr * fac
                    buf[i, j, 1] += cg * fac
                    buf[i, j, 2] += cbl * fac
                    buf[i, j, 3] += z * fac
                    if o * vis <= _ALPHA_MAX:
                        v_sigma = -o * vis * v_alpha
                        g_ca += _FH * v_sigma * dx * dx
                        g_cb += v_sigma * dx * dy
                        g_cc += _FH * v_sigma * dy * dy
                        g_mx += v_sigma * (ca * dx + cb * dy)
                        g_my += v_sigma * (cb * dx + cc * dy)
                        g_o += vis * v_alpha
            v_isect[k, 0] = g_mx
            v_isect[k, 1] = g_my
            v_isect[k, 2] = g_ca
            v_isect[k, 3] = g_cb
            v_isect[k, 4] = g_cc
            v_isect[k, 5] = g_o
            v_isect[k, 6] = g_r
            v_isect[k, 7] = g_g
            v_isect[k, 8] = g_b
            v_isect[k, 9] = g_z
    return v_isect


@njit(**_KW)
def _reduce(v_isect, gids, G):
    """Sum per-intersection gradient rows into (G, 10) per-Gaussian rows."""
    v = np.zeros((G, _NV), np.float32)
    for k in range(gids.shape[0]):
        g = gids[k]
        for c in range(_NV):
            v[g, c] += v_isect[k, c]
    return v


def _np32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def _set_threads() -> None:
    if config.CPU_THREADS > 0:
        numba.set_num_threads(min(config.CPU_THREADS, numba.config.NUMBA_NUM_THREADS))
    numba.set_parallel_chunksize(1)  # dynamic scheduling: tiles differ a lot in work


class _Rasterize(torch.autograd.Function):
    """(means2d, conics, colors, opacities, depths) -> (B, H, W, 5) [rgb, depth, alpha]."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, depths, radii, bg, width, height):
        B, N = opacities.shape
        tw, th = (width + _TS - 1) // _TS, (height + _TS - 1) // _TS
        _set_threads()
        params, boxes, counts = _prep(_np32(means2d.reshape(B * N, 2)), _np32(conics.reshape(B * N, 3)),
                                      _np32(colors.reshape(B * N, 3)), _np32(opacities.reshape(B * N)),
                                      _np32(depths.reshape(B * N)),
                                      radii.reshape(B * N, 2).to(torch.int32).contiguous().numpy(), tw, th)
        offsets, gids = _bin(boxes, counts, params[:, _Z].copy(), max(N, 1), tw, tw * th, B * tw * th)
        bg_np = _np32(bg)
        out, T_final, last = _forward(params, offsets, gids, bg_np, N, width, height, tw, th)
        ctx.saved = (params, offsets, gids, bg_np, T_final, last, tw, th, B, N)
        ctx.dtypes = (means2d.dtype, conics.dtype, colors.dtype, opacities.dtype, depths.dtype)
        return torch.from_numpy(out).to(colors.dtype)

    @staticmethod
    def backward(ctx, v_out):
        params, offsets, gids, bg_np, T_final, last, tw, th, B, N = ctx.saved
        _set_threads()
        v_isect = _backward(params, offsets, gids, bg_np, T_final, last, _np32(v_out), tw, th)
        v = torch.from_numpy(_reduce(v_isect, gids, B * N))
        dm, dc, dcol, dop, dd = ctx.dtypes
        return (v[:, 0:2].reshape(B, N, 2).to(dm), v[:, 2:5].reshape(B, N, 3).to(dc),
                v[:, 6:9].reshape(B, N, 3).to(dcol), v[:, 5].reshape(B, N).to(dop), v[:, 9].reshape(B, N).to(dd),
                None, None, None, None)


def render_cpu(means, quats, scales, opacities, colors, world_to_cam, K, width: int, height: int,
               background: torch.Tensor):
    """CPU pipeline (validated inputs, background (B, 3)) -> rgb (B,H,W,3), alpha (B,H,W,1), depth (B,H,W,1)."""
    proj = project(means, quats, scales, opacities, world_to_cam, K, width, height)
    out = _Rasterize.apply(proj.means2d, proj.conics, colors, opacities, proj.depths, proj.radii,
                           background.detach(), width, height)
    return out[..., 0:3], out[..., 4:5], out[..., 3:4]

"""CPU backend: numba tile rasterizer with a hand-written backward (the standard 3DGS one).

Pipeline per call (B frames at once; the tiles of all frames form one parallel loop):

1. ``_project`` (parallel over Gaussians): EWA projection, gsplat's ``fully_fused_projection`` math
   (clamped perspective Jacobian, eps2d low-pass, opacity-aware 3.33-sigma box), packed per-Gaussian
   screen parameters, the tile box (gsplat's ``isect_tiles``) and the exact pixel ellipse where
   opacity * exp(-power) >= ALPHA_MIN.
2. ``_bin`` (parallel over frames): a stable depth sort of each frame's visible Gaussians, then a
   counting sort of their intersections by global tile id (frame * n_tiles + tile): each tile's list
   is front to back, ties by Gaussian index, as gsplat's radix sort gives.
3. ``_forward`` (parallel over tiles, handed out one at a time): Gaussian-major inside a tile, front to
   back; each Gaussian visits only the pixels of its ellipse, row span by row span; a pixel stops
   (exclusively) when its transmittance would fall to <= T_MIN, the tile when all its pixels have.
   Saves final T and each pixel's last contributing list index. The same pass can apply the
   transpose of compositing to per-pixel values (``transpose_cpu``: colour-linear back-projection).
4. ``_backward`` (parallel over tiles): back to front from each pixel's last Gaussian, recovering
   T_i = T_final / prod(1 - alpha_j); gradients per intersection row (a tile owns its rows: no races),
   ``_reduce`` sums them per Gaussian, ``_project_vjp`` (parallel over Gaussians) takes them to means,
   quats, scales and world_to_cam.

Steps 3 and 4 run, per ``tile_kernels()``, either the numba kernels here or the same tile bodies in C
with AVX2/FMA (``dejavu.render.simd``, ``simd_raster.c``): same arguments, outputs and algorithm, float
rounding apart; the numba kernels are the fallback where the C ones cannot be built or run.

Memory: O(pixels + intersections); no (pixels x Gaussians) arrays. float32/int32 throughout.
Every numba kernel and what it calls lives in this file (numba's disk cache does not see edits elsewhere).
The torch twin is ``dejavu.render.reference``; tests compare values and every gradient.
"""

from __future__ import annotations

import contextlib
import math

import numba
import numpy as np
import torch
from numba import njit, prange

from dejavu.render import config, simd

_TS = config.TILE_SIZE
_ALPHA_MIN = np.float32(config.ALPHA_MIN)
_ALPHA_MAX = np.float32(config.ALPHA_MAX)
_T_MIN = np.float32(config.T_MIN)
_LN_255 = np.float32(math.log(1.0 / config.ALPHA_MIN))
_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_FH = np.float32(0.5)
_F2 = np.float32(2.0)
_SPAN_EPS = np.float32(1e-2)  # pixels added to each row span (the exact tests stay inside)
_NEAR = np.float32(config.NEAR_PLANE)
_FAR = np.float32(config.FAR_PLANE)
_EPS2D = np.float32(config.EPS2D)
_EXTEND = np.float32(config.EXTEND)
_MARGIN = np.float32(config.CLAMP_MARGIN)

# params columns
_MX, _MY, _CA, _CB, _CC, _OP, _R, _G, _B, _Z, _EX, _EY, _LIM = range(13)
_NP = 13
# gradient columns (per intersection / per Gaussian)
_NV = 10  # v_mx, v_my, v_ca, v_cb, v_cc, v_op, v_r, v_g, v_b, v_z

_KW = dict(cache=True, nogil=True, fastmath=True)
_KW_EXACT = dict(cache=True, nogil=True)  # projection: no fastmath, so radii match the torch reference




# 3x3 matrices below are row-major 9-tuples of float32 (registers, no allocation, no BLAS).


@njit(**_KW_EXACT)
def _mm(a, b):
    """a @ b."""
    return (a[0] * b[0] + a[1] * b[3] + a[2] * b[6], a[0] * b[1] + a[1] * b[4] + a[2] * b[7],
            a[0] * b[2] + a[1] * b[5] + a[2] * b[8],
            a[3] * b[0] + a[4] * b[3] + a[5] * b[6], a[3] * b[1] + a[4] * b[4] + a[5] * b[7],
            a[3] * b[2] + a[4] * b[5] + a[5] * b[8],
            a[6] * b[0] + a[7] * b[3] + a[8] * b[6], a[6] * b[1] + a[7] * b[4] + a[8] * b[7],
            a[6] * b[2] + a[7] * b[5] + a[8] * b[8])


@njit(**_KW_EXACT)
def _tr(a):
    """a^T."""
    return (a[0], a[3], a[6], a[1], a[4], a[7], a[2], a[5], a[8])


@njit(**_KW_EXACT)
def _quat_rot(q):
    """wxyz quaternion (any norm) -> (row-major rotation 9-tuple, normalised (w, x, y, z), 1 / norm)."""
    inv = _F1 / max(math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]), np.float32(1e-12))
    w, x, y, z = q[0] * inv, q[1] * inv, q[2] * inv, q[3] * inv
    r = (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
         2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
         2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y))
    return r, (w, x, y, z), inv


@njit(**_KW_EXACT)
def _view(viewmats, b):
    """Rotation 9-tuple and translation of frame b's world-to-camera matrix."""
    v = viewmats[b]
    return (v[0, 0], v[0, 1], v[0, 2], v[1, 0], v[1, 1], v[1, 2], v[2, 0], v[2, 1], v[2, 2]), (v[0, 3], v[1, 3], v[2, 3])


@njit(**_KW_EXACT)
def _cam_point(Rc, t, p):
    return (Rc[0] * p[0] + Rc[1] * p[1] + Rc[2] * p[2] + t[0], Rc[3] * p[0] + Rc[4] * p[1] + Rc[5] * p[2] + t[1],
            Rc[6] * p[0] + Rc[7] * p[1] + Rc[8] * p[2] + t[2])


@njit(**_KW_EXACT)
def _covariances(rq, s, Rc):
    """M = Rq S, world covariance M M^T, camera covariance Rc M M^T Rc^T (9-tuples)."""
    M = (rq[0] * s[0], rq[1] * s[1], rq[2] * s[2], rq[3] * s[0], rq[4] * s[1], rq[5] * s[2],
         rq[6] * s[0], rq[7] * s[1], rq[8] * s[2])
    cov = _mm(M, _tr(M))
    return M, cov, _mm(_mm(Rc, cov), _tr(Rc))


@njit(**_KW_EXACT)
def _jacobian(x, y, z, fx, fy, cx, cy, W, H):
    """gsplat persp_proj Jacobian as a 3x3 9-tuple (last row 0) with x/z, y/z clamped; tx, ty, clamp flags."""
    tan_x = _FH * np.float32(W) / fx
    tan_y = _FH * np.float32(H) / fy
    lxp = (np.float32(W) - cx) / fx + _MARGIN * tan_x
    lxn = cx / fx + _MARGIN * tan_x
    lyp = (np.float32(H) - cy) / fy + _MARGIN * tan_y
    lyn = cy / fy + _MARGIN * tan_y
    rz = _F1 / z
    xr, yr = x * rz, y * rz
    tx = z * min(lxp, max(-lxn, xr))
    ty = z * min(lyp, max(-lyn, yr))
    J = (fx * rz, _F0, -fx * tx * rz * rz, _F0, fy * rz, -fy * ty * rz * rz, _F0, _F0, _F0)
    return J, tx, ty, (xr <= lxp and xr >= -lxn), (yr <= lyp and yr >= -lyn)


@njit(parallel=True, **_KW_EXACT)
def _project(means, quats, scales, opac, colors, viewmats, Ks, N, W, H, tw, th):
    """EWA projection + tile boxes for G = B * N Gaussians (gsplat fully_fused_projection).

    viewmats (B, 4, 4), Ks (B, 3, 3). Returns params (G, 13), boxes (G, 4) int32 [x0, y0, x1, y1)
    in tiles and counts (G,) int64 (0 = culled).
    """
    G = means.shape[0]
    params = np.zeros((G, _NP), np.float32)
    boxes = np.zeros((G, 4), np.int32)
    counts = np.zeros(G, np.int64)
    tsf = np.float32(_TS)
    for g in prange(G):
        b = g // N
        Rc, t = _view(viewmats, b)
        px, py, pz = _cam_point(Rc, t, (means[g, 0], means[g, 1], means[g, 2]))
        if not (pz >= _NEAR and pz <= _FAR):
            continue
        rq, _, _ = _quat_rot((quats[g, 0], quats[g, 1], quats[g, 2], quats[g, 3]))
        _, _, cov_c = _covariances(rq, (scales[g, 0], scales[g, 1], scales[g, 2]), Rc)
        fx, fy, cx, cy = Ks[b, 0, 0], Ks[b, 1, 1], Ks[b, 0, 2], Ks[b, 1, 2]
        J, _, _, _, _ = _jacobian(px, py, pz, fx, fy, cx, cy, W, H)
        c2 = _mm(_mm(J, cov_c), _tr(J))
        a = c2[0] + _EPS2D
        bb = c2[1]
        c = c2[4] + _EPS2D
        det = a * c - bb * bb
        o = opac[g]
        if not (det > _F0) or not (o >= _ALPHA_MIN):
            continue
        rz = _F1 / pz
        mx = fx * px * rz + cx
        my = fy * py * rz + cy
        ext = min(_EXTEND, math.sqrt(_F2 * math.log(o / _ALPHA_MIN)))
        rx = math.ceil(ext * math.sqrt(a))
        ry = math.ceil(ext * math.sqrt(c))
        if rx <= 0 and ry <= 0:
            continue
        if mx + rx <= 0 or mx - rx >= W or my + ry <= 0 or my - ry >= H:
            continue
        params[g, _MX] = mx
        params[g, _MY] = my
        params[g, _CA] = c / det
        params[g, _CB] = -bb / det
        params[g, _CC] = a / det
        params[g, _OP] = o
        params[g, _R] = colors[g, 0]
        params[g, _G] = colors[g, 1]
        params[g, _B] = colors[g, 2]
        params[g, _Z] = pz
        # pixel box: the ellipse power <= ln(o / ALPHA_MIN) (smaller alphas are skipped), half-sizes
        lim = math.log(o) + _LN_255
        if lim > _F0:
            params[g, _EX] = math.sqrt(_F2 * lim * a) * np.float32(1.0001) + np.float32(1e-3)
            params[g, _EY] = math.sqrt(_F2 * lim * c) * np.float32(1.0001) + np.float32(1e-3)
            params[g, _LIM] = lim
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


@njit(parallel=True, **_KW_EXACT)
def _project_vjp(means, quats, scales, viewmats, Ks, counts, v2d, N, W, H):
    """Projection backward. v2d (G, 10) rows from ``_reduce`` (mx, my, ca, cb, cc and z are used).

    Returns v_means (G, 3), v_quats (G, 4), v_scales (G, 3) and v_view (G, 12): per-Gaussian rows of
    d/d world_to_cam[:3, :4] (sum them per frame).
    """
    G = means.shape[0]
    v_means = np.zeros((G, 3), np.float32)
    v_quats = np.zeros((G, 4), np.float32)
    v_scales = np.zeros((G, 3), np.float32)
    v_view = np.zeros((G, 12), np.float32)
    for g in prange(G):
        if counts[g] == 0:
            continue
        b = g // N
        Rc, t = _view(viewmats, b)
        p = (means[g, 0], means[g, 1], means[g, 2])
        x, y, z = _cam_point(Rc, t, p)
        rq, qn, inv = _quat_rot((quats[g, 0], quats[g, 1], quats[g, 2], quats[g, 3]))
        s = (scales[g, 0], scales[g, 1], scales[g, 2])
        M, cov, cov_c = _covariances(rq, s, Rc)
        fx, fy, cx, cy = Ks[b, 0, 0], Ks[b, 1, 1], Ks[b, 0, 2], Ks[b, 1, 2]
        J, tx, ty, inx, iny = _jacobian(x, y, z, fx, fy, cx, cy, W, H)
        c2 = _mm(_mm(J, cov_c), _tr(J))
        a, bb, c = c2[0] + _EPS2D, c2[1], c2[4] + _EPS2D
        det = a * c - bb * bb
        k00, k01, k11 = c / det, -bb / det, a / det  # conic
        va, vb, vc = v2d[g, 2], _FH * v2d[g, 3], v2d[g, 4]
        # d/d cov2d = -Kc V Kc (symmetric)
        t00, t01, t10, t11 = k00 * va + k01 * vb, k00 * vb + k01 * vc, k01 * va + k11 * vb, k01 * vb + k11 * vc
        p00 = -(t00 * k00 + t01 * k01)
        p01 = -(t00 * k01 + t01 * k11)
        p11 = -(t10 * k01 + t11 * k11)
        vC = (p00, p01, _F0, p01, p11, _F0, _F0, _F0, _F0)
        v_covc = _mm(_mm(_tr(J), vC), J)
        vJ = _mm(_mm(vC, J), cov_c)  # times 2 below
        rz = _F1 / z
        rz2 = rz * rz
        rz3 = rz2 * rz
        vmx, vmy = v2d[g, 0], v2d[g, 1]
        vJ02, vJ12 = _F2 * vJ[2], _F2 * vJ[5]
        vx = fx * rz * vmx
        vy = fy * rz * vmy
        vz = -(fx * x * vmx + fy * y * vmy) * rz2 + v2d[g, 9]
        if inx:
            vx += -fx * rz2 * vJ02
        else:
            vz += -fx * rz3 * vJ02 * tx
        if iny:
            vy += -fy * rz2 * vJ12
        else:
            vz += -fy * rz3 * vJ12 * ty
        vz += (-fx * rz2 * _F2 * vJ[0] - fy * rz2 * _F2 * vJ[4] + _F2 * fx * tx * rz3 * vJ02
               + _F2 * fy * ty * rz3 * vJ12)
        vpc = (vx, vy, vz)
        # p_c = Rc p + t ; cov_c = Rc cov Rc^T
        v_cov = _mm(_mm(_tr(Rc), v_covc), Rc)
        vRc = _mm(_mm(v_covc, Rc), cov)
        for i in range(3):
            v_means[g, i] = Rc[i] * vx + Rc[3 + i] * vy + Rc[6 + i] * vz
            for j in range(3):
                v_view[g, i * 4 + j] = _F2 * vRc[3 * i + j] + vpc[i] * p[j]
            v_view[g, i * 4 + 3] = vpc[i]
        # cov = M M^T, M = Rq S
        vM = _mm(v_cov, M)  # times 2 below
        Gq = (_F2 * vM[0] * s[0], _F2 * vM[1] * s[1], _F2 * vM[2] * s[2], _F2 * vM[3] * s[0], _F2 * vM[4] * s[1],
              _F2 * vM[5] * s[2], _F2 * vM[6] * s[0], _F2 * vM[7] * s[1], _F2 * vM[8] * s[2])
        for j in range(3):
            v_scales[g, j] = _F2 * (vM[j] * rq[j] + vM[3 + j] * rq[3 + j] + vM[6 + j] * rq[6 + j])
        w, qx, qy, qz = qn
        vw = _F2 * (-qz * Gq[1] + qy * Gq[2] + qz * Gq[3] - qx * Gq[5] - qy * Gq[6] + qx * Gq[7])
        vqx = _F2 * (qy * Gq[1] + qz * Gq[2] + qy * Gq[3] - _F2 * qx * Gq[4] - w * Gq[5]
                     + qz * Gq[6] + w * Gq[7] - _F2 * qx * Gq[8])
        vqy = _F2 * (-_F2 * qy * Gq[0] + qx * Gq[1] + w * Gq[2] + qx * Gq[3] + qz * Gq[5]
                     - w * Gq[6] + qz * Gq[7] - _F2 * qy * Gq[8])
        vqz = _F2 * (-_F2 * qz * Gq[0] - w * Gq[1] + qx * Gq[2] + w * Gq[3] - _F2 * qz * Gq[4]
                     + qy * Gq[5] + qx * Gq[6] + qy * Gq[7])
        dot = vw * w + vqx * qx + vqy * qy + vqz * qz
        v_quats[g, 0] = (vw - dot * w) * inv
        v_quats[g, 1] = (vqx - dot * qx) * inv
        v_quats[g, 2] = (vqy - dot * qy) * inv
        v_quats[g, 3] = (vqz - dot * qz) * inv
    return v_means, v_quats, v_scales, v_view


@njit(**_KW_EXACT)
def _depth_order(keys):
    """Stable ascending argsort (int64) of ``keys`` (n,) float32, all >= 0 and finite (camera depths):
    np.argsort(keys, kind="mergesort") in three LSD radix passes of 11 bits over the keys' bit patterns
    (non-negative IEEE floats order as their unsigned bits)."""
    n = keys.shape[0]
    bits = keys.view(np.uint32)
    order = np.arange(n)
    scratch = np.empty(n, np.int64)
    hist = np.empty(2049, np.int64)
    for shift in (0, 11, 22):
        hist[:] = 0
        for i in range(n):
            hist[((bits[i] >> shift) & 2047) + 1] += 1
        for d in range(2048):
            hist[d + 1] += hist[d]
        for i in range(n):
            g = order[i]
            d = (bits[g] >> shift) & 2047
            scratch[hist[d]] = g
            hist[d] += 1
        order, scratch = scratch, order
    return order


@njit(parallel=True, **_KW)
def _bin(boxes, counts, depths, N, tw, n_tiles, n_tiles_total):
    """Counting sort of tile-Gaussian intersections by global tile (frame * n_tiles + tile), filled in
    depth order (stable, ties by index), so each tile's list comes out front to back.

    Frames own disjoint ranges of global tiles, so each frame is sorted and filled on its own thread.
    Returns tile_offsets (n_tiles_total + 1,) int64 and gids (I,) int32.
    """
    B = n_tiles_total // n_tiles
    hist = np.zeros(n_tiles_total + 1, np.int64)
    n_vis = np.zeros(B, np.int64)
    for b in prange(B):
        base = b * n_tiles
        for g in range(b * N, min((b + 1) * N, boxes.shape[0])):
            if counts[g] == 0:
                continue
            n_vis[b] += 1
            for ty in range(boxes[g, 1], boxes[g, 3]):
                for tx in range(boxes[g, 0], boxes[g, 2]):
                    hist[base + ty * tw + tx + 1] += 1
    offsets = np.cumsum(hist)
    gids = np.empty(offsets[-1], np.int32)
    for b in prange(B):
        base = b * n_tiles
        visible = np.empty(n_vis[b], np.int64)
        keys = np.empty(n_vis[b], np.float32)
        k = 0
        for g in range(b * N, min((b + 1) * N, boxes.shape[0])):
            if counts[g] != 0:
                visible[k] = g
                keys[k] = depths[g]
                k += 1
        order = visible[_depth_order(keys)]
        cursor = offsets[base:base + n_tiles].copy()
        for g in order:
            for ty in range(boxes[g, 1], boxes[g, 3]):
                for tx in range(boxes[g, 0], boxes[g, 2]):
                    t = ty * tw + tx
                    gids[cursor[t]] = g
                    cursor[t] += 1
    return offsets, gids


@njit(**_KW)
def _row_range(my, ey, Y0, Y1):
    """Rows [py0, py1) of tile rows [Y0, Y1) whose centres lie within the Gaussian's pixel box."""
    # np.ceil / np.floor on float32 are LLVM intrinsics; math.ceil / math.floor call numba helpers
    return max(Y0, int(np.ceil(my - ey - _FH))), min(Y1, int(np.floor(my + ey - _FH)) + 1)


@njit(**_KW)
def _row_span(mx, dy, cb, ica, dd, l2, X0, X1):
    """Columns [px0, px1) of tile columns [X0, X1) on the row at dy = my - y inside the ellipse
    power <= lim, a quadratic in dx = mx - x: dd = cb^2 - ca cc, l2 = 2 ca lim, ica = 1 / ca
    (widened by _SPAN_EPS pixels; the per-pixel alpha test is exact). Empty when disc < 0."""
    disc = dd * dy * dy + l2
    if disc < _F0:
        return X0, X0
    sq = math.sqrt(disc)
    xlo = mx + (cb * dy - sq) * ica - _FH - _SPAN_EPS
    xhi = mx + (cb * dy + sq) * ica - _FH + _SPAN_EPS
    return max(X0, int(np.ceil(xlo))), min(X1, int(np.floor(xhi)) + 1)


@njit(parallel=True, **_KW)
def _forward(params, offsets, gids, bg, out, T_out, last_out, tw, th, v_pix, v_rows):
    """Front-to-back compositing into out (B, H, W, 5) [r, g, b, depth, alpha], T_out (B, H, W) final
    transmittance and last_out (B, H, W) each pixel's last contributing index in its tile's list.

    With v_pix (B, H, W, C), C > 0, also the transpose of compositing: v_rows[k] (I, C) += w * v_pix
    over the pixels of intersection k, w = alpha * T its compositing weight (C = 0: not computed).

    Outputs come allocated (no array creation outside the tile loop: see ``_tile_schedule``).
    """
    n_tiles = tw * th
    n_total = offsets.shape[0] - 1
    H, W = out.shape[1], out.shape[2]
    n_v = v_pix.shape[3]
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
            py0, py1 = _row_range(my, ey, Y0, Y1)
            if py0 >= py1 or mx + ex < np.float32(X0) or mx - ex > np.float32(X1):
                continue
            lim = params[g, _LIM]
            ca, cb, cc, o = params[g, _CA], params[g, _CB], params[g, _CC], params[g, _OP]
            cr, cg, cbl, z = params[g, _R], params[g, _G], params[g, _B], params[g, _Z]
            kl = np.int32(k - s)
            ica, dd, l2 = _F1 / ca, cb * cb - ca * cc, _F2 * ca * lim
            for py in range(py0, py1):
                dy = my - (np.float32(py) + _FH)
                i = py - Y0
                px0, px1 = _row_span(mx, dy, cb, ica, dd, l2, X0, X1)
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
                    for c in range(n_v):
                        v_rows[k, c] += w * v_pix[b, py, px, c]
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


@njit(parallel=True, **_KW)
def _backward(params, offsets, gids, bg, T_final, last_idx, v_out, v_isect, tw, th):
    """Back-to-front gradients. v_out (B, H, W, 5) [rgb, depth, alpha] -> v_isect (I, 10) per-intersection
    rows (allocated zeroed by the caller)."""
    n_tiles = tw * th
    n_total = offsets.shape[0] - 1
    H, W = T_final.shape[1], T_final.shape[2]
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
            py0, py1 = _row_range(my, ey, Y0, Y1)
            if py0 >= py1 or mx + ex < np.float32(X0) or mx - ex > np.float32(X1):
                continue
            lim = params[g, _LIM]
            ca, cb, cc, o = params[g, _CA], params[g, _CB], params[g, _CC], params[g, _OP]
            cr, cg, cbl, z = params[g, _R], params[g, _G], params[g, _B], params[g, _Z]
            kl = np.int32(k - s)
            ica, dd, l2 = _F1 / ca, cb * cb - ca * cc, _F2 * ca * lim
            g_mx = g_my = g_ca = g_cb = g_cc = g_o = g_r = g_g = g_b = g_z = _F0
            for py in range(py0, py1):
                dy = my - (np.float32(py) + _FH)
                i = py - Y0
                px0, px1 = _row_span(mx, dy, cb, ica, dd, l2, X0, X1)
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


@njit(parallel=True, **_KW)
def _reduce(v_isect, gids, offsets, n_tiles, G):
    """Sum per-intersection rows (I, C) into (G, C) per-Gaussian rows, parallel over frames: frame b's
    intersections (tiles b * n_tiles ... (b + 1) * n_tiles of ``offsets``) name only its own Gaussians."""
    C = v_isect.shape[1]
    B = (offsets.shape[0] - 1) // n_tiles
    v = np.zeros((G, C), np.float32)
    for b in prange(B):
        for k in range(offsets[b * n_tiles], offsets[(b + 1) * n_tiles]):
            g = gids[k]
            for c in range(C):
                v[g, c] += v_isect[k, c]
    return v


def tile_kernels() -> str:
    """Which tile kernels the next call runs: "simd" (``dejavu.render.simd``, C/AVX2) or "numba"
    (``config.CPU_KERNELS == "numba"``, or where the C kernels cannot run)."""
    if config.CPU_KERNELS not in ("auto", "numba"):
        raise ValueError(f"config.CPU_KERNELS must be 'auto' or 'numba', got {config.CPU_KERNELS!r}")
    return "simd" if config.CPU_KERNELS == "auto" and simd.kernels() is not None else "numba"


def _forward_tiles(params, offsets, gids, bg, out, T_out, last_out, tw, th, v_pix, v_rows) -> None:
    """``_forward`` (same arguments and outputs) on the kernels :func:`tile_kernels` names."""
    kernel = simd.kernels().forward if tile_kernels() == "simd" else _forward
    with _tile_schedule():
        kernel(params, offsets, gids, bg, out, T_out, last_out, tw, th, v_pix, v_rows)


def _backward_tiles(params, offsets, gids, bg, T_final, last_idx, v_out, v_isect, tw, th) -> None:
    """``_backward`` (same arguments and outputs) on the kernels :func:`tile_kernels` names."""
    kernel = simd.kernels().backward if tile_kernels() == "simd" else _backward
    with _tile_schedule():
        kernel(params, offsets, gids, bg, T_final, last_idx, v_out, v_isect, tw, th)


def _np32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def _geometry_arrays(means, quats, scales, world_to_cam, K) -> tuple[np.ndarray, ...]:
    """float32 numpy (B * N, 3) means, (B * N, 4) quats, (B * N, 3) scales, (B, 4, 4) world_to_cam, (B, 3, 3) K."""
    return (_np32(means.reshape(-1, 3)), _np32(quats.reshape(-1, 4)), _np32(scales.reshape(-1, 3)),
            _np32(world_to_cam), _np32(K))


@contextlib.contextmanager
def _threads(work: int):
    """numba threads for one call: 1 for small work (thread wake-ups cost more than they save,
    badly so on a loaded machine), else ``config.CPU_THREADS`` (0 = all); restored afterwards."""
    before = numba.get_num_threads()
    n = config.CPU_THREADS or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(1 if work < config.CPU_PARALLEL_MIN_WORK else min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(before)


@contextlib.contextmanager
def _tile_schedule():
    """Hand tiles to threads one at a time (their work differs a lot). Set from Python: in jitted code
    it would stop numba caching the kernel. The tile kernels create no arrays outside their tile loop,
    which would otherwise become parallel loops handed out element by element."""
    chunk = numba.set_parallel_chunksize(1)
    try:
        yield
    finally:
        numba.set_parallel_chunksize(chunk)


def _composite(arrays, opac, colors, bg, B, N, width, height, v_pix=None):
    """Project, bin and composite (numpy arrays: ``arrays`` = means, quats, scales, world_to_cam, K).

    Returns out (B, H, W, 5), T_final, last, params, counts, tile offsets, gids and, with ``v_pix``
    (B, H, W, C), the per-Gaussian transpose rows (B * N, C) (else None).
    """
    tw, th = (width + _TS - 1) // _TS, (height + _TS - 1) // _TS
    params, boxes, counts = _project(arrays[0], arrays[1], arrays[2], opac, colors, arrays[3], arrays[4], max(N, 1),
                                     width, height, tw, th)
    offsets, gids = _bin(boxes, counts, params[:, _Z].copy(), max(N, 1), tw, tw * th, B * tw * th)
    out = np.empty((B, height, width, 5), np.float32)
    T_final = np.empty((B, height, width), np.float32)
    last = np.empty((B, height, width), np.int32)
    C = 0 if v_pix is None else v_pix.shape[3]
    v_rows = np.zeros((gids.shape[0] if C else 0, C), np.float32)
    _forward_tiles(params, offsets, gids, bg, out, T_final, last, tw, th,
                   v_pix if C else np.zeros((0, 0, 0, 0), np.float32), v_rows)
    per_gaussian = _reduce(v_rows, gids, offsets, tw * th, B * N) if C else None
    return out, T_final, last, params, counts, offsets, gids, per_gaussian


class _RenderCPU(torch.autograd.Function):
    """(means, quats, scales, opacities, colors, world_to_cam) -> (B, H, W, 5) [r, g, b, depth, alpha]."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, colors, world_to_cam, K, bg, width, height):
        B, N = opacities.shape
        with _threads(B * N + B * width * height):
            return _RenderCPU._run_forward(ctx, means, quats, scales, opacities, colors, world_to_cam, K, bg, width, height)

    @staticmethod
    def _run_forward(ctx, means, quats, scales, opacities, colors, world_to_cam, K, bg, width, height):
        B, N = opacities.shape
        tw, th = (width + _TS - 1) // _TS, (height + _TS - 1) // _TS
        arrays = _geometry_arrays(means, quats, scales, world_to_cam, K)
        bg_np = _np32(bg)
        out, T_final, last, params, counts, offsets, gids, _ = _composite(
            arrays, _np32(opacities.reshape(B * N)), _np32(colors.reshape(B * N, 3)), bg_np, B, N, width, height)
        ctx.saved = (arrays, params, counts, offsets, gids, bg_np, T_final, last, tw, th, B, N, width, height)
        ctx.dtypes = [t.dtype for t in (means, quats, scales, opacities, colors, world_to_cam)]
        return torch.from_numpy(out).to(colors.dtype)

    @staticmethod
    def backward(ctx, v_out):
        arrays, params, counts, offsets, gids, bg_np, T_final, last, tw, th, B, N, W, H = ctx.saved
        with _threads(B * N + B * W * H):
            v_isect, v2d, v_means, v_quats, v_scales, v_view = _RenderCPU._run_backward(ctx, v_out)
        v2d = torch.from_numpy(v2d)
        v_w2c = None
        if ctx.needs_input_grad[5]:
            v_w2c = torch.zeros(B, 4, 4)
            v_w2c[:, :3, :] = torch.from_numpy(v_view).reshape(B, N, 3, 4).sum(1)
        d = ctx.dtypes
        return (torch.from_numpy(v_means).reshape(B, N, 3).to(d[0]), torch.from_numpy(v_quats).reshape(B, N, 4).to(d[1]),
                torch.from_numpy(v_scales).reshape(B, N, 3).to(d[2]), v2d[:, 5].reshape(B, N).to(d[3]),
                v2d[:, 6:9].reshape(B, N, 3).to(d[4]), None if v_w2c is None else v_w2c.to(d[5]),
                None, None, None, None)

    @staticmethod
    def _run_backward(ctx, v_out):
        arrays, params, counts, offsets, gids, bg_np, T_final, last, tw, th, B, N, W, H = ctx.saved
        v_isect = np.zeros((gids.shape[0], _NV), np.float32)
        _backward_tiles(params, offsets, gids, bg_np, T_final, last, _np32(v_out), v_isect, tw, th)
        v2d = _reduce(v_isect, gids, offsets, tw * th, B * N)
        v_means, v_quats, v_scales, v_view = _project_vjp(arrays[0], arrays[1], arrays[2], arrays[3], arrays[4],
                                                          counts, v2d, max(N, 1), W, H)
        return v_isect, v2d, v_means, v_quats, v_scales, v_view


def render_cpu(means, quats, scales, opacities, colors, world_to_cam, K, width: int, height: int,
               background: torch.Tensor):
    """CPU pipeline (validated inputs, background (B, 3)) -> rgb (B,H,W,3), alpha (B,H,W,1), depth (B,H,W,1).

    Gradients reach means, quats, scales, opacities, colors and world_to_cam (not K or background).
    """
    out = _RenderCPU.apply(means, quats, scales, opacities, colors, world_to_cam, K.detach(), background.detach(),
                           width, height)
    # one split, not three slices: autograd then joins the three gradients into one (B, H, W, 5) tensor instead of
    # zero-filling one per slice and adding them (15-20 ms less at 8 x 512^2; docs/experiments/2026-12-07-simd-rasterizer.md)
    rgb, depth, alpha = torch.split(out, (3, 1, 1), dim=-1)
    return rgb, alpha, depth


def transpose_cpu(means, quats, scales, opacities, world_to_cam, K, width: int, height: int,
                  cotangent: torch.Tensor) -> torch.Tensor:
    """A^T v on the CPU: (B, N, C) = sum over pixels of each Gaussian's compositing weight times
    ``cotangent`` (B, H, W, C), in one compositing pass (see :func:`dejavu.render.render_transpose`)."""
    B, N = opacities.shape
    C = cotangent.shape[-1]
    arrays = _geometry_arrays(means, quats, scales, world_to_cam, K)
    with _threads(B * N + B * width * height):
        *_, rows = _composite(arrays, _np32(opacities.reshape(B * N)), np.zeros((B * N, 3), np.float32),
                              np.zeros((B, 3), np.float32), B, N, width, height, v_pix=_np32(cotangent))
    return torch.from_numpy(rows).reshape(B, N, C).to(cotangent.dtype)

"""UV rasterization tables: which triangle covers each texel of an S x S map, and where.

Texel (row r, col c) has its centre at u = (c + 0.5) / S, v = 1 - (r + 0.5) / S (docs/CONVENTIONS.md).
A texel is valid when its centre lies inside (or on the edge of) some UV triangle; it then gets that
triangle's id and the centre's barycentrics in UV space. Applying the same barycentrics to the posed
3D triangle puts the Gaussian exactly on the mesh surface. Where UV triangles overlap, the one that
contains the centre most deeply (largest smallest barycentric) wins.

Vectorised numpy: triangles are bucketed by bounding-box size and each bucket tests all texels of
its boxes at once. Tables are cached in memory per (UV layout, S).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

_EPS = 1e-7
_CACHE: dict[tuple[str, int], "TexelTable"] = {}


@dataclass(frozen=True)
class TexelTable:
    """Per valid texel, in row-major order (Gaussian n = n-th valid texel).

    size: S.
    flat_index: (N,) int64, row * S + col.
    face: (N,) int64 triangle ids.
    bary: (N, 3) float64 barycentrics in that triangle (sum 1, each >= -1e-7).
    """

    size: int
    flat_index: np.ndarray
    face: np.ndarray
    bary: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(S, S) bool valid texels."""
        m = np.zeros(self.size * self.size, dtype=bool)
        m[self.flat_index] = True
        return m.reshape(self.size, self.size)


def _barycentric(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentrics (..., 3) of points p (..., 2) in triangles tri (..., 3, 2); degenerate -> -inf."""
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    v0, v1, d = b - a, c - a, p - a
    den = v0[..., 0] * v1[..., 1] - v1[..., 0] * v0[..., 1]
    ok = np.abs(den) > 1e-18
    den = np.where(ok, den, 1.0)
    w1 = (d[..., 0] * v1[..., 1] - v1[..., 0] * d[..., 1]) / den
    w2 = (v0[..., 0] * d[..., 1] - d[..., 0] * v0[..., 1]) / den
    out = np.stack([1.0 - w1 - w2, w1, w2], -1)
    return np.where(ok[..., None], out, -np.inf)


def rasterize_uv(uv_coords: np.ndarray, uv_faces: np.ndarray, size: int) -> TexelTable:
    """Rasterize UV triangles at S = ``size``.

    Args:
        uv_coords: (T, 2) in [0, 1], u right, v up.
        uv_faces: (F, 3) indices into uv_coords.
        size: S.

    Returns:
        :class:`TexelTable`.
    """
    S = int(size)
    tri = np.asarray(uv_coords, dtype=np.float64)[np.asarray(uv_faces)]  # (F, 3, 2)
    # Texel-space continuous coordinates: x = u * S (col), y = (1 - v) * S (row); centres at k + 0.5.
    xy = np.stack([tri[..., 0] * S, (1.0 - tri[..., 1]) * S], -1)
    lo = np.clip(np.floor(xy.min(1) - 0.5), 0, S - 1).astype(np.int64)  # (F, 2) first candidate texel
    hi = np.clip(np.ceil(xy.max(1) - 0.5), 0, S - 1).astype(np.int64)
    ext = (hi - lo + 1).max(1)  # (F,) box side in texels
    bucket = np.ceil(np.log2(np.maximum(ext, 1))).astype(np.int64)
    texel, face, bary = [], [], []
    for b in np.unique(bucket):
        ids = np.nonzero(bucket == b)[0]
        n = 1 << int(b)
        # Process in chunks so memory stays bounded for big boxes.
        chunk = max(1, 2_000_000 // (n * n))
        oy, ox = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        for s in range(0, len(ids), chunk):
            f = ids[s: s + chunk]
            rows = lo[f, 1, None, None] + oy  # (f, n, n)
            cols = lo[f, 0, None, None] + ox
            inside_box = (rows <= hi[f, 1, None, None]) & (cols <= hi[f, 0, None, None])
            p = np.stack([cols + 0.5, rows + 0.5], -1)  # (f, n, n, 2)
            w = _barycentric(p, np.broadcast_to(xy[f, None, None], (len(f), n, n, 3, 2)))
            hit = inside_box & (w.min(-1) >= -_EPS)
            fi, yi, xi = np.nonzero(hit)
            texel.append(rows[fi, yi, xi] * S + cols[fi, yi, xi])
            face.append(f[fi])
            bary.append(w[fi, yi, xi])
    texel = np.concatenate(texel) if texel else np.zeros(0, np.int64)
    face = np.concatenate(face) if face else np.zeros(0, np.int64)
    bary = np.concatenate(bary) if bary else np.zeros((0, 3))
    # One triangle per texel: sort by texel, then deepest containment first; keep the first.
    order = np.lexsort((-bary.min(1), texel))
    texel, face, bary = texel[order], face[order], bary[order]
    first = np.ones(len(texel), dtype=bool)
    first[1:] = texel[1:] != texel[:-1]
    return TexelTable(S, texel[first], face[first].astype(np.int64), bary[first])


def _layout_key(uv_coords: np.ndarray, uv_faces: np.ndarray) -> str:
    h = hashlib.sha1()
    for a in (np.ascontiguousarray(uv_coords, dtype=np.float32), np.ascontiguousarray(uv_faces, dtype=np.int64)):
        h.update(a.tobytes())
    return h.hexdigest()


def texel_table(uv_coords: np.ndarray, uv_faces: np.ndarray, size: int) -> TexelTable:
    """:func:`rasterize_uv`, cached in memory per (layout, S)."""
    key = (_layout_key(uv_coords, uv_faces), int(size))
    if key not in _CACHE:
        _CACHE[key] = rasterize_uv(uv_coords, uv_faces, size)
    return _CACHE[key]

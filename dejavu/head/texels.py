"""UV rasterization tables: which triangle covers each texel of an S x S map, and where.

Texel (row r, col c) has its centre at u = (c + 0.5) / S, v = 1 - (r + 0.5) / S (docs/CONVENTIONS.md).
A texel is valid when its centre lies inside (or on the edge of) some UV triangle; it then gets that
triangle's id and the centre's barycentrics in UV space. Applying the same barycentrics to the posed
3D triangle puts the Gaussian exactly on the mesh surface. Where UV triangles overlap, the one that
contains the centre most deeply (largest smallest barycentric) wins.

Vectorised numpy: triangles are grouped by candidate-box size and each group tests all texels of
its boxes at once (barycentrics are affine in the texel centre). Tables are cached in memory per (UV layout, S).
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
    lo = np.clip(np.ceil(xy.min(1) - 0.5), 0, S - 1).astype(np.int64)  # (F, 2) first candidate texel (x, y)
    hi = np.clip(np.floor(xy.max(1) - 0.5), -1, S - 1).astype(np.int64)
    ext = np.maximum(hi - lo + 1, 0)  # (F, 2) candidate box size in texels
    # Barycentrics as affine functions of the texel centre: w1 = a1 x + b1 y + c1, w2 likewise.
    a, b, c = xy[:, 0], xy[:, 1], xy[:, 2]
    den = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    ok = (np.abs(den) > 1e-12) & (ext > 0).all(1)
    den = np.where(ok, den, 1.0)
    coef1 = np.stack([(c[:, 1] - a[:, 1]), -(c[:, 0] - a[:, 0])], 1) / den[:, None]  # d(w1)/d(x, y)
    coef2 = np.stack([-(b[:, 1] - a[:, 1]), (b[:, 0] - a[:, 0])], 1) / den[:, None]
    texel, face, bary = [], [], []
    keys = ext[:, 0] * (S + 1) + ext[:, 1]
    for key in np.unique(keys[ok]):
        ids = np.nonzero(ok & (keys == key))[0]
        nx, ny = int(ext[ids[0], 0]), int(ext[ids[0], 1])
        chunk = max(1, 4_000_000 // (nx * ny))
        oy, ox = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        for s in range(0, len(ids), chunk):
            f = ids[s: s + chunk]
            cols = lo[f, 0, None, None] + ox  # (f, ny, nx)
            rows = lo[f, 1, None, None] + oy
            dx = cols + 0.5 - a[f, 0, None, None]
            dy = rows + 0.5 - a[f, 1, None, None]
            w1 = coef1[f, 0, None, None] * dx + coef1[f, 1, None, None] * dy
            w2 = coef2[f, 0, None, None] * dx + coef2[f, 1, None, None] * dy
            w0 = 1.0 - w1 - w2
            hit = (w0 >= -_EPS) & (w1 >= -_EPS) & (w2 >= -_EPS)
            fi, yi, xi = np.nonzero(hit)
            texel.append(rows[fi, yi, xi] * S + cols[fi, yi, xi])
            face.append(f[fi])
            bary.append(np.stack([w0[fi, yi, xi], w1[fi, yi, xi], w2[fi, yi, xi]], 1))
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

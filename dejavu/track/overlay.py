"""Overlay pictures for checking a track: the fitted mesh, shaded, over the crop, plus landmarks.

Detected landmarks are drawn green, the fitted head's landmarks red (2x2-pixel dots); the mesh is
Lambert-shaded by its face normals (light from the camera) and blended at ``alpha``.
"""

from __future__ import annotations

import numpy as np


def face_shading(cam: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) two-sided Lambert term in [0, 1] for camera-frame vertices ``cam`` (V, 3), light at the camera."""
    tri = cam[faces]  # (F, 3, 3)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    centre = tri.mean(1)
    view = -centre / (np.linalg.norm(centre, axis=1, keepdims=True) + 1e-12)
    return np.abs((n * view).sum(1)).astype(np.float32)


def _dots(image: np.ndarray, pts: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Paint 2x2-pixel dots centred on (L, 2) points (project pixel convention) in place."""
    H, W = image.shape[:2]
    base = np.floor(np.asarray(pts) - 1.0).astype(np.int64)  # top-left pixel of the 2x2 block
    for dx in (0, 1):
        for dy in (0, 1):
            x, y = base[:, 0] + dx, base[:, 1] + dy
            ok = (x >= 0) & (x < W) & (y >= 0) & (y < H)
            image[y[ok], x[ok]] = colour


def draw_overlay(crop: np.ndarray, face_index: np.ndarray, shading: np.ndarray,
                 detected: np.ndarray | None = None, fitted: np.ndarray | None = None,
                 alpha: float = 0.5) -> np.ndarray:
    """One overlay picture.

    Args:
        crop: (H, W, 3) uint8 crop.
        face_index: (H, W) int visible mesh face per pixel (-1 none), from
            :func:`dejavu.track.masks.rasterize_labels`. shading: (F,) from :func:`face_shading`.
        detected, fitted: optional (L, 2) landmarks in crop pixels.

    Returns:
        (H, W, 3) uint8.
    """
    out = crop.copy()
    cover = face_index >= 0
    tint = np.array([170.0, 190.0, 255.0], np.float32) * alpha  # light blue
    shade = (0.25 + 0.75 * shading.astype(np.float32)[face_index[cover]])[:, None]
    mixed = crop[cover].astype(np.float32) * (1 - alpha) + shade * tint + 0.5
    out[cover] = np.minimum(mixed, 255).astype(np.uint8)
    if detected is not None:
        _dots(out, detected, (0, 255, 0))
    if fitted is not None:
        _dots(out, fitted, (255, 40, 40))
    return out

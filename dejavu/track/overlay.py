"""Overlay pictures for checking a track: the fitted mesh, shaded, over the crop, plus landmarks.

Detected landmarks are drawn green, the fitted head's landmarks red; the mesh is Lambert-shaded
by its face normals (light from the camera) and blended at ``alpha``.
"""

from __future__ import annotations

import numpy as np

from dejavu.track.masks import rasterize_labels


def shade_mesh(xy: np.ndarray, cam: np.ndarray, faces: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Lambert shading of a projected mesh.

    Args:
        xy: (V, 2) pixel coordinates. cam: (V, 3) camera-frame positions (OpenCV, metres).
        faces: (F, 3).

    Returns:
        shade (H, W) float32 in [0, 1] and coverage (H, W) bool.
    """
    tri = cam[faces]  # (F, 3, 3)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    centre = tri.mean(1)
    view = -centre / (np.linalg.norm(centre, axis=1, keepdims=True) + 1e-12)
    lambert = np.abs((n * view).sum(1)).astype(np.float32)  # two-sided
    _, face_idx = rasterize_labels(xy, cam[:, 2], faces, np.zeros(len(faces), np.int32), height, width)
    cover = face_idx >= 0
    shade = np.zeros((height, width), np.float32)
    shade[cover] = 0.25 + 0.75 * lambert[face_idx[cover]]
    return shade, cover


def draw_overlay(crop: np.ndarray, xy: np.ndarray, cam: np.ndarray, faces: np.ndarray,
                 detected: np.ndarray | None = None, fitted: np.ndarray | None = None,
                 alpha: float = 0.5) -> np.ndarray:
    """One overlay picture.

    Args:
        crop: (H, W, 3) uint8 crop. xy / cam / faces: the fitted mesh (see :func:`shade_mesh`).
        detected, fitted: optional (L, 2) landmarks in crop pixels.

    Returns:
        (H, W, 3) uint8.
    """
    import cv2

    H, W = crop.shape[:2]
    shade, cover = shade_mesh(xy, cam, faces, H, W)
    out = crop.astype(np.float32)
    tint = np.array([170.0, 190.0, 255.0], np.float32)  # light blue
    out[cover] = (1 - alpha) * out[cover] + alpha * shade[cover, None] * tint
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    for pts, colour in ((detected, (0, 255, 0)), (fitted, (255, 40, 40))):
        if pts is None:
            continue
        for x, y in np.asarray(pts):
            cv2.circle(out, (int(round(x * 4 - 2)), int(round(y * 4 - 2))), 4, colour, -1, lineType=cv2.LINE_AA, shift=2)
    return out

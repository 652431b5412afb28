"""Foreground masks for tracked crops: the head with hair, without neck, clothes or background.

Heuristic (documented in docs/TRACKING.md):

1. ``person`` = MediaPipe selfie segmentation of the crop (model in the mediapipe wheel) > 0.5.
2. The fitted mesh is rasterised into a region-label image (z-buffered, :func:`rasterize_labels`).
3. Removed from the person: (a) pixels where the visible mesh surface is the ``neck`` region;
   (b) pixels below the fitted jaw line (the lower face oval, from landmark 234 over the chin 152
   to 454) between the oval's sides, i.e. the neck under the chin; (c) everything lower than the
   chin by more than ``shoulder_drop`` x the forehead-to-chin height (shoulders and clothes; long
   hair below that line is lost too); (d) everything below the jaw corners (landmarks 172 / 397)
   that the fitted head mesh does not cover: the sides of the neck, collars and shoulders, which
   (b) and (c) miss when the crop ends close under the chin.
4. ``face`` mask (for metrics) = head mask & visible mesh regions face / eyes / mouth.

Masks are (H, W) bool arrays in crop pixels.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy.ndimage import binary_closing

from dejavu.head.base import REGION_ID

#: Face-oval landmarks along the jaw, from the subject's right cheek over the chin to the left cheek.
#: Jaw-corner landmarks (near the gonion) on each side.
JAW_CORNERS = (172, 397)
JAW_LINE = [234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454]
FOREHEAD, CHIN = 10, 152
#: Cuts under the jaw line narrower than this share of the forehead-to-chin height, with head on both sides, are undone.
THIN_CUT = 0.04
FACE_LABELS = (REGION_ID["face"], REGION_ID["eyes"], REGION_ID["mouth"])


@njit(cache=True)
def _raster_kernel(xy, z, faces, labels, height, width, out_label, out_face, zbuf):
    """Z-buffered triangle fill; pixel centres at (j + 0.5, i + 0.5); nearest (smallest z) wins."""
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        if z[a] <= 0 or z[b] <= 0 or z[c] <= 0:
            continue
        x0, y0, x1, y1, x2, y2 = xy[a, 0], xy[a, 1], xy[b, 0], xy[b, 1], xy[c, 0], xy[c, 1]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(area) < 1e-12:
            continue
        jmin = max(int(np.floor(min(x0, x1, x2) - 0.5)), 0)
        jmax = min(int(np.ceil(max(x0, x1, x2) - 0.5)), width - 1)
        imin = max(int(np.floor(min(y0, y1, y2) - 0.5)), 0)
        imax = min(int(np.ceil(max(y0, y1, y2) - 0.5)), height - 1)
        for i in range(imin, imax + 1):
            py = i + 0.5
            for j in range(jmin, jmax + 1):
                px = j + 0.5
                w0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) / area
                w1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) / area
                w2 = 1.0 - w0 - w1
                if w0 < 0 or w1 < 0 or w2 < 0:
                    continue
                depth = w0 * z[a] + w1 * z[b] + w2 * z[c]
                if depth < zbuf[i, j]:
                    zbuf[i, j] = depth
                    out_label[i, j] = labels[f]
                    out_face[i, j] = f


def rasterize_labels(xy: np.ndarray, z: np.ndarray, faces: np.ndarray, labels: np.ndarray, height: int,
                     width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise a projected mesh.

    Args:
        xy: (V, 2) pixel coordinates. z: (V,) camera depth, metres (<= 0 culls the triangle).
        faces: (F, 3) vertex indices. labels: (F,) integer label per face.

    Returns:
        label image (H, W) int32 (-1 = no surface) and face index image (H, W) int32 (-1 = none).
    """
    out_label = np.full((height, width), -1, np.int32)
    out_face = np.full((height, width), -1, np.int32)
    zbuf = np.full((height, width), np.inf, np.float32)
    _raster_kernel(np.ascontiguousarray(xy, np.float32), np.ascontiguousarray(z, np.float32),
                   np.ascontiguousarray(faces, np.int32), np.ascontiguousarray(labels, np.int32),
                   height, width, out_label, out_face, zbuf)
    return out_label, out_face


def below_jaw(landmarks: np.ndarray, height: int, width: int, shoulder_drop: float = 0.3) -> np.ndarray:
    """(H, W) bool: pixels under the jaw line between the face oval's sides, or below the shoulder line.

    ``landmarks`` are the fitted model's (478, 2) projected landmarks (crop pixels). "Under the jaw line" is
    under its lowest crossing of each pixel column: on a turned head the far side's jaw points project
    onto the cheek and the line folds back on itself, and a polygon fill of it cut a thin strip out of
    the cheek (removed from the head mask, so turned frames taught the avatar a white streak there).
    """
    jaw = landmarks[JAW_LINE].astype(np.float64)
    x = np.arange(width) + 0.5  # pixel centres
    lowest = np.full(width, -np.inf)
    for (x0, y0), (x1, y1) in zip(jaw[:-1], jaw[1:]):
        lo, hi = min(x0, x1), max(x0, x1)
        cols = (x >= lo) & (x <= hi)
        t = (x[cols] - x0) / (x1 - x0) if hi > lo else np.zeros(int(cols.sum()))
        lowest[cols] = np.maximum(lowest[cols], y0 + t * (y1 - y0))
    lowest[np.isneginf(lowest)] = np.inf  # columns beside the jaw line: nothing is under it
    face_h = landmarks[CHIN, 1] - landmarks[FOREHEAD, 1]
    y_cut = landmarks[CHIN, 1] + shoulder_drop * max(face_h, 1.0)
    rows = np.arange(height)[:, None] + 0.5
    return (rows > lowest[None]) | (rows > y_cut)


def head_masks(person: np.ndarray, labels: np.ndarray, landmarks: np.ndarray,
               shoulder_drop: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Head mask and face mask (both (H, W) bool) from a person probability, mesh labels and landmarks."""
    H, W = labels.shape
    fg = person > 0.5
    y_corner = float(landmarks[list(JAW_CORNERS), 1].mean())
    rows = np.arange(H)[:, None] + 0.5
    off_mesh_low = (rows > y_corner) & (labels < 0)
    keep = fg & (labels != REGION_ID["neck"]) & ~off_mesh_low
    head = keep & ~below_jaw(landmarks, H, W, shoulder_drop)
    # Where a turned head's far jaw line ends at the fitted mesh's silhouette it runs up the cheek's edge,
    # and the few columns between the lower jaw's end and that edge, crossed only by the steep part, were
    # cut from there down: a strip of the person's cheek (wider than the mesh). The jaw cut never removes
    # a run narrower than ``thin`` pixels with head on both sides of it.
    thin = max(3, int(round(THIN_CUT * (landmarks[CHIN, 1] - landmarks[FOREHEAD, 1]))))
    head |= keep & binary_closing(head, structure=np.ones((1, thin), bool))
    face = head & np.isin(labels, FACE_LABELS)
    return head, face

"""FFHQ-style face alignment from MediaPipe landmarks: a rotated square crop around the face.

As in FFHQ (Karras et al.) and the paper's tracker: from the eye centres and mouth corners build
the crop's centre ``c`` and half-axis ``x`` (|x| = max(2.0 * eye distance, 1.8 * eye-to-mouth)),
then enlarge by ``scale`` (1.2, the paper's value) and resample to ``size`` x ``size`` pixels.
For videos the crop parameters (centre, half-size, angle) are smoothed over time so the crop does
not jitter; the fitted camera absorbs the remaining head motion.

A crop is stored as a 2x3 affine ``A`` mapping source pixels to crop pixels (both in the project's
pixel convention: pixel (i, j) centre at (j + 0.5, i + 0.5)).
"""

from __future__ import annotations

import numpy as np

from dejavu.track.landmarks import LEFT_EYE, MOUTH_CORNERS, RIGHT_EYE

#: The paper's crop enlargement over FFHQ's.
ALIGN_SCALE = 1.2


def crop_params(points: np.ndarray, scale: float = ALIGN_SCALE) -> np.ndarray:
    """(B, 478, 2) source landmarks -> (B, 4) crop parameters [cx, cy, half_size, angle_rad]."""
    points = np.asarray(points, dtype=np.float64)
    eye_a = points[:, LEFT_EYE].mean(1)
    eye_b = points[:, RIGHT_EYE].mean(1)
    eye_avg = (eye_a + eye_b) / 2
    eye_to_eye = eye_b - eye_a
    mouth_avg = points[:, MOUTH_CORNERS].mean(1)
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - eye_to_mouth[:, ::-1] * np.array([-1.0, 1.0])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    half = np.maximum(np.linalg.norm(eye_to_eye, axis=1) * 2.0, np.linalg.norm(eye_to_mouth, axis=1) * 1.8) * scale
    c = eye_avg + eye_to_mouth * 0.1
    angle = np.arctan2(x[:, 1], x[:, 0])
    return np.stack([c[:, 0], c[:, 1], half, angle], axis=1)


def smooth_params(params: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smooth (B, 4) crop parameters over frames (angle unwrapped); ``sigma`` in frames."""
    if sigma <= 0 or len(params) < 3:
        return params
    from scipy.ndimage import gaussian_filter1d

    out = params.copy()
    out[:, 3] = np.unwrap(out[:, 3])
    out = gaussian_filter1d(out, sigma, axis=0, mode="nearest")
    return out


def params_to_affine(params: np.ndarray, size: int) -> np.ndarray:
    """(B, 4) crop parameters -> (B, 2, 3) affines mapping source pixels to crop pixels."""
    cx, cy, half, angle = params.T
    s = size / (2.0 * half)
    cos, sin = np.cos(angle), np.sin(angle)
    # rows: crop-x axis = (cos, sin), crop-y axis = (-sin, cos), scaled
    lin = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], 1) * s[:, None, None]  # (B, 2, 2)
    t = size / 2.0 - np.einsum("bij,bj->bi", lin, np.stack([cx, cy], -1))
    return np.concatenate([lin, t[..., None]], axis=2).astype(np.float64)


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(B, 2, 3) affines applied to (B, P, 2) points."""
    return np.einsum("bij,bpj->bpi", affine[:, :, :2], points) + affine[:, None, :, 2]


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of (B, 2, 3) affines."""
    lin_inv = np.linalg.inv(affine[:, :, :2])
    t = -np.einsum("bij,bj->bi", lin_inv, affine[:, :, 2])
    return np.concatenate([lin_inv, t[..., None]], axis=2)


def inside_source(affine: np.ndarray, source_hw: tuple[int, int], size: int) -> np.ndarray:
    """(size, size) bool: the crop pixels whose centre maps inside the source image.

    ``affine`` (2, 3) source -> crop pixels, ``source_hw`` the source's (height, width). Outside it
    :func:`warp` repeats the border pixels (streaks); masks and losses leave those pixels out.
    """
    inv = invert_affine(np.asarray(affine, np.float64)[None])[0]
    c = np.arange(size, dtype=np.float64) + 0.5
    x = inv[0, 0] * c[None, :] + inv[0, 1] * c[:, None] + inv[0, 2]
    y = inv[1, 0] * c[None, :] + inv[1, 1] * c[:, None] + inv[1, 2]
    h, w = source_hw
    return (x >= 0) & (x <= w) & (y >= 0) & (y <= h)


def warp(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """Resample one (H, W, C) image through a (2, 3) source->crop affine into (size, size, C)."""
    import cv2

    # cv2 puts pixel centres at integers; ours are at +0.5: p_cv' = A (p_cv + 0.5) - 0.5.
    m = affine.astype(np.float64).copy()
    m[:, 2] += m[:, :2].sum(1) * 0.5 - 0.5
    scale = np.sqrt(abs(np.linalg.det(m[:, :2])))
    src = image
    if scale < 0.5:  # strong downscale: pre-shrink with area averaging to avoid aliasing
        f = int(1.0 / scale)
        src = cv2.resize(image, (image.shape[1] // f, image.shape[0] // f), interpolation=cv2.INTER_AREA)
        # small-image pixel q covers original pixels f*q .. f*q+f-1: p_cv = f q + (f - 1) / 2
        m[:, 2] += m[:, :2].sum(1) * (f - 1) / 2.0
        m[:, :2] *= f
    out = cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out

"""FFHQ-style alignment maths: affines, inverse, warping, smoothing."""

from __future__ import annotations

import numpy as np

from dejavu.track import align


def _face(scale=100.0, angle=0.0, centre=(300.0, 200.0)):
    from dejavu.track.landmarks import LEFT_EYE, MOUTH_CORNERS, RIGHT_EYE

    pts = np.zeros((478, 2))
    pts[LEFT_EYE] = (-0.5, 0.0)
    pts[RIGHT_EYE] = (0.5, 0.0)
    pts[MOUTH_CORNERS] = [(-0.3, 1.0), (0.3, 1.0)]
    c, s = np.cos(angle), np.sin(angle)
    pts = pts @ np.array([[c, s], [-s, c]]) * scale + np.array(centre)
    return pts[None]


def test_crop_params_upright_and_rotated():
    p = align.crop_params(_face())[0]
    assert np.allclose(p[:2], (300.0, 210.0))  # eye centre + 0.1 * eye-to-mouth
    assert np.isclose(p[2], 100.0 * 2.0 * align.ALIGN_SCALE)  # max(2 * eye dist, 1.8 * eye-mouth) * 1.2
    assert np.isclose(p[3], 0.0, atol=1e-9)
    rot = align.crop_params(_face(angle=0.3))[0]
    assert np.isclose(rot[3], 0.3, atol=1e-6) and np.isclose(rot[2], p[2])


def test_affine_roundtrip_and_warp_pixel_centres():
    params = align.crop_params(_face(angle=0.2))
    A = align.params_to_affine(params, 512)
    pts = np.random.default_rng(0).uniform(0, 500, (1, 10, 2))
    back = align.apply_affine(align.invert_affine(A), align.apply_affine(A, pts))
    assert np.allclose(back, pts, atol=1e-9)
    # crop centre <- crop-parameter centre
    assert np.allclose(align.apply_affine(A, params[None, :, :2])[0, 0], 256.0)
    # warp: a single bright pixel lands where the affine sends its centre
    img = np.zeros((400, 600, 3), np.uint8)
    img[150, 320] = 255
    # scale 1; the crop centre (64, 64) is a pixel corner, so source centre (320.5, 150.5) -> (64.5, 64.5)
    A1 = align.params_to_affine(np.array([[320.0, 150.0, 64.0, 0.0]]), 128)
    out = align.warp(img, A1[0], 128)
    assert out[64, 64, 0] == 255 and out.sum() == 255 * 3


def test_smoothing_keeps_constant_and_unwraps():
    p = np.tile([[10.0, 20.0, 50.0, np.pi - 0.01]], (9, 1))
    p[1::2, 3] = -np.pi + 0.01  # wraps around +-pi
    s = align.smooth_params(p, 2.0)
    assert np.allclose(s[:, :3], p[:, :3])
    assert np.all(np.abs(np.cos(s[:, 3]) + 1) < 1e-3)


def test_inside_source_marks_the_pixels_off_the_frame():
    # crop = source shifted by (+10, +5): crop pixel centre (j + 0.5, i + 0.5) <- source (j - 9.5, i - 4.5)
    A = align.params_to_affine(np.array([[50.0, 55.0, 60.0, 0.0]]), 120)[0]
    assert np.allclose(A, [[1, 0, 10], [0, 1, 5]])
    inside = align.inside_source(A, (100, 80), 120)  # source 100 rows x 80 columns
    rows, cols = np.nonzero(inside.any(1))[0], np.nonzero(inside.any(0))[0]
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 104, 10, 89)
    assert inside.sum() == 100 * 80  # one crop pixel per source pixel
    # where it says inside, the warp reproduces the source; outside, warp repeats the border
    img = np.random.default_rng(0).integers(0, 255, (100, 80, 3), dtype=np.uint8)
    out = align.warp(img, A, 120)
    assert np.array_equal(out[inside], img.reshape(-1, 3))

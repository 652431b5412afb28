"""UV layout building blocks on small synthetic meshes (fast, no anny)."""

from __future__ import annotations

import numpy as np
import pytest

from dejavu.head import uv_layout as U


def grid_mesh(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A flat (n+1) x (n+1) vertex grid in the unit square, z = 0, counter-clockwise triangles."""
    xs, ys = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1))
    verts = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], 1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return verts, faces


def open_sphere(n_lat: int = 14, n_lon: int = 24, cut_below: float = -0.6) -> tuple[np.ndarray, np.ndarray]:
    """A unit UV sphere (+Y up) without its bottom cap (a 'neck' hole), symmetric about x = 0.

    Longitudes include the back meridian (x = 0, z < 0) so the midline slit exists. The top pole is one
    vertex; triangles are counter-clockwise seen from outside.
    """
    lats = np.linspace(np.pi / 2, np.arcsin(cut_below), n_lat)[1:]  # below the pole
    lons = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)  # lon 0 = +z (front), pi = back
    verts = [[0.0, 1.0, 0.0]]
    for la in lats:
        for lo in lons:
            verts.append([np.cos(la) * np.sin(lo), np.sin(la), np.cos(la) * np.cos(lo)])
    verts = np.asarray(verts)
    verts[np.abs(verts[:, 0]) < 1e-9, 0] = 0.0
    ring = lambda i: 1 + i * n_lon + (np.arange(n_lon) % n_lon)  # noqa: E731
    faces = [[0, ring(0)[k], ring(0)[(k + 1) % n_lon]] for k in range(n_lon)]
    for i in range(len(lats) - 1):
        r0, r1 = ring(i), ring(i + 1)
        for k in range(n_lon):
            k1 = (k + 1) % n_lon
            faces += [[r0[k], r1[k], r1[k1]], [r0[k], r1[k1], r0[k1]]]
    faces = np.asarray(faces, np.int64)
    # Make triangles counter-clockwise seen from outside.
    tri = verts[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = (n * tri.mean(1)).sum(1) < 0
    faces[flip] = faces[flip][:, ::-1]
    return verts, faces


def test_boundary_loops_of_a_grid_is_one_loop_around_it():
    verts, faces = grid_mesh(4)
    loops = U.boundary_loops(faces)
    assert len(loops) == 1
    assert len(loops[0]) == 16  # 4 sides x 4 edges
    assert U.euler_characteristic(faces) == 1


def test_tutte_disk_is_injective_with_boundary_on_the_circle():
    verts, faces = grid_mesh(6)
    verts[:, 2] = 0.3 * np.sin(3 * verts[:, 0]) * verts[:, 1]  # bend it
    uv = U.disk_parameterize(verts, faces)
    outer = U.boundary_loops(faces)[0]
    np.testing.assert_allclose(np.linalg.norm(uv[outer], axis=1), 1.0, atol=1e-9)
    assert U.signed_areas(uv, faces).min() > 0
    assert np.linalg.norm(uv, axis=1).max() <= 1.0 + 1e-9


def test_fill_holes_lets_a_disk_with_a_hole_be_parameterised():
    verts, faces = grid_mesh(6)
    c = verts[faces].mean(1)
    keep = np.linalg.norm(c[:, :2] - 0.5, axis=1) > 0.18  # punch a hole in the middle
    uv = U.disk_parameterize(verts, faces[keep])
    assert U.signed_areas(uv, faces[keep]).min() > 0


def test_mobius_moves_the_point_to_the_centre_and_stays_in_the_disk():
    rng = np.random.default_rng(0)
    z = rng.uniform(-0.7, 0.7, (50, 2))
    a = complex(0.3, -0.2)
    w = U.mobius_to_center(np.r_[z, [[a.real, a.imag]]], a)
    np.testing.assert_allclose(w[-1], 0.0, atol=1e-12)
    assert np.linalg.norm(w, axis=1).max() < 1.0


def test_rasterize_two_triangles_cover_a_square_once():
    uv = np.array([[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    idx, count = U.texel_coverage(uv, faces, 8)
    assert (idx >= 0).sum() == 16  # texel centres 2.5..5.5 -> 4 x 4
    assert count.max() == 1
    # v up: row 2 (v = 0.6875) col 2 (u = 0.3125) lies above the diagonal -> the second triangle
    assert idx[2, 2] == 1 and idx[5, 5] == 0


def test_rasterize_counts_overlaps():
    uv = np.array([[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]])
    faces = np.array([[0, 1, 2], [0, 1, 2]])
    _, count = U.texel_coverage(uv, faces, 16)
    assert count.max() == 2


def test_build_layout_on_an_open_sphere_has_no_flips_or_overlaps():
    verts, faces = open_sphere()
    islands = np.array(["skin"] * len(faces))
    front = int(np.argmax(verts[:, 2]))
    weight = np.where(verts[faces].mean(1)[:, 2] > 0.5, 4.0, 1.0)
    uv, uv_faces, info = U.build_layout(verts, faces, islands, "skin", front, up_anchor=0, main_weight=weight)
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    assert info["min_signed_area"] > 0
    _, count = U.texel_coverage(uv, uv_faces, 128)
    assert count.max() <= 1
    # the front vertex sits at the centre, the pole straight above it
    tri = np.argwhere(faces == front)[0]
    np.testing.assert_allclose(uv[uv_faces[tri[0], tri[1]]], [0.5, 0.5], atol=1e-6)
    tri = np.argwhere(faces == 0)[0]
    top = uv[uv_faces[tri[0], tri[1]]]
    assert abs(top[0] - 0.5) < 1e-6 and top[1] > 0.5


def test_corner_slots_stay_inside_the_square_and_outside_the_main_disk():
    for n in range(1, 6):
        for (cx, cy), r in U._corner_slots(n, U.MAIN_RADIUS):
            assert r <= cx <= 1 - r and r <= cy <= 1 - r
            assert np.hypot(cx - 0.5, cy - 0.5) >= U.MAIN_RADIUS + r
    with pytest.raises(ValueError):
        U._corner_slots(6, U.MAIN_RADIUS)

"""A tiny analytic head for unit tests: an ellipsoid with a mouth slit, smooth blendshapes and a jaw.

Geometry: a latitude/longitude ellipsoid (semi-axes 7.5 cm in X, 11 cm in Y, 9.5 cm in Z, centred
on the origin = root joint), 48 longitudes x 31 latitude rings + 2 poles, with the quads between
the two lip rings cut open across the mouth (a slit) and a mouth-interior patch behind it
(:mod:`dejavu.head.mouth`). About 1.5k vertices, 3k faces; builds in a few milliseconds.

UV layout: u = 0.5 + longitude / 2 pi (the face, longitude 0 = +Z, in the centre; the seam at the
back), v = 0.2 + 0.8 * (latitude + pi/2) / pi. The band v < 0.2 holds the mouth patch
(u in [0.4, 0.6], v in [0.02, 0.18]).

Bases: 6 identity components (width, height, depth, chin, nose, brow ridge) and 6 expressions
(smile, brow raise, cheek puff, pucker, eye close, lower-lip down), smooth analytic displacements of
about 1 cm per unit coefficient. Joints: root (origin), neck, jaw, eye_left, eye_right; the jaw
carries the lower front of the head, the eyes small patches around the eye centres.

Regions by position (longitude lon, latitude lat, degrees): eyes = within 9 deg of an eye centre;
ears = within 15 deg of (lon +-90, lat 0); neck = lat < -55; face = |lon| < 55 and -55 <= lat < 38;
scalp = lat >= 38 or |lon| > 110; other = the rest (sides); mouth = the interior patch.

Landmarks: 478 points at fixed (lon, lat) spots on the front. The MediaPipe indices the pipeline
relies on sit where they belong (1 nose tip, 33/133 right eye outer/inner corners, 362/263 left eye
inner/outer, 61/291 mouth corners, 13/14 inner lips, 152 chin, 10 forehead, 468/473 iris centres,
234/454 cheek contour); the others fill a deterministic grid over the face. All have weight 1.
"""

from __future__ import annotations

import numpy as np

from dejavu.head.base import (
    JOINT_EYE_L,
    JOINT_EYE_R,
    JOINT_JAW,
    JOINT_NECK,
    JOINT_ROOT,
    N_LANDMARKS,
    REGION_ID,
    HeadAssets,
)
from dejavu.head.mouth import build_mouth_patch, extend_rows

N_LON = 48  # longitudes (7.5 deg apart; +-90 and 0 are columns)
N_LAT = 32  # latitude steps pole to pole (5.625 deg), 31 rings
RADII = np.array([0.075, 0.11, 0.095])  # metres (x, y, z)
V_BAND = 0.2  # UV rows below this hold the mouth patch
LIP_UPPER_RING, LIP_LOWER_RING = 12, 11  # ring i has latitude -90 + i * 180 / N_LAT
MOUTH_HALF_COLS = 2  # mouth slit spans longitudes -15..15 deg
EYE_LON, EYE_LAT = 22.5, 11.25  # degrees
JAW_RING, NECK_RING = 14, 5


def _ring_lat() -> np.ndarray:
    return np.radians(-90.0 + np.arange(1, N_LAT) * 180.0 / N_LAT)  # (N_LAT - 1,)


def _ellipsoid(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Points (..., 3) on the ellipsoid at longitude/latitude (radians)."""
    d = np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)], -1)
    return d * RADII


def _vid(ring: int, col: int) -> int:
    """Vertex id of ring ``ring`` (0-based, south to north), column ``col`` (mod N_LON)."""
    return 2 + ring * N_LON + col % N_LON


def _sphere_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (V,3), lon/lat per vertex, faces, uv coords, uv faces of the closed ellipsoid."""
    lat = _ring_lat()
    lon = np.radians(np.arange(N_LON) * 360.0 / N_LON - 180.0)  # column 0 at the back seam
    LAT, LON = np.meshgrid(lat, lon, indexing="ij")
    v_lon = np.concatenate([[0.0, 0.0], LON.ravel()])
    v_lat = np.concatenate([[-np.pi / 2, np.pi / 2], LAT.ravel()])
    verts = _ellipsoid(v_lon, v_lat)
    n_rings = len(lat)
    # UVs: (n_rings) x (N_LON + 1) grid with a seam column, plus one pole UV per column per pole.
    uv_v = V_BAND + (1 - V_BAND) * (lat + np.pi / 2) / np.pi
    uu, vv = np.meshgrid(np.arange(N_LON + 1) / N_LON, uv_v)
    uv = [np.stack([uu.ravel(), vv.ravel()], 1)]
    t_grid = lambda r, c: r * (N_LON + 1) + c  # noqa: E731
    n_grid = n_rings * (N_LON + 1)
    uv.append(np.stack([(np.arange(N_LON) + 0.5) / N_LON, np.full(N_LON, V_BAND)], 1))  # south pole
    uv.append(np.stack([(np.arange(N_LON) + 0.5) / N_LON, np.ones(N_LON)], 1))  # north pole
    faces, uv_faces = [], []
    skip = {(LIP_LOWER_RING, N_LON // 2 + c) for c in range(-MOUTH_HALF_COLS, MOUTH_HALF_COLS)}
    for r in range(n_rings - 1):
        for c in range(N_LON):
            if (r, c) in skip:
                continue
            a, b, d, e = _vid(r, c), _vid(r, c + 1), _vid(r + 1, c), _vid(r + 1, c + 1)
            ta, tb, td, te = t_grid(r, c), t_grid(r, c + 1), t_grid(r + 1, c), t_grid(r + 1, c + 1)
            faces += [(a, b, e), (a, e, d)]
            uv_faces += [(ta, tb, te), (ta, te, td)]
    for c in range(N_LON):
        faces.append((0, _vid(0, c + 1), _vid(0, c)))
        uv_faces.append((n_grid + c, t_grid(0, c + 1), t_grid(0, c)))
        top = n_rings - 1
        faces.append((1, _vid(top, c), _vid(top, c + 1)))
        uv_faces.append((n_grid + N_LON + c, t_grid(top, c), t_grid(top, c + 1)))
    return verts, v_lon, v_lat, np.array(faces), np.concatenate(uv), np.array(uv_faces)


def _bump(lon: np.ndarray, lat: np.ndarray, lon0: float, lat0: float, sigma: float) -> np.ndarray:
    """Gaussian bump (V,) in angle (degrees in, radians stored)."""
    d2 = (np.degrees(lon) - lon0) ** 2 + (np.degrees(lat) - lat0) ** 2
    return np.exp(-0.5 * d2 / sigma**2)


def _smoothstep(x: np.ndarray, a: float, b: float) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _bases(v: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Identity (V,3,6) and expression (V,3,6) displacements, metres per unit coefficient."""
    normal = v / RADII**2
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    ex, ey, ez = np.eye(3)
    deg_lon = np.degrees(lon)
    front = np.clip(np.cos(lon), 0, None) ** 2
    ident = [
        v * ex * 0.13,  # width (x scaled 13% per unit, ~1 cm at the sides)
        v * ey * 0.09,  # height
        v * ez * 0.1,  # depth
        (ez * 0.6 + ey * -0.4) * (0.012 * _bump(lon, lat, 0, -45, 14))[:, None],  # chin
        normal * (0.01 * _bump(lon, lat, 0, -2, 8))[:, None],  # nose
        normal * (0.006 * _bump(lon, lat, 0, 22, 12) * front)[:, None],  # brow ridge
    ]
    sign = np.sign(deg_lon)
    corners = _bump(lon, lat, -15, -20, 6) + _bump(lon, lat, 15, -20, 6)
    eyes = _bump(lon, lat, -EYE_LON, EYE_LAT + 4, 6) + _bump(lon, lat, EYE_LON, EYE_LAT + 4, 6)
    expr = [
        (ey[None] * 0.6 + (sign[:, None] * ex) * 0.5) * (0.01 * corners)[:, None],  # smile
        ey * (0.008 * (_bump(lon, lat, -EYE_LON, 24, 9) + _bump(lon, lat, EYE_LON, 24, 9)))[:, None],  # brows
        normal * (0.01 * (_bump(lon, lat, -35, -12, 10) + _bump(lon, lat, 35, -12, 10)))[:, None],  # cheeks
        (ez * 0.8 - sign[:, None] * ex * 0.4) * (0.008 * _bump(lon, lat, 0, -20, 9))[:, None],  # pucker
        -ey * (0.004 * eyes)[:, None],  # eye close
        -ey * (0.008 * _bump(lon, lat, 0, -24, 7))[:, None],  # lower lip down
    ]
    names = ["smile", "brow_raise", "cheek_puff", "pucker", "eye_close", "lower_lip_down"]
    return np.stack(ident, -1), np.stack(expr, -1), names


#: (MediaPipe index, longitude deg, latitude deg) for the landmarks the pipeline uses by index.
KEY_LANDMARKS: tuple[tuple[int, float, float], ...] = (
    (1, 0.0, 0.0), (4, 0.0, 3.0), (10, 0.0, 40.0), (152, 0.0, -48.0), (13, 0.0, -16.6), (14, 0.0, -22.8),
    (0, 0.0, -13.0), (17, 0.0, -27.0), (61, -15.5, -19.7), (291, 15.5, -19.7),
    (33, -29.0, EYE_LAT), (133, -11.0, EYE_LAT), (362, 11.0, EYE_LAT), (263, 29.0, EYE_LAT),
    (159, -EYE_LON, EYE_LAT + 3), (145, -EYE_LON, EYE_LAT - 3), (386, EYE_LON, EYE_LAT + 3), (374, EYE_LON, EYE_LAT - 3),
    (468, -EYE_LON, EYE_LAT), (473, EYE_LON, EYE_LAT), (234, -70.0, 0.0), (454, 70.0, 0.0),
    (70, -30.0, 24.0), (300, 30.0, 24.0), (168, 0.0, 14.0), (6, 0.0, 8.0),
)


def _landmark_spots() -> np.ndarray:
    """(478, 2) (lon, lat) degrees: key landmarks at their spots, the rest on a grid over the face."""
    grid_lon, grid_lat = np.meshgrid(np.linspace(-52, 52, 24), np.linspace(-44, 34, 20))
    grid = np.stack([grid_lon.ravel(), grid_lat.ravel()], 1)  # 480 spots
    spots = grid[: N_LANDMARKS].copy()
    for idx, lo, la in KEY_LANDMARKS:
        spots[idx] = (lo, la)
    return spots


def _locate(uv_points: np.ndarray, uv: np.ndarray, uv_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangle id (P,) and barycentrics (P, 3) of UV points, by brute force (P x F)."""
    tri = uv[uv_faces]  # (F, 3, 2)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1 = b - a, c - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]  # (F,)
    den = np.where(np.abs(den) < 1e-15, np.inf, den)
    d = uv_points[:, None] - a[None]  # (P, F, 2)
    w1 = (d[..., 0] * v1[None, :, 1] - v1[None, :, 0] * d[..., 1]) / den
    w2 = (v0[None, :, 0] * d[..., 1] - d[..., 0] * v0[None, :, 1]) / den
    bary = np.stack([1 - w1 - w2, w1, w2], -1)  # (P, F, 3)
    face = np.argmax(bary.min(-1), axis=1)
    bary = bary[np.arange(len(uv_points)), face].clip(0.0, None)  # points in holes snap to the nearest triangle
    return face, bary / bary.sum(1, keepdims=True)


def build_procedural_assets() -> HeadAssets:
    """The procedural head's :class:`HeadAssets` (deterministic, ~1.5k vertices)."""
    verts, lon, lat, faces, uv, uv_faces = _sphere_mesh()
    V0 = len(verts)
    shapedirs, exprdirs, expr_names = _bases(verts, lon, lat)

    # Joints: root, neck, jaw, eye_left, eye_right. Each regressed from vertex pairs at +-90 deg
    # longitude (their midpoints lie on the Y axis) so joints follow identity changes.
    names = [JOINT_ROOT, JOINT_NECK, JOINT_JAW, JOINT_EYE_L, JOINT_EYE_R]
    parents = np.array([-1, 0, 1, 1, 1], dtype=np.int32)
    equator = N_LAT // 2 - 1
    side = lambda ring: (_vid(ring, N_LON // 4), _vid(ring, 3 * N_LON // 4))  # noqa: E731  lon -90, +90
    jreg = np.zeros((5, V0))
    for j, ring in ((0, equator), (1, NECK_RING), (2, JAW_RING)):
        jreg[j, list(side(ring))] = 0.5
    eye_ring = int(round((EYE_LAT + 90) / (180 / N_LAT))) - 1
    for j, col_off in ((3, 3), (4, -3)):  # eye_left at +X (lon +22.5 deg), eye_right at -X
        jreg[j, _vid(eye_ring, N_LON // 2 + col_off)] = 0.7
        jreg[j, list(side(equator))] = 0.15  # pulls the joint 30% of the way to the centre

    # Skinning: neck carries the head; root the bottom of the neck; jaw the lower front; eyes patches.
    deg_lon, deg_lat = np.degrees(lon), np.degrees(lat)
    w_root = 1 - _smoothstep(deg_lat, -80, -62)
    lip_lat = np.degrees(_ring_lat()[LIP_LOWER_RING])
    w_jaw = (1 - _smoothstep(deg_lat, lip_lat, lip_lat + 1)) * _smoothstep(deg_lat, -75, -58)
    w_jaw *= 1 - _smoothstep(np.abs(deg_lon), 55, 85)
    d_eye_l = np.hypot(deg_lon - 22.5, deg_lat - EYE_LAT)
    d_eye_r = np.hypot(deg_lon + 22.5, deg_lat - EYE_LAT)
    w_eye_l, w_eye_r = (1 - _smoothstep(d_eye_l, 4, 8)), (1 - _smoothstep(d_eye_r, 4, 8))
    w = np.stack([w_root, np.zeros(V0), w_jaw, w_eye_l, w_eye_r], 1)
    w[:, 0] = w_root * (1 - w[:, 2:].sum(1).clip(0, 1))
    w[:, 1] = 1 - w.sum(1)

    # Mouth interior: lips are the slit's edges, ordered from the subject's right (-X) to the left.
    cols = np.arange(N_LON // 2 - MOUTH_HALF_COLS, N_LON // 2 + MOUTH_HALF_COLS + 1)
    upper = np.array([_vid(LIP_UPPER_RING, c) for c in cols])
    lower = np.array([_vid(LIP_LOWER_RING, c) for c in cols])
    patch = build_mouth_patch(verts, upper, lower, cols=7, rows=7, uv_box=(0.4, 0.02, 0.6, 0.18))
    verts = np.concatenate([verts, patch.weights @ verts + patch.offset])
    shapedirs, exprdirs = extend_rows(shapedirs, patch.weights), extend_rows(exprdirs, patch.weights)
    w = extend_rows(w, patch.weights)
    jreg = np.concatenate([jreg, np.zeros((5, len(patch.weights)))], 1)
    faces = np.concatenate([faces, patch.faces + V0])
    uv_faces = np.concatenate([uv_faces, patch.faces + len(uv)])
    uv = np.concatenate([uv, patch.uv])

    # Regions per face from the centroid's (lon, lat) on the ellipsoid part.
    centre = verts[faces[: len(faces) - len(patch.faces)]].mean(1) / RADII
    f_lon = np.degrees(np.arctan2(centre[:, 0], centre[:, 2]))
    f_lat = np.degrees(np.arctan2(centre[:, 1], np.hypot(centre[:, 0], centre[:, 2])))
    region = np.full(len(f_lon), REGION_ID["other"], dtype=np.int8)
    region[(np.abs(f_lon) < 55) & (f_lat >= -55) & (f_lat < 38)] = REGION_ID["face"]
    region[(f_lat >= 38) | (np.abs(f_lon) > 110)] = REGION_ID["scalp"]
    region[np.hypot(np.abs(f_lon) - 90, f_lat) < 15] = REGION_ID["ears"]
    region[(np.hypot(np.abs(f_lon) - 22.5, f_lat - EYE_LAT) < 9)] = REGION_ID["eyes"]
    region[f_lat < -55] = REGION_ID["neck"]
    face_region = np.concatenate([region, np.full(len(patch.faces), REGION_ID["mouth"], np.int8)])

    # Landmarks: locate each (lon, lat) spot in UV space (u, v are linear in lon, lat there).
    spots = _landmark_spots()
    lm_uv = np.stack([0.5 + spots[:, 0] / 360.0, V_BAND + (1 - V_BAND) * (spots[:, 1] + 90) / 180.0], 1)
    sphere_faces = len(faces) - len(patch.faces)
    tri_uv = uv[uv_faces[:sphere_faces]]
    near = np.nonzero((tri_uv.max(1) >= lm_uv.min(0) - 0.05).all(1) & (tri_uv.min(1) <= lm_uv.max(0) + 0.05).all(1))[0]
    lm_face, lm_bary = _locate(lm_uv, uv, uv_faces[near])
    lm_face = near[lm_face]

    return HeadAssets(
        name="procedural",
        v_template=verts.astype(np.float32),
        faces=faces.astype(np.int32),
        uv_coords=uv.astype(np.float32),
        uv_faces=uv_faces.astype(np.int32),
        shapedirs=shapedirs.astype(np.float32),
        exprdirs=exprdirs.astype(np.float32),
        joint_names=names,
        parents=parents,
        j_regressor=jreg.astype(np.float32),
        lbs_weights=w.astype(np.float32),
        face_region=face_region,
        landmark_faces=lm_face.astype(np.int32),
        landmark_bary=lm_bary.astype(np.float32),
        landmark_weight=np.ones(N_LANDMARKS, dtype=np.float32),
        expr_names=expr_names,
        posedirs=None,
        info={"source": "dejavu.head.procedural (analytic ellipsoid, for tests)", "licence": "project"},
    ).validate()

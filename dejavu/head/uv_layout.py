"""The project's own UV layout for a head mesh: disk-parameterised islands packed in one square.

Recipe (used for the built-in head, reusable for any head with region labels):

1. **Main island** = the skin (face, scalp, neck stub; everything not listed below). It is slit along
   the back midline from the neck cut (the loop lowest in +Y) to the top of the head, so the neck
   loop plus both lips of the slit form one long outer boundary, pinned to a circle by arc length;
   every other hole (eye openings, mouth opening, ear cuts) is filled temporarily with a fan around
   its centroid. A Tutte embedding with mean-value weights maps the disk into the circle; Floater's
   theorem makes it bijective (no flipped or overlapping triangles: positive weights, convex
   boundary). The fans are dropped afterwards.
2. A disk automorphism (Mobius map) moves the face anchor (the nose tip) to the centre, a rotation
   turns the forehead up, and a monotone radial warp balances area by region weight so the face gets
   the most texels. All are bijections of the disk applied to the vertices; the result is checked for
   flipped triangles (the warp is smoothed until there are none).
3. **Small islands** (ears, mouth interior, eyes): each connected component is disk-parameterised the
   same way (its own longest boundary loop on a circle) and packed into the square's free corners.

Coordinates follow docs/CONVENTIONS.md: ``uv`` in [0, 1], u right, v up; a map of side S has
row = (1 - v) * S, col = u * S, texel centres at (k + 0.5) / S. Letters: V vertices, F faces, T UVs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

log = logging.getLogger(__name__)

#: Main-disk radius and centre in the unit square; the four corners hold small islands.
MAIN_RADIUS = 0.455


# ---------------------------------------------------------------------------------------------
# Mesh topology helpers
# ---------------------------------------------------------------------------------------------

def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Ordered boundary loops of a manifold triangle mesh (F, 3) -> list of vertex-index arrays.

    Each loop follows the boundary edges in the faces' own orientation.
    """
    half = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = {tuple(e) for e in half.tolist()}
    nxt: dict[int, int] = {}
    for a, b in half.tolist():
        if (b, a) not in key:
            if a in nxt:
                raise ValueError(f"boundary vertex {a} is visited twice (non-manifold boundary)")
            nxt[a] = b
    loops, seen = [], set()
    for start in list(nxt):
        if start in seen:
            continue
        loop, cur = [], start
        while cur not in seen:
            seen.add(cur)
            loop.append(cur)
            cur = nxt[cur]
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


def connected_components(faces: np.ndarray, n_verts: int) -> np.ndarray:
    """Component label per face (F,) for faces sharing vertices."""
    from scipy.sparse.csgraph import connected_components as cc

    a = sp.coo_matrix((np.ones(faces.size), (np.repeat(faces[:, 0], 3), faces.ravel())), shape=(n_verts, n_verts))
    _, labels = cc(a, directed=False)
    return labels[faces[:, 0]]


def euler_characteristic(faces: np.ndarray) -> int:
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1), axis=0)
    return len(np.unique(faces)) - len(edges) + len(faces)


# ---------------------------------------------------------------------------------------------
# Disk parameterisation (Tutte / Floater mean-value weights)
# ---------------------------------------------------------------------------------------------

def _mean_value_weights(verts: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """Row-normalised mean-value weights (V, V): w_ij = (tan(a/2) + tan(b/2)) / |v_i - v_j|."""
    rows, cols, vals = [], [], []
    for k in range(3):
        i, j, l = faces[:, k], faces[:, (k + 1) % 3], faces[:, (k + 2) % 3]
        e1, e2 = verts[j] - verts[i], verts[l] - verts[i]
        n1, n2 = np.linalg.norm(e1, axis=1) + 1e-12, np.linalg.norm(e2, axis=1) + 1e-12
        cos = np.clip((e1 * e2).sum(1) / (n1 * n2), -1.0, 1.0)
        t = np.tan(np.arccos(cos) / 2.0)  # angle at i of this triangle, shared by edges (i,j), (i,l)
        rows += [i, i]
        cols += [j, l]
        vals += [t / n1, t / n2]
    n = len(verts)
    W = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
    W.sum_duplicates()
    return W


def tutte_disk(verts: np.ndarray, faces: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """Map a disk-topology mesh into the unit disk; ``outer`` (ordered loop) goes to the circle.

    Args:
        verts: (V, 3) positions (only the vertices used by ``faces`` get meaningful uv).
        faces: (F, 3) triangles; the mesh must be a topological disk whose boundary is ``outer``.
        outer: (n,) boundary loop, placed on the unit circle by arc length, counter-clockwise.

    Returns:
        (V, 2) uv in the unit disk (unused vertices get 0).
    """
    V = len(verts)
    seg = np.linalg.norm(verts[np.roll(outer, -1)] - verts[outer], axis=1)
    t = np.concatenate([[0.0], np.cumsum(seg)[:-1]]) / seg.sum() * 2 * np.pi
    uv = np.zeros((V, 2))
    uv[outer] = np.stack([np.cos(t), np.sin(t)], 1)
    W = _mean_value_weights(verts, faces)
    used = np.zeros(V, bool)
    used[faces.ravel()] = True
    is_b = np.zeros(V, bool)
    is_b[outer] = True
    inner = np.flatnonzero(used & ~is_b)
    deg = np.asarray(W.sum(1)).ravel()
    L = sp.diags(deg) - W
    A = L[inner][:, inner].tocsc()
    rhs = -(L[inner][:, outer] @ uv[outer])
    sol = spla.splu(A).solve(np.ascontiguousarray(rhs))
    uv[inner] = sol
    # Orientation: make the parameterisation counter-clockwise (positive signed areas).
    if signed_areas(uv, faces).sum() < 0:
        uv[:, 1] *= -1
    return uv


def fill_holes(verts: np.ndarray, faces: np.ndarray, loops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Close each loop with a fan around a new centroid vertex; returns extended (verts, faces)."""
    verts, new_faces = list(verts), [faces]
    for loop in loops:
        c = len(verts)
        verts.append(np.mean([verts[i] for i in loop], axis=0))
        new_faces.append(np.stack([np.roll(loop, -1), loop, np.full(len(loop), c)], 1))
    return np.asarray(verts), np.concatenate(new_faces).astype(np.int64)


def disk_parameterize(verts: np.ndarray, faces: np.ndarray, outer_pick: str = "longest") -> np.ndarray:
    """Unit-disk uv (V, 2) for one connected component with at least one boundary loop.

    ``outer_pick``: "longest" (by 3D length) or "lowest" (mean +Y) loop goes to the circle; the
    other loops are filled with fans for the solve and the fans dropped.
    """
    loops = boundary_loops(faces)
    if not loops:
        raise ValueError("component has no boundary: cannot be disk-parameterised")
    if outer_pick == "lowest":
        k = int(np.argmin([verts[lp, 1].mean() for lp in loops]))
    else:
        k = int(np.argmax([np.linalg.norm(verts[np.roll(lp, -1)] - verts[lp], axis=1).sum() for lp in loops]))
    outer = loops[k]
    v2, f2 = fill_holes(verts, faces, [lp for i, lp in enumerate(loops) if i != k])
    if euler_characteristic(f2) != 1:
        raise ValueError(f"component is not a disk after filling holes (Euler characteristic {euler_characteristic(f2)})")
    return tutte_disk(v2, f2, outer)[: len(verts)]


# ---------------------------------------------------------------------------------------------
# Disk warps
# ---------------------------------------------------------------------------------------------

def mobius_to_center(uv: np.ndarray, a: complex) -> np.ndarray:
    """Disk automorphism z -> (z - a) / (1 - conj(a) z) moving point ``a`` (|a| < 1) to 0."""
    z = uv[:, 0] + 1j * uv[:, 1]
    w = (z - a) / (1 - np.conj(a) * z)
    return np.stack([w.real, w.imag], 1)


def radial_warp(uv: np.ndarray, gamma: float) -> np.ndarray:
    """r -> r ** gamma about the centre (monotone, a bijection of the unit disk)."""
    r = np.linalg.norm(uv, axis=1, keepdims=True)
    return uv * np.where(r > 0, r ** (gamma - 1.0), 0.0)


def signed_areas(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Signed UV areas (F,); positive = counter-clockwise."""
    a, b, c = uv[faces[:, 0]], uv[faces[:, 1]], uv[faces[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


# ---------------------------------------------------------------------------------------------
# Rasterisation (for overlap checks and texel statistics)
# ---------------------------------------------------------------------------------------------

def texel_coverage(uv_coords: np.ndarray, uv_faces: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Which triangle covers each texel centre of an S x S map, and how many do.

    Args:
        uv_coords: (T, 2) in [0, 1], v up. uv_faces: (F, 3). size: S.

    Returns:
        face_index (S, S) int64 (-1 = empty; the last writer wins where count > 1),
        count (S, S) int32 number of triangles covering the texel centre.
    """
    S = size
    px = np.stack([uv_coords[:, 0] * S, (1.0 - uv_coords[:, 1]) * S], 1)  # (T, 2) col, row
    tri = px[uv_faces]  # (F, 3, 2)
    face_index = np.full((S, S), -1, np.int64)
    count = np.zeros((S, S), np.int32)
    lo = np.clip(np.floor(tri.min(1) - 0.5), 0, S - 1).astype(int)
    hi = np.clip(np.ceil(tri.max(1) - 0.5), 0, S - 1).astype(int)
    for f in range(len(uv_faces)):
        (c0, r0), (c1, r1) = lo[f], hi[f]
        cc, rr = np.meshgrid(np.arange(c0, c1 + 1) + 0.5, np.arange(r0, r1 + 1) + 0.5)
        a, b, c = tri[f]
        d = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if abs(d) < 1e-14:
            continue
        w1 = ((cc - a[0]) * (c[1] - a[1]) - (rr - a[1]) * (c[0] - a[0])) / d
        w2 = ((b[0] - a[0]) * (rr - a[1]) - (b[1] - a[1]) * (cc - a[0])) / d
        inside = (w1 >= 0) & (w2 >= 0) & (w1 + w2 <= 1)
        # Half-open rule on shared edges: count a texel once where it lies exactly on an edge.
        strict = (w1 > 1e-9) & (w2 > 1e-9) & (w1 + w2 < 1 - 1e-9)
        rows, cols = np.nonzero(inside)
        rows, cols = rows + r0, cols + c0
        face_index[rows, cols] = f
        srows, scols = np.nonzero(strict)
        count[srows + r0, scols + c0] += 1
    return face_index, count


# ---------------------------------------------------------------------------------------------
# The layout
# ---------------------------------------------------------------------------------------------

@dataclass
class Island:
    """One chart: faces (indices into the mesh), its uv in the unit disk per mesh vertex, a label."""

    faces: np.ndarray  # (Fi,) face indices
    uv: np.ndarray  # (V, 2) unit-disk uv (only this island's vertices meaningful)
    label: str


def _place(uv: np.ndarray, center: tuple[float, float], radius: float) -> np.ndarray:
    return uv * radius + np.asarray(center)


def _corner_slots(n: int, main_radius: float) -> list[tuple[tuple[float, float], float]]:
    """Up to 5 circles outside the main disk: one per corner of [0,1]^2, the 5th sharing the last corner.

    A corner circle of radius r touches two sides and the main disk; with 5 islands the last corner
    holds two circles of radius r / 2 side by side across its diagonal.
    """
    if n > 5:
        raise ValueError(f"at most 5 small islands fit the corners, got {n}")
    r = ((0.5 * np.sqrt(2) - main_radius) / (1 + np.sqrt(2))) * 0.97  # tangent to two sides and the main disk
    corners = [(r, 1 - r), (1 - r, 1 - r), (r, r), (1 - r, r)]
    if n <= 4:
        return [(c, r) for c in corners[:n]]
    slots = [(c, r) for c in corners[:3]]
    (cx, cy), d = corners[3], r / 2 / np.sqrt(2)
    slots += [((cx - d, cy - d), r / 2 * 0.98), ((cx + d, cy + d), r / 2 * 0.98)]
    return slots


def cut_path(verts: np.ndarray, faces: np.ndarray, path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Open a slit along ``path`` (vertex chain starting on a boundary loop, ending inside).

    The path must run along the symmetry plane x = 0; faces adjacent to it on the +x side get fresh
    copies of the path's vertices (all but the last, the slit's tip).

    Returns:
        verts (V + len(path) - 1, 3) and faces (F, 3) of the cut mesh.
    """
    dup = {int(p): len(verts) + i for i, p in enumerate(path[:-1])}
    faces = faces.copy()
    plus = verts[faces].mean(1)[:, 0] > 0
    touched = np.isin(faces, list(dup)) & plus[:, None]
    faces[touched] = [dup[int(v)] for v in faces[touched]]
    return np.concatenate([verts, verts[path[:-1]]]), faces


def back_midline_path(verts: np.ndarray, faces: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """Shortest edge path on the symmetry plane (x = 0, back half z < 0) from ``outer`` to the top.

    Returns the vertex chain, first vertex on ``outer``, last the highest midline vertex.
    """
    from scipy.sparse.csgraph import dijkstra

    V = len(verts)
    e = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1), axis=0)
    on_plane = (np.abs(verts[:, 0]) < 1e-6) & (verts[:, 2] < 0.01)
    e = e[on_plane[e].all(1)]
    length = np.linalg.norm(verts[e[:, 0]] - verts[e[:, 1]], axis=1)
    G = sp.coo_matrix((np.r_[length, length], (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(V, V)).tocsr()
    top = int(np.flatnonzero(on_plane)[np.argmax(verts[on_plane, 1])])
    dist, pred = dijkstra(G, indices=top, return_predecessors=True)
    starts = [int(v) for v in outer if on_plane[v] and np.isfinite(dist[v])]
    if not starts:
        raise ValueError("no midline edge path from the outer boundary to the top of the head")
    cur, path = min(starts, key=lambda v: dist[v]), []
    while cur >= 0:
        path.append(cur)
        cur = int(pred[cur]) if cur != top else -1
    return np.asarray(path, np.int64)


def area_balanced_radial_warp(uv: np.ndarray, verts: np.ndarray, faces: np.ndarray, face_weight: np.ndarray,
                              blend: float = 0.0, knots: int = 48) -> np.ndarray:
    """Monotone radial reparametrisation r -> g(r) of a unit-disk uv, so the disk inside g(r) holds the
    share of (3D area x ``face_weight``) of the faces whose uv centroid lies inside r.

    g is sampled on ``knots`` radii (piecewise linear, smooth enough for a mesh) and blended with
    the identity by ``blend`` in [0, 1]. It only moves vertices along rays and is a bijection of the
    disk; the caller checks the result for flipped triangles and raises ``blend`` if needed.
    """
    a3 = 0.5 * np.linalg.norm(np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]]), axis=1)
    rc = np.linalg.norm(uv[faces].mean(1), axis=1)
    order = np.argsort(rc)
    cum = np.r_[0.0, np.cumsum((a3 * face_weight)[order])]
    r_grid = np.linspace(0.0, 1.0, knots + 1)
    share = np.interp(r_grid, np.r_[0.0, rc[order]], cum) / cum[-1]
    share[-1] = 1.0
    g = (1.0 - blend) * np.sqrt(np.maximum.accumulate(share)) + blend * r_grid
    r = np.linalg.norm(uv, axis=1)
    gr = np.interp(r, r_grid, g)
    return uv * np.where(r > 1e-12, gr / np.maximum(r, 1e-12), 0.0)[:, None]


def _local(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    used = np.unique(faces)
    remap = np.full(faces.max() + 1, -1, np.int64)
    remap[used] = np.arange(len(used))
    return used, remap[faces]


def _main_disk(lv: np.ndarray, lf: np.ndarray, anchor: int, up: int | None, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Unit-disk uv of the main island (local vertices ``lv``, faces ``lf``): slit, Tutte, Mobius,
    rotation, area-balancing radial warp. Returns uv (V', 2), the cut faces (F, 3), info."""
    loops = boundary_loops(lf)
    outer = loops[int(np.argmin([lv[lp, 1].mean() for lp in loops]))]
    path = back_midline_path(lv, lf, outer)
    cv, cf = cut_path(lv, lf, path)
    uv = disk_parameterize(cv, cf, outer_pick="longest")
    uv = mobius_to_center(uv, complex(*uv[anchor]))
    if up is not None:
        turn = np.pi / 2 - np.arctan2(uv[up, 1], uv[up, 0])
        c, s_ = np.cos(turn), np.sin(turn)
        uv = uv @ np.array([[c, s_], [-s_, c]])
    for blend in (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0):  # least smoothing that leaves no flipped triangle
        warped = area_balanced_radial_warp(uv, cv, cf, weight, blend=blend)
        if signed_areas(warped, cf).min() > 0:
            break
    return warped, cf, {"slit_vertices": len(path), "radial_blend": blend}


def build_layout(
    verts: np.ndarray,
    faces: np.ndarray,
    island_of_face: np.ndarray,
    main_label: str,
    face_anchor: int,
    up_anchor: int | None = None,
    main_weight: np.ndarray | None = None,
    main_radius: float = MAIN_RADIUS,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Lay out a head mesh: the ``main_label`` island as the central disk, the others in the corners.

    The main island is slit along the back midline (neck boundary to the top of the head), mapped to
    the disk with the slit and neck on the circle, the ``face_anchor`` vertex (e.g. the nose tip)
    moved to the centre, and area-balanced radially with ``main_weight`` (per face of the mesh;
    larger = more texels per square metre).

    Args:
        verts: (V, 3) neutral mesh, metres, +Y up, symmetric about x = 0.
        faces: (F, 3) triangles.
        island_of_face: (F,) str island names; each other name must be one disk-like component.
        face_anchor: vertex index moved to the centre of the main disk.
        up_anchor: optional vertex (e.g. mid-forehead) turned to point straight up (+v) from the centre.
        main_weight: (F,) area weights for the main disk's radial balance (default 1).

    Returns:
        uv_coords (T, 2) in [0, 1], uv_faces (F, 3) int32, info dict (islands, min signed area).
    """
    F = len(faces)
    uv_faces = np.zeros((F, 3), np.int64)
    uv_all: list[np.ndarray] = []
    info: dict = {"islands": {}}
    weight = np.ones(F) if main_weight is None else np.asarray(main_weight, np.float64)

    main = np.flatnonzero(island_of_face == main_label)
    used, lf = _local(faces[main])
    uv, cf, main_info = _main_disk(verts[used], lf, int(np.flatnonzero(used == face_anchor)[0]),
                                   None if up_anchor is None else int(np.flatnonzero(used == up_anchor)[0]), weight[main])
    uv_all.append(_place(uv, (0.5, 0.5), main_radius))
    uv_faces[main] = cf
    info["islands"][main_label] = {"center": [0.5, 0.5], "radius": main_radius, **main_info}

    others = [n for n in dict.fromkeys(island_of_face.tolist()) if n != main_label]
    for name, (center, radius) in zip(others, _corner_slots(len(others), main_radius)):
        ids = np.flatnonzero(island_of_face == name)
        used, lf = _local(faces[ids])
        uv_i = disk_parameterize(verts[used], lf, outer_pick="longest")
        base = sum(len(u) for u in uv_all)
        uv_all.append(_place(uv_i, center, radius))
        uv_faces[ids] = base + lf
        info["islands"][name] = {"center": [float(c) for c in center], "radius": float(radius)}
    uv_coords = np.concatenate(uv_all)
    info["min_signed_area"] = float(signed_areas(uv_coords, uv_faces).min())
    return uv_coords.astype(np.float32), uv_faces.astype(np.int32), info


def texel_stats(uv_coords: np.ndarray, uv_faces: np.ndarray, face_region: np.ndarray, size: int,
                region_names: tuple[str, ...]) -> dict:
    """Texels per region, overlap count and total coverage at side ``size`` (for reports and tests)."""
    idx, count = texel_coverage(uv_coords, uv_faces, size)
    covered = idx >= 0
    regions = face_region[idx[covered]]
    per = {name: int((regions == i).sum()) for i, name in enumerate(region_names)}
    n = int(covered.sum())
    return {
        "size": size,
        "texels": n,
        "overlap_texels": int((count > 1).sum()),
        "per_region": per,
        "share": {k: v / max(n, 1) for k, v in per.items()},
    }

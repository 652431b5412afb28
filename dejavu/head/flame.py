"""FLAME 2020 / 2023 / 2023 Open from the user's own files (never shipped, never committed).

``load_flame_assets(path)`` takes a directory or a model pickle (``--head flame:PATH`` or $DEJAVU_FLAME):

- model pickle (``generic_model.pkl``, ``flame2023.pkl``, ``flame2023_no_jaw.pkl``, ...): v_template,
  f, shapedirs (V, 3, 400: first 300 identity, last 100 expression), posedirs (V, 3, 36),
  J_regressor (sparse, 5 x V), weights (V, 5), kintree_table (2, 5). Read with the restricted
  unpickler of :mod:`dejavu.head.safe_pickle` (chumpy is neither needed nor imported).
- UVs: ``vt``/``ft`` in the pickle, else ``FLAME_texture.npz`` (vt, ft), else ``head_template_mesh.obj``
  (or any ``*.obj`` with ``vt`` lines and ``f v/vt`` faces) next to the pickle.
- optional ``FLAME_masks.pkl`` (vertex-index lists per region) and ``mediapipe_landmark_embedding.npz``
  (lmk_face_idx, lmk_b_coords, landmark_indices: 105 MediaPipe points) next to the pickle.

Frame: FLAME is already +Y up, +Z forward, +X to the subject's left, metres; the template is shifted so
the root joint is at the origin (docs/CONVENTIONS.md). Joints: root, neck, jaw and the two eyes (the
eye joint with larger X is ``eye_left``). FLAME regresses joints from the shaped mesh.

Paper UV edit: faces whose UV centroid is below row 200/256 (the neck; eyeball faces are kept wherever
they are) are removed from the UV layout (their UVs point to a degenerate coordinate, so they get no
texels but stay in the mesh), and a mouth interior patch (50 x 60 texels at S = 320, in the freed band,
centred unless something kept is there) is added: extra vertices that
interpolate the inner-lip lines and the mouth corners pushed 2 cm back (:mod:`dejavu.head.mouth`).
The inner-lip loop is found as the mesh boundary loop maximising ``z - 2 |x|`` of its centroid
(FLAME's mouth is a hole; the neck and eye sockets are other holes), split at its extreme-X corners.

Regions without ``FLAME_masks.pkl`` (heuristics, in units of the eye distance d): eyes = vertices skinned
mostly to an eye joint; neck = below the chin (lowest vertex skinned mostly to the jaw); ears = wider
than 88% of the head's half-width within [-1, +0.5] d of eye height; scalp = higher than 1.1 d above
the eyes or further back than 0.9 d behind the eye joints; face = the rest in front; other = the rest.
Without the landmark embedding file all 478 landmarks get weight 0 (the tracker then cannot use them).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dejavu.errors import DejavuError
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
from dejavu.head.safe_pickle import safe_load

log = logging.getLogger(__name__)

MODEL_NAMES = ("generic_model.pkl", "flame2023.pkl", "flame2023_no_jaw.pkl", "flame2023_open.pkl", "flame2020.pkl",
               "FLAME2020/generic_model.pkl", "FLAME2023/flame2023.pkl")
REQUIRED = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
N_EXPR = 100
UV_CUT_V = 1.0 - 200.0 / 256.0  # rows below 200/256 (v < 0.21875) are the neck: dropped
MOUTH_UV_BOX = (0.5 - 25 / 320, 5 / 320, 0.5 + 25 / 320, 65 / 320)  # 50 x 60 texels at 320


def find_model_file(path: str | Path) -> Path:
    """The model pickle for a user path (file or directory)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise DejavuError(f"{p}: no such FLAME file or directory (give flame:PATH to a FLAME .pkl or its folder)")
    for name in MODEL_NAMES:
        if (p / name).is_file():
            return p / name
    pkls = [q for q in sorted(p.glob("*.pkl")) if q.name != "FLAME_masks.pkl"]
    if len(pkls) == 1:
        return pkls[0]
    raise DejavuError(f"{p}: no FLAME model pickle found (expected one of {', '.join(MODEL_NAMES[:3])})")


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x)


def _check_model(path: Path, data: object) -> dict:
    if not isinstance(data, dict):
        raise DejavuError(f"{path}: not a FLAME model (expected a dict of arrays, found {type(data).__name__})")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise DejavuError(f"{path}: not a FLAME model (missing {', '.join(repr(k) for k in missing)})")
    try:
        m = {k: _dense(data[k]) for k in REQUIRED}
        m["f"] = m["f"].astype(np.int64)
        for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
            m[k] = m[k].astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DejavuError(f"{path}: not a FLAME model (non-numeric arrays: {exc})") from None
    V = len(m["v_template"])
    expect = {
        "v_template": m["v_template"].shape == (V, 3) and V > 0,
        "f": m["f"].ndim == 2 and m["f"].shape[1:] == (3,) and m["f"].min() >= 0 and m["f"].max() < V,
        "shapedirs": m["shapedirs"].ndim == 3 and m["shapedirs"].shape[:2] == (V, 3) and m["shapedirs"].shape[2] > N_EXPR,
        "weights": m["weights"].shape == (V, 5),
        "J_regressor": m["J_regressor"].shape == (5, V),
        "kintree_table": m["kintree_table"].shape == (2, 5),
        "posedirs": m["posedirs"].size == V * 3 * 36,
    }
    for key, ok in expect.items():
        if not ok:
            raise DejavuError(f"{path}: not a FLAME model ('{key}' has shape {m[key].shape}, which does not fit "
                              f"{V} vertices / 5 joints / > {N_EXPR} blendshapes)")
    return m


def _read_obj_uv(path: Path, n_faces: int) -> tuple[np.ndarray, np.ndarray] | None:
    vt, ft = [], []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("vt "):
            vt.append([float(x) for x in line.split()[1:3]])
        elif line.startswith("f "):
            corners = line.split()[1:]
            if len(corners) != 3 or any(c.count("/") < 1 for c in corners):
                return None
            ft.append([int(c.split("/")[1]) - 1 for c in corners])
    if not vt or len(ft) != n_faces:
        return None
    return np.array(vt), np.array(ft)


def _find_uv(model: Path, data: dict, n_faces: int) -> tuple[np.ndarray, np.ndarray, str]:
    if "vt" in data and "ft" in data:
        return np.asarray(data["vt"], float), np.asarray(data["ft"], np.int64), model.name
    folder = model.parent
    npz = folder / "FLAME_texture.npz"
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as t:
                return np.asarray(t["vt"], float), np.asarray(t["ft"], np.int64), npz.name
        except (KeyError, ValueError, OSError) as exc:
            raise DejavuError(f"{npz}: expected arrays 'vt' and 'ft' ({exc.__class__.__name__}: {exc})") from None
    for obj in [folder / "head_template_mesh.obj", *sorted(folder.glob("*.obj"))]:
        if obj.is_file():
            uv = _read_obj_uv(obj, n_faces)
            if uv is not None:
                return uv[0], uv[1], obj.name
    raise DejavuError(f"{folder}: no FLAME UV layout found (expected FLAME_texture.npz with vt/ft, or "
                      f"head_template_mesh.obj, next to {model.name})")


def _boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed boundary loops (vertex index arrays) of a triangle mesh."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(e, 1)
    uniq, inv, count = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    border = e[count[inv.ravel()] == 1]  # directed edges, consistent orientation
    nxt = {int(a): int(b) for a, b in border}
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen and v in nxt:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        if v == start and len(loop) >= 3:
            loops.append(np.array(loop))
    return loops


def _lip_lines(v: np.ndarray, faces: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower inner-lip vertex lines, each from the subject's right corner (-X) to the left (+X)."""
    loops = _boundary_loops(faces)
    if not loops:
        raise DejavuError(f"{path}: the FLAME mesh has no mouth opening (no boundary loop) to attach the mouth interior to")
    score = [v[lp, 2].mean() - 2 * abs(v[lp, 0].mean()) for lp in loops]
    loop = loops[int(np.argmax(score))]
    i_r, i_l = int(np.argmin(v[loop, 0])), int(np.argmax(v[loop, 0]))
    rolled = np.roll(loop, -i_r)
    k = (i_l - i_r) % len(loop)
    a, b = rolled[: k + 1], np.concatenate([rolled[k:], rolled[:1]])[::-1]  # both run right -> left
    return (a, b) if v[a, 1].mean() >= v[b, 1].mean() else (b, a)


def _regions(v: np.ndarray, faces: np.ndarray, weights: np.ndarray, joints: np.ndarray, folder: Path) -> np.ndarray:
    """Per-face region ids (see the module docstring)."""
    masks = folder / "FLAME_masks.pkl"
    label = np.full(len(v), REGION_ID["other"], dtype=np.int64)
    if masks.is_file():
        m = safe_load(masks)
        if not isinstance(m, dict):
            raise DejavuError(f"{masks}: expected a dict of vertex-index arrays")
        for names, region in ((("scalp",), "scalp"), (("face",), "face"), (("neck",), "neck"),
                              (("left_ear", "right_ear"), "ears"), (("left_eyeball", "right_eyeball"), "eyes")):
            for n in names:
                if n in m:
                    idx = np.asarray(m[n], dtype=np.int64).ravel()
                    label[idx[(idx >= 0) & (idx < len(v))]] = REGION_ID[region]
    else:
        eye_l, eye_r, jaw = joints[3], joints[4], joints[2]
        d = max(np.linalg.norm(eye_l - eye_r), 1e-3)
        eye = 0.5 * (eye_l + eye_r)
        y, z, ax = v[:, 1] - eye[1], v[:, 2] - eye[2], np.abs(v[:, 0])
        label[z > -0.9 * d] = REGION_ID["face"]
        label[(y > 1.1 * d) | (z < -0.9 * d)] = REGION_ID["scalp"]
        band = (y > -1.0 * d) & (y < 0.5 * d)
        half_width = ax[band].max() if band.any() else ax.max()
        label[band & (ax > 0.88 * half_width)] = REGION_ID["ears"]
        jaw_v = weights[:, 2] > 0.5
        chin_y = v[jaw_v, 1].min() if jaw_v.any() else jaw[1] - d
        label[v[:, 1] < chin_y] = REGION_ID["neck"]
        label[weights[:, 3:5].sum(1) > 0.5] = REGION_ID["eyes"]
    # A face takes its vertices' majority label (ties: the first vertex's).
    fl = label[faces]
    maj = np.where(fl[:, 1] == fl[:, 2], fl[:, 1], fl[:, 0])
    return maj.astype(np.int8)


def _landmarks(folder: Path, n_faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    faces = np.zeros(N_LANDMARKS, np.int64)
    bary = np.tile([1.0, 0.0, 0.0], (N_LANDMARKS, 1))
    weight = np.zeros(N_LANDMARKS)
    emb = folder / "mediapipe_landmark_embedding.npz"
    if not emb.is_file():
        log.warning("%s not found: FLAME landmarks get weight 0 (tracking needs this file)", emb)
        return faces, bary, weight, "none"
    try:
        with np.load(emb, allow_pickle=False) as e:
            f, b, idx = (np.asarray(e[k]) for k in ("lmk_face_idx", "lmk_b_coords", "landmark_indices"))
    except (KeyError, ValueError, OSError) as exc:
        raise DejavuError(f"{emb}: expected lmk_face_idx, lmk_b_coords, landmark_indices ({exc})") from None
    idx = idx.astype(np.int64).ravel()
    if not (len(f) == len(b) == len(idx)) or b.shape[1:] != (3,) or idx.max() >= N_LANDMARKS or f.max() >= n_faces:
        raise DejavuError(f"{emb}: inconsistent landmark embedding (sizes {len(f)}, {len(b)}, {len(idx)})")
    faces[idx], bary[idx], weight[idx] = f, b, 1.0
    return faces, bary, weight, emb.name


def _free_box(kept_uv_tris: np.ndarray, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """``box`` slid sideways (centre first, then alternately left/right) until no kept UV triangle overlaps it."""
    if len(kept_uv_tris) == 0:
        return box
    lo, hi = kept_uv_tris.min(1), kept_uv_tris.max(1)  # (F, 2) bounding boxes
    u0, v0, u1, v1 = box
    width = u1 - u0
    for step in range(40):
        shift = (step + 1) // 2 * (1 if step % 2 else -1) * width / 4
        a, b = u0 + shift, u1 + shift
        if a < 0 or b > 1:
            continue
        if not np.any((lo[:, 0] < b) & (hi[:, 0] > a) & (lo[:, 1] < v1) & (hi[:, 1] > v0)):
            return (a, v0, b, v1)
    raise DejavuError("the FLAME UV layout has no free room below row 200/256 for the mouth-interior patch")


def load_flame_assets(path: str | Path) -> HeadAssets:
    """Read a FLAME model (directory or .pkl) into :class:`HeadAssets` with the paper's UV edit applied."""
    model = find_model_file(path)
    raw = safe_load(model)
    m = _check_model(model, raw)
    V = len(m["v_template"])
    parents = m["kintree_table"][0].astype(np.int64)
    parents[0] = -1
    if parents.tolist() != [-1, 0, 1, 1, 1]:
        raise DejavuError(f"{model}: not a FLAME model (kintree parents {parents.tolist()}, expected [-1, 0, 1, 1, 1])")
    jreg = m["J_regressor"]
    joints = jreg @ m["v_template"]
    v_template = m["v_template"] - joints[0]  # root joint at the origin
    joints = joints - joints[0]
    order = [0, 1, 2, 3, 4] if joints[3, 0] >= joints[4, 0] else [0, 1, 2, 4, 3]  # eye_left has larger X
    jreg, weights, joints = jreg[order], m["weights"][:, order], joints[order]
    posedirs = m["posedirs"].reshape(V * 3, 36).T.reshape(4, 9, V * 3)[np.array(order[1:]) - 1].reshape(36, V * 3)
    K = m["shapedirs"].shape[2]
    shapedirs, exprdirs = m["shapedirs"][..., : K - N_EXPR], m["shapedirs"][..., K - N_EXPR:]
    faces = m["f"]
    vt, ft, uv_source = _find_uv(model, raw, len(faces))
    if ft.shape != faces.shape or ft.min() < 0 or ft.max() >= len(vt):
        raise DejavuError(f"{model.parent / uv_source}: UV faces do not match the model ({ft.shape} vs {faces.shape})")
    region = _regions(v_template, faces, weights, joints, model.parent)

    # Paper UV edit: drop the neck band, add the mouth-interior patch.
    dropped = (vt[ft][:, :, 1].mean(1) < UV_CUT_V) & (region != REGION_ID["eyes"])
    in_band = vt[ft][:, :, 1].mean(1) < UV_CUT_V
    box = _free_box(vt[ft[in_band & ~dropped]], MOUTH_UV_BOX)  # kept eyeball faces in the band, if any
    vt = np.concatenate([vt, [[0.0, 0.0]]])
    ft = np.where(dropped[:, None], len(vt) - 1, ft)
    upper, lower = _lip_lines(v_template, faces, model)
    patch = build_mouth_patch(v_template, upper, lower, cols=9, rows=9, uv_box=box)
    lm_faces, lm_bary, lm_weight, lm_source = _landmarks(model.parent, len(faces))
    pd = posedirs.reshape(36, V, 3).transpose(1, 0, 2)  # (V, 36, 3)
    posedirs = extend_rows(pd, patch.weights).transpose(1, 0, 2).reshape(36, -1)

    return HeadAssets(
        name=f"flame:{model}",
        v_template=np.concatenate([v_template, patch.weights @ v_template + patch.offset]).astype(np.float32),
        faces=np.concatenate([faces, patch.faces + V]).astype(np.int32),
        uv_coords=np.concatenate([vt, patch.uv]).astype(np.float32),
        uv_faces=np.concatenate([ft, patch.faces + len(vt)]).astype(np.int32),
        shapedirs=extend_rows(shapedirs, patch.weights).astype(np.float32),
        exprdirs=extend_rows(exprdirs, patch.weights).astype(np.float32),
        joint_names=[JOINT_ROOT, JOINT_NECK, JOINT_JAW, JOINT_EYE_L, JOINT_EYE_R],
        parents=np.array([-1, 0, 1, 1, 1], dtype=np.int32),
        j_regressor=np.concatenate([jreg, np.zeros((5, len(patch.weights)))], 1).astype(np.float32),
        lbs_weights=extend_rows(weights, patch.weights).astype(np.float32),
        face_region=np.concatenate([region, np.full(len(patch.faces), REGION_ID["mouth"], np.int8)]),
        landmark_faces=lm_faces.astype(np.int32),
        landmark_bary=lm_bary.astype(np.float32),
        landmark_weight=lm_weight.astype(np.float32),
        expr_names=[f"expr_{i:03d}" for i in range(exprdirs.shape[2])],
        posedirs=posedirs.astype(np.float32),
        info={"source": str(model), "uv": uv_source, "landmarks": lm_source, "licence": "FLAME (user's own copy)",
              "root_offset_m": (-(m["J_regressor"] @ m["v_template"])[0]).tolist(),
              "neck_faces_dropped_from_uv": int(dropped.sum()), "mouth_uv_box": [float(x) for x in box]},
    ).validate()

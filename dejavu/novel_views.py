"""Novel-view evaluation: does the avatar still look like its own head when it is turned?

Held-out frames of a talking-head video are seen from the training camera, so an avatar whose
Gaussians slid along the viewing rays (a picture of the face painted on the wrong surface) scores
well on them. Here the avatar is rendered at a few expressions from yaws 0, +-15, +-30, +-45, +-60
and pitches +-15 degrees about the head's centre (1 m, FOV 20 degrees, white background), MediaPipe's
face mesh (:class:`dejavu.track.landmarks.LandmarkDetector`, the tracker's) runs on every render,
and its landmarks on the eyes, brows, nose and lips are compared with the avatar's own head-model
landmarks (:meth:`dejavu.head.base.HeadModel.landmarks`) projected through the same camera.

An avatar whose appearance agrees with its geometry keeps that RMSE close to its front-view value
as the head turns; a billboard's features stay where the training camera saw them and drift away
from the mesh's. Only landmarks on mesh triangles facing the camera count (the far eye at 60 degrees
is hidden; MediaPipe guesses it). RMSEs are in pixels at 512 whatever the render side R.

Headline figures (``summary``): ``front`` (yaw 0, pitch 0), ``yaw30_45`` (mean of the four views at
+-30 and +-45, the target's figure), their ratio, and ``faces_found_to_45`` (every view up to +-45
found a face). Each is averaged over the named expressions (the same faces for every avatar of a head,
so avatars compare); a view where no face is found has no RMSE. With ``tracked`` > 0 the avatar is
also rendered at that many expressions of its own video (:func:`tracked_expressions`), summarised
apart in ``summary_tracked``.

Letters: V views, E expressions, L = 478 landmarks, R render side.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dejavu.avatar import Avatar
from dejavu.device import resolve_device
from dejavu.errors import DejavuError
from dejavu.head.base import HeadModel
from dejavu.io import write_image, write_json
from dejavu.model.avatar_model import STAGES, AvatarModel
from dejavu.model.rigid import apply_rigid_points, predict_corrections
from dejavu.personalize.evaluate import label_image
from dejavu.render.camera import intrinsics, orbit_pose6, pose6_to_world_to_cam, project_points, to_camera
from dejavu.track.landmarks import LandmarkDetector
from dejavu.track.result import is_tracking_dir, load_tracking

log = logging.getLogger(__name__)

#: (yaw, pitch) in degrees of the evaluated views; positive yaw turns the face to the subject's left.
VIEWS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (-15.0, 0.0), (15.0, 0.0), (-30.0, 0.0), (30.0, 0.0),
                                          (-45.0, 0.0), (45.0, 0.0), (-60.0, 0.0), (60.0, 0.0),
                                          (0.0, -15.0), (0.0, 15.0))
#: MediaPipe face-mesh indices of the compared features (mediapipe's FACEMESH_* connection sets).
LANDMARK_GROUPS: dict[str, tuple[int, ...]] = {
    "eyes": (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
             263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398),
    "brows": (46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336),
    "nose": (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440),
    "lips": (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267, 269,
             270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415),
}
#: RMSEs are reported in pixels of a render of this side.
REFERENCE_SIDE = 512
#: Views whose mean RMSE is the headline novel-view figure (the target's +-30 and +-45 degrees).
HEADLINE_YAWS = (-45.0, -30.0, 30.0, 45.0)


@dataclass
class NovelViewConfig:
    """What :func:`evaluate_novel_views` renders and measures."""

    views: tuple[tuple[float, float], ...] = VIEWS
    """(yaw, pitch) degrees about the head's centre."""
    resolution: int | None = None
    """Render side R in pixels; None: the avatar's own (its training resolution, else its crop size, else 512)."""
    stage: str = "full"
    """Avatar stage rendered (``dejavu.avatar.STAGES``): "mean" is the network-only avatar of a personalized one."""
    expressions: tuple[str, ...] = ("neutral", "jaw_open", "smile")
    """Named expressions (:func:`named_expressions`)."""
    tracked: int = 0
    """Also this many expressions of the avatar's own tracked video (:func:`tracked_expressions`; the
    avatar folder's ``tracking/``), when it has one."""
    picture_side: int = 192
    """Side of each cell of the picture of the renders, pixels."""


def named_expressions(head: HeadModel, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Expression codes (E, Ne) and jaw rotations (E, 3) radians for ``names`` on ``head``.

    neutral: all zero. jaw_open: the mouth half open. smile: both mouth corners up. ARKit-named heads
    (built-in) use their named units; others (FLAME, procedural) use their first component (+1.5) for
    the smile and the jaw alone for jaw_open, so every avatar of one head is measured on the same faces.
    """
    index = {n.lower(): i for i, n in enumerate(getattr(head, "expr_names", []) or [])}
    expr = torch.zeros(len(names), head.n_expr)
    jaw = torch.zeros(len(names), 3)
    for e, name in enumerate(names):
        if name == "neutral":
            continue
        if name == "jaw_open":
            jaw[e, 0] = 0.2
            if "jawopen" in index:
                expr[e, index["jawopen"]] = 0.5
        elif name == "smile":
            ids = [index[k] for k in ("mouthsmileleft", "mouthsmileright") if k in index]
            for i in ids or [0]:
                expr[e, i] = 0.8 if ids else 1.5
        else:
            raise DejavuError(f"novel views: unknown expression {name!r}; expected neutral, jaw_open or smile")
    return expr, jaw


def tracked_expressions(tracking_dir: str | Path, n: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """``n`` expressions of a tracked video as different from each other as its frames allow: names
    ("frame F"), expression codes (n, Ne) and jaw rotations (n, 3) radians.

    Farthest-point sampling over the frames' (expression, jaw) vectors, starting from the frame farthest
    from neutral, so two picks are e.g. the widest open mouth and a smile rather than two near-copies.
    """
    result = load_tracking(tracking_dir)
    codes = np.concatenate([result.expression, result.jaw], axis=1).astype(np.float64)  # (T, Ne + 3)
    picks = [int(np.argmax(np.linalg.norm(codes, axis=1)))]
    dist = np.linalg.norm(codes - codes[picks[0]], axis=1)
    while len(picks) < min(n, len(codes)):
        picks.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(codes - codes[picks[-1]], axis=1))
    names = [f"frame {int(result.frame_index[i])}" for i in picks]
    return (names, torch.as_tensor(result.expression[picks], dtype=torch.float32),
            torch.as_tensor(result.jaw[picks], dtype=torch.float32))


def view_cameras(views: tuple[tuple[float, float], ...], center: tuple[float, float, float],
                 resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """World-to-camera (V, 4, 4) and intrinsics (V, 3, 3) at side R orbiting ``center`` (metres) at 1 m."""
    yaw, pitch = torch.tensor(views, dtype=torch.float32).unbind(1)
    return pose6_to_world_to_cam(orbit_pose6(yaw, pitch, center=center)), intrinsics(resolution, resolution, batch=len(views))


def facing_landmarks(head: HeadModel, vertices: torch.Tensor, world_to_cam: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the landmark's mesh triangle faces the camera (and the landmark is embedded).

    vertices: (B, V, 3) metres; world_to_cam: (B, 4, 4). A triangle faces the camera when its normal
    points back towards it (the head model's triangles wind outwards).
    """
    cam = to_camera(vertices, world_to_cam)  # (B, V, 3)
    tri = cam[:, head.faces[head.landmark_faces]]  # (B, L, 3, 3)
    normal = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    return ((normal * tri.mean(2)).sum(-1) < 0) & (head.landmark_weight > 0)


def landmark_rmse(detected: np.ndarray, projected: np.ndarray, use: np.ndarray) -> float:
    """Root-mean-square distance (pixels) between detected (L, 2) and projected (L, 2) landmarks over ``use`` (L,) bool."""
    d = detected[use] - projected[use]
    return float(np.sqrt((d ** 2).sum(-1).mean())) if len(d) else float("nan")


def group_mask(groups: dict[str, tuple[int, ...]] = LANDMARK_GROUPS, n: int = 478) -> np.ndarray:
    """(L,) bool: the landmarks of ``groups``."""
    out = np.zeros(n, dtype=bool)
    for ids in groups.values():
        out[list(ids)] = True
    return out


def avatar_resolution(avatar: Avatar) -> int:
    """The side an avatar is evaluated at by default: its training resolution, else its crop size, else 512."""
    s = avatar.settings
    return int(s.get("resolution") or (s.get("config") or {}).get("resolution") or s.get("crop_size") or REFERENCE_SIDE)


@torch.no_grad()
def render_views(model: AvatarModel, expression: torch.Tensor, jaw: torch.Tensor, world_to_cam: torch.Tensor,
                 K: torch.Tensor, resolution: int, stage: str = "full", backend: str = "auto"):
    """Renders and projected landmarks of one expression from every view.

    Args:
        expression: (1, Ne); jaw: (1, 3) radians. world_to_cam: (V, 4, 4); K: (V, 3, 3) at side R.

    Returns:
        rgb (V, R, R, 3) float32 in [0, 1] (white background), landmarks (V, L, 2) pixels and
        facing (V, L) bool (:func:`facing_landmarks`).
    """
    head = model.head
    V = world_to_cam.shape[0]
    verts = model.vertices(expression, jaw)  # (1, V', 3)
    points = head.landmarks(verts)  # (1, L, 3)
    g = model(expression, jaw, stage=stage)
    if model.pose_model is not None and stage != "mean":  # the Gaussians got the pose model's rigid move
        corr = predict_corrections(model.pose_model, model.blend, expression, jaw)
        points = apply_rigid_points(points, corr, g.means.mean(1, keepdim=True))
        verts = apply_rigid_points(verts, corr, g.means.mean(1, keepdim=True))
    g = _repeat(g, V)
    rgb = g.render(world_to_cam, K, resolution, resolution, background=(1.0, 1.0, 1.0), backend=backend).rgb
    pix = project_points(points.expand(V, -1, -1), world_to_cam, K)
    facing = facing_landmarks(head, verts.expand(V, -1, -1), world_to_cam)
    return rgb.clamp(0, 1).cpu().numpy(), pix.cpu().numpy(), facing.cpu().numpy()


def _repeat(g, n: int):
    """``g`` (one frame of Gaussians) repeated for ``n`` cameras."""
    from dataclasses import fields, replace

    return replace(g, **{f.name: getattr(g, f.name).expand(n, *getattr(g, f.name).shape[1:])
                         for f in fields(g) if isinstance(getattr(g, f.name), torch.Tensor)})


def evaluate_novel_views(avatar_dir: str | Path, json_path: str | Path | None = None,
                         picture: str | Path | None = None, cfg: NovelViewConfig | None = None,
                         device: str = "auto", backend: str = "auto", progress: bool = True) -> dict:
    """Render ``avatar_dir`` from :data:`VIEWS` at each expression, detect landmarks, score them.

    Writes ``json_path`` and ``picture`` (one image: a row per expression, a column per view, each
    render with its detected (green) and projected (red) landmarks and its RMSE) when given.

    Returns:
        ``{"avatar", "resolution", "stage", "views": [{"yaw", "pitch", "expression", "face_found",
        "rmse_px", "landmarks"}], "per_view": [{"yaw", "pitch", "faces_found", "rmse_px"}],
        "summary": {"front", "yaw30_45", "ratio", "faces_found", "faces_found_to_45", "views"}}``;
        RMSEs in pixels at 512, per view averaged over the named expressions where a face was found.
        With tracked expressions, ``"summary_tracked"`` (the same over them) and ``"tracked"`` (their names).
    """
    cfg = cfg or NovelViewConfig()
    if cfg.stage not in STAGES:
        raise DejavuError(f"--stage {cfg.stage!r}: expected one of {', '.join(STAGES)}")
    if cfg.resolution is not None and not 64 <= cfg.resolution <= 2048:
        raise DejavuError(f"--resolution {cfg.resolution}: expected a side between 64 and 2048 pixels")
    dev = resolve_device(device)
    avatar = Avatar.load(avatar_dir)
    model = avatar.model(dev)
    head = model.head
    R = cfg.resolution or avatar_resolution(avatar)
    scale = REFERENCE_SIDE / R
    w2c, K = view_cameras(cfg.views, model.center(), R)
    w2c, K = w2c.to(dev), K.to(dev)
    names = list(cfg.expressions)
    exprs, jaws = named_expressions(head, cfg.expressions)
    tracking = Path(avatar_dir) / "tracking"
    tracked: list[str] = []
    if cfg.tracked > 0 and is_tracking_dir(tracking):
        tracked, t_expr, t_jaw = tracked_expressions(tracking, cfg.tracked)
        if t_expr.shape[1] != head.n_expr:
            raise DejavuError(f"{tracking}: {t_expr.shape[1]} expression units, the avatar's head has {head.n_expr}")
        names += tracked
        exprs, jaws = torch.cat([exprs, t_expr]), torch.cat([jaws, t_jaw])
    use_groups = group_mask()
    rows, cells = [], []
    with LandmarkDetector(video=False, max_faces=1) as detector:
        for e, name in enumerate(tqdm(names, desc="novel views", unit="expression", disable=not progress)):
            rgb, pix, facing = render_views(model, exprs[e:e + 1].to(dev), jaws[e:e + 1].to(dev), w2c, K, R, cfg.stage,
                                            backend)
            row = []
            for v, (yaw, pitch) in enumerate(cfg.views):
                image = (rgb[v] * 255 + 0.5).astype(np.uint8)
                det = detector(image)
                use = use_groups & facing[v]
                rmse = None if det is None else round(landmark_rmse(det.points, pix[v], use) * scale, 3)
                rows.append({"yaw": yaw, "pitch": pitch, "expression": name, "face_found": det is not None,
                             "rmse_px": rmse, "landmarks": int(use.sum())})
                if picture is not None:
                    row.append(_cell(image, None if det is None else det.points[use], pix[v][use], rmse,
                                     f"{name} {yaw:+.0f}/{pitch:+.0f}", cfg.picture_side))
            cells.append(row)
    named = [r for r in rows if r["expression"] not in tracked]
    per_view, summary = summarize(named, cfg.views)
    out = {"avatar": str(avatar_dir), "resolution": R, "stage": cfg.stage, "expressions": list(cfg.expressions),
           "reference_side": REFERENCE_SIDE, "views": rows, "per_view": per_view, "summary": summary}
    if tracked:
        out["tracked"] = tracked
        out["per_view_tracked"], out["summary_tracked"] = summarize([r for r in rows if r["expression"] in tracked],
                                                                    cfg.views)
    if json_path is not None:
        write_json(json_path, out)
    if picture is not None:
        write_image(picture, np.concatenate([np.concatenate(r, axis=1) for r in cells], axis=0))
    return out


def summarize(rows: list[dict], views: tuple[tuple[float, float], ...]) -> tuple[list[dict], dict]:
    """Per-view means over expressions and the headline figures (see the module docstring) from :func:`evaluate_novel_views` rows."""
    per_view = []
    for yaw, pitch in views:
        mine = [r for r in rows if r["yaw"] == yaw and r["pitch"] == pitch]
        vals = [r["rmse_px"] for r in mine if r["rmse_px"] is not None and not math.isnan(r["rmse_px"])]
        per_view.append({"yaw": yaw, "pitch": pitch, "faces_found": sum(r["face_found"] for r in mine),
                         "tries": len(mine), "rmse_px": round(float(np.mean(vals)), 3) if vals else None})

    def mean_of(pred) -> float | None:
        vals = [p["rmse_px"] for p in per_view if pred(p) and p["rmse_px"] is not None]
        return round(float(np.mean(vals)), 3) if vals else None

    front = mean_of(lambda p: p["yaw"] == 0 and p["pitch"] == 0)
    side = mean_of(lambda p: p["yaw"] in HEADLINE_YAWS and p["pitch"] == 0)
    summary = {"front": front, "yaw30_45": side,
               "ratio": round(side / front, 3) if front and side is not None else None,
               "faces_found": sum(p["faces_found"] for p in per_view), "views": len(rows),
               "faces_found_to_45": all(p["faces_found"] == p["tries"] for p in per_view if abs(p["yaw"]) <= 45)}
    return per_view, summary


def _cell(image: np.ndarray, detected: np.ndarray | None, projected: np.ndarray, rmse: float | None, title: str,
          side: int) -> np.ndarray:
    """One labelled render (side, side, 3) uint8 with detected (green) and projected (red) landmarks."""
    import cv2

    s = side / image.shape[0]
    out = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    for pts, colour in ((projected, (220, 30, 30)), (detected, (20, 170, 20))):
        for x, y in ([] if pts is None else pts * s):
            cv2.circle(out, (int(x), int(y)), 1, colour, -1, cv2.LINE_AA)
    return label_image(out, f"{title} " + ("no face" if rmse is None else f"{rmse:.1f} px"))


def print_summary(out: dict) -> None:
    """The per-view table and the headline figures, for the CLI."""
    print(f"novel views of {out['avatar']} ({out['stage']}, rendered at {out['resolution']} px; RMSE in px at "
          f"{out['reference_side']}; mean over {len(out['expressions'])} expressions):")
    for p in out["per_view"]:
        rmse = "  no face" if p["rmse_px"] is None else f"{p['rmse_px']:9.2f}"
        print(f"  yaw {p['yaw']:+4.0f} pitch {p['pitch']:+4.0f}: {rmse}  (face found {p['faces_found']}/{p['tries']})")
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"
    for key, what in (("summary", ""), ("summary_tracked", f"tracked expressions ({', '.join(out.get('tracked', []))}): ")):
        if key in out:
            s = out[key]
            print(f"{what}front {fmt(s['front'])} px, yaw +-30/+-45 {fmt(s['yaw30_45'])} px (x{fmt(s['ratio'])}); faces "
                  f"found {s['faces_found']}/{s['views']}"
                  + ("" if s["faces_found_to_45"] else "; a view up to +-45 found no face"))

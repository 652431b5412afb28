"""Drive an avatar with expressions from a video, a tracking result, a parameter file or a built-in sweep.

No network runs here: per frame, the head model gives vertices for (expression, jaw, eyes), the
avatar gives UV offsets (mean + blended delta), and the splatting renderer draws them.

Driving sources (:func:`load_drive`):
- a video (or image folder): tracked on the fly with ``dejavu.track`` (cached under the cache dir);
- a tracking directory (holding ``tracking.npz``, from ``dejavu track``);
- a parameter file, ``.json`` (``{"expression": [[...], ...], "jaw": ..., "eyes": ..., "pose6": ...,
  "fps": 25}``) or ``.npz`` (same keys as arrays): ``expression`` (T, Ne) is required; ``jaw`` (T, 3)
  and ``eyes`` (T, 6) radians default to zero; ``pose6`` (T, 6) cameras ``[yaw, pitch, roll, tx, ty, tz]``
  are needed only for ``--camera source``.

Cameras: ``fixed`` (frontal, 1 m), ``orbit`` (yaw sweeps -30..30 degrees and back), ``source`` (the
driving sequence's own cameras). Letters: T frames, Ne expression components, R output side.

Re-rendering the avatar's own person from a tracked video (``refine_pose``): the landmark tracker's head
pose is off by a degree or a few millimetres, which shows at the hair outline. With the person's own
video, each frame's rigid head pose can be fitted to its crop with the avatar frozen
(:func:`dejavu.personalize.pose.refine_poses`, as ``dejavu evaluate --refine-pose``), about 2 s a frame
at 256^2 on a 2-core CPU. It needs the video's crops (a video or tracking directory) and the source
cameras, and makes no sense for another person's video.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dejavu.errors import DejavuError

log = logging.getLogger(__name__)

CAMERAS = ("fixed", "orbit", "source")
RESOLUTION = 512
"""Default output side of ``dejavu animate`` and the demo, pixels (the paper trains and reports at 512)."""


@dataclass
class Drive:
    """A driving sequence of T frames.

    expression: (T, Ne); jaw: (T, 3); eyes: (T, 6) radians; pose6: (T, 6) cameras or None.
    fps: frames per second. frames: (T, H, W, 3) uint8 source crops for side-by-side, or None.
    """

    expression: torch.Tensor
    jaw: torch.Tensor
    eyes: torch.Tensor
    pose6: torch.Tensor | None = None
    fps: float = 25.0
    tracking: object | None = None  # the TrackResult, when the source was tracked

    def __len__(self) -> int:
        return self.expression.shape[0]


def _tensor(value, name: str, where: str, cols: int | None, T: int | None = None) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError):
        raise DejavuError(f"{where}: {name!r} is not a numeric array") from None
    if t.ndim != 2 or (cols is not None and t.shape[1] != cols) or (T is not None and t.shape[0] != T):
        want = f"({T if T is not None else 'T'}, {cols if cols is not None else 'Ne'})"
        raise DejavuError(f"{where}: {name!r} has shape {tuple(t.shape)}, expected {want}")
    return t


def drive_from_params(params: dict, where: str, fps: float = 25.0) -> Drive:
    """A :class:`Drive` from a dict of arrays (see the module docstring for the keys)."""
    if "expression" not in params:
        raise DejavuError(f"{where}: no 'expression' array (expected keys expression, jaw, eyes, pose6)")
    expr = _tensor(params["expression"], "expression", where, None)
    T = expr.shape[0]
    get = lambda k, c: _tensor(params[k], k, where, c, T) if k in params else torch.zeros(T, c)  # noqa: E731
    pose6 = _tensor(params["pose6"], "pose6", where, 6, T) if "pose6" in params else None
    fps = float(np.asarray(params.get("fps", fps))) if "fps" in params else fps
    return Drive(expression=expr, jaw=get("jaw", 3), eyes=get("eyes", 6), pose6=pose6, fps=fps)


def drive_from_tracking(result) -> Drive:
    """A :class:`Drive` from a ``dejavu.track.TrackResult``."""
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    return Drive(expression=t(result.expression), jaw=t(result.jaw), eyes=t(result.eyes), pose6=t(result.pose6),
                 fps=float(result.fps) or 25.0, tracking=result)


def load_drive(src: str | Path, head_spec: str, device: str = "cpu", progress: bool = True) -> Drive:
    """Read or track the driving source ``src`` (video, image folder, tracking dir, .json or .npz)."""
    from dejavu.io import cache_dir, is_video
    from dejavu.track.result import is_tracking_dir

    src = Path(src)
    where = f"--drive {src}"
    if not src.exists():
        raise DejavuError(f"{where}: no such file or directory")
    if is_tracking_dir(src):
        from dejavu.track import load_tracking

        return drive_from_tracking(load_tracking(src))
    suffix = src.suffix.lower()
    if suffix == ".json":
        try:
            return drive_from_params(json.loads(src.read_text()), where)
        except json.JSONDecodeError as exc:
            raise DejavuError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if suffix == ".npz":
        try:
            with np.load(src, allow_pickle=False) as data:
                return drive_from_params({k: data[k] for k in data.files}, where)
        except (OSError, ValueError) as exc:
            raise DejavuError(f"{where}: not a readable .npz file ({exc.__class__.__name__})") from None
    if is_video(src) or src.is_dir():
        from dejavu.track import track

        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in src.stem)
        out = cache_dir() / "drive" / f"{safe}-{head_spec.replace(':', '_').replace('/', '_')[-40:]}"
        return drive_from_tracking(track(src, out, head=head_spec, device=device, progress=progress))
    raise DejavuError(f"{where}: expected a video, a tracking directory, or a .json/.npz parameter file")


def expression_sweep(head, n_frames: int = 150) -> Drive:
    """A built-in tour of expressions (T = ``n_frames``): jaw open, smile, brows, blinks, pucker...

    ARKit-named heads (built-in) use named activations; other heads (FLAME, procedural) sweep their
    first expression components through +-2 (FLAME's PCA units). Each key pose eases in and out.
    """
    names = list(getattr(head, "expr_names", []) or [])
    Ne = head.n_expr
    poses: list[tuple[dict[int, float], float]] = []  # (expression entries, jaw opening radians)
    arkit = {n.lower(): i for i, n in enumerate(names)}

    def find(*cands: str) -> list[int]:
        return [arkit[c.lower()] for c in cands if c.lower() in arkit]

    if find("jawOpen", "eyeBlinkLeft", "eyeBlink_L"):
        groups = [
            (find("jawOpen"), 1.0, 0.35),
            (find("mouthSmileLeft", "mouthSmileRight", "mouthSmile_L", "mouthSmile_R"), 1.0, 0.0),
            (find("browInnerUp", "browOuterUpLeft", "browOuterUpRight", "browOuterUp_L", "browOuterUp_R"), 1.0, 0.0),
            (find("eyeBlinkLeft", "eyeBlinkRight", "eyeBlink_L", "eyeBlink_R"), 1.0, 0.0),
            (find("mouthPucker", "mouthFunnel"), 1.0, 0.0),
            (find("browDownLeft", "browDownRight", "browDown_L", "browDown_R", "mouthFrownLeft", "mouthFrownRight",
                  "mouthFrown_L", "mouthFrown_R"), 1.0, 0.0),
            (find("jawOpen", "mouthSmileLeft", "mouthSmileRight", "mouthSmile_L", "mouthSmile_R"), 0.8, 0.25),
        ]
        poses = [({i: v for i in ids}, jaw) for ids, v, jaw in groups if ids]
    else:
        for i in range(min(Ne, 5)):
            poses += [({i: 2.0}, 0.0), ({i: -2.0}, 0.0)]
        poses.append(({}, 0.3))
    T = max(int(n_frames), 2)
    expr = torch.zeros(T, Ne)
    jaw = torch.zeros(T, 3)
    seg = T / max(len(poses), 1)
    for t in range(T):
        k = min(int(t / seg), len(poses) - 1)
        amount = math.sin(math.pi * ((t - k * seg) / seg)) ** 2  # 0 -> 1 -> 0 within each segment
        entries, jaw_open = poses[k]
        for i, v in entries.items():
            expr[t, i] = v * amount
        jaw[t, 0] = jaw_open * amount
    return Drive(expression=expr, jaw=jaw, eyes=torch.zeros(T, 6), fps=25.0)


def head_center(head, identity: dict) -> tuple[float, float, float]:
    """Centre (metres, head frame) of the neutral head's bounding box: what cameras look at.

    ``identity``: head keyword arguments of the person (``Avatar.identity()``).
    """
    with torch.no_grad():
        v = head(**identity, batch_size=1)[0]
    c = (v.min(0).values + v.max(0).values) / 2
    return tuple(float(x) for x in c.cpu())


def cameras(kind: str, T: int, resolution: int, center: tuple[float, float, float], drive: Drive | None = None,
            orbit_deg: float = 30.0) -> tuple[torch.Tensor, torch.Tensor]:
    """World-to-camera (T, 4, 4) and intrinsics (T, 3, 3) at side ``resolution`` for camera mode ``kind``."""
    from dejavu.render.camera import intrinsics, orbit_pose6, pose6_to_world_to_cam

    if kind not in CAMERAS:
        raise DejavuError(f"--camera {kind!r}: expected one of {', '.join(CAMERAS)}")
    K = intrinsics(resolution, resolution, batch=T)
    if kind == "source":
        if drive is None or drive.pose6 is None:
            raise DejavuError("--camera source: the driving source has no cameras (pose6); use fixed or orbit")
        return pose6_to_world_to_cam(drive.pose6), K
    if kind == "fixed":
        yaw = torch.zeros(T)
    else:
        yaw = orbit_deg * torch.sin(torch.linspace(0, 2 * math.pi, T + 1)[:-1])
    return pose6_to_world_to_cam(orbit_pose6(yaw, center=center)), K


@torch.no_grad()
def render_sequence(avatar, head, uvmap, drive: Drive, world_to_cam: torch.Tensor, K: torch.Tensor, resolution: int,
                    device: torch.device, chunk: int = 8, backend: str = "auto", stage: str = "full",
                    progress: bool = True, corrections: torch.Tensor | None = None):
    """Yield rendered frames (R, R, 3) float32 in [0, 1], rendering ``chunk`` frames per call.

    ``corrections`` (T, 6), if given, moves each frame's head rigidly
    (:func:`dejavu.personalize.pose.apply_rigid`): the output of :func:`refine_drive_poses`.
    """
    from tqdm.auto import tqdm

    from dejavu.personalize.pose import apply_rigid

    if drive.expression.shape[1] != head.n_expr:
        raise DejavuError(f"--drive: expressions have {drive.expression.shape[1]} components but the avatar's head "
                          f"{avatar.head!r} has {head.n_expr}; track the source with the same head")
    T = len(drive)
    bar = tqdm(total=T, disable=not progress, desc="animate", unit="frame")
    try:
        for s in range(0, T, chunk):
            sl = slice(s, min(s + chunk, T))
            g = avatar.gaussians(head, uvmap, drive.expression[sl].to(device), drive.jaw[sl].to(device),
                                 drive.eyes[sl].to(device), stage=stage)
            if corrections is not None:
                g = apply_rigid(g, corrections[sl].to(device))
            rgb = g.render(world_to_cam[sl].to(device), K[sl].to(device), resolution, resolution,
                           background=(1.0, 1.0, 1.0), backend=backend).rgb
            for frame in rgb.clamp(0, 1).cpu().numpy():
                yield frame
            bar.update(sl.stop - sl.start)
    finally:
        bar.close()


def source_frames(drive: Drive, resolution: int):
    """Yield the driving crops (R, R, 3) float32 (background kept) for side-by-side videos."""
    from dejavu.personalize.frames import resize_images

    result = drive.tracking
    for i in range(len(result)):
        crop = result.load_crop(i)
        yield resize_images((crop[None] * 255 + 0.5).astype(np.uint8), resolution)[0].numpy().astype(np.float32) / 255


def refine_drive_poses(avatar, head, uvmap, drive: Drive, resolution: int, device: torch.device,
                       progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit each driving frame's rigid head pose to its crop, the avatar frozen.

    Args:
        avatar: the :class:`dejavu.avatar.Avatar`, its tensors on ``device`` (``avatar.to(device)``).
        drive: a tracked :class:`Drive` (``drive.tracking`` set); its first ``len(drive)`` frames are used.
        resolution: side R of the crops the poses are fitted to (and of the render).

    Returns:
        corrections (T, 6) for :func:`render_sequence`, and the tracked cameras they apply to:
        world_to_cam (T, 4, 4) and intrinsics K (T, 3, 3) at side R.
    """
    from dejavu.personalize.frames import frames_from_tracking
    from dejavu.personalize.pose import refine_poses
    from dejavu.personalize.train import avatar_gaussians_fn

    frames = frames_from_tracking(drive.tracking, resolution, progress=progress, n_frames=len(drive))
    corrections = refine_poses(avatar_gaussians_fn(avatar, head, uvmap, "full"), frames, device, progress=progress)
    return corrections, frames.world_to_cam, frames.K


#: Yaws (degrees) of :func:`views_image`: both profiles, the three-quarter views, the front and the back.
VIEW_YAWS = (-90.0, -45.0, 0.0, 45.0, 90.0, 180.0)


@torch.no_grad()
def views_image(avatar, head, uvmap, device: torch.device | str = "cpu", resolution: int = 256,
                yaws: tuple[float, ...] = VIEW_YAWS, stage: str = "full", backend: str = "auto") -> np.ndarray:
    """The avatar at its neutral expression seen from each of ``yaws`` (degrees, orbiting the head's centre
    at 1 m), side by side -> (R, R * len(yaws), 3) float32 in [0, 1].

    A video avatar is trained on near-frontal views; this shows at a glance what the sides and the back
    of the head (an exported ``.ply`` in a viewer) look like.
    """
    from dejavu.render.camera import intrinsics, orbit_pose6, pose6_to_world_to_cam

    n = len(yaws)
    center = head_center(head, avatar.identity(device))
    w2c = pose6_to_world_to_cam(orbit_pose6(torch.tensor(yaws, dtype=torch.float32), center=center)).to(device)
    K = intrinsics(resolution, resolution, batch=n).to(device)
    g = avatar.gaussians(head, uvmap, torch.zeros(n, head.n_expr, device=device), stage=stage)
    rgb = g.render(w2c, K, resolution, resolution, background=(1.0, 1.0, 1.0), backend=backend).rgb
    return np.concatenate(list(rgb.clamp(0, 1).cpu().numpy()), axis=1)


def animate(avatar_dir: str | Path, out: str | Path, drive: str | Path | None = None, camera: str | None = None,
            side_by_side: bool = False, resolution: int = RESOLUTION, device: str = "auto", max_frames: int | None = None,
            sweep_frames: int = 150, progress: bool = True, refine_pose: bool = False) -> dict:
    """Render ``avatar_dir`` driven by ``drive`` (or the built-in expression sweep when None) to ``out`` (.mp4).

    ``camera`` None picks ``source`` when the driving sequence has cameras, else ``orbit`` for the sweep
    and ``fixed`` for parameter files. ``refine_pose``: fit each frame's head pose to the driving video
    first (the avatar's own person only; :func:`refine_drive_poses`). Returns a small record: frames,
    seconds, fps, output path (and the mean pose correction with ``refine_pose``).
    """
    import time

    from dejavu.avatar import Avatar
    from dejavu.device import resolve_device
    from dejavu.io import write_video

    t0 = time.time()
    dev = resolve_device(device)
    avatar = Avatar.load(avatar_dir)
    head, uvmap = avatar.build(dev)
    avatar.to(dev)  # once, for every chunk rendered and the pose fit (offsets() would copy per chunk otherwise)
    if resolution % 2:
        raise DejavuError(f"--resolution {resolution}: must be even (H.264)")
    if drive is None:
        seq = expression_sweep(head, sweep_frames)
        if camera == "source":
            raise DejavuError("--camera source needs --drive; the expression sweep has no cameras")
    else:
        seq = load_drive(drive, avatar.head, str(dev), progress)
    if max_frames:
        seq = Drive(seq.expression[:max_frames], seq.jaw[:max_frames], seq.eyes[:max_frames],
                    None if seq.pose6 is None else seq.pose6[:max_frames], seq.fps, seq.tracking)
    if seq.expression.shape[1] != head.n_expr:
        raise DejavuError(f"--drive {drive}: expressions have {seq.expression.shape[1]} components but the avatar's "
                          f"head {avatar.head!r} has {head.n_expr}; track the source with the same head")
    if camera is None:
        camera = "source" if seq.pose6 is not None else "orbit" if drive is None else "fixed"
    if side_by_side and seq.tracking is None:
        raise DejavuError("--side-by-side needs a video or tracking directory as --drive")
    corrections = None
    if refine_pose:
        if seq.tracking is None:
            raise DejavuError("--refine-pose fits each frame's pose to its image: --drive must be a video or a "
                              "tracking directory")
        if camera != "source":
            raise DejavuError(f"--refine-pose corrects the driving video's cameras; it needs --camera source, "
                              f"not {camera}")
        corrections, w2c, K = refine_drive_poses(avatar, head, uvmap, seq, resolution, dev, progress)
    else:
        w2c, K = cameras(camera, len(seq), resolution, head_center(head, avatar.identity(head.v_template.device)), seq)
    t_render = time.time()
    frames = render_sequence(avatar, head, uvmap, seq, w2c, K, resolution, dev, progress=progress,
                             corrections=corrections)
    if side_by_side:
        frames = (np.concatenate([src, ren], axis=1) for src, ren in zip(source_frames(seq, resolution), frames))
    path = write_video(out, frames, fps=seq.fps)
    seconds = time.time() - t0
    record = {"output": str(path), "frames": len(seq), "seconds": round(seconds, 2),
              "render_fps": round(len(seq) / max(time.time() - t_render, 1e-9), 2)}
    if corrections is not None:
        from dejavu.personalize.pose import correction_summary

        record["refined_pose"] = correction_summary(corrections)
    log.info("animate: %d frames in %.1f s (%.1f fps rendering + encoding)", len(seq), seconds, record["render_fps"])
    return record

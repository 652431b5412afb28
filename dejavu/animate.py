"""Drive an avatar with expressions from a video, a tracking result, a parameter file or a built-in sweep.

No network runs here: per frame, the head model gives vertices for (expression, jaw, eyes), the
avatar gives UV offsets (mean + blended delta), and the splatting renderer draws them.

Driving sources: :mod:`dejavu.drive.sequence` (videos, tracking directories, parameter files).

Cameras: ``fixed`` (frontal, 1 m), ``orbit`` (yaw sweeps -30..30 degrees, or ``orbit_deg``, and back), ``source`` (the
driving sequence's own cameras). Letters: T frames, Ne expression components, R output side.

Re-rendering the avatar's own person from a tracked video (``refine_pose``): the landmark tracker's head
pose is off by a degree or a few millimetres, which shows at the hair outline. With the person's own
video, each frame's rigid head pose can be fitted to its crop with the avatar frozen
(:func:`dejavu.personalize.pose.refine_poses`, as ``dejavu evaluate --refine-pose``), about 2 s a frame
at 256^2 on a 2-core CPU. It needs the video's crops (a video or tracking directory) and the source
cameras, and makes no sense for another person's video.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dejavu.avatar import Avatar
from dejavu.device import resolve_device
from dejavu.drive.sequence import Drive
from dejavu.drive.sources import expression_sweep, load_drive
from dejavu.errors import DejavuError
from dejavu.io import write_video
from dejavu.model.avatar_model import AvatarModel
from dejavu.model.rigid import apply_rigid, correction_summary
from dejavu.personalize.frames import frames_from_tracking, resize_images
from dejavu.personalize.pose import refine_poses
from dejavu.personalize.train import batch_gaussians
from dejavu.render.camera import _FLIP, euler_to_matrix, intrinsics, orbit_pose6, pose6_to_world_to_cam

log = logging.getLogger(__name__)

CAMERAS = ("fixed", "orbit", "source")
RESOLUTION = 512
"""Default output side of ``dejavu animate`` and the demo, pixels (the paper trains and reports at 512)."""


def head_pose_cameras(head_pose: torch.Tensor, center: tuple[float, float, float],
                      distance: float = 1.0) -> torch.Tensor:
    """(T, 6) cameras showing the head turned by ``head_pose`` (T, 3) ``[yaw, pitch, roll]`` radians, seen from
    ``distance`` m straight ahead, with the head-frame point ``center`` kept at the image centre."""
    pose = torch.zeros(head_pose.shape[0], 6)
    pose[:, :3] = head_pose.float()
    R = euler_to_matrix(pose[:, 0], pose[:, 1], pose[:, 2])
    pose[:, 3:6] = -_FLIP * (R @ torch.tensor(center, dtype=torch.float32))
    pose[:, 5] += distance
    return pose


def cameras(kind: str, T: int, resolution: int, center: tuple[float, float, float], drive: Drive | None = None,
            orbit_deg: float = 30.0) -> tuple[torch.Tensor, torch.Tensor]:
    """World-to-camera (T, 4, 4) and intrinsics (T, 3, 3) at side ``resolution`` for camera mode ``kind``."""
    if kind not in CAMERAS:
        raise DejavuError(f"--camera {kind!r}: expected one of {', '.join(CAMERAS)}")
    K = intrinsics(resolution, resolution, batch=T)
    if kind == "source":
        if drive is not None and drive.pose6 is not None:
            return pose6_to_world_to_cam(drive.pose6), K
        if drive is not None and drive.head_pose is not None:
            return pose6_to_world_to_cam(head_pose_cameras(drive.head_pose, center)), K
        raise DejavuError("--camera source: the driving source has no cameras or head pose; use fixed or orbit")
    if kind == "fixed":
        yaw = torch.zeros(T)
    else:
        yaw = orbit_deg * torch.sin(torch.linspace(0, 2 * math.pi, T + 1)[:-1])
    return pose6_to_world_to_cam(orbit_pose6(yaw, center=center)), K


@torch.no_grad()
def render_sequence(model: AvatarModel, drive: Drive, world_to_cam: torch.Tensor, K: torch.Tensor, resolution: int,
                    chunk: int = 8, backend: str = "auto", stage: str = "full", progress: bool = True,
                    corrections: torch.Tensor | None = None):
    """Yield rendered frames (R, R, 3) float32 in [0, 1], rendering ``chunk`` frames per call on the model's device.

    ``corrections`` (T, 6), if given, moves each frame's head rigidly
    (:func:`dejavu.model.rigid.apply_rigid`): the output of :func:`refine_drive_poses`.
    """
    drive.check_components(model.n_expr, "--drive")
    device = model.device
    T = len(drive)
    bar = tqdm(total=T, disable=not progress, desc="animate", unit="frame")
    try:
        for s in range(0, T, chunk):
            sl = slice(s, min(s + chunk, T))
            with torch.no_grad():  # inference: no graph (in grad mode a 48k chunk at 512^2 took ~6 ms a frame more)
                g = model(**drive.params[sl].to(device).kwargs(), stage=stage)
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
    result = drive.tracking
    for i in range(len(result)):
        crop = result.load_crop(i)
        yield resize_images((crop[None] * 255 + 0.5).astype(np.uint8), resolution)[0].numpy().astype(np.float32) / 255


def refine_drive_poses(model: AvatarModel, drive: Drive, resolution: int,
                       progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit each driving frame's rigid head pose to its crop, the avatar frozen (on the model's device).

    Args:
        model: the avatar.
        drive: a tracked :class:`Drive` (``drive.tracking`` set); its first ``len(drive)`` frames are used.
        resolution: side R of the crops the poses are fitted to (and of the render).

    Returns:
        corrections (T, 6) for :func:`render_sequence`, and the tracked cameras they apply to:
        world_to_cam (T, 4, 4) and intrinsics K (T, 3, 3) at side R.
    """
    frames = frames_from_tracking(drive.tracking, resolution, progress=progress, n_frames=len(drive))
    corrections = refine_poses(batch_gaussians(model, "full"), frames, model.device, progress=progress)
    return corrections, frames.world_to_cam, frames.K


def animate(avatar_dir: str | Path, out: str | Path, drive: str | Path | None = None, camera: str | None = None,
            side_by_side: bool = False, resolution: int = RESOLUTION, device: str = "auto", max_frames: int | None = None,
            sweep_frames: int = 150, progress: bool = True, refine_pose: bool = False,
            flame: str | None = None, orbit_deg: float = 30.0) -> dict:
    """Render ``avatar_dir`` driven by ``drive`` (or the built-in expression sweep when None) to ``out`` (.mp4).

    ``camera`` None picks ``source`` when the driving sequence has cameras, else ``orbit`` for the sweep
    and ``fixed`` for parameter files. ``refine_pose``: fit each frame's head pose to the driving video
    first (the avatar's own person only; :func:`refine_drive_poses`). ``flame``: FLAME model for FLAME
    sequences driving a built-in-head avatar (:func:`load_drive`). ``orbit_deg``: the ``orbit`` camera's
    yaw amplitude, degrees. Returns a small record: frames,
    seconds, fps, output path (and the mean pose correction with ``refine_pose``).
    """
    t0 = time.time()
    dev = resolve_device(device)
    avatar = Avatar.load(avatar_dir)
    model = avatar.model(dev)
    if resolution % 2:
        raise DejavuError(f"--resolution {resolution}: must be even (H.264)")
    if drive is None:
        seq = expression_sweep(model.head, sweep_frames)
        if camera == "source":
            raise DejavuError("--camera source needs --drive; the expression sweep has no cameras")
    else:
        seq = load_drive(drive, avatar.head, str(dev), progress, flame=flame)
    if max_frames:
        seq = seq.first(max_frames)
    seq.check_components(model.n_expr, f"--drive {drive}")
    if camera is None:
        camera = "source" if seq.pose6 is not None or seq.head_pose is not None else "orbit" if drive is None else "fixed"
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
        corrections, w2c, K = refine_drive_poses(model, seq, resolution, progress)
    else:
        w2c, K = cameras(camera, len(seq), resolution, model.center(), seq, orbit_deg=orbit_deg)
    t_render = time.time()
    frames = render_sequence(model, seq, w2c, K, resolution, progress=progress, corrections=corrections)
    if side_by_side:
        frames = (np.concatenate([src, ren], axis=1) for src, ren in zip(source_frames(seq, resolution), frames))
    path = write_video(out, frames, fps=seq.fps)
    seconds = time.time() - t0
    record = {"output": str(path), "frames": len(seq), "seconds": round(seconds, 2),
              "render_fps": round(len(seq) / max(time.time() - t_render, 1e-9), 2)}
    if corrections is not None:
        record["refined_pose"] = correction_summary(corrections)
    log.info("animate: %d frames in %.1f s (%.1f fps rendering + encoding)", len(seq), seconds, record["render_fps"])
    return record

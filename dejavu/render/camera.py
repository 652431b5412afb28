"""Camera conventions, written once.

- Extrinsics are **world-to-camera** 4x4 matrices in the **OpenCV** camera frame: +x right, +y down,
  +z forward (into the scene). Points with z <= near are not drawn.
- Intrinsics ``K`` are 3x3 pinhole matrices in pixels; pixel (row i, column j) has its centre at
  image coordinates (j + 0.5, i + 0.5) (gsplat's convention), so the principal point of a centred
  camera is (W / 2, H / 2).
- The paper's 6-DoF camera ``[yaw, pitch, roll, tx, ty, tz]`` (radians, metres) means: rotate the
  head (world) by R = Rz(roll) @ Rx(pitch) @ Ry(yaw) in the head frame (+Y up, +Z out of the face),
  flip to OpenCV (diag(1, -1, -1)), then translate by t in camera coordinates. The default camera
  ``[0, 0, 0, 0, 0, 1]`` looks at the face from 1 m straight ahead. Positive yaw turns the face to
  the subject's left (towards +X).
- Default field of view 20 degrees (fx = 1451.8 px at 512 px).

Letters: B batch (one camera per batch element), H/W pixels.
"""

from __future__ import annotations

import math

import torch

DEFAULT_FOV_DEG = 20.0
DEFAULT_DISTANCE_M = 1.0

# OpenGL-style head frame (+Y up, +Z towards viewer) -> OpenCV camera frame.
_FLIP = torch.tensor([1.0, -1.0, -1.0])


def focal_from_fov(fov_deg: float, size_px: int) -> float:
    """Focal length in pixels for a horizontal field of view over ``size_px`` pixels."""
    return 0.5 * size_px / math.tan(math.radians(fov_deg) / 2.0)


def intrinsics(width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG, batch: int = 1,
               dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """Centred pinhole intrinsics (B, 3, 3) with square pixels; ``fov_deg`` spans the width."""
    f = focal_from_fov(fov_deg, width)
    K = torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=dtype, device=device)
    return K.expand(batch, 3, 3).clone()


def euler_to_matrix(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """R = Rz(roll) @ Rx(pitch) @ Ry(yaw); inputs (B,) radians -> (B, 3, 3)."""
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cr, sr = torch.cos(roll), torch.sin(roll)
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    Ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    Rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(-1, 3, 3)
    Rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return Rz @ Rx @ Ry


def pose6_to_world_to_cam(pose6: torch.Tensor) -> torch.Tensor:
    """The paper's 6-DoF camera (B, 6) ``[yaw, pitch, roll, tx, ty, tz]`` -> world-to-camera (B, 4, 4).

    Differentiable in all six values.
    """
    R = euler_to_matrix(pose6[:, 0], pose6[:, 1], pose6[:, 2])
    R = _FLIP.to(R)[:, None] * R  # flip rows: head frame -> OpenCV
    top = torch.cat([R, pose6[:, 3:6, None]], dim=-1)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=pose6.dtype, device=pose6.device).expand(pose6.shape[0], 1, 4)
    return torch.cat([top, bottom], dim=-2)


def default_pose6(batch: int = 1, distance: float = DEFAULT_DISTANCE_M, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, 6) frontal camera ``distance`` metres from the head origin."""
    pose = torch.zeros(batch, 6, dtype=dtype, device=device)
    pose[:, 5] = distance
    return pose


def orbit_pose6(yaw_deg: torch.Tensor | list[float], pitch_deg: float | torch.Tensor = 0.0,
                distance: float = DEFAULT_DISTANCE_M, center: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> torch.Tensor:
    """(B, 6) cameras orbiting the head at the given yaws (B,) and pitches (scalar or (B,)), degrees.

    ``center`` is the head-frame point kept at the image centre (metres).
    """
    yaw = torch.as_tensor(yaw_deg, dtype=torch.float32).reshape(-1)
    B = yaw.shape[0]
    pose = torch.zeros(B, 6)
    pose[:, 0] = torch.deg2rad(yaw)
    pose[:, 1] = torch.deg2rad(torch.as_tensor(pitch_deg, dtype=torch.float32))
    R = euler_to_matrix(pose[:, 0], pose[:, 1], pose[:, 2])
    c = torch.tensor(center, dtype=torch.float32)
    rc = _FLIP * (R @ c)  # the centre after rotation, in camera axes
    pose[:, 3:6] = -rc
    pose[:, 5] += distance
    return pose


def world_to_cam_yaw(world_to_cam: torch.Tensor) -> torch.Tensor:
    """The yaw (B,) radians of world-to-camera matrices (B, 4, 4) made as :func:`pose6_to_world_to_cam` makes them.

    With R = Rz(roll) @ Rx(pitch) @ Ry(yaw), R's last row is (-cos(pitch) sin(yaw), sin(pitch),
    cos(pitch) cos(yaw)); the flip to OpenCV negates it. Exact for any pitch below 90 degrees.
    """
    row = world_to_cam[:, 2, :3]
    return torch.atan2(row[:, 0], -row[:, 2])


def camera_centres(world_to_cam: torch.Tensor) -> torch.Tensor:
    """(B, 3) camera centres in world coordinates (metres) of world-to-camera matrices (B, 4, 4): -R^T t."""
    return -(world_to_cam[:, :3, :3].transpose(1, 2) @ world_to_cam[:, :3, 3:])[..., 0]


def orbit_about(world_to_cam: torch.Tensor, centre: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
    """Cameras (B, 4, 4) moved round ``centre`` (B, 3), world metres, by ``yaw`` (B,) radians about their own
    vertical axis (image y) through it: the view a camera would have of the same head from the side. The
    centre keeps its place in the image and its distance.
    """
    c = to_camera(centre[:, None], world_to_cam)[:, 0]  # (B, 3) the centre in camera coordinates
    cos, sin = torch.cos(yaw), torch.sin(yaw)
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)
    Ry = torch.stack([cos, zero, sin, zero, one, zero, -sin, zero, cos], -1).reshape(-1, 3, 3)
    move = torch.eye(4, dtype=world_to_cam.dtype, device=world_to_cam.device).repeat(yaw.shape[0], 1, 1)
    move[:, :3, :3] = Ry
    move[:, :3, 3] = c - (Ry @ c[..., None])[..., 0]
    return move @ world_to_cam


def to_camera(points: torch.Tensor, world_to_cam: torch.Tensor) -> torch.Tensor:
    """(B, P, 3) world points -> (B, P, 3) OpenCV camera coordinates (z = depth in front of the camera)."""
    return torch.einsum("bij,bpj->bpi", world_to_cam[:, :3, :3], points) + world_to_cam[:, None, :3, 3]


def camera_to_pixels(cam: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(B, P, 3) camera-frame points -> (B, P, 2) pixel coordinates (x right, y down)."""
    uv = torch.einsum("bij,bpj->bpi", K, cam)
    return uv[..., :2] / uv[..., 2:3].clamp_min(1e-8)


def project_points(points: torch.Tensor, world_to_cam: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pinhole projection of (B, P, 3) world points -> (B, P, 2) pixel coordinates (x right, y down)."""
    return camera_to_pixels(to_camera(points, world_to_cam), K)

"""The avatar seen from around its head: orbit cameras about the head's centre and the six-view picture."""

from __future__ import annotations

import numpy as np
import torch

from dejavu.model.avatar_model import AvatarModel
from dejavu.render.camera import intrinsics, orbit_pose6, pose6_to_world_to_cam

#: Yaws (degrees) of :func:`views_image`: both profiles, the three-quarter views, the front and the back.
VIEW_YAWS = (-90.0, -45.0, 0.0, 45.0, 90.0, 180.0)


def orbit_cameras(model: AvatarModel, yaw_deg: torch.Tensor, resolution: int,
                  pitch_deg: float | torch.Tensor = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras 1 m from the head's centre at yaws (T,) and pitches (scalar or (T,)), degrees, on the model's
    device -> world_to_cam (T, 4, 4), intrinsics K (T, 3, 3) at side ``resolution``."""
    pitch = pitch_deg.float().cpu() if isinstance(pitch_deg, torch.Tensor) else pitch_deg
    w2c = pose6_to_world_to_cam(orbit_pose6(yaw_deg.float().cpu(), pitch, center=model.center()))
    return w2c.to(model.device), intrinsics(resolution, resolution, batch=len(yaw_deg)).to(model.device)


@torch.no_grad()
def views_image(model: AvatarModel, resolution: int = 256, yaws: tuple[float, ...] = VIEW_YAWS, stage: str = "full",
                backend: str = "auto") -> np.ndarray:
    """The avatar at its neutral expression seen from each of ``yaws`` (degrees, orbiting the head's centre
    at 1 m), side by side -> (R, R * len(yaws), 3) float32 in [0, 1].

    A video avatar is trained on near-frontal views; this shows at a glance what the sides and the back
    of the head (an exported ``.ply`` in a viewer) look like.
    """
    w2c, K = orbit_cameras(model, torch.tensor(yaws, dtype=torch.float32), resolution)
    rgb = model.neutral(len(yaws), stage).render(w2c, K, resolution, resolution, background=(1.0, 1.0, 1.0),
                                                 backend=backend).rgb
    return np.concatenate(list(rgb.clamp(0, 1).cpu().numpy()), axis=1)

"""Camera helpers: turning a camera about a point."""

from __future__ import annotations

import math

import torch

from dejavu.render.camera import camera_centres, orbit_pose6, pose6_to_world_to_cam, to_camera
from dejavu.render.camera import orbit_about


def test_orbit_about_turns_the_camera_round_the_centre():
    w2c = pose6_to_world_to_cam(orbit_pose6([10.0, -20.0], 5.0, center=(0.01, 0.02, 0.03)))
    centre = torch.tensor([[0.01, 0.02, 0.03], [0.0, 0.05, -0.02]])
    # no turn: the same cameras
    torch.testing.assert_close(orbit_about(w2c, centre, torch.zeros(2)), w2c)
    yaw = torch.tensor([0.7, -1.2])
    out = orbit_about(w2c, centre, yaw)
    # still rigid, the centre where it was in the image and as far from the camera
    R = out[:, :3, :3]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(to_camera(centre[:, None], out), to_camera(centre[:, None], w2c), atol=1e-6, rtol=0)
    d0 = (camera_centres(w2c) - centre).norm(dim=-1)
    torch.testing.assert_close((camera_centres(out) - centre).norm(dim=-1), d0, atol=1e-6, rtol=0)
    # the camera moved by the yaw's angle about the centre, along the camera's own horizontal plane
    up = w2c[:, 1, :3]  # the camera's y axis in world coordinates: the axis of the turn
    a, b = camera_centres(w2c) - centre, camera_centres(out) - centre
    torch.testing.assert_close((b * up).sum(-1), (a * up).sum(-1), atol=1e-6, rtol=0)
    a, b = a - (a * up).sum(-1, keepdim=True) * up, b - (b * up).sum(-1, keepdim=True) * up  # across the axis
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    torch.testing.assert_close(torch.acos(cos.clamp(-1, 1)), yaw.abs(), atol=1e-3, rtol=0)
    torch.testing.assert_close(out[:, 1, :3], up, atol=1e-6, rtol=0)


def test_orbit_about_a_quarter_turn_looks_from_the_side():
    w2c = pose6_to_world_to_cam(orbit_pose6([0.0]))
    centre = torch.zeros(1, 3)
    out = orbit_about(w2c, centre, torch.tensor([math.pi / 2]))
    # the old viewing direction now lies across the image
    old_dir, new_dir = w2c[0, 2, :3], out[0, 2, :3]
    assert abs(float(old_dir @ new_dir)) < 1e-6

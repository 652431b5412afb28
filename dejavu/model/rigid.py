"""Rigid head-pose corrections of an avatar's Gaussians: the maths the avatar model applies.

A correction is a 6-vector per frame: axis-angle rotation (radians, about the frame's Gaussian
centroid) and translation in units of :data:`TRANS_UNIT_M`. A personalized avatar may carry a *pose
model* (6, K + 4), a linear map from the expression's blend inputs and jaw to a correction
(:func:`predict_corrections`), learnt with personalization (``dejavu.personalize.pose`` fits it; see
there for why). Letters: B frames, N Gaussians, K blendmaps.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from dejavu.gaussians.uvmap import Gaussians
from dejavu.head.base import batch_rodrigues
from dejavu.model.blend import BlendScheme

#: Metres per translation unit of a correction (0.1 m: a 1-unit step moves the head as far as a
#: 1-radian turn moves a point 10 cm from its centre).
TRANS_UNIT_M = 0.1


def axis_angle_to_quat(rot_vecs: torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) radians -> unit quaternions (..., 4) wxyz. Smooth at zero."""
    angle = torch.linalg.norm(rot_vecs + 1e-8, dim=-1, keepdim=True)
    half = 0.5 * angle
    return torch.cat([torch.cos(half), torch.sin(half) * rot_vecs / angle], dim=-1)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of (..., 4) wxyz quaternions (rotation b, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], dim=-1)


def centred(corrections: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` (B,) of ``corrections`` (T, 6) minus their mean over all T frames -> (B, 6)."""
    return corrections[idx] - corrections.mean(0, keepdim=True)


def apply_rigid(g: Gaussians, corrections: torch.Tensor) -> Gaussians:
    """Move each frame's Gaussians rigidly by its correction.

    Args:
        g: B frames of N Gaussians (world frame). corrections: (B, 6) [axis-angle rad, translation in
            ``TRANS_UNIT_M``].

    Returns:
        :class:`Gaussians` with means ``R (x - c) + c + t`` (c: the frame's centroid, held constant) and
        quaternions ``q_R * q``; scales, opacities and colours unchanged.
    """
    means = apply_rigid_points(g.means, corrections, g.means.detach().mean(1, keepdim=True))
    quats = quat_multiply(axis_angle_to_quat(corrections[:, :3])[:, None].expand_as(g.quats), g.quats)
    return replace(g, means=means, quats=quats)


def apply_rigid_points(points: torch.Tensor, corrections: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Points (B, P, 3) metres moved by corrections (B, 6) about ``centre`` (B, 1, 3) metres: ``R (x - c) + c + t``.

    :func:`apply_rigid` moves Gaussians about their centroid; pass that centroid to move anything
    attached to the same head (mesh vertices, landmarks) with them.
    """
    R = batch_rodrigues(corrections[:, :3])  # (B, 3, 3)
    return (points - centre) @ R.transpose(1, 2) + centre + corrections[:, None, 3:] * TRANS_UNIT_M


def correction_summary(corrections: torch.Tensor) -> dict:
    """Mean rotation (degrees) and translation (mm) of corrections (T, 6), for records and logs."""
    return {"mean_rotation_deg": round(float(corrections[:, :3].norm(dim=1).mean().rad2deg()), 3),
            "mean_translation_mm": round(float(corrections[:, 3:].norm(dim=1).mean()) * TRANS_UNIT_M * 1e3, 3)}


def pose_features(blend: BlendScheme, expression: torch.Tensor, jaw: torch.Tensor | None) -> torch.Tensor:
    """What the pose model reads: [clamped blend inputs z (K), jaw axis-angle (3, radians), 1] -> (B, K + 4)."""
    z = blend.clamped_inputs(expression)
    jaw = z.new_zeros(z.shape[0], 3) if jaw is None else jaw.to(z)
    return torch.cat([z, jaw, z.new_ones(z.shape[0], 1)], dim=1)


def predict_corrections(pose_model: torch.Tensor, blend: BlendScheme, expression: torch.Tensor,
                        jaw: torch.Tensor | None) -> torch.Tensor:
    """The pose model's correction (B, 6) for expressions (B, Ne) and jaws (B, 3)."""
    return pose_features(blend, expression, jaw) @ pose_model.to(expression).T

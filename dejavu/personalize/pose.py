"""Rigid head-pose refinement: small learnt corrections to the tracked head pose.

The tracker fits landmarks only, so each frame's head pose carries a little error (one or two degrees,
a few millimetres). The silhouette, hair above all, is sensitive to it.

Three uses, all optional:

- **In training** (``PersonalizeConfig.lr_pose`` > 0, ``dejavu personalize --refine-pose``): every
  training frame gets a learnt correction, as GaussianAvatars optimises its tracked poses. A correction
  is a 6-vector: axis-angle rotation (radians, about the frame's Gaussian centroid) and translation in
  units of ``TRANS_UNIT_M`` (so one learning rate moves both by similar amounts on the head's surface).
  Corrections are centred over the training frames, so they cannot move the head as a whole. Frames
  the avatar was not trained on have no learnt correction, yet the learnt ones are not random: a linear
  function of the expression (blend inputs and jaw) explains 57-71% of their variance (a strong
  expression pulls the landmark fit's pose). :func:`fit_pose_model` fits it after training; the avatar
  stores it (``pose_model``) and applies it to every frame it renders
  (:meth:`dejavu.avatar.Avatar.gaussians`); without it such an avatar rendered liveportrait_d3's
  held-out frames 2 dB worse. Off by default: with tracked poses it did not beat training without it
  (docs/PERSONALIZATION.md, "Head-pose refinement").
- **At evaluation** (:func:`refine_poses`, ``dejavu evaluate --refine-pose``): each held-out frame's
  correction is fitted to its image with the avatar frozen (the "test-time pose refinement" of
  body-avatar evaluations such as Anim-NeRF and InstantAvatar), weighted to the face. Reported beside
  the tracked-pose scores, never instead of them: it shows how much of the remaining error is the
  tracker's.
- **Re-rendering the person's own video** (``dejavu animate --refine-pose``,
  :func:`dejavu.animate.refine_drive_poses`): the same fit on every driving frame before rendering.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from dejavu.gaussians.uvmap import Gaussians
from dejavu.head.base import batch_rodrigues
from dejavu.personalize.blendmaps import BlendScheme

log = logging.getLogger(__name__)

#: Metres per translation unit of a correction (0.1 m: a 1-unit step moves the head as far as a
#: 1-radian turn moves a point 10 cm from its centre).
TRANS_UNIT_M = 0.1

#: ``lr_pose`` of ``dejavu personalize --refine-pose`` (3e-3 moved the poses further and scored worse).
REFINE_POSE_LR = 1e-3


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


def fit_pose_model(corrections: torch.Tensor, features: torch.Tensor, ridge: float = 1e-2) -> torch.Tensor:
    """Ridge least squares ``corrections (T, 6) ~ features (T, F) @ W.T`` -> W (6, F).

    The ridge keeps W finite when a feature is constant over the video (a jaw that never moves).
    """
    x, y = features.double(), corrections.double()
    a = x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype)
    return torch.linalg.solve(a, x.T @ y).T.float()


def fit_training_poses(pose: torch.Tensor, blend: BlendScheme, expression: torch.Tensor,
                       jaw: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
    """The avatar's pose model (6, K + 4) from the learnt corrections ``pose`` (T, 6) of the training frames
    (expressions (T, Ne), jaws (T, 3)), and a record: :func:`correction_summary` of the centred
    corrections and the share of their variance the model explains."""
    corr = centred(pose.float(), torch.arange(len(pose)))
    feats = pose_features(blend, expression.float(), None if jaw is None else jaw.float())
    model = fit_pose_model(corr, feats)
    resid = corr - feats @ model.T
    explained = 1.0 - float(resid.var(0).sum() / corr.var(0).sum().clamp_min(1e-12))
    record = {**correction_summary(corr), "explained_by_expression": round(explained, 3)}
    log.info("personalize: pose corrections %.2f deg / %.1f mm on average, %.0f%% explained by the expression",
             record["mean_rotation_deg"], record["mean_translation_mm"], 100 * explained)
    return model, record


def predict_corrections(pose_model: torch.Tensor, blend: BlendScheme, expression: torch.Tensor,
                        jaw: torch.Tensor | None) -> torch.Tensor:
    """The pose model's correction (B, 6) for expressions (B, Ne) and jaws (B, 3)."""
    return pose_features(blend, expression, jaw) @ pose_model.to(expression).T


def refine_poses(gaussians_fn, frames, device: torch.device, steps: int = 100, lr: float = 3e-3, chunk: int = 8,
                 face_weight: float = 10.0, backend: str = "auto", progress: bool = False) -> torch.Tensor:
    """Fit each frame's rigid correction to its image, the avatar frozen -> (T, 6) corrections.

    Args:
        gaussians_fn: ``batch -> Gaussians`` (B frames) of the avatar, from a :class:`FrameSet` batch.
        frames: the :class:`dejavu.personalize.frames.FrameSet` whose images the poses are fitted to.
        steps, lr: Adam steps and learning rate (radians / ``TRANS_UNIT_M`` per step) per chunk of frames.
        face_weight: weight of the L1 error inside the frames' face masks, beside the whole image's.

    The loss is the L1 image error (white background, as the targets) plus ``face_weight`` x the mean L1
    error over the face mask. Why the face term: fitted to the whole image alone the pose follows the
    hair outline, which is where most of the error is but which the head pose does not drive (hair
    swings), and pulls the face out of register (liveportrait_d3, held-out frames: whole image
    22.62 -> 25.41 dB but face 26.91 -> 25.96; with the face term 23.96 and 27.19). Frames are
    independent, so they are fitted ``chunk`` at a time.
    """
    from tqdm.auto import tqdm

    from dejavu.losses import fill_unseen

    R = frames.resolution
    out = []
    chunks = list(range(0, len(frames), chunk))
    for s in tqdm(chunks, desc="refine poses", unit="chunk", disable=not progress):
        idx = torch.arange(s, min(s + chunk, len(frames)))
        b = frames.batch(idx, device)
        with torch.no_grad():
            g0 = gaussians_fn(b)
        corr = torch.zeros(len(idx), 6, device=device, requires_grad=True)
        opt = torch.optim.Adam([corr], lr=lr)
        for _ in range(steps):
            pred = apply_rigid(g0, corr).render(b["world_to_cam"], b["K"], R, R, background=(1.0, 1.0, 1.0),
                                                backend=backend).rgb.permute(0, 3, 1, 2)
            err = (fill_unseen(pred, b["images"], b["seen"]) - b["images"]).abs()
            loss = err.mean()
            if face_weight and b["face_masks"] is not None:
                face = b["face_masks"]
                loss = loss + face_weight * (err * face).sum() / (3 * face.sum()).clamp_min(1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        out.append(corr.detach().cpu())
    return torch.cat(out) if out else torch.zeros(0, 6)

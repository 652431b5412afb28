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

import torch

from dejavu.losses import fill_unseen
from dejavu.model.blend import BlendScheme
from dejavu.model.rigid import apply_rigid, centred, correction_summary, pose_features
from dejavu.personalize.frames import FrameSet

log = logging.getLogger(__name__)

#: ``lr_pose`` of ``dejavu personalize --refine-pose`` (3e-3 moved the poses further and scored worse).
REFINE_POSE_LR = 1e-3


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


def refine_poses(gaussians_fn, frames: FrameSet, device: torch.device, steps: int = 100, lr: float = 3e-3, chunk: int = 8,
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

"""Self-reenactment evaluation of a personalized avatar (paper Table 4).

The avatar is driven by the tracked parameters and cameras of the video's held-out frames (the last
``1 - train_fraction`` of them, never seen in training, or with ``holdout="yaw"`` the most turned ones:
:func:`dejavu.personalize.frames.holdout_split`) and compared with the real frames at the
avatar's training resolution: L1, PSNR, SSIM, LPIPS-alex and LPIPS-vgg over the face region (the
fitted mesh's face region) and the whole head (the tracker's head mask; both images are white
outside it). Each stage is scored: ``full`` (blendmaps) and ``global`` (stage 1 only), which shows
the stage-2 ablation. With ``refine_pose`` the full avatar is also scored after fitting each held-out
frame's rigid head pose (6 numbers) to its image with the avatar frozen (``full_refined_pose``;
:func:`dejavu.personalize.pose.refine_poses`): the tracker's pose error taken out, expressions still the
tracker's. It is reported beside the tracked-pose scores, never instead of them.

Averages hide where an avatar fails, so the JSON also holds every frame's whole-image and face PSNR
(``per_frame``), and ``frames_dir`` gets ``overview.png``: evenly spaced held-out frames, target | each
stage | the full avatar's error, each prediction labelled with its PSNR.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from dejavu.avatar import Avatar
from dejavu.device import resolve_device
from dejavu.errors import DejavuError
from dejavu.head.base import HeadModel
from dejavu.io import write_image, write_json
from dejavu.losses import fill_unseen
from dejavu.metrics.image import evaluate_predictions, psnr
from dejavu.model.rigid import correction_summary
from dejavu.personalize.config import PersonalizeConfig
from dejavu.personalize.frames import FrameSet, frames_from_tracking, holdout_split
from dejavu.personalize.pose import refine_poses
from dejavu.personalize.train import batch_gaussians, render_avatar
from dejavu.render.camera import DEFAULT_FOV_DEG
from dejavu.track import is_tracking_dir, load_tracking, track
from dejavu.track.fit import FitConfig

log = logging.getLogger(__name__)


def evaluate_video(avatar_dir: str | Path, video: str | Path, json_path: str | Path | None = None,
                   frames_dir: str | Path | None = None, device: str = "auto", stages: tuple[str, ...] = ("full", "global"),
                   chunk: int = 8, progress: bool = True, refine_pose: bool = False,
                   refine_steps: int = 100, holdout: str | None = None, resolution: int | None = None) -> dict:
    """Score ``avatar_dir`` on the held-out frames of ``video``; write ``json_path`` (and images in ``frames_dir``).

    ``holdout``: the held-out protocol (:func:`dejavu.personalize.frames.holdout_split`); None: the one the
    avatar was trained with. Scored frames that the avatar trained on (another protocol than its own)
    are counted in ``"trained_on"`` and logged. ``resolution``: render and target side (None: the avatar's).

    Returns ``{"stages": {stage: {region: {metric: value}}}, "frames": n, "training": {...}}`` (and
    ``"refined_pose"``: the mean correction, with ``refine_pose``).
    """
    dev = resolve_device(device)
    avatar = Avatar.load(avatar_dir)
    model = avatar.model(dev)
    head = model.head
    cfg = avatar.settings.get("config", {})
    if resolution is not None and not 32 <= resolution <= 2048:
        raise DejavuError(f"--resolution {resolution}: expected a side between 32 and 2048 pixels")
    resolution = resolution or int(avatar.settings.get("resolution", cfg.get("resolution", 256)))
    holdout = holdout or str(cfg.get("holdout", "last"))
    held, trained_on = _held_out(video, Path(avatar_dir), avatar, head, str(dev), progress, resolution, holdout)
    target = held.pixels("images")
    masks = {"face": held.pixels("face_masks"), "head": held.pixels("masks"),
             # whole frame, both images white outside the head: the protocol of the papers we compare with
             "image": None}
    out: dict = {"video": str(video), "avatar": str(avatar_dir), "frames": len(held), "holdout": holdout,
                 "trained_on": trained_on,
                 "frame_index": [int(i) for i in held.index], "resolution": resolution,
                 "training": {k: avatar.training.get(k) for k in ("seconds", "steps", "device", "seconds_training",
                                                                  "seconds_tracking")},
                 "stages": {}}
    seen = held.pixels("seen")
    preds, silhouettes = {}, {}
    for stage in stages:
        if stage == "full" and avatar.blendmaps is None or stage == "global" and avatar.global_delta is None:
            continue
        preds[stage], alpha = render_avatar(model, held, stage, chunk=chunk, with_alpha=True)
        silhouettes[stage] = round(silhouette_iou(alpha, masks["head"], seen), 5)
    if refine_pose and "full" in preds:
        corr = refine_poses(batch_gaussians(model, "full"), held, dev, steps=refine_steps, chunk=chunk,
                            progress=progress)
        preds["full_refined_pose"] = render_avatar(model, held, "full", chunk=chunk, corrections=corr)
        out["refined_pose"] = {"steps": refine_steps, **correction_summary(corr)}
    # the crop's pixels outside the source frame are repeated border pixels: no error there
    preds = {stage: fill_unseen(pred, target, seen) for stage, pred in preds.items()}
    # all stages against one set of targets: the targets' LPIPS features are computed once
    out["stages"] = _chunked_metrics(preds, target, masks, chunk)
    out["per_frame"] = per_frame_psnr(preds, target, masks["face"])
    out["silhouette_iou"] = silhouettes
    if frames_dir is not None:
        _write_frames(Path(frames_dir), held.index.tolist(), preds, target, masks, out["per_frame"])
    if json_path is not None:
        write_json(json_path, out)
    return out


def _held_out(video: str | Path, avatar_dir: Path, avatar: Avatar, head: HeadModel, device: str, progress: bool,
              resolution: int, holdout: str) -> tuple[FrameSet, int]:
    """The frames of ``video`` (tracked or its tracking read) that protocol ``holdout`` holds out, at
    ``resolution``, with the avatar's identity; and how many of them trained the avatar (another protocol
    than its own), which is logged."""
    cfg = avatar.settings.get("config", {})
    train_fraction = float(cfg.get("train_fraction", 0.9))
    trained_with = (str(cfg.get("holdout", "last")), int(cfg.get("holdout_margin", 0)))
    result = _tracking(video, avatar_dir, avatar.head, cfg, device, progress)
    if result.expression.shape[1] != head.n_expr:
        raise DejavuError(f"--video {video}: tracked with a head of {result.expression.shape[1]} expressions; "
                          f"the avatar's head {avatar.head!r} has {head.n_expr}")
    frames = frames_from_tracking(result, resolution)
    frames.shape, frames.vertex_offsets = avatar.shape.clone(), avatar.vertex_offsets
    margin = trained_with[1] if holdout == trained_with[0] else PersonalizeConfig.holdout_margin
    _, held = frames.split(train_fraction, holdout, margin)
    if len(held) == 0:
        raise DejavuError(f"--video {video}: too few frames ({len(frames)}) to hold any out for evaluation")
    trained, _ = holdout_split(frames.world_to_cam, train_fraction, *trained_with)
    trained_on = int(torch.isin(held.index, frames.index[trained]).sum())
    if trained_on:
        log.warning("evaluate: %d of the %d held-out frames (--holdout %s) trained the avatar (it was trained with "
                    "--holdout %s): those scores are not held-out", trained_on, len(held), holdout, trained_with[0])
    return held, trained_on


def _write_frames(d: Path, index: list[int], preds: dict, target: torch.Tensor, masks: dict, per_frame: dict) -> None:
    """overview.png and, per held-out frame (``index``), each stage's prediction, the target and both masks as
    PNGs in ``d``. preds: stage -> (T, 3, R, R); target (T, 3, R, R); masks "face"/"head": (T, 1, R, R)."""
    if preds:  # an avatar with neither stage (network offsets only) has nothing to show
        write_image(d / "overview.png", overview(preds, target, per_frame))
    for i, fi in enumerate(index):
        for stage, pred in preds.items():
            write_image(d / stage / f"pred_{fi:06d}.png", pred[i].permute(1, 2, 0).numpy())
        write_image(d / "target" / f"{fi:06d}.png", target[i].permute(1, 2, 0).numpy())
        write_image(d / "mask_face" / f"{fi:06d}.png", masks["face"][i].permute(1, 2, 0).numpy())
        write_image(d / "mask_head" / f"{fi:06d}.png", masks["head"][i].permute(1, 2, 0).numpy())


def silhouette_iou(alpha: torch.Tensor, mask: torch.Tensor, seen: torch.Tensor | None = None) -> float:
    """Mean over T frames of the intersection over union of the avatar's silhouette (opacity ``alpha``
    (T, 1, R, R) above 0.5) and the tracked head mask (T, 1, R, R), over the ``seen`` pixels (or all).

    The image metrics are dominated by the face; this one sees the outline: hair that sticks out or is
    missing, a flat or hollow side of the head, a neck or rim that the person does not have.
    """
    a, m = alpha > 0.5, mask > 0.5
    valid = torch.ones_like(a) if seen is None else seen > 0.5
    inter = (a & m & valid).flatten(1).sum(1).float()
    union = ((a | m) & valid).flatten(1).sum(1).float()
    return float((inter / union.clamp_min(1)).mean()) if len(a) else float("nan")


def per_frame_psnr(preds: dict, target: torch.Tensor, face: torch.Tensor) -> dict:
    """Every frame's PSNR (dB) per stage: ``{stage: {"image": [T], "face": [T]}}``; their means are the
    stages' ``image`` and ``face`` PSNR. preds: stage -> (T, 3, R, R); target (T, 3, R, R); face (T, 1, R, R)."""
    return {stage: {"image": [round(float(v), 3) for v in psnr(p, target)],
                    "face": [round(float(v), 3) for v in psnr(p, target, face)]} for stage, p in preds.items()}


def overview(preds: dict, target: torch.Tensor, per_frame: dict, rows: int = 6) -> np.ndarray:
    """One picture of the evaluation: ``rows`` evenly spaced frames, each a row of target | every stage
    (labelled with its whole-image PSNR) | the full avatar's absolute error (x4, heat map) -> (H, W, 3) uint8."""
    import cv2

    T = target.shape[0]
    picks = np.unique(np.linspace(0, T - 1, min(rows, T)).round().astype(int))
    to_u8 = lambda x: (x.permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)  # noqa: E731
    first = "full" if "full" in preds else next(iter(preds))
    out = []
    for i in picks:
        cells = [label_image(to_u8(target[i]), "target")]
        for stage, pred in preds.items():
            cells.append(label_image(to_u8(pred[i]), f"{stage} {per_frame[stage]['image'][i]:.1f} dB"))
        err = (preds[first][i] - target[i]).abs().mean(0).mul(4).clamp(0, 1).numpy()
        heat = cv2.applyColorMap((err * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
        cells.append(label_image(np.ascontiguousarray(heat), f"|{first} - target| x4"))
        out.append(np.concatenate(cells, axis=1))
    return np.concatenate(out, axis=0)


def label_image(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with ``text`` in its top-left corner (dark on a light box)."""
    import cv2

    image = image.copy()
    scale = max(0.3, image.shape[0] / 700)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image, (0, 0), (w + 4, h + base + 4), (255, 255, 255), -1)
    cv2.putText(image, text, (2, h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def _chunked_metrics(preds: dict, target: torch.Tensor, masks: dict, chunk: int) -> dict:
    """evaluate_predictions over chunks of frames (LPIPS-VGG memory), averaged weighted by chunk size
    -> {stage: {region: {metric: value}}}."""
    total: dict = {}
    n = target.shape[0]
    for s in range(0, n, chunk):
        sl = slice(s, s + chunk)
        part = evaluate_predictions({k: p[sl] for k, p in preds.items()}, target[sl],
                                    {k: None if v is None else v[sl] for k, v in masks.items()})
        w = (min(s + chunk, n) - s) / n
        for stage, regions in part.items():
            for region, vals in regions.items():
                for name, v in vals.items():
                    cell = total.setdefault(stage, {}).setdefault(region, {})
                    cell[name] = cell.get(name, 0.0) + w * v
    # PSNR averaged per chunk is a mean of per-chunk PSNRs (each a mean of per-image PSNRs): same as per image.
    return {st: {r: {k: round(v, 5) for k, v in vals.items()} for r, vals in regions.items()}
            for st, regions in total.items()}


def _tracking(video: str | Path, avatar_dir: Path, head_spec: str, cfg: dict, device: str, progress: bool):
    """The tracking result of ``video``: a tracking dir as is, else tracked (cached next to the avatar)."""
    video = Path(video)
    if is_tracking_dir(video):
        return load_tracking(video)
    return track(video, avatar_dir / "tracking", head=head_spec, fps=cfg.get("fps"), max_frames=cfg.get("max_frames"),
                 crop_size=int(cfg.get("crop_size", 512)), device=device, progress=progress,
                 config=FitConfig(fov_deg=cfg.get("fov_deg", DEFAULT_FOV_DEG)))

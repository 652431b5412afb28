"""Personalization from a monocular video (paper section 3.4).

:func:`personalize` runs the whole thing: track the video (cached), build the frames, average the
reconstruction network's offsets over ~50 frames (or take them from an ``init`` avatar), then the
two stages of :mod:`dejavu.personalize.train` on the training frames (the first 90%, or all but the most
turned 10% with ``holdout="yaw"``), and save the avatar.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dejavu.avatar import Avatar
from dejavu.device import resolve_device
from dejavu.errors import DejavuError
from dejavu.gaussians import channels as ch
from dejavu.gaussians.coverage import close_gaps
from dejavu.gaussians.resample import resample_offsets
from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.head import load_head
from dejavu.head.base import HeadModel
from dejavu.io import clean_stale_parts, sha256_file, write_image
from dejavu.limits import check_memory, largest_fitting
from dejavu.losses import fill_unseen
from dejavu.metrics.image import psnr
from dejavu.model.avatar_model import AvatarModel
from dejavu.model.blend import BlendScheme, default_scheme_kind, default_temperature, fit_pca_basis
from dejavu.model.views import views_image
from dejavu.outputs import check_free_space, check_output_dir
from dejavu.personalize.config import PersonalizeConfig
from dejavu.personalize.frames import FrameSet, add_feature_masks, frames_from_tracking
from dejavu.personalize.pose import fit_training_poses
from dejavu.personalize.train import CHECKPOINT_NAME, Trainer, TrainState, load_checkpoint, render_avatar
from dejavu.recon.photo_texture import best_view_weight, photo_texture
from dejavu.recon.predict import default_weights, predict_offsets
from dejavu.recon.train import load_weights
from dejavu.track import is_tracking_dir, load_tracking, track
from dejavu.track.fit import FitConfig
from dejavu.track.result import TRACKING_FILE, TrackResult
from dejavu.track.video import list_images, probe

log = logging.getLogger(__name__)

__all__ = ["personalize", "flat_mean_offsets", "heldout_summary"]

#: The avatar seen from six sides at its neutral expression (:func:`dejavu.model.views.views_image`).
VIEWS_FILE = "views.png"


def personalize(video: str | Path, out_dir: str | Path, cfg=None, init: str | Path | None = None,
                device: str = "auto", resume: bool = False, progress: bool = True, force: bool = False):
    """Personalize an avatar to ``video`` and save it in ``out_dir``. Returns the :class:`~dejavu.avatar.Avatar`.

    Args:
        video: the input video (or a tracking directory written by ``dejavu track``).
        out_dir: the avatar directory; also holds ``tracking/`` (cache) and ``train/`` (checkpoints, previews).
        cfg: a :class:`~dejavu.personalize.config.PersonalizeConfig` (default: the cpu preset).
        init: an avatar directory whose mean offsets (and head, UV size) start the run instead of the network.
        device: ``--device``. resume: continue from ``train/checkpoint.pt`` (refused when it was made from
            another input or with other settings: :func:`check_same_run`).
        force: replace a finished avatar in ``out_dir`` (refused otherwise, unless ``resume``).
    """
    t_start = time.time()
    cfg = (cfg or PersonalizeConfig()).validate()
    out_dir, video = Path(out_dir), Path(video)
    run = _start_run(video, out_dir, cfg, init, device, resume, force)
    deadline = t_start + 60.0 * cfg.minutes if cfg.minutes else None

    # 1. tracking (cached by the tracker) and frames
    result = run.result if run.result is not None else _track(video, out_dir, run.head_spec, cfg, device, progress)
    t_tracked = time.time()
    head = load_head(run.head_spec, run.dev)
    uvmap = UVGaussianMap(head, run.uv_size).to(run.dev)
    frames = add_feature_masks(frames_from_tracking(result, cfg.resolution, progress=progress), head)
    train, held = frames.split(cfg.train_fraction, cfg.holdout, cfg.holdout_margin)
    run.record["train_frames"] = len(train)
    if run.state is not None:
        check_same_run(run.state, run.record, run.work_dir)

    # 2. mean offsets and the blend scheme
    mean, mean_source = _mean_offsets(run, init, train, head, uvmap, cfg, result)
    blend = blend_scheme(train.params.expression, run.head_spec, cfg)

    # 3. the two stages
    trainer, state = _train(run, train, head, uvmap, mean, blend, cfg, deadline, progress)

    # 4. the pose model, a quick held-out check and the avatar
    avatar = trained_avatar(state, trainer, train, mean, blend, run.head_spec, run.uv_size)
    model = avatar.model(run.dev, head=head, uvmap=uvmap)
    metrics = quick_heldout_psnr(model, held, cfg.render_backend) if len(held) else {}
    seconds = time.time() - t_start
    avatar.settings = {"config": cfg.to_dict(), "w_position": trainer.w_position,
                       "w_unseen_scale": trainer.w_unseen_scale, "w_ray": trainer.w_ray, "mean_offsets": mean_source,
                       "crop_size": int(result.crop_size), "fov_deg": round(result.fov_deg, 2),
                       "n_gaussians": uvmap.n_gaussians,
                       "resolution": cfg.resolution, "train_frames": len(train), "heldout_frames": len(held)}
    avatar.training.update({
        "steps": state.step, "stage1_steps": state.stage1_steps, "seconds": round(seconds, 1),
        "seconds_tracking": round(t_tracked - t_start, 1), "seconds_training": round(state.elapsed, 1),
        "device": str(run.dev), "source": str(video), "frames": len(frames), "metrics": metrics,
        "history": state.history[-50:],
    })
    avatar.save(out_dir)
    write_image(out_dir / VIEWS_FILE, views_image(model, cfg.resolution, backend=cfg.render_backend))
    log.info("personalize: %d steps in %.0f s (tracking %.0f s); %s", state.step, seconds, t_tracked - t_start,
             heldout_summary(metrics))
    return avatar


@dataclass
class _Run:
    """What a personalization run starts from, checked before any work.

    dev: the torch device. work_dir: ``OUT/train`` (checkpoints, previews). init_avatar: the ``init`` avatar
    or None. head_spec, uv_size: the avatar's (the init avatar's, else the config's). result: the tracking
    when the input is a tracking directory, else None (tracked later). record: input and settings, kept
    with each checkpoint and compared on ``--resume``. state: the checkpoint resumed from, or None.
    """

    dev: torch.device
    work_dir: Path
    init_avatar: Avatar | None
    head_spec: str
    uv_size: int
    result: TrackResult | None
    record: dict
    state: TrainState | None


def _start_run(video: Path, out_dir: Path, cfg: PersonalizeConfig, init: str | Path | None, device: str,
               resume: bool, force: bool) -> _Run:
    """Check the outputs, memory and free space a run needs; read the init avatar and the checkpoint resumed."""
    check_output_dir(out_dir, kind="avatar", force=force, resume=resume,
                     need_bytes=cfg.uv_size ** 2 * 13 * 4 * (cfg.n_blendmaps + 2) * 4 + (64 << 20))
    dev = resolve_device(device)
    work_dir = out_dir / "train"
    init_avatar = Avatar.load(init) if init else None
    head_spec = init_avatar.head if init_avatar else cfg.head
    uv_size = init_avatar.uv_size if init_avatar else cfg.uv_size
    result = load_tracking(video) if is_tracking_dir(video) else None
    n_planned = planned_frames(video, cfg, result)
    check_run_memory(cfg, n_planned)
    if result is None:  # crops, masks and overlay of every frame (~2 bytes a crop pixel as PNG)
        check_free_space(out_dir, n_planned * cfg.crop_size ** 2 * 2)
    for folder in (work_dir, work_dir / "previews"):  # checkpoints and previews of killed runs
        clean_stale_parts(folder)
    record = {"input": str(video.resolve()), "input_sha256": input_sha256(video),
              "settings": {k: cfg.to_dict()[k] for k in RUN_SETTINGS} | {"head": head_spec, "uv_size": uv_size}}
    state = load_checkpoint(work_dir, uv_size) if resume else None
    if state is not None:
        check_same_run(state, record, work_dir)
    return _Run(dev, work_dir, init_avatar, head_spec, uv_size, result, record, state)


def _track(video: Path, out_dir: Path, head_spec: str, cfg: PersonalizeConfig, device: str,
           progress: bool) -> TrackResult:
    """Track ``video`` into ``OUT/tracking`` (the tracker reuses a result with the same input and settings)."""
    return track(video, out_dir / "tracking", head=head_spec, fps=cfg.fps, max_frames=cfg.max_frames,
                 crop_size=cfg.crop_size, device=device, progress=progress, config=FitConfig(fov_deg=cfg.fov_deg))


def _mean_offsets(run: _Run, init: str | Path | None, train: FrameSet, head: HeadModel, uvmap: UVGaussianMap,
                  cfg: PersonalizeConfig, result: TrackResult) -> tuple[torch.Tensor, str]:
    """The mean offsets (13, S, S) the stages start from and where they came from: the checkpoint resumed,
    the init avatar, else the network's over the training frames (:func:`start_offsets`)."""
    if run.state is not None and run.state.mean_offsets is not None:
        return run.state.mean_offsets, "checkpoint"
    if run.init_avatar is not None:
        return run.init_avatar.mean_offsets, f"init:{init}"
    return start_offsets(train, head, uvmap, cfg, result, run.dev)


def _train(run: _Run, train: FrameSet, head: HeadModel, uvmap: UVGaussianMap, mean: torch.Tensor,
           blend: BlendScheme, cfg: PersonalizeConfig, deadline: float | None,
           progress: bool) -> tuple[Trainer, TrainState]:
    """The two training stages from ``mean`` (13, S, S), resumed from ``run.state`` if any; checkpointed."""
    needs_seen = cfg.w_unseen_color > 0 or cfg.unseen_scale_weight(len(train)) > 0
    seen = training_view_seen(train, head, uvmap, mean, run.dev, cfg.render_backend) if needs_seen else None
    trainer = Trainer(head, uvmap, train, mean, blend, cfg, run.work_dir, run.dev, deadline=deadline,
                      progress=progress, seen=seen)
    trainer.run_record = run.record
    if run.state is not None:
        log.info("personalize: resuming from %s at step %d (stage %d)", run.work_dir, run.state.step,
                 run.state.stage)
    state = trainer.run(run.state)
    trainer.save_checkpoint(state)
    return trainer, state


def start_offsets(train: FrameSet, head: HeadModel, uvmap: UVGaussianMap, cfg: PersonalizeConfig,
                  result: TrackResult, device: torch.device) -> tuple[torch.Tensor, str]:
    """The mean offsets (13, S, S) a run starts from: the network's over the training frames, with the
    colours the frames see read off them when ``cfg.photo_frames`` > 0; and a note saying so."""
    mean, source = network_mean_offsets(train, head, uvmap, cfg, result, device)
    if cfg.photo_frames > 0:
        mean = photo_mean_colors(train, head, uvmap, mean, cfg.photo_frames, device, cfg.render_backend)
        source += f"+photo colours:{min(cfg.photo_frames, len(train))} frames"
    return mean, source


def blend_scheme(expressions: torch.Tensor, head_spec: str, cfg: PersonalizeConfig) -> BlendScheme:
    """The blend scheme of a run on training ``expressions`` (T, Ne): the config's kind (or the head's
    default), its temperature, the PCA basis for ``pca_softmax``, clamped to the training range."""
    kind = default_scheme_kind(head_spec) if cfg.blend_scheme == "auto" else cfg.blend_scheme
    temperature = default_temperature(kind) if cfg.blend_temperature is None else cfg.blend_temperature
    if kind == "pca_softmax":
        blend = fit_pca_basis(expressions, k=cfg.n_blendmaps, temperature=temperature)
    else:
        blend = BlendScheme(kind=kind, k=cfg.n_blendmaps, temperature=temperature)
    return blend.with_training_range(expressions)


def trained_avatar(state, trainer: Trainer, train: FrameSet, mean: torch.Tensor, blend: BlendScheme,
                   head_spec: str, uv_size: int) -> Avatar:
    """The :class:`Avatar` of a finished training ``state``: identity of the training frames, mean offsets,
    stage-1 delta, blendmaps, and the pose model fitted to the learnt pose corrections (when trained)."""
    pose_model, pose_record = None, None
    if state.pose is not None:
        pose_model, pose_record = fit_training_poses(state.pose, blend, train.params.expression, train.params.jaw)
    avatar = Avatar(head=head_spec, uv_size=uv_size, shape=train.shape.cpu(), vertex_offsets=train.vertex_offsets,
                    mean_offsets=mean.cpu(), global_delta=state.delta[0], blendmaps=state.blendmaps, blend=blend,
                    pose_model=pose_model)
    if pose_record is not None:
        avatar.training["pose_refinement"] = pose_record
    return avatar


#: Settings a resumed run must share with the checkpoint it continues (besides the input, head and UV size).
RUN_SETTINGS = ("resolution", "crop_size", "fps", "max_frames", "fov_deg", "train_fraction", "n_blendmaps",
                "blend_scheme")


def input_sha256(video: Path) -> str:
    """Content hash of a personalization input: the video or photo file, a tracking directory's
    ``tracking.npz``, or every image of a folder (names and bytes)."""
    if is_tracking_dir(video):
        return sha256_file(video / TRACKING_FILE)
    if video.is_dir():
        h = hashlib.sha256()
        for p in list_images(video):
            h.update(p.name.encode() + b"\0" + sha256_file(p).encode())
        return h.hexdigest()
    return sha256_file(video)


def check_same_run(state, record: dict, work_dir: Path) -> None:
    """Refuse (DejavuError) to resume ``state`` (a checkpoint) with another input, other settings or another
    number of training frames than ``record`` (:attr:`Trainer.run_record` of this run) names."""

    path = work_dir / CHECKPOINT_NAME
    old = state.run
    if not old:
        log.warning("personalize: %s predates input checks; resuming it as it is", path)
        return
    if old.get("input_sha256") != record["input_sha256"]:
        raise DejavuError(f"--resume: {path} continues a run on {old.get('input')}, whose content differs from "
                          f"{record['input']}; give that input, or leave out --resume to start over")
    for name, value in record["settings"].items():
        if name in old.get("settings", {}) and old["settings"][name] != value:
            raise DejavuError(f"--resume: {path} was made with {name} {old['settings'][name]!r}, not {value!r}; "
                              "resume with the same settings, or leave out --resume to start over")
    if "train_frames" in record and old.get("train_frames") not in (None, record["train_frames"]):
        raise DejavuError(f"--resume: {path} was trained on {old['train_frames']} frames, this input gives "
                          f"{record['train_frames']}; resume with the same input and settings, or leave out --resume")


def planned_frames(video: Path, cfg: PersonalizeConfig, result: TrackResult | None = None) -> int:
    """How many frames the run will hold: the tracking's (``result``), else the video's after --fps and
    --max-frames (from its header: an estimate)."""
    import math


    if result is not None:
        n = len(result)
    else:
        info = probe(video)
        n = info.n_frames
        if cfg.fps and info.fps > cfg.fps:
            n = math.ceil(n * cfg.fps / info.fps)
    return max(1, min(n, cfg.max_frames) if cfg.max_frames else n)


def check_run_memory(cfg, n_frames: int) -> None:
    """Refuse a run whose frames and training buffers (:meth:`PersonalizeConfig.memory_bytes`) would not fit in
    memory, naming the largest --resolution that would."""

    def advice(budget: int) -> str:
        r = largest_fitting(lambda r: cfg.memory_bytes(n_frames, r), budget, 16, cfg.resolution, 2)
        more = "fewer frames (--max-frames) or a smaller --uv-size"
        return f"--resolution {r} fits, or use {more}" if r else f"use {more}"

    check_memory(cfg.memory_bytes(n_frames), f"--resolution {cfg.resolution} on {n_frames} frames", advice)


def network_mean_offsets(frames: FrameSet, head: HeadModel, uvmap: UVGaussianMap, cfg, result: TrackResult, device) -> tuple[torch.Tensor, str]:
    """Mean of the reconstruction network's offsets (13, S, S) over ``cfg.mean_frames`` evenly spaced frames.

    Falls back to :func:`flat_mean_offsets` (with a warning) when the shipped weights are missing or
    were trained on another head; a different UV size is resampled (mask-normalised bilinear).
    """
    try:
        model = load_weights(default_weights(), device)
    except DejavuError as exc:
        log.warning("personalize: reconstruction network not available (%s); starting from flat offsets", exc)
        return flat_mean_offsets(frames, head, uvmap), "flat"
    if model.head_spec != head.name and model.head_spec != getattr(cfg, "head", None):
        log.warning("personalize: the reconstruction weights are for head %r, not %r; starting from flat offsets",
                    model.head_spec, cfg.head)
        return flat_mean_offsets(frames, head, uvmap), "flat"
    n = min(cfg.mean_frames, len(frames))
    idx = torch.linspace(0, len(frames) - 1, n).round().long().unique().tolist()
    maps = [predict_offsets(model, result.load_crop(i), result.load_mask(i), result.shape).cpu() for i in idx]
    mean = torch.stack(maps).mean(0)
    if model.uvmap.size != uvmap.size:
        mean = resample_offsets(mean, model.uvmap.mask.cpu(), uvmap.mask.cpu())
    if cfg.min_scale_per_spacing > 0:
        dev = uvmap.mask.device
        with torch.no_grad():
            neutral = head(**frames.identity(dev))  # (1, V, 3): the person's rest shape
        mean = close_gaps(uvmap, neutral, mean.to(dev), cfg.min_scale_per_spacing).cpu()
    return mean, f"network:{len(idx)} frames"


@torch.no_grad()
def _spaced_frames(frames, head, n_frames: int, device) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """``n_frames`` evenly spaced frames: their batch, posed vertices (B, V, 3) and head masks (B, R, R)."""
    n = min(n_frames, len(frames))
    idx = torch.linspace(0, len(frames) - 1, n).round().long().unique()
    b = frames.batch(idx, device)
    verts = head(**frames.identity(device), **b["params"].kwargs())
    masks = b["masks"][:, 0] if b["masks"] is not None else torch.ones_like(b["images"][:, 0])
    return b, verts, masks


def photo_mean_colors(frames: FrameSet, head: HeadModel, uvmap: UVGaussianMap, offsets: torch.Tensor, n_frames: int, device,
                      backend: str = "auto") -> torch.Tensor:
    """``offsets`` (13, S, S) with the colours the frames see read off ``n_frames`` evenly spaced frames.

    One batched :func:`dejavu.recon.photo_texture.photo_texture` call over the frames (B = n_frames).
    """
    b, verts, masks = _spaced_frames(frames, head, n_frames, device)
    tex = photo_texture(uvmap, verts, offsets.to(device), b["images"].permute(0, 2, 3, 1), masks,
                        b["world_to_cam"], b["K"], backend=backend)
    log.info("personalize: photo colours from %d frames, %.0f%% of texels seen, residual RMSE %s", len(verts),
             100 * float(tex.weight[uvmap.mask].mean()), [round(r, 4) for r in tex.residual_rmse])
    return tex.offsets.cpu()


#: Training frames that decide how well each texel is seen (:func:`training_view_seen`).
SEEN_FRAMES = 16


def training_view_seen(frames: FrameSet, head: HeadModel, uvmap: UVGaussianMap, offsets: torch.Tensor, device, backend: str = "auto") -> torch.Tensor:
    """(S, S) in [0, 1]: how well the best of :data:`SEEN_FRAMES` evenly spaced training frames sees each
    texel of the avatar with ``offsets`` (13, S, S) (:func:`dejavu.recon.photo_texture.best_view_weight`)."""
    b, verts, masks = _spaced_frames(frames, head, SEEN_FRAMES, device)
    seen = best_view_weight(uvmap, verts, offsets.to(device), masks, b["world_to_cam"], b["K"], backend)
    log.info("personalize: %.0f%% of texels well seen (best view weight > 0.5)",
             100 * float((seen[uvmap.mask] > 0.5).float().mean()))
    return seen


@torch.no_grad()
def flat_mean_offsets(frames: FrameSet, head: HeadModel, uvmap: UVGaussianMap) -> torch.Tensor:
    """A network-free start (13, S, S): every Gaussian sized to the texel spacing, fully opaque-ish, and
    coloured with the mean colour of the targets' head pixels (colours must start above 0: the
    activation clamps at 0)."""
    S = uvmap.size
    verts = head(**frames.identity(uvmap.mask.device), batch_size=1)
    tri = verts[0, head.faces]  # (F, 3, 3)
    area = 0.5 * torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=-1).sum()
    spacing = float((area / max(uvmap.n_gaussians, 1)).sqrt())
    if frames.masks is not None:
        m = frames.masks.float() / 255.0
        color = (frames.images.float() / 255.0 * m).sum((0, 1, 2)) / m.sum().clamp_min(1.0)
    else:
        color = torch.full((3,), 0.5)
    off = torch.zeros(ch.N_CHANNELS, S, S)
    off[ch.LOG_SCALE] = float(torch.log(torch.tensor(0.7 * spacing))) - ch.INIT_LOG_SCALE
    off[ch.OPACITY] = 1.0
    off[ch.COLOR] = ((color.clamp(0.05, 1.0) - 0.5) / ch.SH_C0 - ch.INIT_COLOR_DC)[:, None, None]
    return off * uvmap.mask.float().cpu()


def heldout_summary(metrics: dict) -> str:
    """One phrase for :func:`quick_heldout_psnr`'s figures; one photo (or a clip too short to hold frames
    out) has nothing to score against."""
    if metrics.get("psnr_full") is None:
        return "no held-out frames to score"
    return f"held-out PSNR {metrics['psnr_full']:.2f} dB (stage 1 alone {metrics['psnr_global']:.2f})"


@torch.no_grad()
def quick_heldout_psnr(model: AvatarModel, frames: FrameSet, backend: str = "auto") -> dict:
    """Mean per-frame PSNR (dB) over the held-out frames, whole crop (no error where the target is unknown),
    for stage 1 only and for the full avatar: the same figure as ``dejavu evaluate``'s whole-image PSNR
    (one PSNR of the pooled error read up to 0.9 dB lower on d3 and was mistaken for it)."""
    target, seen = frames.pixels("images"), frames.pixels("seen")
    out = {}
    for stage in ("global", "full"):
        pred = fill_unseen(render_avatar(model, frames, stage, backend), target, seen)
        out[f"psnr_{stage}"] = round(float(psnr(pred, target).mean()), 3)
    return out

"""Configuration of video personalization: one dataclass, every weight/rate/step a documented field.

Presets: ``"cpu"`` (the default: UV 128, render 256, LPIPS-AlexNet, 1400 steps of which the first 60% at
128^2, ~8-9 min of training on a 2-core CPU), ``"preview"`` (the fast one: the same at 600 steps, all at 256^2,
~4 min), ``"fidelity"`` (the paper's image size on a CPU: UV 256, render
512 after a coarse 70% of the budget at 256, the cpu preset's losses, steps set by a 15-minute budget,
tracking included) and ``"gpu"`` (the
paper: UV 320, render 512, LPIPS-VGG, 300 + 700 steps). Defaults follow the
method notes (paper section 3.4 and the authors' code); departures are noted on the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from dejavu.config import apply_overrides
from dejavu.errors import DejavuError
from dejavu.limits import UV_SIZE_RANGE
from dejavu.model.blend import SCHEMES

#: Bytes per pixel of a frame kept in memory (uint8 target RGB, head, face, feature and seen masks).
FRAME_BYTES_PER_PIXEL = 7
#: Peak bytes per rendered pixel of each batch frame in a training step (renderer buffers, losses, LPIPS
#: features, gradients), by LPIPS backbone: a photo at 512 peaked 120 MB above one at 256 with AlexNet
#: (~630 B a pixel; docs/experiments/2026-12-07-hardening.md), taken with 60% room; VGG's features are ~3x.
TRAIN_BYTES_PER_PIXEL = {"alex": 1024, "vgg": 3072}
#: The process before any frame: torch, the head model, the reconstruction and LPIPS networks (~0.7 GB).
BASE_BYTES = 1 << 30


@dataclass
class PersonalizeConfig:
    # -- sizes ---------------------------------------------------------------------------------
    uv_size: int = 128
    """UV Gaussian map side S (paper 320). Ignored with --init (the init avatar's size is kept)."""
    resolution: int = 256
    """Render/target side in pixels: the tracking crop downsampled to this (paper 512)."""
    crop_size: int = 512
    """Tracking crop side in pixels (the tracker's aligned crop; FOV 20 deg spans it)."""
    head: str = "builtin"
    """Head model spec for tracking and the avatar (ignored with --init: the init avatar's head)."""
    # -- schedule --------------------------------------------------------------------------------
    steps: int = 600
    """Total optimisation steps over both stages when no ``minutes`` is set (paper: 3:7 split; authors' code
    300 + 500). 600 is the ``preview`` preset's; ``cpu`` sets 1400 with :attr:`coarse_fraction` 0.6. 600
    took ~2.5 min at 256^2 on a 2-core CPU; against 300 they gained 1.1 dB held-out on wojtek and 0.2 dB on
    liveportrait_d3 (docs/PERSONALIZATION.md, "Steps against held-out quality")."""
    minutes: float | None = None
    """Wall-clock budget for the whole run (tracking included); when set it decides the steps."""
    stage1_fraction: float = 0.3
    """Share of the steps spent in stage 1 (global delta); the rest trains the blendmaps."""
    coarse_fraction: float = 0.0
    """Coarse-to-fine: this first share of the training (of :attr:`steps`, or of the time budget with
    :attr:`minutes`) renders at half :attr:`resolution` against 2x2-averaged targets, the rest at full
    resolution. A half-size step costs a fraction of a full one, so a budget buys more steps."""
    batch_size: int = 8
    """Frames per step (paper 8)."""
    train_fraction: float = 0.9
    """This share of frames trains; the rest is held out for evaluation (paper 90%)."""
    holdout: str = "last"
    """Which frames are held out (``dejavu.personalize.frames.holdout_split``): "last" (the paper's: the
    last ``1 - train_fraction`` of the video, seen from the training camera) or "yaw" (the frames whose
    head is turned farthest from the median yaw: real images of unseen angles)."""
    holdout_margin: int = 5
    """With ``holdout`` "yaw": frames on either side of each held-out frame also kept out of training."""
    mean_frames: int = 50
    """Frames sampled (evenly) to average the reconstruction network's offsets (paper ~50)."""
    min_scale_per_spacing: float = 0.3
    """The network's start gets each Gaussian's two larger scales raised to this share of its texel
    spacing (:func:`dejavu.gaussians.coverage.close_gaps`): the network shrinks the Gaussians of the
    chin's underside, the neck and the far cheeks to ~0.1 of it, which shows as stripes of background
    when the head turns. 0: the network's scales as they are. Not used with --init."""
    photo_frames: int = 16
    """Read the starting colours off this many evenly spaced training frames (``dejavu.recon.photo_texture``,
    visibility-weighted, 3 back-projection steps); 0 keeps the network's colours. Not used with --init."""
    fps: float | None = None
    """Resample the video to this frame rate before tracking (None: every frame)."""
    max_frames: int | None = None
    """Track at most this many frames (None: all)."""
    fov_deg: float | None = None
    """The tracker's camera field of view over the crop, degrees; None: the tracker's choice
    (``FitConfig.fov_deg``: estimated for videos where the landmarks determine it, else 20)."""
    # -- optimiser -------------------------------------------------------------------------------
    lr: float = 0.05
    """Adam learning rate for the delta map and the blendmaps (paper 0.05)."""
    lr_pose: float = 0.0
    """Adam learning rate of the per-frame head-pose corrections of the training frames
    (:mod:`dejavu.personalize.pose`; axis-angle radians and decimetres; ``--refine-pose`` sets 1e-3);
    0 keeps the tracked poses (default: refining them did not help on tracked held-out poses)."""
    lr_decay: float = 0.9
    """Step decay factor (paper 0.9)..."""
    lr_decay_every: int = 30
    """...applied every this many steps within a stage (not stated in the paper)."""
    # -- losses ----------------------------------------------------------------------------------
    huber_delta: float = 0.1
    """Huber loss threshold on RGB in [0, 1] (paper 0.1)."""
    w_huber: float = 1.0
    """Weight of the image Huber loss."""
    w_lpips: float = 0.02
    """Weight of the LPIPS loss (paper 0.05, VGG). The cpu default 0.02 with ``w_ssim`` 0.2 trades a little
    LPIPS for PSNR/SSIM on held-out frames (docs/PERSONALIZATION.md, "LPIPS and SSIM at equal time")."""
    lpips_net: str = "alex"
    """LPIPS backbone in training: "alex" (~0.05 s per 256^2 image fwd+bwd on an idle 2-core CPU) or "vgg"
    (the paper's; ~0.8 s). See docs/PERSONALIZATION.md."""
    lpips_every: int = 2
    """Compute the LPIPS term every this many steps (1 = always; >1 saves time on a CPU)."""
    lpips_batch: int = 4
    """LPIPS on at most this many frames of each batch (the first ones; the batch is random) to save time."""
    lpips_start: int = 50
    """Stage-1 step from which LPIPS is on (paper 50); always on in stage 2."""
    w_ssim: float = 0.2
    """Weight of a D-SSIM term (1 - SSIM of the whole render, as in 3DGS). Not in the paper (0 there):
    on a CPU budget it raised held-out whole-image SSIM 0.840 -> 0.873 (docs/PERSONALIZATION.md)."""
    w_alpha: float = 0.5
    """Weight of an L1 term between the render's opacity and the head mask (silhouette). Not in the paper
    (0 there): at equal time on wojtek it raised held-out whole-image PSNR 24.29 -> 24.49 dB and lowered
    LPIPS-alex 0.102 -> 0.091, SSIM level (docs/PERSONALIZATION.md)."""
    w_position: float | None = None
    """Weight of the position regulariser on the delta's xyz (weighted by the UV map's position_weight).
    None: :meth:`position_weight` picks it from the number of training frames (0.5, the paper's, for one
    photo; 0 for a video)."""
    w_ray: float | None = None
    """Weight of a regulariser on the part of the delta's xyz along the training camera's viewing ray through
    each texel (``dejavu.losses.ray_regularizer``, weighted by the UV map's position_weight): the depth a single
    view leaves free, so a photo's refinement may move Gaussians across the image but not towards or away
    from the camera, where they would fit the photo equally well and break every other view. Not in the
    paper. None: :meth:`ray_weight` picks it from the number of training frames."""
    w_scale: float = 1e-5
    """Weight of the scale regulariser on the delta's log-scales."""
    w_needle: float = 0.01
    """Weight of a needle penalty on every Gaussian's final scales: the log of its largest-to-middle axis
    ratio beyond ``needle_ratio`` (``dejavu.losses.needle_regularizer``). Not in the paper."""
    needle_ratio: float = 4.0
    """Largest-to-middle axis ratio the needle penalty leaves free."""
    w_ray_needle: float = 1.0
    """Weight of a depth-needle penalty on every Gaussian of each training frame: the log of its extent along
    that frame's viewing ray over its extent across it, beyond ``ray_needle_ratio``, weighted by opacity
    (``dejavu.losses.ray_needle_regularizer``). Not in the paper. Near-frontal views leave a Gaussian free to
    grow along their rays; on wojtek's video such hair Gaussians showed as long streaks behind the head from
    45 degrees on. At 1.0 the streaks mostly went (by eye) with the yaw split at 22.87 -> 22.95 dB, LPIPS-alex
    0.105 -> 0.102 (1200 steps); 5.0 gave 22.84; on the demo photo front and novel views stayed level
    (docs/experiments/2026-12-07-novel-views.md, "Streaks along the rays")."""
    ray_needle_ratio: float = 2.0
    """Along-to-across ratio the depth-needle penalty leaves free."""
    w_side_silhouette: float = 0.0
    """Weight of a penalty on the avatar's alpha outside its start's silhouette (the network's mean offsets)
    seen from the side (``Trainer.side_silhouette``): each step renders ``side_views`` of the batch's frames
    from their camera turned by a random yaw in ``side_yaw_deg`` (either way) about the head, at
    ``side_resolution``. A frontal video does not show how far the hair reaches back, and Gaussians the
    training views see edge-on grow into a blur behind the head; the network's start has a head's shape from
    every side. Not in the paper."""
    side_views: int = 2
    """Frames of each batch seen from the side for ``w_side_silhouette``."""
    side_yaw_deg: tuple[float, float] = (30.0, 90.0)
    """Range of the side views' yaw (degrees, either sign) for ``w_side_silhouette``."""
    side_resolution: int = 128
    """Side of the side views' renders (pixels) for ``w_side_silhouette``: a silhouette needs few pixels."""
    side_margin: float = 0.125
    """The start's side silhouette is widened by this share of the side view's side before alpha beyond it
    counts for ``w_side_silhouette``: the network's start is smaller than a real head of hair at the back (1/64
    cut wojtek's away: yaw-split held-out 22.94 -> 17.87 dB; 1/8 22.85, docs/experiments/2026-12-07-novel-views.md)."""
    w_unseen_color: float = 0.01
    """Weight of a colour regulariser on the delta of the texels the training views see badly: each
    texel weighted by 1 - its best view's visibility (``dejavu.recon.photo_texture.best_view_weight``
    over 16 training frames: depth test x facing ramp x head mask). Not in the paper. Without it the
    sides and back of a video avatar's head, which the near-frontal frames never show, turned into
    smears of any colour that helped the frontal fit through the semi-transparent hair in front of them
    (white, blue, yellow); with it they keep the start's hair colour. Held-out PSNR and SSIM stayed level
    on both videos, LPIPS-alex on liveportrait_d3 rose 0.052 -> 0.058 (docs/PERSONALIZATION.md, "Seen
    from the side")."""
    w_unseen_scale: float | None = None
    """Weight of a scale regulariser on the delta's log-scales of the texels the training views see badly
    (weighted as ``w_unseen_color``): Gaussians the views see edge-on or not at all may not grow. None:
    :meth:`unseen_scale_weight` picks it from the number of training frames (1.0 for one photo, 0 for a
    video, where it is unmeasured)."""
    fade_outside: bool | None = None
    """Outside the head mask (background, neck, clothes: white in the targets) the Gaussians may only fade:
    the photometric terms there reach their opacities, not their colours. Otherwise a Gaussian on the jaw
    line that the training view sees against the white neck turns white instead of transparent, and shows
    as a white line along the jaw when the head turns. None: :meth:`fade_outside_for` decides."""
    w_feature: float = 10.0
    """Stage 2: weight of the extra Huber term inside the facial-feature mask (brows, eyes, nose, lips)."""
    # -- blendmaps -------------------------------------------------------------------------------
    n_blendmaps: int = 10
    """K, the number of blendmaps (paper 10)."""
    blend_scheme: str = "auto"
    """"auto" (FLAME: softmax_first_k; others: pca_softmax), "softmax_first_k" or "pca_softmax"."""
    blend_temperature: float | None = None
    """Softmax temperature of the blend weights; None: the scheme's default
    (:func:`dejavu.model.blend.default_temperature`: 1 for FLAME's first K coefficients as in
    the paper, 2 for the built-in head's normalised PCA projections; docs/PERSONALIZATION.md)."""
    # -- logging ---------------------------------------------------------------------------------
    checkpoint_every: int = 25
    """Save train/checkpoint.pt (for --resume) every this many steps."""
    preview_every: int = 50
    """Write train/previews/step_XXXXXX.png (render | target) every this many steps (0: never)."""
    seed: int = 0
    """Random seed (batch sampling)."""
    render_backend: str = "auto"
    """Renderer backend (auto: cuda on GPU, the numba cpu rasterizer otherwise)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self, where: str = "config") -> "PersonalizeConfig":
        """Self, or a one-line :class:`DejavuError` naming ``where`` and the first value that cannot work
        (a zero temperature, for one, would turn every blend weight into NaN)."""

        checks = [
            ("n_blendmaps", self.n_blendmaps >= 1, "at least 1"),
            ("blend_temperature", self.blend_temperature is None or self.blend_temperature > 0, "a positive number"),
            ("blend_scheme", self.blend_scheme in ("auto", *SCHEMES), f"one of {['auto', *SCHEMES]}"),
            ("train_fraction", 0 < self.train_fraction <= 1, "in (0, 1]"),
            ("holdout", self.holdout in ("last", "yaw"), "last or yaw"),
            ("holdout_margin", self.holdout_margin >= 0, "0 or more"),
            ("stage1_fraction", 0 <= self.stage1_fraction <= 1, "in [0, 1]"),
            ("coarse_fraction", 0 <= self.coarse_fraction < 1, "in [0, 1)"),
            ("batch_size", self.batch_size >= 1, "at least 1"),
            ("steps", self.minutes is not None or self.steps >= 1, "at least 1"),
            ("minutes", self.minutes is None or 0 < self.minutes < math.inf, "a positive number"),
            ("uv_size", UV_SIZE_RANGE[0] <= self.uv_size <= UV_SIZE_RANGE[1],
             f"a side between {UV_SIZE_RANGE[0]} and {UV_SIZE_RANGE[1]} texels"),
            ("crop_size", 64 <= self.crop_size <= 2048, "between 64 and 2048 pixels"),
            ("resolution", 16 <= self.resolution <= self.crop_size and self.resolution % 2 == 0,
             f"an even size between 16 and the crop size {self.crop_size} (the targets are the crops resized: "
             "a larger render adds no detail)"),
            ("fps", self.fps is None or 0 < self.fps < math.inf, "a positive frame rate"),
            ("lr", 0 < self.lr < math.inf, "a positive number"),
            ("lr_pose", self.lr_pose >= 0, "0 or more"),
            ("w_position", self.w_position is None or self.w_position >= 0, "0 or more"),
            ("w_needle", self.w_needle >= 0, "0 or more"),
            ("w_ray", self.w_ray is None or self.w_ray >= 0, "0 or more"),
            ("w_unseen_scale", self.w_unseen_scale is None or self.w_unseen_scale >= 0, "0 or more"),
            ("needle_ratio", self.needle_ratio >= 1, "1 or more"),
            ("w_ray_needle", self.w_ray_needle >= 0, "0 or more"),
            ("ray_needle_ratio", self.ray_needle_ratio >= 1, "1 or more"),
            ("w_side_silhouette", self.w_side_silhouette >= 0, "0 or more"),
            ("side_views", self.side_views >= 1, "1 or more"),
            ("side_yaw_deg", len(self.side_yaw_deg) == 2 and 0 <= self.side_yaw_deg[0] <= self.side_yaw_deg[1] <= 90,
             "two angles 0 <= low <= high <= 90"),
            ("side_resolution", 16 <= self.side_resolution <= 2048, "16 to 2048"),
            ("side_margin", 0 <= self.side_margin <= 0.5, "in [0, 0.5]"),
            ("min_scale_per_spacing", 0 <= self.min_scale_per_spacing <= 2, "in [0, 2]"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise DejavuError(f"{where}: {name} {getattr(self, name)!r}: expected {expected}")
        return self

    def memory_bytes(self, n_frames: int, resolution: int | None = None) -> int:
        """Rough peak host memory of a run on ``n_frames`` frames at ``resolution`` (default :attr:`resolution`),
        bytes: the frames held in memory, the batch's render and loss buffers, the UV maps being trained
        with their gradients and Adam moments, and the process itself (torch, head model, networks)."""
        R2 = (self.resolution if resolution is None else resolution) ** 2
        frames = n_frames * R2 * FRAME_BYTES_PER_PIXEL
        batch = self.batch_size * R2 * TRAIN_BYTES_PER_PIXEL.get(self.lpips_net, max(TRAIN_BYTES_PER_PIXEL.values()))
        maps = self.uv_size ** 2 * 13 * 4 * (self.n_blendmaps + 2) * 4
        return int(frames + batch + maps + BASE_BYTES)

    def position_weight(self, n_train_frames: int) -> float:
        """The position-regulariser weight for ``n_train_frames``: :attr:`w_position` when set, else 0.5
        for a single photo (one view leaves the offsets' depth free; the paper's value) and 0 for a video.
        On videos the regulariser cost quality: 5-minute runs at 0.5 / 0.1 / 0.02 / 0 scored held-out
        whole-image PSNR 22.62 / 22.71 / 22.72 / 22.69 dB (face 26.91 / 26.94 / 26.74 / 27.89) on
        liveportrait_d3 and 25.42 / 25.54 / 25.82 / 26.07 dB (face 27.32 / 27.70 / 27.90 / 28.10) on
        metrical_wojtek, LPIPS-alex falling with it, and turntables looked cleaner
        (docs/PERSONALIZATION.md, "Where d3's held-out error is")."""
        if self.w_position is not None:
            return self.w_position
        return 0.5 if n_train_frames <= 1 else 0.0

    def ray_weight(self, n_train_frames: int) -> float:
        """The along-ray regulariser's weight for ``n_train_frames``: :attr:`w_ray` when set, else 5.0 for a
        single photo and 0 for a video. On the astronaut photo's refinement (the demo's) 5.0 took the
        novel-view landmark RMSE at +-30/45 from 9.37 to 7.86 px (x1.36 -> x1.14 of the network-only
        avatar) with the front level (31.83 -> 31.89 dB whole image, LPIPS-alex 0.095 -> 0.094); 2, 10 and
        20 gave x1.23, x1.22 and x1.34 (docs/experiments/2026-12-07-novel-views.md)."""
        if self.w_ray is not None:
            return self.w_ray
        return 5.0 if n_train_frames <= 1 else 0.0

    def unseen_scale_weight(self, n_train_frames: int) -> float:
        """The weight of the scale regulariser on badly seen texels for ``n_train_frames``: :attr:`w_unseen_scale`
        when set, else 1.0 for a single photo and 0 for a video. On the astronaut photo's demo refinement
        (150 steps) 1.0 raised the whole-image PSNR 29.64 -> 31.62 dB (SSIM 0.949 -> 0.957, LPIPS-alex
        0.103 -> 0.094), kept the novel-view landmark RMSE at +-30/45 level (8.47 -> 8.40 px) and found a
        face in all 33 novel views instead of 31: the hair at the sides and back no longer grows into
        plates (docs/experiments/2026-12-07-novel-views.md)."""
        if self.w_unseen_scale is not None:
            return self.w_unseen_scale
        return 1.0 if n_train_frames <= 1 else 0.0

    def fade_outside_for(self, n_train_frames: int) -> bool:
        """Whether outside the head mask the Gaussians may only fade (:attr:`fade_outside`): when unset,
        for a single photo and not for a video. On the two videos (600 steps) it made novel views better
        (+-30/45 RMSE 7.10 -> 6.60 px on wojtek's yaw split, 7.97 -> 7.39 on d3) and held-out frames a
        little worse (21.60 -> 21.56 dB; d3 23.14 -> 22.83 dB, LPIPS-alex 0.051 -> 0.053)
        (docs/experiments/2026-12-07-novel-views.md)."""
        if self.fade_outside is not None:
            return self.fade_outside
        return n_train_frames <= 1

    def stage_steps(self, total: int | None = None) -> tuple[int, int]:
        """(stage-1 steps, stage-2 steps) for ``total`` (default :attr:`steps`) steps."""
        total = self.steps if total is None else total
        s1 = max(1, round(total * self.stage1_fraction)) if total > 1 else total
        return s1, max(0, total - s1)


def _cpu() -> PersonalizeConfig:
    # 1400 steps, the first 60% at 128^2 against 2x2-averaged targets (a coarse step costs ~0.55x a full one):
    # 513 s of training against `preview`'s 286 s on wojtek's 400 frames (idle, back to back). With the
    # depth-needle penalty: wojtek's most turned frames 22.94 dB (600 steps without it: 21.83), his last
    # frames 26.41 / 0.915 / 0.046, d3's 22.88 / 0.917 / 0.053 (docs/experiments/2026-12-07-novel-views.md,
    # "Twice the steps, half of them coarse" and "Streaks along the rays").
    return PersonalizeConfig(steps=1400, coarse_fraction=0.6)


def _preview() -> PersonalizeConfig:
    # The cpu preset before coarse-to-fine: 600 steps at 256^2, for a quick look.
    return PersonalizeConfig()


def _gpu() -> PersonalizeConfig:
    # The paper's losses: LPIPS-VGG at 0.05, no D-SSIM, no depth-needle penalty, position regulariser 0.5
    # (its video default of 0 was measured with the cpu preset only).
    return PersonalizeConfig(uv_size=320, resolution=512, steps=1000, lpips_net="vgg", lpips_every=1, lpips_batch=8,
                             w_lpips=0.05, w_ssim=0.0, w_alpha=0.0, w_position=0.5, w_ray_needle=0.0,
                             lr_decay_every=100,
                             checkpoint_every=100, preview_every=100, render_backend="cuda")


def _fidelity() -> PersonalizeConfig:
    # UV 256 gives ~48k Gaussians (the paper's UV 320: ~74k); 512^2 targets are the tracking crops as they
    # are. The budget, not a step count, decides the steps (4x the pixels and Gaussians of the cpu preset).
    # Losses as the cpu preset's (chosen at 256^2, not re-tuned); checkpoints and previews less often (each
    # is 4x larger). Coarse-to-fine: the first 70% of the budget at 256^2 (0.7 s a step against 1.8 s at
    # 512^2) gave 719 steps instead of 430 and held-out 21.89 / 0.918 / 0.089 instead of 21.71 / 0.915 /
    # 0.092 on liveportrait_d3 at 512^2 (docs/experiments/personalization-log.md, "The fidelity preset").
    # LPIPS at 0.1 instead of 0.02: on liveportrait_d3 (800 steps, new masks) held-out LPIPS-alex at 512^2 0.088 ->
    # 0.071 with PSNR level (22.02 -> 22.00 dB), SSIM 0.916 -> 0.915 (docs/experiments/personalization-log.md).
    return PersonalizeConfig(uv_size=256, resolution=512, minutes=15.0, coarse_fraction=0.7, w_lpips=0.1,
                             checkpoint_every=50, preview_every=100)


def _photo() -> PersonalizeConfig:
    # One photo, from the reconstruction network's avatar (what `dejavu demo` runs on the astronaut): 150
    # steps of stage 1 alone on the single frame (~25 s on a 2-core CPU) make the network's blurry head look
    # like the person while its 3D prior stays for the views and expressions the photo does not show.
    return PersonalizeConfig(steps=150, uv_size=128, stage1_fraction=1.0, train_fraction=1.0, batch_size=1,
                             lpips_start=20, preview_every=50)


def _photo_scratch() -> PersonalizeConfig:
    # One photo with no reconstruction network to start from (its weights missing): a network-free stage-1
    # fit, shorter (120 steps) since it starts from flat Gaussians and its expressions look less natural.
    return PersonalizeConfig(steps=120, stage1_fraction=1.0, train_fraction=1.0, batch_size=1, lpips_start=20,
                             preview_every=40)


PRESETS = {"cpu": _cpu, "preview": _preview, "fidelity": _fidelity, "gpu": _gpu, "photo": _photo, "photo_scratch": _photo_scratch}


def preset(name: str) -> PersonalizeConfig:
    """A named preset: ``cpu`` (videos on a CPU, the default), ``preview`` (the same in ~57% of the time),
    ``fidelity`` (512x512 and UV 256 in a 15-minute
    budget), ``gpu`` (the paper's), ``photo`` (refine the
    network's avatar on one photo) or ``photo_scratch`` (fit one photo without the network)."""
    if name not in PRESETS:
        raise DejavuError(f"--preset {name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name]()


def config_from_dict(d: dict[str, Any], where: str = "config") -> PersonalizeConfig:
    """A config from a dict: optional ``"preset"`` plus field overrides; unknown keys are errors."""
    d = dict(d)
    return apply_overrides(preset(d.pop("preset", "cpu")), d, where)

"""The two personalization stages (paper section 3.4) on a :class:`~dejavu.personalize.frames.FrameSet`.

Stage 1 learns one delta map (13, S, S), zero-initialised, added to the mean offsets of every frame.
Stage 2 learns K blendmaps initialised with K copies of the stage-1 delta; a frame's delta is
``sum_k w_k B_k`` with weights from its expression (:mod:`dejavu.model.blend`).
Losses (method notes): Huber + LPIPS (stage 1 from ``lpips_start``) + position regulariser on the
delta's xyz + scale regulariser on its log-scales; stage 2 adds a Huber term inside the
facial-feature mask. Adam with step decay, a fresh optimiser per stage. Each step renders a batch of
frames in one call. Checkpoints (``train/checkpoint.pt``) allow ``resume``; previews
(``train/previews/step_XXXXXX.png``: render | target) show progress.

Budgets: with ``deadline`` (a ``time.time()`` value) the number of steps follows the measured step
time: stage 1 ends at ``stage1_fraction`` of the steps the budget allows, stage 2 runs until the
budget is spent.

Coarse-to-fine (``coarse_fraction`` > 0): the first share of the steps (or of the time budget) renders at
half the resolution against 2x2-averaged targets (:func:`~dejavu.personalize.frames.downsample_batch`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dejavu import losses
from dejavu.errors import DejavuError
from dejavu.gaussians import channels as ch
from dejavu.gaussians.uvmap import Gaussians
from dejavu.io import atomic_path, write_image
from dejavu.metrics.image import ssim
from dejavu.metrics.lpips import get_lpips
from dejavu.model.avatar_model import AvatarModel
from dejavu.model.blend import BlendScheme, compose_delta
from dejavu.model.rigid import apply_rigid, centred
from dejavu.personalize.config import PersonalizeConfig
from dejavu.personalize.frames import FrameSet, downsample_batch, scale_intrinsics
from dejavu.render.camera import camera_centres, orbit_about

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
_RESERVE_S = 5.0  # seconds kept back from a budget for saving the avatar
COARSE_FACTOR = 2  # the coarse phase's targets are 1/COARSE_FACTOR of the resolution a side


@dataclass
class TrainState:
    """What a checkpoint holds: stage (1 | 2), steps done in total and in stage 1, the learnt maps."""

    stage: int = 1
    step: int = 0
    stage1_steps: int | None = None  # known once stage 1 has ended (or planned without a budget)
    delta: torch.Tensor | None = None  # (1, 13, S, S)
    blendmaps: torch.Tensor | None = None  # (K, 13, S, S)
    elapsed: float = 0.0  # training seconds spent before this process
    history: list = field(default_factory=list)  # [{"step", "stage", "loss", "psnr"}] every few steps
    optim: dict | None = None  # {"optim": ..., "sched": ...} state dicts to restore (resume only)
    mean_offsets: torch.Tensor | None = None  # (13, S, S) the mean the deltas were trained on
    pose: torch.Tensor | None = None  # (T, 6) per-frame pose corrections (dejavu.personalize.pose), if learnt
    run: dict | None = None  # what the run is made from: input hash, settings (Trainer.run_record); None if older


class Trainer:
    """Runs the two stages for one person. Build it, then call :meth:`run`.

    Args:
        head: the ``HeadModel``; uvmap: ``UVGaussianMap`` on it (side S).
        frames: training frames (targets at resolution R, their cameras and parameters).
        mean_offsets: (13, S, S) mean UV offsets (network units).
        blend: the blend-weight scheme (K = cfg.n_blendmaps).
        cfg: the configuration. work_dir: where checkpoints and previews go.
        device: torch device. deadline: optional ``time.time()`` budget end.
        seen: (S, S) how well the training views see each texel, in [0, 1]
            (:func:`dejavu.recon.photo_texture.best_view_weight`), for ``cfg.w_unseen_color``.
    """

    def __init__(self, head, uvmap, frames: FrameSet, mean_offsets: torch.Tensor, blend: BlendScheme,
                 cfg: PersonalizeConfig, work_dir: str | Path, device: torch.device,
                 deadline: float | None = None, progress: bool = True, seen: torch.Tensor | None = None):
        self.head, self.uvmap, self.frames, self.cfg, self.device = head, uvmap, frames, cfg, device
        self.mean = mean_offsets.to(device)[None]  # (1, 13, S, S)
        self.blend = blend
        self.work_dir = Path(work_dir)
        self.deadline = deadline
        self.progress = progress
        self.identity = frames.identity(device)
        self.scale_weight = uvmap.mask.float()[None].to(device)  # (1, S, S)
        self.unseen_weight = None if seen is None else (self.scale_weight * (1 - seen.to(device).clamp(0, 1)))
        self.lpips = None
        if cfg.w_lpips > 0:
            self.lpips = get_lpips(cfg.lpips_net, device)
        #: seconds of the recent steps, coarse (True) and full-resolution (False) apart: their rates differ
        self._step_times: dict[bool, list[float]] = {True: [], False: []}
        self._budget: float | None = None  # seconds from the first run's start to the deadline
        #: saved with each checkpoint so that --resume can tell it continues the same run (input, settings)
        self.run_record: dict = {}
        self.bases = None  # read by _initial_maps while the bases are computed
        self.bases = self._precompute_bases()
        self.w_position = cfg.position_weight(len(frames))
        self.w_unseen_scale = cfg.unseen_scale_weight(len(frames))
        self.w_ray = cfg.ray_weight(len(frames))
        self.rays = self._view_rays() if self.w_ray > 0 else None
        self.fade_outside = cfg.fade_outside_for(len(frames))

    @torch.no_grad()
    def _precompute_bases(self, chunk: int = 32, max_bytes: float = 1.5e9) -> torch.Tensor | None:
        """Initial maps (T, 13, S, S) of every frame (their vertices never change), if they fit in memory."""
        T, S = len(self.frames), self.uvmap.size
        if T * ch.N_CHANNELS * S * S * 4 > max_bytes:
            return None
        return torch.cat([self._initial_maps(self.frames.batch(torch.arange(s, min(s + chunk, T)), self.device))
                          for s in range(0, T, chunk)])

    @torch.no_grad()
    def _initial_maps(self, batch: dict, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Initial maps (B, 13, S, S) of a batch's frames: the precomputed ones of training frames ``idx`` when
        they are held, else from the head model at the frames' parameters."""
        if self.bases is not None and idx is not None:
            return self.bases[idx.to(self.bases.device)]
        return self.uvmap.initial_map(self.head(**self.identity, **batch["params"].kwargs()))

    @torch.no_grad()
    def _view_rays(self, chunk: int = 32) -> torch.Tensor:
        """(1, 3, S, S) unit directions from the training cameras to each texel's surface point, averaged over
        the frames (for one photo: its camera's rays), for the along-ray regulariser."""
        T, total = len(self.frames), 0.0
        for s in range(0, T, chunk):
            idx = torch.arange(s, min(s + chunk, T))
            b = self.frames.batch(idx, self.device)
            base = self._initial_maps(b, idx)
            w2c = b["world_to_cam"]
            rays = torch.nn.functional.normalize(base[:, ch.XYZ] - camera_centres(w2c)[:, :, None, None], dim=1)
            total = total + rays.sum(0, keepdim=True)
        return torch.nn.functional.normalize(total, dim=1) * self.scale_weight[:, None]

    # -- one step -----------------------------------------------------------------------------
    def render_batch(self, batch: dict, delta: torch.Tensor, idx: torch.Tensor | None = None,
                     pose: torch.Tensor | None = None, with_gaussians: bool = False):
        """Render frames ``idx`` of ``batch`` with offsets mean + ``delta`` (B|1, 13, S, S) -> rgb (B, 3, R, R)
        and alpha (B, 1, R, R), and with ``with_gaussians`` the rendered Gaussians (B, N) too. ``pose`` (T, 6):
        every training frame's pose correction; rows ``idx`` (centred) move the frames' Gaussians."""
        base = self._initial_maps(batch, idx)
        g = self.uvmap.to_gaussians(self.uvmap.apply_offsets(base, self.mean + delta))
        if pose is not None and idx is not None:
            g = apply_rigid(g, centred(pose, idx.to(pose.device)))
        R = batch["images"].shape[-1]
        out = g.render(batch["world_to_cam"], batch["K"], R, R, background=(1.0, 1.0, 1.0),
                       backend=self.cfg.render_backend)
        rgb, alpha = out.rgb.permute(0, 3, 1, 2), out.alpha.permute(0, 3, 1, 2)
        return (rgb, alpha, g) if with_gaussians else (rgb, alpha)

    def delta_for(self, stage: int, params: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Per-frame delta (B|1, 13, S, S): the global delta (stage 1) or blended blendmaps (stage 2)."""
        if stage == 1:
            return params
        return compose_delta(self.blend.weights(expression), params)

    def loss(self, stage: int, stage_step: int, step: int, pred: torch.Tensor, batch: dict,
             delta: torch.Tensor, alpha: torch.Tensor | None = None, gaussians: Gaussians | None = None,
             idx: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        cfg, target = self.cfg, batch["images"]
        # where the crop left the source frame there is no ground truth
        if self.fade_outside and alpha is not None and batch["masks"] is not None:
            pred = losses.fade_outside(pred, alpha, batch["masks"])
        pred = losses.fill_unseen(pred, target, batch["seen"])
        if alpha is not None and batch["masks"] is not None:
            alpha = losses.fill_unseen(alpha, batch["masks"], batch["seen"])
        terms = {"huber": cfg.w_huber * losses.huber(pred, target, delta=cfg.huber_delta)}
        lpips_on = self.lpips is not None and (stage == 2 or stage_step >= cfg.lpips_start)
        if lpips_on and step % max(1, cfg.lpips_every) == 0:
            n = max(1, cfg.lpips_batch)
            terms["lpips"] = cfg.w_lpips * self.lpips(pred[:n], target[:n]).mean()
        if cfg.w_ssim > 0:

            terms["ssim"] = cfg.w_ssim * (1.0 - ssim(pred, target).mean())
        if cfg.w_alpha > 0 and alpha is not None and batch["masks"] is not None:
            terms["alpha"] = cfg.w_alpha * (alpha - batch["masks"]).abs().mean()
        if self.w_position > 0:
            terms["position"] = self.w_position * losses.position_regularizer(delta[:, ch.XYZ], self.uvmap.position_weight)
        if self.rays is not None:
            terms["ray"] = self.w_ray * losses.ray_regularizer(delta[:, ch.XYZ], self.rays, self.uvmap.position_weight)
        terms["scale"] = cfg.w_scale * losses.scale_regularizer(delta[:, ch.LOG_SCALE], self.scale_weight)
        if cfg.w_needle > 0:  # the start's log-scales are isotropic, so mean + delta carries the axis ratios
            terms["needle"] = cfg.w_needle * losses.needle_regularizer(
                (self.mean + delta)[:, ch.LOG_SCALE], self.scale_weight, cfg.needle_ratio)
        if cfg.w_ray_needle > 0 and gaussians is not None:
            terms["ray_needle"] = cfg.w_ray_needle * losses.ray_needle_regularizer(
                gaussians.means, gaussians.quats, gaussians.scales, camera_centres(batch["world_to_cam"]),
                gaussians.opacities.detach(), cfg.ray_needle_ratio)
        if cfg.w_unseen_color > 0 and self.unseen_weight is not None:
            terms["unseen_color"] = cfg.w_unseen_color * losses.color_regularizer(delta[:, ch.COLOR],
                                                                                  self.unseen_weight)
        if self.w_unseen_scale > 0 and self.unseen_weight is not None:
            terms["unseen_scale"] = self.w_unseen_scale * losses.scale_regularizer(delta[:, ch.LOG_SCALE],
                                                                                  self.unseen_weight)
        if cfg.w_side_silhouette > 0 and gaussians is not None:
            terms["side_silhouette"] = cfg.w_side_silhouette * self.side_silhouette(batch, gaussians, step, idx)
        if stage == 2 and cfg.w_feature > 0 and batch["feature"] is not None:
            terms["feature"] = losses.feature_mask_huber(pred, target, batch["feature"], weight=cfg.w_feature,
                                                         delta=cfg.huber_delta)
        return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}

    def side_silhouette(self, batch: dict, gaussians: Gaussians, step: int, idx: torch.Tensor | None = None
                        ) -> torch.Tensor:
        """Mean alpha of ``gaussians`` (the batch's, B frames) outside the start's silhouette seen from the side.

        The first ``cfg.side_views`` frames' cameras are turned about the head centre by a yaw drawn from
        ``cfg.side_yaw_deg`` (either sign; the draw depends on ``step`` alone, so a resumed run repeats it) and
        both the avatar and its start (mean offsets, no delta) are rendered at ``cfg.side_resolution``. Only
        alpha beyond the start's silhouette, widened by ``cfg.side_margin`` of the image side, counts: the
        term removes what grows out of the head where no view sees it, and leaves the frames and their masks
        to decide everything inside (the hair's outline seen from the front, holes). ``idx``: the batch's
        training frames (their initial maps are held), or None.
        """
        cfg = self.cfg
        n = min(cfg.side_views, gaussians.means.shape[0])
        gen = torch.Generator().manual_seed(int(step))
        lo, hi = np.deg2rad(cfg.side_yaw_deg[0]), np.deg2rad(cfg.side_yaw_deg[1])
        sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
        yaw = (lo + (hi - lo) * torch.rand(n, generator=gen)) * sign
        g = gaussians.frames(slice(0, n))
        w2c = orbit_about(batch["world_to_cam"][:n], g.means.detach().mean(1), yaw.to(g.means))
        R = cfg.side_resolution
        K = scale_intrinsics(batch["K"][:n], batch["images"].shape[-1], R)
        alpha = g.render(w2c, K, R, R, backend=cfg.render_backend).alpha  # (n, R, R, 1)
        with torch.no_grad():
            # the start of the n turned frames only (not the whole batch's initial maps, then a slice of them)
            base = self._initial_maps({"params": batch["params"][:n]}, None if idx is None else idx[:n])
            start = self.uvmap.to_gaussians(self.uvmap.apply_offsets(base, self.mean))
            inside = start.render(w2c, K, R, R, backend=cfg.render_backend).alpha.permute(0, 3, 1, 2)
            r = max(1, round(cfg.side_margin * R))
            inside = torch.nn.functional.max_pool2d(inside, 2 * r + 1, stride=1, padding=r).permute(0, 2, 3, 1)
        return (alpha - inside).clamp_min(0.0).mean()

    # -- loop ---------------------------------------------------------------------------------
    def run(self, state: TrainState | None = None) -> TrainState:
        """Train both stages from ``state`` (a fresh one by default, or a loaded checkpoint)."""
        from tqdm.auto import tqdm

        state = self._initial_state(state)
        t_start = time.time()
        if self.deadline is not None:
            self._budget = self.deadline - t_start + state.elapsed
        bar = tqdm(total=self._planned_total(state), initial=state.step, disable=not self.progress,
                   desc="personalize", unit="step", dynamic_ncols=True)
        try:
            while state.stage == 1 or state.stage == 2:
                params, pose, opt, sched, stage_step = self._stage_optimizer(state)
                while not self._stage_done(state, stage_step, t_start):
                    pred, batch, loss, terms = self._step(state, stage_step, params, pose, opt, sched)
                    stage_step += 1
                    self._after_step(state, t_start, bar, pred, batch, loss, terms, params, pose, opt, sched)
                self._keep(state, params, pose)
                self._end_stage(state, t_start)
            state.elapsed += time.time() - t_start
        finally:
            bar.close()
        return state

    def _initial_state(self, state: TrainState | None) -> TrainState:
        """``state``, or a fresh one, with a zero delta, zero pose corrections (when learnt) and, without a
        deadline, the planned stage-1 length filled in."""
        cfg, S = self.cfg, self.uvmap.size
        state = state or TrainState()
        if state.delta is None:
            state.delta = torch.zeros(1, ch.N_CHANNELS, S, S)
        if cfg.lr_pose > 0 and state.pose is None:
            state.pose = torch.zeros(len(self.frames), 6)
        if self.deadline is None and state.stage1_steps is None:
            state.stage1_steps = cfg.stage_steps()[0]
        return state

    def _stage_optimizer(self, state: TrainState):
        """The current stage's parameters (delta (1, 13, S, S) or blendmaps (K, 13, S, S)), pose corrections
        (T, 6) or None, Adam with its step schedule (restored from the checkpoint) and the step within the stage."""
        cfg = self.cfg
        if state.stage == 1:
            params = state.delta.to(self.device).clone().requires_grad_(True)
            first = state.step
        else:
            params = state.blendmaps.to(self.device).clone().requires_grad_(True)
            first = state.step - state.stage1_steps
        groups = [{"params": [params], "lr": cfg.lr}]
        pose = None
        if state.pose is not None:
            pose = state.pose.to(self.device).clone().requires_grad_(True)
            groups.append({"params": [pose], "lr": cfg.lr_pose})
        opt = torch.optim.Adam(groups)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg.lr_decay_every), gamma=cfg.lr_decay)
        self._load_optimizer(state, opt, sched)
        return params, pose, opt, sched, first

    def _step(self, state: TrainState, stage_step: int, params: torch.Tensor, pose: torch.Tensor | None, opt,
              sched) -> tuple[torch.Tensor, dict, torch.Tensor, dict]:
        """One optimisation step on a sampled batch: (prediction (B, 3, H, W), batch, loss, loss terms)."""
        t0 = time.time()
        coarse = self._coarse(state)
        idx = self._sample(state.step)
        batch = self.frames.batch(idx, self.device)
        if coarse:
            batch = downsample_batch(batch, COARSE_FACTOR)
        delta = self.delta_for(state.stage, params, batch["params"].expression)
        pred, alpha, g = self.render_batch(batch, delta, idx, pose, with_gaussians=True)
        loss, terms = self.loss(state.stage, stage_step, state.step, pred, batch, delta, alpha, g, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        state.step += 1
        self._step_times[coarse].append(time.time() - t0)
        return pred, batch, loss, terms

    def _after_step(self, state: TrainState, t_start: float, bar, pred: torch.Tensor, batch: dict,
                    loss: torch.Tensor, terms: dict, params: torch.Tensor, pose: torch.Tensor | None, opt,
                    sched) -> None:
        """Progress, history, the state kept, previews and checkpoints after a step."""
        cfg = self.cfg
        seen_pred = losses.fill_unseen(pred.detach(), batch["images"], batch["seen"])
        psnr = float(-10 * torch.log10(((seen_pred - batch["images"]) ** 2).mean().clamp_min(1e-10)))
        if state.step % 5 == 0 or state.step == 1:
            state.history.append({"step": state.step, "stage": state.stage, "loss": float(loss.detach()), "psnr": psnr,
                                  **terms})
        bar.total = max(self._planned_total(state, t_start), state.step)
        bar.set_postfix(stage=state.stage, loss=f"{float(loss.detach()):.4f}", psnr=f"{psnr:.2f}")
        bar.update(1)
        self._keep(state, params, pose)
        if cfg.preview_every and state.step % cfg.preview_every == 0:
            self.write_preview(state.step, pred.detach(), batch["images"])
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
            self.save_checkpoint(state, opt, sched, time.time() - t_start)

    def _end_stage(self, state: TrainState, t_start: float) -> None:
        """Stage 1 done: every blendmap starts from its delta, checkpointed; stage 2 done: the run is."""
        if state.stage == 1:
            state.stage1_steps = state.step
            state.blendmaps = state.delta.expand(self.cfg.n_blendmaps, -1, -1, -1).clone()
            state.stage = 2
            state.optim = None
            self.save_checkpoint(state, None, None, time.time() - t_start)
        else:
            state.stage = 3  # done

    def _keep(self, state: TrainState, params: torch.Tensor, pose: torch.Tensor | None = None) -> None:
        if pose is not None:
            state.pose = pose.detach().cpu().clone()
        if state.stage == 1:
            state.delta = params.detach().cpu().clone()
        else:
            state.blendmaps = params.detach().cpu().clone()

    def _sample(self, step: int) -> torch.Tensor:
        """B frame indices for ``step`` (deterministic per seed and step, so resumes repeat the run)."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
        n = len(self.frames)
        B = min(self.cfg.batch_size, n)
        return torch.randperm(n, generator=g)[:B]

    def _coarse(self, state: TrainState, now: float | None = None) -> bool:
        """Whether the next step is in the coarse phase: before ``coarse_fraction`` of the steps, or with a
        budget, while more than ``1 - coarse_fraction`` of it is left."""
        f = self.cfg.coarse_fraction
        if f <= 0:
            return False
        if self.deadline is None or self._budget is None:
            return state.step < round(self.cfg.steps * f)
        return self.deadline - (time.time() if now is None else now) > (1 - f) * self._budget

    def step_seconds(self, coarse: bool = False) -> list[float]:
        """Wall seconds of each step so far in this process, of the coarse or the full-resolution phase."""
        return list(self._step_times[coarse])

    def _rate(self, coarse: bool = False) -> float | None:
        """Recent seconds per step of the coarse or full-resolution phase (the first step, with compilation,
        left out); a full-resolution step not yet measured is taken as COARSE_FACTOR^2 coarse ones."""
        times = self._step_times[coarse]
        times = times[1:] if len(times) > 1 else times
        if times:
            return float(np.median(times[-20:]))
        if not coarse and self._step_times[True]:
            return COARSE_FACTOR ** 2 * self._rate(True)
        return None

    def _planned_total(self, state: TrainState, t_start: float | None = None) -> int:
        if self.deadline is None:
            return self.cfg.steps
        now = time.time()
        left = max(0.0, self.deadline - now - _RESERVE_S)
        fine_left = left
        if self._coarse(state, now):
            fine_left = min(left, (1 - self.cfg.coarse_fraction) * self._budget)
        rates = self._rate(True), self._rate(False)
        if (left > fine_left and rates[0] is None) or (fine_left > 0 and rates[1] is None):
            return self.cfg.steps
        return state.step + int((left - fine_left) / (rates[0] or 1.0) + fine_left / (rates[1] or 1.0))

    def _stage_done(self, state: TrainState, stage_step: int, t_start: float) -> bool:
        if self.deadline is None:
            s1, s2 = self.cfg.stage_steps()
            return stage_step >= (s1 if state.stage == 1 else s2)
        rate = self._rate(self._coarse(state)) or 0.0
        if time.time() + rate > self.deadline - _RESERVE_S:
            return True
        if state.stage == 1 and sum(map(len, self._step_times.values())) >= 3:
            total = self._planned_total(state, t_start)
            return state.step >= max(1, round(total * self.cfg.stage1_fraction))
        return False

    # -- files --------------------------------------------------------------------------------
    def write_preview(self, step: int, pred: torch.Tensor, target: torch.Tensor, n: int = 4) -> Path:
        """``train/previews/step_XXXXXX.png``: up to ``n`` rows of render | target."""

        rows = torch.cat([pred[:n], target[:n]], dim=3)  # (n, 3, R, 2R)
        grid = rows.permute(0, 2, 3, 1).reshape(-1, rows.shape[3], 3).clamp(0, 1).cpu().numpy()
        return write_image(self.work_dir / "previews" / f"step_{step:06d}.png", grid)

    def save_checkpoint(self, state: TrainState, opt=None, sched=None, seconds: float = 0.0) -> Path:
        """Atomic ``train/checkpoint.pt`` (plain tensors and numbers; loaded with weights_only)."""

        payload = {
            "stage": state.stage, "step": state.step, "stage1_steps": state.stage1_steps,
            "delta": state.delta, "blendmaps": state.blendmaps, "elapsed": state.elapsed + seconds,
            "history": state.history, "optim": None if opt is None else opt.state_dict(),
            "sched": None if sched is None else sched.state_dict(), "mean_offsets": self.mean[0].detach().cpu(),
            "uv_size": self.uvmap.size, "n_frames": len(self.frames), "pose": state.pose, "run": self.run_record,
        }
        path = self.work_dir / CHECKPOINT_NAME
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    def _load_optimizer(self, state: TrainState, opt, sched) -> None:
        if state.optim is not None:
            try:
                opt.load_state_dict(state.optim["optim"])
            except ValueError:  # another number of parameter groups: --refine-pose differs from the run's

                raise DejavuError(f"{self.work_dir / CHECKPOINT_NAME}: made with other settings (--refine-pose); "
                                  "resume with the settings it was made with, or delete it to start over") from None
            sched.load_state_dict(state.optim["sched"])
            state.optim = None


def load_checkpoint(work_dir: str | Path, uv_size: int) -> TrainState | None:
    """The state saved in ``work_dir/checkpoint.pt``, or None if there is none."""

    path = Path(work_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DejavuError(f"{path}: unreadable checkpoint ({exc.__class__.__name__}); delete it to start over") from None
    missing = [k for k in ("stage", "step", "stage1_steps", "delta", "blendmaps", "elapsed", "history", "optim")
               if not isinstance(data, dict) or k not in data]
    if missing:
        raise DejavuError(f"{path}: not a personalization checkpoint ({missing[0]!r} is missing); delete it to start over")
    if data.get("uv_size") != uv_size:
        raise DejavuError(f"{path}: checkpoint is for UV size {data.get('uv_size')}, not {uv_size}; use the same settings")
    for name in ("delta", "blendmaps", "mean_offsets", "pose"):
        value = data.get(name)
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise DejavuError(f"{path}: {name} holds NaN or infinite values; delete it to start over")
    return TrainState(stage=data["stage"], step=data["step"], stage1_steps=data["stage1_steps"], delta=data["delta"],
                      blendmaps=data["blendmaps"], elapsed=data["elapsed"], history=list(data["history"]),
                      optim=None if data["optim"] is None else {"optim": data["optim"], "sched": data["sched"]},
                      mean_offsets=data.get("mean_offsets"), pose=data.get("pose"), run=data.get("run") or None)


@torch.no_grad()
def render_frames(frames: FrameSet, gaussians_fn, device: torch.device, backend: str = "auto", chunk: int = 8,
                  corrections: torch.Tensor | None = None, with_alpha: bool = False):
    """Render every frame of ``frames`` -> (T, 3, R, R) in [0, 1] on CPU, white background (and the
    opacity (T, 1, R, R) with ``with_alpha``: a pair).

    ``gaussians_fn(batch) -> Gaussians`` gives a :meth:`FrameSet.batch`'s B frames of Gaussians;
    ``corrections`` (T, 6), if given, moves each frame rigidly (:func:`dejavu.personalize.pose.apply_rigid`).
    """
    rgb, alpha = [torch.zeros(0, 3, frames.resolution, frames.resolution)], [torch.zeros(0, 1, frames.resolution, frames.resolution)]
    R = frames.resolution
    for s in range(0, len(frames), chunk):
        idx = torch.arange(s, min(s + chunk, len(frames)))
        b = frames.batch(idx, device)
        g = gaussians_fn(b)
        if corrections is not None:
            g = apply_rigid(g, corrections[idx].to(device))
        out = g.render(b["world_to_cam"], b["K"], R, R, background=(1.0, 1.0, 1.0), backend=backend)
        rgb.append(out.rgb.permute(0, 3, 1, 2).cpu())
        alpha.append(out.alpha.permute(0, 3, 1, 2).cpu())
    return (torch.cat(rgb), torch.cat(alpha)) if with_alpha else torch.cat(rgb)


def batch_gaussians(model: AvatarModel, stage: str) -> Callable[[dict], Gaussians]:
    """``batch -> Gaussians``: the avatar at a :meth:`FrameSet.batch`'s parameters, at ``stage`` (for
    :func:`render_frames`, :func:`dejavu.personalize.pose.refine_poses`)."""
    return lambda b: model(**b["params"].kwargs(), stage=stage)


def render_avatar(model: AvatarModel, frames: FrameSet, stage: str, backend: str = "auto", chunk: int = 8,
                  corrections: torch.Tensor | None = None, with_alpha: bool = False):
    """:func:`render_frames` of the avatar at ``stage`` on its device -> (T, 3, R, R) in [0, 1] on CPU
    (and its opacity (T, 1, R, R) with ``with_alpha``)."""
    return render_frames(frames, batch_gaussians(model, stage), model.device, backend, chunk, corrections, with_alpha)

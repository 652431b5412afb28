"""Batched landmark fitting: per-frame 6-DoF camera + expression/jaw/eyes, one shared identity.

The camera replaces head pose (paper): each frame gets ``[yaw, pitch, roll, tx, ty, tz]``
(``dejavu.render.camera``); one field of view over the crop for all frames, 20 deg or, for a video
whose landmarks determine it, estimated (:func:`estimate_fov`). The loss is the weighted 2D reprojection
error of the head's MediaPipe-478 landmarks against detected landmarks (crop pixels; weights from
``head.landmark_weight``, iris points only for heads with eyes) plus priors and, for videos,
second-difference smoothness of expression, jaw, eyes and camera. All frames are optimised at
once with Adam (no per-frame loops):

1. keyframes (up to ``n_keyframes`` spread over the video; the single image for photos):
   rigid camera on stable points, then everything including the shared identity;
2. every frame, in chunks of ``chunk_size``, identity fixed, warm-started by interpolating the
   keyframes (videos): rigid, then expression/jaw/eyes/camera.

Expressions: FLAME-like PCA coefficients get an L2 prior; activation heads (built-in ARKit units,
recognised by ``jawOpen`` among ``head.expr_names`` or ``info["expression_range"]``) are kept in
[0, 1] by projection after each step, with an L1 + L2 prior.

Landmarks are skinned as points (:class:`LandmarkModel`), which makes one step cheap.
Letters: B frames, L = 478 landmarks, V vertices, Ns/Ne identity/expression sizes.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn

from dejavu.head.base import JOINT_EYE_L, JOINT_EYE_R, JOINT_JAW, HeadModel, batch_rodrigues, lbs
from dejavu.head.detail import detail_basis, prior_gram
from dejavu.head.params import HeadParams
from dejavu.render.camera import DEFAULT_FOV_DEG, intrinsics, pose6_to_world_to_cam, project_points
from dejavu.track.landmarks import STABLE

log = logging.getLogger(__name__)


@dataclass
class FitConfig:
    """Every weight and step count of the fitter (saved with each tracking result)."""

    fov_deg: float | None = None
    """Camera field of view over the crop width, degrees. None: for videos, estimated from the
    keyframes' landmarks where they clearly prefer another than ``DEFAULT_FOV_DEG`` (:func:`estimate_fov`,
    docs/TRACKING.md "Field of view"); for photos ``DEFAULT_FOV_DEG`` (one view barely constrains it)."""
    fov_range: tuple[float, float] = (10.0, 60.0)
    """Degrees an estimated FOV is kept within."""
    fov_min_gain: float = 0.01
    """An estimated FOV replaces ``DEFAULT_FOV_DEG`` only if it lowers the keyframes' landmark RMSE by at
    least this fraction (else the landmarks do not determine it)."""
    n_keyframes: int = 16
    """Frames used to estimate the shared identity (spread evenly)."""
    chunk_size: int = 256
    """Frames optimised together in stage 2 (memory bound for long videos)."""
    key_rigid_steps: int = 40
    key_steps: int = 160
    rigid_steps: int = 15
    steps: int = 50
    lr_rot: float = 0.01
    """Adam step for camera angles, radians."""
    lr_trans: float = 0.002
    """Adam step for camera translation, metres."""
    lr_expr: float = 0.05
    lr_shape: float = 0.05
    lr_jaw: float = 0.01
    lr_eyes: float = 0.02
    w_shape: float = 0.02
    """L2 prior on identity coefficients (per coefficient, summed)."""
    w_expr: float = 0.01
    """L2 prior on expression coefficients."""
    w_expr_l1: float = 0.05
    """Extra L1 prior for activation (ARKit) expressions."""
    w_jaw: float = 20.0
    """L2 prior on jaw angles (radians); sideways/twist components get 10x."""
    w_eyes: float = 2.0
    w_smooth: float = 50.0
    """Second-difference smoothness for videos (per frame, summed over parameters)."""
    smooth_camera_scale: float = 10.0
    """Extra factor on camera second differences."""
    detail: bool = True
    """Fit per-person vertex offsets with the identity (``dejavu.head.detail``)."""
    detail_sigma_mm: float = 8.0
    detail_spacing_mm: float = 6.0
    w_detail: float = 1.0
    """L2 prior on the offsets, per mm^2 averaged over the vertices the field reaches."""
    lr_detail: float = 0.1
    """Adam step for the offset coefficients, millimetres."""


def fast_photo_config() -> FitConfig:
    """Fewer keyframe steps (30 rigid + 100) for one photo where latency counts (``dejavu reconstruct``).

    On the four sample photos: landmark RMSE 1.42-1.53 px instead of 1.38-1.49 px, for about 45% less
    fitting time (the fit is ~1 s of a 5 s command).
    """
    return FitConfig(key_rigid_steps=30, key_steps=100)


@dataclass
class FitResult:
    """Fitted parameters; tensors on CPU, float32."""

    shape: torch.Tensor  # (Ns,)
    vertex_offsets: torch.Tensor  # (V, 3) per-person rest-pose offsets, metres (zeros if not fitted)
    params: HeadParams  # B frames: expression (B, Ne), jaw (B, 3), eyes (B, 6)
    pose6: torch.Tensor  # (B, 6) [yaw, pitch, roll, tx, ty, tz]
    world_to_cam: torch.Tensor  # (B, 4, 4)
    K: torch.Tensor  # (B, 3, 3) crop intrinsics
    projected: torch.Tensor  # (B, L, 2) fitted landmarks, crop pixels
    error_px: torch.Tensor  # (B,) weighted landmark RMSE, crop pixels (nan for frames without landmarks)


def expression_bounds(head: HeadModel) -> tuple[float, float] | None:
    """(lo, hi) for activation expressions (built-in ARKit units), None for PCA expressions."""
    rng = head.assets.info.get("expression_range") if isinstance(head.assets.info, dict) else None
    if rng is not None:
        return (float(rng[0]), float(rng[1]))
    if "jawOpen" in head.expr_names or "eyeBlinkLeft" in head.expr_names:
        return (0.0, 1.0)
    return None


class LandmarkModel(nn.Module):
    """The head's 478 landmarks for given parameters, skinning the landmarks as points.

    Each landmark's rest position, identity/expression directions, pose correctives and skinning
    weights are its triangle's barycentric mix (exact for everything linear in the vertices); only
    the skinning differs from ``head.landmarks(head(...))``, by a second-order term (sub-millimetre;
    tested). One step then costs O(L) instead of O(V).
    """

    def __init__(self, head: HeadModel, basis: torch.Tensor | None = None):
        super().__init__()
        self.head = head
        tri = head.faces[head.landmark_faces]  # (L, 3)
        b = head.landmark_bary  # (L, 3)
        mix = lambda a: torch.einsum("lk,lk...->l...", b, a[tri])  # noqa: E731  (V, ...) -> (L, ...)
        self.register_buffer("template", mix(head.v_template), persistent=False)  # (L, 3)
        self.register_buffer("shapedirs", mix(head.shapedirs), persistent=False)  # (L, 3, Ns)
        self.register_buffer("exprdirs", mix(head.exprdirs), persistent=False)  # (L, 3, Ne)
        self.register_buffer("lbs_weights", mix(head.lbs_weights), persistent=False)  # (L, J)
        # joints = J_reg @ (v_template + shapedirs . shape): precomputed so no full-mesh work per step
        self.register_buffer("joint_template", head.j_regressor @ head.v_template, persistent=False)  # (J, 3)
        self.register_buffer("joint_shapedirs", torch.einsum("jv,vck->jck", head.j_regressor, head.shapedirs),
                             persistent=False)  # (J, 3, Ns)
        self.register_buffer("eye_j", torch.eye(len(head.joint_names)), persistent=False)
        self.posedirs = None
        if head.posedirs is not None:
            P = head.posedirs.shape[0]
            self.posedirs = mix(head.posedirs.reshape(P, -1, 3).transpose(0, 1)).transpose(0, 1).reshape(P, -1)
        if basis is not None:  # (V, C) vertex-offset basis -> its landmark (L, C) and joint (J, C) images
            self.register_buffer("detail_landmarks", mix(basis), persistent=False)
            self.register_buffer("detail_joints", head.j_regressor @ basis, persistent=False)
        self.i_jaw = head.joint_index(JOINT_JAW)
        self.i_eyes = (head.joint_index(JOINT_EYE_L), head.joint_index(JOINT_EYE_R)) if head.has_eyes else None

    def forward(self, shape: torch.Tensor, expression: torch.Tensor, jaw: torch.Tensor | None = None,
                eyes: torch.Tensor | None = None, detail: torch.Tensor | None = None) -> torch.Tensor:
        """shape (Ns,), expression (B, Ne), jaw (B, 3), eyes (B, 6) -> landmarks (B, L, 3) metres.

        ``detail`` (C, 3) millimetres: coefficients of the vertex-offset basis given at construction
        (vertex offsets = basis @ detail * 1e-3); only their landmark and joint images are evaluated.
        """
        B = expression.shape[0]
        joints = self.joint_template + self.joint_shapedirs @ shape  # (J, 3)
        rest = self.template + self.shapedirs @ shape  # (L, 3)
        if detail is not None:
            joints = joints + self.detail_joints @ detail * 1e-3
            rest = rest + self.detail_landmarks @ detail * 1e-3
        pts = rest + (expression @ self.exprdirs.reshape(-1, self.exprdirs.shape[-1]).T).reshape(B, -1, 3)
        rot = torch.zeros(B, len(self.head.joint_names), 3, dtype=expression.dtype, device=expression.device)
        if jaw is not None and self.i_jaw is not None:
            rot[:, self.i_jaw] = jaw
        if eyes is not None and self.i_eyes is not None:
            rot[:, self.i_eyes[0]] = eyes[:, :3]
            rot[:, self.i_eyes[1]] = eyes[:, 3:6]
        # lbs regresses joints as j_regressor @ v_for_joints: pass the joints with an identity regressor
        out, _ = lbs(pts, batch_rodrigues(rot), self.eye_j, self.head.parents, self.lbs_weights,
                     v_for_joints=joints.expand(B, -1, -1), posedirs=self.posedirs)
        return out


def landmark_weights(head: HeadModel) -> torch.Tensor:
    """(L,) weight of each landmark in the fit (the head's, iris points zero for heads without eyes)."""
    w = head.landmark_weight.clone()
    if not head.has_eyes:
        w[468:] = 0.0  # iris points only mean something on an eyeball that can turn
    return w


def frontal_pose(target: torch.Tensor, w: torch.Tensor, model_pts: torch.Tensor, f: float, size: int) -> torch.Tensor:
    """Frontal camera placing the neutral landmarks (L, 3) over ``target`` (B, L, 2): (B, 6)."""
    wn = w / w.sum()
    c2 = (target * wn[None, :, None]).sum(1)  # (B, 2)
    spread_px = (((target - c2[:, None]) ** 2).sum(-1) * wn).sum(1).sqrt()
    c3 = (model_pts * wn[:, None]).sum(0)
    spread_m = (((model_pts[:, :2] - c3[:2]) ** 2).sum(-1) * wn).sum().sqrt()
    tz = f * spread_m / spread_px.clamp_min(1e-3) + c3[2]
    depth = tz - c3[2]
    pose = torch.zeros(target.shape[0], 6, dtype=target.dtype)
    pose[:, 3] = (c2[:, 0] - size / 2) * depth / f - c3[0]
    pose[:, 4] = (c2[:, 1] - size / 2) * depth / f + c3[1]
    pose[:, 5] = tz
    return pose


class _Problem:
    """The loss over one batch of frames; parameters live in a dict of leaf tensors."""

    def __init__(self, model: LandmarkModel, target: torch.Tensor, valid: torch.Tensor, size: int,
                 cfg: FitConfig, bounds, video: bool, gram: torch.Tensor | None = None):
        self.model, self.target, self.cfg, self.bounds, self.video = model, target, cfg, bounds, video
        self.gram = gram  # (C, C) prior matrix of the vertex-offset coefficients (dejavu.head.detail.prior_gram)
        self.size = size
        head = model.head
        self.w = landmark_weights(head)[None] * valid[:, None].float()  # (B, L)
        self.stable = torch.zeros_like(self.w)
        self.stable[:, STABLE] = self.w[:, STABLE]
        self.K = intrinsics(size, size, cfg.fov_deg, batch=target.shape[0])
        self.px_scale = 512.0 / size  # errors measured as if the crop were 512 px
        self.has_jaw = head.joint_index(JOINT_JAW) is not None
        self.has_eyes = head.has_eyes

    def project(self, p: dict) -> torch.Tensor:
        lm = self.model(p["shape"], p["expression"], p["jaw"] if self.has_jaw else None,
                        p["eyes"] if self.has_eyes else None, p.get("detail"))
        return project_points(lm, pose6_to_world_to_cam(p["pose6"]), self.K)

    def loss(self, p: dict, rigid: bool) -> torch.Tensor:
        cfg = self.cfg
        proj = self.project(p)
        w = self.stable if rigid else self.w
        sq = ((proj - self.target) * self.px_scale).pow(2).sum(-1)  # (B, L)
        data = (sq * w).sum() / w.sum().clamp_min(1e-6)
        if rigid:
            return data
        B = proj.shape[0]
        e = p["expression"]
        prior = cfg.w_shape * p["shape"].pow(2).sum()
        if "detail" in p and self.gram is not None:
            prior = prior + cfg.w_detail * (p["detail"] * (self.gram @ p["detail"])).sum()
        prior = prior + cfg.w_expr * e.pow(2).sum() / B
        if self.bounds is not None:
            prior = prior + cfg.w_expr_l1 * e.abs().sum() / B
        jaw_w = torch.tensor([1.0, 10.0, 10.0])
        prior = prior + cfg.w_jaw * (p["jaw"].pow(2) * jaw_w).sum() / B + cfg.w_eyes * p["eyes"].pow(2).sum() / B
        loss = data + prior
        if self.video and B >= 3:
            d2 = lambda x: (x[2:] - 2 * x[1:-1] + x[:-2]).pow(2).sum() / B  # noqa: E731
            cam = p["pose6"] * torch.tensor([1.0, 1.0, 1.0, 10.0, 10.0, 10.0])  # cm-ish for translation
            loss = loss + cfg.w_smooth * (d2(e) + d2(p["jaw"]) + d2(p["eyes"]) + cfg.smooth_camera_scale * d2(cam))
        return loss

    def run(self, p: dict, steps: int, rigid: bool, fit_shape: bool) -> None:
        cfg = self.cfg
        rot = p["pose6"][:, :3].detach().clone().requires_grad_(True)
        trans = p["pose6"][:, 3:].detach().clone().requires_grad_(True)
        groups = [{"params": [rot], "lr": cfg.lr_rot}, {"params": [trans], "lr": cfg.lr_trans}]
        free = {}
        if not rigid:
            for name, lr in (("expression", cfg.lr_expr), ("jaw", cfg.lr_jaw), ("eyes", cfg.lr_eyes)):
                free[name] = p[name].detach().clone().requires_grad_(True)
                groups.append({"params": [free[name]], "lr": lr})
            if fit_shape:
                free["shape"] = p["shape"].detach().clone().requires_grad_(True)
                groups.append({"params": [free["shape"]], "lr": cfg.lr_shape})
                if self.gram is not None:
                    free["detail"] = p["detail"].detach().clone().requires_grad_(True)
                    groups.append({"params": [free["detail"]], "lr": cfg.lr_detail})
        adam = _Adam(groups)
        for i in range(steps):
            q = {**p, **free, "pose6": torch.cat([rot, trans], 1)}
            params = [t for g in groups for t in g["params"]]
            grads = torch.autograd.grad(self.loss(q, rigid), params)
            # cosine decay to 10% of each group's learning rate
            adam.step(grads, 0.1 + 0.45 * (1 + math.cos(math.pi * i / max(steps, 1))))
            if self.bounds is not None and "expression" in free:
                with torch.no_grad():
                    free["expression"].clamp_(*self.bounds)
        p["pose6"] = torch.cat([rot, trans], 1).detach()
        for name, t in free.items():
            p[name] = t.detach()


class _Adam:
    """Plain Adam over parameter groups (torch.optim's first step imports torch._dynamo: seconds)."""

    def __init__(self, groups: list[dict], betas=(0.9, 0.999), eps: float = 1e-8):
        self.groups, self.betas, self.eps, self.t = groups, betas, eps, 0
        self.m = [torch.zeros_like(p) for g in groups for p in g["params"]]
        self.v = [torch.zeros_like(p) for g in groups for p in g["params"]]

    @torch.no_grad()
    def step(self, grads, lr_factor: float = 1.0) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        k = 0
        for g in self.groups:
            for p in g["params"]:
                self.m[k].mul_(b1).add_(grads[k], alpha=1 - b1)
                self.v[k].mul_(b2).addcmul_(grads[k], grads[k], value=1 - b2)
                p.sub_(g["lr"] * lr_factor / c1 * self.m[k] / ((self.v[k] / c2).sqrt() + self.eps))
                k += 1


def _rmse(proj: torch.Tensor, target: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    sq = (proj - target).pow(2).sum(-1)
    return ((sq * w).sum(1) / w.sum(1).clamp_min(1e-6)).sqrt()


def fit_landmarks(head: HeadModel, landmarks: torch.Tensor | np.ndarray, crop_size: int, valid=None,
                  video: bool = False, config: FitConfig | None = None, progress=None) -> FitResult:
    """Fit the head to detected landmarks.

    Args:
        head: the head model (CPU).
        landmarks: (B, 478, 2) detected landmarks in crop pixels.
        crop_size: crop side in pixels (intrinsics: FOV ``config.fov_deg`` over it).
        valid: (B,) bool, frames with landmarks (others are interpolated by smoothness / neighbours).
        video: add temporal smoothness.
        progress: optional callable(n_frames_done) for progress bars.

    Returns:
        :class:`FitResult` (error_px is the weighted landmark RMSE per frame, crop pixels).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster and immune to CPU contention
    try:
        return _fit(head, landmarks, crop_size, valid, video, config or FitConfig(), progress)
    finally:
        torch.set_num_threads(threads)


#: The head-dependent parts of a fit, kept per process (see :func:`_head_terms`), least recently used first.
_HEAD_TERMS: OrderedDict = OrderedDict()
_HEAD_TERMS_KEPT = 4


def _head_terms(head: HeadModel, cfg: FitConfig) -> tuple[LandmarkModel, torch.Tensor | None, torch.Tensor | None]:
    """(landmark model, vertex-offset basis (V, C) or None, its prior matrix (C, C) or None) for ``head``.

    Built once per head and detail setting in a process (~50 ms of CPU on the built-in head, against
    ~1 s for the fit of a person's photos; a data-preparation worker fits hundreds). Keyed by the
    head's asset fingerprint and device: a head model is a function of its assets, and the fit only
    reads these tensors.
    """
    key = (head.assets.fingerprint(), str(head.v_template.device), cfg.detail, cfg.detail_sigma_mm,
           cfg.detail_spacing_mm)
    terms = _HEAD_TERMS.get(key)
    if terms is None:
        basis = detail_basis(head, cfg.detail_sigma_mm * 1e-3, cfg.detail_spacing_mm * 1e-3) if cfg.detail else None
        terms = (LandmarkModel(head, basis), basis, prior_gram(basis) if basis is not None else None)
        _HEAD_TERMS[key] = terms
        if len(_HEAD_TERMS) > _HEAD_TERMS_KEPT:
            _HEAD_TERMS.popitem(last=False)
    _HEAD_TERMS.move_to_end(key)
    return terms


def _fit(head, landmarks, crop_size, valid, video, cfg, progress) -> FitResult:
    target = torch.as_tensor(np.asarray(landmarks), dtype=torch.float32)
    B = target.shape[0]
    valid = torch.ones(B, dtype=torch.bool) if valid is None else torch.as_tensor(np.asarray(valid), dtype=torch.bool)
    if not valid.any():
        raise ValueError("fit_landmarks: no frame has landmarks")
    model, basis, gram = _head_terms(head, cfg)
    bounds = expression_bounds(head)
    w = landmark_weights(head)
    with torch.no_grad():
        neutral = model(torch.zeros(head.n_shape), torch.zeros(1, head.n_expr))[0]
    z = lambda n, k: torch.zeros(n, k)  # noqa: E731

    # Stage 1: keyframes -> shared identity (and the field of view when it is to be estimated).
    idx_valid = torch.nonzero(valid).flatten()
    n_key = min(cfg.n_keyframes, len(idx_valid))
    key = idx_valid[torch.linspace(0, len(idx_valid) - 1, n_key).round().long()]

    def keyframes(fov: float) -> tuple[dict, float]:
        """Keyframe fit at this FOV: parameters and the weighted landmark RMSE (px at 512)."""
        kcfg = replace(cfg, fov_deg=fov)
        f = float(intrinsics(crop_size, crop_size, fov)[0, 0, 0])
        pk = {"shape": torch.zeros(head.n_shape), "expression": z(n_key, head.n_expr), "jaw": z(n_key, 3),
              "eyes": z(n_key, 6), "pose6": frontal_pose(target[key], w, neutral, f, crop_size)}
        if basis is not None:
            pk["detail"] = torch.zeros(basis.shape[1], 3)
        prob = _Problem(model, target[key], torch.ones(n_key, dtype=torch.bool), crop_size, kcfg, bounds,
                        video=False, gram=gram)
        prob.run(pk, cfg.key_rigid_steps, rigid=True, fit_shape=False)
        prob.run(pk, cfg.key_steps, rigid=False, fit_shape=True)
        with torch.no_grad():
            err = _rmse(prob.project(pk), target[key], w[None].expand(n_key, -1)) * prob.px_scale
        return pk, float(err.pow(2).mean().sqrt())

    if cfg.fov_deg is None and video:
        fov, pk = estimate_fov(keyframes, *cfg.fov_range, default=DEFAULT_FOV_DEG, min_gain=cfg.fov_min_gain)
    else:
        fov = DEFAULT_FOV_DEG if cfg.fov_deg is None else cfg.fov_deg
        pk, _ = keyframes(fov)
    cfg = replace(cfg, fov_deg=fov)
    f = float(intrinsics(crop_size, crop_size, cfg.fov_deg)[0, 0, 0])
    shape = pk["shape"]
    fixed, offsets = {}, torch.zeros(head.n_verts, 3)
    if basis is not None:  # the coefficients stay fixed for the other frames; the field is formed once
        fixed, offsets = {"detail": pk["detail"]}, basis @ pk["detail"] * 1e-3
    if progress:
        progress(0)
    if len(key) == B and not video:
        return _finish(model, head, pk, shape, offsets, target, valid, crop_size, cfg)

    # Stage 2: all frames in chunks, warm-started by interpolating the keyframes.
    params = _fit_frames(model, head, pk, key, {"shape": shape, **fixed}, target, valid, crop_size, cfg, bounds,
                         video, _init_pose_at(w, neutral, f, crop_size), progress)
    return _finish(model, head, params, shape, offsets, target, valid, crop_size, cfg)


def _init_pose_at(w: torch.Tensor, neutral: torch.Tensor, f: float, crop_size: int):
    """``targets (n, L, 2) -> (n, 6)``: each frame's own frontal camera for the neutral face (:func:`frontal_pose`)."""
    return lambda targets: frontal_pose(targets, w, neutral, f, crop_size)


def _fit_frames(model: LandmarkModel, head: HeadModel, pk: dict, key: torch.Tensor, fixed: dict,
                target: torch.Tensor, valid: torch.Tensor, crop_size: int, cfg: FitConfig, bounds, video: bool,
                init_pose, progress) -> dict[str, torch.Tensor]:
    """Stage 2: every frame's expression, jaw, eyes and camera (B, ...) in chunks of ``cfg.chunk_size``, the
    identity (``fixed``: shape, detail coefficients) held; videos start from the keyframes' ``pk`` at ``key``
    interpolated, unrelated images each from a neutral face seen frontally (``init_pose``)."""
    B = target.shape[0]
    out = {k: [] for k in ("expression", "jaw", "eyes", "pose6")}
    init = {k: _interpolate(key, pk[k], B) for k in out}
    for start in range(0, B, cfg.chunk_size):
        sl = slice(start, min(B, start + cfg.chunk_size))
        n = sl.stop - sl.start
        p = {**fixed, **{k: init[k][sl].clone() for k in out}}
        if not video:  # unrelated images: start each from its own frontal camera, neutral face
            p.update(expression=torch.zeros(n, head.n_expr), jaw=torch.zeros(n, 3), eyes=torch.zeros(n, 6),
                     pose6=init_pose(target[sl]))
        prob = _Problem(model, target[sl], valid[sl], crop_size, cfg, bounds, video=video)
        prob.run(p, cfg.rigid_steps, rigid=True, fit_shape=False)
        prob.run(p, cfg.steps, rigid=False, fit_shape=False)
        for k in out:
            out[k].append(p[k])
        if progress:
            progress(sl.stop - sl.start)
    return {k: torch.cat(v) for k, v in out.items()}


def estimate_fov(fit_at, lo: float, hi: float, default: float = DEFAULT_FOV_DEG, min_gain: float = 0.01,
                 step: float = 10.0) -> tuple[float, dict]:
    """The field of view (degrees, in [lo, hi]) whose keyframe fit leaves the least landmark error.

    The error is smooth in the FOV with one minimum (docs/TRACKING.md "Field of view", measured on both
    videos of ``../shared/data``), so one parabolic step finds it closely enough: fits at ``default``,
    ``default + step`` and ``default + 2 step``, then one at the parabola's vertex (clamped to the range).
    ``fit_at(fov) -> (params, rmse)``; each fit costs ~1 s on 2 cores, so this adds ~3 s to a video's
    tracking. Returns the best FOV fitted and its fit (reused, not refitted), or ``default`` and its fit
    when the best lowers the error by less than the fraction ``min_gain``: a flat error says the
    landmarks do not determine the FOV, and then the default, which the rest of the pipeline (the
    reconstruction network's training data) was made with, is the safer guess.
    """
    tried = {}
    for fov in (default, default + step, default + 2 * step):
        tried[fov] = fit_at(fov)
    e0, e1, e2 = (tried[f][1] for f in tried)
    curvature = e0 - 2 * e1 + e2
    if curvature > 0:
        vertex = default + step + 0.5 * step * (e0 - e2) / curvature
        vertex = round(min(max(vertex, lo), hi), 1)
        if vertex not in tried:
            tried[vertex] = fit_at(vertex)
    for fov, (_, rmse) in tried.items():
        log.info("tracking: FOV %.1f deg, keyframe landmark RMSE %.3f px", fov, rmse)
    best = min(tried, key=lambda k: tried[k][1])
    if tried[best][1] > (1.0 - min_gain) * tried[default][1]:
        best = default
    log.info("tracking: FOV %.1f deg", best)
    return best, tried[best][0]


def _interpolate(key: torch.Tensor, values: torch.Tensor, B: int) -> torch.Tensor:
    """Piecewise-linear interpolation of (K, D) keyframe ``values`` at frames ``key`` (K,) to (B, D)."""
    if len(key) == 1:
        return values.expand(B, -1).clone()
    frames = torch.arange(B, dtype=torch.float32)
    k = key.float()
    right = torch.searchsorted(k, frames).clamp(1, len(k) - 1)
    left = right - 1
    t = ((frames - k[left]) / (k[right] - k[left])).clamp(0, 1)[:, None]
    return values[left] * (1 - t) + values[right] * t


def _finish(model, head, p, shape, offsets, target, valid, crop_size, cfg) -> FitResult:
    B = target.shape[0]
    K = intrinsics(crop_size, crop_size, cfg.fov_deg, batch=B)
    with torch.no_grad():
        world_to_cam = pose6_to_world_to_cam(p["pose6"])
        # exact landmarks on the skinned mesh (the fit's point skinning differs by < 1 mm), in chunks
        n = cfg.chunk_size
        lm = torch.cat([head.landmarks(head(shape, p["expression"][c:c + n], p["jaw"][c:c + n], p["eyes"][c:c + n],
                                            vertex_offsets=offsets)) for c in range(0, B, n)])
        proj = project_points(lm, world_to_cam, K)
        w = landmark_weights(head)[None].expand(B, -1)
        err = _rmse(proj, target, w)
        err[~valid] = float("nan")
    params = HeadParams(p["expression"], p["jaw"], p["eyes"]).detach()
    return FitResult(shape.clone(), offsets.clone(), params, p["pose6"].clone(), world_to_cam, K, proj, err)


def config_dict(cfg: FitConfig) -> dict:
    return asdict(cfg)


__all__ = ["FitConfig", "FitResult", "fast_photo_config", "LandmarkModel", "fit_landmarks", "estimate_fov", "expression_bounds", "config_dict"]


class FrameFitter:
    """Live tracking's reference fit: one frame at a time with Adam, the identity fixed, warm-started.

    ``dejavu live`` uses :class:`dejavu.track.frame_fit.GaussNewtonFitter` (the same loss, minimised by
    Levenberg-Marquardt in a fraction of the time); this one stays as the reference it is measured against.

    The batched fitter above optimises a whole video at once; a live stream has one frame at a time and a
    known person (an avatar's shape and vertex offsets). Each call runs ``rigid_steps`` camera-only steps
    then ``steps`` steps of expression, jaw, eyes and camera (the losses and priors of :class:`_Problem`,
    no temporal smoothness) from the previous frame's result; the first frame starts frontal and neutral.

    Args:
        head: the head model (CPU). shape: (Ns,) identity. vertex_offsets: (V, 3) metres or None.
        crop_size: side of the crop the landmarks are given in, pixels (FOV ``config.fov_deg``, default 20 deg).
    """

    def __init__(self, head: HeadModel, shape: torch.Tensor, vertex_offsets: torch.Tensor | None, crop_size: int,
                 config: FitConfig | None = None, rigid_steps: int = 4, steps: int = 12):
        cfg = config or FitConfig()
        self.cfg = replace(cfg, fov_deg=cfg.fov_deg or DEFAULT_FOV_DEG)
        self.head, self.crop_size, self.rigid_steps, self.steps = head, crop_size, rigid_steps, steps
        self.shape = shape.detach().float().cpu()
        # The person's offsets as a 3-column "basis" with coefficients 1e3 * I (the model takes millimetres).
        basis = None if vertex_offsets is None else vertex_offsets.detach().float().cpu()
        self.model = LandmarkModel(head, basis)
        self.detail = None if basis is None else 1e3 * torch.eye(3)
        self.bounds = expression_bounds(head)
        self.prev: dict | None = None
        with torch.no_grad():
            self.neutral = self.model(self.shape, torch.zeros(1, head.n_expr), detail=self.detail)[0]

    def reset(self) -> None:
        """Forget the previous frame (the next one starts frontal and neutral), e.g. after the face was lost."""
        self.prev = None

    def __call__(self, landmarks: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        """landmarks (478, 2) crop pixels -> {expression (1, Ne), jaw (1, 3), eyes (1, 6), pose6 (1, 6)}."""
        target = torch.as_tensor(np.asarray(landmarks), dtype=torch.float32)[None]
        head = self.head
        if self.prev is None:
            f = float(intrinsics(self.crop_size, self.crop_size, self.cfg.fov_deg)[0, 0, 0])
            init = {"expression": torch.zeros(1, head.n_expr), "jaw": torch.zeros(1, 3), "eyes": torch.zeros(1, 6),
                    "pose6": frontal_pose(target, landmark_weights(head), self.neutral, f, self.crop_size)}
        else:
            init = {k: v.clone() for k, v in self.prev.items()}
        p = {"shape": self.shape, **init}
        if self.detail is not None:
            p["detail"] = self.detail
        prob = _Problem(self.model, target, torch.ones(1, dtype=torch.bool), self.crop_size, self.cfg, self.bounds,
                        video=False)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors, as fit_landmarks
        try:
            prob.run(p, self.rigid_steps if self.prev is not None else 4 * self.rigid_steps, rigid=True,
                     fit_shape=False)
            prob.run(p, self.steps if self.prev is not None else 4 * self.steps, rigid=False, fit_shape=False)
        finally:
            torch.set_num_threads(threads)
        self.prev = {k: p[k].detach() for k in ("expression", "jaw", "eyes", "pose6")}
        return dict(self.prev)

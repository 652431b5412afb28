"""Live tracking's per-frame fit: Levenberg-Marquardt on the landmark residuals, warm-started.

The objective is :class:`dejavu.track.fit.FrameFitter`'s (the batched tracker's weighted landmark
error, crop pixels scaled to 512, plus its expression, jaw and eye priors; no temporal smoothness) for
one frame with the identity fixed. Its residuals are 2 x 478 landmark coordinates and its unknowns
N = 15 + Ne (camera 6, expression Ne, jaw 3, eyes 6), so a Gauss-Newton step is a dense N x N solve
on the closed-form Jacobian (:mod:`dejavu.track.landmark_jacobian`). Warm-started from the previous
frame, one or two damped steps land where the Adam reference needs dozens (docs/WEB.md "Live").

Activation expressions (ARKit units, :func:`dejavu.track.fit.expression_bounds`) stay within their
bounds by a projected step: units at a bound whose gradient pushes outwards are held, the rest
solved for, the result clamped. Their L1 prior is linear there.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from dejavu.head.base import HeadModel
from dejavu.render.camera import DEFAULT_FOV_DEG, intrinsics
from dejavu.track.fit import (
    FitConfig,
    LandmarkModel,
    expression_bounds,
    frontal_pose,
    landmark_weights,
)
from dejavu.track.landmark_jacobian import (
    POSE,
    LandmarkJacobian,
    expression_slice,
    eyes_slice,
    jaw_slice,
)
from dejavu.track.landmarks import STABLE


@dataclass
class FrameFitConfig:
    """Iterations and damping of the per-frame Levenberg-Marquardt fit; priors and FOV from ``priors``."""

    iterations: int = 2
    """Levenberg-Marquardt iterations per frame after the first (warm-started from the previous frame). One
    already reaches the loss's minimum within 0.01% on real video; the second brings the expression
    coefficients, which the landmarks barely constrain along some directions, within ~0.002 of it
    (docs/experiments/2026-12-07-live-tracking.md)."""
    first_rigid_iterations: int = 8
    """Camera-only iterations on the stable landmarks for the first frame (from a frontal camera)."""
    first_iterations: int = 8
    """Full iterations on the first frame, after the camera-only ones."""
    damping: float = 1e-3
    """Initial damping, relative to the diagonal of the Gauss-Newton matrix (Marquardt scaling); divided by
    10 after an accepted step, multiplied by 10 after a rejected one (the step is then solved again)."""
    max_retries: int = 4
    """Rejected steps tried again with more damping, per iteration, before the iteration gives up."""
    priors: FitConfig = field(default_factory=FitConfig)
    """Prior weights (``w_expr``, ``w_expr_l1``, ``w_jaw``, ``w_eyes``) and ``fov_deg`` (None: 20 degrees)."""


class GaussNewtonFitter:
    """Fit one frame at a time with the identity fixed; same interface as :class:`dejavu.track.fit.FrameFitter`.

    Args:
        head: the head model (CPU). shape: (Ns,) identity. vertex_offsets: (V, 3) metres or None.
        crop_size: side of the crop the landmarks are given in, pixels.
    """

    def __init__(self, head: HeadModel, shape: torch.Tensor, vertex_offsets: torch.Tensor | None, crop_size: int,
                 config: FrameFitConfig | None = None):
        cfg = config or FrameFitConfig()
        self.cfg = replace(cfg, priors=replace(cfg.priors, fov_deg=cfg.priors.fov_deg or DEFAULT_FOV_DEG))
        pri = self.cfg.priors
        self.head, self.crop_size = head, crop_size
        basis = None if vertex_offsets is None else vertex_offsets.detach().float().cpu()
        model = LandmarkModel(head, basis)
        detail = None if basis is None else 1e3 * torch.eye(3)  # the offsets as a 3-column basis, millimetres
        K = intrinsics(crop_size, crop_size, pri.fov_deg)[0]
        self.f = float(K[0, 0])
        self.model = LandmarkJacobian(model, shape.detach().float().cpu(), detail, K)
        with torch.no_grad():
            self.neutral = model(shape.detach().float().cpu(), torch.zeros(1, head.n_expr), detail=detail)[0]
        ne, d = head.n_expr, torch.float64
        self.ne = ne
        # per-landmark residual scale: sqrt(w / sum w) x (512 / crop) makes r.r the reference's data term
        w = landmark_weights(head).to(d)
        stable = torch.zeros_like(w)
        stable[STABLE] = w[STABLE]
        scale = 512.0 / crop_size
        self.w_full = (w / w.sum()).sqrt() * scale
        self.w_rigid = (stable / stable.sum()).sqrt() * scale
        self.w_init = landmark_weights(head)
        # priors: theta^T diag(prior) theta + linear . theta
        prior = torch.zeros(self.model.n_params, dtype=d)
        prior[expression_slice(ne)] = pri.w_expr
        prior[jaw_slice(ne)] = pri.w_jaw * torch.tensor([1.0, 10.0, 10.0], dtype=d)
        prior[eyes_slice(ne)] = pri.w_eyes
        self.prior = prior
        self.bounds = expression_bounds(head)
        self.linear = torch.zeros_like(prior)
        if self.bounds is not None:
            self.linear[expression_slice(ne)] = pri.w_expr_l1
        self.lo = torch.full_like(prior, -torch.inf)
        self.hi = torch.full_like(prior, torch.inf)
        if self.bounds is not None:
            self.lo[expression_slice(ne)], self.hi[expression_slice(ne)] = self.bounds
        # the camera-only stage's step box: the camera free, every other parameter held
        self.lo_rigid = torch.zeros_like(prior)
        self.hi_rigid = torch.zeros_like(prior)
        self.lo_rigid[POSE], self.hi_rigid[POSE] = -torch.inf, torch.inf
        self.theta: torch.Tensor | None = None
        self.last_error_px = float("nan")
        """Weighted landmark RMSE of the last frame, crop pixels scaled to 512 (the fit's data term)."""

    def reset(self) -> None:
        """Forget the previous frame (the next one starts frontal and neutral), e.g. after the face was lost."""
        self.theta = None

    def __call__(self, landmarks: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        """landmarks (478, 2) crop pixels -> {expression (1, Ne), jaw (1, 3), eyes (1, 6), pose6 (1, 6)}, float32."""
        target = torch.as_tensor(np.asarray(landmarks), dtype=torch.float64)
        cfg = self.cfg
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors: one thread is faster and immune to CPU contention
        try:
            if self.theta is None:
                theta = torch.zeros(self.model.n_params, dtype=torch.float64)
                theta[POSE] = frontal_pose(target.float()[None], self.w_init, self.neutral, self.f, self.crop_size)[0]
                theta = self._solve(theta, target, cfg.first_rigid_iterations, rigid=True)
                theta = self._solve(theta, target, cfg.first_iterations, rigid=False)
            else:
                theta = self._solve(self.theta, target, cfg.iterations, rigid=False)
        finally:
            torch.set_num_threads(threads)
        self.theta = theta
        t = theta.float()[None]
        ne = self.ne
        return {"expression": t[:, expression_slice(ne)], "jaw": t[:, jaw_slice(ne)], "eyes": t[:, eyes_slice(ne)],
                "pose6": t[:, POSE]}

    def pack(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Parameters as this fitter returns them -> the vector theta (N,) float64."""
        return torch.cat([params[k].reshape(-1) for k in ("pose6", "expression", "jaw", "eyes")]).double()

    def landmark_rmse(self, params: dict[str, torch.Tensor], landmarks: torch.Tensor | np.ndarray) -> float:
        """Weighted landmark RMSE of ``params`` on ``landmarks`` (478, 2) crop pixels, scaled to a 512 crop."""
        proj, _ = self.model(self.pack(params), jacobian=False)
        r = (proj - torch.as_tensor(np.asarray(landmarks), dtype=torch.float64)) * self.w_full[:, None]
        return float((r * r).sum().sqrt())

    def objective(self, theta: torch.Tensor, target: torch.Tensor, rigid: bool = False) -> float:
        """The minimised loss at ``theta`` (N,) float64 for ``target`` (L, 2) crop pixels."""
        proj, _ = self.model(theta, jacobian=False)
        return self._loss(proj, theta, target, rigid)[0]

    def _loss(self, proj, theta, target, rigid) -> tuple[float, torch.Tensor]:
        r = (proj - target) * (self.w_rigid if rigid else self.w_full)[:, None]  # (L, 2)
        loss = (r * r).sum()
        if not rigid:
            loss = loss + (self.prior * theta * theta).sum() + (self.linear * theta).sum()
        return float(loss), r

    def _solve(self, theta: torch.Tensor, target: torch.Tensor, iterations: int, rigid: bool) -> torch.Tensor:
        """``iterations`` Levenberg-Marquardt steps from ``theta`` (N,); camera only when ``rigid``."""
        lam = self.cfg.damping
        w = self.w_rigid if rigid else self.w_full
        proj, jac = self.model(theta)
        loss, r = self._loss(proj, theta, target, rigid)
        for it in range(iterations):
            Jw = (jac * w[:, None, None]).reshape(-1, jac.shape[-1])
            H = Jw.T @ Jw
            g = Jw.T @ r.reshape(-1)
            if not rigid:
                H = H + torch.diag(self.prior)
                g = g + self.prior * theta + 0.5 * self.linear
            diag = H.diagonal().clamp_min(1e-12)
            lo, hi = (self.lo_rigid, self.hi_rigid) if rigid else (self.lo - theta, self.hi - theta)
            accepted = False
            for _ in range(self.cfg.max_retries + 1):
                step = box_qp(H + torch.diag(lam * diag), g, lo, hi)
                cand = theta + step
                cproj, cjac = self.model(cand, jacobian=it < iterations - 1)  # the last needs no Jacobian
                closs, cr = self._loss(cproj, cand, target, rigid)
                if closs < loss:
                    theta, jac, loss, r = cand, cjac, closs, cr
                    lam = max(lam / 10.0, 1e-9)
                    accepted = True
                    break
                lam *= 10.0
            if not accepted:
                break  # no step lowers the loss: at its minimum to float precision
        if not rigid:
            self.last_error_px = float((r * r).sum().sqrt())
        return theta


def box_qp(H: torch.Tensor, g: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, max_rounds: int = 10) -> torch.Tensor:
    """argmin over lo <= d <= hi of d^T H d / 2 + g^T d, for (N, N) positive-definite H and (N,) g, lo, hi.

    Active-set rounds: solve for the unconstrained entries with the others held at their bound; hold every
    entry that leaves its box; release held entries whose multiplier has the wrong sign; stop when neither
    happens (the exact minimiser) or after ``max_rounds`` (then clamped into the box). ``lo``/``hi`` may be
    -inf/+inf; an entry whose box is the single point 0 (``lo == hi == 0``) never moves.
    """
    at_lo = (lo >= 0) & (g > 0)  # held at a bound from the start: the gradient pushes out of the box
    at_hi = (hi <= 0) & (g < 0)
    at_lo |= (lo == 0) & (hi == 0)
    d = torch.zeros_like(g)
    for _ in range(max_rounds):
        held = at_lo | at_hi
        d = torch.where(at_lo, lo, torch.where(at_hi, hi, torch.zeros_like(g)))
        free = ~held
        if bool(free.any()):
            rhs = -(g[free] + H[free][:, held] @ d[held]) if bool(held.any()) else -g[free]
            d[free] = torch.linalg.solve(H[free][:, free], rhs)
        below, above = free & (d < lo), free & (d > hi)
        if bool(below.any() | above.any()):
            at_lo |= below
            at_hi |= above
            continue
        q = H @ d + g  # the multipliers of the held entries
        release = (at_lo & (q < 0) & (lo < hi)) | (at_hi & (q > 0) & (lo < hi))
        if not bool(release.any()):
            return d
        at_lo &= ~release
        at_hi &= ~release
    return torch.maximum(torch.minimum(d, hi), lo)

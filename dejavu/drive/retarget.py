"""Linear retargeting between the built-in head's 52 ARKit units and a FLAME model's expression space.

Both heads carry the same 478 MediaPipe landmarks (:attr:`HeadAssets.landmark_faces`), so their motions
can be compared point for point. Per unit, the landmark displacement it causes on its own head (exact:
blendshapes are linear) is carried into the other head's frame and size by a weighted similarity
(Procrustes) fit of the two neutral landmark sets, and the other head's parameters that reproduce it
best are solved for:

- ARKit -> FLAME: ridge least squares over FLAME's expression coefficients plus a jaw-opening angle
  (the jaw rotation's landmark Jacobian, by finite difference): a (52, n + 1) matrix. FLAME opens the
  mouth with its jaw joint, not an expression component, so ``jawOpen`` lands mostly on the angle.
- FLAME -> ARKit: ARKit weights are non-negative while FLAME coefficients are signed, so each
  component's positive and negative halves get their own non-negative least-squares fit over the 51
  built-in units other than ``jawOpen`` (FLAME's jaw rotation drives the built-in jaw joint directly):
  ``weights = clip(relu(exp) @ P + relu(-exp) @ N, 0, 1)``, linear in each half.

Only landmarks embedded on both heads count (weight = product of their landmark weights). The fit runs
once per pair of heads (a fraction of a second) and is cached in ``cache_dir()/retarget/`` under the
fingerprints of both heads' assets (geometry, bases and landmark embedding: a different FLAME file or
embedding gets its own maps). Its accuracy is stored with it: for each unit at full activation, the
RMS landmark motion to reproduce and the RMS landmark error left after retargeting, in millimetres.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dejavu.errors import DejavuError
from dejavu.head.base import HeadModel
from dejavu.io import atomic_path, cache_dir

log = logging.getLogger(__name__)

#: Bump when the fit changes: cached maps of older versions are ignored.
RETARGET_VERSION = "v1"
#: Fewer landmarks embedded on both heads than this and the fit is refused.
MIN_SHARED_LANDMARKS = 20


@dataclass
class RetargetConfig:
    """Settings of the map fit."""

    ridge: float = 1e-3
    """Tikhonov weight on the solved parameters, relative to the mean squared norm of the basis columns."""
    jaw_step_rad: float = 0.1
    """Jaw rotation (about +X) of the finite-difference Jacobian of the landmarks, radians."""


@dataclass
class RetargetMaps:
    """The fitted maps between ARKit weights (52) and FLAME parameters (n expression + jaw), with accuracy.

    arkit_to_flame: (52, n + 1) FLAME coefficients, then jaw-opening radians about +X, per unit weight.
    flame_pos_to_arkit, flame_neg_to_arkit: (n, 52) ARKit weights per unit of a positive / negative coefficient.
    arkit_error_mm / arkit_motion_mm: (52,) RMS landmark error after retargeting / motion to reproduce.
    flame_error_mm / flame_motion_mm: (n, 2) the same for each FLAME component at +1 and -1.
    """

    arkit_to_flame: np.ndarray
    flame_pos_to_arkit: np.ndarray
    flame_neg_to_arkit: np.ndarray
    arkit_error_mm: np.ndarray
    arkit_motion_mm: np.ndarray
    flame_error_mm: np.ndarray
    flame_motion_mm: np.ndarray

    @property
    def n_flame(self) -> int:
        return self.arkit_to_flame.shape[1] - 1

    def arkit_to_flame_params(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ARKit weights (T, 52) -> FLAME expression (T, n) and jaw axis-angle (T, 3) radians."""
        x = np.asarray(weights, dtype=np.float32) @ self.arkit_to_flame.astype(np.float32)
        jaw = np.zeros((len(x), 3), dtype=np.float32)
        jaw[:, 0] = x[:, -1]
        return x[:, :-1], jaw

    def flame_to_arkit_weights(self, exp: np.ndarray) -> np.ndarray:
        """FLAME expression (T, m <= n) -> ARKit weights (T, 52) in [0, 1] (the jaw joint passes through)."""
        exp = np.asarray(exp, dtype=np.float32)
        m = exp.shape[1]
        pos, neg = np.maximum(exp, 0), np.maximum(-exp, 0)
        w = pos @ self.flame_pos_to_arkit[:m].astype(np.float32) + neg @ self.flame_neg_to_arkit[:m].astype(np.float32)
        return np.clip(w, 0.0, 1.0)

    def summary(self) -> dict:
        """Median and worst relative landmark errors (error / motion) of the units that move, both ways."""
        def stats(err, motion):
            moving = motion > 1e-3  # units that move the landmarks by at least 1 micrometre RMS
            rel = err[moving] / motion[moving]
            return {"units": int(moving.sum()), "median_error_mm": round(float(np.median(err[moving])), 3),
                    "median_relative_error": round(float(np.median(rel)), 3),
                    "max_relative_error": round(float(rel.max()), 3)} if moving.any() else {"units": 0}
        return {"arkit_to_flame": stats(self.arkit_error_mm, self.arkit_motion_mm),
                "flame_to_arkit": stats(self.flame_error_mm.ravel(), self.flame_motion_mm.ravel())}

    def save(self, path: Path) -> None:

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{k: getattr(self, k) for k in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: Path) -> "RetargetMaps":
        with np.load(path, allow_pickle=False) as data:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})


# ---------------------------------------------------------------------------------------------
# landmark bases
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def landmark_basis(head: HeadModel, jaw_step_rad: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neutral landmarks (L, 3) m, per-unit displacements (Ne, L, 3) m per unit, jaw Jacobian (L, 3) m/rad.

    ``head``: a :class:`dejavu.head.HeadModel` (evaluated in float64 on the CPU, neutral identity).
    """

    head = HeadModel(head.assets).double()  # a float64 copy: the caller's module stays as it is
    n = head.n_expr
    lm0 = head.landmarks(head(batch_size=1))[0]
    lm = head.landmarks(head(expression=torch.eye(n, dtype=torch.float64)))
    jaw = torch.tensor([[jaw_step_rad, 0.0, 0.0]], dtype=torch.float64)
    lj = head.landmarks(head(jaw=jaw))[0]
    return lm0.numpy(), (lm - lm0).numpy(), ((lj - lm0) / jaw_step_rad).numpy()


def similarity(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """Weighted Procrustes: (s, R (3, 3)) minimising sum_i w_i |s R (src_i - mean) - (dst_i - mean)|^2."""
    w = w / w.sum()
    a = src - (w[:, None] * src).sum(0)
    b = dst - (w[:, None] * dst).sum(0)
    U, S, Vt = np.linalg.svd((w[:, None] * b).T @ a)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.diag([1.0, 1.0, d])
    R = U @ D @ Vt
    s = float((S * np.diag(D)).sum() / (w[:, None] * a * a).sum())
    return s, R


def _shared_weights(src_head, dst_head) -> np.ndarray:
    w = (src_head.landmark_weight.double() * dst_head.landmark_weight.double()).cpu().numpy()
    if (w > 0).sum() < MIN_SHARED_LANDMARKS:
        raise DejavuError(f"retargeting {src_head.name} <-> {dst_head.name}: only {(w > 0).sum()} landmarks are "
                          f"embedded on both heads (need {MIN_SHARED_LANDMARKS}); a FLAME model needs its "
                          "mediapipe_landmark_embedding.npz next to the .pkl")
    return w


def _errors(residual: np.ndarray, target: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RMS over landmarks (weight > 0) of |residual| and |target|, (K, L, 3) -> (K,), millimetres."""
    keep = w > 0
    rms = lambda d: 1e3 * np.sqrt((np.linalg.norm(d[:, keep], axis=-1) ** 2).mean(-1))  # noqa: E731
    return rms(residual), rms(target)


def fit_arkit_to_flame(arkit_head, flame_head, config: RetargetConfig | None = None):
    """(M (Ns, Nf + 1), error_mm (Ns,), motion_mm (Ns,)) carrying ``arkit_head``'s units onto ``flame_head``'s
    expression coefficients and jaw-opening angle (any two heads with embedded landmarks work)."""
    cfg = config or RetargetConfig()
    w = _shared_weights(arkit_head, flame_head)
    a0, Da, _ = landmark_basis(arkit_head, cfg.jaw_step_rad)
    f0, Df, Jf = landmark_basis(flame_head, cfg.jaw_step_rad)
    s, R = similarity(a0, f0, w)
    target = s * Da @ R.T  # (Ns, L, 3) in the FLAME head's frame and size
    basis = np.concatenate([Df, Jf[None]], 0)  # (Nf + 1, L, 3)
    sw = np.sqrt(w)[None, :, None]
    A = (basis * sw).reshape(len(basis), -1).T  # (3L, Nf + 1)
    B = (target * sw).reshape(len(target), -1).T  # (3L, Ns)
    AtA = A.T @ A
    lam = cfg.ridge * float(np.trace(AtA)) / len(AtA)
    X = np.linalg.solve(AtA + lam * np.eye(len(AtA)), A.T @ B)  # (Nf + 1, Ns)
    M = X.T
    err, motion = _errors(np.einsum("sk,klc->slc", M, basis) - target, target, w)
    return M, err, motion


def fit_flame_to_arkit(flame_head, arkit_head, config: RetargetConfig | None = None, skip: tuple[str, ...] = ("jawOpen",)):
    """(P (Nf, Na), N (Nf, Na), error_mm (Nf, 2), motion_mm (Nf, 2)): non-negative ``arkit_head`` weights per unit
    of a positive (P) and negative (N) ``flame_head`` coefficient; units named in ``skip`` stay unused."""
    from scipy.optimize import nnls

    cfg = config or RetargetConfig()
    w = _shared_weights(flame_head, arkit_head)
    f0, Df, _ = landmark_basis(flame_head, cfg.jaw_step_rad)
    a0, Da, _ = landmark_basis(arkit_head, cfg.jaw_step_rad)
    s, R = similarity(f0, a0, w)
    target = s * Df @ R.T  # (Nf, L, 3) at +1, in the ARKit head's frame
    names = [n.lower() for n in getattr(arkit_head, "expr_names", [])]
    use = np.array([not (names and names[i] in {k.lower() for k in skip}) for i in range(len(Da))])
    sw = np.sqrt(w)[None, :, None]
    A = (Da[use] * sw).reshape(int(use.sum()), -1).T  # (3L, Na')
    lam = np.sqrt(cfg.ridge * float((A * A).sum()) / A.shape[1])
    A_aug = np.concatenate([A, lam * np.eye(A.shape[1])], 0)  # ridge as extra rows, keeps nnls
    P = np.zeros((len(Df), len(Da)))
    N = np.zeros((len(Df), len(Da)))
    for k in range(len(Df)):  # one small NNLS per FLAME component and sign (Nf <= 100)
        for sign, out in ((1.0, P), (-1.0, N)):
            b = (sign * target[k] * sw[0]).reshape(-1)
            out[k, use] = nnls(A_aug, np.concatenate([b, np.zeros(A.shape[1])]), maxiter=50 * A.shape[1])[0]
    err = np.zeros((len(Df), 2))
    motion = np.zeros((len(Df), 2))
    for j, (sign, W) in enumerate(((1.0, P), (-1.0, N))):
        err[:, j], motion[:, j] = _errors(np.einsum("ka,alc->klc", W, Da) - sign * target, sign * target, w)
    return P, N, err, motion


def retarget_maps(arkit_head, flame_head, config: RetargetConfig | None = None, cache: bool = True) -> RetargetMaps:
    """The maps between ``arkit_head`` (built-in) and ``flame_head`` (HeadModels), fitted once and cached."""

    cfg = config or RetargetConfig()
    key = f"{arkit_head.assets.fingerprint()}-{flame_head.assets.fingerprint()}-{RETARGET_VERSION}"
    path = cache_dir() / "retarget" / f"arkit-flame-{key}.npz"
    if cache and path.is_file():
        try:
            return RetargetMaps.load(path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable cached retargeting maps (%s); refitting", path, exc)
    M, a_err, a_mot = fit_arkit_to_flame(arkit_head, flame_head, cfg)
    P, N, f_err, f_mot = fit_flame_to_arkit(flame_head, arkit_head, cfg)
    maps = RetargetMaps(M, P, N, a_err, a_mot, f_err, f_mot)
    log.info("retargeting %s <-> %s fitted: %s", arkit_head.name, flame_head.name, maps.summary())
    if cache:
        maps.save(path)
    return maps

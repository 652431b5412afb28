"""One frame's projected landmarks and their closed-form Jacobian, for the live Gauss-Newton fitter.

The same maths as :class:`dejavu.track.fit.LandmarkModel` followed by
:func:`dejavu.render.camera.project_points` (point skinning of the 478 landmarks, pose correctives,
forward kinematics, the paper's 6-DoF camera, pinhole projection), for one frame with the identity
fixed, written out so that every derivative comes in closed form: expressions enter linearly and are
only rotated by the skinning, joint rotations differentiate Rodrigues' formula (Gallego and Yezzi
2015) through the kinematic chain, and the camera's Euler angles are three matrix products. No
autograd graph is built, so one evaluation with its Jacobian costs a few dozen small tensor operations.
``tests/track/test_landmark_jacobian.py`` checks values against ``LandmarkModel`` and the Jacobian
against autograd.

Parameter vector (N = 15 + Ne), in this order: ``pose6`` (6: yaw, pitch, roll radians, tx, ty, tz
metres), ``expression`` (Ne), ``jaw`` (3, axis-angle radians), ``eyes`` (6: left then right eyeball
axis-angle, radians). Columns of parameters the head lacks (no jaw joint, no eyes) are zero.
Letters: L = 478 landmarks, J joints, Ne expressions, P = 3 x the fitted joints.
"""

from __future__ import annotations

import torch

from dejavu.head.base import batch_rodrigues
from dejavu.track.fit import LandmarkModel

#: Where each parameter block starts in the vector, given the expression count ``ne``.
POSE = slice(0, 6)


def expression_slice(ne: int) -> slice:
    return slice(6, 6 + ne)


def jaw_slice(ne: int) -> slice:
    return slice(6 + ne, 9 + ne)


def eyes_slice(ne: int) -> slice:
    return slice(9 + ne, 15 + ne)


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices: (..., 3) -> (..., 3, 3) with ``skew(a) @ b == a x b``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(*v.shape[:-1], 3, 3)


def rodrigues_with_derivative(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis-angle (n, 3) radians -> rotations R (n, 3, 3) and dR (n, 3, 3, 3), ``dR[:, k] = dR / dw_k``.

    dR/dw_k = (w_k [w]x + [w x ((I - R) e_k)]x) R / |w|^2 (Gallego and Yezzi 2015); at |w| -> 0 it
    tends to [e_k]x, used below 1e-6 rad (the error there is O(|w|)).
    """
    R = batch_rodrigues(w)
    theta2 = (w * w).sum(-1)  # (n,)
    eye = torch.eye(3, dtype=w.dtype)
    cols = (eye - R).transpose(-1, -2)  # (n, 3, 3): row k is (I - R) e_k
    inner = skew(torch.cross(w[:, None].expand_as(cols), cols, dim=-1))  # (n, 3(k), 3, 3)
    dR = (w[:, :, None, None] * skew(w)[:, None] + inner) @ R[:, None] / theta2.clamp_min(1e-30)[:, None, None, None]
    small = theta2 < 1e-12
    if bool(small.any()):
        dR[small] = skew(eye).expand(int(small.sum()), 3, 3, 3)
    return R, dR


def _euler_with_derivatives(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(3,) yaw, pitch, roll -> the camera's rotation (3, 3) (head frame, flipped to OpenCV) and d/dangle (3, 3, 3).

    R = diag(1, -1, -1) Rz(roll) Rx(pitch) Ry(yaw), as :func:`dejavu.render.camera.pose6_to_world_to_cam`.
    """
    cy, cp, cr = torch.cos(angles).unbind()
    sy, sp, sr = torch.sin(angles).unbind()
    o, i = torch.zeros_like(cy), torch.ones_like(cy)
    m = lambda *v: torch.stack(v).reshape(3, 3)
    Ry, dRy = m(cy, o, sy, o, i, o, -sy, o, cy), m(-sy, o, cy, o, o, o, -cy, o, -sy)
    Rx, dRx = m(i, o, o, o, cp, -sp, o, sp, cp), m(o, o, o, o, -sp, -cp, o, cp, -sp)
    Rz, dRz = m(cr, -sr, o, sr, cr, o, o, o, i), m(-sr, -cr, o, cr, -sr, o, o, o, o)
    flip = torch.tensor([1.0, -1.0, -1.0], dtype=angles.dtype)[:, None]
    R = flip * (Rz @ Rx @ Ry)
    dR = flip * torch.stack([Rz @ Rx @ dRy, Rz @ dRx @ Ry, dRz @ Rx @ Ry])
    return R, dR


class LandmarkJacobian:
    """Projected landmarks (L, 2) and their Jacobian (L, 2, N) for one frame of a known person.

    Only the jaw and the eyes rotate (as in :class:`LandmarkModel`), and none of them is an ancestor of
    another in the head's skeleton (true of every head the project has), so each fitted joint's world
    transform is its own rotation about its rest position and a landmark's skinned position is
    ``x = s v + sum_f w_f (R_f - I)(v - j_f)`` (s = the landmark's skinning-weight sum, v its rest
    position with expression and pose correctives, j_f the joint's rest position).

    Args:
        model: the head's landmark model (its buffers are copied, in float64).
        shape: (Ns,) identity coefficients. detail: (C, 3) millimetres, coefficients of ``model``'s
            vertex-offset basis, or None.
        K: (3, 3) crop intrinsics, pixels.
    """

    def __init__(self, model: LandmarkModel, shape: torch.Tensor, detail: torch.Tensor | None, K: torch.Tensor):
        d = torch.float64
        with torch.no_grad():
            shape = shape.to(d)
            joints = model.joint_template.to(d) + model.joint_shapedirs.to(d) @ shape  # (J, 3)
            rest = model.template.to(d) + model.shapedirs.to(d) @ shape  # (L, 3)
            if detail is not None:
                joints = joints + model.detail_joints.to(d) @ detail.to(d) * 1e-3
                rest = rest + model.detail_landmarks.to(d) @ detail.to(d) * 1e-3
        self.rest = rest
        self.ne = model.exprdirs.shape[-1]
        self.n_params = 15 + self.ne
        self.exprdirs = model.exprdirs.to(d)  # (L, 3, Ne)
        self.exprdirs_b = self.exprdirs.permute(1, 0, 2).contiguous()  # (3, L, Ne): one coordinate at a time
        # the fitted joints and the parameter column of each one's axis-angle
        free = []
        if model.i_jaw is not None:
            free.append((model.i_jaw, jaw_slice(self.ne).start))
        if model.i_eyes is not None:
            free += [(model.i_eyes[0], eyes_slice(self.ne).start), (model.i_eyes[1], eyes_slice(self.ne).start + 3)]
        parents = [int(p) for p in model.head.parents]
        fitted = {j for j, _ in free}
        for j, _ in free:
            a = parents[j]
            while a >= 0:
                if a in fitted:
                    raise ValueError(f"head {model.head.name!r}: joint {j} rotates under fitted joint {a}; "
                                     "the live fit's closed-form skinning needs the jaw and eyes side by side")
                a = parents[a]
        self.columns = [c for _, c in free]
        idx = [j for j, _ in free]
        weights = model.lbs_weights.to(d)  # (L, J)
        self.weight_sum = weights.sum(1, keepdim=True)  # (L, 1)
        self.w_free = weights[:, idx].T.contiguous()  # (F, L)
        self.joints_free = joints[idx]  # (F, 3)
        self.posedirs = None  # (F, 9, 3 L): the correctives of each fitted joint's (R - I) entries
        if model.posedirs is not None:
            self.posedirs = torch.stack([model.posedirs.to(d)[9 * (j - 1):9 * j] for j in idx])
        self.K = [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])]

    def __call__(self, theta: torch.Tensor, jacobian: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """theta (N,) float64 -> projected landmarks (L, 2) crop pixels and d/dtheta (L, 2, N) (None if not asked)."""
        ne, L, F = self.ne, self.rest.shape[0], len(self.columns)
        d = theta.dtype
        eye = torch.eye(3, dtype=d)
        v = torch.addmv(self.rest.reshape(-1), self.exprdirs.reshape(3 * L, ne), theta[6:6 + ne]).reshape(L, 3)
        if F:
            w = torch.stack([theta[c:c + 3] for c in self.columns])  # (F, 3)
            R, dR = rodrigues_with_derivative(w) if jacobian else (batch_rodrigues(w), None)
            if self.posedirs is not None:  # pose correctives, linear in the entries of R - I
                v = v + ((R - eye).reshape(F, 1, 9) @ self.posedirs).sum(0).reshape(L, 3)
            u = v[None] - self.joints_free[:, None]  # (F, L, 3) landmark about each fitted joint
            x = self.weight_sum * v + (self.w_free[..., None] * (u @ (R - eye).transpose(1, 2))).sum(0)
        else:
            x = self.weight_sum * v
        fx, fy, px, py = self.K
        Rc, dRc = _euler_with_derivatives(theta[0:3])
        c = x @ Rc.T + theta[3:6]  # (L, 3) camera frame
        z = c[:, 2].clamp_min(1e-8)
        proj = torch.stack([fx * c[:, 0] / z + px, fy * c[:, 1] / z + py], -1)
        if not jacobian:
            return proj, None

        iz = 1.0 / z
        o = torch.zeros_like(z)
        Jp = torch.stack([fx * iz, o, -fx * c[:, 0] * iz * iz, o, fy * iz, -fy * c[:, 1] * iz * iz], -1).reshape(L, 2, 3)
        jac = torch.empty(L, 2, self.n_params, dtype=d)
        dc = (x @ dRc.transpose(1, 2)).permute(1, 2, 0)  # (L, 3, 3 angles): d(camera point) / d(Euler angle)
        torch.matmul(Jp, dc, out=jac[:, :, 0:3])
        jac[:, :, 3:6] = Jp  # translation
        M = (Jp.reshape(2 * L, 3) @ Rc).reshape(L, 2, 3)  # pixels per head-frame metre
        if F:  # blended rotation of each landmark: s I + sum_f w_f (R_f - I)
            A = (self.weight_sum * eye.reshape(1, 9) + self.w_free.T @ (R - eye).reshape(F, 9)).reshape(L, 3, 3)
            MA = M @ A  # (L, 2, 3): pixels per rest-pose metre
        else:
            MA = M * self.weight_sum[:, :, None]
        je = jac[:, :, 6:6 + ne]  # sum over b of MA[l, a, b] E[l, b, n], one b at a time
        torch.mul(MA[:, :, 0, None], self.exprdirs_b[0][:, None], out=je)
        for b in (1, 2):
            je.addcmul_(MA[:, :, b, None], self.exprdirs_b[b][:, None])
        if F:
            # d x / d w_fk = w_f dR_f/dw_k (v - j_f) [+ A d(correctives)/dw_fk]
            dx = (u[:, None] @ dR.transpose(-1, -2)) * self.w_free[:, None, :, None]  # (F, 3 k, L, 3)
            cols = (M[None, None] * dx[:, :, :, None, :]).sum(-1)  # (F, 3, L, 2)
            if self.posedirs is not None:
                dpc = (dR.reshape(F, 3, 9) @ self.posedirs).reshape(F, 3, L, 3)
                cols = cols + (MA[None, None] * dpc[:, :, :, None, :]).sum(-1)
            jac[:, :, 6 + ne:] = 0.0  # a head without a jaw or eyes leaves those columns zero
            for n, c0 in enumerate(self.columns):
                jac[:, :, c0:c0 + 3] = cols[n].permute(1, 2, 0)
        else:
            jac[:, :, 6 + ne:] = 0.0
        return proj, jac

"""Per-person vertex offsets: the shape a head model's identity basis cannot take, as a smooth field.

The built-in head has 40 identity components; about half of a real person's landmark error after
fitting them is a constant per-landmark offset over the whole video (eye openings, face width,
nose), i.e. missing identity, not expression or pose. The tracker therefore fits, with the shared
identity, a field of rest-pose vertex offsets

    offsets = basis @ coeffs * 1e-3          (V, 3) metres = (V, C) @ (C, 3) millimetres

where ``basis`` holds Gaussian radial basis functions (sigma 8 mm) centred on control points spread
over the head's embedded landmarks (farthest-point sampling, 6 mm apart): smooth at the scale of
facial features, zero far from the face (scalp, ears, neck stay as the identity basis makes them).
The vertices of each eyeball take the mean of their rows, so an eyeball moves rigidly and still
turns about its joint. Offsets are added to the identity-shaped template before expressions and
skinning (``HeadModel.forward(vertex_offsets=...)``); joints follow through the joint regressor.

Letters: V vertices, C control points, L = 478 landmarks.
"""

from __future__ import annotations

import numpy as np
import torch

from dejavu.head.base import JOINT_EYE_L, JOINT_EYE_R, HeadModel


def landmark_rest_positions(head: HeadModel) -> torch.Tensor:
    """(L, 3) MediaPipe landmark positions on the neutral template, metres."""
    tri = head.faces[head.landmark_faces]  # (L, 3)
    return torch.einsum("lk,lkc->lc", head.landmark_bary, head.v_template[tri])


def farthest_points(points: torch.Tensor, spacing: float) -> torch.Tensor:
    """Indices of a subset of ``points`` (N, 3) with every point within ``spacing`` of one of them.

    Greedy farthest-point sampling from point 0, so the result is deterministic.
    """
    pts = points.detach().cpu().double().numpy()  # numpy: ~10x faster than torch for this scalar loop
    chosen = [0]
    dist = np.linalg.norm(pts - pts[0], axis=-1)
    while dist.max() > spacing:
        i = int(dist.argmax())
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(pts - pts[i], axis=-1))
    return torch.tensor(chosen, dtype=torch.long)


def detail_basis(head: HeadModel, sigma: float = 0.008, spacing: float = 0.006, cutoff: float = 1e-3) -> torch.Tensor:
    """The offset field's basis (V, C), unitless (1 at a control point's own position).

    Args:
        head: the head model; control points are its embedded landmarks (weight > 0, iris excluded).
        sigma: Gaussian width, metres. spacing: control-point spacing, metres.
        cutoff: values below it are set to 0 so the field stays local.
    """
    template = head.v_template
    rest = landmark_rest_positions(head)
    embedded = torch.nonzero(head.landmark_weight[:468] > 0).flatten()
    centres = rest[embedded][farthest_points(rest[embedded], spacing)]  # (C, 3)
    d2 = (template[:, None, :] - centres[None]).pow(2).sum(-1)  # (V, C)
    basis = torch.exp(-d2 / (2 * sigma ** 2))
    basis = torch.where(basis < cutoff, torch.zeros_like(basis), basis)
    for name in (JOINT_EYE_L, JOINT_EYE_R):
        j = head.joint_index(name)
        if j is None:
            continue
        eyeball = head.lbs_weights[:, j] > 0.5
        if eyeball.any():
            basis[eyeball] = basis[eyeball].mean(0)
    return basis


def support(basis: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """(V,) bool: vertices the field reaches (where the prior on offsets is measured)."""
    return basis.sum(1) > threshold


def prior_gram(basis: torch.Tensor) -> torch.Tensor:
    """(C, C) matrix G with sum(coeffs * (G @ coeffs)) = mean over :func:`support` of |basis @ coeffs|^2:
    the fit's prior on the offsets without forming the (V, 3) field each step."""
    on = basis[support(basis)]
    return on.T @ on / on.shape[0]


__all__ = ["detail_basis", "farthest_points", "landmark_rest_positions", "prior_gram", "support"]

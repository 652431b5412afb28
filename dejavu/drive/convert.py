"""Driving-file contents -> a :class:`Drive` in the parameter space of the avatar's head.

- ARKit weights drive a head whose expression units carry ARKit names (the built-in head) by name;
  a FLAME head through the fitted map (:mod:`dejavu.drive.retarget`).
- FLAME sequences drive a FLAME head directly (fewer coefficients than the head has are zero-padded)
  and the built-in head through the reverse map, which needs the user's FLAME model (``flame``).
- Live Link Face head angles become ``Drive.head_pose``; its eye angles turn a FLAME head's eye joints
  (axis-angles), while on the built-in head the ``eyeLook*`` units already turn the eyeballs (5.7 mm
  at the front of the eye for ``eyeLookOutLeft``), so the angles are not applied twice.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from dejavu.drive.arkit import ARKIT_INDEX, ArkitSequence
from dejavu.drive.flame_seq import FlameSequence
from dejavu.drive.retarget import retarget_maps
from dejavu.drive.sequence import Drive
from dejavu.errors import DejavuError
from dejavu.head import load_head
from dejavu.head.base import HeadModel
from dejavu.head.params import HeadParams

log = logging.getLogger(__name__)


def euler_to_axis_angle(angles: np.ndarray) -> np.ndarray:
    """``[yaw, pitch, roll]`` (..., 3) radians, R = Rz(roll) Rx(pitch) Ry(yaw) -> axis-angle (..., 3)."""
    from scipy.spatial.transform import Rotation

    a = np.asarray(angles, dtype=np.float64)
    flat = a.reshape(-1, 3)
    # Extrinsic y, then x, then z: the matrix product Rz @ Rx @ Ry.
    rv = Rotation.from_euler("yxz", flat[:, [0, 1, 2]]).as_rotvec()
    return rv.reshape(a.shape).astype(np.float32)


def arkit_names_index(head: HeadModel) -> np.ndarray | None:
    """(Ne,) index into the 52 ARKit units for each of ``head``'s expression units, or None if the head's
    units are not all ARKit-named."""
    names = [n.lower() for n in getattr(head, "expr_names", [])]
    if not names or not all(n in ARKIT_INDEX for n in names):
        return None
    return np.array([ARKIT_INDEX[n] for n in names])


def _eyes(seq_eyes: np.ndarray | None, T: int) -> torch.Tensor:
    if seq_eyes is None:
        return torch.zeros(T, 6)
    return torch.from_numpy(np.concatenate([euler_to_axis_angle(seq_eyes[:, :3]), euler_to_axis_angle(seq_eyes[:, 3:])], 1))


def _is_flame(head) -> bool:
    return head.name.startswith("flame")


def drive_from_arkit(seq: ArkitSequence, head: HeadModel, builtin_head=None) -> Drive:
    """ARKit weights -> a Drive for ``head`` (ARKit-named units by name, FLAME by the retargeting map)."""
    T = len(seq)
    head_pose = None if seq.head_pose is None else torch.from_numpy(np.ascontiguousarray(seq.head_pose))
    index = arkit_names_index(head)
    if index is not None:
        # The eyeLook* units already turn this head's eyeballs: eye angles on top would double the gaze.
        expr = torch.from_numpy(np.ascontiguousarray(seq.weights[:, index]))
        return Drive(HeadParams.of(expr), fps=seq.fps, head_pose=head_pose)
    eyes = _eyes(seq.eye_angles, T)
    if _is_flame(head):

        maps = retarget_maps(builtin_head or _builtin(), head)
        exp, jaw = maps.arkit_to_flame_params(seq.weights)
        return Drive(HeadParams.of(_fit_columns(exp, head.n_expr, "retargeted"), jaw, eyes), fps=seq.fps,
                     head_pose=head_pose)
    raise DejavuError(f"head {head.name!r} has neither ARKit-named units nor FLAME's: ARKit weights cannot drive it")


def drive_from_flame(seq: FlameSequence, head: HeadModel, where: str, flame_head=None) -> Drive:
    """A FLAME sequence -> a Drive for ``head`` (FLAME directly; ARKit-named heads through ``flame_head``)."""
    if _is_flame(head):
        if seq.exp.shape[1] > head.n_expr:
            raise DejavuError(f"{where}: {seq.exp.shape[1]} expression coefficients, the FLAME head has {head.n_expr}")
        return Drive(HeadParams.of(_fit_columns(seq.exp, head.n_expr, where), seq.jaw, seq.eyes), fps=seq.fps)
    index = arkit_names_index(head)
    if index is None:
        raise DejavuError(f"{where}: a FLAME sequence cannot drive head {head.name!r}")
    if flame_head is None:
        raise DejavuError(f"{where}: a FLAME sequence drives a built-in avatar through your FLAME model: set "
                          "$DEJAVU_FLAME (or pass --flame PATH) to the FLAME files the sequence was made with")

    maps = retarget_maps(head, flame_head)
    if seq.exp.shape[1] > maps.n_flame:
        raise DejavuError(f"{where}: {seq.exp.shape[1]} expression coefficients, the FLAME model has {maps.n_flame}")
    weights = maps.flame_to_arkit_weights(seq.exp)  # (T, 52) in ARKit order
    return Drive(HeadParams.of(weights[:, index], seq.jaw, seq.eyes), fps=seq.fps)


def _fit_columns(a: np.ndarray, n: int, where: str) -> np.ndarray:
    if a.shape[1] < n:
        a = np.concatenate([a, np.zeros((len(a), n - a.shape[1]), dtype=a.dtype)], 1)
    return np.ascontiguousarray(a[:, :n], dtype=np.float32)


def _builtin():

    return load_head("builtin")

"""A driving sequence (:class:`Drive`): per-frame head-model parameters, whatever file or video they came from.

Letters: T frames, Ne expression components of the head the sequence drives.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from dejavu.errors import DejavuError
from dejavu.head.params import HeadParams
from dejavu.track.result import TrackResult


@dataclass
class Drive:
    """A driving sequence of T frames.

    params: the head's driving parameters (:class:`~dejavu.head.params.HeadParams`: expression (T, Ne) in the
    driven head's units, jaw (T, 3) and eyes (T, 6) radians); pose6: (T, 6) cameras
    ``[yaw, pitch, roll, tx, ty, tz]`` (see :mod:`dejavu.render.camera`) or None; head_pose: (T, 3) head
    rotation ``[yaw, pitch, roll]`` radians in the same convention as pose6's angles, with no camera
    translation (the camera is placed around the avatar's head when rendering), or None.
    fps: frames per second. tracking: the ``TrackResult`` when the source was tracked, else None.
    """

    params: HeadParams
    pose6: torch.Tensor | None = None
    fps: float = 25.0
    tracking: object | None = None
    head_pose: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.params)

    def check_components(self, n_expr: int, where: str) -> "Drive":
        """This sequence, or a DejavuError naming ``where`` when its expressions are not ``n_expr`` wide (the
        driven head's expression count)."""
        if self.params.n_expr != n_expr:
            raise DejavuError(f"{where}: expressions have {self.params.n_expr} components but the avatar's "
                              f"head has {n_expr}; drive it with parameters of the same head (or a file it converts)")
        return self

    def first(self, n: int) -> "Drive":
        """The first ``n`` frames (the tracking result, if any, is kept whole)."""
        cut = lambda t: None if t is None else t[:n]  # noqa: E731
        return replace(self, params=self.params[:n], pose6=cut(self.pose6), head_pose=cut(self.head_pose))


def as_tensor(value, name: str, where: str, cols: int | None, T: int | None = None) -> torch.Tensor:
    """``value`` as a float32 (T, cols) tensor, or a DejavuError naming ``where`` and ``name``."""
    try:
        t = torch.as_tensor(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError):
        raise DejavuError(f"{where}: {name!r} is not a numeric array") from None
    if t.ndim != 2 or (cols is not None and t.shape[1] != cols) or (T is not None and t.shape[0] != T):
        want = f"({T if T is not None else 'T'}, {cols if cols is not None else 'Ne'})"
        raise DejavuError(f"{where}: {name!r} has shape {tuple(t.shape)}, expected {want}")
    if not torch.isfinite(t).all():
        raise DejavuError(f"{where}: {name!r} holds NaN or infinite values")
    return t


def drive_from_params(params: dict, where: str, fps: float = 25.0) -> Drive:
    """A :class:`Drive` from the project's own parameter file contents (a dict of arrays).

    Keys: ``expression`` (T, Ne) required; ``jaw`` (T, 3) and ``eyes`` (T, 6) radians default to zero;
    ``pose6`` (T, 6) cameras optional; ``fps`` optional.
    """
    if "expression" not in params:
        raise DejavuError(f"{where}: no 'expression' array (expected keys expression, jaw, eyes, pose6)")
    expr = as_tensor(params["expression"], "expression", where, None)
    T = expr.shape[0]
    if T == 0:
        raise DejavuError(f"{where}: 'expression' has no frames")
    get = lambda k, c: as_tensor(params[k], k, where, c, T) if k in params else torch.zeros(T, c)  # noqa: E731
    pose6 = as_tensor(params["pose6"], "pose6", where, 6, T) if "pose6" in params else None
    if "fps" in params:
        try:
            fps = float(np.asarray(params["fps"]))
        except (TypeError, ValueError):
            fps = float("nan")
        if not 0 < fps < 1000:
            raise DejavuError(f"{where}: 'fps' is {params['fps']!r}, expected a frame rate between 0 and 1000")
    return Drive(HeadParams(expr, get("jaw", 3), get("eyes", 6)), pose6=pose6, fps=fps)


def drive_from_tracking(result: TrackResult) -> Drive:
    """A :class:`Drive` from a ``dejavu.track.TrackResult``."""
    return Drive(result.head_params(), pose6=torch.as_tensor(np.asarray(result.pose6, dtype=np.float32)),
                 fps=float(result.fps) or 25.0, tracking=result)

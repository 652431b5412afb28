"""Driving sequences: per-frame expression, jaw, eyes (and cameras) from a video, a tracking result, a
parameter file or a built-in sweep. What ``dejavu animate --drive`` and ``dejavu export --params`` read.

Sources (:func:`load_drive`):
- a video (or image folder): tracked on the fly with ``dejavu.track`` (cached under the cache dir);
- a tracking directory (holding ``tracking.npz``, from ``dejavu track``);
- a parameter file, ``.json`` (``{"expression": [[...], ...], "jaw": ..., "eyes": ..., "pose6": ...,
  "fps": 25}``) or ``.npz`` (same keys as arrays): ``expression`` (T, Ne) is required; ``jaw`` (T, 3)
  and ``eyes`` (T, 6) radians default to zero; ``pose6`` (T, 6) cameras ``[yaw, pitch, roll, tx, ty, tz]``
  are needed only for ``--camera source``.

Letters: T frames, Ne expression components.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dejavu.errors import DejavuError
from dejavu.io import cache_dir, is_video
from dejavu.track import load_tracking, track
from dejavu.track.result import is_tracking_dir


@dataclass
class Drive:
    """A driving sequence of T frames.

    expression: (T, Ne); jaw: (T, 3); eyes: (T, 6) radians; pose6: (T, 6) cameras or None.
    fps: frames per second. frames: (T, H, W, 3) uint8 source crops for side-by-side, or None.
    """

    expression: torch.Tensor
    jaw: torch.Tensor
    eyes: torch.Tensor
    pose6: torch.Tensor | None = None
    fps: float = 25.0
    tracking: object | None = None  # the TrackResult, when the source was tracked

    def __len__(self) -> int:
        return self.expression.shape[0]


def _tensor(value, name: str, where: str, cols: int | None, T: int | None = None) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError):
        raise DejavuError(f"{where}: {name!r} is not a numeric array") from None
    if t.ndim != 2 or (cols is not None and t.shape[1] != cols) or (T is not None and t.shape[0] != T):
        want = f"({T if T is not None else 'T'}, {cols if cols is not None else 'Ne'})"
        raise DejavuError(f"{where}: {name!r} has shape {tuple(t.shape)}, expected {want}")
    return t


def drive_from_params(params: dict, where: str, fps: float = 25.0) -> Drive:
    """A :class:`Drive` from a dict of arrays (see the module docstring for the keys)."""
    if "expression" not in params:
        raise DejavuError(f"{where}: no 'expression' array (expected keys expression, jaw, eyes, pose6)")
    expr = _tensor(params["expression"], "expression", where, None)
    T = expr.shape[0]
    get = lambda k, c: _tensor(params[k], k, where, c, T) if k in params else torch.zeros(T, c)  # noqa: E731
    pose6 = _tensor(params["pose6"], "pose6", where, 6, T) if "pose6" in params else None
    fps = float(np.asarray(params.get("fps", fps))) if "fps" in params else fps
    return Drive(expression=expr, jaw=get("jaw", 3), eyes=get("eyes", 6), pose6=pose6, fps=fps)


def drive_from_tracking(result) -> Drive:
    """A :class:`Drive` from a ``dejavu.track.TrackResult``."""
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    return Drive(expression=t(result.expression), jaw=t(result.jaw), eyes=t(result.eyes), pose6=t(result.pose6),
                 fps=float(result.fps) or 25.0, tracking=result)


def load_drive(src: str | Path, head_spec: str, device: str = "cpu", progress: bool = True) -> Drive:
    """Read or track the driving source ``src`` (video, image folder, tracking dir, .json or .npz)."""
    src = Path(src)
    where = f"--drive {src}"
    if not src.exists():
        raise DejavuError(f"{where}: no such file or directory")
    if is_tracking_dir(src):
        return drive_from_tracking(load_tracking(src))
    suffix = src.suffix.lower()
    if suffix == ".json":
        try:
            return drive_from_params(json.loads(src.read_text()), where)
        except json.JSONDecodeError as exc:
            raise DejavuError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if suffix == ".npz":
        try:
            with np.load(src, allow_pickle=False) as data:
                return drive_from_params({k: data[k] for k in data.files}, where)
        except (OSError, ValueError) as exc:
            raise DejavuError(f"{where}: not a readable .npz file ({exc.__class__.__name__})") from None
    if is_video(src) or src.is_dir():
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in src.stem)
        out = cache_dir() / "drive" / f"{safe}-{head_spec.replace(':', '_').replace('/', '_')[-40:]}"
        return drive_from_tracking(track(src, out, head=head_spec, device=device, progress=progress))
    raise DejavuError(f"{where}: expected a video, a tracking directory, or a .json/.npz parameter file")


def expression_sweep(head, n_frames: int = 150) -> Drive:
    """A built-in tour of expressions (T = ``n_frames``): jaw open, smile, brows, blinks, pucker...

    ARKit-named heads (built-in) use named activations; other heads (FLAME, procedural) sweep their
    first expression components through +-2 (FLAME's PCA units). Each key pose eases in and out.
    """
    names = list(getattr(head, "expr_names", []) or [])
    Ne = head.n_expr
    poses: list[tuple[dict[int, float], float]] = []  # (expression entries, jaw opening radians)
    arkit = {n.lower(): i for i, n in enumerate(names)}

    def find(*cands: str) -> list[int]:
        return [arkit[c.lower()] for c in cands if c.lower() in arkit]

    if find("jawOpen", "eyeBlinkLeft", "eyeBlink_L"):
        groups = [
            (find("jawOpen"), 1.0, 0.35),
            (find("mouthSmileLeft", "mouthSmileRight", "mouthSmile_L", "mouthSmile_R"), 1.0, 0.0),
            (find("browInnerUp", "browOuterUpLeft", "browOuterUpRight", "browOuterUp_L", "browOuterUp_R"), 1.0, 0.0),
            (find("eyeBlinkLeft", "eyeBlinkRight", "eyeBlink_L", "eyeBlink_R"), 1.0, 0.0),
            (find("mouthPucker", "mouthFunnel"), 1.0, 0.0),
            (find("browDownLeft", "browDownRight", "browDown_L", "browDown_R", "mouthFrownLeft", "mouthFrownRight",
                  "mouthFrown_L", "mouthFrown_R"), 1.0, 0.0),
            (find("jawOpen", "mouthSmileLeft", "mouthSmileRight", "mouthSmile_L", "mouthSmile_R"), 0.8, 0.25),
        ]
        poses = [({i: v for i in ids}, jaw) for ids, v, jaw in groups if ids]
    else:
        for i in range(min(Ne, 5)):
            poses += [({i: 2.0}, 0.0), ({i: -2.0}, 0.0)]
        poses.append(({}, 0.3))
    T = max(int(n_frames), 2)
    expr = torch.zeros(T, Ne)
    jaw = torch.zeros(T, 3)
    seg = T / max(len(poses), 1)
    for t in range(T):
        k = min(int(t / seg), len(poses) - 1)
        amount = math.sin(math.pi * ((t - k * seg) / seg)) ** 2  # 0 -> 1 -> 0 within each segment
        entries, jaw_open = poses[k]
        for i, v in entries.items():
            expr[t, i] = v * amount
        jaw[t, 0] = jaw_open * amount
    return Drive(expression=expr, jaw=jaw, eyes=torch.zeros(T, 6), fps=25.0)

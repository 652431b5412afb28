"""Where a driving sequence comes from: :func:`load_drive` reads or tracks a source (a video or image
folder is tracked, a tracking directory read, any other file handed to :func:`dejavu.drive.drive_from_file`),
and :func:`expression_sweep` is the built-in tour of expressions. What ``dejavu animate --drive``,
``dejavu export --params/--drive`` and ``dejavu web --drive`` read.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from dejavu.drive import drive_from_file
from dejavu.drive.sequence import Drive, drive_from_tracking
from dejavu.errors import DejavuError
from dejavu.head.base import HeadModel
from dejavu.head.params import HeadParams
from dejavu.io import cache_dir, is_video
from dejavu.track import load_tracking, track
from dejavu.track.result import is_tracking_dir


def load_drive(src: str | Path, head_spec: str, device: str = "cpu", progress: bool = True,
               flame: str | None = None, option: str = "--drive") -> Drive:
    """Read or track the driving source ``src`` for a ``head_spec`` avatar.

    A tracking directory or a video (or image folder) is tracked (cached under the cache dir); any other
    file goes to :func:`dejavu.drive.drive_from_file`, which tells its format by content (Live Link Face
    CSV, blendshape CSV/JSON, FLAME .npz, parameter .json/.npz). ``flame``: a FLAME model for FLAME
    sequences driving a built-in-head avatar (default ``$DEJAVU_FLAME``). ``option``: the command-line
    option named in error messages.
    """
    src = Path(src)
    where = f"{option} {src}"
    if not src.exists():
        raise DejavuError(f"{where}: no such file or directory")
    if is_tracking_dir(src):
        return drive_from_tracking(load_tracking(src))
    if is_video(src) or src.is_dir():
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in src.stem)
        out = cache_dir() / "drive" / f"{safe}-{head_spec.replace(':', '_').replace('/', '_')[-40:]}"
        return drive_from_tracking(track(src, out, head=head_spec, device=device, progress=progress))
    try:
        return drive_from_file(src, head_spec, flame=flame)
    except DejavuError as exc:
        msg = str(exc)
        raise DejavuError(msg if msg.startswith("--") else f"{option} {msg}") from None


def expression_sweep(head: HeadModel, n_frames: int = 150) -> Drive:
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
    return Drive(HeadParams.of(expr, jaw), fps=25.0)

"""Driving sequences from files people already have: Live Link Face CSV, ARKit / MediaPipe blendshape CSV
and JSON, FLAME expression sequences, and the project's own parameter files.

One entry point, :func:`drive_from_file`, tells the format by content (:mod:`dejavu.drive.detect`) and
returns a :class:`Drive` in the parameter space of the head it will drive (:mod:`dejavu.drive.convert`,
with :mod:`dejavu.drive.retarget` between ARKit and FLAME). Videos and tracking directories are tracked
by :func:`dejavu.drive.sources.load_drive`, which hands every other file to this one.
"""

from __future__ import annotations

import os
from pathlib import Path

from dejavu.drive.convert import drive_from_arkit, drive_from_flame
from dejavu.drive.detect import read_drive_file
from dejavu.drive.sequence import Drive, drive_from_params, drive_from_tracking
from dejavu.head import load_head

__all__ = ["Drive", "drive_from_file", "drive_from_params", "drive_from_tracking"]


def drive_from_file(path: str | Path, head_spec: str, flame: str | None = None) -> Drive:
    """Read the driving file ``path`` for an avatar whose head is ``head_spec`` (e.g. ``"builtin"``).

    ``flame``: a FLAME model path (file or folder; default ``$DEJAVU_FLAME``), needed only to drive a
    built-in-head avatar with a FLAME sequence. Raises DejavuError naming the file and the problem.
    """

    path = Path(path)
    fmt, contents = read_drive_file(path)
    if fmt.startswith("params"):
        return drive_from_params(contents, str(path))
    head = load_head(head_spec)
    if fmt == "flame_npz":
        flame = flame or os.environ.get("DEJAVU_FLAME") or None
        flame_head = None
        if flame and not head.name.startswith("flame"):
            flame_head = load_head(flame if flame.startswith("flame:") else f"flame:{flame}")
        return drive_from_flame(contents, head, str(path), flame_head)
    return drive_from_arkit(contents, head)

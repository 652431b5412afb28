"""What kind of driving file a path holds, told by its content (never its suffix alone).

- zip magic (``.npz``): ``exp`` + ``jaw`` -> FLAME sequence; ``expression`` -> the project's parameter file;
- JSON object: ``names`` + ``frames`` -> ARKit / MediaPipe blendshape JSON (LAM layout); ``expression`` ->
  the project's parameter file;
- text whose first line is a comma-separated header: a ``Timecode`` column -> Live Link Face CSV; else a
  blendshape CSV with named columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dejavu.drive.arkit import ArkitSequence, _load_json, read_blendshape_csv, read_blendshape_json, read_live_link_csv
from dejavu.drive.flame_seq import FlameSequence, flame_sequence_from_arrays
from dejavu.errors import DejavuError

#: What :func:`detect_drive_format` answers.
FORMATS = ("live_link_csv", "blendshape_csv", "blendshape_json", "flame_npz", "params_json", "params_npz")
EXPECTED = ("expected a Live Link Face CSV, a blendshape CSV or JSON with named ARKit units, a FLAME .npz "
            "(exp, jaw) or a parameter .json/.npz (expression, jaw, eyes)")


def detect_drive_format(path: str | Path) -> str:
    """One of :data:`FORMATS` for the file at ``path``, or a DejavuError naming the file and what it holds."""
    path = Path(path)
    if not path.is_file():
        raise DejavuError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        raise DejavuError(f"{path}: empty file; {EXPECTED}")
    if head.startswith(b"PK\x03\x04"):
        keys = _npz_keys(path)
        if {"exp", "jaw"} <= keys:
            return "flame_npz"
        if "expression" in keys:
            return "params_npz"
        raise DejavuError(f"{path}: an .npz with {', '.join(sorted(keys)) or 'no arrays'}; {EXPECTED}")
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("{"):
        return "json"  # resolved by read_drive_file, which parses it once
    if text.startswith("["):
        raise DejavuError(f"{path}: a JSON array, not a driving file I recognise; {EXPECTED}")
    first = text.splitlines()[0] if text else ""
    if "," in first:
        cols = [c.strip().strip('"').lower() for c in first.split(",")]
        if _is_number(cols[0]):
            raise DejavuError(f"{path}: a CSV without a header line; name the columns (eyeBlinkLeft, jawOpen, ...)")
        return "live_link_csv" if "timecode" in cols else "blendshape_csv"
    raise DejavuError(f"{path}: not a driving file I recognise; {EXPECTED}")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _npz_keys(path: Path) -> set[str]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return set(data.files)
    except (OSError, ValueError) as exc:
        raise DejavuError(f"{path}: not a readable .npz file ({exc.__class__.__name__})") from None


def read_drive_file(path: str | Path) -> tuple[str, ArkitSequence | FlameSequence | dict]:
    """(format, contents): an :class:`ArkitSequence`, a :class:`FlameSequence`, or the parameter dict
    (``expression``, ``jaw``, ``eyes``, ``pose6``, ``fps``) of the project's own parameter files."""
    path = Path(path)
    fmt = detect_drive_format(path)
    if fmt == "json":
        obj = _load_json(path)
        if "names" in obj and "frames" in obj:
            return "blendshape_json", read_blendshape_json(path, obj)
        if "expression" in obj or {"jaw", "eyes", "pose6"} & set(obj):
            return "params_json", obj  # drive_from_params names what a parameter file lacks
        raise DejavuError(f"{path}: a JSON object with keys {', '.join(list(obj)[:8]) or '(none)'}; {EXPECTED}")
    if fmt == "live_link_csv":
        return fmt, read_live_link_csv(path)
    if fmt == "blendshape_csv":
        return fmt, read_blendshape_csv(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if fmt == "flame_npz":
        return fmt, flame_sequence_from_arrays(arrays, str(path))
    return fmt, arrays

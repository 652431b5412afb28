"""FLAME expression / jaw sequences: ``.npz`` with ``exp`` (T, n) and ``jaw`` (T, 3), optional ``fps``.

The layout FLAME trackers and talking-head tools write (e.g. ``exp`` of 50 or 100 PCA coefficients and
``jaw`` axis-angle radians). Optional ``eyes`` (T, 6) (left then right eyeball axis-angle) and
``neck``/``global`` poses are ignored apart from ``eyes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dejavu.errors import DejavuError

DEFAULT_FPS = 25.0


@dataclass
class FlameSequence:
    """exp: (T, n) FLAME expression coefficients; jaw: (T, 3) axis-angle radians; eyes: (T, 6) or None."""

    exp: np.ndarray
    jaw: np.ndarray
    fps: float = DEFAULT_FPS
    eyes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.exp)


def flame_sequence_from_arrays(arrays: dict, where: str) -> FlameSequence:
    """Validate ``{"exp": (T, n), "jaw": (T, 3), "fps"?: scalar, "eyes"?: (T, 6)}`` -> :class:`FlameSequence`."""
    def arr(name: str, cols: int | None) -> np.ndarray:
        try:
            a = np.asarray(arrays[name], dtype=np.float32)
        except (TypeError, ValueError):
            raise DejavuError(f"{where}: {name!r} is not numeric") from None
        if a.ndim != 2 or (cols is not None and a.shape[1] != cols):
            raise DejavuError(f"{where}: {name!r} has shape {a.shape}, expected (T, {cols or 'n'})")
        if not np.isfinite(a).all():
            raise DejavuError(f"{where}: {name!r} holds NaN or infinite values")
        return a

    exp, jaw = arr("exp", None), arr("jaw", 3)
    if len(exp) == 0:
        raise DejavuError(f"{where}: no frames ('exp' has 0 rows)")
    if len(jaw) != len(exp):
        raise DejavuError(f"{where}: 'exp' has {len(exp)} frames but 'jaw' has {len(jaw)}")
    eyes = arr("eyes", 6) if "eyes" in arrays else None
    if eyes is not None and len(eyes) != len(exp):
        raise DejavuError(f"{where}: 'eyes' has {len(eyes)} frames, 'exp' {len(exp)}")
    fps = DEFAULT_FPS
    if "fps" in arrays:
        try:
            fps = float(np.asarray(arrays["fps"]).reshape(-1)[0])
        except (TypeError, ValueError, IndexError):
            raise DejavuError(f"{where}: 'fps' is not a number") from None
        if not fps > 0:
            raise DejavuError(f"{where}: 'fps' must be positive, not {fps}")
    return FlameSequence(exp=exp, jaw=jaw, fps=fps, eyes=eyes)


def read_flame_npz(path: str | Path) -> FlameSequence:
    """Read a FLAME sequence ``.npz`` (no pickle)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise DejavuError(f"{path}: not a readable .npz file ({exc.__class__.__name__})") from None
    missing = [k for k in ("exp", "jaw") if k not in arrays]
    if missing:
        raise DejavuError(f"{path}: not a FLAME sequence (missing {', '.join(missing)}; has {', '.join(arrays)})")
    return flame_sequence_from_arrays(arrays, str(path))

"""The tracker's output: :class:`TrackResult` and its on-disk format.

A tracking directory holds::

    tracking.npz     arrays below + "__meta__" (JSON bytes: input, settings, head spec, cache key)
    summary.json     frames, seconds_per_frame, landmark_rmse_px, failed_frames, ...
    crops/NNNNNN.png aligned crops (crop_size^2 RGB), NNNNNN = source frame index
    masks/NNNNNN.png head mask (white = head and hair; no neck, clothes, background)
    face_masks/NNNNNN.png face-region mask (fitted mesh face/eyes/mouth regions) for metrics
    overlay.mp4 | overlay.png

Letters: B tracked frames (frames without a face are skipped and listed in ``failed_frames``),
L = 478 landmarks, Ns / Ne identity / expression sizes. Pixels are crop pixels.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from dejavu.errors import DejavuError
from dejavu.head.base import identity_kwargs
from dejavu.head.params import HeadParams
from dejavu.io import atomic_path, read_image
from dejavu.track.align import inside_source
from dejavu.track.masks import below_jaw

TRACKING_FILE = "tracking.npz"
SUMMARY_FILE = "summary.json"
FORMAT_VERSION = 1


@dataclass
class TrackResult:
    """Everything later stages need from tracking. Arrays are numpy float32 unless noted."""

    frame_index: np.ndarray  # (B,) int64 source frame numbers
    frame_time: np.ndarray  # (B,) float64 seconds
    shape: np.ndarray  # (Ns,) shared identity
    expression: np.ndarray  # (B, Ne)
    jaw: np.ndarray  # (B, 3) axis-angle, radians
    eyes: np.ndarray  # (B, 6) left then right eyeball axis-angle, radians
    pose6: np.ndarray  # (B, 6) camera [yaw, pitch, roll, tx, ty, tz] (radians, metres)
    world_to_cam: np.ndarray  # (B, 4, 4) OpenCV world-to-camera
    K: np.ndarray  # (B, 3, 3) intrinsics of the crop
    landmarks_2d: np.ndarray  # (B, L, 2) detected landmarks, crop pixels
    fitted_2d: np.ndarray  # (B, L, 2) the fitted head's landmarks, crop pixels
    crop_affine: np.ndarray  # (B, 2, 3) float64, source pixels -> crop pixels
    error_px: np.ndarray  # (B,) weighted landmark RMSE, crop pixels
    vertex_offsets: np.ndarray | None = None  # (V, 3) per-person rest-pose offsets, metres (None: not fitted)
    source_hw: np.ndarray | None = None  # (B, 2) int64 (height, width) of each source frame (None: older results)
    crop_size: int = 512
    fps: float = 0.0  # frame rate of the tracked sequence (0 for images)
    head_spec: str = "builtin"
    input_path: str = ""
    failed_frames: list[int] = field(default_factory=list)  # source frames with no face (skipped)
    settings: dict = field(default_factory=dict)
    cache_key: str = ""
    directory: str = ""  # where it was loaded from / written to

    # -- convenience ---------------------------------------------------------------------------
    @property
    def fov_deg(self) -> float:
        """The camera's field of view over the crop width, degrees (one for all frames)."""
        return math.degrees(2 * math.atan(0.5 * self.crop_size / float(self.K[0, 0, 0])))

    def __len__(self) -> int:
        return len(self.frame_index)

    def _frame_file(self, sub: str, i: int) -> Path:
        return Path(self.directory) / sub / f"{int(self.frame_index[i]):06d}.png"

    def crop_path(self, i: int) -> Path:
        """Aligned crop of tracked frame ``i`` (position in this result, not the source index)."""
        return self._frame_file("crops", i)

    def mask_path(self, i: int) -> Path:
        return self._frame_file("masks", i)

    def face_mask_path(self, i: int) -> Path:
        return self._frame_file("face_masks", i)

    def load_crop(self, i: int) -> np.ndarray:
        """(S, S, 3) float32 in [0, 1]."""

        return read_image(self.crop_path(i))

    def load_mask(self, i: int, face: bool = False) -> np.ndarray:
        """(S, S) bool head mask (or face-region mask)."""
        from PIL import Image

        with Image.open(self.face_mask_path(i) if face else self.mask_path(i)) as im:
            return np.asarray(im.convert("L")) > 127

    def inside_source(self, i: int) -> np.ndarray | None:
        """(S, S) bool: crop pixels of frame ``i`` that lie inside its source frame (the rest are repeated
        border pixels), or None when unknown (results written before source sizes were recorded)."""

        if self.source_hw is None:
            return None
        return inside_source(self.crop_affine[i], tuple(int(v) for v in self.source_hw[i]), int(self.crop_size))

    def known(self, i: int) -> np.ndarray | None:
        """(S, S) bool: crop pixels of frame ``i`` whose target is known, or None when all are (or it is
        unknown: results written before source sizes were recorded).

        Known: inside the source frame, or under the fitted jaw line or below the shoulder line
        (:func:`dejavu.track.masks.below_jaw`), which the head mask leaves out by geometry, wherever they
        lie. Without the second part, avatar Gaussians under the chin that fall off the frame (d3's throat)
        had no loss at all and kept the network's start: a row of dots under the chin from every side."""

        inside = self.inside_source(i)
        if inside is None or inside.all():
            return None
        return inside | below_jaw(self.fitted_2d[i], *inside.shape)

    def head_params(self, device="cpu") -> HeadParams:
        """The tracked frames' driving parameters (B frames) as a :class:`~dejavu.head.params.HeadParams`."""
        return HeadParams.of(self.expression, self.jaw, self.eyes, device=device)

    def identity(self, device="cpu") -> dict:
        """The person's head-model keyword arguments: shape (Ns,), vertex_offsets (V, 3) or None
        (``head(**result.identity(), **result.head_params().kwargs())`` gives the tracked meshes)."""
        return identity_kwargs(torch.as_tensor(np.asarray(self.shape, dtype=np.float32)),
                               self.torch_vertex_offsets(), device)

    def torch_vertex_offsets(self, device="cpu"):
        """(V, 3) float32 tensor of the per-person offsets, or None when tracking did not fit them."""
        if self.vertex_offsets is None:
            return None
        return torch.as_tensor(np.asarray(self.vertex_offsets, dtype=np.float32), device=device)


_META_FIELDS = ("crop_size", "fps", "head_spec", "input_path", "failed_frames", "settings", "cache_key")


def save_tracking(result: TrackResult, directory: str | Path) -> Path:
    """Write ``tracking.npz`` into ``directory`` (atomically)."""

    directory = Path(directory)
    arrays = {f.name: np.asarray(getattr(result, f.name)) for f in fields(result) if f.name not in _META_FIELDS
              and f.name != "directory" and getattr(result, f.name) is not None}
    meta = {name: getattr(result, name) for name in _META_FIELDS}
    meta["format_version"] = FORMAT_VERSION
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = directory / TRACKING_FILE
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return path


def is_tracking_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``dejavu track`` (holds ``tracking.npz``)."""
    return (Path(path) / TRACKING_FILE).is_file()


def load_tracking(directory: str | Path) -> TrackResult:
    """Read a tracking directory written by :func:`dejavu.track.track`."""
    directory = Path(directory)
    path = directory / TRACKING_FILE if directory.is_dir() else directory
    if not path.is_file():
        raise DejavuError(f"{directory}: no {TRACKING_FILE} here; run `dejavu track` first")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["__meta__"]).decode())
            arrays = {k: data[k] for k in data.files if k != "__meta__"}
    except (OSError, ValueError, KeyError) as exc:
        raise DejavuError(f"{path}: not a readable tracking file ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.pop("format_version", None) != FORMAT_VERSION:
        raise DejavuError(f"{path}: tracking format version differs from this dejavu's; re-run `dejavu track`")
    for name in FINITE_ARRAYS:
        value = arrays.get(name)
        if value is not None and value.dtype.kind == "f" and not np.isfinite(value).all():
            raise DejavuError(f"{path}: {name!r} holds NaN or infinite values; re-run `dejavu track`")
    try:
        return TrackResult(**arrays, **meta, directory=str(path.parent))
    except TypeError as exc:
        raise DejavuError(f"{path}: not a tracking file of this dejavu ({exc})") from None


#: Per-frame parameters and cameras: a NaN in any of them would render nothing without a word.
FINITE_ARRAYS = ("shape", "expression", "jaw", "eyes", "pose6", "world_to_cam", "K", "vertex_offsets", "crop_affine")

"""Files in and out: atomic writes, images and videos.

Images on disk are 8-bit RGB; in memory they are float32 arrays in [0, 1], HWC. Every writer goes
through :func:`atomic_path` so an interrupted run never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from dejavu.errors import DejavuError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".webm", ".mkv", ".m4v")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    Example:
        >>> with atomic_path("out.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as float32 RGB in [0, 1], shape (H, W, 3). Alpha is dropped."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DejavuError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise DejavuError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    return arr


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] (any shape) -> uint8, clipped and rounded."""
    return (np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a float [0, 1] (H, W, 3|1) or uint8 image atomically; format from the suffix."""
    from PIL import Image

    path = Path(path)
    arr = image if image.dtype == np.uint8 else to_uint8(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format=_pil_format(path))
    return path


def _pil_format(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}.get(suffix, "PNG")


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray] | Iterator[np.ndarray], fps: float = 25.0) -> Path:
    """Write frames (each float [0,1] or uint8, (H, W, 3), H and W even) to an H.264 mp4, atomically."""
    import imageio.v2 as imageio

    path = Path(path)
    with atomic_path(path) as tmp:
        # ffmpeg picks the container from the name's suffix: write "<tmp minus .part>" then rename to tmp.
        named = tmp.with_suffix("")
        # veryfast: a third of the default preset's encoding time here, files no larger at this quality
        writer = imageio.get_writer(named, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                    macro_block_size=1, ffmpeg_log_level="error",
                                    output_params=["-preset", "veryfast"])
        try:
            for frame in frames:
                writer.append_data(frame if frame.dtype == np.uint8 else to_uint8(frame))
        finally:
            writer.close()
            if named.exists():
                os.replace(named, tmp)
    return path


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def cache_dir() -> Path:
    """Where built assets (head models, converted weights) are cached: ``$DEJAVU_CACHE`` or ~/.cache/dejavu."""
    root = Path(os.environ.get("DEJAVU_CACHE", Path.home() / ".cache" / "dejavu"))
    root.mkdir(parents=True, exist_ok=True)
    return root

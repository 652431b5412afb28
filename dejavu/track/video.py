"""Decoding the tracker's input: one image, a folder of images, or a video (imageio-ffmpeg).

Frames come out as :class:`Frame` (index in the source, time in seconds, uint8 RGB (H, W, 3)).
Videos can be resampled to a lower ``fps`` (nearest source frame per output tick) and cut to
``max_frames``. Every failure to read is a one-line :class:`DejavuError` naming the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from dejavu.errors import DejavuError
from dejavu.io import is_image, is_video, read_image, to_uint8

log = logging.getLogger(__name__)


class _RotatedSizeFilter(logging.Filter):
    """Drops imageio-ffmpeg's warning that the decoded size differs from the stream's: a phone video's
    display rotation makes ffmpeg return the frames upright (height and width swapped), as intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("The frame size for reading")


logging.getLogger("imageio_ffmpeg").addFilter(_RotatedSizeFilter())


@dataclass
class Frame:
    index: int  # frame number in the source (video frame or sorted folder position)
    time: float  # seconds from the start (0 for images)
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass
class SourceInfo:
    kind: str  # "image" | "folder" | "video"
    fps: float  # source frame rate (0 for images/folders)
    n_frames: int  # frames in the source (estimate for videos)
    size: tuple[int, int]  # (width, height) of the first frame, 0 if unknown


def list_images(folder: Path) -> list[Path]:
    """Image files in ``folder`` sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))


def probe(path: str | Path) -> SourceInfo:
    """What ``path`` is and how many frames it holds; raises DejavuError if it is unusable."""
    path = Path(path)
    if not path.exists():
        raise DejavuError(f"{path}: no such file or folder")
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise DejavuError(f"{path}: folder holds no images (.png, .jpg, ...)")
        return SourceInfo("folder", 0.0, len(images), (0, 0))
    if is_image(path):
        return SourceInfo("image", 0.0, 1, (0, 0))
    if is_video(path):
        meta = _video_meta(path)
        return SourceInfo("video", meta["fps"], meta["n_frames"], meta["size"])
    raise DejavuError(f"{path}: not an image or video (expected an image, a folder of images or a video file)")


def _video_meta(path: Path) -> dict:
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(path))
        meta = next(gen)
        gen.close()
    except (RuntimeError, OSError, StopIteration, ValueError) as exc:
        raise DejavuError(f"{path}: not a readable video ({_short(exc)})") from None
    fps = float(meta.get("fps") or 0.0)
    duration = float(meta.get("duration") or 0.0)
    if fps <= 0 or not meta.get("size"):
        raise DejavuError(f"{path}: not a readable video (no video stream)")
    return {"fps": fps, "n_frames": int(round(duration * fps)), "size": tuple(meta["size"])}


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else exc.__class__.__name__)[:160]


def iter_frames(path: str | Path, fps: float | None = None, max_frames: int | None = None) -> Iterator[Frame]:
    """Yield the frames of an image, a folder of images or a video.

    Args:
        path: input file or folder.
        fps: resample videos to this rate (only lower rates; ``None`` keeps every frame).
        max_frames: stop after this many output frames.
    """
    path = Path(path)
    info = probe(path)
    limit = max_frames if max_frames and max_frames > 0 else None
    if info.kind == "image":
        yield Frame(0, 0.0, to_uint8(read_image(path)))
        return
    if info.kind == "folder":
        for i, p in enumerate(list_images(path)[:limit]):
            yield Frame(i, i / fps if fps else 0.0, to_uint8(read_image(p)))
        return
    yield from _iter_video(path, info, fps, limit)


def _iter_video(path: Path, info: SourceInfo, fps: float | None, limit: int | None) -> Iterator[Frame]:
    import imageio_ffmpeg

    step = info.fps / fps if fps and fps < info.fps else 1.0
    if fps and fps > info.fps:
        log.info("%s: --fps %.2f is above the video's %.2f fps; keeping every frame", path, fps, info.fps)
    width, height = info.size
    next_pick, emitted, decoded, stopped = 0.0, 0, 0, False
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        next(gen)  # metadata
        for src, raw in enumerate(gen):
            decoded = src + 1
            if src + 0.5 < next_pick:
                continue
            image = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
            yield Frame(src, src / info.fps, image)
            emitted += 1
            next_pick += step
            if limit is not None and emitted >= limit:
                stopped = True
                break
    except RuntimeError as exc:
        raise DejavuError(f"{path}: video decoding failed ({_short(exc)})") from None
    finally:
        gen.close()
    if emitted == 0:
        raise DejavuError(f"{path}: the video holds no decodable frames")
    if not stopped and truncated(decoded, info.n_frames) and str(path) not in _WARNED_TRUNCATED:
        _WARNED_TRUNCATED.add(str(path))  # the tracker decodes a video twice: say it once
        log.warning("%s: only %d of the %d frames its header declares could be decoded; the file looks truncated "
                    "or damaged (using the %d)", path, decoded, info.n_frames, decoded)


_WARNED_TRUNCATED: set[str] = set()


def truncated(decoded: int, declared: int) -> bool:
    """True when a video decoded to its end gave clearly fewer frames than its header declares (the
    declared count is duration x fps, rounded: a frame or two either way is normal)."""
    return declared - decoded > max(2, 0.02 * declared)

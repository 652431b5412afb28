"""Files in and out: atomic writes, images and videos.

Images on disk are 8-bit RGB; in memory they are float32 arrays in [0, 1], HWC. Every writer goes
through :func:`atomic_path` so an interrupted run never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from dejavu.errors import DejavuError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".webm", ".mkv", ".m4v")


#: Temporary names carry the writing process's id (``.<stem>.pid<pid>.<random><suffix>.part``) so that a
#: later run can tell the leftovers of a killed process from the files of one still writing.
PART_SUFFIX = ".part"


def part_prefix(name: str) -> str:
    """Prefix of this process's temporary files for the output ``name`` (see :func:`clean_stale_parts`)."""
    return f".{name}.pid{os.getpid()}."


def output_mode(directory: bool = False) -> int:
    """Permission bits for a new output file (0o666) or folder (0o777, ``directory``) minus the process's
    umask: what ``open`` or ``mkdir`` would give."""
    return (0o777 if directory else 0o666) & ~current_umask()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``); elsewhere
    set and restored under a lock (``os.umask`` is the only other way to read it, and process-wide)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    The temporary file gets the mode a plain ``open`` would give (``tempfile.mkstemp`` makes 0600), so
    outputs keep the user's umask. On failure (or a kill) nothing replaces ``path``; a killed process's
    temporary file is removed by the next :func:`clean_stale_parts` of the folder.

    Example:
        >>> with atomic_path("out.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    path = Path(path)
    tmp = new_part(path)
    try:
        yield tmp
        os.chmod(tmp, output_mode())  # again: some writers (safetensors, ffmpeg) make the file anew
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def new_part(path: str | os.PathLike) -> Path:
    """Create (empty, with :func:`output_mode`) and return this process's temporary file for ``path``,
    in the same folder (created if missing) so that renaming it over ``path`` is atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=part_prefix(path.stem), suffix=path.suffix + PART_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, output_mode())
    finally:
        os.close(fd)
    return Path(tmp)


def clean_stale_parts(directory: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders (``.*.part``, ``.*.old-*``) that killed processes left in
    ``directory`` (only those of the output ``name``, e.g. ``"x"`` for ``x.ply``, when given); those of
    running processes are kept. Returns what was removed."""
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        entry_name = entry.name
        pid = _writer_pid(entry_name)
        # ours: .part files and .old- folders (older runs' names have no pid), or any name with the pid
        # marker (write_video's ffmpeg file, named without .part for ffmpeg to pick the container)
        if not entry_name.startswith(f".{name}." if name else ".") or not (
                entry_name.endswith(PART_SUFFIX) or ".old-" in entry_name or pid is not None):
            continue
        if pid is not None and _alive(pid):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    if removed:
        log.info("%s: removed %d leftover temporary file(s) of an interrupted run", directory, len(removed))
    return removed


def _writer_pid(name: str) -> int | None:
    """The pid in a temporary name made by :func:`part_prefix` (None for names without one: older runs')."""
    for field in reversed(name.split(".")):
        if field.startswith("pid") and field[3:].isdigit():
            return int(field[3:])
    return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as float32 RGB in [0, 1], shape (H, W, 3). Alpha is dropped.

    16-bit and 32-bit grayscale (PNG, TIFF) are scaled by their full range, not clipped at 255.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DejavuError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                arr = _wide_gray(np.asarray(im), im.mode)
            else:
                arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DejavuError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    return arr


def _wide_gray(a: np.ndarray, mode: str) -> np.ndarray:
    """(H, W) grayscale of more than 8 bits -> (H, W, 3) float32 in [0, 1].

    PIL reads 16-bit PNGs as mode "I" (int32) or "I;16": their range is 0..65535; float images ("F")
    are taken as already in [0, 1].
    """
    a = np.asarray(a, dtype=np.float32)
    if mode == "F":
        scale = 1.0
    elif mode.startswith("I;16") or float(a.max(initial=0.0)) <= 65535.0:
        scale = 65535.0
    else:
        scale = 4294967295.0
    gray = np.clip(a / scale, 0.0, 1.0)
    return np.repeat(gray[..., None], 3, axis=2)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] (any shape) -> uint8, clipped and rounded."""
    x = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)  # a new array: scaled in place below
    x *= 255.0
    x += 0.5
    return x.astype(np.uint8)


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


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MB chunks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def cache_dir() -> Path:
    """Where built assets (head models, converted weights) are cached: ``$DEJAVU_CACHE`` or ~/.cache/dejavu."""
    root = Path(os.environ.get("DEJAVU_CACHE", Path.home() / ".cache" / "dejavu"))
    root.mkdir(parents=True, exist_ok=True)
    return root

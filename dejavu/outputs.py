"""Where a command will write, checked before any work starts.

Every command calls :func:`check_output_file` or :func:`check_output_dir` on each output it names, so
that a wrong ``-o`` (a folder where a file is meant, a read-only or full disk, ``/proc``, a finished
avatar, a file inside someone's avatar folder) is one line at once, not a traceback after the work.
:func:`os_error_line` turns an ``OSError`` that still happens (the disk filling up meanwhile) into the
same kind of line. No torch here: ``dejavu reconstruct`` checks its outputs before torch loads.

Example:
    >>> check_output_file("out.ply", suffixes=(".ply",), need_bytes=5 << 20)   # doctest: +SKIP
    >>> check_output_dir("me_avatar", kind="avatar", force=args.force)          # doctest: +SKIP
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

from dejavu.errors import DejavuError
from dejavu.io import clean_stale_parts, sha256_file

log = logging.getLogger(__name__)

#: The two files that make an avatar (``dejavu.avatar``) and the rest of what the commands that make
#: one write into its folder: tracking cache, training folder, pictures, turntable, .ply.
AVATAR_JSON = "avatar.json"
AVATAR_TENSORS = "avatar.safetensors"
#: The old tensor file, kept while a save replaces the pair (see :meth:`dejavu.avatar.Avatar.save`).
AVATAR_PREVIOUS = ".avatar.previous.safetensors"
AVATAR_PARTS = frozenset({AVATAR_JSON, AVATAR_TENSORS, "tracking", "train", "views.png", "reconstruction.png",
                          "turntable.mp4", "avatar.ply"})
#: Pseudo file systems: nothing a command writes belongs there.
SYSTEM_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
#: Free space kept on top of a run's own estimate (logs, caches, the file system's own needs).
SPARE_BYTES = 8 << 20


def is_avatar_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds an ``avatar.json`` (a finished avatar)."""
    return (Path(path) / AVATAR_JSON).is_file()


def check_output_file(path: str | os.PathLike, *, what: str = "-o", suffixes: tuple[str, ...] = (),
                      need_bytes: int = 0) -> Path:
    """Check that a file can be written at ``path``; returns it as a Path.

    Refuses (DejavuError, one line naming ``what`` and the path): an existing folder or special file
    there, a suffix not in ``suffixes`` (lower case, with the dot; empty = any), a path inside an avatar
    folder, a place under /proc, /sys or /dev, a parent that is a file or not writable, and less free
    space than ``need_bytes`` (+ :data:`SPARE_BYTES`). An existing regular file is replaced atomically
    when the command finishes (the user named it).
    """
    path = Path(path)
    label = f"{what} {path}"
    _check_system(path, label)
    if path.is_dir():
        raise DejavuError(f"{label}: is a folder; expected a file name" + _suffix_hint(suffixes))
    if path.exists() and not path.is_file():
        raise DejavuError(f"{label}: exists and is not a regular file")
    if suffixes and path.suffix.lower() not in suffixes:
        raise DejavuError(f"{label}: expected a {' or '.join(suffixes)} file")
    _check_not_in_avatar(path, label)
    _check_writable_parent(path, label)
    check_free_space(path, need_bytes, what)
    clean_stale_parts(path.parent, path.stem)  # a killed earlier run's temporary file for this output
    return path


def check_output_dir(path: str | os.PathLike, *, what: str = "-o", kind: str = "folder", force: bool = False,
                     resume: bool = False, need_bytes: int = 0) -> Path:
    """Check that the folder ``path`` can be written (created if missing); returns it as a Path.

    kind:
        "folder": any new or existing folder that is not an avatar folder nor inside one.
        "avatar": the folder of an avatar a command makes: new, empty, or holding an avatar's parts
        (:data:`AVATAR_PARTS`) only. A finished avatar there is refused unless ``force`` (replace it) or
        ``resume`` (continue the run that made it). Temporary files of killed runs are removed and a
        save interrupted between its two renames is completed (:func:`recover`).

    Also refuses a file at ``path``, /proc, /sys and /dev, a parent that is not writable, and less free
    space than ``need_bytes`` (+ :data:`SPARE_BYTES`).
    """
    if kind not in ("folder", "avatar"):
        raise ValueError(f"kind {kind!r}: expected 'folder' or 'avatar'")
    path = Path(path)
    label = f"{what} {path}"
    _check_system(path, label)
    if path.exists() and not path.is_dir():
        raise DejavuError(f"{label}: exists and is not a folder")
    _check_not_in_avatar(path, label)
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise DejavuError(f"{label}: folder is not writable")
        if kind == "folder" and is_avatar_dir(path):
            raise DejavuError(f"{label}: is an avatar folder; write elsewhere (an avatar folder holds only its "
                              "own files)")
        if kind == "avatar":
            _check_avatar_dir(path, label, force, resume)
    else:
        _check_writable_parent(path, label)
    check_free_space(path, need_bytes, what)
    return path


def _check_avatar_dir(path: Path, label: str, force: bool, resume: bool) -> None:
    try:
        names = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise DejavuError(f"{label}: {exc.strerror or exc}") from None
    foreign = [n for n in names if n not in AVATAR_PARTS]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise DejavuError(f"{label}: holds files that are not part of an avatar ({shown}); choose a new or empty "
                          "folder")
    clean_stale_parts(path)
    if (path / AVATAR_JSON).is_file() or (path / AVATAR_TENSORS).is_file():
        recover(path)
    if is_avatar_dir(path) and not (force or resume):
        raise DejavuError(f"{label}: holds a finished avatar; pass --force to replace it")


def check_free_space(path: str | os.PathLike, need_bytes: int, what: str = "-o") -> None:
    """Refuse when the file system of ``path`` (or its nearest existing parent) has less than
    ``need_bytes`` + :data:`SPARE_BYTES` free. ``need_bytes`` <= 0 checks nothing."""
    if need_bytes <= 0:
        return
    anchor = _existing_ancestor(Path(path))
    try:
        free = shutil.disk_usage(anchor).free
    except OSError:
        return  # nothing to measure (an unusual file system): the write itself will say
    if free < need_bytes + SPARE_BYTES:
        raise DejavuError(f"{what} {path}: about {_mb(need_bytes + SPARE_BYTES)} needed, {_mb(free)} free on "
                          f"{anchor}; free some space or write elsewhere")


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: the path(s) it names and what went wrong (``PATH: No space left on device``)."""
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    if exc.errno == errno.ENOSPC:
        reason += "; free some space or write elsewhere"
    elif exc.errno == errno.EROFS:
        reason += "; write elsewhere"
    return f"{' -> '.join(names)}: {reason}" if names else reason


def _check_system(path: Path, label: str) -> None:
    resolved = Path(os.path.abspath(path))
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        pass
    for root in SYSTEM_ROOTS:
        if resolved == root or root in resolved.parents:
            raise DejavuError(f"{label}: under {root}, which is not a place for output files")


def _check_not_in_avatar(path: Path, label: str) -> None:
    """Only the commands that make an avatar write into its folder (and they check with kind="avatar")."""
    for parent in Path(os.path.abspath(path)).parents:
        if is_avatar_dir(parent):
            raise DejavuError(f"{label}: inside the avatar folder {parent}; write it elsewhere (an avatar folder "
                              "holds only its own files)")


def _check_writable_parent(path: Path, label: str) -> None:
    anchor = _existing_ancestor(path.parent)
    if not anchor.is_dir():
        raise DejavuError(f"{label}: {anchor} is a file, not a folder")
    if not os.access(anchor, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only(anchor) else "not writable"
        raise DejavuError(f"{label}: cannot be written ({anchor}: {reason})")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (what a mkdir -p would start from)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _suffix_hint(suffixes: tuple[str, ...]) -> str:
    return f" such as out{suffixes[0]}" if suffixes else ""


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB" if n < (1 << 30) else f"{n / (1 << 30):.1f} GB"


def recover(directory: str | Path) -> None:
    """Complete or undo an :meth:`dejavu.avatar.Avatar.save` killed between its renames (no-op otherwise).

    With :data:`AVATAR_PREVIOUS` present: if the JSON's hash names the current tensor file the save got
    through and the previous file goes; if it names the previous file, that file is put back.
    """
    directory = Path(directory)
    previous, tensor_path = directory / AVATAR_PREVIOUS, directory / AVATAR_TENSORS
    if not previous.is_file():
        return
    try:
        digest = json.loads((directory / AVATAR_JSON).read_text()).get("tensors_sha256")
    except (OSError, ValueError, AttributeError):
        return  # not ours to judge: Avatar.load will say what is wrong
    if tensor_path.is_file() and digest == sha256_file(tensor_path):
        previous.unlink()
    elif digest == sha256_file(previous):
        os.replace(previous, tensor_path)
        log.info("%s: restored the avatar an interrupted save had half replaced", directory)


def keep_previous_tensors(tensor_path: Path, previous: Path) -> None:
    """``previous`` = the current tensor file (a hard link, or a copy where links are not supported)."""
    previous.unlink(missing_ok=True)
    try:
        os.link(tensor_path, previous)
    except OSError:
        shutil.copyfile(tensor_path, previous)

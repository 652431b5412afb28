"""ARKit blendshape sequences from files: Live Link Face CSV, blendshape CSV with named columns, LAM-style JSON.

Every reader returns an :class:`ArkitSequence`: weights (T, 52) in :data:`ARKIT_NAMES` order, in [0, 1],
on a uniform time grid. Columns are matched by name, case-insensitively, never by position (Live Link
Face's CSV and UDP orders differ; MediaPipe lists its 52 categories in another order again). Units a
file lacks stay zero and are listed in ``missing``; MediaPipe's ``_neutral`` score is not a shape and is
dropped, and MediaPipe has no ``tongueOut``.

Parsing is vectorised: the whole numeric body goes through one ``np.loadtxt`` call (numpy's C reader);
the Live Link timecode ``HH:MM:SS:FF.fff`` becomes four numeric columns by turning its colons into
commas first, so no Python code runs per row.

Head and eye angles (Live Link Face's ``HeadYaw, HeadPitch, HeadRoll, LeftEyeYaw, ..., RightEyeRoll``)
are read as radians: ARKit's face-anchor rotations. Yaw is about the head's up axis (+Y), positive
turning the face to the subject's left (+X); pitch about +X, positive tipping the face down; roll
about +Z (out of the face), the project's camera convention (:mod:`dejavu.render.camera`).
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dejavu.errors import DejavuError

log = logging.getLogger(__name__)

#: Apple's 52 ARKit blendshape locations (``ARFaceAnchor.BlendShapeLocation``), in Live Link Face's CSV order.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel",
    "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft",
    "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
ARKIT_INDEX: dict[str, int] = {name.lower(): i for i, name in enumerate(ARKIT_NAMES)}
#: Live Link Face's head and eye rotation columns (radians), in the order of ``head_pose`` and ``eye_angles``.
HEAD_COLUMNS = ("headyaw", "headpitch", "headroll")
EYE_COLUMNS = ("lefteyeyaw", "lefteyepitch", "lefteyeroll", "righteyeyaw", "righteyepitch", "righteyeroll")
#: Columns that carry no shape: MediaPipe's neutral score, Live Link's count.
IGNORED_COLUMNS = ("_neutral", "blendshapecount")
#: Names of a time column (seconds) in a plain blendshape CSV.
TIME_COLUMNS = ("time", "timestamp", "time_s", "seconds", "t")
#: Timecode frame rates Live Link Face writes; the file's is the smallest above its largest frame number.
TIMECODE_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 120.0)
#: Timecode rate assumed for a Live Link take shorter than a second (its frame numbers never wrap).
LIVE_LINK_DEFAULT_RATE = 60.0
#: Frame rate of a blendshape CSV or JSON that states none.
DEFAULT_FPS = 30.0


@dataclass
class ArkitSequence:
    """ARKit blendshape weights on a uniform time grid.

    weights: (T, 52) float32 in [0, 1], columns in :data:`ARKIT_NAMES` order. fps: frames per second.
    head_pose: (T, 3) ``[yaw, pitch, roll]`` radians or None. eye_angles: (T, 6) ``[yaw, pitch, roll]``
    of the left then the right eye, radians, or None. missing: ARKit names the file did not have.
    """

    weights: np.ndarray
    fps: float
    head_pose: np.ndarray | None = None
    eye_angles: np.ndarray | None = None
    missing: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.weights)


def resample_uniform(times: np.ndarray, values: np.ndarray, fps: float) -> np.ndarray:
    """Linearly resample rows ``values`` (T, C) sampled at increasing ``times`` (T,) s onto t0, t0 + 1/fps, ...

    Duplicate time stamps keep their first row. Returns (T', C) with T' = floor((t_end - t0) * fps) + 1.
    """
    keep = np.concatenate([[True], np.diff(times) > 0])
    times, values = times[keep], values[keep]
    n = int(np.floor((times[-1] - times[0]) * fps + 1e-6)) + 1
    grid = times[0] + np.arange(n) / fps
    # Interpolation weights once for all columns (searchsorted over the grid, no per-column loop).
    j = np.clip(np.searchsorted(times, grid, side="right") - 1, 0, max(len(times) - 2, 0))
    if len(times) == 1:
        return values[:1].repeat(n, axis=0)
    w = np.clip((grid - times[j]) / (times[j + 1] - times[j]), 0.0, 1.0)[:, None]
    return values[j] * (1 - w) + values[j + 1] * w


def _rate_from_times(times: np.ndarray, where: str) -> float:
    dt = np.diff(times)
    dt = dt[dt > 0]
    if len(dt) == 0:
        raise DejavuError(f"{where}: every frame has the same time stamp; cannot tell the frame rate")
    return float(np.round(1.0 / np.median(dt), 3))


def _header(text: str, where: str) -> tuple[list[str], str]:
    """(lower-cased column names, the text after the header line)."""
    first, _, body = text.partition("\n")
    names = [c.strip().strip('"').lower() for c in first.lstrip("\ufeff").split(",")]
    dup = sorted({n for n in names if names.count(n) > 1 and n})
    if dup:
        raise DejavuError(f"{where}: column(s) {', '.join(dup)} appear more than once in the header")
    return names, body


def _numeric_body(body: str, n_cols: int, where: str) -> np.ndarray:
    """The CSV body as a (T, n_cols) float array, one C-level ``np.loadtxt`` pass."""
    if not body.strip():
        raise DejavuError(f"{where}: no frames (the file has a header and no rows)")
    try:
        data = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except ValueError as exc:
        msg = str(exc).splitlines()[0]
        raise DejavuError(f"{where}: not a numeric table after the header ({msg})") from None
    if data.shape[1] != n_cols:
        raise DejavuError(f"{where}: rows have {data.shape[1]} values, the header names {n_cols} columns")
    if not np.isfinite(data).all():
        raise DejavuError(f"{where}: NaN or infinite values in the table")
    return data


def _assemble(names: list[str], data: np.ndarray, where: str) -> tuple[np.ndarray, list[str], np.ndarray | None,
                                                                        np.ndarray | None]:
    """Pick ARKit, head and eye columns by name -> (weights (T, 52), missing, head (T, 3)|None, eyes (T, 6)|None)."""
    cols = {n: i for i, n in enumerate(names)}
    found = [(ARKIT_INDEX[n], i) for n, i in cols.items() if n in ARKIT_INDEX]
    if not found:
        raise DejavuError(f"{where}: no ARKit blendshape columns (expected names such as eyeBlinkLeft, jawOpen)")
    dst, src = np.array(found).T
    weights = np.zeros((len(data), len(ARKIT_NAMES)), dtype=np.float32)
    weights[:, dst] = data[:, src]
    missing = [ARKIT_NAMES[i] for i in sorted(set(range(len(ARKIT_NAMES))) - set(dst.tolist()))]
    pick = lambda group: data[:, [cols[c] for c in group]].astype(np.float32) if all(c in cols for c in group) else None  # noqa: E731
    return np.clip(weights, 0.0, 1.0), missing, pick(HEAD_COLUMNS), pick(EYE_COLUMNS)


def read_live_link_csv(path: str | Path, text: str | None = None) -> ArkitSequence:
    """A Live Link Face CSV (``Timecode,BlendShapeCount,EyeBlinkLeft,...,HeadYaw,...``) -> :class:`ArkitSequence`.

    Timecodes ``HH:MM:SS:FF.fff`` count frames at the file's timecode rate (the smallest of
    :data:`TIMECODE_RATES` above its largest frame number; :data:`LIVE_LINK_DEFAULT_RATE` for a take
    shorter than a second), with a sub-frame fraction; frames are
    resampled onto a uniform grid at the capture rate (1 / median frame step), so dropped or repeated
    frames do not change the timing.
    """
    path = Path(path)
    where = str(path)
    text = path.read_text(errors="replace") if text is None else text
    names, body = _header(text, where)
    if "timecode" not in names:
        raise DejavuError(f"{where}: not a Live Link Face CSV (no Timecode column)")
    tc = names.index("timecode")
    # The timecode's three colons become commas: four numeric columns H, M, S, F.fff.
    expanded = names[:tc] + ["tc_h", "tc_m", "tc_s", "tc_f"] + names[tc + 1:]
    data = _numeric_body(body.replace(":", ","), len(expanded), where)
    frames = data[:, tc + 3]
    # The frame number wraps at the rate; a take within one second never wraps, so its rate is unknown:
    # assume Live Link Face's default 60 then.
    wraps = np.any(np.diff(data[:, tc + 2]) != 0) or np.any(np.diff(data[:, tc + 1]) != 0)
    floor = np.floor(frames.max()) if wraps else max(np.floor(frames.max()), LIVE_LINK_DEFAULT_RATE - 1)
    rate = next((r for r in TIMECODE_RATES if r > floor), None)
    if rate is None:
        raise DejavuError(f"{where}: timecode frame numbers up to {int(frames.max())}: not a known timecode rate")
    times = data[:, tc] * 3600 + data[:, tc + 1] * 60 + data[:, tc + 2] + frames / rate
    if np.any(np.diff(times) < 0):
        raise DejavuError(f"{where}: timecodes go backwards (row {int(np.argmax(np.diff(times) < 0)) + 2})")
    fps = _rate_from_times(times, where) if len(times) > 1 else rate
    return _sequence(expanded, data, times, fps, where)


def _sequence(names: list[str], data: np.ndarray, times: np.ndarray | None, fps: float, where: str) -> ArkitSequence:
    weights, missing, head, eyes = _assemble(names, data, where)
    if times is not None and len(times) > 1:
        parts = [weights] + [a for a in (head, eyes) if a is not None]
        sizes = np.cumsum([p.shape[1] for p in parts])[:-1]
        out = np.split(resample_uniform(times, np.concatenate(parts, axis=1), fps).astype(np.float32), sizes, axis=1)
        weights = out.pop(0)
        head = out.pop(0) if head is not None else None
        eyes = out.pop(0) if eyes is not None else None
    if missing:
        log.info("%s: %d ARKit unit(s) absent, left at zero: %s", where, len(missing), ", ".join(missing))
    return ArkitSequence(weights=weights, fps=fps, head_pose=head, eye_angles=eyes, missing=missing)


def read_blendshape_csv(path: str | Path, text: str | None = None) -> ArkitSequence:
    """A CSV with one named column per ARKit (or MediaPipe) blendshape -> :class:`ArkitSequence`.

    An optional time column (:data:`TIME_COLUMNS`, seconds) sets the frame rate and the resampling;
    without one, rows are frames at :data:`DEFAULT_FPS`. Other columns are ignored.
    """
    path = Path(path)
    where = str(path)
    text = path.read_text(errors="replace") if text is None else text
    names, body = _header(text, where)
    data = _numeric_body(body, len(names), where)
    tcol = next((c for c in TIME_COLUMNS if c in names), None)
    times = data[:, names.index(tcol)] if tcol else None
    if times is not None and np.any(np.diff(times) < 0):
        raise DejavuError(f"{where}: column {tcol!r} goes backwards")
    fps = _rate_from_times(times, where) if times is not None and len(times) > 1 else DEFAULT_FPS
    return _sequence(names, data, times, fps, where)


def read_blendshape_json(path: str | Path, obj: dict | None = None) -> ArkitSequence:
    """A blendshape JSON in the layout LAM's audio-to-expression tool writes -> :class:`ArkitSequence`.

    ``{"names": [52 names], "metadata": {"fps": 30}, "frames": [{"weights": [52 floats], "time": s}, ...]}``;
    ``time`` (seconds) is optional per file; ``metadata.fps`` defaults to the time stamps' rate, else
    :data:`DEFAULT_FPS`.
    """
    path = Path(path)
    where = str(path)
    if obj is None:
        obj = _load_json(path)
    names, frames = obj.get("names"), obj.get("frames")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DejavuError(f"{where}: 'names' must be a list of blendshape names")
    if not isinstance(frames, list):
        raise DejavuError(f"{where}: 'frames' must be a list of {{'weights': [...], 'time': s}} objects")
    if not frames:
        raise DejavuError(f"{where}: no frames ('frames' is empty)")
    try:
        data = np.asarray([f["weights"] for f in frames], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise DejavuError(f"{where}: every frame needs 'weights', a list of {len(names)} numbers") from None
    if data.ndim != 2 or data.shape[1] != len(names):
        raise DejavuError(f"{where}: frames' weights have shape {data.shape}, expected ({len(frames)}, {len(names)})")
    if not np.isfinite(data).all():
        raise DejavuError(f"{where}: NaN or infinite weights")
    times = None
    if all(isinstance(f, dict) and "time" in f for f in frames):
        try:
            times = np.asarray([f["time"] for f in frames], dtype=np.float64)
        except (TypeError, ValueError):
            raise DejavuError(f"{where}: frames' 'time' values are not numbers") from None
        if np.any(np.diff(times) < 0):
            raise DejavuError(f"{where}: frames' 'time' values go backwards")
    meta = obj.get("metadata") or {}
    fps = meta.get("fps") if isinstance(meta, dict) else None
    if fps is not None:
        try:
            fps = float(fps)
        except (TypeError, ValueError):
            raise DejavuError(f"{where}: metadata.fps is not a number") from None
        if not fps > 0:
            raise DejavuError(f"{where}: metadata.fps must be positive, not {fps}")
    elif times is not None and len(times) > 1:
        fps = _rate_from_times(times, where)
    else:
        fps = DEFAULT_FPS
    lower = [n.strip().lower() for n in names]
    dup = sorted({n for n in lower if lower.count(n) > 1})
    if dup:
        raise DejavuError(f"{where}: name(s) {', '.join(dup)} appear more than once in 'names'")
    return _sequence(lower, data, times, fps, where)


def _load_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DejavuError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise DejavuError(f"{path}: not a text file") from None
    if not isinstance(obj, dict):
        raise DejavuError(f"{path}: expected a JSON object at the top level")
    return obj


def read_live_link_csv_rowwise(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Slow reference twin of the Live Link parse (``csv`` module, one Python step per row), for tests and
    ``dejavu bench drive``: (times (T,) s at the given timecode rate 60, values (T, C) float, column names)."""
    import csv

    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    names = [c.strip().lower() for c in rows[0]]
    tc = names.index("timecode")
    times, values = [], []
    for row in rows[1:]:
        h, m, s, f = row[tc].split(":")
        times.append(int(h) * 3600 + int(m) * 60 + int(s) + float(f) / LIVE_LINK_DEFAULT_RATE)
        values.append([float(x) for i, x in enumerate(row) if i != tc])
    return np.array(times), np.array(values), [n for i, n in enumerate(names) if i != tc]

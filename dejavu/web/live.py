"""``dejavu live``: track a webcam or a video file frame by frame and stream the parameters to the web player.

Two threads. The capture thread reads the source (a webcam, or a video file decoded by ffmpeg) and
leaves each frame in a one-frame mailbox (:class:`LatestFrame`). The tracker takes the newest frame and
runs MediaPipe landmarks (:class:`dejavu.track.landmarks.LandmarkDetector`, tracking mode, one face) ->
an unrotated square crop around the face (:mod:`dejavu.track.align`, angle 0 so the fitted camera keeps
the head's roll) -> the per-frame fit with the avatar's identity, warm-started from the previous frame
(:class:`dejavu.track.frame_fit.GaussNewtonFitter`; ``fitter="adam"``: the reference
:class:`dejavu.track.fit.FrameFitter`) -> one JSON message over a WebSocket (:mod:`dejavu.web.websocket`):
``{"frame", "expression" (Ne), "jaw" (3), "eyes" (6), "head_rotation" (3, axis-angle), "latency_ms"}``.
No crops, masks or overlays are made.

A webcam, or a video file with ``realtime`` (paced at its frame rate, the webcam stand-in), never
queues: a frame the tracker has not taken when the next one arrives is dropped, so the tracker always
works on the present. Without ``realtime`` a video file hands over every frame, read as fast as the
tracker takes them (decoded one ahead).

Latency = from the frame being captured (read from the webcam, due in the paced file; without
``realtime``, taken by the tracker) to its message being sent.
"""

from __future__ import annotations

import itertools
import json
import logging
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dejavu.avatar import Avatar
from dejavu.errors import DejavuError
from dejavu.track.align import apply_affine, crop_params, params_to_affine
from dejavu.track.fit import FrameFitter
from dejavu.track.frame_fit import FrameFitConfig, GaussNewtonFitter
from dejavu.track.landmarks import LandmarkDetector
from dejavu.track.video import iter_frames
from dejavu.web.server import serve_in_thread
from dejavu.web.site import build_site, cached_site_dir, pose6_to_head_pose
from dejavu.web.websocket import Broadcaster

log = logging.getLogger(__name__)

FITTERS = ("lm", "adam")
STAGES = ("detect", "fit", "send")


@dataclass
class LiveConfig:
    """How ``dejavu live`` tracks and streams."""

    crop_size: int = 256
    """side of the (virtual) crop the landmarks are fitted in, pixels; only sets the pixel units."""
    fitter: str = "lm"
    """per-frame fit: ``lm`` (Levenberg-Marquardt on the closed-form Jacobian, :mod:`dejavu.track.frame_fit`)
    or ``adam`` (the tracker's Adam steps per frame, the reference; ~6x the CPU time and a higher loss)."""
    iterations: int = 2
    """``lm``: most iterations per frame (it stops after one when the step did what the model predicted)."""
    rigid_steps: int = 2
    """``adam``: camera-only fitting steps per frame (x4 on the first frame)."""
    steps: int = 8
    """``adam``: expression/jaw/eyes/camera fitting steps per frame (x4 on the first frame)."""
    max_frames: int | None = None
    """stop after this many source frames (None: until the source ends)."""
    realtime: bool = False
    """pace a video file at its own frame rate and drop the frames the tracker is too busy for (a webcam
    stand-in); off: every frame is tracked, as fast as tracking goes (a webcam is always live)."""


def make_fitter(config: LiveConfig, head, shape, vertex_offsets):
    """The per-frame fitter ``config.fitter`` names, for a person (shape (Ns,), vertex offsets (V, 3) or None)."""
    if config.fitter == "lm":
        return GaussNewtonFitter(head, shape, vertex_offsets, config.crop_size,
                                 FrameFitConfig(iterations=config.iterations))
    if config.fitter == "adam":
        return FrameFitter(head, shape, vertex_offsets, config.crop_size, rigid_steps=config.rigid_steps,
                           steps=config.steps)
    raise DejavuError(f"--fitter {config.fitter!r}: expected one of {', '.join(FITTERS)}")


@dataclass
class LiveStats:
    """What a live run did: frames tracked, without a face and dropped, seconds, per-frame figures (ms)."""

    tracked: int = 0
    missed: int = 0
    dropped: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    stage_cpu_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    stage_wall_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def summary(self) -> dict:
        lat = sorted(self.latency_ms) or [float("nan")]
        med = lambda v: round(statistics.median(v), 3) if v else float("nan")
        return {"frames_tracked": self.tracked, "frames_without_face": self.missed, "frames_dropped": self.dropped,
                "seconds": round(self.seconds, 3),
                "fps": round(self.tracked / self.seconds, 2) if self.seconds > 0 else 0.0,
                # CPU time of the whole process per frame (every thread, MediaPipe's included): what the
                # frame rate would be bounded by on idle cores, whatever else shares the machine
                "cpu_ms_per_frame": round(1e3 * self.cpu_seconds / max(self.tracked, 1), 2),
                "latency_ms_median": round(statistics.median(lat), 2),
                "latency_ms_p95": round(lat[int(0.95 * (len(lat) - 1))], 2),
                # the tracker thread's own CPU time per stage (median ms per frame); wall time beside it
                "stage_cpu_ms": {s: med(v) for s, v in self.stage_cpu_ms.items()},
                "stage_wall_ms": {s: med(v) for s, v in self.stage_wall_ms.items()}}


def summary_line(summary: dict) -> str:
    """A live run's figures (:meth:`dejavu.web.live.LiveStats.summary`) in one line."""
    stages = ", ".join(f"{k} {v:.1f}" for k, v in summary["stage_cpu_ms"].items())
    return (f"{summary['frames_tracked']} frames tracked in {summary['seconds']:.1f} s: {summary['fps']:.1f} frames/s, "
            f"latency (frame captured -> sent) median {summary['latency_ms_median']:.1f} ms, "
            f"p95 {summary['latency_ms_p95']:.1f} ms; CPU ms per frame {summary['cpu_ms_per_frame']:.1f} "
            f"(tracker thread: {stages}); {summary['frames_dropped']} frame(s) dropped, "
            f"{summary['frames_without_face']} without a face")


@dataclass
class Frame:
    index: int
    captured: float  # time.perf_counter() when captured (the latency clock's start)
    image: np.ndarray  # (H, W, 3) uint8 RGB


class LatestFrame:
    """A one-frame mailbox from the capture thread to the tracker.

    ``put(frame, drop=True)`` replaces a frame the tracker has not taken (counted in ``dropped``): the
    tracker always gets the newest. ``drop=False`` waits until the tracker has taken the previous one.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._done = False
        self._error: BaseException | None = None
        self.stopped = False  # set by the tracker: the capture thread should end
        self.dropped = 0

    def put(self, frame: Frame, drop: bool) -> None:
        with self._cond:
            while not drop and self._frame is not None and not self.stopped:
                self._cond.wait()
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        """No more frames (``error``: the reason, raised in the tracker)."""
        with self._cond:
            self._done, self._error = True, error
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    def take(self) -> Frame | None:
        """The newest frame (waiting for one), or None once the source has ended."""
        with self._cond:
            while self._frame is None and not self._done:
                self._cond.wait()
            if self._frame is None:
                if self._error is not None:
                    raise self._error
                return None
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame


def capture(frames, box: LatestFrame, pace: bool, drop: bool) -> None:
    """Feed ``frames`` ((index, seconds into the source, image) each) into ``box`` until they end or it stops.

    ``pace``: wait for each frame's time (a video file standing in for a webcam). Without ``drop`` the clock
    starts when the tracker takes the frame (it was read ahead), so latency is the tracker's own time.
    """
    try:
        t_start = time.perf_counter()
        for index, t, image in frames:
            if box.stopped:
                break
            if pace:
                wait = t - (time.perf_counter() - t_start)
                if wait > 0:
                    time.sleep(wait)
            box.put(Frame(index, time.perf_counter(), image), drop=drop)
    except BaseException as exc:  # noqa: BLE001 - handed to the tracker, which raises it
        box.finish(exc)
        return
    box.finish()


def open_source(source: str, max_frames: int | None = None):
    """Frames (index, time, (H, W, 3) uint8 RGB) of a video file, or of a webcam given as its OpenCV index."""
    if source.isdigit():
        return _webcam(int(source), max_frames)
    path = Path(source)
    if not path.is_file():
        raise DejavuError(f"{source}: no such video file (or give a webcam index such as 0)")

    return ((f.index, f.time, f.image) for f in iter_frames(path, max_frames=max_frames))


def _webcam(index: int, max_frames: int | None):
    import cv2

    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise DejavuError(f"webcam {index}: cannot be opened (no such device, or in use)")
    t0, i = time.perf_counter(), 0
    try:
        while max_frames is None or i < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            yield i, time.perf_counter() - t0, bgr[..., ::-1].copy()
            i += 1
    finally:
        cap.release()


def crop_landmarks(points: np.ndarray, crop_size: int) -> np.ndarray:
    """(478, 2) image pixels -> crop pixels of an upright square crop around the face (angle 0)."""

    params = crop_params(points[None])
    params[:, 3] = 0.0  # keep the roll in the image: the fitted camera, and so the page, must see it
    return apply_affine(params_to_affine(params, crop_size), points[None])[0]


def message(frame: int, p: dict, latency_ms: float) -> str:
    """One frame's parameters as the page's JSON message (head_rotation from the fitted camera)."""

    r = lambda t: [round(float(x), 5) for x in np.asarray(t).ravel()]
    return json.dumps({"frame": frame, "expression": r(p["expression"][0]), "jaw": r(p["jaw"][0]),
                       "eyes": r(p["eyes"][0]), "head_rotation": r(pose6_to_head_pose(p["pose6"])[0]),
                       "latency_ms": round(latency_ms, 2)})


def track_stream(frames, fitter, detector, send, config: LiveConfig, progress: bool = True,
                 live: bool = False) -> LiveStats:
    """Capture ``frames`` on a thread and detect, fit and ``send(json_text)`` the newest one, until they end.

    Args:
        frames: iterable of (index, seconds into the source, (H, W, 3) uint8 RGB image).
        fitter: ``fitter(landmarks (478, 2) crop px) -> parameters``, with ``reset()`` (after a lost face).
        detector: ``detector(image) -> Detection | None``.
        live: frames come from a webcam (stale ones dropped, no pacing); else ``config.realtime`` says
            whether the file is paced (and then drops stale frames too).
    """
    from tqdm.auto import tqdm

    pace = config.realtime and not live
    drop = live or config.realtime
    stats = LiveStats()
    box = LatestFrame()
    reader = threading.Thread(target=capture, args=(frames, box, pace, drop), daemon=True, name="dejavu-capture")
    bar = tqdm(desc="live", unit="frame", disable=not progress)
    t0, c0 = time.perf_counter(), time.process_time()
    shown = t0
    reader.start()
    try:
        while (frame := box.take()) is not None:
            start = frame.captured if drop else time.perf_counter()
            marks = [(time.perf_counter(), time.thread_time())]
            det = detector(frame.image)
            marks.append((time.perf_counter(), time.thread_time()))
            if det is None:
                stats.missed += 1
                fitter.reset()  # the face may come back anywhere: start the next fit afresh
                continue
            p = fitter(crop_landmarks(det.points, config.crop_size))
            marks.append((time.perf_counter(), time.thread_time()))
            send(message(frame.index, p, (time.perf_counter() - start) * 1e3))
            marks.append((time.perf_counter(), time.thread_time()))
            stats.latency_ms.append((marks[-1][0] - start) * 1e3)
            for stage, (a, b) in zip(STAGES, itertools.pairwise(marks)):
                stats.stage_wall_ms[stage].append((b[0] - a[0]) * 1e3)
                stats.stage_cpu_ms[stage].append((b[1] - a[1]) * 1e3)
            stats.tracked += 1
            bar.update(1)
            if progress and marks[-1][0] - shown > 1.0:  # the live readout, once a second
                shown = marks[-1][0]
                bar.set_postfix_str(f"{stats.tracked / (shown - t0):.1f} frames/s, latency "
                                    f"{statistics.median(stats.latency_ms[-30:]):.0f} ms, {box.dropped} dropped")
    finally:
        box.stop()
        reader.join(5.0)
        bar.close()
    stats.seconds = time.perf_counter() - t0
    stats.cpu_seconds = time.process_time() - c0
    stats.dropped = box.dropped
    return stats

def run_live(source: str, avatar_dir: str | Path, config: LiveConfig | None = None, host: str = "127.0.0.1",
             port: int = 8000, ws_port: int = 8765, wait_client: float = 0.0, site_dir: str | Path | None = None,
             progress: bool = True, on_ready=None) -> dict:
    """Serve the avatar's site, then track ``source`` and stream it; returns :meth:`LiveStats.summary`.

    Args:
        wait_client: seconds to wait for a page to connect before tracking starts (0: start at once).
        on_ready: called with the page URL once the servers listen (the CLI prints it).
    """
    config = config or LiveConfig()
    if config.fitter not in FITTERS:
        raise DejavuError(f"--fitter {config.fitter!r}: expected one of {', '.join(FITTERS)}")
    frames = open_source(source, config.max_frames)
    avatar = Avatar.load(avatar_dir)
    head = avatar.model("cpu").head
    site_dir = cached_site_dir(avatar_dir) if site_dir is None else site_dir
    build_site(avatar_dir, site_dir, force=True, progress=progress)
    try:
        hub = Broadcaster(host, ws_port)
    except OSError as exc:
        raise DejavuError(f"--ws-port {ws_port}: cannot listen on {host} ({exc.strerror})") from None
    try:
        http, base = serve_in_thread(site_dir, host, port)
    except OSError as exc:
        hub.close()
        raise DejavuError(f"--port {port}: cannot listen on {host} ({exc.strerror})") from None
    url = f"{base}index.html?live={hub.url}"
    try:
        if on_ready:
            on_ready(url)
        if wait_client > 0 and not hub.clients_connected.wait(wait_client):
            log.warning("live: no page connected within %.0f s; streaming anyway", wait_client)
        fitter = make_fitter(config, head, avatar.shape, avatar.vertex_offsets)
        with LandmarkDetector(video=True, max_faces=1) as detector:  # one face: no detector run per frame
            stats = track_stream(frames, fitter, detector, hub.send, config, progress, live=source.isdigit())
    finally:
        hub.close()
        http.shutdown()
    return stats.summary()

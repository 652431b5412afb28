"""``dejavu live``: track a webcam or a video file frame by frame and stream the parameters to the web player.

Per frame: MediaPipe landmarks (:class:`dejavu.track.landmarks.LandmarkDetector`, tracking mode) ->
an unrotated square crop around the face (:mod:`dejavu.track.align`, angle 0 so the fitted camera
keeps the head's roll) -> :class:`dejavu.track.fit.FrameFitter` with the avatar's identity, warm-started
from the previous frame -> one JSON message over a WebSocket (:mod:`dejavu.web.websocket`):
``{"frame", "expression" (Ne), "jaw" (3), "eyes" (6), "head_rotation" (3, axis-angle), "latency_ms"}``.
No crops, masks or overlays are made. Landmarks of frame t + 1 are detected on a second thread while
frame t is fitted (MediaPipe and torch both release the GIL), so the two cores work together.

Latency = from the frame being read to its message being sent. The page (``dejavu web`` site,
URL parameter ``live=ws://...``) renders each message as it arrives.
"""

from __future__ import annotations

import json
import logging
import queue
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
from dejavu.track.landmarks import LandmarkDetector
from dejavu.track.video import iter_frames
from dejavu.web.server import serve_in_thread
from dejavu.web.site import build_site, cached_site_dir, pose6_to_head_pose
from dejavu.web.websocket import Broadcaster

log = logging.getLogger(__name__)


@dataclass
class LiveConfig:
    """How ``dejavu live`` tracks and streams."""

    crop_size: int = 256
    """side of the (virtual) crop the landmarks are fitted in, pixels; only sets the pixel units."""
    rigid_steps: int = 2
    """camera-only fitting steps per frame (x4 on the first frame)."""
    steps: int = 8
    """expression/jaw/eyes/camera fitting steps per frame (x4 on the first frame); ~5 ms each on this CPU."""
    max_frames: int | None = None
    """stop after this many source frames (None: until the source ends)."""
    realtime: bool = False
    """pace a video file at its own frame rate (a webcam paces itself); off: as fast as tracking goes."""
    drop_stale: bool = False
    """keep only the newest detected frame when the fitter is busy (on for webcams: a live view wants the
    present, not a queue); off: every frame is fitted (video files)."""


@dataclass
class LiveStats:
    """What a live run did: frames tracked, frames without a face, seconds, per-frame latencies (ms)."""

    tracked: int = 0
    missed: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    latency_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        lat = sorted(self.latency_ms) or [float("nan")]
        return {"frames_tracked": self.tracked, "frames_without_face": self.missed,
                "seconds": round(self.seconds, 3),
                "fps": round(self.tracked / self.seconds, 2) if self.seconds > 0 else 0.0,
                # CPU time of the whole process per frame (both threads, MediaPipe's included): what the
                # frame rate would be bounded by on idle cores, whatever else shares the machine
                "cpu_ms_per_frame": round(1e3 * self.cpu_seconds / max(self.tracked, 1), 2),
                "latency_ms_median": round(statistics.median(lat), 2),
                "latency_ms_p90": round(lat[int(0.9 * (len(lat) - 1))], 2)}


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

    r = lambda t: [round(float(x), 5) for x in np.asarray(t).ravel()]  # noqa: E731
    return json.dumps({"frame": frame, "expression": r(p["expression"][0]), "jaw": r(p["jaw"][0]),
                       "eyes": r(p["eyes"][0]), "head_rotation": r(pose6_to_head_pose(p["pose6"])[0]),
                       "latency_ms": round(latency_ms, 2)})


def track_stream(frames, fitter, detector, send, config: LiveConfig, progress: bool = True) -> LiveStats:
    """Detect and fit every frame of ``frames``, calling ``send(json_text)`` per tracked frame.

    Detection runs one frame ahead on a worker thread. ``frames`` yields (index, time, image).
    """
    from tqdm.auto import tqdm

    stats = LiveStats()
    detected: queue.Queue = queue.Queue(maxsize=1)  # one frame ahead: more would only add latency

    def detect_all():
        t_start = time.perf_counter()
        try:
            for index, t, image in frames:
                if config.realtime:
                    wait = t - (time.perf_counter() - t_start)
                    if wait > 0:
                        time.sleep(wait)
                t_read = time.perf_counter()
                item = (index, t_read, detector(image))
                if config.drop_stale:
                    try:
                        detected.get_nowait()  # the fitter has not taken the previous frame: drop it
                    except queue.Empty:
                        pass
                detected.put(item)
        except Exception as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            detected.put(exc)
        detected.put(None)

    worker = threading.Thread(target=detect_all, daemon=True)
    t0, c0 = time.perf_counter(), time.process_time()
    worker.start()
    bar = tqdm(desc="live", unit="frame", disable=not progress)
    while True:
        item = detected.get()
        if item is None:
            break
        if isinstance(item, Exception):
            raise item
        index, t_read, det = item
        if det is None:
            stats.missed += 1
            continue
        p = fitter(crop_landmarks(det.points, config.crop_size))
        text = message(index, p, (time.perf_counter() - t_read) * 1e3)
        send(text)
        stats.latency_ms.append((time.perf_counter() - t_read) * 1e3)
        stats.tracked += 1
        bar.update(1)
    bar.close()
    stats.seconds = time.perf_counter() - t0
    stats.cpu_seconds = time.process_time() - c0
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
    if source.isdigit():
        from dataclasses import replace

        config = replace(config, drop_stale=True)
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
        fitter = FrameFitter(head, avatar.shape, avatar.vertex_offsets, config.crop_size,
                             rigid_steps=config.rigid_steps, steps=config.steps)
        with LandmarkDetector(video=True) as detector:
            stats = track_stream(frames, fitter, detector, hub.send, config, progress)
    finally:
        hub.close()
        http.shutdown()
    return stats.summary()

"""Time live tracking (landmarks + per-frame fit + WebSocket message) on a video as a 640x480 webcam stand-in.

The video's first frames are centre-cropped to the source's aspect ratio, resized (default 640x480) and
held in memory, then fed through :func:`dejavu.web.live.track_stream` to a connected WebSocket client
three times: paced at the video's frame rate with stale frames dropped (a webcam: frames/s tracked and
latency from capture to sent), every frame as fast as tracking goes (what the CPU sustains), and every
frame with the reference Adam fitter (the same-run reference the speed-up is measured against).
"""

from __future__ import annotations

import argparse
import statistics
import threading
from dataclasses import replace

import torch

from dejavu.avatar import Avatar
from dejavu.bench.common import machine_info
from dejavu.errors import DejavuError
from dejavu.head import load_head
from dejavu.track.frame_fit import GaussNewtonFitter
from dejavu.track.landmarks import LandmarkDetector
from dejavu.track.video import iter_frames, probe
from dejavu.web.live import LiveConfig, make_fitter, summary_line, track_stream
from dejavu.web.websocket import Broadcaster, connect, receive


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="a video with one face (its first frames stand in for a webcam)")
    parser.add_argument("--avatar", default=None, help="avatar directory whose identity is fitted "
                                                       "(default: the built-in head, average identity)")
    parser.add_argument("--frames", type=int, default=150, help="source frames per run (default 150)")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT the frames are resized to (default 640x480)")
    parser.add_argument("--iterations", type=int, default=2, help="lm: most iterations per frame (default 2)")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise DejavuError(f"--size {text}: expected WIDTHxHEIGHT, e.g. 640x480") from None
    if w < 64 or h < 64:
        raise DejavuError(f"--size {text}: expected at least 64x64")
    return w, h


def webcam_frames(video: str, n: int, size: tuple[int, int]) -> tuple[list, float]:
    """The first ``n`` frames of ``video`` centre-cropped to ``size``'s aspect and resized: (H, W, 3) uint8 each; fps."""
    import cv2  # optional backend: only the benchmark resizes frames with it

    info = probe(video)
    if info.kind != "video":
        raise DejavuError(f"{video}: expected a video file")
    W, H = size
    out = []
    for f in iter_frames(video, max_frames=n):
        h, w = f.image.shape[:2]
        cw, ch = min(w, h * W // H), min(h, w * H // W)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        out.append(cv2.resize(f.image[y0:y0 + ch, x0:x0 + cw], (W, H), interpolation=cv2.INTER_AREA))
    return out, info.fps


def _run_once(frames, fps, head, shape, offsets, config, live: bool, hub) -> tuple[dict, list[float]]:
    """One live run: its summary and the fitted frames' landmark RMSE (px at 512, the fit's data term)."""

    fitter = make_fitter(config, head, shape, offsets)
    judge = GaussNewtonFitter(head, shape, offsets, config.crop_size)  # only its landmark_rmse
    fitted = []

    def fit(landmarks):
        p = fitter(landmarks)
        fitted.append((landmarks, p))
        return p

    fit.reset = fitter.reset
    with LandmarkDetector(video=True, max_faces=1) as detector:
        detector(frames[0])  # MediaPipe's start-up (graph, first detection) is not per-frame work
        detector.close()
    with LandmarkDetector(video=True, max_faces=1) as detector:
        source = ((i, i / fps, image) for i, image in enumerate(frames))
        summary = track_stream(source, fit, detector, hub.send, config, progress=False, live=False).summary()
    return summary, [judge.landmark_rmse(p, lm) for lm, p in fitted]


def run(args: argparse.Namespace) -> dict:



    for flag, value in (("--frames", args.frames), ("--iterations", args.iterations)):
        if value < 1:
            raise DejavuError(f"{flag} {value}: expected a positive number")
    size = _size(args.size)
    frames, fps = webcam_frames(args.video, args.frames, size)
    if args.avatar:
        avatar = Avatar.load(args.avatar)
        head, shape, offsets = avatar.model("cpu").head, avatar.shape, avatar.vertex_offsets
    else:
        head = load_head("builtin")
        shape, offsets = torch.zeros(head.n_shape), None
    hub = Broadcaster("127.0.0.1", 0)
    client = connect("127.0.0.1", hub.port)
    received = []
    reader = threading.Thread(target=lambda: [received.append(1) for _ in iter(lambda: receive(client), None)],
                              daemon=True)
    reader.start()
    if not hub.clients_connected.wait(10):
        raise RuntimeError("bench live: the WebSocket client did not connect")
    lm = LiveConfig(iterations=args.iterations)
    runs = {"webcam (paced, lm)": (replace(lm, realtime=True)), "every frame (lm)": lm,
            "every frame (adam reference)": replace(lm, fitter="adam")}
    results = {}
    try:
        for name, config in runs.items():
            summary, rmse = _run_once(frames, fps, head, shape, offsets, config, False, hub)
            summary["landmark_rmse_px_median"] = round(statistics.median(rmse), 3) if rmse else float("nan")
            results[name] = summary
            print(f"{name}: {summary_line(summary)}; landmark RMSE median "
                  f"{summary['landmark_rmse_px_median']:.2f} px at 512", flush=True)
    finally:
        hub.close()
        client.close()
    new, ref = results["every frame (lm)"], results["every frame (adam reference)"]
    ratios = {"fps_lm_over_adam": round(new["fps"] / max(ref["fps"], 1e-9), 2),
              "fit_cpu_adam_over_lm": round(ref["stage_cpu_ms"]["fit"] / max(new["stage_cpu_ms"]["fit"], 1e-9), 2),
              "cpu_per_frame_adam_over_lm": round(ref["cpu_ms_per_frame"] / max(new["cpu_ms_per_frame"], 1e-9), 2)}
    print(f"lm against the adam reference (every frame, same run): {ratios['fps_lm_over_adam']:.2f}x frames/s, "
          f"fit CPU / {ratios['fit_cpu_adam_over_lm']:.1f}, process CPU per frame / "
          f"{ratios['cpu_per_frame_adam_over_lm']:.2f}", flush=True)
    return {"target": "live", "video": args.video, "size": list(size), "source_fps": fps, "frames": len(frames),
            "runs": results, "ratios": ratios, "messages_received": len(received), "machine": machine_info()}

"""Time face tracking (landmarks, fit, crops, masks) end to end on the first frames of a video.

``seconds`` / ``frames_per_second`` come from the run's summary.json (decode to written outputs, head
model already loaded); ``stage_cpu_seconds`` is the process CPU time, a fairer figure on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from dejavu.bench.common import machine_info
from dejavu.head import load_head_assets
from dejavu.track import track


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="video (or image folder) to track")
    parser.add_argument("--frames", type=int, default=100, help="first N frames (default 100)")
    parser.add_argument("--head", default="builtin", help="head model spec (default builtin)")
    parser.add_argument("--no-overlay", action="store_true", help="do not write the overlay video")
    parser.add_argument("-o", "--output", default=None, help="keep the tracking here (default: a temp folder)")


def run(args: argparse.Namespace) -> dict:
    load_head_assets(args.head)  # build/load the head first so a one-off cache fill is not timed
    with tempfile.TemporaryDirectory(prefix="dejavu-bench-track-") as tmp:
        out = Path(args.output) if args.output else Path(tmp) / "tracking"
        t0 = time.perf_counter()
        res = track(args.input, out, head=args.head, max_frames=args.frames, overlay=not args.no_overlay,
                    force=True, progress=False)
        wall = time.perf_counter() - t0
        summary = json.loads((out / "summary.json").read_text())
    result = {
        "target": "track", "input": str(Path(args.input).resolve()), "frames": len(res), "head": args.head,
        "seconds": summary["seconds"], "frames_per_second": summary["frames_per_second"],
        "wall_seconds_with_head_loading": round(wall, 3), "stage_seconds": summary["stage_seconds"],
        "stage_cpu_seconds": summary["stage_cpu_seconds"],
        "landmark_rmse_px": summary["landmark_rmse_px"], "failed_frames": len(res.failed_frames),
        "machine": machine_info(),
    }
    print(f"track: {result['frames']} frames in {result['seconds']:.1f} s = {result['frames_per_second']:.2f} frames/s, "
          f"landmark RMSE {result['landmark_rmse_px']:.2f} px")
    return result

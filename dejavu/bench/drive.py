"""Time reading driving files: a Live Link Face take (default 60 s at 60 fps) parsed and turned into a Drive.

References measured in the same run: the same parse one Python step per row (the ``csv`` module,
:func:`dejavu.drive.arkit.read_live_link_csv_rowwise`), and the time the renderer needs for the take's
frames at the given resolution (rendering a few frames of a flat built-in avatar, scaled to the take).
The target: parsing is a small fraction of rendering.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from dejavu.animate import cameras, render_sequence
from dejavu.bench.common import flat_builtin_avatar, machine_info
from dejavu.device import resolve_device
from dejavu.drive import drive_from_file
from dejavu.drive.arkit import ARKIT_NAMES, read_live_link_csv, read_live_link_csv_rowwise
from dejavu.drive.sources import expression_sweep
from dejavu.head import load_head


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, help="take length (default 60 s)")
    parser.add_argument("--fps", type=int, default=60, help="capture rate (default 60)")
    parser.add_argument("--resolution", type=int, default=256, help="render side of the reference (default 256)")
    parser.add_argument("--render-frames", type=int, default=16, help="frames rendered for the reference (default 16)")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda")


def write_live_link_take(path, seconds: float, fps: int, seed: int = 0) -> int:
    """A synthetic Live Link Face CSV (all 52 units, head and eye angles, columns in the app's order); T rows."""
    T = int(round(seconds * fps))
    rng = np.random.default_rng(seed)
    t = np.arange(T) / fps
    w = 0.5 + 0.5 * np.sin(t[:, None] * rng.uniform(0.5, 3, 52) + rng.uniform(0, 6.3, 52))
    angles = 0.2 * np.sin(t[:, None] * rng.uniform(0.2, 1, 9))
    cap = lambda n: n[0].upper() + n[1:]  # noqa: E731
    header = ["Timecode", "BlendShapeCount"] + [cap(n) for n in ARKIT_NAMES] + [
        "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw",
        "RightEyePitch", "RightEyeRoll"]
    sec = 15 * 3600 + 3 * 60 + np.arange(T) // fps
    tc = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{f:02d}.000" for s, f in zip(sec, np.arange(T) % fps)]
    body = np.concatenate([w, angles], 1)
    lines = [",".join(header)] + [f"{c},61," + ",".join(f"{x:.6f}" for x in row) for c, row in zip(tc, body)]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return T


def run(args: argparse.Namespace) -> dict:
    dev = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "take.csv"
        T = write_live_link_take(path, args.seconds, args.fps)
        head = load_head("builtin")  # built before timing
        timings = {}
        for name, fn in (("parse", lambda: read_live_link_csv(path)),
                         ("parse_rowwise_reference", lambda: read_live_link_csv_rowwise(path)),
                         ("drive_from_file", lambda: drive_from_file(path, "builtin"))):
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            timings[name] = best
    avatar = flat_builtin_avatar(64)
    model = avatar.model(dev)
    n = args.render_frames
    sweep = expression_sweep(model.head, n)
    w2c, K = cameras("fixed", n, args.resolution, model.center())
    list(render_sequence(model, sweep.first(8), w2c[:8], K[:8], args.resolution, progress=False))
    t0 = time.perf_counter()
    for _ in render_sequence(model, sweep, w2c, K, args.resolution, progress=False):
        pass  # streamed, as dejavu animate consumes frames (a list of float frames timed memory growth too)
    render_per_frame = (time.perf_counter() - t0) / n
    render_take = render_per_frame * T
    res = {"target": "drive", "rows": T, "seconds_of_capture": args.seconds, "fps": args.fps,
           "parse_s": round(timings["parse"], 4), "drive_from_file_s": round(timings["drive_from_file"], 4),
           "rowwise_reference_s": round(timings["parse_rowwise_reference"], 4),
           "speedup_vs_rowwise": round(timings["parse_rowwise_reference"] / timings["parse"], 2),
           "render_per_frame_s": round(render_per_frame, 4), "render_take_s": round(render_take, 2),
           "parse_fraction_of_render": round(timings["drive_from_file"] / render_take, 5),
           "resolution": args.resolution, "gaussians": model.uvmap.n_gaussians, "machine": machine_info()}
    print(f"drive: {T} Live Link rows parsed in {res['parse_s'] * 1e3:.0f} ms ({res['speedup_vs_rowwise']}x the "
          f"row-wise reference), Drive in {res['drive_from_file_s'] * 1e3:.0f} ms; rendering the take at "
          f"{args.resolution}^2 takes ~{render_take:.0f} s ({res['parse_fraction_of_render'] * 100:.3f} % of it)")
    return res

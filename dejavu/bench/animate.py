"""Time avatar animation: render frames of the expression sweep at a resolution (frames/s), each handed on as
the uint8 frame the encoder takes, then encode them as ``dejavu animate`` does (the encoder's share, reported
apart). The rendered frames go into one array allocated before the clock starts: ``dejavu animate`` streams
them to the encoder, and a growing list of float frames (the earlier way) spent a third of the time
obtaining fresh memory."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from dejavu.animate import cameras, render_sequence
from dejavu.avatar import Avatar
from dejavu.bench.common import flat_builtin_avatar, machine_info
from dejavu.device import resolve_device
from dejavu.drive.sources import expression_sweep
from dejavu.io import to_uint8, write_video


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("avatar", nargs="?", default=None,
                        help="avatar directory (default: a network-free avatar on the built-in head, --uv-size)")
    parser.add_argument("--uv-size", type=int, default=64,
                        help="UV side of the default avatar (default 64; 256 gives ~48k Gaussians)")
    parser.add_argument("--frames", type=int, default=64, help="frames to render (default 64)")
    parser.add_argument("--resolution", type=int, default=512, help="output side (default 512, as dejavu animate)")
    parser.add_argument("--chunk", type=int, default=8, help="frames per render call (default 8)")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda")


def run(args: argparse.Namespace) -> dict:
    dev = resolve_device(args.device)
    if args.avatar:
        avatar = Avatar.load(args.avatar)
    else:
        avatar = flat_builtin_avatar(args.uv_size)
    model = avatar.model(dev)
    uvmap = model.uvmap
    drive = expression_sweep(model.head, args.frames)
    w2c, K = cameras("orbit", len(drive), args.resolution, model.center())
    c = args.chunk
    warm = drive.first(c)
    list(render_sequence(model, warm, w2c[:c], K[:c], args.resolution, chunk=c,
                         progress=False))  # warm-up (numba compile, caches)
    frames = np.ones((len(drive), args.resolution, args.resolution, 3), np.uint8)  # allocated and touched
    t0, c0 = time.perf_counter(), time.process_time()
    for i, frame in enumerate(render_sequence(model, drive, w2c, K, args.resolution, chunk=args.chunk,
                                              progress=False)):
        frames[i] = to_uint8(frame)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(frames)
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        write_video(Path(tmp) / "bench.mp4", frames, fps=drive.fps)
        encode = time.perf_counter() - t1
    res = {"target": "animate", "avatar": args.avatar or f"builtin-flat-uv{args.uv_size}",
           "gaussians": uvmap.n_gaussians, "frames": n, "resolution": args.resolution, "seconds": round(wall, 3),
           "cpu_seconds": round(cpu, 3), "fps": round(n / wall, 2), "encode_seconds": round(encode, 3),
           "fps_with_encoding": round(n / (wall + encode), 2), "machine": machine_info()}
    print(f"animate: {n} frames at {args.resolution}^2 with {uvmap.n_gaussians} Gaussians: {res['fps']:.1f} fps "
          f"rendering ({cpu / n * 1e3:.1f} ms CPU a frame); encoding {encode / n * 1e3:.1f} ms a frame "
          f"({encode / (wall + encode):.0%} of the time), {res['fps_with_encoding']:.1f} fps with it")
    return res

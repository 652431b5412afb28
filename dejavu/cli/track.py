"""``dejavu track INPUT -o DIR``: photos or a video -> head parameters, cameras, crops and masks."""

from __future__ import annotations

import argparse

from dejavu.cli.values import check_positive
from dejavu.errors import DejavuError
from dejavu.outputs import check_output_dir
from dejavu.track import track
from dejavu.track.fit import FitConfig
from dejavu.track.video import probe


def register(parser: argparse.ArgumentParser) -> None:
    """Describe the command on ``parser`` (its summary: ``dejavu.cli.COMMANDS``)."""
    parser.description = ("Detect MediaPipe landmarks, align FFHQ-style crops, fit camera, identity and per-frame "
                          "expression/jaw/eyes, and write tracking.npz, summary.json, crops, masks and an overlay "
                          "(see docs/TRACKING.md). Re-running with the same input and settings reuses the result.")
    parser.add_argument("input", help="image, folder of images, or video file")
    parser.add_argument("-o", "--output", required=True, help="output folder (created; replaced atomically)")
    parser.add_argument("--head", default="builtin", help="builtin (default), flame:PATH or procedural")
    parser.add_argument("--fps", type=float, default=None, help="resample videos to this frame rate (default: all frames)")
    parser.add_argument("--max-frames", type=int, default=None, help="track at most this many frames")
    parser.add_argument("--crop-size", type=int, default=512, help="aligned crop side in pixels (default 512)")
    add_fov_argument(parser)
    parser.add_argument("--no-overlay", action="store_true", help="skip overlay.mp4 / overlay.png")
    parser.add_argument("--force", action="store_true", help="recompute even if a cached result matches")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda (the landmark fit runs on the CPU)")
    parser.set_defaults(func=_run)


def add_fov_argument(parser: argparse.ArgumentParser) -> None:
    """``--fov DEG|auto``, shared by the commands that track (value: :func:`fov_value`)."""
    parser.add_argument("--fov", default=None, metavar="DEG|auto",
                        help="camera field of view over the aligned crop, degrees, or auto (the default): for "
                             "videos estimated from the landmarks where they determine it, else 20; photos 20 "
                             "(docs/TRACKING.md \"Field of view\")")


def fov_value(text: str | None) -> float | None:
    """``--fov`` text (None when not given) -> ``FitConfig.fov_deg``: degrees, or None for auto."""
    if text is None or text == "auto":
        return None
    try:
        fov = float(text)
    except ValueError:
        fov = float("nan")
    if not 1.0 <= fov <= 120.0:
        raise DejavuError(f"--fov {text}: expected degrees between 1 and 120, or auto")
    return fov


def _run(args: argparse.Namespace) -> int:
    if args.crop_size < 64 or args.crop_size > 2048 or args.crop_size % 2:
        raise DejavuError(f"--crop-size {args.crop_size}: expected an even size between 64 and 2048 pixels")
    check_positive("--fps", args.fps, "a positive frame rate")
    if args.max_frames is not None and args.max_frames <= 0:
        raise DejavuError(f"--max-frames {args.max_frames}: expected a positive count")
    fov = fov_value(args.fov)
    info = probe(args.input)
    n = min(info.n_frames, args.max_frames or info.n_frames)
    if args.fps and info.fps > args.fps:
        n = min(n, int(info.n_frames * args.fps / info.fps) + 1)
    # crops and masks as PNG: ~2 bytes a crop pixel a frame, plus the overlay video
    check_output_dir(args.output, need_bytes=max(1, n) * args.crop_size ** 2 * 2)

    result = track(args.input, args.output, head=args.head, fps=args.fps, max_frames=args.max_frames,
                   crop_size=args.crop_size, device=args.device, overlay=not args.no_overlay, force=args.force,
                   config=FitConfig(fov_deg=fov))
    err = result.error_px
    print(f"{len(result)} frames tracked, landmark RMSE {float((err ** 2).mean() ** 0.5):.2f} px, "
          f"FOV {result.fov_deg:.1f} deg"
          + (f", {len(result.failed_frames)} without a face" if result.failed_frames else ""))
    return 0

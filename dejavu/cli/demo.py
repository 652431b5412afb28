"""``dejavu demo -o DIR [--video V]``: the whole pipeline on skimage's astronaut photo (or a video); the job
itself is :func:`dejavu.demo.run_demo`. Prints where everything is."""

from __future__ import annotations

import argparse
from pathlib import Path

from dejavu.cli.values import check_positive
from dejavu.demo import run_demo

def register(parser: argparse.ArgumentParser) -> None:
    """Describe the command on ``parser`` (its summary: ``dejavu.cli.COMMANDS``)."""
    parser.description = ("Without --video: reconstruct an avatar from skimage's astronaut photo, animate it through "
                          "expressions and an orbit, export a .ply. With --video: personalize (short budget), "
                          "animate, export.")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--video", default=None, help="a short talking-head video to personalize on")
    parser.add_argument("--minutes", type=float, default=6.0, help="personalization budget with --video (default 6)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--force", action="store_true", help="replace the avatars of an earlier demo in the folder")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_positive("--minutes", args.minutes)
    outputs = run_demo(Path(args.output), video=args.video, minutes=args.minutes, device=args.device, force=args.force)
    print("demo outputs:")
    for name, path in outputs.items():
        print(f"  {name:<14} {path}")
    return 0

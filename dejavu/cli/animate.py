"""``dejavu animate AVATAR_DIR --drive SRC -o OUT.mp4``: drive an avatar and render a video."""

from __future__ import annotations

import argparse

from dejavu.animate import RESOLUTION, animate
from dejavu.errors import DejavuError
from dejavu.limits import check_memory
from dejavu.outputs import check_output_file

#: Largest output side: a 4K square; beyond it a frame's render buffers outgrow a laptop.
MAX_RESOLUTION = 4096
#: Peak bytes per output pixel while a frame renders (rasterizer tiles, depth, alpha, the encoded frame).
RENDER_BYTES_PER_PIXEL = 256


def register(parser: argparse.ArgumentParser) -> None:
    """Describe the command on ``parser`` (its summary: ``dejavu.cli.COMMANDS``)."""
    parser.description = ("Render the avatar driven by --drive (a video, tracked on the fly; a tracking directory; a "
                          "Live Link Face CSV; an ARKit/MediaPipe blendshape CSV or JSON; a FLAME .npz with exp and "
                          "jaw; or a .json/.npz file with expression (T, Ne) and optional jaw (T, 3), eyes (T, 6), "
                          "pose6 (T, 6), fps; files are told apart by content), or with --expressions a built-in tour "
                          "of expressions. No network runs.")
    parser.add_argument("avatar", help="avatar directory")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--drive", default=None, help="driving video, tracking directory, Live Link Face CSV, "
                     "blendshape CSV/JSON, FLAME .npz, or .json/.npz parameters")
    src.add_argument("--expressions", action="store_true", help="built-in sweep through expressions (no --drive)")
    parser.add_argument("-o", "--output", required=True, help="output .mp4")
    parser.add_argument("--camera", choices=("fixed", "orbit", "source"), default=None,
                        help="fixed (frontal), orbit (yaw +-30 deg) or source (the driving cameras); default: "
                             "source when the drive has cameras, orbit with --expressions, else fixed")
    parser.add_argument("--orbit-degrees", type=float, default=30.0, metavar="D",
                        help="--camera orbit: sweep the yaw from -D to +D degrees and back (default 30; 60 shows "
                             "the sides of the head, 90 the ears)")
    parser.add_argument("--side-by-side", action="store_true", help="put the driving crops left of the render")
    parser.add_argument("--resolution", type=int, default=None,
                        help="output side in pixels (default 512, dejavu.animate.RESOLUTION)")
    parser.add_argument("--frames", type=int, default=None, help="at most this many frames (sweep length: 150)")
    parser.add_argument("--refine-pose", action="store_true",
                        help="re-rendering the avatar's own person: fit each frame's head pose to the driving "
                             "video first (needs a video or tracking directory and --camera source; ~2 s a "
                             "frame at 256 on a 2-core CPU)")
    parser.add_argument("--flame", default=None, help="FLAME model (file or folder) a FLAME --drive sequence was "
                        "made with, to drive a built-in-head avatar (default: $DEJAVU_FLAME)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.resolution is None:
        args.resolution = RESOLUTION
    if not 16 <= args.resolution <= MAX_RESOLUTION or args.resolution % 2:
        raise DejavuError(f"--resolution {args.resolution}: expected an even number of pixels between 16 and "
                          f"{MAX_RESOLUTION}")
    if not 0 <= args.orbit_degrees <= 180:
        raise DejavuError(f"--orbit-degrees {args.orbit_degrees}: expected 0 to 180")
    if args.frames is not None and args.frames <= 0:
        raise DejavuError(f"--frames {args.frames}: expected a positive count")

    side = args.resolution * (2 if args.side_by_side else 1)
    check_memory(args.resolution * side * RENDER_BYTES_PER_PIXEL, f"--resolution {args.resolution}")
    check_output_file(args.output, suffixes=(".mp4",), need_bytes=(args.frames or 150) * args.resolution * side // 4)
    rec = animate(args.avatar, args.output, drive=args.drive, camera=args.camera, side_by_side=args.side_by_side,
                  resolution=args.resolution, device=args.device, max_frames=args.frames,
                  sweep_frames=args.frames or 150, refine_pose=args.refine_pose, flame=args.flame,
                  orbit_deg=args.orbit_degrees)
    if "refined_pose" in rec:
        r = rec["refined_pose"]
        print(f"refined poses: {r['mean_rotation_deg']:.2f} deg, {r['mean_translation_mm']:.1f} mm from the tracked "
              f"ones on average")
    print(f"video written to {rec['output']} ({rec['frames']} frames, {rec['render_fps']:.1f} fps)")
    return 0

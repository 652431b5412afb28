"""``dejavu export AVATAR_DIR -o OUT.ply|.splat|.spz|.compressed.ply`` or ``--drive SRC -o DIR/``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from dejavu.splat_formats import DEFAULT_UP, SUFFIXES  # torch-free: the CLI parser loads no torch

    parser = subparsers.add_parser(
        "export", help="export an avatar (neutral, one frame, or a driven sequence) as splat files",
        description="Write the avatar's Gaussians as a 3D Gaussian Splatting .ply (binary little endian: x y z, "
                    "normals, f_dc_0..2, [f_rest_0..44], opacity logit, log scales, rotation wxyz; its frame in a "
                    "header comment), an antimatter15 .splat, a Niantic .spz or a PlayCanvas .compressed.ply, by "
                    "the output's suffix. With --drive, one file per frame into a folder plus index.json.")
    parser.add_argument("avatar", help="avatar directory")
    parser.add_argument("-o", "--output", required=True,
                        help=f"output file ({', '.join(SUFFIXES)}), or a folder with --drive")
    parser.add_argument("--params", default=None,
                        help="expression source of the one frame written: any --drive file of `dejavu animate` "
                             "(parameter .json/.npz, Live Link Face CSV, blendshape CSV/JSON, FLAME .npz, tracking "
                             "directory); default: neutral")
    parser.add_argument("--frame", type=int, default=0, help="frame of --params to export (default 0)")
    parser.add_argument("--drive", default=None, help="export every frame of this driving source into -o DIR/")
    parser.add_argument("--format", default="ply", choices=[s.lstrip(".") for s in SUFFIXES],
                        help="file format of each frame with --drive (default ply)")
    parser.add_argument("--frames", type=int, default=None, help="with --drive: at most this many frames")
    parser.add_argument("--up", default=DEFAULT_UP, choices=("y", "-y"),
                        help=f"file frame: -y (COLMAP/OpenCV: -Y up; SuperSplat, antimatter15, SIBR) or y (+Y up: "
                             f"three.js viewers such as Spark, mkkellogg); default {DEFAULT_UP}; .spz always "
                             "stores its own +Y-up frame")
    parser.add_argument("--sh-degree", type=int, default=0, choices=(0, 3),
                        help=".ply only: 3 adds zero f_rest_0..44 for loaders that require them (default 0)")
    parser.add_argument("--flame", default=None, help="FLAME model for FLAME sequences driving a built-in-head "
                        "avatar (default: $DEJAVU_FLAME)")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dejavu.errors import DejavuError
    from dejavu.export import export_avatar, export_sequence
    from dejavu.outputs import check_output_file

    if args.drive is not None:
        if args.params is not None:
            raise DejavuError("--drive exports a whole sequence, --params one frame: give one of them")
        if args.frames is not None and args.frames <= 0:
            raise DejavuError(f"--frames {args.frames}: expected a positive count")
        rec = export_sequence(args.avatar, args.drive, args.output, fmt=args.format, device=args.device, up=args.up,
                              sh_degree=args.sh_degree, max_frames=args.frames, flame=args.flame)
        print(f"{rec['frames']} frames of {rec['gaussians']} Gaussians written to {args.output} "
              f"(index: {rec['index']}, {rec['fps']:g} fps)")
        return 0
    check_output_file(args.output, need_bytes=8 << 20)  # a .ply of 256^2 texels is ~4 MB; 320^2 ~7 MB
    path, n = export_avatar(args.avatar, args.output, params=args.params, frame=args.frame, device=args.device,
                            up=args.up, sh_degree=args.sh_degree, flame=args.flame)
    print(f"{n} Gaussians written to {path}")
    return 0

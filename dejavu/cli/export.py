"""``dejavu export AVATAR_DIR -o OUT.ply``: the avatar's Gaussians as a standard 3DGS .ply."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export an avatar (neutral, or one frame of a parameter file) as a 3DGS .ply",
        description="Write the avatar's Gaussians in the standard 3D Gaussian Splatting .ply layout (binary little "
                    "endian: x y z, normals, f_dc_0..2, opacity logit, log scales, rotation wxyz), readable by "
                    "common splat viewers.")
    parser.add_argument("avatar", help="avatar directory")
    parser.add_argument("-o", "--output", required=True, help="output .ply")
    parser.add_argument("--params", default=None,
                        help="expression source: a .json/.npz parameter file or tracking directory (default: neutral)")
    parser.add_argument("--frame", type=int, default=0, help="frame of --params to export (default 0)")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dejavu.export import export_avatar
    from dejavu.outputs import check_output_file

    check_output_file(args.output, need_bytes=8 << 20)  # a .ply of 256^2 texels is ~4 MB; 320^2 ~7 MB
    path, n = export_avatar(args.avatar, args.output, params=args.params, frame=args.frame, device=args.device)
    print(f"{n} Gaussians written to {path}")
    return 0

"""``dejavu head info``: what a head model holds, and two pictures of it."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.head import load_head
from dejavu.head.pictures import mesh_views, uv_layout_image
from dejavu.io import write_image
from dejavu.limits import check_uv_size
from dejavu.outputs import check_output_dir

UV_SIZES = (128, 256, 320)


def register(parser: argparse.ArgumentParser) -> None:
    """Describe the command on ``parser`` (its summary: ``dejavu.cli.COMMANDS``)."""
    parser.description = "Inspect head models."
    sub = parser.add_subparsers(dest="head_command", metavar="ACTION")
    info = sub.add_parser("info", help="print counts and write the UV-layout and mesh pictures",
                          description="Print vertex/face counts, bases, joints, Gaussians per UV size and region "
                                      "shares; write uv_layout.png and mesh.png.")
    info.add_argument("--head", default="builtin", help="builtin (default), flame:PATH or procedural")
    info.add_argument("--uv-size", type=int, default=320, help="UV map side S for the region shares (default 320)")
    info.add_argument("-o", "--output", default="head_info", help="folder for the pictures (default ./head_info)")
    info.set_defaults(func=_info)
    parser.set_defaults(func=lambda args: parser.print_help() or 0)


def _info(args: argparse.Namespace) -> int:
    check_uv_size(args.uv_size)
    check_output_dir(args.output, need_bytes=4 << 20)
    head = load_head(args.head)
    a = head.assets
    print(f"head {head.name}")
    print(f"  vertices {head.n_verts}, faces {len(a.faces)}, uv coords {len(a.uv_coords)}")
    print(f"  identity components {head.n_shape}, expression components {head.n_expr}"
          + (f" ({', '.join(head.expr_names[:6])}{', ...' if head.n_expr > 6 else ''})" if head.expr_names else ""))
    parents = [a.joint_names[p] if p >= 0 else "-" for p in a.parents]
    print("  joints " + ", ".join(f"{n} (parent {p})" for n, p in zip(a.joint_names, parents)))
    print(f"  pose correctives {'yes' if a.posedirs is not None else 'no'}; "
          f"landmarks embedded {int((a.landmark_weight > 0).sum())}/{len(a.landmark_weight)}")
    sizes = sorted(set(UV_SIZES) | {args.uv_size})
    maps = {s: UVGaussianMap(head, s) for s in sizes}
    print("  Gaussians " + ", ".join(f"{maps[s].n_gaussians} at {s}" for s in sizes))
    share = maps[args.uv_size].region_share()
    print(f"  region texel shares at {args.uv_size}: " + ", ".join(f"{k} {v:.1%}" for k, v in share.items() if v > 0))
    faces_per_region = np.bincount(np.asarray(a.face_region, dtype=np.int64), minlength=7)
    print("  faces per region: " + ", ".join(f"{n} {c}" for n, c in zip(("face", "scalp", "ears", "eyes", "mouth", "neck", "other"), faces_per_region) if c))
    out = Path(args.output)
    uv_png = write_image(out / "uv_layout.png", uv_layout_image(head, 512))
    mesh_png = write_image(out / "mesh.png", mesh_views(head, 512))
    print(f"wrote {uv_png} (UV layout by region) and {mesh_png} (front and 3/4 views with landmarks)")
    return 0

"""``dejavu reconstruct IMAGE -o AVATAR_DIR``: one photo -> an avatar (paper section 3.3)."""

from __future__ import annotations

import argparse

from dejavu.limits import check_uv_size
from dejavu.outputs import check_output_dir
from dejavu.track.prefetch import MediaPipePrefetch

#: What a reconstruction writes at the default sizes (avatar, tracking crop and masks, turntable, .ply), with room.
OUTPUT_BYTES = 64 << 20


def register(parser: argparse.ArgumentParser) -> None:
    """Describe the command on ``parser`` (its summary: ``dejavu.cli.COMMANDS``)."""
    parser.description = ("Track the face, run the generalized reconstruction network and save an avatar (avatar.json "
                          "+ avatar.safetensors), a reconstruction.png (input | render), a turntable.mp4 (+-60 "
                          "degrees) and an avatar.ply. See docs/RECONSTRUCTION.md.")
    parser.add_argument("image", help="a photo with a face")
    parser.add_argument("-o", "--output", required=True, help="avatar folder to write")
    parser.add_argument("--head", default=None, help="head model (default: the one the weights were trained on)")
    parser.add_argument("--weights", default=None, help="reconstruction weights (default: the shipped ones)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--uv-size", type=int, default=None,
                        help="avatar UV side (default 256; the network's offsets are resampled to it)")
    parser.add_argument("--network-colors", action="store_true",
                        help="keep the network's colours instead of reading the visible ones off the photo")
    parser.add_argument("--no-turntable", action="store_true", help="skip turntable.mp4")
    parser.add_argument("--no-ply", action="store_true", help="skip avatar.ply")
    parser.add_argument("--force", action="store_true", help="replace a finished avatar in AVATAR_DIR")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.uv_size is not None:
        check_uv_size(args.uv_size)
    check_output_dir(args.output, kind="avatar", force=args.force, need_bytes=OUTPUT_BYTES)
    # MediaPipe works on the photo in a child process while this one imports torch (saves ~1 s): the network's
    # module (torch, the head models) is imported here, after the child started, not at the top.
    prefetch = MediaPipePrefetch(args.image)
    from dejavu.recon.predict import DEFAULT_PHOTO_ITERATIONS, DEFAULT_UV_SIZE, reconstruct

    try:
        rec = reconstruct(args.image, args.output, head=args.head, device=args.device, weights=args.weights,
                          turntable=not args.no_turntable, ply=not args.no_ply,
                          uv_size=DEFAULT_UV_SIZE if args.uv_size is None else args.uv_size,
                          photo_iterations=None if args.network_colors else DEFAULT_PHOTO_ITERATIONS, prefetch=prefetch,
                          force=args.force)
    finally:
        prefetch.close()
    s = rec.seconds
    print(f"reconstructed in {s['total']:.1f} s (tracking {s['track']:.1f} s, network {s['network']:.2f} s, "
          f"photo colours {s['photo_texture']:.2f} s, outputs {s['outputs']:.1f} s)")
    for name, path in rec.files.items():
        print(f"  {name:<15} {path}")
    print(f"avatar written to {rec.out_dir}")
    return 0

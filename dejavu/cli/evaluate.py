"""``dejavu evaluate AVATAR_DIR (--video V | --image I) --json FILE``: held-out metrics (paper Tables 2-4)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score an avatar: video self-reenactment (held-out frames) or a single image",
        description="--video: drive the avatar with the tracked held-out last 10%% of the video's frames and compare "
                    "(L1, PSNR, SSIM, LPIPS alex/vgg; face region and whole head), for the full avatar and stage 1 "
                    "only. --image: the single-image reconstruction metrics (dejavu.recon.evaluate).")
    parser.add_argument("avatar", help="avatar directory")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", default=None, help="the personalization video (or its tracking directory)")
    src.add_argument("--image", default=None, help="a photo (single-image reconstruction evaluation)")
    parser.add_argument("--json", required=True, help="where to write the metrics")
    parser.add_argument("--frames", default=None,
                        help="also write prediction/target/mask PNGs and overview.png (frames side by side with their "
                             "error) into this folder")
    parser.add_argument("--refine-pose", action="store_true",
                        help="--video: also score the full avatar after fitting each held-out frame's rigid head pose "
                             "to its image (avatar frozen; stage full_refined_pose, beside the tracked-pose scores)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import json

    from dejavu.errors import DejavuError
    from dejavu.outputs import check_output_dir, check_output_file

    check_output_file(args.json, what="--json", need_bytes=1 << 20)
    if args.frames is not None:
        check_output_dir(args.frames, what="--frames", need_bytes=64 << 20)
    if args.video is not None:
        from dejavu.personalize.evaluate import evaluate_video

        out = evaluate_video(args.avatar, args.video, args.json, frames_dir=args.frames, device=args.device,
                             refine_pose=args.refine_pose)
        for stage, regions in out["stages"].items():
            for region, vals in regions.items():
                print(f"{stage:>6} {region:>4}: " + ", ".join(f"{k} {v:.4f}" for k, v in vals.items()))
        for stage, pf in out["per_frame"].items():
            v = pf["image"]
            lo, hi = min(range(len(v)), key=v.__getitem__), max(range(len(v)), key=v.__getitem__)
            print(f"{stage:>6} image PSNR per frame: {v[lo]:.2f} dB (frame {out['frame_index'][lo]}) to {v[hi]:.2f} dB "
                  f"(frame {out['frame_index'][hi]})")
        if "refined_pose" in out:
            r = out["refined_pose"]
            print(f"refined poses: {r['mean_rotation_deg']:.2f} deg, {r['mean_translation_mm']:.1f} mm from the tracked "
                  f"ones on average")
    else:
        if args.refine_pose:
            raise DejavuError("--refine-pose: only with --video (it refines the held-out frames' head poses)")
        try:
            from dejavu.recon.evaluate import evaluate_image
        except ImportError:
            raise DejavuError("--image: single-image evaluation (dejavu.recon.evaluate) is not available in this build") from None
        from dejavu.io import write_json

        out = evaluate_image(args.avatar, args.image, args.frames)
        write_json(args.json, out)
        print(json.dumps(out, indent=1)[:2000])
    print(f"metrics written to {args.json}" + (f"; images in {args.frames}" if args.frames else ""))
    return 0

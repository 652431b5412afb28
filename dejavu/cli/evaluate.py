"""``dejavu evaluate AVATAR_DIR (--video V | --image I | --novel-views)``: held-out metrics (paper Tables 2-4)
and the novel-view landmark check."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dejavu.errors import DejavuError
from dejavu.io import write_json
from dejavu.novel_views import NovelViewConfig, evaluate_novel_views, print_summary
from dejavu.outputs import check_output_dir, check_output_file
from dejavu.personalize.evaluate import evaluate_video
from dejavu.recon.evaluate import evaluate_image


def register(parser: argparse.ArgumentParser) -> None:
    """Describe the command on ``parser`` (its summary: ``dejavu.cli.COMMANDS``)."""
    parser.description = ("--video: drive the avatar with the tracked held-out frames of the video (the last 10%, or "
                          "with --holdout yaw the most turned 10%) and compare (L1, PSNR, SSIM, LPIPS alex/vgg; face "
                          "region and whole head), for the full avatar and stage 1 only. --image: the single-image "
                          "reconstruction metrics (dejavu.recon.evaluate). --novel-views: render the avatar from yaw "
                          "0, +-15, +-30, +-45, +-60 and pitch +-15 degrees, detect landmarks on each render and "
                          "report their RMSE (px at 512) to the avatar's own head-model landmarks "
                          "(dejavu.novel_views).")
    parser.add_argument("avatar", help="avatar directory")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", default=None, help="the personalization video (or its tracking directory)")
    src.add_argument("--image", default=None, help="a photo (single-image reconstruction evaluation)")
    src.add_argument("--novel-views", action="store_true",
                     help="landmarks detected on renders from 11 viewpoints against the avatar's own geometry")
    parser.add_argument("--json", default=None, help="where to write the metrics (required with --video/--image)")
    parser.add_argument("--frames", default=None,
                        help="also write prediction/target/mask PNGs and overview.png (frames side by side with their "
                             "error) into this folder; --novel-views: novel_views.png (every render with its "
                             "landmarks) goes there (default: beside --json FILE as FILE.png, else in the avatar "
                             "directory)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="render side in pixels (default: the avatar's training resolution, else its crop size)")
    parser.add_argument("--holdout", choices=("last", "yaw"), default=None,
                        help="--video: which frames are held out (default: the protocol the avatar was trained "
                             "with): last = the last 10%%, yaw = the 10%% turned farthest from the median yaw")
    parser.add_argument("--stage", choices=("full", "global", "mean"), default="full",
                        help="--novel-views: the avatar stage rendered (mean: the network-only avatar of a "
                             "personalized one)")
    parser.add_argument("--tracked-expressions", type=int, default=2, metavar="N",
                        help="--novel-views: also render N expressions of the avatar's own video (its tracking/ "
                             "folder), as different as its frames allow, scored apart from the named ones "
                             "(default 2; 0: none)")
    parser.add_argument("--refine-pose", action="store_true",
                        help="--video: also score the full avatar after fitting each held-out frame's rigid head pose "
                             "to its image (avatar frozen; stage full_refined_pose, beside the tracked-pose scores)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.json is None and not args.novel_views:
        raise DejavuError("--json FILE: required with --video and --image (where the metrics go)")
    if args.resolution is not None and args.resolution <= 0:
        raise DejavuError(f"--resolution {args.resolution}: expected a positive number of pixels")
    if args.holdout is not None and args.video is None:
        raise DejavuError("--holdout: only with --video (it picks the held-out frames of the video)")
    if args.stage != "full" and not args.novel_views:
        raise DejavuError("--stage: only with --novel-views")
    if args.tracked_expressions < 0:
        raise DejavuError(f"--tracked-expressions {args.tracked_expressions}: expected 0 or more")
    if args.refine_pose and args.video is None:
        raise DejavuError("--refine-pose: only with --video (it refines the held-out frames' head poses)")
    if args.json is not None:
        check_output_file(args.json, what="--json", need_bytes=1 << 20)
    if args.frames is not None:
        check_output_dir(args.frames, what="--frames", need_bytes=64 << 20)
    if args.novel_views:
        picture = (Path(args.frames) / "novel_views.png" if args.frames else
                   Path(args.json).with_suffix(".png") if args.json else Path(args.avatar) / "novel_views.png")
        out = evaluate_novel_views(args.avatar, args.json, picture,
                                   NovelViewConfig(resolution=args.resolution, stage=args.stage,
                                                   tracked=args.tracked_expressions), device=args.device)
        print_summary(out)
        print((f"metrics written to {args.json}; " if args.json else "") + f"renders in {picture}")
        return 0
    if args.video is not None:
        out = evaluate_video(args.avatar, args.video, args.json, frames_dir=args.frames, device=args.device,
                             refine_pose=args.refine_pose, holdout=args.holdout, resolution=args.resolution)
        print(f"held-out frames: {out['frames']} (--holdout {out['holdout']})")
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
        out = evaluate_image(args.avatar, args.image, args.frames, device=args.device,
                             **({"crop_size": args.resolution} if args.resolution else {}))
        write_json(args.json, out)
        print(json.dumps(out, indent=1)[:2000])
    print(f"metrics written to {args.json}" + (f"; images in {args.frames}" if args.frames else ""))
    return 0

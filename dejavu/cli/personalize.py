"""``dejavu personalize VIDEO -o AVATAR_DIR``: a monocular video -> a personalized avatar (paper section 3.4)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from dejavu.cli.track import add_fov_argument, fov_value
from dejavu.cli.values import check_positive
from dejavu.errors import DejavuError
from dejavu.limits import check_uv_size
from dejavu.personalize.config import preset
from dejavu.personalize.pipeline import VIEWS_FILE, heldout_summary, personalize
from dejavu.personalize.pose import REFINE_POSE_LR
from dejavu.track.result import is_tracking_dir


def register(parser: argparse.ArgumentParser) -> None:
    """Describe the command on ``parser`` (its summary: ``dejavu.cli.COMMANDS``)."""
    parser.description = ("Track the video (cached), average the reconstruction network's offsets over ~50 frames (or "
                          "start from --init), then train a global delta (stage 1) and K expression blendmaps (stage "
                          "2) on the first 90% of the frames (--holdout yaw: all but the most turned 10%). See "
                          "docs/PERSONALIZATION.md.")
    parser.add_argument("video", help="video file (or a tracking directory from `dejavu track`)")
    parser.add_argument("-o", "--output", required=True, help="avatar directory to write")
    parser.add_argument("--init", default=None, help="start from this avatar's mean offsets (e.g. from `dejavu reconstruct`)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None, help="total optimisation steps (split 3:7 between stages)")
    budget.add_argument("--minutes", type=float, default=None, help="wall-clock budget, tracking included")
    parser.add_argument("--preset", default="cpu",
                        help="cpu (default: UV 128, 256^2, 1400 steps, the first 60%% at 128^2), preview (the same, "
                             "600 steps at 256^2: ~half the time), fidelity (UV 256, 512^2, 15 minutes) or gpu "
                             "(paper sizes)")
    parser.add_argument("--uv-size", type=int, default=None, help="UV map side S (cpu preset 128, paper 320)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="render side in pixels (default: the preset's, cpu 256, fidelity 512)")
    parser.add_argument("--head", default=None, help="head model: builtin (default), flame:PATH or procedural")
    parser.add_argument("--max-frames", type=int, default=None, help="use at most this many video frames")
    parser.add_argument("--holdout", choices=("last", "yaw"), default=None,
                        help="frames held out of training for evaluation: last (default, the paper's: the last 10%%) "
                             "or yaw (the 10%% turned farthest from the median yaw, and 5 frames around each)")
    add_fov_argument(parser)
    parser.add_argument("--lpips-net", choices=("alex", "vgg"), default=None, help="LPIPS backbone in training")
    parser.add_argument("--refine-pose", action="store_true",
                        help="learn per-frame head-pose corrections of the training frames and an expression -> pose "
                             "model stored in the avatar (off by default; see docs/PERSONALIZATION.md)")
    parser.add_argument("--side-silhouette", type=float, default=None, metavar="WEIGHT",
                        help="penalise what grows out of the network's head shape seen from the side (1 tried: no "
                             "needles of hair behind the head at 60-90 degrees, 0.1-0.2 dB lower held-out; off by "
                             "default; see docs/PERSONALIZATION.md)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--resume", action="store_true",
                        help="continue from AVATAR_DIR/train/checkpoint.pt (same input and settings only)")
    parser.add_argument("--force", action="store_true", help="replace a finished avatar in AVATAR_DIR")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = preset(args.preset)
    changes = {"steps": args.steps, "minutes": args.minutes, "uv_size": args.uv_size, "resolution": args.resolution,
               "head": args.head, "max_frames": args.max_frames, "lpips_net": args.lpips_net, "holdout": args.holdout,
               "w_side_silhouette": args.side_silhouette}
    flags = {"w_side_silhouette": "--side-silhouette"}
    for name, value in changes.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            check_positive(flags.get(name, f"--{name.replace('_', '-')}"), value)
    if args.uv_size is not None:
        check_uv_size(args.uv_size)
    if args.resolution is not None and args.resolution % 2:
        raise DejavuError(f"--resolution {args.resolution}: expected an even number of pixels")
    if args.steps is not None:
        cfg = dataclasses.replace(cfg, minutes=None)  # --steps replaces a preset's budget (the two are exclusive)
    cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    if args.resume and args.force:
        raise DejavuError("--resume and --force: give one of them (--force starts over, --resume continues)")
    cfg.validate("settings")

    if args.fov is not None and is_tracking_dir(args.video):
        raise DejavuError(f"--fov: {args.video} is a tracking directory, its FOV is fixed; "
                          "track the video again with `dejavu track --fov`")
    cfg = dataclasses.replace(cfg, fov_deg=fov_value(args.fov))
    if args.refine_pose:
        cfg = dataclasses.replace(cfg, lr_pose=REFINE_POSE_LR)
    avatar = personalize(args.video, args.output, cfg, init=args.init, device=args.device, resume=args.resume,
                         force=args.force)
    t = avatar.training
    print(f"avatar written to {args.output} ({t['steps']} steps, {t['seconds']:.0f} s; "
          f"{heldout_summary(t['metrics'])})")
    print(f"  views     {Path(args.output) / VIEWS_FILE}  (neutral, from six sides)")
    print(f"  previews  {Path(args.output) / 'train' / 'previews'}")
    return 0

"""What a held-out LPIPS at 512^2 can be for an avatar with no detail finer than 256^2 (or 128^2).

Scores each held-out target (white outside the head mask, as every metric of the project) against itself
averaged down by 2 (or 4) a side and upsampled back bilinearly, with LPIPS-alex at 512^2: a perfect 256^2
avatar shown at 512^2 scores this, so a figure at 512^2 below it needs detail a 256^2 image does not hold.

    python scripts/lpips_resolution_floor.py TRACKING_DIR [--holdout last|yaw]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from dejavu.metrics.lpips import get_lpips
from dejavu.personalize.config import PersonalizeConfig
from dejavu.personalize.frames import frames_from_tracking
from dejavu.track import load_tracking


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tracking", help="a tracking directory (dejavu track)")
    p.add_argument("--holdout", choices=("last", "yaw"), default="last")
    p.add_argument("--resolution", type=int, default=512)
    args = p.parse_args()
    cfg = PersonalizeConfig()
    frames = frames_from_tracking(load_tracking(args.tracking), args.resolution, progress=False)
    _, held = frames.split(cfg.train_fraction, args.holdout, cfg.holdout_margin)
    target = held.pixels("images")  # already white outside the head mask: the targets `dejavu evaluate` scores
    lpips = get_lpips("alex", "cpu")
    with torch.no_grad():
        for f in (2, 4):
            up = F.interpolate(F.avg_pool2d(target, f), scale_factor=f, mode="bilinear", align_corners=False)
            score = torch.cat([lpips(up[i:i + 8], target[i:i + 8]).reshape(-1) for i in range(0, len(target), 8)])
            print(f"{args.tracking}: {len(target)} held-out frames; LPIPS-alex at {args.resolution}^2 of the target "
                  f"through {args.resolution // f}^2: {float(score.mean()):.4f}")


if __name__ == "__main__":
    main()

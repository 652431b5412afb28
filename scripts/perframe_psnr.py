"""Whole-image PSNR of a personalized avatar on every frame of its tracked video, training and held-out
alike: shows how far the held-out score falls below the training frames' (overfitting) and where.

    python scripts/perframe_psnr.py runs/d3c runs/d3c/tracking [--stage full|global] [--every 20]

Prints the mean PSNR of each run of ``--every`` frames, then the training and held-out means (the
split of the avatar's config). Frames are rendered at the avatar's resolution, white outside the head
mask, as ``dejavu evaluate`` does.
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("avatar")
    ap.add_argument("tracking", help="the avatar's tracking directory")
    ap.add_argument("--stage", default="full", choices=("full", "global"))
    ap.add_argument("--every", type=int, default=20)
    args = ap.parse_args()

    import torch

    from dejavu.avatar import Avatar
    from dejavu.personalize.frames import frames_from_tracking
    from dejavu.personalize.train import render_avatar
    from dejavu.track import load_tracking

    dev = torch.device("cpu")
    avatar = Avatar.load(args.avatar)
    cfg = avatar.settings.get("config", {})
    frames = frames_from_tracking(load_tracking(args.tracking), int(avatar.settings.get("resolution", 256)))
    frames.shape, frames.vertex_offsets = avatar.shape.clone(), avatar.vertex_offsets
    pred = render_avatar(avatar.model(dev), frames, args.stage, chunk=16)
    target = frames.images.permute(0, 3, 1, 2).float() / 255.0
    psnr = -10 * torch.log10(((pred - target) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10))
    n = len(psnr)
    n_train = len(frames.split(float(cfg.get("train_fraction", 0.9)))[0])
    for s in range(0, n, args.every):
        part = "held-out" if s >= n_train else ("train" if s + args.every <= n_train else "train/held-out")
        print(f"frames {s:4d}-{min(s + args.every, n) - 1:4d} ({part}): {float(psnr[s:s + args.every].mean()):.2f} dB")
    print(f"training frames: {float(psnr[:n_train].mean()):.2f} dB; held-out frames: {float(psnr[n_train:].mean()):.2f} dB")


if __name__ == "__main__":
    main()

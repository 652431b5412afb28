"""Time personalization training steps (both stages) on a tracked video, with LPIPS-alex or -vgg."""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from dejavu.bench.common import machine_info, median
from dejavu.device import resolve_device
from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.head import load_head
from dejavu.io import cache_dir
from dejavu.model.blend import fit_pca_basis
from dejavu.personalize.config import preset
from dejavu.personalize.frames import add_feature_masks, frames_from_tracking
from dejavu.personalize.pipeline import check_run_memory, flat_mean_offsets
from dejavu.personalize.train import Trainer
from dejavu.track import is_tracking_dir, load_tracking, track


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="video or tracking directory (tracked once, cached under the cache dir)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per stage (default 10)")
    parser.add_argument("--uv-size", type=int, default=64, help="UV map side (default 64)")
    parser.add_argument("--resolution", type=int, default=256, help="render side (default 256)")
    parser.add_argument("--batch", type=int, default=8, help="frames per step (default 8)")
    parser.add_argument("--lpips-net", choices=("alex", "vgg", "none"), default="alex", help="LPIPS in the loss")
    parser.add_argument("--max-frames", type=int, default=100, help="track at most this many frames (default 100)")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda")


def run(args: argparse.Namespace) -> dict:
    dev = resolve_device(args.device)
    src = Path(args.input)
    if is_tracking_dir(src):
        result = load_tracking(src)
    else:
        result = track(src, cache_dir() / "bench" / f"track-{src.stem}", max_frames=args.max_frames, progress=False)
    cfg = dataclasses.replace(preset("cpu"), uv_size=args.uv_size, resolution=args.resolution, batch_size=args.batch,
                              steps=2 * args.steps + 2, stage1_fraction=0.5, lpips_start=0,
                              w_lpips=0.0 if args.lpips_net == "none" else 0.05,
                              lpips_net="alex" if args.lpips_net == "none" else args.lpips_net,
                              checkpoint_every=0, preview_every=0, crop_size=int(result.crop_size)).validate("settings")
    check_run_memory(cfg, len(result))  # before the frames are loaded at --resolution
    head = load_head(result.head_spec, dev)
    uvmap = UVGaussianMap(head, args.uv_size).to(dev)
    frames = add_feature_masks(frames_from_tracking(result, args.resolution), head)
    blend = fit_pca_basis(frames.params.expression, k=cfg.n_blendmaps)
    with tempfile.TemporaryDirectory(prefix="dejavu-bench-personalize-") as tmp:
        trainer = Trainer(head, uvmap, frames, flat_mean_offsets(frames, head, uvmap), blend, cfg, tmp, dev,
                          progress=False)
        t0 = time.perf_counter()
        state = trainer.run()
        wall = time.perf_counter() - t0
    times = trainer.step_seconds()
    s1 = state.stage1_steps
    res = {
        "target": "personalize", "input": str(src), "uv_size": args.uv_size, "gaussians": uvmap.n_gaussians,
        "resolution": args.resolution, "batch": args.batch, "lpips": args.lpips_net,
        "seconds_per_step_stage1": round(median(times[1:s1]), 3), "seconds_per_step_stage2": round(median(times[s1 + 1:]), 3),
        "first_step_seconds": round(times[0], 3), "seconds": round(wall, 2), "machine": machine_info(),
    }
    print(f"personalize: {res['gaussians']} Gaussians, {args.resolution}^2 x {args.batch}, LPIPS {args.lpips_net}: "
          f"{res['seconds_per_step_stage1']:.2f} s/step (stage 1), {res['seconds_per_step_stage2']:.2f} s/step (stage 2)")
    return res

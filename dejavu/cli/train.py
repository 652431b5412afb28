"""``dejavu train recon --config FILE``: train the single-image reconstruction network."""

from __future__ import annotations

import argparse

from dejavu.errors import DejavuError
from dejavu.outputs import check_output_dir
from dejavu.recon.config import load_config, preset
from dejavu.recon.train import train


def register(parser: argparse.ArgumentParser) -> None:
    """Describe the command on ``parser`` (its summary: ``dejavu.cli.COMMANDS``)."""
    parser.description = ("Train the reconstruction network on synthetic multi-view renders (+ tracked real photos). "
                          "Writes config.json, checkpoint.pt, scalars.csv, previews/ and weights.safetensors into the "
                          "config's run_dir. Multi-GPU: torchrun --nproc_per_node N -m dejavu train recon ...")
    parser.add_argument("what", choices=["recon"], help="what to train (recon: the reconstruction network)")
    parser.add_argument("--config", default=None,
                        help="JSON config (a 'preset' plus overrides; see configs/recon_*.json); default: cpu-small")
    parser.add_argument("--preset", default=None, help="start from a named preset instead: cpu-small or gpu-paper")
    parser.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    parser.add_argument("--run-dir", default=None, help="override the output folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: the config's)")
    parser.add_argument("--resume", action="store_true", help="continue from run_dir/checkpoint.pt")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.config and args.preset:
        raise DejavuError("--config and --preset: give one of them")
    cfg = load_config(args.config) if args.config else preset(args.preset or "cpu-small")
    if args.run_dir:
        cfg.log.run_dir = args.run_dir
    if args.steps is not None:
        if args.steps <= 0:
            raise DejavuError(f"--steps {args.steps}: expected a positive number")
        cfg.optim.steps = args.steps

    check_output_dir(cfg.log.run_dir, what="--run-dir", need_bytes=64 << 20)
    path = train(cfg, device=args.device, resume=args.resume)
    print(f"weights written to {path}; run folder {cfg.log.run_dir}")
    return 0

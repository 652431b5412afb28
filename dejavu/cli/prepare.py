"""``dejavu prepare recon --config FILE``: render / track the reconstruction training data, in parallel."""

from __future__ import annotations

import argparse
from dataclasses import asdict

# torch-free, all of them: the worker processes start before this process imports torch (dejavu.recon.workers)
from dejavu.errors import DejavuError
from dejavu.io import write_json
from dejavu.outputs import check_output_file
from dejavu.recon.config import load_config, preset
from dejavu.recon.workers import SOURCES, prepare_parallel


def register(parser: argparse.ArgumentParser) -> None:
    """Describe the command on ``parser`` (its summary: ``dejavu.cli.COMMANDS``)."""
    parser.description = ("Render the synthetic identities and track the real photo folders of a reconstruction "
                          "config into its shard folders (data.synthetic_dir, data.real_cache), one shard file per "
                          "work unit of data.shard_identities. Finished shards are kept, so a rerun resumes. Several "
                          "machines share the work with --nodes M --node m (each with --processes P) on one shared "
                          "folder, or on folders copied together afterwards.")
    parser.add_argument("what", choices=["recon"], help="what to prepare data for (recon: the reconstruction network)")
    parser.add_argument("--config", default=None, help="JSON config (see configs/recon_*.json); default: cpu-small")
    parser.add_argument("--preset", default=None, help="start from a named preset instead: cpu-small or gpu-paper")
    parser.add_argument("--only", choices=["synthetic", "real"], default=None, help="prepare one source only")
    parser.add_argument("--processes", type=int, default=1, help="worker processes on this machine (default 1)")
    parser.add_argument("--nodes", type=int, default=1, help="machines sharing the work (default 1)")
    parser.add_argument("--node", type=int, default=0, help="which of them this is, 0..nodes-1 (default 0)")
    parser.add_argument("--device", default="cpu",
                        help="cpu, or cuda: render synthetic identities on this machine's GPUs, one per process "
                             "in turn (tracking stays on the CPU; default cpu)")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="also write what each worker process did (items, shards, start-up, work and CPU "
                             "seconds) as JSON to FILE")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.config and args.preset:
        raise DejavuError("--config and --preset: give one of them")
    cfg = load_config(args.config) if args.config else preset(args.preset or "cpu-small")
    sources = (args.only,) if args.only else SOURCES
    device = "cpu"
    if args.device != "cpu":
        # imported here: it loads torch, and the worker processes are to start before this process loads it
        from dejavu.device import resolve_device

        device = resolve_device(args.device).type  # a clear error when cuda is asked for without a GPU
    if args.json:
        check_output_file(args.json, what="--json", need_bytes=1 << 20)
    reports = prepare_parallel(cfg, sources, args.processes, args.node, args.nodes, device=device)
    if args.json:
        write_json(args.json, {"processes": args.processes, "node": args.node, "nodes": args.nodes,
                               "workers": [asdict(r) for r in reports]})
    for source in sources:
        done = [r for r in reports if r.source == source]
        if done:
            folder = cfg.data.synthetic_dir if source == "synthetic" else cfg.data.real_cache
            print(f"{source}: {sum(r.items for r in done)} {'identities' if source == 'synthetic' else 'photos'} "
                  f"in {sum(r.units for r in done)} new shards; data in {folder}")
    return 0

"""Time training-data preparation with 1 and more worker processes (synthetic renders, tracked photos).

Each count of processes prepares the same data into a fresh folder (``dejavu.recon.dataprep``): the
synthetic identities of the cpu-small preset and the photos of ``--people`` person folders. Reported per
source and process count: items per minute over the wall time of the whole command (process start-up
included) and over the workers' own work (start-up excluded), the CPU seconds of all worker processes
and the workers' CPU seconds per item (work only), and the speed-up over 1 process. On a machine shared
with other jobs, wall-time speed-ups understate what the cores give; a flat CPU cost per item from 1 to P
processes is what lets P idle cores give P times the rate.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from dejavu.bench.common import machine_info
from dejavu.errors import DejavuError
from dejavu.head import load_head_assets
from dejavu.recon.config import preset
from dejavu.recon.dataprep import prepare_parallel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processes", default="1,2", help="process counts to time, comma-separated (default 1,2)")
    parser.add_argument("--identities", type=int, default=24, help="synthetic identities (default 24)")
    parser.add_argument("--per-shard", type=int, default=2, help="identities / person folders per shard (default 2)")
    parser.add_argument("--photos", default="../shared/data/lfw",
                        help="root of person folders (LFW layout); '' skips the real photos (default ../shared/data/lfw)")
    parser.add_argument("--people", type=int, default=8, help="person folders to track (default 8)")
    parser.add_argument("--head", default="builtin", help="head model spec (default builtin)")


def _config(root: Path, args: argparse.Namespace, identities: int, people: int):
    cfg = preset("cpu-small")
    cfg.model.head = args.head
    d = cfg.data
    d.synthetic_dir, d.real_cache = str(root / "synthetic"), str(root / "real")
    d.synthetic_identities, d.shard_identities = identities, args.per_shard
    d.real_dirs = [args.photos] if args.photos and people else []
    d.real_max_people = max(people, 1)
    cfg.render_backend = "cpu"
    return cfg


def _timed(cfg, source: str, processes: int) -> dict:
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    reports = prepare_parallel(cfg, (source,), processes, progress=False)
    wall = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # workers are reaped when the pool closes
    items = sum(r.items for r in reports)
    work = max(r.seconds for r in reports)
    return {"processes": processes, "items": items, "wall_seconds": round(wall, 2),
            "work_seconds": round(work, 2), "worker_cpu_seconds": round(sum(r.cpu_seconds for r in reports), 2),
            "children_cpu_seconds": round((c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime), 2),
            "per_minute_wall": round(60 * items / wall, 2), "per_minute_work": round(60 * items / work, 2),
            # the workers' own CPU per item: if it stays flat from 1 to P processes, P idle cores give P times the rate
            "worker_cpu_seconds_per_item": round(sum(r.cpu_seconds for r in reports) / max(items, 1), 3)}


def run(args: argparse.Namespace) -> dict:
    counts = [int(p) for p in args.processes.split(",")]
    if args.photos and not Path(args.photos).is_dir():
        raise DejavuError(f"--photos {args.photos}: not a folder (give '' to time synthetic rendering only)")
    load_head_assets(args.head)  # a one-off head build is not timed
    sources = ["synthetic"] + (["real"] if args.photos and args.people else [])
    result = {"target": "dataprep", "identities": args.identities, "people": args.people, "per_shard": args.per_shard,
              "photos": str(Path(args.photos).resolve()) if args.photos else None, "runs": {s: [] for s in sources}}
    with tempfile.TemporaryDirectory(prefix="dejavu-bench-dataprep-") as tmp:
        warm = _config(Path(tmp) / "warm", args, 1, 1)  # compiles / loads caches once, untimed
        for source in sources:
            _timed(warm, source, 1)
        for p in counts:
            cfg = _config(Path(tmp) / f"p{p}", args, args.identities, args.people)
            for source in sources:
                result["runs"][source].append(_timed(cfg, source, p))
    for source, runs in result["runs"].items():
        base = runs[0]
        unit = "identities" if source == "synthetic" else "photos"
        for r in runs:
            r["speedup_wall"] = round(r["per_minute_wall"] / base["per_minute_wall"], 2)
            r["speedup_work"] = round(r["per_minute_work"] / base["per_minute_work"], 2)
            print(f"{source}: {r['processes']} process(es): {r['items']} {unit}, {r['per_minute_wall']:.1f}/min wall "
                  f"({r['per_minute_work']:.1f}/min without start-up), {r['children_cpu_seconds']:.1f} CPU s, "
                  f"{r['worker_cpu_seconds_per_item']:.2f} worker CPU s per item; "
                  f"x{r['speedup_wall']:.2f} wall, x{r['speedup_work']:.2f} work")
    result["machine"] = machine_info()
    return result

"""Time training-data preparation with 1 and more worker processes (synthetic renders, tracked photos).

Each source and count of processes is one fresh ``dejavu prepare recon --only SOURCE --processes P``
command into a new folder, as a user runs it: the cpu-small preset's synthetic identities (units of
``--per-shard``), and the photos of ``--people`` person folders (units of ``--people-per-shard``).
Reported per run: the command's wall time and CPU time (all its processes), its start-up (launch until
its last worker process has its tools built and starts its first unit), the steady-state rate (the sum
over processes of items / seconds of each one's own work after start-up) and the wall-time rate (items
over the whole command), the workers' CPU seconds per item, and both rates' speed-ups over the first
process count. A CPU cost per item that stays flat from 1 to P processes is what lets P idle cores give
P times the steady-state rate; on a machine shared with other jobs, wall-time speed-ups measure the
other jobs as much as this code. The load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dejavu.bench.common import machine_info
from dejavu.errors import DejavuError
from dejavu.head import load_head_assets
from dejavu.recon.config import preset
from dejavu.recon.dataprep import prepare


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processes", default="1,2", help="process counts to time, comma-separated (default 1,2)")
    parser.add_argument("--identities", type=int, default=400,
                        help="synthetic identities (default 400, the cpu-small preset's)")
    parser.add_argument("--per-shard", type=int, default=4, help="synthetic identities per shard (default 4)")
    parser.add_argument("--people-per-shard", type=int, default=1,
                        help="person folders per shard (default 1: units of a few seconds, so the last one "
                             "leaves little idle time)")
    parser.add_argument("--photos", default="../shared/data/lfw",
                        help="root of person folders (LFW layout); '' skips the real photos "
                             "(default ../shared/data/lfw)")
    parser.add_argument("--people", type=int, default=32, help="person folders to track (default 32)")
    parser.add_argument("--head", default="builtin", help="head model spec (default builtin)")


def _config(root: Path, args: argparse.Namespace, source: str, identities: int, people: int):
    cfg = preset("cpu-small")
    cfg.model.head = args.head
    d = cfg.data
    d.synthetic_dir, d.real_cache = str(root / "synthetic"), str(root / "real")
    d.synthetic_identities = identities
    d.shard_identities = args.per_shard if source == "synthetic" else args.people_per_shard
    d.real_dirs = [str(Path(args.photos).resolve())] if args.photos and people else []
    d.real_max_people = max(people, 1)
    cfg.render_backend = "cpu"
    return cfg


def _timed(cfg, root: Path, source: str, processes: int) -> dict:
    """One ``dejavu prepare recon`` command in a fresh process, and its workers' reports."""


    config, report = root / f"{source}-p{processes}.json", root / f"{source}-p{processes}-report.json"
    config.write_text(json.dumps(cfg.to_dict()))
    command = [sys.executable, "-m", "dejavu", "prepare", "recon", "--config", str(config), "--only", source,
               "--processes", str(processes), "--json", str(report)]
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, launched = time.perf_counter(), time.time()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and its workers, all waited for
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DejavuError(f"bench dataprep: {' '.join(command)} failed: {tail}")
    workers = [w for w in json.loads(report.read_text())["workers"] if w["source"] == source]
    items = sum(w["items"] for w in workers)
    busy = [w for w in workers if w["items"]]
    steady = sum(w["items"] / max(w["seconds"], 1e-9) for w in busy)
    return {"processes": processes, "items": items, "wall_seconds": round(wall, 2),
            "cpu_seconds": round((c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime), 2),
            "startup_seconds": round(max(w["started_at"] for w in workers) - launched, 2),
            "per_minute_steady": round(60 * steady, 2), "per_minute_wall": round(60 * items / wall, 2),
            # the workers' own CPU per item: if it stays flat from 1 to P processes, P idle cores give P times the rate
            "worker_cpu_seconds_per_item": round(sum(w["cpu_seconds"] for w in workers) / max(items, 1), 3),
            "items_per_process": [w["items"] for w in workers]}


def run(args: argparse.Namespace) -> dict:
    counts = [int(p) for p in args.processes.split(",")]
    if args.photos and not Path(args.photos).is_dir():
        raise DejavuError(f"--photos {args.photos}: not a folder (give '' to time synthetic rendering only)")
    load_head_assets(args.head)  # a one-off head build is not timed
    sources = ["synthetic"] + (["real"] if args.photos and args.people else [])
    result = {"target": "dataprep", "identities": args.identities, "people": args.people, "per_shard": args.per_shard,
              "people_per_shard": args.people_per_shard,
              "photos": str(Path(args.photos).resolve()) if args.photos else None,
              "load_average": [round(x, 2) for x in os.getloadavg()], "runs": {s: [] for s in sources}}
    with tempfile.TemporaryDirectory(prefix="dejavu-bench-dataprep-") as tmp:
        for source in sources:  # numba and head caches on disk, untimed
            prepare(_config(Path(tmp) / "warm", args, source, 1, 1), (source,))
        for source in sources:
            for p in counts:
                root = Path(tmp) / f"{source}-p{p}"
                root.mkdir()
                cfg = _config(root, args, source, args.identities, args.people)
                result["runs"][source].append(_timed(cfg, root, source, p))
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    for source, runs in result["runs"].items():
        base = runs[0]
        unit = "identities" if source == "synthetic" else "photos"
        for r in runs:
            r["speedup_steady"] = round(r["per_minute_steady"] / base["per_minute_steady"], 2)
            r["speedup_wall"] = round(r["per_minute_wall"] / base["per_minute_wall"], 2)
            print(f"{source}: {r['processes']} process(es): {r['items']} {unit} in {r['wall_seconds']:.1f} s "
                  f"(start-up {r['startup_seconds']:.1f} s), {r['per_minute_steady']:.1f}/min steady, "
                  f"{r['per_minute_wall']:.1f}/min wall, {r['cpu_seconds']:.1f} CPU s, "
                  f"{r['worker_cpu_seconds_per_item']:.3f} worker CPU s per item; "
                  f"x{r['speedup_steady']:.2f} steady, x{r['speedup_wall']:.2f} wall")
    print(f"load average {result['load_average']} before, {result['load_average_after']} after")
    result["machine"] = machine_info()
    return result

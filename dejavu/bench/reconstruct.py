"""Time and score ``dejavu reconstruct`` on photos: wall seconds per command (a fresh process each time,
imports included, as a user runs it) and face / head / image metrics of the result.

Reference, measured in the same run: the same command with ``--network-colors`` (the paper's
network-only avatar, no colours read off the photo). Ratios: time photo / network, PSNR gain.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dejavu.bench.common import machine_info, median
from dejavu.errors import DejavuError
from dejavu.recon.evaluate import evaluate_image


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("photos", nargs="+", help="photos to reconstruct (one face each)")
    parser.add_argument("--repeats", type=int, default=2, help="timed commands per photo and variant (median)")
    parser.add_argument("--out", default=None, help="keep the avatars here (default: a temporary folder)")
    parser.add_argument("--no-turntable", action="store_true", help="time the commands without turntable.mp4")


def _command(photo: str, out: str, network_colors: bool, no_turntable: bool) -> list[str]:
    cmd = [sys.executable, "-m", "dejavu", "reconstruct", photo, "-o", out]
    return cmd + (["--network-colors"] if network_colors else []) + (["--no-turntable"] if no_turntable else [])


def run(args: argparse.Namespace) -> dict:
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dejavu-bench-reconstruct-"))
    rows = []
    for photo in args.photos:
        row = {"photo": str(photo)}
        for variant, network in (("photo_colors", False), ("network_colors", True)):
            out = root / f"{Path(photo).stem}_{variant}"
            walls = []
            for _ in range(max(1, args.repeats)):
                shutil.rmtree(out, ignore_errors=True)  # a fresh folder: no cached tracking
                t0 = time.perf_counter()
                done = subprocess.run(_command(str(photo), str(out), network, args.no_turntable),
                                      capture_output=True, text=True)
                walls.append(time.perf_counter() - t0)
                if done.returncode != 0:
                    raise DejavuError(f"{photo}: dejavu reconstruct failed: {done.stderr.strip().splitlines()[-1:]}")
            m = evaluate_image(out, photo)["metrics"]
            row[variant] = {"seconds": round(median(walls), 2), "seconds_all": [round(w, 2) for w in walls],
                            "metrics": {r: {k: round(v, 4) for k, v in vals.items()} for r, vals in m.items()}}
        p, n = row["photo_colors"], row["network_colors"]
        row["time_ratio"] = round(p["seconds"] / n["seconds"], 3)
        row["face_psnr_gain_db"] = round(p["metrics"]["face"]["PSNR"] - n["metrics"]["face"]["PSNR"], 2)
        print(f"{Path(photo).name}: {p['seconds']:.2f} s (network colours {n['seconds']:.2f} s); face PSNR "
              f"{p['metrics']['face']['PSNR']:.2f} dB vs {n['metrics']['face']['PSNR']:.2f}, LPIPS-alex "
              f"{p['metrics']['face']['LPIPS-alex']:.3f} vs {n['metrics']['face']['LPIPS-alex']:.3f}")
        rows.append(row)
    secs = [r["photo_colors"]["seconds"] for r in rows]
    psnr = [r["photo_colors"]["metrics"]["face"]["PSNR"] for r in rows]
    print(f"reconstruct: median {median(secs):.2f} s per photo (max {max(secs):.2f}); face PSNR median "
          f"{median(psnr):.2f} dB (min {min(psnr):.2f}); avatars in {root}")
    return {"target": "reconstruct", "photos": rows, "seconds_median": median(secs), "face_psnr_median": median(psnr),
            "turntable": not args.no_turntable, "out": str(root), "machine": machine_info()}

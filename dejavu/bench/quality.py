"""Held-out quality of personal avatars against the targets: personalize each video, score its last 10%.

For each video (or tracking directory): ``dejavu personalize`` with the given budget, then ``dejavu
evaluate`` on the held-out last 10% of its frames (whole image, tracked poses), and a pass/fail per
target of docs/PERSONALIZATION.md: PSNR >= 24 dB, SSIM >= 0.88, LPIPS-alex <= 0.12, stage 2 above stage 1
alone, and the whole run (tracking included) within 15 minutes. Avatars and evaluations stay in
``--output``; a video whose evaluation is there already is not trained again, and an interrupted
personalization continues from its checkpoint (re-run the command to resume).
"""

from __future__ import annotations

import argparse

#: metric -> (comparison, threshold) on the held-out whole image, tracked poses.
HELDOUT_TARGETS: dict[str, tuple[str, float]] = {"PSNR": (">=", 24.0), "SSIM": (">=", 0.88), "LPIPS-alex": ("<=", 0.12)}
#: the whole personalization of a 16 s talking-head video, tracking included, on the 2-core CPU.
MAX_MINUTES = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", help="videos (or tracking directories) to personalize and score")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="optimisation steps per video (default: personalize's, 600)")
    budget.add_argument("--minutes", type=float, help="wall-clock budget per video, tracking included")
    parser.add_argument("--preset", default="cpu", help="personalization preset: cpu (default), fidelity or gpu")
    parser.add_argument("-o", "--output", default="bench_quality",
                        help="where the avatars and evaluations go (default bench_quality)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _passes(value: float, rule: tuple[str, float]) -> bool:
    op, threshold = rule
    return value >= threshold if op == ">=" else value <= threshold


def check_targets(evaluation: dict, seconds: float) -> dict[str, bool]:
    """Pass/fail per target from an ``evaluate_video`` result and the run's seconds (tracking included)."""
    image = evaluation["stages"]["full"]["image"]
    checks = {f"{name} {op} {threshold:g}": _passes(image[name], (op, threshold))
              for name, (op, threshold) in HELDOUT_TARGETS.items()}
    checks["stage 2 > stage 1"] = image["PSNR"] > evaluation["stages"]["global"]["image"]["PSNR"]
    checks[f"<= {MAX_MINUTES:g} min"] = seconds <= 60.0 * MAX_MINUTES
    return checks


def run(args: argparse.Namespace) -> dict:
    import dataclasses
    import json
    from pathlib import Path

    from dejavu.bench import machine_info
    from dejavu.personalize import personalize
    from dejavu.personalize.config import preset
    from dejavu.personalize.evaluate import evaluate_video
    from dejavu.track import is_tracking_dir

    cfg = preset(args.preset)
    if args.minutes is not None:
        cfg = dataclasses.replace(cfg, minutes=args.minutes)
    elif args.steps is not None:
        cfg = dataclasses.replace(cfg, steps=args.steps, minutes=None)
    out = Path(args.output)
    rows, names = [], set()
    for video in map(Path, args.videos):
        stem = video.parent.name if video.name == "tracking" else video.stem  # AVATAR/tracking: the avatar's name
        name = stem if stem not in names else f"{stem}_{len(names)}"
        names.add(name)
        avatar_dir, ev_path = out / name, out / f"{name}_eval.json"
        tracking = video if is_tracking_dir(video) else avatar_dir / "tracking"
        if not ev_path.is_file():
            personalize(video, avatar_dir, cfg, device=args.device, resume=True)  # an interrupted run goes on
            evaluate_video(avatar_dir, tracking, json_path=ev_path, frames_dir=out / f"{name}_evalframes",
                           device=args.device, progress=False)
        evaluation = json.loads(ev_path.read_text())
        training = json.loads((avatar_dir / "avatar.json").read_text())["training"]
        stages = evaluation["stages"]
        row = {"name": name, "video": str(video), "avatar": str(avatar_dir), "frames": evaluation["frames"],
               "steps": training["steps"], "seconds": training["seconds"],
               "seconds_tracking": training["seconds_tracking"], "image": stages["full"]["image"],
               "face": stages["full"]["face"], "stage1_image": stages["global"]["image"],
               "checks": check_targets(evaluation, training["seconds"])}
        rows.append(row)

    print("| video | steps | s (tracking) | held-out PSNR / SSIM / LPIPS-alex | face PSNR | stage 1 PSNR | targets met |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        im = r["image"]
        missed = [k for k, ok in r["checks"].items() if not ok]
        print(f"| {r['name']} | {r['steps']} | {r['seconds']:.0f} ({r['seconds_tracking']:.0f}) | "
              f"{im['PSNR']:.2f} / {im['SSIM']:.3f} / {im['LPIPS-alex']:.3f} | {r['face']['PSNR']:.2f} | "
              f"{r['stage1_image']['PSNR']:.2f} | {len(r['checks']) - len(missed)}/{len(r['checks'])}"
              f"{' (missed: ' + ', '.join(missed) + ')' if missed else ''} |")
    print(f"avatars and evaluations in {out}")
    return {"target": "quality", "preset": args.preset, "rows": rows, "targets": {k: list(v) for k, v in HELDOUT_TARGETS.items()},
            "max_minutes": MAX_MINUTES, "machine": machine_info()}

"""Personalize one tracked video under several configs with the same budget and score each on the
held-out frames (and, with ``--novel-views``, from the side): one table.

    python scripts/personalize_ablation.py WOJTEK_TRACKING --steps 600 --holdout yaw --novel-views \\
        --out OUT/ablation --variant default='{}' --variant pos05='{"w_position": 0.5}'

Each variant is a name and a JSON dict of ``PersonalizeConfig`` overrides on the ``--preset`` (default cpu). Runs go one
after another (they would share the 2 cores otherwise). Writes OUT/NAME/ (avatar), OUT/NAME.json
(evaluation), OUT/NAME_novel_{full,mean}.json/.png (novel views) and OUT/table.md; a variant whose
evaluation exists is not trained again (re-run to resume: an interrupted run continues from its checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from dejavu.bench.quality import novel_view_summary
from dejavu.config import apply_overrides
from dejavu.personalize.config import preset
from dejavu.personalize.evaluate import evaluate_video
from dejavu.personalize.pipeline import personalize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tracking", help="a tracking directory (dejavu track) or video")
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None, help="wall-clock budget per variant")
    budget.add_argument("--steps", type=int, default=None, help="steps per variant (default: the preset's)")
    ap.add_argument("--preset", default="cpu", help="the preset the variants override (default cpu)")
    ap.add_argument("--holdout", choices=("last", "yaw"), default="last", help="held-out protocol (default last)")
    ap.add_argument("--novel-views", action="store_true", help="also score each avatar from the side")
    ap.add_argument("--out", required=True)
    ap.add_argument("--variant", action="append", required=True, help="NAME=JSON overrides")
    ap.add_argument("--refine-pose", action="store_true", help="also score with refined held-out poses (evaluate --refine-pose)")
    args = ap.parse_args()

    out = Path(args.out)
    rows = []
    for spec in args.variant:
        name, _, js = spec.partition("=")
        cfg = dataclasses.replace(preset(args.preset), holdout=args.holdout, preview_every=0)
        if args.minutes is not None:
            cfg = dataclasses.replace(cfg, minutes=args.minutes)
        elif args.steps is not None:
            cfg = dataclasses.replace(cfg, steps=args.steps, minutes=None)
        cfg = apply_overrides(cfg, json.loads(js or "{}"), f"--variant {name}")
        ev_path = out / f"{name}.json"
        if not ev_path.is_file():
            personalize(args.tracking, out / name, cfg=cfg, progress=False, resume=True)
            evaluate_video(out / name, args.tracking, json_path=ev_path, progress=False, refine_pose=args.refine_pose)
        ev = json.loads(ev_path.read_text())
        av = json.loads((out / name / "avatar.json").read_text())
        novel = "-"
        if args.novel_views:
            nv = novel_view_summary(out / name, out, name, "cpu")
            novel = f"{nv['full']['yaw30_45']:.2f} (x{nv['ratio_to_network']:.2f})"
        silhouette = ev.get("silhouette_iou", {})
        for stage, regions in ev["stages"].items():
            for region in ("face", "image"):
                m = regions[region]
                rows.append(f"| {name} | {av['training']['steps']} | {av['training']['seconds_training']:.0f} | {stage} | "
                            f"{region} | {m['PSNR']:.2f} | {m['SSIM']:.3f} | {m['LPIPS-alex']:.3f} | {m['LPIPS-vgg']:.3f} | "
                            f"{silhouette.get(stage, float('nan')):.3f} | {novel if stage == 'full' else '-'} |")
    table = ["| variant | steps | train s | stage | region | PSNR | SSIM | LPIPS-alex | LPIPS-vgg | silhouette IoU | "
             "novel +-30/45 px (x network-only) |", "|---|---|---|---|---|---|---|---|---|---|---|", *rows]
    (out / "table.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    print(f"written to {out}")


if __name__ == "__main__":
    main()

"""Personalize one tracked video under several configs with the same wall-clock budget and score each
on the held-out frames: the LPIPS time/quality trade-off and other ablations, one table.

    python scripts/personalize_ablation.py runs/wojtek3/tracking --minutes 4 --out runs/ablation \\
        --variant alex='{}' --variant vgg='{"lpips_net": "vgg"}' --variant none='{"w_lpips": 0}'

Each variant is a name and a JSON dict of ``PersonalizeConfig`` overrides on the cpu preset. Runs go one
after another (they would share the 2 cores otherwise). Writes OUT/NAME/ (avatar), OUT/NAME.json
(evaluation) and OUT/table.md; a variant whose evaluation exists is skipped (re-run to resume).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tracking", help="a tracking directory (dejavu track) or video")
    ap.add_argument("--minutes", type=float, default=4.0, help="wall-clock budget per variant")
    ap.add_argument("--out", required=True)
    ap.add_argument("--variant", action="append", required=True, help="NAME=JSON overrides")
    ap.add_argument("--refine-pose", action="store_true", help="also score with refined held-out poses (evaluate --refine-pose)")
    args = ap.parse_args()

    from dejavu.config import apply_overrides
    from dejavu.personalize.pipeline import personalize
    from dejavu.personalize.config import preset
    from dejavu.personalize.evaluate import evaluate_video

    out = Path(args.out)
    rows = []
    for spec in args.variant:
        name, _, js = spec.partition("=")
        overrides = json.loads(js or "{}")
        cfg = dataclasses.replace(preset("cpu"), minutes=args.minutes, preview_every=0)
        cfg = apply_overrides(cfg, overrides, f"--variant {name}")
        ev_path = out / f"{name}.json"
        if not ev_path.is_file():
            personalize(args.tracking, out / name, cfg=cfg, progress=False)
            evaluate_video(out / name, args.tracking, json_path=ev_path, progress=False, refine_pose=args.refine_pose)
        ev = json.loads(ev_path.read_text())
        av = json.loads((out / name / "avatar.json").read_text())
        for stage, regions in ev["stages"].items():
            for region in ("face", "image"):
                m = regions[region]
                rows.append(f"| {name} | {av['training']['steps']} | {av['training']['seconds_training']:.0f} | {stage} | "
                            f"{region} | {m['PSNR']:.2f} | {m['SSIM']:.3f} | {m['LPIPS-alex']:.3f} | {m['LPIPS-vgg']:.3f} |")
    table = ["| variant | steps | train s | stage | region | PSNR | SSIM | LPIPS-alex | LPIPS-vgg |",
             "|---|---|---|---|---|---|---|---|---|", *rows]
    (out / "table.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    print(f"written to {out}")


if __name__ == "__main__":
    main()

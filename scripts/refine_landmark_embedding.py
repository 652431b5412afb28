"""Refine the built-in head's MediaPipe-478 landmark embedding from tracking residuals on real faces.

Writes ``dejavu/data/builtin_landmark_embedding.npz`` (triangle + barycentrics + weight per landmark
and the mesh fingerprint it belongs to; derived numbers only, no image data), which
``dejavu.head.builtin`` uses when it matches the mesh.

Procedure:

1. Detections: ``dejavu.track.track`` (overlay off) on the photos in ``DATA/photos``, the first 200
   frames of each video in ``DATA/videos`` and ``--lfw`` LFW photos (every 8th of the first 400
   people in name order, one photo each). Only the detected 2D landmarks (512 crops) are used.
2. Sets: *train* = the photos, frames 0-99 of each video (every 2nd) and the first half of the
   LFW photos; *held out* = frames 100-199 of each video and the second half of LFW. Each set
   has the same total weight in the residual means.
3. Start: the geometric embedding (:func:`dejavu.head.landmark_embedding.embed_mediapipe_landmarks`:
   ICP of MediaPipe's canonical face, eye-opening and inner-lip contours on the lid / lip rims).
4. Each round: fit every set with ``dejavu.track.fit.fit_landmarks`` (videos as videos; the fit's
   own identity, expression, jaw, eyes and cameras), then per landmark solve for the barycentric
   shift (db1, db2) of its triangle that best explains the 2D residuals (detected - fitted) through
   the projection's Jacobian in each frame's posed, camera-space triangle (Huber IRLS, 3 rounds,
   threshold 1.5 x the median residual). The shift, mapped to the neutral mesh, gives a target point;
   :func:`dejavu.head.landmark_embedding.move_landmarks` puts it back on the surface near the old
   point (at most 4 mm per round): eyelid / inner-lip points slide along their own rim chain, the
   others go to the closest point of the triangles around their old triangle. Iris points are kept.
   Points also stay within ``MAX_DRIFT_M`` (6 mm; face oval 12 mm) of their geometric place:
   without that cap a few points next to the eye openings (29, 259) kept drifting (12 mm after 6
   rounds) and got worse, the model's eye openings being taller than most real ones.
5. ``--rounds`` rounds (6), then a final fit measures the result.

Numbers (2026-11-24, 6 rounds; weighted landmark RMSE in px at 512, RMS over frames, from
``fit_landmarks``; "v3" = the old embedding, "geometric" = step 3 alone):

| set | v3 | geometric | refined |
|---|---|---|---|
| photos (4, train) | 3.34 | 3.53 | 2.27 |
| liveportrait_d3 frames 0-99 (train, every 2nd) | 2.86 | 3.35 | 2.02 |
| liveportrait_d3 frames 100-199 (held out) | 2.77 | 3.39 | 2.08 |
| metrical_wojtek frames 0-99 (train, every 2nd) | 2.81 | 3.20 | 1.58 |
| metrical_wojtek frames 100-199 (held out) | 4.57 | 4.83 | 3.89 |
| LFW 25 (train) / 25 (held out) | 5.32 / 4.56 | 5.63 / 4.80 | 4.83 / 3.92 |

On liveportrait_d3 frames 0-99 (blinks, mouth opening) the correlation of the fitted mean eyeBlink
with the detected lid gap (159-145, 386-374) goes from +0.16 (v3: eyeBlink stays at 0) to -0.95
(eyeBlink 0 .. 0.27); the fitted jaw (jawOpen + jaw angle / 0.3) follows the inner-lip gap (13-14)
with correlation 0.88 (v3 0.91, carried by the outer lips then). Median point move from the geometric
embedding 1.8 mm (max 12 mm, face oval).

Usage: ``python scripts/refine_landmark_embedding.py [--data /work/shared/data] [--work DIR]``
(about 10 minutes on 2 busy CPU cores; detections are cached in ``--work``). ``--out`` defaults to the
packaged file; bump ``BUILTIN_VERSION`` in ``dejavu/head/builtin.py`` after replacing it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "dejavu" / "data" / "builtin_landmark_embedding.npz"
log = logging.getLogger("refine_landmark_embedding")
#: Largest total move of a point from its geometric place, metres (face-oval points: twice that).
MAX_DRIFT_M = 0.006


def detect(data: Path, work: Path, n_lfw: int) -> dict:
    """{set name: (landmarks (B, 478, 2) at 512 px, is_video, train mask (B,))}."""
    import shutil

    from dejavu.track import track

    out = {}

    def run(inp, name, max_frames=None):
        return track(inp, work / name, head="builtin", max_frames=max_frames, overlay=False, progress=False)

    r = run(data / "photos", "photos")
    out["photos"] = (r.landmarks_2d, False, np.ones(len(r), bool))
    for vid in sorted((data / "videos").glob("*.mp4")):
        r = run(vid, vid.stem, 200)
        lm = r.landmarks_2d
        out[f"{vid.stem}[0:100]"] = (lm[:100], True, np.arange(min(100, len(lm))) % 2 == 0)
        out[f"{vid.stem}[100:200]"] = (lm[100:200], True, np.zeros(len(lm[100:200]), bool))
    lfw = data / "lfw"
    if n_lfw and lfw.is_dir():
        folder = work / "lfw_input"
        folder.mkdir(parents=True, exist_ok=True)
        people = sorted(p for p in lfw.iterdir() if p.is_dir())[:400:8][:n_lfw]
        for p in people:
            f = sorted(p.iterdir())[0]
            if not (folder / f.name).exists():
                shutil.copy(f, folder / f.name)
        r = run(folder, "lfw")
        half = len(r) // 2
        out["lfw_train"] = (r.landmarks_2d[:half], False, np.ones(half, bool))
        out["lfw_heldout"] = (r.landmarks_2d[half:], False, np.zeros(len(r) - half, bool))
    return out


def fit_all(head, sets: dict) -> dict:
    from dejavu.track.fit import FitConfig, fit_landmarks

    # no per-person vertex offsets: the bias they would absorb is what this script measures
    cfg = FitConfig(detail=False)
    return {name: fit_landmarks(head, lm, 512, video=video, config=cfg) for name, (lm, video, _) in sets.items()}


def rmse(fit) -> float:
    return float(np.sqrt(np.nanmean(fit.error_px.numpy() ** 2)))


@torch.no_grad()
def jacobians(head, fit) -> tuple[np.ndarray, np.ndarray]:
    """Per frame and landmark: d(projection)/d(barycentric b1, b2) (B, L, 2, 2) and the camera-space
    posed point (B, L, 3)."""
    verts = head(fit.shape, **fit.params.kwargs()).double()  # (B, V, 3)
    R, t = fit.world_to_cam[:, :3, :3].double(), fit.world_to_cam[:, :3, 3].double()
    cam = verts @ R.transpose(1, 2) + t[:, None]
    tri = cam[:, head.faces[head.landmark_faces]]  # (B, L, 3, 3)
    p = torch.einsum("lk,blkc->blc", head.landmark_bary.double(), tri)
    E = torch.stack([tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]], -1)  # (B, L, 3, 2)
    fx, fy = fit.K[:, 0, 0].double()[:, None], fit.K[:, 1, 1].double()[:, None]
    x, y, z = p.unbind(-1)
    D = torch.zeros(*p.shape[:2], 2, 3, dtype=torch.float64)
    D[..., 0, 0], D[..., 0, 2] = fx / z, -fx * x / z**2
    D[..., 1, 1], D[..., 1, 2] = fy / z, -fy * y / z**2
    return (D @ E).numpy(), p.numpy()


def solve_shifts(J: np.ndarray, r: np.ndarray, w: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Robust per-landmark least squares: J (N, L, 2, 2), residuals r (N, L, 2), frame weights w (N,)
    -> barycentric shifts (L, 2) minimising sum_n w_n huber(|J_n d - r_n|)."""
    N, L = r.shape[:2]
    d = np.zeros((L, 2))
    h = np.ones((N, L))
    for _ in range(rounds + 1):
        ww = w[:, None] * h  # (N, L)
        A = np.einsum("nl,nlij,nlik->ljk", ww, J, J)
        b = np.einsum("nl,nlij,nli->lj", ww, J, r)
        A = A + 1e-6 * np.trace(A, axis1=1, axis2=2)[:, None, None] * np.eye(2)
        d = np.linalg.solve(A, b[..., None])[..., 0]
        e = np.linalg.norm(np.einsum("nlij,lj->nli", J, d) - r, axis=-1)  # (N, L)
        k = 1.5 * np.median(e, axis=0, keepdims=True)
        h = np.minimum(1.0, k / np.maximum(e, 1e-9))
    return d


def blink_jaw_check(head, fit, lm: np.ndarray) -> dict:
    """Correlations over frames between detected eye / inner-mouth openings and the fitted
    eyeBlink (mean of both) and jaw opening (jawOpen + jaw angle), plus their ranges."""
    names = head.expr_names
    e = fit.params.expression.numpy()
    eye_open = (np.linalg.norm(lm[:, 159] - lm[:, 145], axis=1) + np.linalg.norm(lm[:, 386] - lm[:, 374], axis=1)) / 2
    mouth_open = np.linalg.norm(lm[:, 13] - lm[:, 14], axis=1)
    blink = (e[:, names.index("eyeBlinkLeft")] + e[:, names.index("eyeBlinkRight")]) / 2
    jaw = e[:, names.index("jawOpen")] + fit.params.jaw.numpy()[:, 0] / 0.3
    c = lambda a, b: float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-9 and b.std() > 1e-9 else 0.0  # noqa: E731
    return {"corr_blink_vs_eye_opening": c(blink, eye_open), "blink_range": [float(blink.min()), float(blink.max())],
            "corr_jaw_vs_mouth_opening": c(jaw, mouth_open), "jaw_range": [float(jaw.min()), float(jaw.max())]}


def main(argv=None) -> int:
    from dejavu.head.base import HeadModel
    from dejavu.head.builtin import build_builtin_assets
    from dejavu.head.landmark_embedding import (embed_mediapipe_landmarks, load_canonical_face, move_landmarks,
                                                save_refined_embedding)

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/dejavu_refine_embedding"))
    ap.add_argument("--lfw", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    sets = detect(args.data, args.work, args.lfw)
    assets = build_builtin_assets()
    start = {"faces": assets.landmark_faces.copy(), "bary": assets.landmark_bary.copy()}
    emb = embed_mediapipe_landmarks(assets)
    v = assets.v_template.astype(np.float64)
    start_pts = np.einsum("lk,lkc->lc", emb.bary, v[assets.faces[emb.faces]])
    _, _, oval = load_canonical_face()
    report = {"sets": {k: int(len(v[0])) for k, v in sets.items()}, "rounds": []}

    def measure(tag):
        head = HeadModel(assets)
        fits = fit_all(head, sets)
        row = {"embedding": tag, **{k: round(rmse(f), 3) for k, f in fits.items()}}
        d3 = [k for k in sets if k.startswith("liveportrait_d3[0")]
        if d3:
            row["d3_check"] = blink_jaw_check(head, fits[d3[0]], sets[d3[0]][0])
        log.info(json.dumps(row))
        return head, fits, row

    # the embedding the cached head came with (before this script's file, if it did not use it)
    assets.landmark_faces, assets.landmark_bary = start["faces"], start["bary"]
    report["cached_head"] = measure("cached head")[2]
    for rnd in range(args.rounds + 1):
        assets.landmark_faces, assets.landmark_bary, assets.landmark_weight = emb.faces, emb.bary, emb.weight
        head, fits, row = measure("geometric" if rnd == 0 else f"round {rnd}")
        report["rounds"].append(row)
        if rnd == args.rounds:
            break
        Js, rs, ws = [], [], []
        for name, (lm, _, train) in sets.items():
            if not train.any():
                continue
            J, _ = jacobians(head, fits[name])
            r = lm - fits[name].projected.numpy()
            Js.append(J[train]), rs.append(r[train]), ws.append(np.full(int(train.sum()), 1.0 / train.sum()))
        d = solve_shifts(np.concatenate(Js), np.concatenate(rs), np.concatenate(ws))  # (L, 2)
        tri = v[assets.faces[emb.faces]]  # (L, 3, 3) neutral
        old = np.einsum("lk,lkc->lc", emb.bary, tri)
        target = old + d[:, :1] * (tri[:, 1] - tri[:, 0]) + d[:, 1:] * (tri[:, 2] - tri[:, 0])
        # stay within MAX_DRIFT_M of the geometric start (oval: 2x; it slides along the silhouette)
        drift = target - start_pts
        cap = np.full(len(d), MAX_DRIFT_M)
        cap[oval] *= 2
        n = np.linalg.norm(drift, axis=1)
        target = start_pts + drift * np.minimum(1.0, cap / np.maximum(n, 1e-12))[:, None]
        move = np.zeros(len(d), bool)
        move[:468] = True
        emb = move_landmarks(assets, emb, target, move)
        step = np.linalg.norm(np.einsum("lk,lkc->lc", emb.bary, v[assets.faces[emb.faces]]) - old, axis=1)
        log.info("round %d: median move %.2f mm, max %.2f mm", rnd + 1, 1000 * np.median(step[:468]), 1000 * step.max())
    emb.info = {"procedure": "scripts/refine_landmark_embedding.py", "rounds": args.rounds, "report": report}
    save_refined_embedding(args.out, emb, assets.faces)
    print(json.dumps(report, indent=1))
    print(f"refined embedding written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

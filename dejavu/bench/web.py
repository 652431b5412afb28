"""Time the web player's avatar evaluation in headless Chromium (ms per frame, both paths) and size its site.

Without an avatar: the built-in head at UV 256 (48,002 Gaussians) with K = 10 random blendmaps, a PCA
blend scheme and a pose model, i.e. the largest avatar the default settings make. Needs ``make web``
and chromium. Reference in the same page: one copy of the blendmap bytes.

CPU path (``cpu_*``): ``AvatarRuntime.evaluate`` step by step on the page's engine (``cpu_engine``: the
WebAssembly SIMD kernel where the browser runs it, else plain JS), and the frame with the upload to Spark's
packed splats; ``cpu_other_*``: the other engine on the same frames (alternating), and the ratio of the two. GPU path (``gpu_*``, ``web/src/gpu.js``): the CPU side of a frame (head model, blend weights,
pose correction, vertex texture and uniforms), and the frame until the per-splat program has run over
every Gaussian (waited for with a one-texel read). Headless Chromium renders WebGL with SwiftShader, a CPU
emulation (``gpu_renderer`` says which): there ``gpu_frame_*`` measures the emulation, not a GPU; the
upload size and the CPU side carry over to a real GPU.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from dejavu.avatar import Avatar
from dejavu.bench.common import machine_info
from dejavu.gaussians import channels as ch
from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.head import load_head
from dejavu.model.blend import fit_pca_basis
from dejavu.web.browser import run_page
from dejavu.web.server import serve_in_thread
from dejavu.web.site import build_site


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("avatar", nargs="?", default=None,
                        help="avatar directory (default: built-in head, UV 256, 10 random blendmaps)")
    parser.add_argument("--repeats", type=int, default=50, help="evaluations timed per stage (default 50)")


def _synthetic_avatar(directory) -> None:
    head = load_head("builtin")
    S, K = 256, 10
    g = torch.Generator().manual_seed(0)
    mask = UVGaussianMap(head, S).mask.float()
    mean = torch.zeros(ch.N_CHANNELS, S, S)
    mean[ch.LOG_SCALE], mean[ch.OPACITY], mean[ch.COLOR] = 3.5, 2.0, 3.0
    train = torch.rand(200, head.n_expr, generator=g) * 0.5
    Avatar(head="builtin", uv_size=S, shape=torch.zeros(head.n_shape), mean_offsets=mean * mask,
           blendmaps=torch.randn(K, ch.N_CHANNELS, S, S, generator=g) * 0.05 * mask,
           global_delta=torch.randn(ch.N_CHANNELS, S, S, generator=g) * 0.05 * mask,
           blend=fit_pca_basis(train, k=K).with_training_range(train),
           pose_model=torch.randn(6, K + 4, generator=g) * 0.01).save(directory)


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="dejavu-bench-web-") as tmp:
        avatar = args.avatar
        if avatar is None:
            avatar = Path(tmp) / "avatar"
            _synthetic_avatar(avatar)
        record = build_site(avatar, Path(tmp) / "site", progress=False)
        server, url = serve_in_thread(Path(tmp) / "site")
        try:
            full, mean = run_page(f"{url}index.html?size=256", [
                {"op": "bench", "n": args.repeats, "stage": "full"},
                {"op": "bench", "n": args.repeats, "stage": "mean"}], size=256)
        finally:
            server.shutdown()
    r2 = lambda x: round(x, 2)
    cpu, other, gpu = full["cpu"], full["cpu_other_engine"], full["gpu"]
    out = {"target": "web", "n_gaussians": record["n_gaussians"], "site_mb": round(record["bytes"] / 1e6, 2),
           "cpu_engine": cpu["engine"],
           "cpu_evaluate_full_ms_median": r2(cpu["evaluate"]["median_ms"]),
           "cpu_evaluate_full_ms_min": r2(cpu["evaluate"]["min_ms"]),
           "cpu_frame_full_ms_median": r2(cpu["frame"]["median_ms"]),
           "cpu_steps_full_ms_median": {k: r2(v) for k, v in cpu["steps"].items()},
           "cpu_evaluate_mean_ms_median": r2(mean["cpu"]["evaluate"]["median_ms"]),
           "cpu_upload_bytes_per_frame": cpu["upload_bytes"],
           "reference_copy_ms_median": r2(full["reference_copy_ms"]),
           "reference_copy_mb": round(full["reference_copy_bytes"] / 1e6, 2), "machine": machine_info()}
    if other:
        out.update({"cpu_other_engine": other["engine"],
                    "cpu_other_evaluate_full_ms_median": r2(other["evaluate"]["median_ms"]),
                    "cpu_other_evaluate_full_ms_min": r2(other["evaluate"]["min_ms"]),
                    "cpu_other_steps_full_ms_median": {k: r2(v) for k, v in other["steps"].items()},
                    "cpu_other_over_engine": round(other["evaluate"]["median_ms"] / max(cpu["evaluate"]["median_ms"], 1e-3), 2)})
    if gpu:
        out.update({"gpu_cpu_side_full_ms_median": r2(gpu["cpu"]["median_ms"]),
                    "gpu_cpu_side_full_ms_min": r2(gpu["cpu"]["min_ms"]),
                    "gpu_frame_full_ms_median": r2(gpu["frame"]["median_ms"]),
                    "gpu_frame_full_ms_min": r2(gpu["frame"]["min_ms"]),
                    "gpu_upload_bytes_per_frame": gpu["upload_bytes"], "gpu_renderer": gpu["renderer"]})
    return out

"""Time the Gaussian rasterizer (forward, forward+backward) against the torch reference.

Scene: Gaussians on a head-sized ellipsoid (semi-axes 8 x 11 x 10 cm) with 1-3 mm scales, like a UV
Gaussian map, seen from 1 m at a 20 degree field of view; each frame a slightly different yaw.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import statistics
import time

import torch

from dejavu.bench.common import machine_info, time_alternating
from dejavu.device import resolve_device
from dejavu.render import config, cpu, render
from dejavu.render.camera import intrinsics, orbit_pose6, pose6_to_world_to_cam


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gaussians", type=int, default=20_000, help="Gaussians per frame (default 20000)")
    parser.add_argument("--resolution", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--batch", type=int, default=1, help="frames per call, each its own camera (default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per measurement (default 7)")
    parser.add_argument("--reference-repeats", type=int, default=2, help="timed reference calls (default 2; 0 skips)")
    parser.add_argument("--backend", choices=("cpu", "cuda"), default="cpu", help="fast backend to time (default cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", action="store_true",
                        help="cpu: also the CPU time of each stage in a forward+backward (profile)")
    parser.add_argument("--numba-reference", action="store_true",
                        help="cpu: also time the numba tile kernels, alternating call by call with the ones in use")


def head_scene(n: int, batch: int, resolution: int, seed: int = 0, device="cpu"):
    """Random head-shaped scene: (means, quats, scales, opacities, colors, world_to_cam, K) for ``render``."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    means = d * torch.tensor([0.08, 0.11, 0.10]) * (1 + 0.02 * torch.randn(n, 1, generator=g))
    quats = torch.randn(n, 4, generator=g)
    scales = 0.001 + 0.002 * torch.rand(n, 3, generator=g)
    opacities = 0.3 + 0.7 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    yaws = torch.linspace(-20.0, 20.0, batch) if batch > 1 else torch.zeros(1)
    w2c = pose6_to_world_to_cam(orbit_pose6(yaws))
    K = intrinsics(resolution, resolution, batch=batch)
    rep = lambda t: t.expand(batch, *t.shape).contiguous().to(device)  # noqa: E731
    return rep(means), rep(quats), rep(scales), rep(opacities), rep(colors), w2c.to(device), K.to(device)


def _calls(backend: str, scene, resolution: int, kernels: str | None = None):
    """(forward, forward+backward) callables; ``kernels`` sets ``config.CPU_KERNELS`` for each call."""
    w2c, K = scene[5], scene[6]
    sync = torch.cuda.synchronize if scene[0].is_cuda else (lambda: None)

    @contextlib.contextmanager
    def tile_kernels():
        before = config.CPU_KERNELS
        config.CPU_KERNELS = kernels or before
        try:
            yield
        finally:
            config.CPU_KERNELS = before

    def forward():
        with torch.no_grad(), tile_kernels():
            render(*scene[:5], w2c, K, resolution, resolution, backend=backend)
        sync()

    def forward_backward():
        params = [t.detach().requires_grad_(True) for t in scene[:5]]
        with tile_kernels():
            out = render(*params, w2c, K, resolution, resolution, backend=backend)
            (out.rgb.sum() + out.depth.sum()).backward()
        sync()

    return forward, forward_backward


#: the CPU backend's stages, in pipeline order (``dejavu.render.cpu``).
CPU_STAGES = ("_project", "_bin", "_forward_tiles", "_backward_tiles", "_reduce", "_project_vjp")


def cpu_stage_times(scene, resolution: int, repeats: int) -> dict[str, float]:
    """Median process-CPU seconds each CPU-backend stage takes per forward+backward of ``scene``.

    Wraps the module's stage functions with timers for the duration of the call (the pipeline looks
    them up by name at call time); a stage called twice per pass (``_reduce``) counts both calls.
    """
    spent: dict[str, float] = {}
    originals = {name: getattr(cpu, name) for name in CPU_STAGES}

    def timed(name, fn):
        def wrapper(*a, **k):
            c0 = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - c0
        return wrapper

    per_pass: dict[str, list[float]] = {name: [] for name in CPU_STAGES}
    try:
        for name, fn in originals.items():
            setattr(cpu, name, timed(name, fn))
        for i in range(repeats + 1):  # the first pass warms up
            spent.clear()
            params = [t.detach().requires_grad_(True) for t in scene[:5]]
            out = render(*params, scene[5], scene[6], resolution, resolution, backend="cpu")
            (out.rgb.sum() + out.depth.sum()).backward()
            if i:
                for name in CPU_STAGES:
                    per_pass[name].append(spent.get(name, 0.0))
    finally:
        for name, fn in originals.items():
            setattr(cpu, name, fn)
    return {name: float(statistics.median(v)) for name, v in per_pass.items()}


def run(args: argparse.Namespace) -> dict:
    """Time the fast backend and the reference; print medians; return the JSON-able result."""
    device = resolve_device(args.backend)
    scene = head_scene(args.gaussians, args.batch, args.resolution, args.seed, device)
    cpu_backend = args.backend == "cpu"
    calls = dict(zip(("forward", "forward_backward"), _calls(args.backend, scene, args.resolution)))
    if args.numba_reference and cpu_backend:
        calls.update(zip(("numba_forward", "numba_forward_backward"),
                         _calls(args.backend, scene, args.resolution, kernels="numba")))
    timings = time_alternating(calls, args.repeats)
    ft, fbt = timings["forward"], timings["forward_backward"]
    f, fb = ft.wall_median, fbt.wall_median
    ref_fb = ref_cpu = None
    if args.reference_repeats > 0:
        rt = time_alternating({"reference": _calls("reference", scene, args.resolution)[1]}, args.reference_repeats,
                              warmup=0)["reference"]
        ref_fb, ref_cpu = rt.wall_median, rt.cpu_median
    result = {
        "target": "render",
        "backend": args.backend,
        "tile_kernels": cpu.tile_kernels() if cpu_backend else None,
        "gaussians": args.gaussians,
        "resolution": args.resolution,
        "batch": args.batch,
        "repeats": args.repeats,
        "forward_s": f,
        "forward_backward_s": fb,
        "reference_forward_backward_s": ref_fb,
        "speedup": ref_fb / fb if ref_fb else None,
        "images_per_s": args.batch / f,
        "forward_cpu_s": ft.cpu_median,
        "forward_backward_cpu_s": fbt.cpu_median,
        "reference_forward_backward_cpu_s": ref_cpu,
        "forward_s_all": ft.wall,
        "forward_backward_s_all": fbt.wall,
        "machine": machine_info(),
    }
    kernels = f", {result['tile_kernels']} tile kernels" if cpu_backend else ""
    print(f"render {args.backend}{kernels}: {args.gaussians} Gaussians, {args.resolution}x{args.resolution}, "
          f"batch {args.batch} (medians; CPU time = this process, all threads)")
    print(f"  forward          {f * 1e3:9.1f} ms wall {ft.cpu_median * 1e3:9.1f} ms CPU  ({result['images_per_s']:.1f} images/s)")
    print(f"  forward+backward {fb * 1e3:9.1f} ms wall {fbt.cpu_median * 1e3:9.1f} ms CPU")
    if "numba_forward" in timings:
        for name, label in (("forward", "numba forward"), ("forward_backward", "numba f+b")):
            t, ref = timings[name], timings["numba_" + name]
            result[f"numba_{name}_s"], result[f"numba_{name}_cpu_s"] = ref.wall_median, ref.cpu_median
            print(f"  {label:16s} {ref.wall_median * 1e3:9.1f} ms wall {ref.cpu_median * 1e3:9.1f} ms CPU  -> "
                  f"{result['tile_kernels']} / numba: x{t.wall_median / ref.wall_median:.2f} wall, "
                  f"x{t.cpu_median / ref.cpu_median:.2f} CPU")
    if ref_fb:
        print(f"  reference f+b    {ref_fb * 1e3:9.1f} ms wall {ref_cpu * 1e3:9.1f} ms CPU  -> speed-up {result['speedup']:.1f}x")
    if args.stages and args.backend == "cpu":
        stages = cpu_stage_times(scene, args.resolution, args.repeats)
        result["stage_cpu_s"] = stages
        total = sum(stages.values())
        print("  stages (CPU, one forward+backward): " + ", ".join(
            f"{name.strip('_')} {t * 1e3:.0f} ms ({t / total:.0%})" for name, t in stages.items()))
    load = result["machine"].get("load_average_1m")
    if load is not None and load > (result["machine"]["cpu_count"] or 1):
        logging.getLogger(__name__).warning("load average %.1f exceeds the %s cores: wall times are inflated",
                                            load, result["machine"]["cpu_count"])
    if not math.isfinite(fb):
        raise RuntimeError("non-finite timing")
    return result

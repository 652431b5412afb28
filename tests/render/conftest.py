"""Render-test fixtures: random scenes, backend comparison, numba warm-up (once per session)."""

from __future__ import annotations

import pytest
import torch

from dejavu.render import render
from dejavu.render.camera import intrinsics, orbit_pose6, pose6_to_world_to_cam

INPUTS = ("means", "quats", "scales", "opacities", "colors", "world_to_cam")


def make_scene(B: int = 2, N: int = 200, W: int = 40, H: int = 32, seed: int = 0, spread: float = 0.05,
               dtype: torch.dtype = torch.float32) -> dict:
    """Random Gaussians around the head origin, each frame its own orbit camera (yaws -20..20 deg)."""
    g = torch.Generator().manual_seed(seed)
    scene = {
        "means": torch.randn(B, N, 3, generator=g) * spread,
        "quats": torch.randn(B, N, 4, generator=g),
        "scales": torch.rand(B, N, 3, generator=g) * 0.006 + 0.001,
        "opacities": torch.rand(B, N, generator=g),
        "colors": torch.rand(B, N, 3, generator=g),
        "world_to_cam": pose6_to_world_to_cam(orbit_pose6(torch.linspace(-20, 20, B) if B > 1 else [0.0])),
        "K": intrinsics(W, H, batch=B),
    }
    scene = {k: v.to(dtype) for k, v in scene.items()}
    scene.update(width=W, height=H)
    return scene


def run_backend(scene: dict, backend: str, background=None, upstream: torch.Tensor | None = None):
    """Render ``scene`` with gradients; returns (RenderOutput, {input name: grad})."""
    leaves = {k: scene[k].clone().requires_grad_(True) for k in INPUTS}
    out = render(**leaves, K=scene["K"], width=scene["width"], height=scene["height"], background=background,
                 backend=backend)
    if upstream is None:
        upstream = torch.randn(*out.rgb.shape[:3], 5, generator=torch.Generator().manual_seed(1), dtype=out.rgb.dtype)
    loss = (out.rgb * upstream[..., :3]).sum() + (out.depth * upstream[..., 3:4]).sum() + (out.alpha * upstream[..., 4:]).sum()
    loss.backward()
    return out, {k: v.grad for k, v in leaves.items()}


def assert_backends_agree(scene: dict, backend: str = "cpu", background=None, img_atol: float = 1e-5,
                          grad_rtol: float = 1e-3, grad_atol_frac: float = 1e-4) -> None:
    """``backend`` vs the reference: images within ``img_atol``; every gradient within
    ``grad_rtol * |ref| + grad_atol_frac * max|ref|`` (float32)."""
    ref, ref_grads = run_backend(scene, "reference", background)
    fast, fast_grads = run_backend(scene, backend, background)
    for name in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), atol=img_atol, rtol=0, msg=name)
    for name in INPUTS:
        r, f = ref_grads[name], fast_grads[name]
        if r is None or f is None:
            assert r is None or r.abs().max() == 0, name
            continue
        scale = float(r.abs().max()) if r.numel() else 0.0
        torch.testing.assert_close(f, r, rtol=grad_rtol, atol=grad_atol_frac * scale + 1e-7, msg=f"grad {name}")


@pytest.fixture(params=["simd", "numba"])
def tile_kernels(request, monkeypatch):
    """Run a test once on each of the CPU backend's tile kernels (C/AVX2 where available, and numba)."""
    from dejavu.render import config, cpu, simd

    if request.param == "simd" and simd.kernels() is None:
        pytest.skip(f"C tile kernels unavailable: {simd.unavailable_reason()}")
    monkeypatch.setattr(config, "CPU_KERNELS", "numba" if request.param == "numba" else "auto")
    assert cpu.tile_kernels() == request.param
    return request.param


@pytest.fixture(scope="session")
def cpu_backend():
    """Compile (or load from numba's cache) the CPU kernels once per session."""
    run_backend(make_scene(B=1, N=8, W=16, H=16), "cpu")
    return "cpu"

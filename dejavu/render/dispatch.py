"""Validates ``render`` inputs and hands them to one backend (``"auto" | "cpu" | "cuda" | "reference"``).

The cpu backend is imported on first use: it brings numba (0.3-0.4 s to import on a 2-core CPU), which
importing the avatar model (``dejavu.model``, ``dejavu.gaussians``) should not cost. The cuda backend
imports gsplat itself on first use (only with a GPU); the reference backend is plain torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dejavu.errors import DejavuError
from dejavu.render.cuda import render_cuda
from dejavu.render.reference import render_reference

BACKENDS = ("auto", "cpu", "cuda", "reference")


@dataclass
class RenderOutput:
    """What every backend returns.

    rgb:   (B, H, W, 3) in [0, 1] over the background colour.
    alpha: (B, H, W, 1) accumulated opacity in [0, 1].
    depth: (B, H, W, 1) alpha-weighted camera z, metres (sum_i w_i z_i, not divided by alpha).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor


def _check(name: str, t: torch.Tensor, shape: tuple) -> None:
    """Raise DejavuError unless ``t`` is a tensor matching ``shape`` (None = any size)."""
    if not isinstance(t, torch.Tensor):
        raise DejavuError(f"render: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
        raise DejavuError(f"render: {name} must have shape {want}, got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise DejavuError(f"render: {name} must be a floating-point tensor, got {t.dtype}")


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"auto"`` -> ``"cuda"`` for CUDA tensors, else ``"cpu"``; checks the name and the device."""
    if backend not in BACKENDS:
        raise DejavuError(f"render: backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "cuda" if device.type == "cuda" else "cpu"
    if backend == "cuda":
        if not torch.cuda.is_available():
            raise DejavuError("render: backend 'cuda' needs a CUDA GPU but none is available; use backend 'cpu'")
        if device.type != "cuda":
            raise DejavuError(f"render: backend 'cuda' needs CUDA tensors, got tensors on {device}")
    if backend == "cpu" and device.type != "cpu":
        raise DejavuError(f"render: backend 'cpu' needs CPU tensors, got tensors on {device}")
    return backend


def background_tensor(background, B: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """None (white) | (3,) | (B, 3) | 3-tuple -> (B, 3) tensor."""
    if background is None:
        return torch.ones(B, 3, dtype=dtype, device=device)
    bg = torch.as_tensor(background, dtype=dtype, device=device)
    if bg.shape == (3,):
        return bg.expand(B, 3)
    if bg.shape == (B, 3):
        return bg
    raise DejavuError(f"render: background must have shape (3,) or ({B}, 3), got {tuple(bg.shape)}")


def render_dispatch(means, quats, scales, opacities, colors, world_to_cam, K, width, height, background, backend):
    """Validate, resolve the backend, render. See :func:`dejavu.render.render`."""
    width, height = _validate(means, quats, scales, opacities, colors, world_to_cam, K, width, height)
    bg = background_tensor(background, means.shape[0], means.dtype, means.device)
    name = resolve_backend(backend, means.device)
    if name == "cpu":
        from dejavu.render.cpu import render_cpu as fn  # numba: see the module doc
    else:
        fn = render_reference if name == "reference" else render_cuda
    rgb, alpha, depth = fn(means, quats, scales, opacities, colors, world_to_cam, K, width, height, bg)
    return RenderOutput(rgb=rgb, alpha=alpha, depth=depth)


def _validate(means, quats, scales, opacities, colors, world_to_cam, K, width, height) -> tuple[int, int]:
    """Raise DejavuError on inputs ``render`` cannot take; returns (width, height) as ints."""
    _check("means", means, (None, None, 3))
    B, N = means.shape[:2]
    _check("quats", quats, (B, N, 4))
    _check("scales", scales, (B, N, 3))
    _check("opacities", opacities, (B, N))
    _check("colors", colors, (B, N, 3))
    _check("world_to_cam", world_to_cam, (B, 4, 4))
    _check("K", K, (B, 3, 3))
    if int(width) != width or int(height) != height or width <= 0 or height <= 0:
        raise DejavuError(f"render: width and height must be positive integers, got {width} x {height}")
    width, height = int(width), int(height)
    tensors = (means, quats, scales, opacities, colors, world_to_cam, K)
    device = means.device
    if any(t.device != device for t in tensors):
        raise DejavuError("render: all inputs must be on one device, got " + ", ".join(sorted({str(t.device) for t in tensors})))
    dtype = means.dtype
    if any(t.dtype != dtype for t in tensors):
        raise DejavuError("render: all inputs must share one dtype, got " + ", ".join(sorted({str(t.dtype) for t in tensors})))
    return width, height


def transpose_dispatch(means, quats, scales, opacities, world_to_cam, K, width, height, cotangent, backend):
    """Validate, resolve the backend, apply A^T. See :func:`dejavu.render.render_transpose`."""
    _check("means", means, (None, None, 3))
    B, N = means.shape[:2]
    colors = torch.zeros(B, N, 3, dtype=means.dtype, device=means.device)
    width, height = _validate(means, quats, scales, opacities, colors, world_to_cam, K, width, height)
    _check("cotangent", cotangent, (B, height, width, None))
    name = resolve_backend(backend, means.device)
    if name == "cpu":
        from dejavu.render.cpu import transpose_cpu  # numba: see the module doc

        return transpose_cpu(means, quats, scales, opacities, world_to_cam, K, width, height, cotangent)
    C = cotangent.shape[-1]
    out = []
    for c0 in range(0, C, 3):  # colours carry 3 channels: apply A^T to 3 cotangent channels per render
        part = cotangent[..., c0:c0 + 3]
        pad = torch.zeros(*part.shape[:-1], 3 - part.shape[-1], dtype=part.dtype, device=part.device)
        with torch.enable_grad():
            colors = colors.detach().requires_grad_(True)
            rgb = render_dispatch(means.detach(), quats.detach(), scales.detach(), opacities.detach(), colors,
                                  world_to_cam.detach(), K, width, height, torch.zeros(3, dtype=means.dtype), name).rgb
            grad, = torch.autograd.grad(rgb, colors, torch.cat([part, pad], -1))
        out.append(grad[..., :part.shape[-1]])
    return torch.cat(out, -1)

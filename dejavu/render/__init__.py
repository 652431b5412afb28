"""Differentiable Gaussian splatting: one entry point, several backends.

``render(...)`` takes B frames, each with its own N Gaussians and its own camera, and returns RGB,
alpha and depth. Backends: ``"cpu"`` (numba tile rasterizer with a hand-written backward),
``"cuda"`` (gsplat), ``"reference"`` (pure torch autograd; slow; the test oracle), ``"auto"``
(cuda for CUDA tensors, else cpu). Conventions: ``dejavu.render.camera``.
"""

from __future__ import annotations

import torch

from dejavu.render.dispatch import RenderOutput, render_dispatch, transpose_dispatch

__all__ = ["RenderOutput", "render", "render_transpose"]


def render(
    means: torch.Tensor,  # (B, N, 3) world, metres
    quats: torch.Tensor,  # (B, N, 4) wxyz, need not be normalised
    scales: torch.Tensor,  # (B, N, 3) metres, positive (already activated)
    opacities: torch.Tensor,  # (B, N) in [0, 1]
    colors: torch.Tensor,  # (B, N, 3) RGB in [0, 1]
    world_to_cam: torch.Tensor,  # (B, 4, 4) OpenCV world-to-camera
    K: torch.Tensor,  # (B, 3, 3) pixels
    width: int,
    height: int,
    background: torch.Tensor | tuple[float, float, float] | None = None,  # (3,) or (B, 3); default white
    backend: str = "auto",
) -> RenderOutput:
    """Render B frames of N Gaussians. Differentiable w.r.t. every Gaussian input.

    Returns:
        :class:`RenderOutput` with (B, H, W, C) tensors.
    """
    return render_dispatch(means, quats, scales, opacities, colors, world_to_cam, K, width, height, background, backend)


def render_transpose(
    means: torch.Tensor,  # (B, N, 3) world, metres
    quats: torch.Tensor,  # (B, N, 4) wxyz
    scales: torch.Tensor,  # (B, N, 3) metres
    opacities: torch.Tensor,  # (B, N) in [0, 1]
    world_to_cam: torch.Tensor,  # (B, 4, 4)
    K: torch.Tensor,  # (B, 3, 3)
    width: int,
    height: int,
    cotangent: torch.Tensor,  # (B, H, W, C) per-pixel values
    backend: str = "auto",
) -> torch.Tensor:
    """A^T v: (B, N, C), each Gaussian's compositing weights (alpha_i T_i at each pixel) times ``cotangent``,
    summed over the image.

    A rendered image is linear in the Gaussians' colours, ``rgb = A c + T bg``, and A does not depend on
    the colours; this applies its transpose (the colour gradient of ``sum(rgb * v)``) to C channels at
    once, without the geometry's gradients. With ``cotangent`` = 1 it gives each Gaussian's footprint
    weight. The cpu backend does it in one compositing pass; the others through autograd.
    """
    return transpose_dispatch(means, quats, scales, opacities, world_to_cam, K, width, height, cotangent, backend)

"""CUDA backend: a thin adapter over gsplat 1.5.3's ``rasterization`` (imported lazily, here only).

Our B frames map onto gsplat's leading batch dimension with one camera each (means (B, N, 3),
viewmats (B, 1, 4, 4)). ``render_mode="RGB+D"`` gives gsplat's accumulated depth sum_i w_i z_i, our
depth definition; ``rasterize_mode="classic"``, ``eps2d`` 0.3, near 0.01, 16-pixel tiles, packed mode.
The constants in ``dejavu.render.config`` are gsplat's, so the CPU and reference backends draw the
same images. gsplat compiles its CUDA extension on first use.
"""

from __future__ import annotations

import torch

from dejavu.errors import DejavuError
from dejavu.render import config


def _rasterization():
    try:
        from gsplat import rasterization
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise DejavuError(f"render: backend 'cuda' needs the gsplat package ({exc}); pip install gsplat==1.5.3") from exc
    return rasterization


def render_cuda(means, quats, scales, opacities, colors, world_to_cam, K, width: int, height: int,
                background: torch.Tensor):
    """gsplat pipeline (validated CUDA inputs, background (B, 3)) -> rgb, alpha, depth (B, H, W, C).

    gsplat works in float32; other dtypes are cast there and back. Gradients reach means, quats,
    scales, opacities, colors and world_to_cam.
    """
    rasterization = _rasterization()
    dtype = means.dtype
    f32 = lambda t: t.to(torch.float32)  # noqa: E731
    B, N = opacities.shape
    if N == 0:  # gsplat does not take empty scenes: everything is background
        rgb = background[:, None, None, :].expand(B, height, width, 3).clone()
        zeros = rgb.new_zeros(B, height, width, 1)
        return rgb, zeros, zeros.clone()
    render_colors, render_alphas, _ = rasterization(
        means=f32(means),  # [B, N, 3]
        quats=f32(quats),  # [B, N, 4]
        scales=f32(scales),  # [B, N, 3]
        opacities=f32(opacities),  # [B, N]
        colors=f32(colors),  # [B, N, 3]
        viewmats=f32(world_to_cam)[:, None],  # [B, 1, 4, 4]
        Ks=f32(K)[:, None],  # [B, 1, 3, 3]
        width=width,
        height=height,
        near_plane=config.NEAR_PLANE,
        far_plane=config.FAR_PLANE,
        eps2d=config.EPS2D,
        packed=True,
        tile_size=config.TILE_SIZE,
        backgrounds=f32(background)[:, None],  # [B, 1, 3]
        render_mode="RGB+D",
        rasterize_mode="classic",
    )
    out = render_colors[:, 0].to(dtype)  # [B, H, W, 4]
    return out[..., :3], render_alphas[:, 0].to(dtype), out[..., 3:4]

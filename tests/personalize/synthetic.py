"""A synthetic video: a known avatar on the procedural head rendered over a few frames (test helper)."""

from __future__ import annotations

import torch

from dejavu.gaussians import channels as ch
from dejavu.head.params import HeadParams
from dejavu.personalize.frames import FrameSet


def known_mean_offsets(uvmap, seed: int = 0) -> torch.Tensor:
    """(13, S, S) offsets giving ~1 cm Gaussians with smooth random colours."""
    S = uvmap.size
    g = torch.Generator().manual_seed(seed)
    off = torch.zeros(ch.N_CHANNELS, S, S)
    off[ch.LOG_SCALE] = 3.6  # exp(-8.35 + 3.6) ~ 8.7 mm
    off[ch.OPACITY] = 2.0
    coarse = torch.rand(1, 3, 4, 4, generator=g) * 4.0 - 0.5
    off[ch.COLOR] = torch.nn.functional.interpolate(coarse, size=(S, S), mode="bilinear", align_corners=False)[0]
    return off * uvmap.mask.float()


def synthetic_params(head, T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random expression (T, Ne), jaw (T, 3) and cameras pose6 (T, 6) (small yaws, 1 m)."""
    g = torch.Generator().manual_seed(seed)
    expression = torch.randn(T, head.n_expr, generator=g) * 0.5
    jaw = torch.zeros(T, 3)
    jaw[:, 0] = torch.rand(T, generator=g) * 0.2
    pose6 = torch.zeros(T, 6)
    pose6[:, 0] = (torch.rand(T, generator=g) - 0.5) * 0.6
    pose6[:, 5] = 1.0
    return expression, jaw, pose6


def synthetic_frames(head, uvmap, mean_offsets: torch.Tensor, T: int = 10, R: int = 64, seed: int = 0,
                     blendmaps: torch.Tensor | None = None, blend=None, backend: str = "auto") -> FrameSet:
    """Render T frames of the avatar (mean [+ blended delta]) with random expressions, jaw and small yaws."""
    from dejavu.render.camera import intrinsics, pose6_to_world_to_cam

    expression, jaw, pose6 = synthetic_params(head, T, seed)
    w2c, K = pose6_to_world_to_cam(pose6), intrinsics(R, R, batch=T)
    shape = torch.zeros(head.n_shape)
    with torch.no_grad():
        verts = head(shape=shape, expression=expression, jaw=jaw)
        offsets = mean_offsets[None].expand(T, -1, -1, -1)
        if blendmaps is not None:
            offsets = offsets + torch.einsum("bk,kchw->bchw", blend.weights(expression), blendmaps)
        rgb = uvmap.gaussians(verts, offsets).render(w2c, K, R, R, background=(1.0, 1.0, 1.0), backend=backend).rgb
    images = (rgb.clamp(0, 1) * 255).round().to(torch.uint8)
    return FrameSet(images=images, params=HeadParams.of(expression, jaw), world_to_cam=w2c, K=K, shape=shape,
                    index=torch.arange(T))


def synthetic_tracking_dir(directory, head, uvmap, mean_offsets: torch.Tensor, T: int = 10, crop: int = 64,
                           seed: int = 0, backend: str = "auto"):
    """Write a ``dejavu.track``-style tracking directory (tracking.npz + crops/masks PNGs) of a known avatar."""
    from pathlib import Path

    import numpy as np

    from dejavu.io import write_image
    from dejavu.render.camera import project_points
    from dejavu.track.result import TrackResult, save_tracking

    directory = Path(directory)
    fs = synthetic_frames(head, uvmap, mean_offsets, T=T, R=crop, seed=seed, backend=backend)
    with torch.no_grad():
        verts = head(shape=fs.shape, **fs.params.kwargs())
        lm = project_points(head.landmarks(verts), fs.world_to_cam, fs.K).numpy()
    for i in range(T):
        img = fs.images[i].numpy()
        head_mask = (img.astype(np.float32).mean(-1, keepdims=True) < 250).astype(np.float32)
        write_image(directory / "crops" / f"{i:06d}.png", img)
        write_image(directory / "masks" / f"{i:06d}.png", head_mask)
        write_image(directory / "face_masks" / f"{i:06d}.png", head_mask)
    pose6 = synthetic_params(head, T, seed)[2].numpy()
    result = TrackResult(
        frame_index=np.arange(T), frame_time=np.arange(T) / 25.0, shape=fs.shape.numpy(),
        **fs.params.numpy(), pose6=pose6,
        world_to_cam=fs.world_to_cam.numpy(), K=fs.K.numpy(), landmarks_2d=lm, fitted_2d=lm,
        crop_affine=np.tile(np.eye(2, 3), (T, 1, 1)), error_px=np.zeros(T, np.float32), crop_size=crop, fps=25.0,
        head_spec="procedural", input_path="synthetic", directory=str(directory))
    save_tracking(result, directory)
    return result

"""Pictures of a head model for ``dejavu head info``: the UV layout by region, and the mesh with landmarks.

Plain numpy + PIL: the mesh is drawn back to front (painter's algorithm) with flat Lambert shading
and back-face culling through the project's camera (:mod:`dejavu.render.camera`), so no renderer is
needed. Images are float32 (H, W, 3) in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from dejavu.head.base import REGIONS, HeadModel
from dejavu.head.texels import texel_table
from dejavu.render.camera import intrinsics, orbit_pose6, pose6_to_world_to_cam, project_points

#: Display colour per region (REGIONS order), RGB in [0, 1].
REGION_COLORS = np.array([
    [0.93, 0.76, 0.64],  # face
    [0.45, 0.30, 0.20],  # scalp
    [0.95, 0.55, 0.20],  # ears
    [0.30, 0.50, 0.95],  # eyes
    [0.85, 0.15, 0.20],  # mouth
    [0.35, 0.70, 0.35],  # neck
    [0.65, 0.65, 0.65],  # other
], dtype=np.float32)
assert len(REGION_COLORS) == len(REGIONS)


def uv_layout_image(head: HeadModel, size: int = 512, wireframe: bool = True) -> np.ndarray:
    """The UV square (size x size) with texels coloured by region (white = unused) and the UV triangles."""
    from PIL import Image, ImageDraw


    a = head.assets
    table = texel_table(a.uv_coords, a.uv_faces, size)
    img = np.ones((size * size, 3), dtype=np.float32)
    img[table.flat_index] = REGION_COLORS[np.asarray(a.face_region, dtype=np.int64)[table.face]]
    pil = Image.fromarray((img.reshape(size, size, 3) * 255).astype(np.uint8))
    if wireframe:
        draw = ImageDraw.Draw(pil)
        tri = np.asarray(a.uv_coords, dtype=np.float64)[np.asarray(a.uv_faces)]  # (F, 3, 2)
        area = np.abs(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
        xy = np.stack([tri[..., 0] * size, (1 - tri[..., 1]) * size], -1)
        for t in xy[area > 1e-12]:
            draw.polygon([tuple(p) for p in t], outline=(40, 40, 40))
    return np.asarray(pil, dtype=np.float32) / 255.0


def mesh_image(head: HeadModel, yaw_deg: float = 0.0, size: int = 512, vertices: torch.Tensor | None = None,
               landmarks: bool = True) -> np.ndarray:
    """Flat-shaded perspective view (FOV 20 deg) of the head, region-coloured, with the 478 landmarks.

    Args:
        head: the model; ``vertices`` (V, 3) metres overrides its neutral mesh.
        yaw_deg: camera orbit angle (0 = frontal, positive turns the face to the subject's left).
        size: image side in pixels.
    """
    from PIL import Image, ImageDraw


    with torch.no_grad():
        v = head(batch_size=1)[0] if vertices is None else vertices
        v = v.detach().cpu().float()
        lo, hi = v.min(0).values, v.max(0).values
        centre = tuple(float(c) for c in (lo + hi) / 2)
        extent = float((hi - lo).max())
        distance = 1.15 * extent / (2 * np.tan(np.radians(10.0)))
        w2c = pose6_to_world_to_cam(orbit_pose6([yaw_deg], distance=distance, center=centre))
        K = intrinsics(size, size)
        pix = project_points(v[None], w2c, K)[0].numpy()
        cam = (v @ w2c[0, :3, :3].T + w2c[0, :3, 3]).numpy()
        lm = head.landmarks(v[None])[0].cpu()
        lm_pix = project_points(lm[None], w2c, K)[0].numpy()
    faces = head.faces.cpu().numpy()
    tri = cam[faces]  # (F, 3, 3) camera frame (+z forward)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    centre_dir = tri.mean(1)
    facing = (n * centre_dir).sum(1) < 0  # normal points back towards the camera
    shade = np.clip(-(n * centre_dir / np.linalg.norm(centre_dir, axis=1, keepdims=True)).sum(1), 0, 1)
    colour = REGION_COLORS[head.face_region.cpu().numpy()] * (0.25 + 0.75 * shade[:, None])
    order = np.argsort(-tri[:, :, 2].mean(1))  # far first
    pil = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(pil)
    for f in order:
        if facing[f]:
            draw.polygon([tuple(p) for p in pix[faces[f]]], fill=tuple(int(c * 255) for c in colour[f]))
    if landmarks:
        lm_face = head.landmark_faces.cpu().numpy()
        weight = head.landmark_weight.cpu().numpy()
        for p, ok in zip(lm_pix, facing[lm_face] & (weight > 0)):
            if ok:
                draw.ellipse([p[0] - 1.5, p[1] - 1.5, p[0] + 1.5, p[1] + 1.5], fill=(20, 20, 200))
    return np.asarray(pil, dtype=np.float32) / 255.0


def mesh_views(head: HeadModel, size: int = 512, yaws: tuple[float, ...] = (0.0, 35.0)) -> np.ndarray:
    """Several :func:`mesh_image` views side by side, (size, size * len(yaws), 3)."""
    return np.concatenate([mesh_image(head, yaw, size) for yaw in yaws], axis=1)

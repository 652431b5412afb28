"""The scale floor from the texel spacing closes the gaps between tiny Gaussians and changes nothing else."""

from __future__ import annotations

import torch

from dejavu.gaussians import channels as ch
from dejavu.gaussians.coverage import close_gaps, texel_spacing
from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.render.camera import intrinsics, orbit_pose6, pose6_to_world_to_cam


def _setup(head, S=32):
    return UVGaussianMap(head, S), head(batch_size=1)


def test_spacing_is_the_distance_to_the_grid_neighbours(procedural_head):
    uvmap, verts = _setup(procedural_head)
    pos = uvmap.initial_map(verts)[0, ch.XYZ]  # (3, S, S)
    spacing = texel_spacing(uvmap, pos)
    mask = uvmap.mask
    assert (spacing[~mask] == 0).all() and (spacing[mask] > 0).float().mean() > 0.99
    ys, xs = torch.nonzero(mask, as_tuple=True)
    for i in range(0, len(ys), max(1, len(ys) // 25)):  # brute force on a sample of texels
        y, x = int(ys[i]), int(xs[i])
        d = [float((pos[:, y, x] - pos[:, y + dy, x + dx]).norm()) for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))
             if 0 <= y + dy < uvmap.size and 0 <= x + dx < uvmap.size and mask[y + dy, x + dx]]
        if not d:
            continue
        d = [v for v in d if v <= 4 * min(d)]
        assert abs(float(spacing[y, x]) - max(d)) < 1e-6


def test_tiny_gaussians_grow_to_the_floor_and_nothing_else_changes(procedural_head):
    uvmap, verts = _setup(procedural_head)
    S = uvmap.size
    torch.manual_seed(0)
    offsets = torch.randn(ch.N_CHANNELS, S, S) * 0.1 * uvmap.mask
    offsets[ch.LOG_SCALE] = torch.tensor([-3.0, -3.0, -4.0])[:, None, None] * uvmap.mask  # tiny, flat
    offsets[ch.LOG_SCALE, : S // 2] += 9.0 * uvmap.mask[: S // 2]  # the top half already large (~10 cm)
    out = close_gaps(uvmap, verts, offsets, min_ratio=0.3)
    other = [c for c in range(ch.N_CHANNELS) if c not in range(3, 6)]
    torch.testing.assert_close(out[other], offsets[other])
    before = uvmap.apply_offsets(uvmap.initial_map(verts), offsets[None])[0]
    after = uvmap.apply_offsets(uvmap.initial_map(verts), out[None])[0]
    spacing = texel_spacing(uvmap, after[ch.XYZ])
    m = uvmap.mask & (spacing > 0)
    scales = after[ch.LOG_SCALE].exp()
    assert (scales[:2][:, m] >= 0.3 * spacing[m] * (1 - 1e-5)).all()  # the two larger axes reach the floor
    torch.testing.assert_close(after[5], before[5])  # the thinnest axis stays
    top = m.clone()
    top[S // 2:] = False
    torch.testing.assert_close(after[ch.LOG_SCALE][:, top], before[ch.LOG_SCALE][:, top])  # large ones untouched


def test_the_floor_closes_holes_seen_from_the_side(procedural_head):
    uvmap, verts = _setup(procedural_head, S=48)
    S = uvmap.size
    offsets = torch.zeros(ch.N_CHANNELS, S, S)
    offsets[ch.LOG_SCALE] = torch.tensor([1.0, 1.0, 0.0])[:, None, None] * uvmap.mask
    offsets[ch.OPACITY] = 6.0 * uvmap.mask
    center = tuple(float(v) for v in verts[0].mean(0))
    w2c = pose6_to_world_to_cam(orbit_pose6(torch.tensor([0.0, 45.0]), center=center))
    K = intrinsics(96, 96, batch=2)

    def covered(o):
        """Of the pixels the Gaussians touch (alpha > 0.02), the share they cover (alpha > 0.9)."""
        alpha = uvmap.gaussians(verts.expand(2, -1, -1), o[None]).render(w2c, K, 96, 96).alpha[..., 0]
        return float((alpha[alpha > 0.02] > 0.9).float().mean())

    before, after = covered(offsets), covered(close_gaps(uvmap, verts, offsets))
    assert before < 0.5 and after > 0.75, (before, after)  # the rest of `after` is the outline's soft edge

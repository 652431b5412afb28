"""Mean offsets carried from the network's UV size to the personalization's (resample_offsets)."""

import math

import torch

from dejavu.gaussians import channels as ch
from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.gaussians.resample import resample_offsets


def test_constant_offsets_survive_upsampling_and_gaussians_shrink(procedural_head):
    small, large = UVGaussianMap(procedural_head, 32), UVGaussianMap(procedural_head, 64)
    offsets = torch.zeros(ch.N_CHANNELS, 32, 32)
    offsets[ch.COLOR] = 0.7
    offsets[ch.LOG_SCALE] = 1.5
    out = resample_offsets(offsets * small.mask, small.mask, large.mask)
    assert out.shape == (ch.N_CHANNELS, 64, 64)
    assert torch.all(out[:, ~large.mask] == 0)
    # interior texels (valid in both grids, away from island borders) keep the value exactly
    inner = large.mask & torch.nn.functional.interpolate(small.mask.float()[None, None], size=(64, 64))[0, 0].bool()
    assert torch.allclose(out[ch.COLOR][:, inner], torch.tensor(0.7), atol=1e-5)
    # twice as many Gaussians per side: each is half as large, so coverage stays the same
    assert torch.allclose(out[ch.LOG_SCALE][:, inner], torch.tensor(1.5 + math.log(0.5)), atol=1e-5)

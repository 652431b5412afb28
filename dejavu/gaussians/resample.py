"""UV offset maps carried from one UV size to another (the network's map to a personalization's)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dejavu.gaussians import channels as ch


def resample_offsets(offsets: torch.Tensor, mask_from: torch.Tensor, mask_to: torch.Tensor) -> torch.Tensor:
    """Offsets (13, S1, S1) valid on ``mask_from`` -> (13, S2, S2) on ``mask_to``, mask-normalised bilinear.

    Log-scale offsets shift by log(S1 / S2): S2/S1 times more Gaussians per side cover the same surface,
    so each must be that much smaller to keep the same coverage.
    """
    S1, S2 = mask_from.shape[-1], mask_to.shape[-1]
    m = mask_from.float()[None, None]  # (1, 1, S1, S1)
    num = F.interpolate(offsets[None] * m, size=(S2, S2), mode="bilinear", align_corners=False)[0]
    den = F.interpolate(m, size=(S2, S2), mode="bilinear", align_corners=False)[0]
    out = torch.where(den > 1e-3, num / den.clamp_min(1e-3), torch.zeros_like(num))
    out[ch.LOG_SCALE] += math.log(S1 / S2)
    return out * mask_to.float()

"""The single-image reconstruction network (paper section 3.3, method notes "encoder-decoder").

An encoder-decoder with no pretrained backbone and no skip connections: InstanceNorm, reflect
padding. The encoder reads the aligned head image (background white, values in [-1, 1]) resized to
the UV side S and pools it to S/16; the decoder upsamples back to S, concatenating the UV position
map (3 channels, raw xyz in metres) resized to each block's resolution before the block's
DoubleConv, and ends in a 1x1 conv to the 13 UV-map channels with no activation. Outputs are plain
additive offsets, applied with ``UVGaussianMap.apply_offsets`` (xyz in cm).

Widths scale with ``base`` (paper: 64): encoder base, base, 2b, 4b, 8b; decoder 4b, 2b, b, b. Each
up block keeps the channel count through its 2x transpose conv and reduces it in its DoubleConv;
with base 64 this is 8.56 M parameters (the method notes' "about 8.6 M").

Letters: B batch, S UV side, H/W image pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dejavu.gaussians.channels import N_CHANNELS


class DoubleConv(nn.Module):
    """(3x3 conv, reflect pad, InstanceNorm, ReLU) x 2."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="reflect", bias=False),
            nn.InstanceNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode="reflect", bias=False),
            nn.InstanceNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BinomialBlur(nn.Module):
    """Fixed 3x3 binomial ([1, 2, 1] outer product / 16) depthwise blur, reflect padded (anti-aliasing)."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :]) / 16.0
        self.register_buffer("kernel", k.expand(channels, 1, 3, 3).clone(), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.kernel, groups=self.channels)


class Up(nn.Module):
    """Transpose conv x2 -> binomial blur -> concat position map -> DoubleConv(c_in + 3 -> c_out)."""

    def __init__(self, c_in: int, c_out: int, pos_channels: int = 3):
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_in, 2, stride=2)
        self.blur = BinomialBlur(c_in)
        self.conv = DoubleConv(c_in + pos_channels, c_out)

    def forward(self, x: torch.Tensor, position_map: torch.Tensor) -> torch.Tensor:
        x = self.blur(self.up(x))
        pos = F.interpolate(position_map, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, pos], dim=1))


class ReconNet(nn.Module):
    """Image + UV position map -> UV offsets (B, 13, S, S).

    Args:
        uv_size: S, the UV map side; divisible by 16 and >= 32 (reflect padding needs 2x2 at S/16).
        base: channel width (paper 64; the CPU preset uses fewer).

    Example:
        >>> net = ReconNet(uv_size=64, base=8)
        >>> net(torch.zeros(2, 3, 128, 128), torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 13, 64, 64])
    """

    def __init__(self, uv_size: int, base: int = 64):
        super().__init__()
        if uv_size % 16 or uv_size < 32:
            raise ValueError(f"uv_size must be divisible by 16 and at least 32, got {uv_size}")
        self.uv_size, self.base = uv_size, base
        b = base
        enc = [b, b, 2 * b, 4 * b, 8 * b]
        self.inc = DoubleConv(3, enc[0])
        self.downs = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), DoubleConv(c_in, c_out))
                                   for c_in, c_out in zip(enc[:-1], enc[1:]))
        dec = [8 * b, 4 * b, 2 * b, b, b]
        self.ups = nn.ModuleList(Up(c_in, c_out) for c_in, c_out in zip(dec[:-1], dec[1:]))
        self.out = nn.Conv2d(dec[-1], N_CHANNELS, 1)

    def forward(self, image: torch.Tensor, position_map: torch.Tensor) -> torch.Tensor:
        """Predict UV offsets.

        Args:
            image: (B, 3, H, W) aligned head crop in [-1, 1], background white (= 1); resized to S here.
            position_map: (B, 3, S, S) the identity mesh's UV position map, metres (0 off the mask).

        Returns:
            (B, 13, S, S) offsets in network units (xyz: cm), no activation.
        """
        S = self.uv_size
        if image.shape[-2:] != (S, S):
            image = F.interpolate(image, size=(S, S), mode="bilinear", align_corners=False, antialias=True)
        x = self.inc(image)
        for down in self.downs:
            x = down(x)
        for up in self.ups:
            x = up(x, position_map)
        return self.out(x)

    def init_output(self, bias: torch.Tensor, weight_scale: float = 0.1) -> None:
        """Start from a prior: output conv bias = ``bias`` (13,) offsets, its weights scaled by ``weight_scale``.

        The paper starts from the initial map's tiny black Gaussians (2.4e-4 m); a bias that already
        gives texel-sized, mid-grey, opaque Gaussians lets a short CPU run start from a visible head.
        """
        with torch.no_grad():
            self.out.bias.copy_(bias.to(self.out.bias))
            self.out.weight.mul_(weight_scale)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

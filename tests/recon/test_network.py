"""The reconstruction network: shapes, size at the paper's settings, fixed blur."""

from __future__ import annotations

import pytest
import torch

from dejavu.gaussians.channels import N_CHANNELS
from dejavu.recon.network import BinomialBlur, ReconNet, count_parameters


def test_output_shape_and_any_input_size():
    net = ReconNet(uv_size=32, base=4)
    out = net(torch.rand(2, 3, 50, 70) * 2 - 1, torch.rand(2, 3, 32, 32))
    assert out.shape == (2, N_CHANNELS, 32, 32)


def test_paper_size_has_about_8_6_million_parameters():
    net = ReconNet(uv_size=320, base=64)
    assert 8.5e6 < count_parameters(net) < 8.7e6
    with torch.no_grad():  # one forward at 320 to pin the output shape at the paper's size
        out = net(torch.zeros(1, 3, 320, 320), torch.zeros(1, 3, 320, 320))
    assert out.shape == (1, N_CHANNELS, 320, 320)


def test_width_scales_parameters():
    assert count_parameters(ReconNet(64, 16)) < count_parameters(ReconNet(64, 32)) / 3


def test_uv_size_must_divide_by_16():
    with pytest.raises(ValueError, match="divisible by 16"):
        ReconNet(uv_size=40)


def test_blur_keeps_constants_and_smooths_impulses():
    blur = BinomialBlur(2)
    assert torch.allclose(blur(torch.full((1, 2, 5, 5), 3.0)), torch.full((1, 2, 5, 5), 3.0))
    x = torch.zeros(1, 2, 5, 5)
    x[..., 2, 2] = 16.0
    y = blur(x)
    assert y[0, 0, 2, 2] == 4.0 and y[0, 0, 1, 2] == 2.0 and y[0, 0, 1, 1] == 1.0
    assert not any(p.requires_grad for p in blur.parameters())


def test_position_map_reaches_the_decoder():
    torch.manual_seed(0)
    net = ReconNet(uv_size=32, base=4).eval()
    img = torch.zeros(1, 3, 32, 32)
    a = net(img, torch.zeros(1, 3, 32, 32))
    b = net(img, torch.rand(1, 3, 32, 32))
    assert not torch.allclose(a, b)


def test_output_prior_sets_bias():
    net = ReconNet(uv_size=32, base=4)
    bias = torch.arange(N_CHANNELS, dtype=torch.float32)
    net.init_output(bias, weight_scale=0.0)
    out = net(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert torch.allclose(out[0, :, 3, 4], bias)

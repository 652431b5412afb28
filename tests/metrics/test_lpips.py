"""LPIPS against the reference lpips-jax 0.1.0 implementation (numbers recorded once, see below)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavu.errors import DejavuError
from dejavu.metrics.lpips import LPIPS, get_lpips

# Recorded by running lpips_jax.LPIPSEvaluator(replicate=False, net=...) (jax 0.10.2, flax 0.12.8, CPU)
# on make_pairs() below, inputs mapped to [-1, 1], NHWC. Our converted torch nets agree to < 1e-6 relative.
REFERENCE = {
    "alex": {
        "noise_noise": 0.12388704717159271,
        "noise_blend": 0.4061146080493927,
        "sine_checker": 0.620391309261322,
        "astronaut_gamma": 0.097418874502182,
        "astronaut_flip": 0.5383685827255249,
    },
    "vgg": {
        "noise_noise": 0.34488409757614136,
        "noise_blend": 0.351994127035141,
        "sine_checker": 0.7661014199256897,
        "astronaut_gamma": 0.06217075139284134,
        "astronaut_flip": 0.6633598208427429,
    },
}


def make_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Deterministic (x, y) image pairs, HWC float32 in [0, 1] (64x64 and 128x128)."""
    rng = np.random.default_rng(0)
    a = rng.random((64, 64, 3)).astype(np.float32)
    b = rng.random((64, 64, 3)).astype(np.float32)
    i, j = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    ph = np.array([0.0, 1.0, 2.0])
    s1 = (0.5 + 0.5 * np.sin(2 * np.pi * (3 * i + 2 * j)[..., None] / 64 + ph)).astype(np.float32)
    s2 = (((i // 8 + j // 8) % 2)[..., None] * np.array([0.9, 0.6, 0.3]) + 0.05).astype(np.float32)
    from skimage import data

    ast = data.astronaut().astype(np.float32) / 255.0
    ast = ast.reshape(128, 4, 128, 4, 3).mean(axis=(1, 3)).astype(np.float32)
    return {
        "noise_noise": (a, b),
        "noise_blend": (a, (0.7 * a + 0.3 * s1).astype(np.float32)),
        "sine_checker": (s1, s2),
        "astronaut_gamma": (ast, (ast**2).astype(np.float32)),
        "astronaut_flip": (ast, np.ascontiguousarray(ast[:, ::-1])),
    }


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None]


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_reference(net, lpips_weights):
    model = get_lpips(net)
    for name, (x, y) in make_pairs().items():
        got = float(model(_t(x), _t(y)))
        assert got == pytest.approx(REFERENCE[net][name], rel=1e-4), name


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_identity_is_zero_and_batched(net, lpips_weights):
    model = get_lpips(net)
    pairs = make_pairs()
    x = torch.cat([_t(pairs["noise_noise"][0]), _t(pairs["sine_checker"][0])])
    y = torch.cat([_t(pairs["noise_noise"][1]), _t(pairs["sine_checker"][1])])
    assert torch.equal(model(x, x), torch.zeros(2))
    d = model(x, y)
    assert d.shape == (2,)
    assert d[1].item() == pytest.approx(REFERENCE[net]["sine_checker"], rel=1e-4)
    assert model(y, x) == pytest.approx(d.tolist(), rel=1e-5)  # symmetric


def test_gradients_and_frozen(lpips_weights):
    model = LPIPS("alex")
    assert not model.training and all(not p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training
    x, y = (_t(v).clone() for v in make_pairs()["astronaut_gamma"])
    x.requires_grad_(True)
    d = model(x, y).sum()
    d.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    # directional derivative matches a central finite difference (float64)
    model.double()
    # noise images: no exact max-pool ties (flat image regions make LPIPS non-differentiable there)
    x64, y64 = (_t(v).double() for v in make_pairs()["noise_blend"])
    x64.requires_grad_(True)
    model(x64, y64).sum().backward()
    v = torch.randn(x64.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1e-5
    with torch.no_grad():
        fd = (model(x64 + v, y64) - model(x64 - v, y64)).item() / 2
    assert fd == pytest.approx((x64.grad * v).sum().item(), rel=1e-3)


def test_gradient_finite_on_flat_images(lpips_weights):
    """Constant images give all-zero ReLU features; the channel normalisation must not give NaN grads."""
    model = LPIPS("vgg")
    x = torch.ones(1, 3, 32, 32, requires_grad=True)
    model(x, torch.full((1, 3, 32, 32), 0.9)).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_missing_weights_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DEJAVU_LPIPS_DIR", str(tmp_path))
    with pytest.raises(DejavuError, match=r"alex\.safetensors.*weights fetch"):
        LPIPS("alex")
    with pytest.raises(DejavuError, match="net"):
        LPIPS("squeeze", pretrained=False)


def test_bad_weights_file(tmp_path):
    bad = tmp_path / "alex.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(DejavuError, match="not valid LPIPS-alex weights"):
        LPIPS("alex", path=bad)


def test_random_init_shapes():
    model = LPIPS("vgg", pretrained=False)
    out = model(torch.rand(3, 3, 40, 48), torch.rand(1, 3, 40, 48))
    assert out.shape == (3,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(lpips_weights):
    x, y = (_t(v) for v in make_pairs()["astronaut_flip"])
    model = get_lpips("alex", "cuda")
    got = model(x.cuda(), y.cuda()).item()
    assert got == pytest.approx(REFERENCE["alex"]["astronaut_flip"], rel=1e-3)

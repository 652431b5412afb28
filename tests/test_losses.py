"""Training losses: values against plain references, gradients against finite differences."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dejavu import losses
from dejavu.errors import DejavuError
from dejavu.metrics import image as im


@pytest.fixture(scope="module")
def lpips_weights_or_skip():
    from dejavu.metrics.lpips import weights_path

    if not weights_path("alex").is_file():
        pytest.skip("LPIPS weights not converted; run python -m dejavu.metrics.weights fetch")


def _maps(b: int = 4, c: int = 13, s: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, s, s, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_view_consistency_zero_for_identical_offsets():
    one = _maps(b=1)
    offsets = one.repeat(4, 1, 1, 1)
    assert losses.view_consistency(offsets, torch.tensor([3, 3, 3, 3])).item() == 0.0
    # two identities, each with identical views; and a singleton identity
    offsets = torch.cat([one, one, _maps(b=1, seed=1), _maps(b=1, seed=1), _maps(b=1, seed=2)])
    assert losses.view_consistency(offsets, torch.tensor([7, 7, 2, 2, 9])).item() == pytest.approx(0.0, abs=1e-15)


def test_view_consistency_matches_loop_reference():
    offsets = _maps(b=6)
    ids = torch.tensor([5, 1, 5, 1, 1, 8])
    ref = []
    for b in range(6):
        same = offsets[ids == ids[b]]
        ref.append(torch.linalg.vector_norm(offsets[b] - same.mean(0), dim=0).mean())
    got = losses.view_consistency(offsets, ids)
    assert got.item() == pytest.approx(torch.stack(ref).mean().item(), rel=1e-12)
    assert got.item() > 0
    with pytest.raises(DejavuError, match="identity_ids"):
        losses.view_consistency(offsets, ids[:3])


def test_view_consistency_gradcheck():
    offsets = _maps(b=4, c=3, s=3).requires_grad_(True)
    ids = torch.tensor([0, 0, 1, 1])
    assert torch.autograd.gradcheck(lambda o: losses.view_consistency(o, ids), (offsets,), fast_mode=True)


def test_regularisers_values_and_gradcheck():
    xyz = _maps(b=2, c=3, s=5).requires_grad_(True)
    weight = torch.rand(1, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 10
    ref = (weight * xyz.detach().square().sum(1).sqrt()).mean()
    assert losses.position_regularizer(xyz, weight).item() == pytest.approx(ref.item(), rel=1e-12)
    assert losses.scale_regularizer(xyz, weight[:, None]).item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.autograd.gradcheck(lambda x: losses.position_regularizer(x, weight), (xyz,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda x: losses.scale_regularizer(x, weight), (xyz,), fast_mode=True)


def test_regulariser_gradient_finite_at_zero():
    """Personalization deltas start at exactly zero: the gradient must be finite (0) there."""
    delta = torch.zeros(1, 3, 4, 4, requires_grad=True)
    losses.position_regularizer(delta, torch.ones(1, 4, 4)).backward()
    assert torch.equal(delta.grad, torch.zeros_like(delta))


def test_needle_regulariser_penalises_needles_not_discs():
    import math

    def one(axes_mm):
        return torch.tensor(axes_mm, dtype=torch.float64).log().reshape(1, 3, 1, 1)

    w = torch.ones(1, 1, 1, dtype=torch.float64)
    assert losses.needle_regularizer(one([1.0, 1.0, 1.0]), w).item() == 0.0
    assert losses.needle_regularizer(one([10.0, 10.0, 0.1]), w).item() == 0.0  # a disc is free
    needle = losses.needle_regularizer(one([0.5, 20.0, 1.0]), w, max_ratio=4.0).item()
    assert needle == pytest.approx(math.log(20.0 / 1.0) - math.log(4.0))
    # the same constant on all three axes (an isotropic start) changes nothing
    assert losses.needle_regularizer(one([0.5, 20.0, 1.0]) - 8.35, w).item() == pytest.approx(needle)
    assert losses.needle_regularizer(one([0.5, 20.0, 1.0]), 0 * w).item() == 0.0
    ls = (torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2)
    weight = torch.rand(1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert losses.needle_regularizer(ls, weight).item() > 0
    assert torch.autograd.gradcheck(lambda x: losses.needle_regularizer(x, weight), (ls.requires_grad_(True),),
                                    fast_mode=True)


def test_ray_needle_regulariser_penalises_depth_needles_only():
    import math

    # one Gaussian at the origin, seen by a camera on the +z axis (centre (0, 0, 1)): the ray is -z
    def one(axes_mm, quat=(1.0, 0.0, 0.0, 0.0)):
        d = torch.float64
        return (torch.zeros(1, 1, 3, dtype=d), torch.tensor([[quat]], dtype=d),
                torch.tensor([[axes_mm]], dtype=d) * 1e-3, torch.tensor([[0.0, 0.0, 1.0]], dtype=d))

    w = torch.ones(1, 1, dtype=torch.float64)
    ray_needle = losses.ray_needle_regularizer
    assert ray_needle(*one([1.0, 1.0, 1.0]), w).item() == 0.0
    assert ray_needle(*one([10.0, 10.0, 0.1]), w).item() == 0.0  # a disc facing the camera
    assert ray_needle(*one([10.0, 0.1, 10.0]), w).item() == 0.0  # a disc seen edge-on (ratio ~1.4)
    assert ray_needle(*one([20.0, 1.0, 1.0]), w).item() == 0.0  # a needle across the ray shows: free
    # a needle along the ray: along 20, across sqrt((1 + 1) / 2) = 1
    assert ray_needle(*one([1.0, 1.0, 20.0]), w, max_ratio=2.0).item() == pytest.approx(math.log(20.0) - math.log(2.0))
    # the same needle turned 90 degrees about y lies across the ray
    turned = (math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0)
    assert ray_needle(*one([1.0, 1.0, 20.0], turned), w).item() == pytest.approx(0.0, abs=1e-9)
    assert ray_needle(*one([1.0, 1.0, 20.0]), 0 * w).item() == 0.0
    g = torch.Generator().manual_seed(3)
    means = torch.randn(2, 5, 3, dtype=torch.float64, generator=g) * 0.1
    quats = torch.randn(2, 5, 4, dtype=torch.float64, generator=g)
    scales = torch.rand(2, 5, 3, dtype=torch.float64, generator=g) * 0.02 + 1e-3
    centres = torch.tensor([[0.0, 0.0, 1.0], [0.3, 0.0, 0.9]], dtype=torch.float64)
    weight = torch.rand(1, 5, dtype=torch.float64, generator=g)
    fn = lambda q, s: ray_needle(means, q, s, centres, weight, max_ratio=1.2)  # noqa: E731
    assert fn(quats, scales).item() > 0
    assert torch.autograd.gradcheck(fn, (quats.requires_grad_(True), scales.requires_grad_(True)), fast_mode=True)
    with pytest.raises(DejavuError, match="centres"):
        ray_needle(means, quats, scales, centres[:1], weight)


def _images(b: int = 2, h: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, 3, h, h, generator=g)
    pred = (target + 0.2 * torch.randn(b, 3, h, h, generator=g)).clamp(0, 1)
    return pred, target


def test_render_loss_combines_terms_and_has_gradients():
    from dejavu.metrics.lpips import LPIPS

    net = LPIPS("alex", pretrained=False)  # random frozen weights: enough for gradient flow
    pred, target = _images()
    pred.requires_grad_(True)
    mask = torch.ones(2, 1, 32, 32)
    mask[..., :4] = 0
    terms = losses.render_loss_terms(pred, target, mask, net)
    loss = losses.render_loss(pred, target, mask, net, w_l1=1.0, w_lpips=0.5, w_ssim=0.2)
    expected = terms["l1"] + 0.5 * terms["lpips"] + 0.2 * terms["ssim"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["l1"].item() == pytest.approx(im.l1(pred, target, mask).mean().item())
    assert terms["ssim"].item() == pytest.approx(1 - im.ssim(pred, target, mask).mean().item())
    (g_lpips,) = torch.autograd.grad(terms["lpips"], pred, retain_graph=True)
    assert torch.isfinite(g_lpips).all() and g_lpips.abs().sum() > 0
    assert g_lpips[..., :4].abs().sum() == 0  # outside the mask LPIPS sees white in both images
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert "lpips" not in losses.render_loss_terms(pred, target, None, None)
    assert losses.render_loss(target, target, None, net).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(DejavuError, match="ssim_kind"):
        losses.render_loss(pred, target, None, None, ssim_kind="fancy")


def test_render_loss_pretrained_lpips_gradient(lpips_weights_or_skip):
    from dejavu.metrics.lpips import get_lpips

    pred, target = _images()
    pred.requires_grad_(True)
    loss = losses.render_loss(pred, target, None, get_lpips("alex"), w_l1=0.0, w_lpips=1.0, w_ssim=0.0)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_huber_and_feature_mask_huber():
    pred, target = _images()
    assert losses.huber(pred, target).item() == pytest.approx(F.huber_loss(pred, target, delta=0.1).item())
    d = (pred - target).abs()
    manual = torch.where(d <= 0.1, 0.5 * d**2, 0.1 * (d - 0.05)).mean()
    assert losses.huber(pred, target).item() == pytest.approx(manual.item(), rel=1e-6)
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:20, 10:24] = 1
    per_pixel = torch.where(d <= 0.1, 0.5 * d**2, 0.1 * (d - 0.05))
    assert losses.huber(pred, target, mask=mask).item() == pytest.approx(
        per_pixel[mask.expand_as(d).bool()].mean().item(), rel=1e-6)
    got = losses.feature_mask_huber(pred, target, mask, weight=10.0)
    assert got.item() == pytest.approx(10 * F.huber_loss(pred * mask, target * mask, delta=0.1).item(), rel=1e-6)
    x = pred.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: losses.feature_mask_huber(p, target.double(), mask.double()), (x,), fast_mode=True)


def test_fade_outside_keeps_values_and_lets_only_opacity_learn_outside_the_mask():
    torch.manual_seed(0)
    color = torch.rand(2, 3, 8, 8, requires_grad=True)
    alpha = torch.rand(2, 1, 8, 8, requires_grad=True)
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., :, :4] = 1.0  # the head on the left, background on the right
    pred = alpha * color + (1 - alpha) * 1.0  # over a white background
    out = losses.fade_outside(pred, alpha, mask)
    torch.testing.assert_close(out, pred)
    (out - 1.0).pow(2).sum().backward()  # a white target everywhere
    assert color.grad[..., 4:].abs().max() == 0 and color.grad[..., :4].abs().min() > 0
    assert alpha.grad[..., 4:].abs().min() > 0  # outside: the Gaussians fade instead of turning white


def test_ray_regulariser_sees_only_the_part_along_the_ray():
    """An offset across the ray costs nothing, one along it costs its length times the weight; gradients
    match finite differences."""
    from dejavu.losses import ray_regularizer

    rays = torch.zeros(1, 3, 2, 2)
    rays[:, 2] = 1.0  # a camera looking down z
    weight = torch.tensor([[[1.0, 2.0], [0.0, 1.0]]])
    across = torch.zeros(1, 3, 2, 2)
    across[:, 0] = 3.0
    assert float(ray_regularizer(across, rays, weight)) == 0.0
    along = torch.zeros(1, 3, 2, 2)
    along[:, 2] = -0.5
    torch.testing.assert_close(ray_regularizer(along, rays, weight), torch.tensor(0.5 * 4.0 / 4))
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    r = torch.nn.functional.normalize(torch.randn(1, 3, 2, 2, dtype=torch.float64), dim=1)
    assert torch.autograd.gradcheck(lambda t: ray_regularizer(t, r, weight.double()), (x,))

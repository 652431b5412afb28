"""Blend weights sum to one, follow the documented schemes, and compose as a weighted sum."""

from __future__ import annotations

import torch

from dejavu.model.blend import BlendScheme, compose_delta, default_temperature, fit_pca_basis


def test_softmax_first_k_is_the_paper():
    expr = torch.randn(6, 50)
    w = BlendScheme(kind="softmax_first_k", k=10).weights(expr)
    assert w.shape == (6, 10)
    torch.testing.assert_close(w.sum(-1), torch.ones(6))
    torch.testing.assert_close(w, torch.softmax(expr[:, :10], -1))


def test_pca_softmax_weights_sum_to_one_and_vary():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(100, 52, generator=g) ** 3  # ARKit-like activations in [0, 1]
    scheme = fit_pca_basis(train, k=10)
    assert scheme.basis.shape == (10, 52)
    torch.testing.assert_close(scheme.basis @ scheme.basis.T, torch.eye(10), atol=1e-5, rtol=0)
    w = scheme.weights(train)
    torch.testing.assert_close(w.sum(-1), torch.ones(100))
    assert (w >= 0).all() and w.std(0).min() > 0.01  # weights change with the expression
    # projections are standardised over the training frames
    z = (train - scheme.center) @ scheme.basis.T / scheme.scale
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(10), atol=1e-4, rtol=0)


def test_pca_with_fewer_frames_than_k():
    scheme = fit_pca_basis(torch.rand(3, 52), k=10)
    w = scheme.weights(torch.rand(4, 52))
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(4))


def test_compose_delta_is_weighted_sum():
    maps = torch.randn(3, 13, 4, 4)
    w = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    d = compose_delta(w, maps)
    torch.testing.assert_close(d[0], maps[0])
    torch.testing.assert_close(d[1], 0.2 * maps[0] + 0.3 * maps[1] + 0.5 * maps[2])
    # identical blendmaps (stage-2 initialisation) reproduce the stage-1 delta for any weights
    same = maps[:1].expand(3, -1, -1, -1)
    torch.testing.assert_close(compose_delta(torch.softmax(torch.randn(2, 3), -1), same), maps[0].expand(2, -1, -1, -1))


def test_weights_are_clamped_to_the_training_range():
    """Outside the training video's range, an expression gets the weights of the nearest trained one
    (its softmax inputs clamped); inside, nothing changes."""
    g = torch.Generator().manual_seed(3)
    train = torch.rand(50, 12, generator=g) * 0.5
    for scheme in (fit_pca_basis(train, k=4), BlendScheme(kind="softmax_first_k", k=4)):
        bounded = scheme.with_training_range(train)
        assert torch.allclose(bounded.weights(train), scheme.weights(train))
        far = train[:3] + 3.0 * torch.randn(3, 12, generator=g)
        z = scheme.inputs(far)
        assert ((z < bounded.lo) | (z > bounded.hi)).any()
        expected = torch.softmax(torch.maximum(torch.minimum(z, bounded.hi), bounded.lo) / scheme.temperature, dim=-1)
        assert torch.allclose(bounded.weights(far), expected)
        # stored with the avatar
        again = BlendScheme.from_storage(bounded.meta(), bounded.tensors())
        assert torch.equal(again.lo, bounded.lo) and torch.equal(again.hi, bounded.hi)


def test_default_temperatures():
    """The paper's T = 1 for FLAME's first K coefficients; T = 2 for the unit-spread PCA inputs, which
    shares each frame's weight over more blendmaps (docs/PERSONALIZATION.md)."""
    assert default_temperature("softmax_first_k") == 1.0 and default_temperature("pca_softmax") == 2.0
    g = torch.Generator().manual_seed(1)
    train = torch.rand(80, 52, generator=g) ** 3
    soft, sharp = fit_pca_basis(train, k=10), fit_pca_basis(train, k=10, temperature=1.0)
    assert soft.temperature == 2.0
    torch.testing.assert_close(soft.weights(train), torch.softmax(sharp.inputs(train) / 2.0, -1))
    assert soft.weights(train).max(-1).values.mean() < sharp.weights(train).max(-1).values.mean()

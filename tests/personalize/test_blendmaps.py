"""Blend weights sum to one, follow the documented schemes, and compose as a weighted sum."""

from __future__ import annotations

import torch

from dejavu.personalize.blendmaps import BlendScheme, compose_delta, fit_pca_basis


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

"""Fixtures for the web player: small avatars with every stage, and the browser (skips without one)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dejavu.avatar import Avatar
from dejavu.head import HeadModel, load_head_assets
from dejavu.model.blend import BlendScheme, fit_pca_basis


@pytest.fixture(scope="session")
def browser():
    """Skip (with the reason) unless headless Chromium, Node and the built player are all here."""
    from dejavu.web.browser import browser_missing

    why = browser_missing()
    if why:
        pytest.skip(why)


def flame_like_head() -> HeadModel:
    """The procedural head plus pose-corrective blendshapes, as FLAME has (neck, jaw and eye joints included)."""
    assets = load_head_assets("procedural")
    J, V = len(assets.joint_names), len(assets.v_template)
    posedirs = (np.random.RandomState(1).randn(9 * (J - 1), V * 3) * 2e-3).astype(np.float32)
    return HeadModel(replace(assets, posedirs=posedirs))


def full_avatar(head: HeadModel, spec: str, size: int, kind: str = "pca_softmax", k: int = 4, seed: int = 0,
                training: torch.Tensor | None = None) -> Avatar:
    """An avatar with every part random but plausible: identity, vertex offsets, mean offsets, global delta,
    K blendmaps, a blend scheme with a training range and a pose model."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s, scale=1.0: torch.randn(*s, generator=g) * scale  # noqa: E731
    train = training if training is not None else torch.rand(30, head.n_expr, generator=g) * (1 if kind == "pca_softmax" else 2)
    if kind == "pca_softmax":
        blend = fit_pca_basis(train, k=k).with_training_range(train)
    else:
        blend = BlendScheme(kind="softmax_first_k", k=k).with_training_range(train)
    S = size
    return Avatar(head=spec, uv_size=S, shape=rnd(head.n_shape, scale=0.5), mean_offsets=rnd(13, S, S, scale=0.3),
                  global_delta=rnd(13, S, S, scale=0.1), blendmaps=rnd(k, 13, S, S, scale=0.3), blend=blend,
                  vertex_offsets=rnd(head.n_verts, 3, scale=1e-3), pose_model=rnd(6, k + 4, scale=0.02))


def parameter_vectors(head: HeadModel, n: int, seed: int = 0, lo: float = 0.0, hi: float = 1.0) -> list[dict]:
    """n random frames (expression in [lo, hi], jaw, eyes, root pose), cycling through the stages."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        out.append({"expression": (lo + (hi - lo) * torch.rand(head.n_expr, generator=g)).tolist(),
                    "jaw": (torch.randn(3, generator=g) * 0.15).tolist(),
                    "eyes": (torch.randn(6, generator=g) * 0.15).tolist(),
                    "pose": (torch.randn(3, generator=g) * 0.3).tolist(),
                    "stage": ("full", "global", "mean")[i % 3]})
    return out


@torch.no_grad()
def python_gaussians(avatar: Avatar, head: HeadModel, uvmap, p: dict) -> dict[str, np.ndarray]:
    """The reference: the AvatarModel at one parameter vector -> arrays (N, C)."""
    t = lambda k: torch.tensor(p[k], dtype=torch.float32)[None]  # noqa: E731
    g = avatar.model(head=head, uvmap=uvmap)(t("expression"), t("jaw"), t("eyes"), t("pose"), stage=p["stage"])
    return {k: getattr(g, k)[0].numpy() for k in ("means", "quats", "scales", "opacities", "colors")}

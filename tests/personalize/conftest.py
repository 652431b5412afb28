"""Fixtures for personalization tests: a tiny procedural avatar and its synthetic video."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

#: Renderer used by these tests (the numba CPU one by default; DEJAVU_TEST_BACKEND=reference to compare).
BACKEND = os.environ.get("DEJAVU_TEST_BACKEND", "auto")
S, R = 16, 32


@pytest.fixture(scope="module")
def tiny(procedural_head):
    """(head, uvmap, true mean offsets) on a 16 x 16 UV map."""
    from synthetic import known_mean_offsets

    from dejavu.gaussians.uvmap import UVGaussianMap

    uvmap = UVGaussianMap(procedural_head, S)
    return procedural_head, uvmap, known_mean_offsets(uvmap)


@pytest.fixture(scope="module")
def tiny_frames(tiny):
    from synthetic import synthetic_frames

    from dejavu.personalize.frames import add_feature_masks

    head, uvmap, true = tiny
    return add_feature_masks(synthetic_frames(head, uvmap, true, T=8, R=R, backend=BACKEND), head)


def tiny_config(**kw):
    from dejavu.personalize.config import PersonalizeConfig

    base = dict(uv_size=S, resolution=R, steps=8, batch_size=4, lpips_start=2, n_blendmaps=3, preview_every=0,
                checkpoint_every=2, render_backend=BACKEND, head="procedural", lr_decay_every=4)
    base.update(kw)
    return PersonalizeConfig(**base)

"""Reconstruction data: synthetic generation, shard round trip, batch sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavu.errors import DejavuError
from dejavu.recon.data import MultiViewSet


def test_synthetic_set_shapes_and_white_background(tiny_shards):
    _, data = tiny_shards
    assert data.images.shape == (3, 2, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.masks.shape == (3, 2, 32, 32)
    # the centre is head; wherever the mask is empty the image is the white background
    assert (data.masks[:, :, 16, 16] > 128).all()
    assert (data.images[data.masks == 0] == 255).all()
    # one expression per identity, different cameras per view
    assert np.array_equal(data.expression[:, 0], data.expression[:, 1])
    assert not np.allclose(data.pose6[:, 0], data.pose6[:, 1])


def test_shards_round_trip(tiny_shards):
    folder, data = tiny_shards
    again = MultiViewSet.load(folder)
    assert len(list(folder.glob("shard_*.npz"))) == 2
    for name in ("images", "masks", "pose6", "shape", "expression", "jaw", "n_views"):
        assert np.array_equal(getattr(again, name), getattr(data, name)), name
    assert (again.head, again.size) == ("procedural", 32)


def test_load_errors(tmp_path):
    with pytest.raises(DejavuError, match="no shard"):
        MultiViewSet.load(tmp_path)
    np.savez(tmp_path / "shard_00000.npz", images=np.zeros(1))
    with pytest.raises(DejavuError, match="not a dejavu recon data shard"):
        MultiViewSet.load(tmp_path)


def test_sample_pairs_views_within_identity(tiny_shards):
    _, data = tiny_shards
    batch = data.sample(identities=2, views=3, rng=np.random.default_rng(1))
    assert batch["input"].shape == (6, 3, 32, 32) and batch["target"].shape == (6, 32, 32, 3)
    assert batch["input"].min() >= -1 and batch["input"].max() <= 1
    assert torch.equal(batch["group"], torch.tensor([0, 0, 0, 1, 1, 1]))
    # every target is one of its identity's views, with that view's camera
    for b in range(6):
        k = int(np.flatnonzero((data.shape == batch["shape"][b].numpy()).all(1))[0])
        v = [i for i in range(2) if np.allclose(data.pose6[k, i], batch["pose6"][b].numpy())]
        assert len(v) == 1
        assert np.allclose(batch["target"][b].numpy(), data.images[k, v[0]] / 255.0, atol=1e-6)


def test_single_view_sampling_targets_the_input(tiny_shards):
    _, data = tiny_shards
    batch = data.sample(identities=3, views=1, rng=np.random.default_rng(2), pair_views=False)
    assert torch.allclose(batch["input"], batch["target"].permute(0, 3, 1, 2) * 2 - 1, atol=1e-6)

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


def test_seen_pixels_round_trip_sample_and_carry_no_loss(tiny_shards, tmp_path):
    """Real photos whose crop ran past the photo carry ``seen``: it survives shards, subsets and joins with
    sets that have none (all seen), is sampled with the target, and the loss takes no error where it is 0."""
    from dataclasses import replace

    from dejavu.recon.config import config_from_dict
    from dejavu.recon.train import Trainer, loss_terms
    from tests.recon.conftest import tiny_config

    folder, data = tiny_shards
    seen = np.full(data.masks.shape, 255, np.uint8)
    seen[..., :8, :] = 0  # the top quarter lay above every photo
    cut = replace(data, seen=seen)
    cut.save(tmp_path / "cut", per_shard=2)
    again = MultiViewSet.load(tmp_path / "cut")
    assert np.array_equal(again.seen, seen) and MultiViewSet.load(folder).seen is None  # older shards: none
    joined = MultiViewSet.concat([data, cut.subset(slice(0, 1))])
    assert joined.seen.shape == (4, 2, 32, 32) and (joined.seen[:3] == 255).all() and (joined.seen[3, :, :8] == 0).all()
    batch = cut.sample(2, 2, np.random.default_rng(0))
    assert batch["target_seen"].shape == (4, 32, 32, 1)
    assert data.sample(2, 2, np.random.default_rng(0))["target_seen"] is None
    cfg = config_from_dict(tiny_config(folder, tmp_path / "run"))
    model = Trainer(cfg, torch.device("cpu"), progress=False).model
    pred = torch.rand(4, 3, 32, 32, requires_grad=True)
    loss_terms(cfg.loss, model, torch.zeros(4, 13, 32, 32), pred, batch, None, with_view=False)["total"].backward()
    assert pred.grad[:, :, :8].abs().max() == 0 and pred.grad[:, :, 8:].abs().max() > 0


def test_photo_groups_find_person_folders_at_any_depth(tmp_path):
    """Folders holding enough images, sorted, nested or linked (a link is counted, not entered), thinned evenly."""
    import os

    from dejavu.recon.data import photo_groups

    for sub, n in (("ann", 2), ("ann/older", 3), ("bob", 1), ("cid", 2), ("cid/x.png", 0), ("eve/deep/er", 2)):
        (tmp_path / sub).mkdir(parents=True)
        for i in range(n):
            (tmp_path / sub / f"{i}.jpg").write_bytes(b"")
    (tmp_path / "bob" / "notes.txt").write_text("not an image")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "bob" / "broken.jpg")  # not a file: not counted
    os.symlink(tmp_path / "ann", tmp_path / "zed")
    names = lambda groups: [str(g.relative_to(tmp_path)) for g in groups]  # noqa: E731
    assert names(photo_groups([str(tmp_path)], 100, 2)) == ["ann", "ann/older", "cid", "eve/deep/er", "zed"]
    assert names(photo_groups([str(tmp_path)], 100, 3)) == ["ann/older"]
    assert names(photo_groups([str(tmp_path)], 3, 2)) == ["ann", "cid", "zed"]
    with pytest.raises(DejavuError, match="no folders with at least 4 images"):
        photo_groups([str(tmp_path)], 100, 4)

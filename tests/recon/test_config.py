"""Reconstruction configs: presets, JSON overrides, clear errors."""

from __future__ import annotations

import json

import pytest

from dejavu.errors import DejavuError
from dejavu.recon.config import PRESETS, config_from_dict, load_config, preset


def test_presets_exist_and_differ():
    cpu, gpu = preset("cpu-small"), preset("gpu-paper")
    assert set(PRESETS) == {"cpu-small", "gpu-paper"}
    assert (gpu.model.uv_size, gpu.data.render_size, gpu.model.base_channels) == (320, 512, 64)
    assert gpu.optim.identities_per_batch * gpu.optim.views_per_identity == 16
    assert cpu.model.uv_size % 16 == 0 and cpu.model.base_channels < 64


def test_json_round_trip_with_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"preset": "gpu-paper", "optim": {"steps": 7, "betas": [0.5, 0.9]}}))
    cfg = load_config(path)
    assert cfg.optim.steps == 7 and cfg.optim.betas == (0.5, 0.9) and cfg.model.uv_size == 320
    cfg.save(tmp_path / "resolved.json")
    again = config_from_dict(json.loads((tmp_path / "resolved.json").read_text()))
    assert again == cfg


def test_unknown_key_names_it(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"optim": {"stepz": 3}}))
    with pytest.raises(DejavuError, match="stepz"):
        load_config(path)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(DejavuError, match="no such file"):
        load_config(tmp_path / "nope.json")
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(DejavuError, match="not valid JSON"):
        load_config(tmp_path / "b.json")
    with pytest.raises(DejavuError, match="preset"):
        config_from_dict({"preset": "tpu-huge"})


@pytest.mark.parametrize("name", ["recon_cpu.json", "recon_gpu.json"])
def test_shipped_configs_load(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / name
    cfg = load_config(path)
    assert cfg.model.uv_size % 16 == 0

"""Tiny synthetic data shared by the reconstruction tests (procedural head, 32 px crops)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory):
    """A folder with 3 procedural identities x 2 views at 32 px (UV 16), and the set itself."""
    from dejavu.recon.data import generate_synthetic

    folder = tmp_path_factory.mktemp("recon_data")
    data = generate_synthetic("procedural", 3, 2, 32, 16, seed=0, chunk=3, backend="reference", progress=False)
    data.save(folder, per_shard=2)
    return folder, data


def tiny_config(data_dir, run_dir, **optim) -> dict:
    """A config dict for a few CPU steps on ``tiny_shards``."""
    return {
        "model": {"head": "procedural", "uv_size": 32, "base_channels": 4},
        "data": {"synthetic_dir": str(data_dir), "render_size": 32},
        "loss": {"lpips": 0.0},
        "optim": {"steps": 4, "lr": 3e-3, "identities_per_batch": 2, "views_per_identity": 2, **optim},
        "log": {"run_dir": str(run_dir), "log_every": 1, "preview_every": 2, "checkpoint_every": 2},
        "device": "cpu",
        "render_backend": "reference",
    }

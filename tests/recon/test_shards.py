"""Shard folders: parallel workers, resuming, lazy reading, refusing incomplete or mixed folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dejavu.errors import DejavuError
from dejavu.recon.config import config_from_dict
from dejavu.recon.data import make_batch
from dejavu.recon.dataprep import prepare, prepare_synthetic
from dejavu.recon.shards import ShardedSet, finished_units, units_for, write_shard
from tests.recon.conftest import tiny_config


def _read(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        return fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - no __iter__


def _cfg(folder, identities=3, per=2):
    d = tiny_config(folder, folder / "run")
    d["data"].update(synthetic_identities=identities, synthetic_views=2, synthetic_uv_size=16, shard_identities=per)
    return config_from_dict(d)


def test_two_workers_write_what_one_writes_and_reruns_resume(tmp_path):
    one = _cfg(tmp_path / "one")
    [report] = prepare(one)
    assert (report.units, report.items) == (2, 3)
    two = _cfg(tmp_path / "two")
    reports = [prepare_synthetic(two, worker=w, workers=2) for w in (1, 0)]
    assert [r.units for r in reports] == [1, 1]
    for u in (0, 1):  # the same contents whichever worker rendered a unit
        a, b = (_read(tmp_path / d / f"shard_{u:05d}.safetensors") for d in ("one", "two"))
        assert a[0] == b[0] and a[1].keys() == b[1].keys()
        assert all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
    again = prepare_synthetic(two, worker=0, workers=1)  # everything is there: nothing redone
    assert (again.units, again.items) == (0, 0)
    assert units_for(1, 3, 8) == [1, 4, 7]
    with pytest.raises(DejavuError, match="worker 3 of 2"):
        units_for(3, 2, 8)


def test_lazy_reads_equal_the_set_in_memory(tmp_path):
    cfg = _cfg(tmp_path)
    prepare(cfg)
    lazy = ShardedSet(tmp_path)
    whole = lazy.to_memory()
    assert len(lazy) == len(whole) == 3 and (lazy.head, lazy.size, lazy.views) == ("procedural", 32, 2)
    k, v_in, v_out = np.array([2, 0, 2, 1]), np.array([1, 0, 0, 1]), np.array([0, 1, 1, 1])
    a = make_batch(lazy, k, v_in, v_out, np.array([0, 1, 0, 2]))
    b = make_batch(whole, k, v_in, v_out, np.array([0, 1, 0, 2]))
    for name in a:
        if name == "params":
            assert all(torch.equal(x, y) for x, y in zip(a[name].kwargs().values(), b[name].kwargs().values()))
            continue
        assert (a[name] is None and b[name] is None) or torch.equal(a[name], b[name]), name
    assert a["target_seen"] is None


def test_incomplete_or_mixed_folders_are_refused(tmp_path):
    cfg = _cfg(tmp_path, identities=5)
    prepare_synthetic(cfg, worker=0, workers=2)  # units 0 and 2 of 3
    with pytest.raises(DejavuError, match="1 of 3 shards missing"):
        ShardedSet(tmp_path)
    other = _cfg(tmp_path, identities=5)
    other.seed = 7  # the training seed is not the data's: nothing to redo
    assert prepare_synthetic(other, worker=0, workers=2).units == 0
    other.data.synthetic_seed = 7
    with pytest.raises(DejavuError, match="a shard of other data"):
        prepare_synthetic(other)
    with pytest.raises(DejavuError, match="a shard of other data"):
        finished_units(tmp_path, {"source": "else"}, 3)
    (tmp_path / "shard_00001.safetensors").write_bytes(b"junk")
    with pytest.raises(DejavuError, match="not a readable safetensors shard"):
        ShardedSet(tmp_path)
    with pytest.raises(DejavuError, match="no shard_"):
        ShardedSet(tmp_path / "empty")


def test_shards_keep_seen_masks(tiny_shards, tmp_path):
    from dataclasses import replace

    _, data = tiny_shards
    seen = np.full(data.masks.shape, 255, np.uint8)
    seen[..., :8, :] = 0
    write_shard(tmp_path, 0, 2, {"x": 1}, replace(data, seen=seen).subset(slice(0, 2)))
    write_shard(tmp_path, 1, 2, {"x": 1}, data.subset(slice(2, 3)))  # no seen: all of it
    lazy = ShardedSet(tmp_path)
    got = lazy.take(np.array([0, 2]), np.array([1, 0]))["seen"]
    assert (got[0, :8] == 0).all() and (got[0, 8:] == 255).all() and (got[1] == 255).all()


def _same_shards(a, b):
    """The shard files of folders ``a`` and ``b`` hold the same arrays and metadata (byte order of the
    header may differ)."""
    names = sorted(p.name for p in a.glob("shard_*.safetensors"))
    assert names and names == sorted(p.name for p in b.glob("shard_*.safetensors"))
    for name in names:
        (meta_a, arr_a), (meta_b, arr_b) = _read(a / name), _read(b / name)
        assert meta_a == meta_b and arr_a.keys() == arr_b.keys(), name
        assert all(np.array_equal(arr_a[k], arr_b[k]) for k in arr_a), name


@pytest.mark.slow
def test_two_processes_write_what_one_writes_also_when_resuming(shared_data, tmp_path):
    """Synthetic renders and tracked photos (MediaPipe graphs reused across people in each process)."""
    import shutil

    from dejavu.recon.workers import prepare_parallel

    people = tmp_path / "people"
    for name in ("Aaron_Peirsol", "Aleksander_Kwasniewski", "Angela_Bassett"):
        shutil.copytree(shared_data / "lfw" / name, people / name)

    def cfg(folder):
        c = _cfg(tmp_path / folder, identities=5, per=1)
        c.data.real_dirs, c.data.real_cache = [str(people)], str(tmp_path / folder / "real")
        c.data.video_frames_per_identity = 2
        return c

    one = prepare_parallel(cfg("one"), processes=1, progress=False)
    assert [(r.source, r.units, r.items) for r in one] == [("synthetic", 5, 5), ("real", 3, 6)]
    two = cfg("two")
    prepare_synthetic(two, worker=0, workers=2)  # an interrupted run: units 0, 2 and 4 of 5 are there
    reports = prepare_parallel(two, processes=2, progress=False)
    assert sorted(r.process for r in reports) == [0, 0, 1, 1]
    done = {s: [(r.units, r.items) for r in reports if r.source == s] for s in ("synthetic", "real")}
    assert sum(u for u, _ in done["synthetic"]) == 2 and sum(n for _, n in done["real"]) == 6
    for sub in ("", "real"):
        _same_shards(tmp_path / "one" / sub, tmp_path / "two" / sub)


@pytest.mark.slow
def test_prepare_command_with_two_processes(tmp_path, capsys):
    import json

    from dejavu.cli import main

    d = tiny_config(tmp_path / "shards", tmp_path / "run")
    d["data"].update(synthetic_identities=3, synthetic_views=2, synthetic_uv_size=16, shard_identities=1)
    (tmp_path / "c.json").write_text(json.dumps(d))
    assert main(["prepare", "recon", "--config", str(tmp_path / "c.json"), "--processes", "2",
                 "--json", str(tmp_path / "report.json")]) == 0
    assert "synthetic: 3 identities in 3 new shards" in capsys.readouterr().out
    assert len(ShardedSet(tmp_path / "shards")) == 3
    report = json.loads((tmp_path / "report.json").read_text())
    workers = report["workers"]
    assert report["processes"] == 2 and sorted(w["process"] for w in workers) == [0, 1]
    assert sum(w["items"] for w in workers) == 3 and all(w["startup_seconds"] >= 0 for w in workers)
    assert all(w["finished_at"] >= w["started_at"] for w in workers)
    assert main(["prepare", "recon", "--config", str(tmp_path / "c.json"), "--nodes", "2", "--node", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dejavu prepare: error: --processes 1 --node 2 --nodes 2") and "\n" not in err


def test_training_reads_prepared_real_shards_without_tracking_again(tiny_shards, tmp_path):
    """Real units already in the cache (as another worker or machine left them) are used as they are."""
    from dataclasses import replace

    from dejavu.io import write_image
    from dejavu.recon.dataprep import real_groups, real_recipe
    from dejavu.recon.train import Trainer

    syn_dir, data = tiny_shards
    for person in ("ann", "bob", "cid"):  # photo folders: never opened, their shards exist
        for i in range(2):
            write_image(tmp_path / "people" / person / f"{person}_{i}.png", np.full((8, 8, 3), 0.5))
    d = tiny_config(syn_dir, tmp_path / "run", real_batch_size=2)
    d["data"].update(real_dirs=[str(tmp_path / "people")], real_cache=str(tmp_path / "real"), shard_identities=2,
                     video_frames_per_identity=2)
    cfg = config_from_dict(d)
    groups = real_groups(cfg)
    assert [g.name for g in groups] == ["ann", "bob", "cid"]
    seen = np.full(data.masks.shape, 255, np.uint8)
    seen[..., :4, :] = 0
    real = replace(data, seen=seen)
    write_shard(tmp_path / "real", 0, 2, real_recipe(cfg, groups), real.subset(slice(0, 2)))
    write_shard(tmp_path / "real", 1, 2, real_recipe(cfg, groups), real.subset(slice(2, 3)))
    trainer = Trainer(cfg, torch.device("cpu"), progress=False)
    assert isinstance(trainer.real, ShardedSet) and len(trainer.real) == 3
    assert not (tmp_path / "real" / "tracks").exists()
    terms, batch, _ = trainer.train_step(trainer.real, 1e-4, real=True)
    assert batch["input"].shape == (2, 3, 32, 32) and (batch["target_seen"][:, :4] == 0).all()
    assert np.isfinite(terms["total"]) and trainer.positions["real"] == 2


def test_cpu_workers_render_gpu_configs_on_the_cpu(tmp_path):
    from dejavu.recon.config import preset
    from dejavu.recon.dataprep import render_backend

    gpu = preset("gpu-paper")
    assert (render_backend(gpu, "cpu"), render_backend(gpu, "cuda:1")) == ("auto", "cuda")
    assert render_backend(_cfg(tmp_path), "cpu") == "reference"

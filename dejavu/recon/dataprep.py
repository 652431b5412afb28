"""Preparing the reconstruction training data with many workers: synthetic renders and tracked photos.

Both sources become shard folders (``dejavu.recon.shards``): ``data.synthetic_dir`` and
``data.real_cache``. The work is cut into units of ``data.shard_identities`` identities (synthetic:
identities ``[u n, (u + 1) n)`` rendered from the seed sequence ``(data.synthetic_seed, u)``; real: the u-th group of
``n`` person folders of the sorted, thinned list, then one unit per video). Worker w of W does the units
w, w + W, ... and skips finished ones, so

- ``processes`` workers on one machine (:func:`prepare_parallel`, spawned processes), or
- ``nodes`` machines with ``processes`` workers each (worker ids ``node * processes + p``), or
- the ranks of a training job (:func:`prepare_for_rank`, before the first step)

fill the same folders without racing, and a rerun finishes an interrupted preparation.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dejavu.errors import DejavuError
from dejavu.head import load_head
from dejavu.recon.config import ReconConfig, config_from_dict
from dejavu.recon.data import (
    DATA_FOV_DEG,
    MultiViewSet,
    generate_synthetic,
    photo_groups,
    track_group,
    track_video_identities,
)
from dejavu.recon.distributed import set_cpu_threads
from dejavu.recon.shards import finished_units, has_shards, units_for, write_shard

log = logging.getLogger(__name__)

SOURCES = ("synthetic", "real")


@dataclass
class WorkerReport:
    """What one worker did: ``items`` (synthetic identities or photos tracked) in ``units`` units,
    ``seconds`` of work after start-up, ``cpu_seconds`` of its own CPU time over the same span."""

    source: str
    worker: int
    units: int
    items: int
    seconds: float
    cpu_seconds: float


# ---------------------------------------------------------------------------------------------
# Recipes and units
# ---------------------------------------------------------------------------------------------

def synthetic_recipe(cfg: ReconConfig) -> dict:
    """Everything that decides the synthetic shards' contents (a shard records it)."""
    d = cfg.data
    return {"source": "synthetic", "head": cfg.model.head, "identities": d.synthetic_identities,
            "views": d.synthetic_views, "size": d.render_size, "uv_size": d.synthetic_uv_size, "seed": d.synthetic_seed,
            "max_yaw_deg": d.max_yaw_deg, "max_pitch_deg": d.max_pitch_deg, "per_shard": d.shard_identities}


def real_groups(cfg: ReconConfig) -> list[Path]:
    """The person folders the real data tracks (sorted, thinned evenly to ``real_max_people``)."""

    d = cfg.data
    return photo_groups(d.real_dirs, d.real_max_people, d.real_min_photos) if d.real_dirs else []


def real_recipe(cfg: ReconConfig, groups: list[Path]) -> dict:
    d = cfg.data
    return {"source": "real", "head": cfg.model.head, "size": d.render_size, "views": d.video_frames_per_identity,
            "people": [str(g) for g in groups], "videos": list(d.video_paths), "per_shard": d.shard_identities,
            "fov_deg": DATA_FOV_DEG}


def render_backend(cfg: ReconConfig, device: str) -> str:
    """The config's renderer where it fits the worker's device: gpu-paper says cuda, which a CPU worker
    cannot run, so CPU workers take the CPU backend instead ("auto"). GPU and CPU rasterizers differ in
    the last bits, so keep one kind of worker per folder when the shards must not depend on who rendered."""
    if not device.startswith("cuda") and cfg.render_backend == "cuda":
        return "auto"
    return cfg.render_backend


def _n_units(n: int, per: int) -> int:
    return math.ceil(n / per)


def _empty_set(cfg: ReconConfig) -> MultiViewSet:
    """No identities (a unit whose folders held no trackable face): shapes only."""

    head = load_head(cfg.model.head, torch.device("cpu"))
    V, H = cfg.data.video_frames_per_identity, cfg.data.render_size
    return MultiViewSet(images=np.zeros((0, V, H, H, 3), np.uint8), masks=np.zeros((0, V, H, H), np.uint8),
                        pose6=np.zeros((0, V, 6), np.float32), shape=np.zeros((0, head.n_shape), np.float32),
                        expression=np.zeros((0, V, head.n_expr), np.float32), jaw=np.zeros((0, V, 3), np.float32),
                        n_views=np.zeros(0, np.int32), head=cfg.model.head, size=H)


# ---------------------------------------------------------------------------------------------
# One worker
# ---------------------------------------------------------------------------------------------

def prepare_synthetic(cfg: ReconConfig, worker: int = 0, workers: int = 1, device: str = "cpu") -> WorkerReport:
    """Render worker ``worker``'s unfinished synthetic units into ``data.synthetic_dir``."""

    d = cfg.data
    per, recipe = d.shard_identities, synthetic_recipe(cfg)
    units = _n_units(d.synthetic_identities, per)
    folder = Path(d.synthetic_dir).expanduser()
    done = finished_units(folder, recipe, units)
    t0, c0, items, n_units = time.perf_counter(), time.process_time(), 0, 0
    for u in units_for(worker, workers, units):
        if u in done:
            continue
        n = min(per, d.synthetic_identities - u * per)
        data = generate_synthetic(cfg.model.head, n, d.synthetic_views, d.render_size, d.synthetic_uv_size,
                                  seed=(d.synthetic_seed, u), max_yaw_deg=d.max_yaw_deg, max_pitch_deg=d.max_pitch_deg,
                                  backend=render_backend(cfg, device), device=device, progress=False)
        write_shard(folder, u, units, recipe, data)
        items, n_units = items + n, n_units + 1
    return WorkerReport("synthetic", worker, n_units, items, time.perf_counter() - t0, time.process_time() - c0)


def prepare_real(cfg: ReconConfig, worker: int = 0, workers: int = 1) -> WorkerReport:
    """Track worker ``worker``'s unfinished real units (person folders, videos) into ``data.real_cache``
    (tracking results under ``real_cache/tracks``, reused when a unit is redone)."""

    d = cfg.data
    groups = real_groups(cfg)
    per, recipe = d.shard_identities, real_recipe(cfg, groups)
    photo_units = _n_units(len(groups), per)
    units = photo_units + len(d.video_paths)
    folder = Path(d.real_cache).expanduser()
    tracks = folder / "tracks"
    done = finished_units(folder, recipe, units)
    V = d.video_frames_per_identity
    t0, c0, items, n_units = time.perf_counter(), time.process_time(), 0, 0
    for u in units_for(worker, workers, units):
        if u in done:
            continue
        if u < photo_units:
            sets = [s for g in groups[u * per:(u + 1) * per]
                    if (s := track_group(g, cfg.model.head, d.render_size, V, tracks)) is not None]
        else:
            sets = [track_video_identities(d.video_paths[u - photo_units], cfg.model.head, d.render_size, V, tracks)]
        data = MultiViewSet.concat(sets) if sets else _empty_set(cfg)
        write_shard(folder, u, units, recipe, data)
        items, n_units = items + int(data.n_views.sum()), n_units + 1
    return WorkerReport("real", worker, n_units, items, time.perf_counter() - t0, time.process_time() - c0)


def prepare(cfg: ReconConfig, sources: tuple[str, ...] = SOURCES, worker: int = 0, workers: int = 1,
            device: str = "cpu") -> list[WorkerReport]:
    """Worker ``worker`` of ``workers``: its share of ``sources`` (real only when configured)."""
    reports = []
    if "synthetic" in sources:
        reports.append(prepare_synthetic(cfg, worker, workers, device))
    if "real" in sources and (cfg.data.real_dirs or cfg.data.video_paths):
        reports.append(prepare_real(cfg, worker, workers))
    return reports


def _worker_main(cfg_dict: dict, sources: tuple[str, ...], worker: int, workers: int,
                 device: str = "cpu") -> list[WorkerReport]:
    """Entry point of a spawned worker process: one thread each (processes are the parallelism)."""

    logging.basicConfig(level=logging.WARNING)
    cfg = config_from_dict(cfg_dict)
    set_cpu_threads(max(1, cfg.cpu_threads))
    return prepare(cfg, sources, worker, workers, device)


# ---------------------------------------------------------------------------------------------
# Many workers
# ---------------------------------------------------------------------------------------------

def _shard_count(cfg: ReconConfig, sources: tuple[str, ...]) -> int:
    folders = [cfg.data.synthetic_dir] * ("synthetic" in sources) + [cfg.data.real_cache] * ("real" in sources)
    return sum(len(list(Path(f).expanduser().glob("shard_*.safetensors"))) for f in folders)


def prepare_parallel(cfg: ReconConfig, sources: tuple[str, ...] = SOURCES, processes: int = 1, node: int = 0,
                     nodes: int = 1, progress: bool = True, device: str = "cpu") -> list[WorkerReport]:
    """This machine's share (``node`` of ``nodes``) of the data, in ``processes`` spawned worker processes.

    ``device`` "cuda": worker p renders the synthetic identities on GPU p mod (GPUs on this machine);
    tracking stays on the CPU. Progress counts the shards in the output folders (every worker's,
    including other machines' on a shared folder). Returns each worker's report.
    """
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    from tqdm import tqdm

    if processes < 1 or nodes < 1 or not 0 <= node < nodes:
        raise DejavuError(f"--processes {processes} --node {node} --nodes {nodes}: expected processes >= 1 "
                          "and 0 <= node < nodes")
    workers = processes * nodes
    start = _shard_count(cfg, sources)
    bar = tqdm(desc="data shards written", unit="shard", disable=not progress)
    ctx = multiprocessing.get_context("spawn")  # no fork: torch / numba threads do not survive it
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
        futures = [pool.submit(_worker_main, cfg.to_dict(), tuple(sources), node * processes + p, workers,
                               f"cuda:{p % gpus}" if gpus else "cpu") for p in range(processes)]
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=1.0, return_when=FIRST_EXCEPTION)
            bar.n = _shard_count(cfg, sources) - start
            bar.refresh()
            for f in finished:
                if f.exception() is not None:
                    for other in pending:
                        other.cancel()
                    bar.close()
                    raise f.exception()
        reports = [r for f in futures for r in f.result()]
    bar.close()
    return reports


def prepare_for_rank(cfg: ReconConfig, rank: int, world: int, device: str = "cpu") -> None:
    """A training rank's share of whatever data is missing (the trainer then waits for every rank)."""

    d = cfg.data
    sources = []
    if not any(Path(d.synthetic_dir).expanduser().glob("shard_*.npz")):
        sources.append("synthetic")
    if (d.real_dirs or d.video_paths) and not any(Path(d.real_cache).expanduser().glob("shard_*.npz")):
        sources.append("real")
    if sources and rank == 0:
        missing = [s for s in sources if not has_shards(d.synthetic_dir if s == "synthetic" else d.real_cache)]
        if missing:
            log.info("preparing %s data across %d rank(s) (dejavu prepare recon does this ahead of training)",
                     " and ".join(missing), world)
    prepare(cfg, tuple(sources), rank, world, device)

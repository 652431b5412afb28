"""Preparing the reconstruction training data with many workers: synthetic renders and tracked photos.

Both sources become shard folders (``dejavu.recon.shards``): ``data.synthetic_dir`` and
``data.real_cache``. The work is cut into units of ``data.shard_identities`` identities (synthetic:
identities ``[u n, (u + 1) n)`` rendered from the seed sequence ``(data.synthetic_seed, u)``; real: the u-th group of
``n`` person folders of the sorted, thinned list, then one unit per video). Share w of W is the units
w, w + W, ... (:func:`dejavu.recon.shards.units_for`); finished units are skipped, so

- ``nodes`` machines, each with its share (``--node m --nodes M``) split next-free among its
  ``processes`` worker processes (:func:`prepare_parallel`, ``dejavu.recon.workers``), or
- the ranks of a training job, one share each (:func:`prepare_for_rank`, before the first step)

fill the same folders without racing, and a rerun finishes an interrupted preparation. A worker builds
its tools once (head model, UV map, MediaPipe graphs) and reuses them for every unit.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from dejavu.head import load_head, load_head_assets
from dejavu.recon.config import ReconConfig, config_from_dict
from dejavu.recon.data import (
    DATA_FOV_DEG,
    MultiViewSet,
    generate_synthetic,
    photo_groups,
    synthetic_head,
    track_group,
    track_video_identities,
)
from dejavu.recon.distributed import set_cpu_threads
from dejavu.recon.shards import finished_units, has_shards, units_for, write_shard
from dejavu.recon.workers import SOURCES, UnitClaims
from dejavu.render import config as render_config
from dejavu.track.graphs import MediaPipeGraphs

log = logging.getLogger(__name__)


@dataclass
class WorkerReport:
    """What one worker did for one source: ``worker`` the share it worked on (a machine's, or a training
    rank's), ``process`` which of the machine's processes it was; ``items`` (synthetic identities or
    photos tracked) in ``units`` new shards; ``startup_seconds`` from its launch (or the end of its
    previous source) until its tools were built and the first unit could start; ``seconds`` of work
    after that and ``cpu_seconds``, its process's CPU time over the same span; ``started_at`` /
    ``finished_at``: that span as Unix times."""

    source: str
    worker: int
    process: int
    units: int
    items: int
    startup_seconds: float
    seconds: float
    cpu_seconds: float
    started_at: float
    finished_at: float


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

def _claimed(share: list[int], done: set[int], claims: UnitClaims | None, source: str) -> Iterator[int]:
    """The unfinished units of ``share`` this worker does: all of them, or with ``claims`` the next
    unclaimed one each time (the processes holding the same claims split ``share`` next-free)."""
    if claims is None:
        yield from (u for u in share if u not in done)
        return
    while (i := claims.claim(source)) < len(share):
        if share[i] not in done:
            yield share[i]


def _run_units(source: str, worker: int, process: int, units: Iterator[int], launched: float,
               do_unit: Callable[[int], int]) -> WorkerReport:
    """``do_unit(u)`` (-> items) for each unit, timed from now (the worker's tools are built)."""
    started, c0 = time.time(), time.process_time()
    n_units = items = 0
    for u in units:
        items += do_unit(u)
        n_units += 1
    finished = time.time()
    return WorkerReport(source, worker, process, n_units, items, round(started - launched, 3),
                        round(finished - started, 3), round(time.process_time() - c0, 3), started, finished)


def prepare_synthetic(cfg: ReconConfig, worker: int = 0, workers: int = 1, device: str = "cpu",
                      claims: UnitClaims | None = None, process: int = 0,
                      launched: float | None = None) -> WorkerReport:
    """Render the unfinished synthetic units of share ``worker`` of ``workers`` into ``data.synthetic_dir``
    (with ``claims``: those this process claims). ``launched``: when this worker began (Unix time; now)."""

    launched = time.time() if launched is None else launched
    d = cfg.data
    per, recipe = d.shard_identities, synthetic_recipe(cfg)
    units = _n_units(d.synthetic_identities, per)
    folder = Path(d.synthetic_dir).expanduser()
    todo = _claimed(units_for(worker, workers, units), finished_units(folder, recipe, units), claims, "synthetic")
    synthetic_head(cfg.model.head, d.synthetic_uv_size, device)  # head, UV map, texel masks: once per worker

    def unit(u: int) -> int:
        n = min(per, d.synthetic_identities - u * per)
        data = generate_synthetic(cfg.model.head, n, d.synthetic_views, d.render_size, d.synthetic_uv_size,
                                  seed=(d.synthetic_seed, u), max_yaw_deg=d.max_yaw_deg, max_pitch_deg=d.max_pitch_deg,
                                  backend=render_backend(cfg, device), device=device, progress=False)
        write_shard(folder, u, units, recipe, data)
        return n

    return _run_units("synthetic", worker, process, todo, launched, unit)


def prepare_real(cfg: ReconConfig, worker: int = 0, workers: int = 1, claims: UnitClaims | None = None,
                 process: int = 0, launched: float | None = None) -> WorkerReport:
    """Track the unfinished real units (person folders, videos) of share ``worker`` of ``workers`` into
    ``data.real_cache`` (tracking results under ``real_cache/tracks``, reused when a unit is redone).
    One set of MediaPipe graphs serves every person and video of the worker."""

    launched = time.time() if launched is None else launched
    d = cfg.data
    groups = real_groups(cfg)
    per, recipe = d.shard_identities, real_recipe(cfg, groups)
    photo_units = _n_units(len(groups), per)
    units = photo_units + len(d.video_paths)
    folder = Path(d.real_cache).expanduser()
    tracks = folder / "tracks"
    todo = _claimed(units_for(worker, workers, units), finished_units(folder, recipe, units), claims, "real")
    V = d.video_frames_per_identity
    load_head_assets(cfg.model.head)
    with MediaPipeGraphs() as graphs:
        graphs.detector(video=False), graphs.segmenter()  # built before the first unit, like the head

        def unit(u: int) -> int:
            if u < photo_units:
                sets = [s for g in groups[u * per:(u + 1) * per]
                        if (s := track_group(g, cfg.model.head, d.render_size, V, tracks, graphs)) is not None]
            else:
                sets = [track_video_identities(d.video_paths[u - photo_units], cfg.model.head, d.render_size, V,
                                               tracks, graphs=graphs)]
            data = MultiViewSet.concat(sets) if sets else _empty_set(cfg)
            write_shard(folder, u, units, recipe, data)
            return int(data.n_views.sum())

        return _run_units("real", worker, process, todo, launched, unit)


def prepare(cfg: ReconConfig, sources: tuple[str, ...] = SOURCES, worker: int = 0, workers: int = 1,
            device: str = "cpu", claims: UnitClaims | None = None, process: int = 0,
            launched: float | None = None) -> list[WorkerReport]:
    """Worker ``worker`` of ``workers``: its share of ``sources`` (real only when configured); with
    ``claims``, the part of it that this process (``process`` of the machine) claims."""
    reports = []
    launched = time.time() if launched is None else launched
    if "synthetic" in sources:
        reports.append(prepare_synthetic(cfg, worker, workers, device, claims, process, launched))
        launched = reports[-1].finished_at
    if "real" in sources and (cfg.data.real_dirs or cfg.data.video_paths):
        reports.append(prepare_real(cfg, worker, workers, claims, process, launched))
    return reports


def run_worker(cfg_dict: dict, sources: tuple[str, ...], node: int, nodes: int, process: int, claims: UnitClaims,
               device: str, threads: int, launched: float) -> list[WorkerReport]:
    """Process ``process`` of ``dejavu.recon.workers.prepare_parallel`` (0: the calling one, whose thread
    settings are restored afterwards): ``threads`` torch / numba threads, then the units of this
    machine's share (``node`` of ``nodes``) that it claims. ``device`` "cuda": GPU process mod GPUs."""
    if process > 0:
        logging.basicConfig(level=logging.WARNING)
    if device.startswith("cuda"):
        device = f"cuda:{process % max(1, torch.cuda.device_count())}"
    saved = torch.get_num_threads(), render_config.CPU_THREADS
    set_cpu_threads(threads)
    try:
        return prepare(config_from_dict(cfg_dict), sources, node, nodes, device, claims, process, launched)
    finally:
        torch.set_num_threads(saved[0])
        render_config.CPU_THREADS = saved[1]


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

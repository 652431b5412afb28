"""What the ``dejavu bench`` targets share: timings (wall and CPU), the machine record, a network-free
avatar to time, and writing the result as JSON."""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from dejavu.avatar import Avatar
from dejavu.gaussians import channels as ch
from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.head import load_head
from dejavu.io import write_json


def flat_builtin_avatar(uv_size: int = 64):
    """A network-free avatar on the built-in head: uniform grey, opaque, texel-sized Gaussians (timing only):
    7.8 mm at UV 64, shrinking with the texel spacing (1 / S) as a trained avatar's do (UV 256 with UV 64's
    sizes rendered 4.4x slower than a sized avatar)."""
    head = load_head("builtin")
    off = torch.zeros(ch.N_CHANNELS, uv_size, uv_size)
    off[ch.LOG_SCALE], off[ch.OPACITY], off[ch.COLOR] = 3.5 - math.log(uv_size / 64), 2.0, 3.0
    return Avatar(head="builtin", uv_size=uv_size, shape=torch.zeros(head.n_shape),
                  mean_offsets=off * UVGaussianMap(head, uv_size).mask.float())


@dataclass
class Timing:
    """Seconds per call: wall clock and this process's CPU time (all its threads).

    On a machine shared with other jobs, wall time inflates while CPU time stays put; report both.
    """

    wall: list[float]
    cpu: list[float]

    @property
    def wall_median(self) -> float:
        return median(self.wall)

    @property
    def cpu_median(self) -> float:
        return median(self.cpu)


def time_alternating(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, Timing]:
    """Time ``repeats`` rounds of calling each of ``fns`` in turn (after ``warmup`` untimed rounds), so a
    machine's varying load falls on every variant alike; a Timing per name."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {name: Timing(wall[name], cpu[name]) for name in fns}


def median(values: list[float]) -> float:
    """Median of a non-empty list."""
    return float(statistics.median(values))


def machine_info() -> dict:
    """What the numbers were measured on: CPU, cores, load, library versions, GPU if any."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["load_average_1m"] = os.getloadavg()[0]
    except OSError:
        info["load_average_1m"] = None
    try:
        import numba

        info["numba"] = numba.__version__
        info["numba_threads"] = numba.get_num_threads()
    except ImportError:
        info["numba"] = None
    return info


def finish(result: dict, json_path: str | None) -> None:
    """Write ``result`` atomically as JSON when asked and say where it went."""
    if json_path:
        write_json(json_path, result)
        print(f"wrote {json_path}")

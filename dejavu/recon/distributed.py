"""Process-level helpers for training on several processes: who am I, the process group, rank checks.

``torchrun`` (``python -m torch.distributed.run``) starts one process per device and tells each its
place in the environment (RANK, WORLD_SIZE, LOCAL_RANK); :class:`DistInfo` reads it. With one process
none of this does anything. The group is gloo on CPU and NCCL on CUDA.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch

from dejavu.errors import DejavuError
from dejavu.render import config as render_config


@dataclass(frozen=True)
class DistInfo:
    """This process's rank among ``world`` processes and its device index on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @staticmethod
    def from_env() -> DistInfo:
        """What torchrun set (RANK, WORLD_SIZE, LOCAL_RANK); one process when unset."""
        try:
            return DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                            int(os.environ.get("LOCAL_RANK", "0")))
        except ValueError as exc:
            raise DejavuError(f"RANK / WORLD_SIZE / LOCAL_RANK: not integers ({exc})") from None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def tag(self) -> str:
        """'rank R/W: ' under several processes, '' alone: the prefix of every error line."""
        return f"rank {self.rank}/{self.world}: " if self.distributed else ""


def init_group(dist: DistInfo, device: torch.device) -> None:
    """Join the process group (gloo on CPU, NCCL on CUDA) when there are several processes."""
    if dist.distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")


def leave_group() -> None:
    """Tear the group down (the CLI leaves with os._exit, so nothing else would)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(dist: DistInfo) -> None:
    if dist.distributed:
        torch.distributed.barrier()


def set_cpu_threads(n: int) -> None:
    """Use ``n`` threads in torch and in the numba renderer (several processes on one machine: 1 each)."""

    torch.set_num_threads(n)
    render_config.CPU_THREADS = n  # read by the numba backend at each call


def fingerprint(module: torch.nn.Module) -> int:
    """63-bit hash of the bytes of ``module``'s parameters and buffers (equal iff the weights are, barring
    collisions). Exact: copies of bit-identical weights hash alike on any device."""
    h = hashlib.blake2b(digest_size=8)
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return int.from_bytes(h.digest(), "little") >> 1


def check_in_sync(dist: DistInfo, module: torch.nn.Module, step: int, *counters: int) -> None:
    """Raise DejavuError unless every rank holds the same weights (and the same ``counters``, e.g. data
    positions) at ``step``. DDP keeps ranks identical by construction; this is the proof, and it catches
    a rank that loaded another checkpoint or silently skipped a step."""
    if not dist.distributed:
        return
    mine = torch.tensor([fingerprint(module), step, *counters], dtype=torch.int64)
    if torch.distributed.get_backend() == "nccl":
        mine = mine.cuda()
    every = [torch.zeros_like(mine) for _ in range(dist.world)]
    torch.distributed.all_gather(every, mine)
    bad = [r for r, t in enumerate(every) if not torch.equal(t, every[0])]
    if bad:
        raise DejavuError(f"ranks diverged at step {step}: rank(s) {bad} hold other weights or counters than rank 0 "
                          f"(fingerprint, step, positions: {every[0].tolist()} vs {every[bad[0]].tolist()})")

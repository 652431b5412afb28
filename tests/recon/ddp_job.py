"""What each rank runs under ``torchrun --nproc_per_node 2`` in tests/recon/test_distributed.py.

    python -m torch.distributed.run --nproc_per_node 2 tests/recon/ddp_job.py MODE CONFIG OUT

MODE ``train``: the DDP checks, results written to OUT/result_rank{R}.json (asserted by the test):
  1. one DDP step (per-rank batch b) against a one-process step with batch 2b (rank 0 runs it);
  2. weights checked identical on both ranks after every step (``log.sync_check_every`` = 1);
  3. only rank 0 writes: each rank is given its own run_dir and rank 1's must stay absent;
  4. 2 steps + ``--resume`` to 4 against 4 uninterrupted steps, bit for bit;
  5. a perturbed rank is caught by the sync check.
MODE ``fail``: the real CLI (``dejavu train recon``) where rank 1 fails at step 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from dejavu.errors import DejavuError
from dejavu.recon.config import load_config
from dejavu.recon.distributed import DistInfo, leave_group
from dejavu.recon.train import Trainer, _lr_at

INJECTED = "injected failure: synthetic shard unreadable"


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.net.state_dict().items()}


def _with(cfg_path: str, run_dir: Path, **optim):
    cfg = load_config(cfg_path)
    cfg.log.run_dir = str(run_dir)
    for k, v in optim.items():
        setattr(cfg.optim, k, v)
    return cfg


def train_checks(cfg_path: str, out: Path) -> dict:
    dist = DistInfo.from_env()
    cpu = torch.device("cpu")
    res: dict = {"rank": dist.rank, "world": dist.world}

    # 1 + 3: one DDP step, then the same first step in one process with the whole global batch
    own_dir = out / ("A" if dist.rank == 0 else f"A_rank{dist.rank}")
    ddp = Trainer(_with(cfg_path, own_dir), cpu, progress=False)
    ddp.run(steps=1)
    grads = [p.grad.detach().clone() for p in ddp.model.net.parameters()]
    after_one = _state(ddp)
    if dist.rank == 0:
        cfg = _with(cfg_path, out / "single")
        cfg.optim.identities_per_batch *= dist.world
        single = Trainer(cfg, cpu, progress=False, dist=DistInfo())
        terms = single.train_step(single.synthetic, _lr_at(cfg, 0), real=False)[0]
        res["loss_single"] = terms["total"]
        with open(own_dir / "scalars.csv") as fh:  # what rank 0 logged for step 1: the mean over both ranks
            res["loss_logged"] = float(fh.read().splitlines()[1].split(",")[4])
        g1 = [p.grad for p in single.model.net.parameters()]
        res["grad_max_abs_diff"] = max(float((a - b).abs().max()) for a, b in zip(grads, g1))
        res["grad_max_abs"] = max(float(b.abs().max()) for b in g1)
        # Adam's first step is lr * g / (|g| + eps): elements with |g| near the gradients' float error
        # may move differently; everywhere else the weights must agree to a fraction of lr
        params = dict(single.model.net.named_parameters())
        res["weight_max_abs_diff"] = max(float(((after_one[k] - p).abs() * (p.grad.abs() > 1e-4)).max())
                                         for k, p in params.items())
        res["weights_compared"] = sum(int((p.grad.abs() > 1e-4).sum()) for p in params.values())
        res["weights_total"] = sum(p.numel() for p in params.values())
        res["lr"] = _lr_at(cfg, 0)
    # 2: three more steps, every one followed by the all-ranks weight check (sync_check_every = 1)
    ddp.run(steps=4)
    res["steps_checked"] = ddp.step
    res["own_dir_files"] = sorted(str(p.relative_to(own_dir)) for p in own_dir.rglob("*")) if own_dir.exists() else []

    # 4: resume under torchrun continues bit-exactly
    Trainer(_with(cfg_path, out / "B"), cpu, progress=False).run(steps=2)
    resumed = Trainer(_with(cfg_path, out / "B"), cpu, resume=True, progress=False)
    res["resumed_at"] = resumed.step
    resumed.run(steps=4)
    straight = Trainer(_with(cfg_path, out / "C"), cpu, progress=False)
    straight.run(steps=4)
    a, b = _state(resumed), _state(straight)
    res["resume_bit_exact"] = all(torch.equal(a[k], b[k]) for k in a)
    res["resume_positions"] = [resumed.positions, straight.positions]

    # 5: a rank with other weights is caught
    if dist.rank == 1:
        with torch.no_grad():
            next(straight.model.net.parameters()).view(-1)[0] += 1e-6
    try:
        straight.check_in_sync()
        res["divergence_caught"] = False
    except DejavuError as exc:
        res["divergence_caught"] = "diverged" in str(exc)
    return res


def fail(cfg_path: str) -> int:
    """The CLI with rank 1 failing at its second step."""
    from dejavu.cli import main

    if DistInfo.from_env().rank == 1:
        original = Trainer.train_step

        def failing(self, data, lr, real):
            if self.step == 1:
                raise DejavuError(INJECTED)
            return original(self, data, lr, real)

        Trainer.train_step = failing
    return main(["train", "recon", "--config", cfg_path])


def _exit(code: int) -> None:
    """Leave without running C++ static destructors, as the CLI does: a thread of torch's or numba's
    still joinable at interpreter shutdown aborts the process ("terminate called without an active
    exception") in about 1 run in 10, after all the work is done and written."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    mode, cfg_path, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if mode == "train":
        result = train_checks(cfg_path, out)
        leave_group()
        (out / f"result_rank{result['rank']}.json").write_text(json.dumps(result))
        _exit(0)
    sys.stdout.flush()
    _exit(fail(cfg_path))

"""Training the reconstruction network (paper section 3.3 and 4.1).

Each step: a synthetic multi-view batch (random input/target view pairing within each identity,
render + regularisers + view consistency) at ``lr``, then, when real photos are configured, a real
single-view batch at ``lr * real_lr_scale`` without view consistency. Batched; CPU or CUDA; DDP when
launched by torchrun (WORLD_SIZE > 1): every rank trains on its own part of each global batch
(``dejavu.recon.sampler``), gradients are averaged, rank 0 alone logs and saves, and the ranks prove
they hold the same weights every ``log.sync_check_every`` steps. Outputs in ``cfg.log.run_dir``:
``config.json`` (resolved), ``checkpoint.pt`` (resume), ``scalars.csv``, ``previews/step_*.png``
(input | render | target per row) and ``weights.safetensors`` (what ``dejavu reconstruct`` loads).
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dejavu.device import resolve_device
from dejavu.errors import DejavuError
from dejavu.gaussians import channels as ch
from dejavu.gaussians.channels import LOG_SCALE, XYZ
from dejavu.gaussians.coverage import normals_and_spacing
from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.head import load_head
from dejavu.io import atomic_path, write_image
from dejavu.losses import fill_unseen, position_regularizer, render_loss_terms, scale_regularizer, view_consistency
from dejavu.metrics.lpips import get_lpips
from dejavu.recon.config import ReconConfig, config_from_dict
from dejavu.recon.data import MultiViewSet, make_batch
from dejavu.recon.dataprep import prepare_for_rank
from dejavu.recon.distributed import DistInfo, barrier, check_in_sync, init_group, leave_group, set_cpu_threads
from dejavu.recon.network import ReconNet
from dejavu.recon.sampler import plan_batch, rank_part
from dejavu.recon.shards import ShardedSet
from dejavu.render.camera import intrinsics, pose6_to_world_to_cam

log = logging.getLogger(__name__)

SCALARS = ("step", "split", "seconds", "lr", "total", "l1", "ssim", "lpips", "position", "scale", "view")
WEIGHTS_FORMAT = "dejavu-recon-weights"


# ---------------------------------------------------------------------------------------------
# Model pieces shared with prediction
# ---------------------------------------------------------------------------------------------

@dataclass
class ReconModel:
    """The network with the head model and UV map it was trained on."""

    net: torch.nn.Module
    head: torch.nn.Module
    uvmap: torch.nn.Module
    head_spec: str

    def identity_position_map(self, shape: torch.Tensor) -> torch.Tensor:
        """UV position map (B, 3, S, S) of the identity mesh (neutral expression, closed jaw) for shape (B, Ns)."""
        return self.uvmap.position_map(self.head(shape=shape, batch_size=shape.shape[0]))

    def offsets(self, image: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [-1, 1] + shape (B, Ns) -> offsets (B, 13, S, S), network units."""
        return self.net(image, self.identity_position_map(shape))


def output_prior(model: ReconModel, opacity: float = 2.0, grey: float = 0.6) -> torch.Tensor:
    """(13,) offsets that turn the initial map into texel-sized (median neighbour spacing of the
    neutral mesh), ``grey``, opaque (logit ``opacity``) Gaussians: the network's starting bias."""

    with torch.no_grad():
        pos = model.uvmap.position_map(model.head(batch_size=1)).cpu()
        _, spacing = normals_and_spacing(pos, model.uvmap.mask.cpu())
    bias = torch.zeros(ch.N_CHANNELS)
    bias[ch.LOG_SCALE] = float(torch.log(spacing[0, 0][model.uvmap.mask.cpu()].median())) - ch.INIT_LOG_SCALE
    bias[ch.OPACITY] = opacity
    bias[ch.COLOR] = (grey - 0.5) / ch.SH_C0 - ch.INIT_COLOR_DC
    return bias


def build_model(head_spec: str, uv_size: int, base_channels: int, device: torch.device) -> ReconModel:
    """Head model, UV map and a freshly initialised network on ``device``."""

    head = load_head(head_spec, device)
    uvmap = UVGaussianMap(head, uv_size).to(device)
    net = ReconNet(uv_size, base_channels).to(device)
    return ReconModel(net=net, head=head, uvmap=uvmap, head_spec=head_spec)


def render_batch(model: ReconModel, offsets: torch.Tensor, batch: dict[str, torch.Tensor], size: int,
                 backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Render offsets on each sample's target view -> (rgb (B, 3, H, W), alpha (B, 1, H, W))."""

    verts = model.head(shape=batch["shape"], **batch["params"].kwargs())
    g = model.uvmap.gaussians(verts, offsets)
    B = offsets.shape[0]
    w2c = pose6_to_world_to_cam(batch["pose6"])
    K = intrinsics(size, size, batch=B, dtype=offsets.dtype, device=offsets.device)
    out = g.render(w2c, K, size, size, backend=backend)
    return out.rgb.permute(0, 3, 1, 2), out.alpha.permute(0, 3, 1, 2)


def loss_terms(cfg_loss, model: ReconModel, offsets: torch.Tensor, pred: torch.Tensor, batch: dict[str, torch.Tensor],
               lpips_net, with_view: bool) -> dict[str, torch.Tensor]:
    """Weighted sum (key "total") and the unweighted terms of the reconstruction loss (paper Eq. 4-8)."""

    target = batch["target"].permute(0, 3, 1, 2)
    seen = batch.get("target_seen")
    pred = fill_unseen(pred, target, None if seen is None else seen.permute(0, 3, 1, 2))
    terms = render_loss_terms(pred, target, None, lpips_net if cfg_loss.lpips else None)
    weight = model.uvmap.position_weight
    terms["position"] = position_regularizer(offsets[:, XYZ], weight)
    terms["scale"] = scale_regularizer(offsets[:, LOG_SCALE], weight)
    if with_view:
        terms["view"] = view_consistency(offsets, batch["group"])
    w = {"l1": cfg_loss.l1, "ssim": cfg_loss.ssim, "lpips": cfg_loss.lpips, "position": cfg_loss.position,
         "scale": cfg_loss.scale, "view": cfg_loss.view_consistency}
    terms["total"] = sum(w[k] * v for k, v in terms.items())
    return terms


# ---------------------------------------------------------------------------------------------
# Weights file (what ships)
# ---------------------------------------------------------------------------------------------

def save_weights(path: str | Path, net: torch.nn.Module, head_spec: str, extra: dict | None = None) -> Path:
    """Write the network's weights as safetensors (fp16 when ``extra['fp16']``) with its sizes as metadata."""
    import json

    from safetensors.torch import save_file


    net = getattr(net, "module", net)
    fp16 = bool((extra or {}).get("fp16"))
    tensors = {k: (v.half() if fp16 and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in net.state_dict().items()}
    meta = {"format": WEIGHTS_FORMAT, "uv_size": str(net.uv_size), "base_channels": str(net.base),
            "head": head_spec, "extra": json.dumps(extra or {})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def load_weights(path: str | Path, device: torch.device | str = "cpu",
                 head_spec: str | None = None) -> ReconModel:
    """Load a weights file written by :func:`save_weights` into a ready :class:`ReconModel` (eval mode)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise DejavuError(f"{path}: no such reconstruction weights file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise DejavuError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("format") != WEIGHTS_FORMAT:
        raise DejavuError(f"{path}: not dejavu reconstruction weights (format {meta.get('format')!r})")
    spec = head_spec or meta["head"]
    model = build_model(spec, int(meta["uv_size"]), int(meta["base_channels"]), torch.device(device))
    model.net.load_state_dict({k: v.float() for k, v in state.items()})
    model.net.eval()
    return model


# ---------------------------------------------------------------------------------------------
# Data preparation
# ---------------------------------------------------------------------------------------------

def _resolve(path: str) -> Path:
    """Config paths are relative to the current directory (as given on the command line)."""
    return Path(path).expanduser()


def prepare_data(cfg: ReconConfig, device: torch.device, dist: DistInfo | None = None) -> tuple:
    """The synthetic and real training sets, preparing (rendering, tracking) what is missing first.

    Shard folders (``dejavu.recon.shards``) are prepared by all ranks together, each its own units, and
    read lazily; folders of the older ``shard_*.npz`` format are read whole into memory.
    """

    d, dist = cfg.data, dist or DistInfo()
    prepare_for_rank(cfg, dist.rank, dist.world, "cpu" if device.type == "cpu" else str(device))
    barrier(dist)

    def open_set(folder: str):
        folder = _resolve(folder)
        return MultiViewSet.load(folder) if any(folder.glob("shard_*.npz")) else ShardedSet(folder)

    synthetic = open_set(d.synthetic_dir)
    real = open_set(d.real_cache) if (d.real_dirs or d.video_paths) else None
    for name, s in (("synthetic", synthetic), ("real", real)):
        if s is not None and s.size != d.render_size:
            raise DejavuError(f"recon data {name}: crops are {s.size} px but data.render_size is {d.render_size}")
        if s is not None and len(s) == 0:
            raise DejavuError(f"recon data {name}: no identities (nothing could be rendered or tracked)")
    return synthetic, real


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------

def _lpips(cfg: ReconConfig, device: torch.device):
    if not cfg.loss.lpips:
        return None

    return get_lpips(cfg.loss.lpips_net, device)


def _set_lr(optim: torch.optim.Optimizer, lr: float) -> None:
    for group in optim.param_groups:
        group["lr"] = lr


def _lr_at(cfg: ReconConfig, step: int) -> float:
    o = cfg.optim
    return o.lr * (o.lr_decay ** (step // o.lr_decay_steps) if o.lr_decay_steps else 1.0)


def write_preview(path: Path, batch: dict[str, torch.Tensor], pred: torch.Tensor, rows: int = 4) -> None:
    """PNG grid: one row per sample, input | render | target."""

    n = min(rows, pred.shape[0])
    inp = (batch["input"][:n].permute(0, 2, 3, 1) + 1.0) / 2.0
    size = pred.shape[-1]
    if inp.shape[1] != size:
        inp = torch.nn.functional.interpolate(inp.permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                                              align_corners=False).permute(0, 2, 3, 1)
    grid = torch.cat([inp, pred[:n].permute(0, 2, 3, 1), batch["target"][:n]], dim=2)
    write_image(path, grid.reshape(-1, grid.shape[2], 3).detach().clamp(0, 1).cpu().numpy())


#: Sampler stream of each split (seeds its epoch order and view draws).
STREAMS = {"synthetic": 0, "real": 1}


def read_checkpoint(path: Path, device: torch.device) -> dict:
    """The state dict of a ``checkpoint.pt`` (tensors, numbers, strings only: nothing is unpickled)."""
    import pickle

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:  # damaged or foreign file
        raise DejavuError(f"{path}: not a readable training checkpoint ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


class Trainer:
    """Holds the model, optimiser and data; :meth:`run` trains ``cfg.optim.steps`` steps.

    ``dist`` (default: what torchrun set in the environment) places this process among the ranks.
    """

    def __init__(self, cfg: ReconConfig, device: torch.device, resume: bool = False, progress: bool = True,
                 dist: DistInfo | None = None):
        self.cfg, self.device, self.progress = cfg, device, progress
        self.dist = DistInfo.from_env() if dist is None else dist
        self.rank, self.world = self.dist.rank, self.dist.world
        init_group(self.dist, device)
        torch.manual_seed(cfg.seed)
        self.run_dir = _resolve(cfg.log.run_dir)
        self.model = build_model(cfg.model.head, cfg.model.uv_size, cfg.model.base_channels, device)
        if cfg.model.output_prior:
            self.model.net.init_output(output_prior(self.model))
        self.optim = torch.optim.Adam(self.model.net.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                      weight_decay=cfg.optim.weight_decay)
        self.step = 0
        self.positions = {split: 0 for split in STREAMS}  # identities consumed, all ranks together
        if resume:
            self.load_checkpoint()
        self.net = self.model.net
        if self.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model.net, device_ids=ids)
        self.synthetic, self.real = prepare_data(cfg, device, self.dist)
        self.lpips = _lpips(cfg, device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        state = {"net": self.model.net.state_dict(), "optim": self.optim.state_dict(), "step": self.step,
                 "positions": dict(self.positions), "torch_rng": torch.get_rng_state(),
                 "world": self.world, "config": self.cfg.to_dict()}
        with atomic_path(self.checkpoint_path()) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self) -> None:
        path = self.checkpoint_path()
        if not path.is_file():
            raise DejavuError(f"--resume: no checkpoint at {path}"
                              + (" (every rank reads it: put run_dir on storage all nodes share)" if self.world > 1 else ""))
        state = read_checkpoint(path, self.device)
        try:  # another network or a foreign dict: one line, not a traceback
            self.model.net.load_state_dict(state["net"])
            self.optim.load_state_dict(state["optim"])
            self.step = int(state["step"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise DejavuError(f"{path}: not a checkpoint of this run ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}); delete it or "
                              "leave out --resume to start over") from None
        o = self.cfg.optim
        # checkpoints from before the sampler kept no positions: continue as if one process had trained
        self.positions = {k: int(v) for k, v in state.get("positions", {
            "synthetic": self.step * o.identities_per_batch, "real": self.step * o.real_batch_size}).items()}
        torch.set_rng_state(state["torch_rng"].cpu())
        log.info("resumed %s at step %d", path, self.step)

    # -- steps ---------------------------------------------------------------------------------
    def next_batch(self, data, real: bool) -> dict[str, torch.Tensor]:
        """This rank's part of the next global batch of ``data`` (advances the split's position)."""
        o = self.cfg.optim
        split = "real" if real else "synthetic"
        per_rank, views = (o.real_batch_size, 1) if real else (o.identities_per_batch, o.views_per_identity)
        plan = plan_batch(data.n_views, per_rank * self.world, views, self.positions[split], self.cfg.seed,
                          STREAMS[split], pair_views=not real)
        self.positions[split] += per_rank * self.world
        part = rank_part(plan, self.rank, self.world)
        return make_batch(data, part.k, part.v_in, part.v_out, part.group, self.device, whiten=real)

    def train_step(self, data, lr: float, real: bool) -> tuple[dict[str, float], dict, torch.Tensor]:
        """One optimiser step on the next batch of ``data`` at ``lr``; returns scalars, the batch and the render."""
        o = self.cfg.optim
        batch = self.next_batch(data, real)
        _set_lr(self.optim, lr)
        self.net.train()
        offsets = self.net(batch["input"], self.model.identity_position_map(batch["shape"]))
        pred, _ = render_batch(self.model, offsets, batch, self.cfg.data.render_size, self.cfg.render_backend)
        terms = loss_terms(self.cfg.loss, self.model, offsets, pred, batch, self.lpips, with_view=not real)
        self.optim.zero_grad(set_to_none=True)
        terms["total"].backward()  # under DDP: gradients averaged over the ranks here
        if o.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), o.grad_clip)
        self.optim.step()
        return {k: float(v.detach()) for k, v in terms.items()}, batch, pred.detach()

    def check_in_sync(self) -> None:
        """DejavuError unless all ranks hold the same weights, step and data positions."""
        check_in_sync(self.dist, self.model.net, self.step, *self.positions.values())

    def run(self, steps: int | None = None) -> Path:
        """Train until ``steps`` (default cfg.optim.steps) total steps; returns the weights path."""
        from tqdm import tqdm

        total = steps if steps is not None else self.cfg.optim.steps
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.cfg.save(self.run_dir / "config.json")
        bar = tqdm(total=total, initial=self.step, desc="train recon", disable=not (self.progress and self.is_main))
        t0 = time.time()
        limit = self.cfg.optim.max_minutes * 60.0
        every = self.cfg.log.sync_check_every
        while self.step < total:
            if limit and self._agreed(time.time() - t0 > limit):
                log.info("stopping at step %d: optim.max_minutes=%g reached", self.step, self.cfg.optim.max_minutes)
                break
            lr = _lr_at(self.cfg, self.step)
            scalars = [("synthetic", *self.train_step(self.synthetic, lr, real=False), lr)]
            if self.real is not None:
                real_lr = lr * self.cfg.optim.real_lr_scale
                scalars.append(("real", *self.train_step(self.real, real_lr, real=True), real_lr))
            self.step += 1
            if every and self.step % every == 0:
                self.check_in_sync()
            self._log(scalars, time.time() - t0)
            bar.update(1)
            bar.set_postfix({f"{s[0][:3]}": f"{s[1]['total']:.3f}" for s in scalars} | {"l1": f"{scalars[0][1]['l1']:.3f}"})
        bar.close()
        return self.finish()

    def _agreed(self, flag: bool) -> bool:
        """``flag`` of rank 0 on every rank (a time limit must stop all ranks at the same step)."""
        if self.world == 1:
            return flag
        t = torch.tensor([int(flag)], device=self.device if torch.distributed.get_backend() == "nccl" else "cpu")
        torch.distributed.broadcast(t, 0)
        return bool(t.item())

    def _mean_over_ranks(self, terms: dict[str, float]) -> dict[str, float]:
        """The loss terms of the whole global batch (each rank's are of its part; parts are equal-sized)."""
        if self.world == 1:
            return terms
        keys = sorted(terms)
        t = torch.tensor([terms[k] for k in keys], dtype=torch.float64,
                         device=self.device if torch.distributed.get_backend() == "nccl" else "cpu")
        torch.distributed.all_reduce(t)
        return dict(zip(keys, (t / self.world).tolist()))

    def _log(self, scalars, seconds: float) -> None:
        L = self.cfg.log
        logging_step = self.step % L.log_every == 0 or self.step == 1
        if logging_step:  # every rank takes part in the reduction; rank 0 writes
            scalars = [(split, self._mean_over_ranks(terms), *rest) for split, terms, *rest in scalars]
        if not self.is_main:
            return
        if logging_step:
            path = self.run_dir / "scalars.csv"
            new = not path.is_file()
            with open(path, "a", newline="") as fh:
                w = csv.writer(fh)
                if new:
                    w.writerow(SCALARS)
                for split, terms, _, _, lr in scalars:
                    w.writerow([self.step, split, f"{seconds:.1f}", f"{lr:.3g}"]
                               + [f"{terms[k]:.5f}" if k in terms else "" for k in SCALARS[4:]])
        if self.step % L.preview_every == 0 or self.step == 1:
            for split, _, batch, pred, _ in scalars:
                write_preview(self.run_dir / "previews" / f"step_{self.step:06d}_{split}.png", batch, pred)
        if self.step % L.checkpoint_every == 0:
            self.save_checkpoint()

    def finish(self) -> Path:
        path = self.run_dir / "weights.safetensors"
        if self.is_main:
            self.save_checkpoint()
            save_weights(path, self.model.net, self.cfg.model.head, {"steps": self.step, "run_dir": str(self.run_dir)})
        if self.world > 1:
            torch.distributed.barrier()
        return path


#: How a collective reports a peer that died (gloo, NCCL); DistError covers torch's own wrappers.
_PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL", "ProcessGroup")


def _lost_peers(exc: RuntimeError) -> bool:
    return isinstance(exc, torch.distributed.DistError) or any(s in str(exc) for s in _PEER_LOST)


def train(cfg: ReconConfig | dict, device: str = "auto", resume: bool = False, steps: int | None = None,
          progress: bool = True) -> Path:
    """Train the reconstruction network; returns the path of the written weights.

    Under torchrun, an error on one rank is raised as one DejavuError line naming the rank (the CLI
    prints it and exits 2; torchrun then stops the other ranks), and a rank that loses its peers says
    so in one line instead of a traceback.
    """

    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    dist = DistInfo.from_env()
    try:
        dev = resolve_device(device if device != "auto" else cfg.device)
        if dev.type == "cpu" and cfg.cpu_threads > 0:
            set_cpu_threads(cfg.cpu_threads)
        if dev.type == "cuda" and dist.distributed:
            dev = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(dev)
        return Trainer(cfg, dev, resume=resume, progress=progress, dist=dist).run(steps)
    except DejavuError as exc:
        raise DejavuError(f"{dist.tag()}{exc}") from None
    except RuntimeError as exc:
        if not (dist.distributed and _lost_peers(exc)):
            raise
        why = next((s for s in _PEER_LOST if s in str(exc)), type(exc).__name__)
        raise DejavuError(f"{dist.tag()}stopped: another rank failed ({why}); its own line says why") from None
    finally:
        leave_group()

"""Configuration of reconstruction training: nested dataclasses, named presets, JSON round trip.

Every learning rate, loss weight, step count and size is a field documented where it is declared.
Presets: ``"cpu-small"`` (what trained the shipped weights on a 2-core CPU) and ``"gpu-paper"`` (the
paper's sizes: UV 320, render 512, batch 16, width 64). A JSON config may name a ``"preset"`` and
override any field, e.g. ``{"preset": "cpu-small", "optim": {"steps": 100}}``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dejavu.config import apply_overrides
from dejavu.errors import DejavuError
from dejavu.io import write_json


@dataclass
class ModelConfig:
    head: str = "builtin"
    """Head model spec for ``load_head`` (builtin, flame:PATH, procedural)."""
    uv_size: int = 64
    """UV Gaussian map side S (paper 320); divisible by 16."""
    base_channels: int = 16
    """Network width (paper 64 = 8.56 M parameters)."""
    output_prior: bool = True
    """Initialise the output bias to texel-sized grey opaque Gaussians (departure from the paper's zero start)."""


@dataclass
class DataConfig:
    synthetic_dir: str = "runs/data/synthetic"
    """Folder of synthetic multi-view shards (``shard_*.npz``, see dejavu.recon.data); generated if empty."""
    synthetic_identities: int = 400
    """Identities to generate when ``synthetic_dir`` has no shards."""
    synthetic_views: int = 4
    """Views rendered per synthetic identity."""
    synthetic_seed: int = 0
    """Seed of the synthetic identities (unit u renders from (synthetic_seed, u)); separate from ``seed``
    (initialisation and batch order) so that training with another seed reuses the same data."""
    synthetic_uv_size: int = 128
    """UV side of the Gaussian heads that render the synthetic ground truth."""
    render_size: int = 128
    """Side of the aligned crops and of training renders, pixels (paper 512)."""
    max_yaw_deg: float = 45.0
    """Synthetic cameras: yaw uniform in [-max, max] degrees."""
    max_pitch_deg: float = 15.0
    """Synthetic cameras: pitch uniform in [-max, max] degrees."""
    real_dirs: list[str] = field(default_factory=list)
    """Real photo roots; every sub-folder with photos is one person (LFW layout). Empty: no real batches."""
    real_cache: str = "runs/data/real"
    """Where tracking results (``tracks/``) and the gathered real shards go."""
    real_max_people: int = 200
    """At most this many person folders are tracked (spread evenly over the sorted list)."""
    real_min_photos: int = 2
    """Only folders with at least this many photos are used."""
    video_paths: list[str] = field(default_factory=list)
    """Videos whose tracked frames become extra multi-view-like identities (groups of frames)."""
    video_frames_per_identity: int = 4
    """Views per real identity: photos per person (padded/truncated) and consecutive video frames."""
    num_workers: int = 0
    """Unused on CPU (data lives in memory); kept for GPU runs."""
    shard_identities: int = 100
    """Identities (synthetic) or person folders (real) per shard file and work unit of the data
    preparation (``dejavu prepare recon``): the unit of parallel work and of resuming."""


@dataclass
class LossConfig:
    l1: float = 1.0
    """Weight of the L1 photometric loss on the render."""
    lpips: float = 0.2
    """Weight of LPIPS on the render."""
    lpips_net: str = "alex"
    """LPIPS backbone: alex (cheap on CPU) or vgg."""
    ssim: float = 0.2
    """Weight of (1 - SSIM) on the render."""
    position: float = 0.01
    """Weight of the position regulariser mean(position_weight * ||xyz offset (cm)||)."""
    scale: float = 0.001
    """Weight of the scale regulariser on log-scale offsets (weighted like position)."""
    view_consistency: float = 0.1
    """Weight of the view-consistency term (synthetic batches only)."""


@dataclass
class OptimConfig:
    lr: float = 1e-3
    """Adam learning rate for synthetic multi-view batches."""
    real_lr_scale: float = 0.1
    """Real batches use lr * this (paper: one tenth)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip (0 = off)."""
    steps: int = 2000
    """Training steps (each: one synthetic batch, then one real batch when real data exists)."""
    max_minutes: float = 0.0
    """Stop early (saving weights) after this many minutes of training; 0 = no limit."""
    identities_per_batch: int = 2
    """Synthetic identities per batch."""
    views_per_identity: int = 2
    """Input views per identity in a batch (batch = identities x views; >= 2 for view consistency)."""
    real_batch_size: int = 2
    """Real photos per real batch."""
    lr_decay_steps: int = 0
    """Multiply the lr by ``lr_decay`` every this many steps (0 = constant)."""
    lr_decay: float = 0.5
    """Step decay factor."""


@dataclass
class LogConfig:
    run_dir: str = "runs/recon"
    """Where checkpoints, scalars.csv, previews and config.json go."""
    log_every: int = 5
    """Append a row to scalars.csv every this many steps."""
    preview_every: int = 50
    """Write previews/step_XXXXXX.png (input | render | target) every this many steps."""
    checkpoint_every: int = 25
    """Save checkpoint.pt (for --resume) every this many steps."""
    sync_check_every: int = 25
    """Under torchrun: check every this many steps that all ranks hold identical weights and data
    positions (a hash of the weights per rank, all-gathered; 0 = never)."""


@dataclass
class ReconConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    log: LogConfig = field(default_factory=LogConfig)
    seed: int = 0
    """Random seed (data order, pairing, initialisation)."""
    device: str = "auto"
    """auto | cpu | cuda (overridden by --device)."""
    render_backend: str = "auto"
    """Renderer backend for training (auto: cuda on GPU, numba cpu otherwise)."""
    cpu_threads: int = 1
    """torch and numba threads on CPU (0 = library defaults). 1 is fastest on a shared, oversubscribed
    machine: OpenMP spin-waiting made 2 threads ~10x slower than 1 under load here."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:

        write_json(path, self.to_dict())


def _cpu_small() -> ReconConfig:
    return ReconConfig()  # the field defaults are the CPU preset


def _gpu_paper() -> ReconConfig:
    cfg = ReconConfig()
    cfg.model = ModelConfig(uv_size=320, base_channels=64)
    cfg.data = DataConfig(synthetic_identities=18000, synthetic_views=8, synthetic_uv_size=320, render_size=512,
                          real_dirs=["../shared/data/lfw"], real_max_people=1680, max_yaw_deg=60.0)
    cfg.loss = LossConfig(lpips=0.5, lpips_net="vgg")
    cfg.optim = OptimConfig(lr=1e-4, steps=100000, identities_per_batch=4, views_per_identity=4, real_batch_size=16,
                            lr_decay_steps=30000)
    cfg.log = LogConfig(run_dir="runs/recon_gpu", log_every=50, preview_every=1000, checkpoint_every=2000,
                        sync_check_every=500)
    cfg.device, cfg.render_backend, cfg.cpu_threads = "cuda", "cuda", 0
    return cfg


PRESETS = {"cpu-small": _cpu_small, "gpu-paper": _gpu_paper}


def preset(name: str) -> ReconConfig:
    """A named preset: ``cpu-small`` or ``gpu-paper``."""
    if name not in PRESETS:
        raise DejavuError(f"recon preset {name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name]()


def config_from_dict(d: dict[str, Any], where: str = "config") -> ReconConfig:
    """A config from a dict: optional ``"preset"`` (default cpu-small) plus overrides."""
    d = dict(d)
    base = preset(d.pop("preset", "cpu-small"))
    return apply_overrides(base, d, where)


def load_config(path: str | Path) -> ReconConfig:
    """Read a JSON config file (see :func:`config_from_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise DejavuError(f"--config {path}: no such file")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DejavuError(f"--config {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(d, dict):
        raise DejavuError(f"--config {path}: expected a JSON object")
    return config_from_dict(d, where=str(path))

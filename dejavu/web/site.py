"""``dejavu web``: an avatar as a self-contained static web site (the player in ``web/``, bundled).

A site folder holds:

- ``index.html``, ``player.js`` (three.js + Spark + the avatar runtime, bundled by ``make web`` into
  ``dejavu/web/static/``; nothing is fetched from elsewhere at run time);
- ``avatar.json`` + ``avatar.bin``: the avatar pack (:mod:`dejavu.web.pack`);
- ``sequences/*.json``: recorded driving sequences (expression (T, Ne), jaw (T, 3), eyes (T, 6),
  head_rotation (T, 3) axis-angle radians when the source has cameras, fps), the built-in expression
  sweep first. The page turns the whole splat object by head_rotation, as ``dejavu animate --camera
  source`` moves the camera (Gaussians turn with it), rather than the head model's root joint;
- ``site.json``: what the page reads first (pack, sequences, camera target and field of view).

Any static file server can serve it (``dejavu web --serve`` starts one; browsers refuse ``fetch`` from
``file://``).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dejavu.avatar import Avatar
from dejavu.drive.sequence import Drive
from dejavu.drive.sources import expression_sweep, load_drive
from dejavu.errors import DejavuError
from dejavu.io import cache_dir, write_json
from dejavu.render.camera import DEFAULT_DISTANCE_M, DEFAULT_FOV_DEG, euler_to_matrix
from dejavu.web.pack import pack_arrays, write_pack

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = ("index.html", "player.js")
SITE_JSON = "site.json"


@dataclass
class SiteConfig:
    """How ``dejavu web`` builds a site."""

    precision: str = "float16"
    """dtype of the offset maps in the pack: float16 (half the bytes) or float32 (bit-exact)."""
    resolution: int = 512
    """initial canvas side, pixels (the page has a selector)."""
    background: str = "#ffffff"
    """initial background colour (the page has a picker)."""
    sweep_frames: int = 150
    """frames of the built-in expression sweep (``dejavu.animate.expression_sweep``)."""
    all_stages: bool = False
    """also ship the stage-1 delta of a personalized avatar (the page's "global" view; see
    :func:`dejavu.web.pack.pack_arrays`). Off: a UV-256 site stays under 20 MB."""


def cached_site_dir(avatar_dir: str | Path) -> Path:
    """Where ``dejavu web --serve`` and ``dejavu live`` build an avatar's site when no folder is given."""

    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(avatar_dir).resolve().name)
    return cache_dir() / "web" / safe


def static_bundle() -> Path:
    """The bundled player folder; DejavuError when it was never built."""
    missing = [name for name in STATIC_FILES if not (STATIC_DIR / name).is_file()]
    if missing:
        raise DejavuError(f"{STATIC_DIR / missing[0]}: the web player is not built; run `make web` in the dejavu "
                          f"repository (needs Node.js and npm)")
    return STATIC_DIR


def pose6_to_head_pose(pose6: torch.Tensor) -> torch.Tensor:
    """Tracked cameras (T, 6) ``[yaw, pitch, roll, ...]`` -> head (root) rotations (T, 3) axis-angle, radians.

    The tracker's camera carries the head pose (docs/CONVENTIONS.md): rotating the head by
    R = Rz(roll) Rx(pitch) Ry(yaw) in front of a fixed camera shows the same view up to translation.
    """
    from scipy.spatial.transform import Rotation


    R = euler_to_matrix(pose6[:, 0], pose6[:, 1], pose6[:, 2])
    return torch.as_tensor(Rotation.from_matrix(R.double().numpy()).as_rotvec(), dtype=torch.float32)


def sequence_record(drive: Drive, name: str, n_expr: int, where: str) -> dict:
    """A :class:`dejavu.animate.Drive` as the page's sequence JSON (rounded to 1e-5)."""
    drive.check_components(n_expr, where)
    r = lambda t: np.round(t.detach().cpu().double().numpy(), 5).tolist()  # noqa: E731
    rec = {"name": name, "fps": float(drive.fps), **{k: r(v) for k, v in drive.params.kwargs().items()}}
    if drive.pose6 is not None:
        rec["head_rotation"] = r(pose6_to_head_pose(drive.pose6))
    return rec


def build_site(avatar_dir: str | Path, out: str | Path, drives: list[str | Path] = (), config: SiteConfig | None = None,
               force: bool = False, progress: bool = True) -> dict:
    """Write the site of ``avatar_dir`` into ``out``; returns a record (path, bytes, Gaussians, sequences).

    Args:
        avatar_dir: an avatar directory (``dejavu reconstruct`` / ``dejavu personalize``).
        out: the site folder; an existing site there is replaced only with ``force``.
        drives: driving sources for playback, anything ``dejavu animate --drive`` accepts
            (tracking directory, .json/.npz parameter file, video), via :func:`dejavu.drive.sources.load_drive`.
    """

    config = config or SiteConfig()
    static = static_bundle()
    out = Path(out)
    if (out / SITE_JSON).exists() and not force:
        raise DejavuError(f"{out}: already holds a site; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise DejavuError(f"{out}: exists and is not a directory")
    avatar = Avatar.load(avatar_dir)
    model = avatar.model("cpu")
    head, uvmap = model.head, model.uvmap
    sequences = [sequence_record(expression_sweep(head, config.sweep_frames), "expression sweep", head.n_expr,
                                 "sweep")]
    for src in drives:
        drive = load_drive(src, avatar.head, "cpu", progress)
        sequences.append(sequence_record(drive, Path(src).name, head.n_expr, f"--drive {src}"))
    meta, arrays = pack_arrays(avatar, head, uvmap, config.precision, all_stages=config.all_stages)
    out.mkdir(parents=True, exist_ok=True)
    write_pack(out, meta, arrays)
    entries = []
    for i, rec in enumerate(sequences):
        rel = f"sequences/{i:02d}.json"
        write_json(out / rel, rec)
        entries.append({"name": rec["name"], "file": rel, "frames": len(rec["expression"])})
    for name in STATIC_FILES:
        shutil.copyfile(static / name, out / name)
    legal = static / "player.js.LEGAL.txt"
    if legal.is_file():
        shutil.copyfile(legal, out / legal.name)
    center = model.center()
    site = {
        "avatar": "avatar.json",
        "sequences": entries,
        "center": [round(c, 6) for c in center],
        "fov_deg": DEFAULT_FOV_DEG,
        "distance_m": DEFAULT_DISTANCE_M,
        "resolution": int(config.resolution),
        "background": config.background,
        "expr_range": [0.0, 1.0] if head.name.lower().startswith("builtin") else [-3.0, 3.0],
    }
    write_json(out / SITE_JSON, site)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log.info("web: %d Gaussians, %d sequence(s), %.1f MB", uvmap.n_gaussians, len(entries), total / 1e6)
    return {"site": str(out), "bytes": total, "n_gaussians": int(uvmap.n_gaussians), "sequences": len(entries)}


"""An avatar in the compact binary form the browser runtime reads (``web/src/runtime.js``).

Two files: ``avatar.bin`` (every array back to back, little endian, each 4-byte aligned) and
``avatar.json`` (a manifest: per array its dtype, shape and byte offset, plus the scalars). The
arrays are exactly what :class:`dejavu.model.avatar_model.AvatarModel` reads, laid out per Gaussian
(N = valid texels, in :class:`~dejavu.gaussians.uvmap.UVGaussianMap` order) so the page needs no
UV rasterizer:

- head: ``v_id`` (V, 3) the person's identity-shaped rest vertices (template + shape blend +
  vertex offsets, metres, computed here in float32 exactly as the head model does), ``expr_verts``
  (Vm,) the vertices any expression moves and their ``exprdirs`` (Ne, Vm, 3), ``joints_rest`` (J, 3)
  joints regressed from ``v_id``, ``parents`` (J,), ``lbs_weights`` (V, J), optional ``posedirs``
  (9 (J - 1), V * 3);
- texels: ``texel_verts`` (N, 3) vertex ids (uint16 below 65536 vertices), ``texel_bary`` (N, 3)
  barycentrics, ``texel_region`` (N,) region index (the manifest maps regions to the initial
  opacity logit and to frozen xyz offsets in the mouth interior);
- maps (per Gaussian, 13 channels, :mod:`dejavu.gaussians.channels` order): ``mean_offsets`` (N, 13),
  optional ``global_delta`` (N, 13) and ``blendmaps`` (N, 13, K), in ``precision`` (float16 by
  default: half the bytes; float32 reproduces the avatar exactly);
- blend scheme arrays (``blend_center`` ...), ``pose_model`` (6, K + 4).

:func:`quantized_avatar` is the avatar the page actually evaluates (maps rounded to ``precision``):
the reference the browser tests compare against.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dejavu.avatar import Avatar
from dejavu.errors import DejavuError
from dejavu.gaussians import channels as ch
from dejavu.gaussians.uvmap import OPACITY_PRIOR, UVGaussianMap
from dejavu.head.base import REGIONS, HeadModel
from dejavu.io import atomic_path, write_json
from dejavu.model.avatar_model import check_identity
from dejavu.model.rigid import TRANS_UNIT_M

PACK_FORMAT = "dejavu-web-avatar"
PACK_VERSION = 1
BIN_NAME = "avatar.bin"
MANIFEST_NAME = "avatar.json"
PRECISIONS = ("float16", "float32")
_MAP_NAMES = ("mean_offsets", "global_delta", "blendmaps")


def _round_maps(t: torch.Tensor | None, precision: str) -> torch.Tensor | None:
    if t is None or precision == "float32":
        return t
    return t.to(torch.float16).to(torch.float32)


def quantized_avatar(avatar: Avatar, precision: str = "float16"):
    """The avatar with its offset maps rounded to ``precision``: what the page evaluates."""
    if precision not in PRECISIONS:
        raise DejavuError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return replace(avatar, **{n: _round_maps(getattr(avatar, n), precision) for n in _MAP_NAMES})


def pack_arrays(avatar: Avatar, head: HeadModel, uvmap: UVGaussianMap, precision: str = "float16",
                all_stages: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """The manifest scalars and the named arrays of the web pack (see the module docstring).

    Args:
        avatar: a :class:`dejavu.avatar.Avatar` on the CPU.
        head, uvmap: its :class:`HeadModel` and :class:`UVGaussianMap` (``avatar.model("cpu")``'s).
        precision: dtype of the offset maps, "float16" or "float32".
        all_stages: keep the stage-1 ``global_delta`` of an avatar that has blendmaps (the page's "global"
            view, a diagnostic; 1.25 MB at UV 256 in float16). Without it the page offers "full" and "mean".
    """
    if precision not in PRECISIONS:
        raise DejavuError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    check_identity(head, avatar.shape, avatar.vertex_offsets)
    f32 = lambda t: np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)  # noqa: E731
    mdt = np.float16 if precision == "float16" else np.float32
    with torch.no_grad():
        ident = {"shape": avatar.shape, "vertex_offsets": avatar.vertex_offsets}
        # The head model's own arithmetic (HeadModel.forward), float32, so the page starts from the same numbers.
        v_id = head.v_template + torch.einsum("bk,vck->bvc", ident["shape"][None], head.shapedirs)[0]
        if ident["vertex_offsets"] is not None:
            v_id = v_id + ident["vertex_offsets"]
        joints = torch.einsum("jv,bvc->bjc", head.j_regressor, v_id[None])[0]
        per_gauss = lambda m: uvmap.gather(m[None])[0]  # (13, S, S) -> (N, 13)  # noqa: E731
        # Only the vertices some expression moves carry expression blendshapes (about 70% of the built-in head).
        moving = torch.nonzero(head.exprdirs.abs().amax(dim=(1, 2)) > 0)[:, 0]
        index_dtype = np.uint16 if head.n_verts < 65536 else np.int32
        region = uvmap.gather(uvmap.region[None, None].float())[0, :, 0].round().long()  # (N,) REGIONS index
        arrays: dict[str, np.ndarray] = {
            "v_id": f32(v_id),
            "expr_verts": np.asarray(moving.numpy(), dtype=index_dtype),  # (Vm,)
            "exprdirs": f32(head.exprdirs[moving].permute(2, 0, 1)),  # (Ne, Vm, 3): one block per component
            "joints_rest": f32(joints),
            "parents": np.asarray(head.parents.cpu().numpy(), dtype=np.int32),
            "lbs_weights": f32(head.lbs_weights),
            "texel_verts": np.asarray(uvmap.texel_verts.cpu().numpy(), dtype=index_dtype),
            "texel_bary": f32(uvmap.texel_bary),
            "texel_region": np.asarray(region.numpy(), dtype=np.uint8),
            "mean_offsets": f32(per_gauss(avatar.mean_offsets)).astype(mdt),
        }
        if head.posedirs is not None:
            arrays["posedirs"] = f32(head.posedirs)
        if avatar.global_delta is not None and (all_stages or avatar.blendmaps is None):
            arrays["global_delta"] = f32(per_gauss(avatar.global_delta)).astype(mdt)
        if avatar.blendmaps is not None:
            # (N, 13, K): the K values one output needs sit together, so the page blends in one pass
            arrays["blendmaps"] = np.stack([f32(per_gauss(b)) for b in avatar.blendmaps], axis=-1).astype(mdt)
        for name, value in avatar.blend.tensors().items():
            arrays[name] = f32(value)
        if avatar.pose_model is not None:
            arrays["pose_model"] = f32(avatar.pose_model)
    return _manifest(avatar, head, uvmap, precision), arrays


def _manifest(avatar: Avatar, head: HeadModel, uvmap: UVGaussianMap, precision: str) -> dict:
    """The pack's scalars: format, sizes, names, the blend scheme, channel layout, constants and region priors."""
    return {
        "format": PACK_FORMAT,
        "version": PACK_VERSION,
        "head": avatar.head,
        "uv_size": avatar.uv_size,
        "n_gaussians": int(uvmap.n_gaussians),
        "n_verts": int(head.n_verts),
        "n_expr": int(head.n_expr),
        "expr_names": list(head.expr_names) or [f"expr_{i:03d}" for i in range(head.n_expr)],
        "joint_names": list(head.joint_names),
        "stage": avatar.stage,
        "precision": precision,
        "blend": avatar.blend.meta(),
        "constants": {
            "xyz_unit_m": ch.XYZ_UNIT_M, "sh_c0": ch.SH_C0, "init_log_scale": ch.INIT_LOG_SCALE,
            "init_color_dc": ch.INIT_COLOR_DC, "pose_trans_unit_m": TRANS_UNIT_M,
        },
        "channels": {name: [sl.start, sl.stop] for name, sl in ch.CHANNELS.items()},
        "regions": list(REGIONS),
        # per region (REGIONS order): initial opacity logit and whether xyz offsets are frozen (mouth interior)
        "opacity_prior": [OPACITY_PRIOR[r] for r in REGIONS],
        "xyz_frozen": [r == "mouth" for r in REGIONS],
    }


def write_pack(directory: str | Path, meta: dict, arrays: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """Write ``avatar.bin`` then ``avatar.json`` into ``directory`` (each atomically); their paths."""

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries, offset = {}, 0
    with atomic_path(directory / BIN_NAME) as tmp:
        with open(tmp, "wb") as fh:
            for name, a in arrays.items():
                a = np.ascontiguousarray(a)
                dtype = a.dtype.newbyteorder("<")
                raw = a.astype(dtype, copy=False).tobytes()
                entries[name] = {"dtype": str(a.dtype), "shape": list(a.shape), "offset": offset, "nbytes": len(raw)}
                pad = (-len(raw)) % 4  # typed-array views need aligned offsets
                fh.write(raw + b"\0" * pad)
                offset += len(raw) + pad
    write_json(directory / MANIFEST_NAME, {**meta, "bin": BIN_NAME, "bin_bytes": offset, "arrays": entries})
    return directory / BIN_NAME, directory / MANIFEST_NAME


def read_pack(directory: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a pack back (manifest, arrays); the inverse of :func:`write_pack`, for tests and tools."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST_NAME
    try:
        meta = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DejavuError(f"{manifest_path}: unreadable web avatar manifest ({exc.__class__.__name__})") from None
    if meta.get("format") != PACK_FORMAT:
        raise DejavuError(f"{manifest_path}: not a dejavu web avatar (format {meta.get('format')!r})")
    raw = (directory / meta["bin"]).read_bytes()
    if len(raw) != meta["bin_bytes"]:
        raise DejavuError(f"{directory / meta['bin']}: {len(raw)} bytes, manifest says {meta['bin_bytes']}")
    arrays = {}
    for name, e in meta["arrays"].items():
        dt = np.dtype(e["dtype"]).newbyteorder("<")
        arrays[name] = np.frombuffer(raw, dtype=dt, count=int(np.prod(e["shape"])), offset=e["offset"]).reshape(e["shape"])
    return meta, arrays

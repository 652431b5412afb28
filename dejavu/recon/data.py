"""Training data for the reconstruction network: one set of arrays, three sources.

Arrays (of a :class:`MultiViewSet`, of a shard file; K identities with V views):

    images      (K, V, H, W, 3) uint8   aligned head crops, background white
    masks       (K, V, H, W)    uint8   head mask (255 = head), used to whiten real backgrounds
    seen        (K, V, H, W)    uint8   optional: 255 where the crop lies inside its photo (absent: all of it)
    pose6       (K, V, 6)       float32 camera [yaw, pitch, roll, tx, ty, tz] (rad, m), FOV 20 deg, H x W
    shape       (K, Ns)         float32 identity coefficients
    expression  (K, V, Ne)      float32 expression per view
    jaw         (K, V, 3)       float32 jaw axis-angle per view (rad)
    n_views     (K,)            int32   valid views per identity (views >= n_views repeat view 0)

On disk: folders of safetensors shards written per work unit (``dejavu.recon.shards``, prepared by
``dejavu.recon.dataprep``); :meth:`MultiViewSet.save` / :meth:`MultiViewSet.load` keep the older folder
of ``shard_NNNNN.npz`` files (the arrays plus ``__meta__``, uint8 JSON {"format": "dejavu-recon-data",
"version": 1, "head": spec, "size": H, "fov_deg": 20}; no pickle), read whole into memory.

Sources: :func:`generate_synthetic` (multi-view renders of random identities of the project's own head
model; the PanoHead stand-in), :func:`track_group` (a folder of photos of one person, e.g.
LFW, tracked once with ``dejavu.track`` and cached; the photos are the views) and
:func:`track_video_identities` (tracked frames of one video grouped into multi-view-like identities).
:class:`MultiViewSet` holds a set in memory; :func:`make_batch` turns samples of it (or of a lazily read
``ShardedSet``) into training tensors.

Letters: K identities, V views, B batch, H/W pixels, S UV side, Ns/Ne shape/expression sizes.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dejavu.errors import DejavuError
from dejavu.gaussians.channels import COLOR, LOG_SCALE, OPACITY, ROT, SH_C0, XYZ
from dejavu.gaussians.coverage import normals_and_spacing
from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.head import load_head
from dejavu.head.base import REGION_ID, HeadModel
from dejavu.head.params import HeadParams
from dejavu.io import atomic_path, is_image
from dejavu.render import render
from dejavu.render.camera import DEFAULT_FOV_DEG, focal_from_fov, intrinsics, pose6_to_world_to_cam, project_points
from dejavu.track import is_tracking_dir, load_tracking, track
from dejavu.track.align import crop_params
from dejavu.track.fit import FitConfig
from dejavu.track.graphs import MediaPipeGraphs
from dejavu.track.result import TrackResult

log = logging.getLogger(__name__)

FORMAT_NAME = "dejavu-recon-data"
FORMAT_VERSION = 1
#: The one camera field of view (degrees over the crop) of every view in the data: its cameras are pose6 only.
DATA_FOV_DEG = DEFAULT_FOV_DEG
ARRAYS = ("images", "masks", "pose6", "shape", "expression", "jaw", "n_views")

# MediaPipe face-mesh landmark indices used to paint the synthetic appearance.
LIP_LANDMARKS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
                 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
BROW_LANDMARKS = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
IRIS_LANDMARKS = (468, 469, 470, 471, 472, 473, 474, 475, 476, 477)


# ---------------------------------------------------------------------------------------------
# The in-memory set and its shards
# ---------------------------------------------------------------------------------------------

@dataclass
class MultiViewSet:
    """K identities x V views in memory (arrays as in the module docstring)."""

    images: np.ndarray
    masks: np.ndarray
    pose6: np.ndarray
    shape: np.ndarray
    expression: np.ndarray
    jaw: np.ndarray
    n_views: np.ndarray
    head: str
    size: int
    seen: np.ndarray | None = None  # (K, V, H, W) uint8; None: every crop pixel lies inside its photo

    def _seen(self) -> np.ndarray:
        return np.full(self.masks.shape, 255, np.uint8) if self.seen is None else self.seen

    def __len__(self) -> int:
        return len(self.images)

    @property
    def views(self) -> int:
        return self.images.shape[1]

    def subset(self, index: np.ndarray | slice) -> "MultiViewSet":
        return MultiViewSet(*(getattr(self, a)[index] for a in ARRAYS), head=self.head, size=self.size,
                            seen=None if self.seen is None else self.seen[index])

    @staticmethod
    def concat(sets: list["MultiViewSet"]) -> "MultiViewSet":
        """Join sets with the same head, crop size and view count."""
        first = sets[0]
        for s in sets[1:]:
            if (s.head, s.size, s.views) != (first.head, first.size, first.views):
                raise DejavuError(f"recon data: cannot join sets of head/size/views {(s.head, s.size, s.views)} "
                                  f"and {(first.head, first.size, first.views)}")
        seen = None if all(s.seen is None for s in sets) else np.concatenate([s._seen() for s in sets])
        return MultiViewSet(*(np.concatenate([getattr(s, a) for s in sets]) for a in ARRAYS),
                            head=first.head, size=first.size, seen=seen)

    # -- disk ----------------------------------------------------------------------------------
    def save(self, folder: str | Path, per_shard: int = 100) -> list[Path]:
        """Write ``shard_NNNNN.npz`` files (``per_shard`` identities each) atomically; return the paths."""

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        start = len(list(folder.glob("shard_*.npz")))
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "head": self.head, "size": self.size,
                "fov_deg": DATA_FOV_DEG}
        paths = []
        for i, lo in enumerate(range(0, len(self), per_shard)):
            part = self.subset(slice(lo, lo + per_shard))
            path = folder / f"shard_{start + i:05d}.npz"
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                             **{a: getattr(part, a) for a in ARRAYS},
                             **({} if part.seen is None else {"seen": part.seen}))
            paths.append(path)
        return paths

    @staticmethod
    def load(folder: str | Path) -> "MultiViewSet":
        """Read every shard of ``folder`` (DejavuError when there are none or they are foreign)."""
        folder = Path(folder)
        paths = sorted(folder.glob("shard_*.npz"))
        if not paths:
            raise DejavuError(f"{folder}: no shard_*.npz files (generate data first)")
        sets = []
        for path in paths:
            try:
                with np.load(path, allow_pickle=False) as data:
                    meta = json.loads(bytes(data["__meta__"]).decode())
                    arrays = [data[a] for a in ARRAYS]
                    seen = data["seen"] if "seen" in data.files else None
            except KeyError as exc:
                raise DejavuError(f"{path}: not a dejavu recon data shard (missing {exc})") from None
            except (OSError, ValueError) as exc:  # also object arrays: refused, never unpickled
                raise DejavuError(f"{path}: not a readable recon data shard ({exc.__class__.__name__})") from None
            if meta.get("format") != FORMAT_NAME:
                raise DejavuError(f"{path}: format {meta.get('format')!r}, expected {FORMAT_NAME!r}")
            sets.append(MultiViewSet(*arrays, head=meta["head"], size=int(meta["size"]), seen=seen))
        return MultiViewSet.concat(sets)

    # -- batches -------------------------------------------------------------------------------
    def take(self, k: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
        """Samples (identity ``k[i]``, view ``v[i]``) as arrays: images (B, H, W, 3) uint8, masks (B, H, W)
        uint8, seen (B, H, W) uint8 or None, pose6 (B, 6), shape (B, Ns), expression (B, Ne), jaw (B, 3)."""
        return {"images": self.images[k, v], "masks": self.masks[k, v],
                "seen": None if self.seen is None else self.seen[k, v], "pose6": self.pose6[k, v],
                "shape": self.shape[k], "expression": self.expression[k, v], "jaw": self.jaw[k, v]}

    def sample(self, identities: int, views: int, rng: np.random.Generator, device: torch.device | str = "cpu",
               whiten: bool = False, pair_views: bool = True) -> dict[str, torch.Tensor]:
        """A batch of ``identities`` x ``views`` samples with random input/target view pairing.

        Each sample's input view and target view are drawn independently among its identity's valid
        views (``pair_views``; else the target is the input view itself, as for the paper's single-view
        real photos). Returns the tensors of :func:`make_batch`. Training draws its batches with
        ``dejavu.recon.sampler`` instead (epoch order, split over ranks).
        """
        ids = rng.choice(len(self), size=identities, replace=identities > len(self))
        k = np.repeat(ids, views)
        nv = self.n_views[k]
        v_in = (rng.random(len(k)) * nv).astype(np.int64)
        v_out = (rng.random(len(k)) * nv).astype(np.int64) if pair_views else v_in
        return make_batch(self, k, v_in, v_out, np.repeat(np.arange(identities), views), device, whiten)


def make_batch(source, k: np.ndarray, v_in: np.ndarray, v_out: np.ndarray, group: np.ndarray,
               device: torch.device | str = "cpu", whiten: bool = False) -> dict[str, torch.Tensor]:
    """Training tensors for samples (identity ``k``, input view ``v_in``, target view ``v_out``), all (B,).

    ``source`` is anything with ``take(k, v)`` (:class:`MultiViewSet`, ``dejavu.recon.shards.ShardedSet``).
    ``whiten``: real photos, background, clothes and neck to white (synthetic renders already are).
    Returns: input (B, 3, H, W) in [-1, 1], background white; target (B, H, W, 3) in [0, 1];
    target_mask (B, H, W, 1); target_seen (B, H, W, 1) (None when every pixel is: the loss takes no
    error where it is 0); pose6 (B, 6) of the target view; shape (B, Ns); params (the target view's
    :class:`~dejavu.head.params.HeadParams`: expression (B, Ne), jaw (B, 3), eyes at rest); group (B,) identity label within the batch (``group``).
    """
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), device=device)  # noqa: E731
    a_in = source.take(k, v_in)
    a_out = a_in if np.array_equal(v_in, v_out) else source.take(k, v_out)
    img_in = a_in["images"].astype(np.float32) / 255.0
    img_out = a_out["images"].astype(np.float32) / 255.0
    mask_in = a_in["masks"][..., None].astype(np.float32) / 255.0
    mask_out = a_out["masks"][..., None].astype(np.float32) / 255.0
    if whiten:
        img_in = img_in * mask_in + (1.0 - mask_in)
        img_out = img_out * mask_out + (1.0 - mask_out)
    seen = a_out["seen"]
    return {
        "input": t(img_in * 2.0 - 1.0).permute(0, 3, 1, 2).contiguous(),
        "target": t(img_out),
        "target_mask": t(mask_out),
        "target_seen": None if seen is None else t(seen[..., None].astype(np.float32) / 255.0),
        "pose6": t(a_out["pose6"].astype(np.float32)),
        "shape": t(a_out["shape"].astype(np.float32)),
        "params": HeadParams.of(a_out["expression"], a_out["jaw"], device=device),
        "group": torch.as_tensor(np.asarray(group, np.int64), device=device),
    }


# ---------------------------------------------------------------------------------------------
# Synthetic multi-view identities
# ---------------------------------------------------------------------------------------------

SKIN_LIGHT, SKIN_DARK = np.array([0.96, 0.80, 0.70]), np.array([0.36, 0.23, 0.16])
HAIR_COLOURS = np.array([[0.05, 0.04, 0.03], [0.20, 0.12, 0.07], [0.42, 0.28, 0.16], [0.80, 0.66, 0.42],
                         [0.55, 0.22, 0.10], [0.62, 0.60, 0.58]])
IRIS_COLOURS = np.array([[0.25, 0.14, 0.07], [0.12, 0.07, 0.04], [0.25, 0.40, 0.55], [0.30, 0.40, 0.25]])


def random_head_params(head: HeadModel, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random identity (N(0, 0.8) per component), sparse expression and jaw opening for ``n`` identities.

    Built-in heads (ARKit activations in [0, 1]) get ~15% of units active at U(0, 0.6); PCA heads
    (FLAME, procedural: ``expr_*`` names) get N(0, 0.5). Jaw: pitch U(0, 0.25) rad for half of them.
    """
    shape = rng.normal(0.0, 0.8, (n, head.n_shape))
    pca = not head.expr_names or all(name.startswith("expr") for name in head.expr_names)
    if pca:
        expression = rng.normal(0.0, 0.5, (n, head.n_expr))
    else:
        active = rng.random((n, head.n_expr)) < 0.15
        expression = active * rng.uniform(0.0, 0.6, (n, head.n_expr))
    jaw = np.zeros((n, 3))
    jaw[:, 0] = np.where(rng.random(n) < 0.5, rng.uniform(0.0, 0.25, n), 0.0)
    return {"shape": shape.astype(np.float32), "expression": expression.astype(np.float32), "jaw": jaw.astype(np.float32)}


def framed_cameras(landmarks: torch.Tensor, yaw: np.ndarray, pitch: np.ndarray, size: int,
                   iterations: int = 3) -> np.ndarray:
    """Cameras (B, 6) at the given angles framing the head like the tracker's FFHQ-style crop.

    Starts 1 m in front, then moves tx, ty, tz until the aligned crop of the projected landmarks
    (``dejavu.track.align.crop_params``, scale 1.2) is centred and fills the ``size`` x ``size`` image.

    Args:
        landmarks: (B, 478, 3) head-frame landmarks, metres. yaw, pitch: (B,) radians.
    """

    B = landmarks.shape[0]
    pose = np.zeros((B, 6))
    pose[:, 0], pose[:, 1], pose[:, 5] = yaw, pitch, 1.0
    f = focal_from_fov(DATA_FOV_DEG, size)
    K = intrinsics(size, size, DATA_FOV_DEG, batch=B)
    for _ in range(iterations):
        w2c = pose6_to_world_to_cam(torch.as_tensor(pose, dtype=torch.float32))
        px = project_points(landmarks.float().cpu(), w2c, K).numpy()
        cx, cy, half, _ = crop_params(px).T
        pose[:, 3] -= (cx - size / 2) * pose[:, 5] / f
        pose[:, 4] -= (cy - size / 2) * pose[:, 5] / f
        pose[:, 5] *= half / (size / 2)
    return pose.astype(np.float32)


def _smooth_noise(rng: np.random.Generator, n: int, S: int, channels: int, cells: int) -> torch.Tensor:
    """(n, channels, S, S) smooth noise in about [-1, 1]: bilinear upsampling of a cells x cells grid."""
    grid = torch.as_tensor(rng.uniform(-1.0, 1.0, (n, channels, cells, cells)), dtype=torch.float32)
    return torch.nn.functional.interpolate(grid, size=(S, S), mode="bicubic", align_corners=True).clamp(-1.5, 1.5)


def _landmark_texels(head, uvmap, indices: tuple[int, ...], radius_uv: float) -> torch.Tensor:
    """(S, S) bool: texels within ``radius_uv`` (UV units) of the UV positions of the given landmarks."""
    S = uvmap.size
    faces = head.landmark_faces[list(indices)]
    uv = torch.einsum("lkc,lk->lc", head.uv_coords[head.uv_faces[faces]], head.landmark_bary[list(indices)])
    centres = (torch.arange(S, dtype=torch.float32) + 0.5) / S
    u = centres[None, :].expand(S, S)
    v = 1.0 - centres[:, None].expand(S, S)
    d = torch.sqrt((u[None] - uv[:, 0, None, None]) ** 2 + (v[None] - uv[:, 1, None, None]) ** 2)
    return (d.min(0).values < radius_uv) & uvmap.mask.cpu()


@functools.lru_cache(maxsize=4)
def _feature_texels(head: HeadModel, uvmap: UVGaussianMap) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(1, 1, S, S) float 0/1 masks of the brow, lip and iris texels of ``uvmap``: fixed for a head and
    UV size, so built once per process (a data-preparation worker renders thousands of identities)."""
    radius = 0.5 / uvmap.size + 0.002
    parts = ((BROW_LANDMARKS, radius), (LIP_LANDMARKS, radius), (IRIS_LANDMARKS, radius + 0.003))
    return tuple(_landmark_texels(head, uvmap, indices, r).float()[None, None] for indices, r in parts)


def synthetic_uvmaps(head: HeadModel, uvmap: UVGaussianMap, vertices: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random appearances as full UV Gaussian maps (B, 13, S, S) on posed ``vertices`` (B, V, 3).

    Skin colour (light-dark mix) with smooth noise; hair on the scalp (colour, raised 0.2-1.5 cm along
    the normal, larger Gaussians; bald 10%); brows, lips, sclera, iris and mouth colours; Lambert
    shading from a random frontal light baked in. Gaussians are opaque, isotropic, sized to cover the
    texel spacing.
    """

    B, S = vertices.shape[0], uvmap.size
    base = uvmap.initial_map(vertices).detach().cpu()
    pos = base[:, XYZ]
    mask = uvmap.mask.cpu()
    region = uvmap.region.cpu()
    normals, spacing = normals_and_spacing(pos, mask)
    f = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731

    skin = f(SKIN_LIGHT + (SKIN_DARK - SKIN_LIGHT) * rng.beta(1.2, 1.8, (B, 1)) ** 1.0)  # (B, 3)
    skin = skin * f(rng.uniform(0.92, 1.08, (B, 3)))
    rgb = skin[:, :, None, None] * (1.0 + 0.07 * _smooth_noise(rng, B, S, 3, 6) + 0.04 * _smooth_noise(rng, B, S, 1, 16))
    hair = f(HAIR_COLOURS[rng.integers(0, len(HAIR_COLOURS), B)]) * f(rng.uniform(0.8, 1.2, (B, 1)))
    hair_rgb = hair[:, :, None, None] * (1.0 + 0.25 * _smooth_noise(rng, B, S, 1, 24))
    bald = f(rng.random(B) < 0.1)[:, None, None, None]
    scalp = (region == REGION_ID["scalp"]).float()[None, None] * (1.0 - bald)
    rgb = rgb * (1 - scalp) + hair_rgb * scalp
    brows, lips, iris = _feature_texels(head, uvmap)
    rgb = rgb * (1 - brows) + (0.6 * hair[:, :, None, None] + 0.4 * rgb * 0.5) * brows
    lip_rgb = rgb * f([1.0, 0.62, 0.62])[None, :, None, None] * f(rng.uniform(0.8, 1.0, (B, 1, 1, 1)))
    rgb = rgb * (1 - lips) + lip_rgb * lips
    eyes = (region == REGION_ID["eyes"]).float()[None, None]
    iris = iris * eyes
    rgb = rgb * (1 - eyes) + f([0.88, 0.86, 0.82])[None, :, None, None] * eyes
    iris_rgb = f(IRIS_COLOURS[rng.integers(0, len(IRIS_COLOURS), B)])[:, :, None, None]
    rgb = rgb * (1 - iris) + iris_rgb * iris
    mouth = (region == REGION_ID["mouth"]).float()[None, None]
    rgb = rgb * (1 - mouth) + f([0.30, 0.10, 0.10])[None, :, None, None] * mouth

    light = f(rng.normal(0.0, 1.0, (B, 3)) * [0.6, 0.4, 0.2] + [0.0, 0.3, 1.0])
    light = light / light.norm(dim=1, keepdim=True)
    ambient = f(rng.uniform(0.45, 0.65, (B, 1, 1, 1)))
    lambert = (normals * light[:, :, None, None]).sum(1, keepdim=True).clamp_min(0.0)
    lambert = torch.where(normals.norm(dim=1, keepdim=True) > 0, lambert, torch.full_like(lambert, 0.7))
    rgb = (rgb * (ambient + (1.0 - ambient) * lambert)).clamp(0.0, 1.0)

    out = base.clone()
    raise_m = f(rng.uniform(0.002, 0.015, (B, 1, 1, 1))) * (1.0 + 0.3 * _smooth_noise(rng, B, S, 1, 8))
    out[:, XYZ] = pos + normals * raise_m * scalp
    size = spacing * (1.0 + 1.5 * scalp)
    out[:, LOG_SCALE] = torch.log(size).expand(-1, 3, -1, -1)
    out[:, ROT] = 0.0
    out[:, OPACITY] = 5.0
    out[:, COLOR] = (rgb - 0.5) / SH_C0
    return out


@functools.lru_cache(maxsize=2)
def synthetic_head(head_spec: str, uv_size: int, device: str) -> tuple[HeadModel, UVGaussianMap]:
    """(head, UV map) for synthetic rendering, built once per process with the UV map's fixed feature
    masks: a data-preparation worker renders many units with them."""

    head = load_head(head_spec, torch.device(device))
    uvmap = UVGaussianMap(head, uv_size).to(device)
    _feature_texels(head, uvmap)
    return head, uvmap


def generate_synthetic(head_spec: str, n_identities: int, n_views: int, size: int, uv_size: int,
                       seed: int | tuple[int, ...] = 0, max_yaw_deg: float = 45.0, max_pitch_deg: float = 15.0, chunk: int = 8,
                       backend: str = "auto", device: torch.device | str = "cpu", progress: bool = True) -> MultiViewSet:
    """Render ``n_identities`` random identities from ``n_views`` cameras each (white background).

    View 0 is frontal-ish (|yaw| <= 10 deg); the others are uniform in yaw/pitch. Each identity keeps
    one expression and jaw over its views (one moment seen by several cameras). ``seed``: an int or a
    tuple (numpy seed sequence; a work unit's ``(seed, unit)``).
    """
    from tqdm import tqdm


    rng = np.random.default_rng(seed)
    head, uvmap = synthetic_head(head_spec, uv_size, str(device))
    parts = []
    bar = tqdm(total=n_identities, desc="synthetic identities", disable=not progress, unit="id")
    for lo in range(0, n_identities, chunk):
        n = min(chunk, n_identities - lo)
        params = random_head_params(head, n, rng)
        tt = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        with torch.no_grad():
            verts = head(shape=tt(params["shape"]), expression=tt(params["expression"]), jaw=tt(params["jaw"]))
            maps = synthetic_uvmaps(head, uvmap, verts, rng).to(device)
            g = uvmap.to_gaussians(maps)
            yaw = rng.uniform(-1, 1, (n, n_views)) * math.radians(max_yaw_deg)
            yaw[:, 0] *= 10.0 / max(max_yaw_deg, 10.0)
            pitch = rng.uniform(-1, 1, (n, n_views)) * math.radians(max_pitch_deg)
            lms = head.landmarks(verts).repeat_interleave(n_views, 0)
            pose = framed_cameras(lms, yaw.reshape(-1), pitch.reshape(-1), size)
            rep = lambda x: x.repeat_interleave(n_views, 0)  # noqa: E731
            w2c = pose6_to_world_to_cam(tt(pose))
            K = intrinsics(size, size, DATA_FOV_DEG, batch=n * n_views, device=device)
            r = render(rep(g.means), rep(g.quats), rep(g.scales), rep(g.opacities), rep(g.colors), w2c, K, size, size,
                       backend=backend)
        images = (r.rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy().reshape(n, n_views, size, size, 3)
        masks = (r.alpha[..., 0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy().reshape(n, n_views, size, size)
        parts.append(MultiViewSet(
            images=images, masks=masks, pose6=pose.reshape(n, n_views, 6), shape=params["shape"],
            expression=np.repeat(params["expression"][:, None], n_views, 1),
            jaw=np.repeat(params["jaw"][:, None], n_views, 1), n_views=np.full(n, n_views, np.int32),
            head=head_spec, size=size))
        bar.update(n)
    bar.close()
    return MultiViewSet.concat(parts)


# ---------------------------------------------------------------------------------------------
# Real photos and videos (tracked once, cached as shards)
# ---------------------------------------------------------------------------------------------

def tracking_to_set(result: TrackResult, views: int | None = None) -> MultiViewSet:
    """A ``dejavu.track`` result (crops and masks on disk) -> one identity with its frames as views.

    ``views`` pads (repeating frame 0) or truncates to a fixed view count; ``n_views`` records the real one.
    """
    B = len(result)
    V = views or B
    n = min(B, V)
    pick = list(range(n)) + [0] * (V - n)
    images = np.stack([(result.load_crop(i) * 255 + 0.5).astype(np.uint8) for i in pick])
    masks = np.stack([result.load_mask(i).astype(np.uint8) * 255 for i in pick])
    known = [result.known(i) for i in pick]
    seen = None if all(a is None for a in known) else \
        np.stack([np.ones(masks.shape[1:], bool) if a is None else a for a in known]).astype(np.uint8)[None] * 255
    f = lambda a: np.asarray(a, dtype=np.float32)[pick][None]  # noqa: E731
    return MultiViewSet(images=images[None], masks=masks[None], pose6=f(result.pose6),
                        shape=np.asarray(result.shape, np.float32)[None], expression=f(result.expression),
                        jaw=f(result.jaw), n_views=np.array([n], np.int32), head=result.head_spec,
                        size=int(result.crop_size), seen=seen)


def _image_counts(root: Path) -> list[tuple[Path, int]]:
    """(folder, images directly in it) for ``root`` and every folder below it; a linked folder is counted
    but not entered. One directory listing per folder (LFW: 5,750 folders; each data worker lists them)."""
    out, todo = [], [(root, True)]
    while todo:
        folder, enter = todo.pop()
        n = 0
        with os.scandir(folder) as entries:
            for e in entries:
                if e.is_dir():
                    if enter:
                        todo.append((Path(e.path), not e.is_symlink()))
                elif e.is_file() and is_image(e.name):
                    n += 1
        out.append((folder, n))
    return out


def photo_groups(folders: list[str], max_groups: int, min_images: int = 1) -> list[Path]:
    """Leaf folders holding photos of one person each (LFW layout: ``NAME/NAME_0001.jpg``), sorted and
    thinned evenly to ``max_groups``; folders with fewer than ``min_images`` photos are left out."""

    groups = []
    for f in folders:
        root = Path(f).expanduser()
        if not root.is_dir():
            raise DejavuError(f"data.real_dirs: {root} is not a folder")
        groups += sorted(d for d, n in _image_counts(root) if n >= min_images)
    if not groups:
        raise DejavuError(f"data.real_dirs {folders}: no folders with at least {min_images} images")
    if len(groups) > max_groups:
        groups = [groups[int(i)] for i in np.linspace(0, len(groups) - 1, max_groups)]
    return groups


def track_group(group: Path, head_spec: str, size: int, views: int, track_dir: str | Path,
                graphs: MediaPipeGraphs | None = None) -> MultiViewSet | None:
    """Track one person folder (shared identity, up to ``views`` photos) into ``track_dir/NAME`` as one
    identity (``dejavu.track`` reuses a finished result); None, with a log line, when no face is found.
    ``graphs``: MediaPipe graphs to reuse (a worker tracking many people builds them once)."""

    try:
        result = track(group, Path(track_dir) / group.name, head=head_spec, max_frames=views, crop_size=size,
                       overlay=False, progress=False, config=FitConfig(fov_deg=DATA_FOV_DEG), graphs=graphs)
    except DejavuError as exc:
        log.info("skipping %s: %s", group, exc)
        return None
    return tracking_to_set(result, views)


def track_photo_folders(folders: list[str], head_spec: str, size: int, max_groups: int, views: int,
                        track_dir: str | Path, min_images: int = 2, progress: bool = True) -> MultiViewSet:
    """Track each person folder (:func:`track_group`) into ``track_dir/NAME`` (an interrupted run
    resumes) and gather them. Folders where no face is found are skipped with a log line.
    """
    from tqdm import tqdm

    sets = []
    with MediaPipeGraphs() as graphs:
        for group in tqdm(photo_groups(folders, max_groups, min_images), desc="tracking people", disable=not progress):
            one = track_group(group, head_spec, size, views, track_dir, graphs)
            if one is not None:
                sets.append(one)
    if not sets:
        raise DejavuError(f"data.real_dirs {folders}: no face could be tracked")
    return MultiViewSet.concat(sets)


def gather_tracked(track_dir: str | Path, views: int) -> MultiViewSet:
    """Every finished tracking folder under ``track_dir`` (e.g. an interrupted :func:`track_photo_folders`
    run) as identities with ``views`` views each."""

    sets = []
    for d in sorted(p for p in Path(track_dir).iterdir() if is_tracking_dir(p)):
        sets.append(tracking_to_set(load_tracking(d), views))
    if not sets:
        raise DejavuError(f"{track_dir}: no finished tracking folders")
    return MultiViewSet.concat(sets)


def track_video_identities(video: str, head_spec: str, size: int, frames_per_identity: int, track_dir: str | Path,
                           max_frames: int | None = None, graphs: MediaPipeGraphs | None = None) -> MultiViewSet:
    """Track a video (one shared identity) and group consecutive frames into pseudo multi-view identities."""

    # the data format has one camera FOV (meta "fov_deg"): a video's is not estimated
    result = track(video, Path(track_dir) / Path(video).stem, head=head_spec, crop_size=size, overlay=False,
                   max_frames=max_frames, config=FitConfig(fov_deg=DATA_FOV_DEG), graphs=graphs)
    whole = tracking_to_set(result)
    V = frames_per_identity
    K = whole.views // V
    if K == 0:
        raise DejavuError(f"{video}: fewer tracked frames than data.video_frames_per_identity={V}")
    g = lambda x: x[0, : K * V].reshape(K, V, *x.shape[2:])  # noqa: E731
    return MultiViewSet(images=g(whole.images), masks=g(whole.masks), pose6=g(whole.pose6),
                        shape=np.repeat(whole.shape, K, 0), expression=g(whole.expression), jaw=g(whole.jaw),
                        n_views=np.full(K, V, np.int32), head=head_spec, size=size,
                        seen=None if whole.seen is None else g(whole.seen))

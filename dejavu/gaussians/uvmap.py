"""The UV Gaussian map (paper section 3.2): one Gaussian per valid texel of a head model's UV layout.

A map is a (B, 13, S, S) tensor (channels: :mod:`dejavu.gaussians.channels`). Its xyz channels hold
positions in metres (the mesh surface point of the texel plus learned offsets); the other channels
hold raw (pre-activation) parameters. :class:`UVGaussianMap` turns head-model vertices into the
initial map, adds network/personalization offsets, and activates valid texels into
:class:`Gaussians` ready for :func:`dejavu.render.render`.

Per-texel constants (method notes, and where this project chose):
    position_weight (position regulariser): 10 on face/ears/eyes, 0.1 on scalp, 1 on neck/other,
        0 in the mouth interior (its xyz offsets are frozen anyway) and on invalid texels.
    opacity_prior (initial logit): 1 on face, 0 on scalp/ears/mouth, 0.1 otherwise (eyes, neck, other).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dejavu.gaussians import channels as ch
from dejavu.head.base import REGION_ID, REGIONS, HeadModel
from dejavu.head.texels import texel_table
from dejavu.render import render

#: Position-regulariser weight per region (REGIONS order).
POSITION_WEIGHT = {"face": 10.0, "scalp": 0.1, "ears": 10.0, "eyes": 10.0, "mouth": 0.0, "neck": 1.0, "other": 1.0}
#: Initial opacity logit per region.
OPACITY_PRIOR = {"face": 1.0, "scalp": 0.0, "ears": 0.0, "eyes": 0.1, "mouth": 0.0, "neck": 0.1, "other": 0.1}


@dataclass
class Gaussians:
    """Activated Gaussian parameters for B frames of N Gaussians.

    means: (B, N, 3) metres, head/world frame. quats: (B, N, 4) wxyz, normalised.
    scales: (B, N, 3) metres. opacities: (B, N) in [0, 1]. colors: (B, N, 3) RGB >= 0.
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor

    @property
    def n(self) -> int:
        return self.means.shape[1]

    def frames(self, sl: slice | torch.Tensor) -> "Gaussians":
        """The Gaussians of frames ``sl`` (a slice or an index tensor over B)."""
        return Gaussians(self.means[sl], self.quats[sl], self.scales[sl], self.opacities[sl], self.colors[sl])

    def render(self, world_to_cam: torch.Tensor, K: torch.Tensor, width: int, height: int,
               background=None, backend: str = "auto"):
        """Render with :func:`dejavu.render.render` (world_to_cam (B, 4, 4), K (B, 3, 3)) -> RenderOutput."""

        return render(self.means, self.quats, self.scales, self.opacities, self.colors,
                      world_to_cam, K, width, height, background=background, backend=backend)


class UVGaussianMap(nn.Module):
    """A head model's UV layout rasterized at S x S, with the map <-> Gaussians conversions.

    Args:
        head: the :class:`HeadModel` whose UV layout and faces define the texels.
        size: S, the map's side in texels (paper: 320).

    Example:
        >>> from dejavu.head import load_head
        >>> head = load_head("procedural")
        >>> uvmap = UVGaussianMap(head, 64)
        >>> g = uvmap.gaussians(head(batch_size=2))  # Gaussians with means (2, uvmap.n_gaussians, 3)
    """

    def __init__(self, head: HeadModel, size: int):
        super().__init__()
        S = int(size)
        self.size = S
        self.head_name = head.name
        assets = head.assets
        table = texel_table(assets.uv_coords, assets.uv_faces, S)
        self.n_gaussians = len(table.flat_index)
        faces = np.asarray(assets.faces, dtype=np.int64)
        self.register_buffer("flat_index", torch.as_tensor(table.flat_index), persistent=False)  # (N,)
        self.register_buffer("texel_face", torch.as_tensor(table.face), persistent=False)  # (N,)
        self.register_buffer("texel_verts", torch.as_tensor(faces[table.face]), persistent=False)  # (N, 3)
        self.register_buffer("texel_bary", torch.as_tensor(table.bary, dtype=torch.float32), persistent=False)
        region = np.full(S * S, -1, dtype=np.int64)
        region[table.flat_index] = np.asarray(assets.face_region, dtype=np.int64)[table.face]
        region = region.reshape(S, S)
        mask = region >= 0
        lookup = lambda d: np.array([d[r] for r in REGIONS] + [0.0], dtype=np.float32)[region]  # noqa: E731
        self.register_buffer("mask", torch.as_tensor(mask), persistent=False)
        self.register_buffer("region", torch.as_tensor(region), persistent=False)
        self.register_buffer("mouth_mask", torch.as_tensor(region == REGION_ID["mouth"]), persistent=False)
        self.register_buffer("position_weight", torch.as_tensor(lookup(POSITION_WEIGHT))[None], persistent=False)
        self.register_buffer("opacity_prior", torch.as_tensor(lookup(OPACITY_PRIOR))[None], persistent=False)
        # Per-channel gain applied to offsets: xyz in network units (cm) -> metres, 0 in the mouth.
        gain = torch.ones(ch.N_CHANNELS, S, S)
        gain[ch.XYZ] = ch.XYZ_UNIT_M * (~self.mouth_mask).float()
        self.register_buffer("offset_gain", gain, persistent=False)

    # -- gathers ------------------------------------------------------------------------------
    def texel_positions(self, vertices: torch.Tensor) -> torch.Tensor:
        """Surface points (B, N, 3) of the valid texels on ``vertices`` (B, V, 3)."""
        return self.texel_points(vertices).transpose(1, 2)

    def texel_points(self, vertices: torch.Tensor) -> torch.Tensor:
        """:meth:`texel_positions` channel-major: (B, 3, N), three gathers along contiguous vertex rows."""
        v = vertices.transpose(1, 2)  # (B, 3, V)
        bary = self.texel_bary.to(vertices.dtype)
        return sum(v[:, :, self.texel_verts[:, k]] * bary[:, k] for k in range(3))

    def scatter(self, values: torch.Tensor) -> torch.Tensor:
        """Per-Gaussian values (B, N, C) -> a map (B, C, S, S), 0 off the mask."""
        B, N, C = values.shape
        out = values.new_zeros(B, C, self.size * self.size)
        out[:, :, self.flat_index] = values.transpose(1, 2)
        return out.reshape(B, C, self.size, self.size)

    def gather(self, uvmap: torch.Tensor) -> torch.Tensor:
        """A map (B, C, S, S) -> per-Gaussian values (B, N, C) of the valid texels."""
        return self.texels(uvmap).transpose(1, 2)

    def texels(self, uvmap: torch.Tensor) -> torch.Tensor:
        """A map (B, C, S, S) -> the valid texels channel-major (B, C, N)."""
        B, C = uvmap.shape[:2]
        return uvmap.reshape(B, C, -1)[:, :, self.flat_index]

    # -- maps ---------------------------------------------------------------------------------
    def position_map(self, vertices: torch.Tensor) -> torch.Tensor:
        """UV position map (B, 3, S, S) metres: barycentric gather of ``vertices`` (B, V, 3); 0 off-mask."""
        return self.scatter(self.texel_positions(vertices))

    def initial_map(self, vertices: torch.Tensor) -> torch.Tensor:
        """Initial Gaussian map (B, 13, S, S): positions, log-scale -8.3533, identity rotation,
        opacity prior, black colour DC; 0 off-mask."""
        B = vertices.shape[0]
        S = self.size
        m = self.mask.to(vertices.dtype)
        parts = {
            "xyz": self.position_map(vertices),
            "log_scale": (ch.INIT_LOG_SCALE * m).expand(B, 3, S, S),
            "rot": vertices.new_zeros(B, 3, S, S),
            "opacity": self.opacity_prior.to(vertices.dtype).expand(B, 1, S, S),
            "color": (ch.INIT_COLOR_DC * m).expand(B, 3, S, S),
        }
        out = vertices.new_zeros(B, ch.N_CHANNELS, S, S)
        for name, sl in ch.CHANNELS.items():
            out[:, sl] = parts[name]
        return out

    def apply_offsets(self, base: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """base (B, 13, S, S) + offsets (B|1, 13, S, S); xyz offsets are in cm (x XYZ_UNIT_M) and
        zeroed in the mouth interior."""
        return base + offsets * self.offset_gain.to(offsets.dtype)

    def to_gaussians(self, uvmap: torch.Tensor) -> Gaussians:
        """Activate the valid texels of ``uvmap`` (B, 13, S, S) into :class:`Gaussians`."""
        return self.activate(self.texels(uvmap))

    @staticmethod
    def activate(x: torch.Tensor) -> Gaussians:
        """Raw parameters channel-major (B, 13, N) (layout of :mod:`dejavu.gaussians.channels`, xyz in metres)
        -> :class:`Gaussians`. Channel-major because each channel is then one contiguous run per frame:
        the activations ran ~5x slower on (B, N, 13) slices, whose innermost run is 3 values."""
        rot = x[:, ch.ROT]  # the real part is 1, so the norm is >= 1
        inv = torch.rsqrt(1.0 + rot[:, 0] * rot[:, 0] + rot[:, 1] * rot[:, 1] + rot[:, 2] * rot[:, 2])[:, None]
        quats = torch.cat([inv, rot * inv], 1)  # sums over channels one by one: a strided norm cost ~4x more
        rows = lambda t: t.transpose(1, 2).contiguous()  # (B, C, N) -> (B, N, C)  # noqa: E731
        return Gaussians(
            means=rows(x[:, ch.XYZ]),
            quats=rows(quats),
            scales=rows(torch.exp(x[:, ch.LOG_SCALE])),
            opacities=torch.sigmoid(x[:, ch.OPACITY.start]),
            colors=rows((0.5 + ch.SH_C0 * x[:, ch.COLOR]).clamp_min(0.0)),
        )

    def gaussians(self, vertices: torch.Tensor, offsets: torch.Tensor | None = None) -> Gaussians:
        """vertices (B, V, 3) [+ offsets (B|1, 13, S, S)] -> :class:`Gaussians`."""
        base = self.initial_map(vertices)
        return self.to_gaussians(base if offsets is None else self.apply_offsets(base, offsets))

    def texel_gaussians(self, vertices: torch.Tensor, offsets: torch.Tensor) -> Gaussians:
        """vertices (B, V, 3) + per-texel offsets (B|1, 13, N) -> :class:`Gaussians`, without any S x S map.

        ``offsets`` are a map's valid texels (``texels`` of a (B|1, 13, S, S) offset map, network units);
        the result equals ``gaussians(vertices, map)`` up to float rounding. It is the fast path of
        :class:`dejavu.model.avatar_model.AvatarModel`: at UV 256 the maps are 1.4x the Gaussians, and
        building, offsetting and gathering them cost more than the rest of an animation frame's evaluation.
        """
        init, gain = self._texel_constants(vertices.dtype, vertices.device)
        x = torch.addcmul(init, offsets, gain)  # (B|1, 13, N)
        pos = self.texel_points(vertices)  # (B, 3, N)
        x = x.expand(pos.shape[0], -1, -1)
        return self.activate(torch.cat([pos + x[:, ch.XYZ], x[:, ch.XYZ.stop:]], 1))

    def _texel_constants(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The initial map's channels at the valid texels (13, N) (xyz 0: the surface point is added apart)
        and the offsets' per-channel gain there (13, N); cached per dtype and device."""
        key = (dtype, device)
        cache = self.__dict__.setdefault("_texel_cache", {})
        if key not in cache:
            vertices = torch.zeros(1, int(self.texel_verts.max()) + 1, 3, dtype=dtype, device=self.mask.device)
            init = self.initial_map(vertices)  # surface points at 0, so its xyz channels are 0
            cache[key] = (self.texels(init)[0].to(device), self.texels(self.offset_gain[None].to(dtype))[0].to(device))
        return cache[key]

    def region_share(self) -> dict[str, float]:
        """Fraction of valid texels per region name."""
        counts = torch.bincount(self.region[self.mask], minlength=len(REGIONS)).double()
        return {name: float(c / counts.sum().clamp_min(1)) for name, c in zip(REGIONS, counts)}

"""The avatar as a module: one definition of "the avatar at these parameters".

:class:`AvatarModel` owns the head model and the UV Gaussian map of an avatar and holds its learnt maps
as buffers (smplx-style: a module whose ``forward`` takes the driving parameters and returns geometry):

    vertices  = head(shape, vertex_offsets, expression, jaw, eyes, pose)          (B, V, 3) metres
    offsets   = mean + global delta                       (stage "global")
              = mean + sum_k w_k(expression) blendmap_k   (stage "full", when the avatar has blendmaps)
    gaussians = uvmap.texel_gaussians(vertices, offsets)  then the pose model's rigid correction

(evaluated at the UV map's valid texels only: the same as ``uvmap.gaussians`` on the full maps, faster)

Everything that renders, exports, evaluates or plays an avatar goes through :meth:`AvatarModel.forward`
(``dejavu.avatar.Avatar.model`` builds one from an avatar directory). Letters: B frames, Ne expression
components, K blendmaps, S UV side, N Gaussians, V vertices.
"""

from __future__ import annotations

import torch
from torch import nn

from dejavu.errors import DejavuError
from dejavu.gaussians.uvmap import Gaussians, UVGaussianMap
from dejavu.head.base import HeadModel
from dejavu.model.blend import BlendScheme, compose_delta
from dejavu.model.rigid import apply_rigid, predict_corrections

#: Which offsets :meth:`AvatarModel.offsets` uses: everything learnt, stage 1 only, or the mean alone.
STAGES = ("full", "global", "mean")
_BLEND_TENSORS = ("center", "basis", "scale", "lo", "hi")


class AvatarModel(nn.Module):
    """A person's avatar on a head model, ready to evaluate at any expression.

    Args:
        head: the head model the avatar was made on.
        uvmap: the UV Gaussian map of side S on that head.
        shape: (Ns,) identity coefficients.
        mean_offsets: (13, S, S) mean UV offsets (network units: xyz in cm).
        global_delta: (13, S, S) stage-1 delta, or None.
        blendmaps: (K, 13, S, S) stage-2 blendmaps, or None.
        blend: how expressions become blend weights (:class:`dejavu.model.blend.BlendScheme`).
        vertex_offsets: (V, 3) per-person rest-pose vertex offsets, metres, or None.
        pose_model: (6, K + 4) expression -> rigid correction (:mod:`dejavu.model.rigid`), or None.

    Buffers move with ``.to(device)``; the head model and UV map are submodules.
    """

    def __init__(self, head: HeadModel, uvmap: UVGaussianMap, shape: torch.Tensor, mean_offsets: torch.Tensor,
                 global_delta: torch.Tensor | None = None, blendmaps: torch.Tensor | None = None,
                 blend: BlendScheme | None = None, vertex_offsets: torch.Tensor | None = None,
                 pose_model: torch.Tensor | None = None):
        super().__init__()
        if uvmap.size != mean_offsets.shape[-1]:
            raise DejavuError(f"avatar: UV size {mean_offsets.shape[-1]} does not match the UV map's {uvmap.size}")
        check_identity(head, shape, vertex_offsets)
        self.head = head
        self.uvmap = uvmap
        blend = blend or BlendScheme()
        self.blend_kind, self.blend_k, self.blend_temperature = blend.kind, blend.k, blend.temperature
        device = head.v_template.device
        tensors = {"shape": shape, "mean_offsets": mean_offsets, "global_delta": global_delta,
                   "blendmaps": blendmaps, "vertex_offsets": vertex_offsets, "pose_model": pose_model,
                   **{f"blend_{n}": getattr(blend, n) for n in _BLEND_TENSORS}}
        for name, value in tensors.items():
            self.register_buffer(name, None if value is None else value.detach().float().to(device))

    # -- what the avatar holds --------------------------------------------------------------------
    @property
    def blend(self) -> BlendScheme:
        """The blend scheme, its arrays on this module's device."""
        return BlendScheme(kind=self.blend_kind, k=self.blend_k, temperature=self.blend_temperature,
                           **{n: getattr(self, f"blend_{n}") for n in _BLEND_TENSORS})

    @property
    def stage(self) -> str:
        """The most complete stage: "full" (blendmaps), "global" (stage-1 delta) or "mean"."""
        return "full" if self.blendmaps is not None else "global" if self.global_delta is not None else "mean"

    @property
    def n_expr(self) -> int:
        return self.head.n_expr

    @property
    def device(self) -> torch.device:
        return self.mean_offsets.device

    def identity(self) -> dict[str, torch.Tensor | None]:
        """The head-model keyword arguments of this person: shape (Ns,), vertex_offsets (V, 3) or None."""
        return {"shape": self.shape, "vertex_offsets": self.vertex_offsets}

    # -- evaluation -----------------------------------------------------------------------------
    def offsets(self, expression: torch.Tensor, stage: str = "full") -> torch.Tensor:
        """UV offsets (B, 13, S, S) = mean + delta(expression) for ``expression`` (B, Ne).

        stage: "full" (blendmaps if present, else the global delta), "global" (mean + global delta)
        or "mean" (reconstruction only).
        """
        out = self.mean_offsets.to(expression).expand(expression.shape[0], -1, -1, -1)
        delta = self._delta_term(stage)
        if delta == "blendmaps":
            return out + compose_delta(self.blend.weights(expression), self.blendmaps.to(expression))
        if delta == "global":
            return out + self.global_delta.to(expression)
        return out

    def texel_offsets(self, expression: torch.Tensor, stage: str = "full") -> torch.Tensor:
        """:meth:`offsets` at the UV map's valid texels only, channel-major: (B|1, 13, N) (1 when they do not
        depend on the expression), without building (B, 13, S, S) maps. The stored maps are gathered once
        and cached."""
        delta = self._delta_term(stage)
        mean, global_delta, blendmaps = self._texel_maps(expression.dtype)
        if delta == "blendmaps":
            K, C, N = blendmaps.shape
            return mean + (self.blend.weights(expression) @ blendmaps.reshape(K, C * N)).reshape(-1, C, N)
        if delta == "global":
            return mean + global_delta
        return mean

    def _delta_term(self, stage: str) -> str:
        """Which learnt delta ``stage`` adds to the mean offsets: "blendmaps", "global" or "none"."""
        if stage not in STAGES:
            raise ValueError(f"stage {stage!r}: expected one of {STAGES}")
        if stage == "full" and self.blendmaps is not None:
            return "blendmaps"
        if stage in ("full", "global") and self.global_delta is not None:
            return "global"
        return "none"

    def _texel_maps(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(1, 13, N) mean offsets, (1, 13, N) global delta or None, (K, 13, N) blendmaps or None at the valid
        texels; recomputed when a stored map changes (device, dtype, storage or in-place version)."""
        maps = (self.mean_offsets, self.global_delta, self.blendmaps)
        gather = lambda t: None if t is None else self.uvmap.texels(t.to(dtype).reshape(-1, *t.shape[-3:]))  # noqa: E731
        if any(t is not None and t.requires_grad for t in maps):  # a cached gather would hold a stale graph
            return tuple(gather(t) for t in maps)
        key = (dtype,) + tuple(None if t is None else (t.device, t.data_ptr(), t._version) for t in maps)
        cached = self.__dict__.get("_texel_cache")
        if cached is None or cached[0] != key:
            cached = (key, tuple(gather(t) for t in maps))
            self.__dict__["_texel_cache"] = cached
        return cached[1]

    def vertices(self, expression: torch.Tensor, jaw: torch.Tensor | None = None, eyes: torch.Tensor | None = None,
                 pose: torch.Tensor | None = None) -> torch.Tensor:
        """Posed head vertices (B, V, 3), metres, with this avatar's identity."""
        return self.head(**self.identity(), expression=expression, jaw=jaw, eyes=eyes, pose=pose)

    def forward(self, expression: torch.Tensor, jaw: torch.Tensor | None = None, eyes: torch.Tensor | None = None,
                pose: torch.Tensor | None = None, stage: str = "full") -> Gaussians:
        """Activated Gaussians of B frames.

        Args:
            expression: (B, Ne); jaw: (B, 3) radians; eyes: (B, 6) radians; pose: (B, 3) radians.
            stage: see :meth:`offsets`. Personalized stages ("full", "global") also get the rigid
                correction of the pose model when the avatar has one.
        """
        if expression.shape[-1] != self.head.n_expr:
            raise DejavuError(f"avatar: expressions have {expression.shape[-1]} components but head "
                              f"{self.head.name!r} has {self.head.n_expr}")
        g = self.uvmap.texel_gaussians(self.vertices(expression, jaw, eyes, pose), self.texel_offsets(expression, stage))
        if self.pose_model is not None and stage != "mean":
            g = apply_rigid(g, predict_corrections(self.pose_model, self.blend, expression, jaw))
        return g

    def neutral(self, n: int = 1, stage: str = "full") -> Gaussians:
        """The avatar at its neutral expression, ``n`` copies -> Gaussians (n frames)."""
        return self(torch.zeros(n, self.head.n_expr, device=self.device), stage=stage)

    @torch.no_grad()
    def center(self) -> tuple[float, float, float]:
        """Centre (metres, head frame) of the neutral head's bounding box: what cameras look at."""
        v = self.head(**self.identity(), batch_size=1)[0]
        c = (v.min(0).values + v.max(0).values) / 2
        return tuple(float(x) for x in c.cpu())


def check_identity(head: HeadModel, shape: torch.Tensor, vertex_offsets: torch.Tensor | None) -> None:
    """DejavuError when an identity (shape (Ns,), vertex_offsets (V, 3) or None) was made on another head."""
    if head.n_shape != shape.shape[0]:
        raise DejavuError(f"avatar: identity has {shape.shape[0]} coefficients but head "
                          f"{head.name!r} has {head.n_shape}; was it made with another head model?")
    if vertex_offsets is not None and vertex_offsets.shape[0] != head.n_verts:
        raise DejavuError(f"avatar: vertex_offsets has {vertex_offsets.shape[0]} vertices but head "
                          f"{head.name!r} has {head.n_verts}; was it made with another head model?")

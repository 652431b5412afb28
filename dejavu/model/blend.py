"""Blend weights and blendmap composition (paper section 3.4, stage 2).

A personalized avatar adds to its mean UV offsets a per-frame delta map
``delta = sum_k w_k * B_k`` over K blendmaps ``B`` (K, 13, S, S), with weights ``w`` (B, K) that sum
to 1. How ``w`` comes from the expression depends on the head model (the *scheme*):

- ``"softmax_first_k"`` (FLAME, the paper): ``w = softmax(expression[:, :K] / T)`` with ``T = 1``.
  FLAME expressions are PCA coefficients (about N(0, 1)), so their first K are the main modes.
- ``"pca_softmax"`` (built-in head and any head whose expressions are not PCA coefficients, e.g. the
  52 ARKit activations in [0, 1]): the activations are centred on the training video's mean and
  projected onto the top-K principal directions of the training video's expression codes, each
  projection divided by its standard deviation over the training frames (so every direction is
  about N(0, 1) over the video, like FLAME's coefficients), then ``w = softmax(z / T)`` with the
  temperature ``T = 2`` by default (:func:`default_temperature` says why). The basis, centre and
  scales are computed once from the tracked video (:func:`fit_pca_basis`) and stored in the avatar.
  With fewer than K independent directions the missing ones get zero projection (they then take a
  constant share of the weight).

Both schemes clamp the softmax inputs ``z`` to their range over the training frames (``lo``, ``hi``;
stored with the avatar; not in the paper). Blendmaps are only ever trained in mixtures, so a single one
is not constrained to look right on its own: an expression outside the training video's range (a
held-out frame looking further down, a driving video of someone else) would otherwise put most of the
weight on one blendmap and render it unmixed (shredded, needle-like Gaussians). Clamped, it gets the
weights of the nearest trained expression.

Letters: B frames, Ne expression components, K blendmaps, S UV side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SCHEMES = ("softmax_first_k", "pca_softmax")
DEFAULT_K = 10
PCA_TEMPERATURE = 2.0


@dataclass
class BlendScheme:
    """Everything that maps an expression (B, Ne) to blend weights (B, K).

    kind: one of :data:`SCHEMES`.
    k: number of blendmaps K.
    temperature: softmax temperature T (> 0); 1 reproduces the paper.
    center: (Ne,) mean expression of the training frames (``pca_softmax`` only).
    basis: (K, Ne) orthonormal principal directions (``pca_softmax`` only).
    scale: (K,) standard deviation of each projection over the training frames (``pca_softmax`` only).
    lo, hi: (K,) range of the softmax inputs over the training frames (None: not clamped; avatars
        made before the clamp existed).
    """

    kind: str = "softmax_first_k"
    k: int = DEFAULT_K
    temperature: float = 1.0
    center: torch.Tensor | None = None
    basis: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    lo: torch.Tensor | None = None
    hi: torch.Tensor | None = None

    def weights(self, expression: torch.Tensor) -> torch.Tensor:
        """Blend weights (B, K), each row summing to 1, from ``expression`` (B, Ne)."""
        return blend_weights(expression, self)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The scheme's arrays, for storage (empty for ``softmax_first_k``)."""
        out = {}
        for name in ("center", "basis", "scale", "lo", "hi"):
            value = getattr(self, name)
            if value is not None:
                out[f"blend_{name}"] = value.detach().cpu().float().contiguous()
        return out

    def meta(self) -> dict:
        return {"kind": self.kind, "k": self.k, "temperature": self.temperature}

    @classmethod
    def from_storage(cls, meta: dict, tensors: dict[str, torch.Tensor]) -> "BlendScheme":
        return cls(kind=meta["kind"], k=int(meta["k"]), temperature=float(meta.get("temperature", 1.0)),
                   center=tensors.get("blend_center"), basis=tensors.get("blend_basis"),
                   scale=tensors.get("blend_scale"), lo=tensors.get("blend_lo"), hi=tensors.get("blend_hi"))

    def inputs(self, expression: torch.Tensor) -> torch.Tensor:
        """The softmax inputs z (B, K) of ``expression`` (B, Ne), before clamping and temperature."""
        return blend_inputs(expression, self)

    def clamped_inputs(self, expression: torch.Tensor) -> torch.Tensor:
        """:meth:`inputs` clamped to the training range ``lo``/``hi`` (when stored) -> (B, K)."""
        z = blend_inputs(expression, self)
        if self.lo is not None and self.hi is not None:
            z = torch.maximum(torch.minimum(z, self.hi.to(z)), self.lo.to(z))
        return z

    def with_training_range(self, expressions: torch.Tensor) -> "BlendScheme":
        """This scheme with ``lo``/``hi`` set to the range of z over the training ``expressions`` (T, Ne)."""
        from dataclasses import replace

        z = self.inputs(expressions.detach().float().cpu())
        return replace(self, lo=z.min(dim=0).values, hi=z.max(dim=0).values)


def default_temperature(kind: str) -> float:
    """The softmax temperature a scheme uses unless told otherwise.

    ``softmax_first_k``: 1, the paper. ``pca_softmax``: 2. Its inputs are scaled to unit spread over
    the video in every one of the K directions, wider than FLAME's first K coefficients, whose later
    components are small; at T = 1 a typical frame put most of its weight on one or two blendmaps,
    each then trained on a few expressions only, and held-out frames scored worse (5-minute runs,
    whole-image PSNR at T = 1 / 2 / 3: liveportrait_d3 21.78 / 22.78 / 22.61 dB, metrical_wojtek
    25.05 / 25.42 / 24.90; docs/PERSONALIZATION.md).
    """
    if kind not in SCHEMES:
        raise ValueError(f"unknown blend scheme {kind!r}; expected one of {SCHEMES}")
    return 1.0 if kind == "softmax_first_k" else PCA_TEMPERATURE


def default_scheme_kind(head_name: str) -> str:
    """The paper's scheme for FLAME heads, the PCA scheme for everything else."""
    return "softmax_first_k" if head_name.lower().startswith("flame") else "pca_softmax"


def blend_inputs(expression: torch.Tensor, scheme: BlendScheme) -> torch.Tensor:
    """Expression (B, Ne) -> the softmax inputs z (B, K), unclamped (see module docstring)."""
    if scheme.kind == "softmax_first_k":
        z = expression[:, : scheme.k]
        if z.shape[1] < scheme.k:  # heads with fewer than K expression components: pad with zeros
            z = torch.cat([z, z.new_zeros(z.shape[0], scheme.k - z.shape[1])], dim=1)
    elif scheme.kind == "pca_softmax":
        if scheme.basis is None or scheme.center is None or scheme.scale is None:
            raise ValueError("pca_softmax blend scheme needs center, basis and scale (fit_pca_basis)")
        basis, center, scale = (t.to(expression) for t in (scheme.basis, scheme.center, scheme.scale))
        z = (expression - center) @ basis.T / scale
    else:
        raise ValueError(f"unknown blend scheme {scheme.kind!r}; expected one of {SCHEMES}")
    return z


def blend_weights(expression: torch.Tensor, scheme: BlendScheme) -> torch.Tensor:
    """Expression (B, Ne) -> blend weights (B, K) summing to 1 per row (see module docstring)."""
    return torch.softmax(scheme.clamped_inputs(expression) / scheme.temperature, dim=-1)


def fit_pca_basis(expressions: torch.Tensor, k: int = DEFAULT_K, temperature: float = PCA_TEMPERATURE) -> BlendScheme:
    """A ``pca_softmax`` scheme from the training frames' expressions (T, Ne).

    The top-k right singular vectors of the centred codes are the directions; each projection's
    standard deviation over the frames is its scale (floored at 1e-3 so flat directions stay finite).
    """
    x = expressions.detach().float().cpu()
    center = x.mean(dim=0)
    xc = x - center
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)  # (min(T, Ne), Ne)
    basis = torch.zeros(k, x.shape[1])
    n = min(k, vh.shape[0])
    basis[:n] = vh[:n]
    # Fix each direction's sign so that the mean absolute projection's largest entry is positive
    # (deterministic across runs).
    flip = torch.sign(basis.sum(dim=1) + 1e-12)
    basis = basis * flip[:, None]
    scale = (xc @ basis.T).std(dim=0, unbiased=False).clamp_min(1e-3) if x.shape[0] > 1 else torch.ones(k)
    return BlendScheme(kind="pca_softmax", k=k, temperature=temperature, center=center, basis=basis, scale=scale)


def compose_delta(weights: torch.Tensor, blendmaps: torch.Tensor) -> torch.Tensor:
    """Per-frame delta maps (B, 13, S, S) = sum_k weights[:, k] * blendmaps[k].

    Args:
        weights: (B, K) blend weights.
        blendmaps: (K, 13, S, S) blendmaps (network units: xyz in cm).
    """
    return torch.einsum("bk,kchw->bchw", weights, blendmaps)

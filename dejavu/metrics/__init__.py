"""Image metrics (L1, PSNR, SSIM, MS-SSIM, LPIPS) and the pretrained LPIPS networks.

``from dejavu.metrics import evaluate_images, LPIPS``. LPIPS weights are converted once by
``python -m dejavu.metrics.weights fetch`` (run by ``make install``). Attributes load lazily so the
weights CLI starts without importing torch.
"""

from __future__ import annotations

import importlib

# (the function image.lpips is not re-exported: the name is the submodule dejavu.metrics.lpips)
_EXPORTS = {
    "METRIC_NAMES": "image", "evaluate_images": "image", "evaluate_predictions": "image", "l1": "image", "ms_ssim": "image",
    "mse": "image", "psnr": "image", "ssim": "image", "ssim_map": "image", "composite": "image",
    "LPIPS": "lpips", "get_lpips": "lpips",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"dejavu.metrics.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'dejavu.metrics' has no attribute {name!r}")

"""gsplat backend against the reference (runs only with a CUDA GPU)."""

from __future__ import annotations

import pytest
import torch

from .conftest import INPUTS, run_backend, make_scene

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cuda_matches_reference():
    s = make_scene(B=2, N=300, W=48, H=40, seed=7)
    ref, ref_grads = run_backend(s, "reference", background=(0.3, 0.5, 0.7))
    cuda = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in s.items()}
    out, grads = run_backend(cuda, "cuda", background=torch.tensor([0.3, 0.5, 0.7], device="cuda"),
                             upstream=torch.randn(2, 40, 48, 5, generator=torch.Generator().manual_seed(1)).cuda())
    for name in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(out, name).cpu(), getattr(ref, name), atol=1e-4, rtol=0)
    for name in INPUTS[:5]:
        r = ref_grads[name]
        torch.testing.assert_close(grads[name].cpu(), r, rtol=1e-2, atol=1e-3 * float(r.abs().max()))

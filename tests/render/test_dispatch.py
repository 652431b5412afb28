"""Backend selection and input validation of ``dejavu.render.render``."""

from __future__ import annotations

import pytest
import torch

from dejavu.errors import DejavuError
from dejavu.render import render

from .conftest import make_scene

ARGS = ("means", "quats", "scales", "opacities", "colors", "world_to_cam", "K")


def _call(s, **kw):
    return render(**{k: s[k] for k in ARGS}, width=s["width"], height=s["height"], **kw)


def test_bad_shape_names_the_argument():
    s = make_scene(B=2, N=5)
    s["quats"] = s["quats"][..., :3]
    with pytest.raises(DejavuError, match="quats must have shape"):
        _call(s, backend="reference")


def test_bad_backend_and_background():
    s = make_scene(B=2, N=5)
    with pytest.raises(DejavuError, match="backend 'opengl'"):
        _call(s, backend="opengl")
    with pytest.raises(DejavuError, match="background must have shape"):
        _call(s, backend="reference", background=torch.ones(3, 3))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_an_error():
    with pytest.raises(DejavuError, match="needs a CUDA GPU"):
        _call(make_scene(B=1, N=5), backend="cuda")


def test_auto_is_cpu_on_cpu_tensors(cpu_backend):
    s = make_scene(B=1, N=50, W=24, H=16)
    torch.testing.assert_close(_call(s, backend="auto").rgb, _call(s, backend="cpu").rgb)


def test_default_background_is_white():
    out = _call(make_scene(B=1, N=0, W=8, H=8), backend="reference")
    assert torch.equal(out.rgb, torch.ones(1, 8, 8, 3))

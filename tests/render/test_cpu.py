"""The CPU backend against the torch reference: images and every gradient, edge cases, a fit; each test
on both tile kernels (C/AVX2 and numba: the ``tile_kernels`` fixture)."""

from __future__ import annotations

import pytest
import torch

from dejavu.render import render

from .conftest import assert_backends_agree, make_scene, run_backend

pytestmark = pytest.mark.usefixtures("cpu_backend", "tile_kernels")


def test_random_scene_batch_of_cameras():
    assert_backends_agree(make_scene(B=3, N=400, W=48, H=40, seed=1), background=torch.rand(3, 3))


def test_dense_scene_early_termination():
    s = make_scene(B=1, N=600, W=32, H=32, seed=2, spread=0.01)
    s["opacities"] = 0.9 + 0.1 * s["opacities"]  # many opaque layers: pixels stop at T <= 1e-4
    s["scales"] = s["scales"] + 0.003
    ref, _ = run_backend(s, "reference")
    assert (ref.alpha > 1 - 1e-3).float().mean() > 0.01
    assert_backends_agree(s, background=(0.2, 0.4, 0.6))


def test_edge_cases():
    s = make_scene(B=2, N=120, W=36, H=28, seed=3)
    m, sc, o = s["means"], s["scales"], s["opacities"]
    m[:, 0:10, 2] = -1.5  # behind the camera (camera z = -0.5)
    m[:, 10:15, 2] = 0.995  # inside the near plane (camera z = 0.005)
    m[:, 15:25, 0] = 0.5  # far off-screen
    m[:, 25:30, 0] = 0.09  # straddling the image border (x/z clamp)
    sc[:, 30:40] = 1e-8  # degenerate: tiny (only the 0.3 px low-pass remains)
    sc[:, 40:45] = 0.2  # huge, 20 cm
    sc[:, 45:50, 0] = 1e-7  # flat
    o[:, 50:60] = 0.0  # fully transparent
    o[:, 60:65] = 0.003  # below 1/255
    assert_backends_agree(s)


def test_empty_scene_is_background():
    s = make_scene(B=2, N=0, W=20, H=12)
    out, grads = run_backend(s, "cpu", background=torch.tensor([[0.1, 0.2, 0.3], [1.0, 1.0, 1.0]]))
    torch.testing.assert_close(out.rgb[0, 3, 4], torch.tensor([0.1, 0.2, 0.3]))
    assert out.alpha.abs().max() == 0 and out.depth.abs().max() == 0
    assert grads["means"].shape == (2, 0, 3)


def test_float64_inputs():
    s = make_scene(B=1, N=100, W=24, H=24, seed=4, dtype=torch.float64)
    out, grads = run_backend(s, "cpu")
    assert out.rgb.dtype == torch.float64 and grads["means"].dtype == torch.float64
    ref, _ = run_backend(s, "reference")
    torch.testing.assert_close(out.rgb, ref.rgb, atol=1e-5, rtol=0)


def test_fit_target_image():
    """Adam on colours, opacities and means recovers a target image rendered from a known scene."""
    ts = make_scene(B=1, N=60, W=32, H=32, seed=5, spread=0.03)
    ts["scales"] = ts["scales"] + 0.003
    fixed = {k: ts[k] for k in ("quats", "scales", "world_to_cam", "K")}
    target = render(ts["means"], opacities=ts["opacities"], colors=ts["colors"], **fixed, width=32, height=32).rgb
    g = torch.Generator().manual_seed(6)
    colors = torch.rand(1, 60, 3, generator=g).requires_grad_(True)
    logit = torch.zeros(1, 60, requires_grad=True)
    means = (ts["means"] + 0.002 * torch.randn(1, 60, 3, generator=g)).requires_grad_(True)
    opt = torch.optim.Adam([{"params": [colors, logit], "lr": 0.05}, {"params": [means], "lr": 3e-4}])
    losses = []
    for _ in range(60):
        out = render(means, opacities=torch.sigmoid(logit), colors=colors, **fixed, width=32, height=32, backend="cpu")
        loss = (out.rgb - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


def test_transpose_is_the_colour_gradient():
    """render_transpose (one compositing pass on the CPU) = the reference's colour gradient of
    sum(rgb * v), for 4 channels at once, over a batch with edge cases and early termination."""
    from dejavu.render import render_transpose

    s = make_scene(B=2, N=300, W=40, H=36, seed=5)
    s["opacities"][:, :100] = 0.95  # opaque layers: early-terminated pixels must not count
    v = torch.randn(2, 36, 40, 4, generator=torch.Generator().manual_seed(2))
    args = [s[k] for k in ("means", "quats", "scales", "opacities", "world_to_cam", "K")] + [s["width"], s["height"]]
    fast = render_transpose(*args, v, backend="cpu")
    ref = render_transpose(*args, v, backend="reference")
    assert fast.shape == (2, 300, 4)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
    # Linear in the colours: <A c, v> = <c, A^T v>
    c = torch.rand(2, 300, 3)
    rgb = render(s["means"], s["quats"], s["scales"], s["opacities"], c, s["world_to_cam"], s["K"], s["width"],
                 s["height"], background=(0.0, 0.0, 0.0), backend="cpu").rgb
    torch.testing.assert_close((rgb * v[..., :3]).sum(), (c * fast[..., :3]).sum(), rtol=1e-4, atol=1e-4)


def test_depth_sort_is_a_stable_argsort():
    """The binning's radix sort of camera depths orders as a stable merge sort (ties by index), so each
    tile's list is front to back exactly as before; depths span the near to far planes."""
    import numpy as np

    from dejavu.render.cpu import _depth_order

    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 5000):
        keys = rng.uniform(0.01, 100.0, n).astype(np.float32)
        keys[: n // 3] = keys[n // 3: 2 * (n // 3)]  # ties
        keys[n // 2: n // 2 + 3] = np.float32(1.0)
        np.testing.assert_array_equal(_depth_order(keys), np.argsort(keys, kind="mergesort"))

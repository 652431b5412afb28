"""The C/AVX2 tile kernels (``dejavu.render.simd``) against the numba ones (test_cpu.py runs both against
the torch reference), and the fallback to numba. Comparisons skip where the C kernels cannot run."""

from __future__ import annotations

import pytest
import torch

from dejavu.bench.render import head_scene
from dejavu.render import config, cpu, render_transpose, simd

from .conftest import INPUTS, make_scene, run_backend


@pytest.fixture
def use(monkeypatch):
    """``use("simd")`` / ``use("numba")``: the tile kernels of the CPU backend's next calls (the test is
    skipped where the C kernels cannot run)."""
    def set_kernels(name: str) -> None:
        if name == "simd" and simd.kernels() is None:
            pytest.skip(f"C tile kernels unavailable: {simd.unavailable_reason()}")
        monkeypatch.setattr(config, "CPU_KERNELS", "numba" if name == "numba" else "auto")
        assert cpu.tile_kernels() == name

    return set_kernels


def _scenes() -> dict[str, tuple[dict, object]]:
    """The numba-vs-reference test scenes of test_cpu.py: (scene, background)."""
    dense = make_scene(B=1, N=600, W=32, H=32, seed=2, spread=0.01)
    dense["opacities"] = 0.9 + 0.1 * dense["opacities"]
    dense["scales"] = dense["scales"] + 0.003
    edge = make_scene(B=2, N=120, W=36, H=28, seed=3)
    m, sc, o = edge["means"], edge["scales"], edge["opacities"]
    m[:, 0:10, 2], m[:, 10:15, 2], m[:, 15:25, 0], m[:, 25:30, 0] = -1.5, 0.995, 0.5, 0.09
    sc[:, 30:40], sc[:, 40:45], sc[:, 45:50, 0] = 1e-8, 0.2, 1e-7
    o[:, 50:60], o[:, 60:65] = 0.0, 0.003
    batch_bg = torch.rand(3, 3, generator=torch.Generator().manual_seed(0))
    return {"batch": (make_scene(B=3, N=400, W=48, H=40, seed=1), batch_bg), "dense": (dense, (0.2, 0.4, 0.6)),
            "edges": (edge, None)}


@pytest.mark.usefixtures("cpu_backend")
@pytest.mark.parametrize("name", ["batch", "dense", "edges"])
def test_simd_matches_numba(name, use):
    """test_cpu.py's scenes (there both kernels meet the reference's tolerances): against the numba
    kernels, images within float rounding (2e-6) and every gradient within rtol 1e-4 + 1e-5 max|grad|."""
    scene, bg = _scenes()[name]
    use("simd")
    fast, fast_grads = run_backend(scene, "cpu", bg)
    use("numba")
    ref, ref_grads = run_backend(scene, "cpu", bg)
    for out in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(fast, out), getattr(ref, out), atol=2e-6, rtol=0, msg=out)
    for g in INPUTS:
        r = ref_grads[g]
        torch.testing.assert_close(fast_grads[g], r, rtol=1e-4, atol=1e-5 * float(r.abs().max()) + 1e-7, msg=g)


@pytest.mark.usefixtures("cpu_backend")
def test_simd_transpose_matches_numba(use):
    """The transpose of compositing (``v_pix`` in the forward kernel) with early-terminated pixels."""
    s = make_scene(B=2, N=300, W=40, H=36, seed=5)
    s["opacities"][:, :100] = 0.95
    v = torch.randn(2, 36, 40, 4, generator=torch.Generator().manual_seed(2))
    args = [s[k] for k in ("means", "quats", "scales", "opacities", "world_to_cam", "K")] + [s["width"], s["height"]]
    use("simd")
    fast = render_transpose(*args, v, backend="cpu")
    use("numba")
    ref = render_transpose(*args, v, backend="cpu")
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6 * float(ref.abs().max()))


@pytest.mark.usefixtures("cpu_backend")
def test_simd_threshold_flips_are_rare(use):
    """On the benchmark's head scene (20k Gaussians, 256^2, 2 frames) the two kernels' exps differ in the
    last bits, so a pixel may cross alpha >= 1/255 or T <= 1e-4 in one and not the other: such a pixel
    differs by up to ~1/255 times a colour. Allow a handful, everything else within float rounding."""
    use("simd")
    means, quats, scales, opac, colors, w2c, K = head_scene(20_000, 2, 256)
    fast = cpu.render_cpu(means, quats, scales, opac, colors, w2c, K, 256, 256, torch.ones(2, 3))
    use("numba")
    ref = cpu.render_cpu(means, quats, scales, opac, colors, w2c, K, 256, 256, torch.ones(2, 3))
    diff = torch.cat([(f - r).abs() for f, r in zip(fast, ref)], dim=-1).amax(-1)  # (B, H, W)
    assert int((diff > 1e-5).sum()) <= 5 and float(diff.max()) < 1e-2


def test_numba_kernels_forced(monkeypatch):
    monkeypatch.setattr(config, "CPU_KERNELS", "numba")
    assert cpu.tile_kernels() == "numba"
    monkeypatch.setattr(config, "CPU_KERNELS", "fast")
    with pytest.raises(ValueError, match="CPU_KERNELS"):
        cpu.tile_kernels()


def test_fallback_without_avx2(monkeypatch):
    monkeypatch.setattr(simd, "_cpu_supported", lambda: False)
    kernels, reason = simd._try_load()
    assert kernels is None and "AVX2" in reason


def test_fallback_without_compiler(monkeypatch, tmp_path):
    monkeypatch.setattr(simd, "_cpu_supported", lambda: True)
    monkeypatch.setenv("DEJAVU_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    kernels, reason = simd._try_load()
    assert kernels is None and "no C compiler" in reason


def test_built_library_needs_no_compiler(monkeypatch, tmp_path):
    if simd.kernels() is None:
        pytest.skip(simd.unavailable_reason())
    monkeypatch.setenv("DEJAVU_CACHE", str(tmp_path))
    assert simd._try_load()[0] is not None  # builds into tmp_path
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert simd._try_load()[0] is not None
    assert len(list((tmp_path / "render").glob("simd_raster-*.so"))) == 1


def test_fallback_on_build_error(monkeypatch, tmp_path):
    if simd.kernels() is None and "compiler" in simd.unavailable_reason():
        pytest.skip(simd.unavailable_reason())
    bad = tmp_path / "simd_raster.c"
    bad.write_text("this is not C\n")
    monkeypatch.setattr(simd, "_cpu_supported", lambda: True)
    monkeypatch.setattr(simd, "SOURCE", bad)
    monkeypatch.setenv("DEJAVU_CACHE", str(tmp_path / "cache"))
    kernels, reason = simd._try_load()
    assert kernels is None and "failed" in reason
    assert not list((tmp_path / "cache" / "render").glob("*.so"))  # nothing half-built left behind


def test_tile_loops_come_from_numbas_cache(tmp_path):
    """The loops calling the C kernels hold no function address, so a second process loads them from numba's cache
    instead of compiling them (~1.5 s a process when they held one)."""
    import json
    import subprocess
    import sys

    if simd.kernels() is None:
        pytest.skip(f"C tile kernels unavailable: {simd.unavailable_reason()}")
    script = (
        "import json, torch\n"
        "from dejavu.render import render, simd\n"
        "from dejavu.bench.render import head_scene\n"
        "sc = [t.requires_grad_(True) if i < 5 else t for i, t in enumerate(head_scene(200, 1, 32))]\n"
        "render(*sc[:5], sc[5], sc[6], 32, 32, backend='cpu').rgb.sum().backward()\n"
        "s = [simd._forward_loop.stats, simd._backward_loop.stats]\n"
        "print(json.dumps([[sum(x.cache_hits.values()), sum(x.cache_misses.values())] for x in s]))\n")
    runs = [json.loads(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                                      timeout=300).stdout.strip().splitlines()[-1]) for _ in range(2)]
    assert runs[1] == [[1, 0], [1, 0]], runs  # the second process: a hit for each loop, nothing compiled

"""The player in headless Chromium: its CPU runtime against Python for three heads and every stage, its GPU
program (read back from the GPU) against the CPU runtime and Python, and its Spark rendering on both paths
against the Python renderer (PSNR on the head region, with controls showing that the tolerance catches a
mirrored face, swapped colours, a missing blendmap and a missing head turn).

One page load serves every check (a Spark frame takes seconds on SwiftShader): the module fixture runs
it once and the tests read its results.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dejavu.gaussians import channels as ch
from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.render.camera import intrinsics, orbit_pose6, pose6_to_world_to_cam
from dejavu.web.pack import pack_arrays, quantized_avatar, write_pack
from tests.web.conftest import (
    flame_like_head,
    full_avatar,
    parameter_vectors,
    python_gaussians,
)

pytestmark = pytest.mark.slow
SIZE = 256
MIN_PSNR_DB = 25.0
# GPU program against its CPU twin: float32 arithmetic in another order and the GPU's exp / sqrt; measured on
# SwiftShader: 7e-7 relative at most (docs/experiments/2026-12-07-web-gpu.md).
GPU_RTOL = 1e-5


def _coloured_avatar(head, S: int):
    """A procedural-head avatar that looks like a surface: overlapping opaque Gaussians, red on the subject's
    left (+X), blue on the right, green growing upwards; every blendmap turns the face yellow."""
    from dejavu.avatar import Avatar
    from dejavu.model.blend import fit_pca_basis

    uvmap = UVGaussianMap(head, S)
    with torch.no_grad():
        pos = uvmap.position_map(head(batch_size=1))[0]  # (3, S, S) metres
    x, y = pos[0] / 0.075, (pos[1] + 0.11) / 0.22
    rgb = torch.stack([0.45 + 0.4 * (x > 0), 0.2 + 0.6 * y.clamp(0, 1), 0.45 + 0.4 * (x <= 0)])
    mean = torch.zeros(ch.N_CHANNELS, S, S)
    mean[ch.LOG_SCALE] = 2.9
    mean[ch.OPACITY] = 4.0
    mean[ch.COLOR] = (rgb - 0.5) / ch.SH_C0 - ch.INIT_COLOR_DC
    k = 4
    blend_maps = torch.zeros(k, ch.N_CHANNELS, S, S)
    blend_maps[:, ch.COLOR] = torch.tensor([1.2, 1.2, -1.6])[:, None, None]
    train = torch.rand(20, head.n_expr, generator=torch.Generator().manual_seed(3))
    return Avatar(head="procedural", uv_size=S, shape=torch.zeros(head.n_shape), mean_offsets=mean,
                  blendmaps=blend_maps, blend=fit_pca_basis(train, k=k).with_training_range(train)), uvmap


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) of HWC images over the (H, W) mask, with the project's metric."""
    from dejavu.metrics.image import psnr

    t = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32).permute(2, 0, 1)[None]  # noqa: E731
    return float(psnr(t(a), t(b), t(mask[..., None].astype(np.float32))))


def _python_render(avatar, head, uvmap, center, p: dict, turn=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Python's render of the page's default camera (20 degrees, 1 m in front of the head centre); ``turn`` rotates
    the Gaussians about the head origin as the page's head-pose control turns the splat object."""
    from dejavu.head.base import batch_rodrigues
    from dejavu.model.rigid import axis_angle_to_quat, quat_multiply

    t = lambda k: torch.tensor(p[k], dtype=torch.float32)[None]  # noqa: E731
    with torch.no_grad():
        g = avatar.model(head=head, uvmap=uvmap)(t("expression"), t("jaw"), t("eyes"), stage=p.get("stage", "full"))
        r = torch.tensor([turn], dtype=torch.float32)
        if any(turn):
            g.means = g.means @ batch_rodrigues(r).transpose(1, 2)
            g.quats = quat_multiply(axis_angle_to_quat(r)[:, None].expand_as(g.quats), g.quats)
        w2c = pose6_to_world_to_cam(orbit_pose6([0.0], center=center))
        out = g.render(w2c, intrinsics(SIZE, SIZE), SIZE, SIZE, background=(1.0, 1.0, 1.0), backend="reference")
    return out.rgb[0].clamp(0, 1).numpy(), out.alpha[0, ..., 0].numpy()  # as an image file shows it


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    from dejavu.head import load_head
    from dejavu.web.browser import decode_gaussians, run_page
    from dejavu.web.server import serve_in_thread
    from dejavu.web.site import build_site

    root = tmp_path_factory.mktemp("web")
    head = load_head("procedural")
    avatar, uvmap = _coloured_avatar(head, 64)
    avatar.save(root / "avatar")
    T = 9
    g = torch.Generator().manual_seed(5)
    recorded = {"expression": torch.rand(T, head.n_expr, generator=g).tolist(), "jaw": (0.1 * torch.rand(T, 3, generator=g)).tolist(),
                "pose6": [[0.1 * t, 0.0, 0.0, 0.0, 0.0, 1.0] for t in range(T)], "fps": 10}
    (root / "recorded.json").write_text(json.dumps(recorded))
    build_site(root / "avatar", root / "site", drives=[root / "recorded.json"], progress=False)
    # Extra packs: a FLAME-like head (pose correctives, softmax over the first K, float32 maps) and the
    # built-in head (52 ARKit units, PCA scheme, pose model, float16 maps).
    flame = flame_like_head()
    builtin = load_head("builtin")
    cases = {}
    for name, hd, spec, kind, precision, S, lo, hi in (
            ("flame_like", flame, "procedural", "softmax_first_k", "float32", 32, -2.0, 2.0),
            ("builtin", builtin, "builtin", "pca_softmax", "float16", 32, 0.0, 1.0)):
        um = UVGaussianMap(hd, S)
        av = full_avatar(hd, spec, S, kind=kind)
        write_pack(root / "site" / "packs" / name, *pack_arrays(av, hd, um, precision))
        cases[name] = (hd, um, quantized_avatar(av, precision), parameter_vectors(hd, 3, lo=lo, hi=hi))
    site_params = parameter_vectors(head, 3, lo=0.0, hi=1.0)
    shots = {
        "front": {"expression": [0.6, 0.2, 0.0, 0.3, 0.0, 0.0], "jaw": [0.15, 0.0, 0.0], "eyes": [0.0] * 6,
                  "head": [0.0, 0.0, 0.0], "stage": "full"},
        "turned": {"expression": [0.0] * 6, "jaw": [0.25, 0.0, 0.0], "eyes": [0.0] * 6, "head": [0.0, 0.6, 0.0],
                   "stage": "full"},
    }
    steps = [{"op": op, "params": p} for p in site_params for op in ("evaluate", "evaluateGpu")]
    for name, (_, _, _, params) in cases.items():
        steps.append({"op": "loadRuntime", "url": f"packs/{name}/avatar.json"})
        steps += [{"op": op, "params": p} for p in params for op in ("evaluateExtra", "evaluateExtraGpu")]
    steps.append({"op": "bench", "n": 10})
    steps.append({"op": "seek", "sequence": 1, "frame": 4})
    shots["front_cpu"] = shots["front"]
    for name, p in shots.items():
        if name == "front_cpu":  # the same frame through the CPU runtime and Spark's packed splats
            steps.append({"op": "setPath", "path": "cpu"})
        steps += [{"op": "show", "params": p}, {"op": "settle", "n": 8},
                  {"op": "screenshot", "path": str(root / f"{name}.png")}]
    server, url = serve_in_thread(root / "site")
    try:
        values = iter(run_page(f"{url}index.html?size={SIZE}", steps, size=SIZE))
    finally:
        server.shutdown()
    site_quant = quantized_avatar(avatar)
    # per case: (Python, CPU runtime, GPU program) for each parameter vector
    results = {"site": [(python_gaussians(site_quant, head, uvmap, p), decode_gaussians(next(values)),
                         decode_gaussians(next(values))) for p in site_params]}
    for name, (hd, um, av, params) in cases.items():
        assert next(values) == um.n_gaussians  # loadRuntime
        results[name] = [(python_gaussians(av, hd, um, p), decode_gaussians(next(values)),
                          decode_gaussians(next(values))) for p in params]
    results["bench"] = next(values)
    results["seek"] = (next(values), recorded)
    from dejavu.io import read_image

    center = avatar.model(head=head, uvmap=uvmap).center()
    for name, p in shots.items():
        if name == "front_cpu":
            assert next(values) == "cpu"  # setPath
        next(values), next(values), next(values)
        results[name] = (read_image(root / f"{name}.png"), p)
    results["render"] = lambda p, **kw: _python_render(site_quant, head, uvmap, center, p, **kw)
    return results


@pytest.mark.parametrize("case", ["site", "flame_like", "builtin"])
def test_page_gaussians_match_python(page, case):
    for ref, js, _ in page[case]:
        for name, want in ref.items():
            np.testing.assert_allclose(js[name].reshape(want.shape), want, rtol=1e-4,
                                       atol=1e-6 * np.abs(want).max(), err_msg=f"{case}: {name}")


@pytest.mark.parametrize("case", ["site", "flame_like", "builtin"])
def test_gpu_program_matches_cpu_runtime(page, case):
    """Every output of the GPU program (read back from the GPU), for every stage, against the CPU twin and Python."""
    stages = set()
    for (ref, cpu, gpu), stage in zip(page[case], ("full", "global", "mean")):
        stages.add(stage)
        for name, want in cpu.items():
            np.testing.assert_allclose(gpu[name], want, rtol=GPU_RTOL, atol=1e-6 * np.abs(want).max(),
                                       err_msg=f"{case}, stage {stage}: {name}, GPU against CPU")
            np.testing.assert_allclose(gpu[name].reshape(ref[name].shape), ref[name], rtol=1e-4,
                                       atol=1e-6 * np.abs(ref[name]).max(), err_msg=f"{case}: {name}, GPU against Python")
    assert stages == {"full", "global", "mean"}


def test_bench_reports_both_paths(page):
    bench = page["bench"]
    assert bench["n_gaussians"] == page["site"][0][0]["means"].shape[0]
    assert 0 < bench["cpu"]["frame"]["median_ms"] < 1e4  # (a step alone may read 0: Chromium's clock ticks 0.1 ms)
    # the page runs the WebAssembly kernel (Chromium has WebAssembly SIMD); the plain-JS engine is timed beside it
    assert bench["cpu"]["engine"] == "wasm" and set(bench["cpu"]["steps"]) == {"vertices", "kernel", "pack"}
    other = bench["cpu_other_engine"]
    assert other["engine"] == "js" and set(other["steps"]) == {"vertices", "offsets", "place"}
    assert 0 < other["evaluate"]["median_ms"] < 1e4
    gpu = bench["gpu"]
    assert 0 <= gpu["cpu"]["median_ms"] <= gpu["frame"]["median_ms"] < 1e4 and gpu["frame"]["median_ms"] > 0
    # per frame the GPU path uploads the posed vertices and a few uniforms, not the Gaussians
    assert gpu["upload_bytes"] < bench["cpu"]["upload_bytes"]


def test_playback_scrubs_to_the_recorded_frame(page):
    state, recorded = page["seek"]
    assert state["frame"] == 4 and state["scrub"] == 4
    np.testing.assert_allclose(state["expression"], recorded["expression"][4], atol=1e-5)
    np.testing.assert_allclose(state["jaw"], recorded["jaw"][4], atol=1e-5)
    np.testing.assert_allclose(state["head"], [0.0, 0.4, 0.0], atol=1e-5)  # yaw 0.4 rad: a turn about +Y


@pytest.mark.parametrize("shot_name", ["front", "front_cpu"])
def test_screenshot_matches_python_render(page, shot_name):
    """The default (GPU) path and the CPU path, each through Spark, against the Python render."""
    shot, p = page[shot_name]
    rgb, alpha = page["render"](p)
    head = alpha > 0.05
    assert shot.shape == rgb.shape and head.mean() > 0.1
    good = _psnr(shot, rgb, head)
    assert good >= MIN_PSNR_DB, f"page vs Python render: {good:.2f} dB on the head region"
    # What the tolerance must catch: a mirrored face, swapped colour channels, a missing blendmap.
    assert _psnr(shot, rgb[:, ::-1], head | head[:, ::-1]) < MIN_PSNR_DB
    assert _psnr(shot, rgb[..., ::-1], head) < MIN_PSNR_DB
    mean_only, _ = page["render"]({**p, "stage": "mean"})
    assert _psnr(shot, mean_only, head) < MIN_PSNR_DB


def test_head_turn_matches_python_render(page):
    shot, p = page["turned"]
    rgb, alpha = page["render"](p, turn=tuple(p["head"]))
    head = alpha > 0.05
    good = _psnr(shot, rgb, head)
    assert good >= MIN_PSNR_DB, f"turned head, page vs Python render: {good:.2f} dB"
    wrong_way, _ = page["render"](p, turn=(0.0, -p["head"][1], 0.0))
    assert _psnr(shot, wrong_way, head) < MIN_PSNR_DB

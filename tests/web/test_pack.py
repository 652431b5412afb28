"""The web pack: what it holds, its round trip, and the runtime against Python under Node (no browser)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from dejavu.errors import DejavuError
from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.web.browser import REPO
from dejavu.web.pack import pack_arrays, quantized_avatar, read_pack, write_pack
from tests.head.test_flame import _write as _write_fake_flame
from tests.head.test_flame import chumpy_stub  # noqa: F401 - the fixture, found by name
from tests.web.conftest import flame_like_head, full_avatar, parameter_vectors, python_gaussians


def test_round_trip_and_layout(tmp_path):
    head = flame_like_head()
    uvmap = UVGaussianMap(head, 16)
    avatar = full_avatar(head, "procedural", 16)
    meta, arrays = pack_arrays(avatar, head, uvmap)
    write_pack(tmp_path, meta, arrays)
    meta2, back = read_pack(tmp_path)
    assert set(back) == set(arrays)
    for name, a in arrays.items():
        np.testing.assert_array_equal(back[name], a, err_msg=name)
    N, K = uvmap.n_gaussians, avatar.blend.k
    assert back["blendmaps"].shape == (N, 13, K) and back["blendmaps"].dtype == np.float16
    moving = back["expr_verts"].astype(np.int64)
    assert back["exprdirs"].shape == (head.n_expr, len(moving), 3)
    np.testing.assert_array_equal(back["exprdirs"], head.exprdirs[moving].permute(2, 0, 1).numpy())
    still = np.setdiff1d(np.arange(head.n_verts), moving)
    assert len(still) and head.exprdirs[still].abs().max() == 0  # the vertices left out never move
    assert back["posedirs"].shape == tuple(head.posedirs.shape)
    # per-Gaussian maps are the UV maps gathered at the valid texels
    np.testing.assert_allclose(back["mean_offsets"].astype(np.float32),
                               uvmap.gather(avatar.mean_offsets[None])[0].half().float().numpy())
    assert meta2["stage"] == "full" and meta2["n_gaussians"] == N
    assert all(e["offset"] % 4 == 0 for e in meta2["arrays"].values())


def test_quantized_avatar_rounds_only_the_maps():
    head = flame_like_head()
    avatar = full_avatar(head, "procedural", 8)
    q = quantized_avatar(avatar)
    assert torch.equal(q.blendmaps, avatar.blendmaps.half().float())
    assert torch.equal(q.shape, avatar.shape) and torch.equal(q.pose_model, avatar.pose_model)
    assert quantized_avatar(avatar, "float32").blendmaps is avatar.blendmaps
    with pytest.raises(DejavuError, match="--precision"):
        quantized_avatar(avatar, "int8")


def test_bad_manifest_is_one_line_error(tmp_path):
    (tmp_path / "avatar.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DejavuError, match="not a dejavu web avatar"):
        read_pack(tmp_path)


def _node_matches_python(tmp_path, head, avatar, params, engine):
    """Evaluate web/src/runtime.js (the file the page bundles) under Node on ``engine`` ("wasm": the WebAssembly
    kernel, "js": plain JS); compare with Avatar.gaussians."""
    uvmap = UVGaussianMap(head, avatar.uv_size)
    write_pack(tmp_path, *pack_arrays(avatar, head, uvmap))
    (tmp_path / "params.json").write_text(json.dumps(params))
    script = f"""
import {{ readFileSync }} from "node:fs";
import {{ AvatarRuntime }} from "{(REPO / 'web' / 'src' / 'runtime.js').as_posix()}";
const m = JSON.parse(readFileSync("{tmp_path}/avatar.json"));
const b = readFileSync("{tmp_path}/avatar.bin");
const rt = new AvatarRuntime(m, b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength), {{ engine: "{engine}" }});
if (rt.engine !== "{engine}") throw new Error(`engine ${{rt.engine}}`);
const out = JSON.parse(readFileSync("{tmp_path}/params.json")).map((p) =>
  Object.fromEntries(Object.entries(rt.evaluate(p)).map(([k, v]) => [k, Array.from(v)])));
console.log(JSON.stringify(out));
"""
    (tmp_path / "run.mjs").write_text(script)
    res = subprocess.run(["node", str(tmp_path / "run.mjs")], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    ref_avatar = quantized_avatar(avatar)
    for p, js in zip(params, json.loads(res.stdout)):
        ref = python_gaussians(ref_avatar, head, uvmap, p)
        for name, want in ref.items():
            have = np.asarray(js[name], dtype=np.float32).reshape(want.shape)
            np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-6 * np.abs(want).max(),
                                       err_msg=f"{name} at stage {p['stage']}")


needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="no node found")


@needs_node
@pytest.mark.parametrize("engine", ["wasm", "js"])
def test_runtime_matches_python_under_node(tmp_path, engine):
    """FLAME-like procedural head (pose correctives), softmax over the first K, every stage."""
    head = flame_like_head()
    _node_matches_python(tmp_path, head, full_avatar(head, "procedural", 24, kind="softmax_first_k"),
                         parameter_vectors(head, 3, lo=-2, hi=2), engine)


@needs_node
@pytest.mark.parametrize("engine", ["wasm", "js"])
def test_runtime_matches_python_on_fake_flame(tmp_path, chumpy_stub, engine):
    """A FLAME head from the loader itself (fake files in FLAME's exact format: 300 identity and 100
    expression components, neck/jaw/eye joints, pose correctives, the appended mouth patch)."""
    from dejavu.head import HeadModel
    from dejavu.head.flame import load_flame_assets

    head = HeadModel(load_flame_assets(_write_fake_flame(tmp_path, chumpy_stub)))
    train = torch.randn(30, head.n_expr)
    _node_matches_python(tmp_path, head, full_avatar(head, "flame", 24, kind="softmax_first_k", training=train),
                         parameter_vectors(head, 3, lo=-2, hi=2), engine)

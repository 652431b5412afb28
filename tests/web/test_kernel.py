"""The runtime's WebAssembly SIMD kernel (web/src/kernel.js) against its plain-JS engine under Node, and the
fallback to plain JS where WebAssembly SIMD is missing or the pack does not suit the kernel."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from dejavu.gaussians.uvmap import UVGaussianMap
from dejavu.head import load_head
from dejavu.web.browser import REPO
from dejavu.web.pack import pack_arrays, write_pack
from tests.web.conftest import flame_like_head, full_avatar, parameter_vectors

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="no node found")
RUNTIME = (REPO / "web" / "src" / "runtime.js").as_posix()
# The kernel's float32 arithmetic (the JS engine's is float64, rounded to float32 when stored) and its exp: the
# tolerance of the GPU program against the same twin (test_browser.GPU_RTOL); measured: 0.2 of it at most.
RTOL = 1e-5


def _node(tmp_path, body: str, prelude: str = "") -> dict:
    """Run ``body`` under Node with ``rt`` the runtime of the pack in tmp_path; it prints one JSON value."""
    script = f"""{prelude}
import {{ readFileSync }} from "node:fs";
const {{ AvatarRuntime }} = await import("{RUNTIME}");
const m = JSON.parse(readFileSync("{tmp_path}/avatar.json"));
const b = readFileSync("{tmp_path}/avatar.bin");
const buf = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
const params = JSON.parse(readFileSync("{tmp_path}/params.json"));
const copy = (g) => Object.fromEntries(Object.entries(g).map(([k, v]) => [k, Array.from(v)]));
{body}
"""
    (tmp_path / "run.mjs").write_text(script)
    res = subprocess.run(["node", str(tmp_path / "run.mjs")], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _pack(tmp_path, head, avatar, params, precision="float16", temperature=None):
    write_pack(tmp_path, *pack_arrays(avatar, head, UVGaussianMap(head, avatar.uv_size), precision))
    if temperature is not None:
        meta = json.loads((tmp_path / "avatar.json").read_text())
        meta["blend"]["temperature"] = temperature
        (tmp_path / "avatar.json").write_text(json.dumps(meta))
    (tmp_path / "params.json").write_text(json.dumps(params))


def _engines_agree(tmp_path) -> dict:
    """Both engines on every parameter vector (one runtime, switched between engines); asserts they agree."""
    out = _node(tmp_path, """
const rt = new AvatarRuntime(m, buf);
const res = { engine: rt.engine, n: rt.N, frames: [] };
for (const p of params) {
  rt.setEngine("wasm"); const w = copy(rt.evaluate(p));
  rt.setEngine("js"); res.frames.push([w, copy(rt.evaluate(p)), Array.from(rt.slotWeights(p.expression, p.stage))]);
}
console.log(JSON.stringify(res));
""")
    assert out["engine"] == "wasm"
    for (wasm, js, _), p in zip(out["frames"], json.loads((tmp_path / "params.json").read_text())):
        for name, want in js.items():
            want = np.asarray(want, dtype=np.float32)
            have = np.asarray(wasm[name], dtype=np.float32)
            np.testing.assert_allclose(have, want, rtol=RTOL, atol=1e-6 * np.abs(want).max(), err_msg=f"{name}, stage {p['stage']}")
    return out


@pytest.mark.parametrize("precision", ["float16", "float32"])
def test_kernel_matches_js_engine(tmp_path, precision):
    """Built-in head (PCA scheme, pose model, stage-1 delta packed): every stage, both map precisions."""
    head = load_head("builtin")
    avatar = full_avatar(head, "builtin", 32)
    _pack(tmp_path, head, avatar, parameter_vectors(head, 6, lo=0.0, hi=1.0), precision)
    out = _engines_agree(tmp_path)
    assert out["n"] % 4 != 0  # the last block of 4 Gaussians is partly padding


def test_kernel_skips_zero_channels_and_zero_weights(tmp_path):
    """Channels that are 0 in every blendmap (xyz, rotation) are not stored; maps whose weight underflows to 0
    (a tiny temperature) are not read; both still match the JS engine."""
    head = flame_like_head()
    avatar = full_avatar(head, "procedural", 24, kind="softmax_first_k")
    avatar.blendmaps[:, 0:3] = 0
    avatar.blendmaps[:, 6:9] = 0
    params = parameter_vectors(head, 3, lo=-2, hi=2)
    _pack(tmp_path, head, avatar, params, "float16", temperature=1e-3)
    out = _engines_agree(tmp_path)
    full = [w for (_, _, w), p in zip(out["frames"], params) if p["stage"] == "full"]
    assert any(0 in w[1:] for w in full)  # some map was skipped


def test_blendshapes_match_js(tmp_path):
    """The wasm engine's blendshape sum (blendshapes.js) against the JS loop: all components, some at 0 (a count
    that is not a multiple of 4), none."""
    head = load_head("builtin")
    _pack(tmp_path, head, full_avatar(head, "builtin", 8), [])
    out = _node(tmp_path, """
const rt = new AvatarRuntime(m, buf), res = [];
for (const zeros of [[], [0, 5, 6, 30, 51], Array.from({ length: rt.Ne }, (_, e) => e)]) {
  const ex = Float64Array.from({ length: rt.Ne }, (_, e) => (zeros.includes(e) ? 0 : Math.sin(e + 1)));
  res.push([Array.from(rt.blendshapes.at(ex)), Array.from(rt.expressionSum(ex))]);
}
console.log(JSON.stringify(res));
""")
    for simd, js in out:
        js = np.asarray(js)
        np.testing.assert_allclose(simd, js, rtol=1e-5, atol=1e-6 * max(np.abs(js).max(), 1e-30))
    assert not np.any(out[2][0])


@pytest.mark.skipif(not (REPO / "node_modules" / "wabt").is_dir(), reason="node_modules/wabt is missing (npm ci)")
def test_assembler_matches_wat2wasm(tmp_path):
    """web/src/wasm.js assembles the kernel's modules (every stage, float16 and float32 maps) and the blendshapes'
    module to the bytes wabt's wat2wasm makes of the same text."""
    head = flame_like_head()
    avatar = full_avatar(head, "procedural", 16, kind="softmax_first_k")
    same = []
    for precision in ("float16", "float32"):
        d = tmp_path / precision
        d.mkdir()
        _pack(d, head, avatar, parameter_vectors(head, 3, lo=-2, hi=2), precision)
        same += _node(d, f"""
const {{ assemble }} = await import("{(REPO / 'web' / 'src' / 'wasm.js').as_posix()}");
const wabt = await (await import("{(REPO / 'node_modules' / 'wabt' / 'index.js').as_posix()}")).default();
const rt = new AvatarRuntime(m, buf), same = [];
const decl = (xs, kw) => xs.map(([n, t]) => `(${{kw}} ${{n}} ${{t}})`).join(" ");
for (const p of params) {{
  const w = rt.slotWeights(p.expression, p.stage), read = [];
  for (let s = 0; s < w.length; s++) if (w[s] !== 0) read.push(s);
  const mod = rt.kernel.source(read), f = mod.funcs[0];
  const wat = `(module (import "env" "memory" (memory ${{mod.pages}})) (func (export "run") ${{decl(f.params, "param")}}
  ${{decl(f.locals, "local")}}\n${{f.body}}\n))`;
  const ref = wabt.parseWat("kernel.wat", wat, {{ simd: true }}).toBinary({{}}).buffer;
  same.push([p.stage, Buffer.from(assemble(mod)).equals(Buffer.from(ref))]);
}}
const bs = rt.blendshapes.source(rt.blendshapes.row / 16), g = bs.funcs[0];
const wat = `(module (import "env" "memory" (memory ${{bs.pages}})) (func (export "run") ${{decl(g.params, "param")}}
  ${{decl(g.locals, "local")}}\n${{g.body}}\n))`;
same.push(["blendshapes", Buffer.from(assemble(bs)).equals(Buffer.from(wabt.parseWat("b.wat", wat, {{ simd: true }}).toBinary({{}}).buffer))]);
console.log(JSON.stringify(same));
""")
    assert {what for what, _ in same} == {"full", "global", "mean", "blendshapes"} and all(ok for _, ok in same), same


def test_falls_back_to_js_without_wasm_simd(tmp_path):
    head = flame_like_head()
    avatar = full_avatar(head, "procedural", 16, kind="softmax_first_k")
    _pack(tmp_path, head, avatar, parameter_vectors(head, 3, lo=-2, hi=2))
    body = """
const rt = new AvatarRuntime(m, buf);
let refused = null;
try { new AvatarRuntime(m, buf, { engine: "wasm" }); } catch (err) { refused = err.message; }
console.log(JSON.stringify({ engine: rt.engine, why: rt.kernelProblem, refused, g: copy(rt.evaluate(params[0])) }));
"""
    ref = _node(tmp_path, "const rt = new AvatarRuntime(m, buf, { engine: 'js' });\nconsole.log(JSON.stringify(copy(rt.evaluate(params[0]))));")
    for prelude in ("delete globalThis.WebAssembly;", "WebAssembly.validate = () => false;"):
        out = _node(tmp_path, body, prelude)
        assert out["engine"] == "js" and "SIMD" in out["why"] and "SIMD" in out["refused"]
        for name, want in ref.items():
            np.testing.assert_array_equal(out["g"][name], want)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_pack_with_infinite_maps_uses_js(tmp_path):
    """float16 inf does not decode in the kernel: such a pack evaluates in plain JS."""
    head = flame_like_head()
    avatar = full_avatar(head, "procedural", 16, kind="softmax_first_k")
    avatar.blendmaps[0, 3] = 1e6  # > 65504: inf in float16
    _pack(tmp_path, head, avatar, parameter_vectors(head, 1))
    out = _node(tmp_path, "const rt = new AvatarRuntime(m, buf);\nconsole.log(JSON.stringify([rt.engine, rt.kernelProblem]));")
    assert out == ["js", "a map holds inf or NaN"]

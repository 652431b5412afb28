// The avatar player page: the runtime (runtime.js) feeds Spark's splat renderer with three.js.
// Reads site.json (written by `dejavu web`): the avatar pack, the camera target, recorded sequences.
// Driving: sliders, recorded sequences / the expression sweep (play, pause, scrub) and a live
// WebSocket stream (`dejavu live`, page URL ?live=ws://127.0.0.1:PORT).
// Evaluation: on the GPU (gpu.js, a Spark splat source; the default where the context allows it) or on the
// CPU (runtime.js, then Spark's packed splats); ?eval=cpu forces the CPU path, ?engine=js its plain-JS engine
// (the WebAssembly SIMD kernel otherwise, where the browser runs it).
// Test hooks live on window.dejavu (tests/web drives them from headless Chromium).

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { SparkRenderer, SplatMesh, setPackedSplat } from "@sparkjsdev/spark";
import { loadAvatar } from "./runtime.js";
import { GpuAvatar, gpuUnsupported } from "./gpu.js";
import { buildControls, groupOf } from "./controls.js";
import { benchPaths } from "./bench.js";

const query = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

function encode(g) {
  return Object.fromEntries(Object.entries(g).map(([k, v]) => [k, b64(v)]));
}

function b64(typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

async function main() {
  const site = await (await fetch("site.json")).json();
  const rt = await loadAvatar(site.avatar, { engine: query.get("engine") || undefined });
  const N = rt.N;
  const state = {
    expression: new Float64Array(rt.Ne), jaw: [0, 0, 0], eyes: [0, 0, 0, 0, 0, 0], pose: [0, 0, 0], head: [0, 0, 0],
    stage: rt.stages[rt.stages.length - 1], dirty: true,
  };

  // -- renderer -------------------------------------------------------------------------------------
  const size = parseInt(query.get("size") || site.resolution || 512, 10);
  const canvas = $("view");
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: false, preserveDrawingBuffer: true });
  renderer.setPixelRatio(1);
  const scene = new THREE.Scene();
  const background = new THREE.Color(query.get("bg") || site.background || "#ffffff");
  scene.background = background;
  // dejavu's default camera (dejavu/render/camera.py): 20 degree field of view, 1 m in front of the
  // head centre; three.js shares the head frame's axes (+Y up, +Z out of the face).
  const camera = new THREE.PerspectiveCamera(site.fov_deg, 1, 0.05, 20);
  const target = new THREE.Vector3(...site.center);
  camera.position.set(target.x, target.y, target.z + site.distance_m);
  camera.lookAt(target);
  const spark = new SparkRenderer({ renderer });
  scene.add(spark);
  const controls = new OrbitControls(camera, canvas);
  controls.target.copy(target);
  controls.update();

  function resize(px) {
    renderer.setSize(px, px, false);
    canvas.style.width = canvas.style.height = `${px}px`;
    camera.aspect = 1;
    camera.updateProjectionMatrix();
  }
  resize(size);

  const maxTex = renderer.capabilities.maxTextureSize;
  const noGpu = gpuUnsupported(rt, maxTex);
  if (noGpu) console.warn(`evaluating on the CPU: ${noGpu}`);
  const meshes = {}; // "gpu" | "cpu" -> SplatMesh, made when first shown
  async function makeMesh(path) {
    if (path === "gpu") return new SplatMesh({ splats: new GpuAvatar(rt, maxTex) }).initialized;
    return new SplatMesh({
      constructSplats: (splats) => {
        const v = new THREE.Vector3(), s = new THREE.Vector3(1e-3, 1e-3, 1e-3), q = new THREE.Quaternion(), c = new THREE.Color();
        for (let i = 0; i < N; i++) splats.pushSplat(v, s, q, 0, c);
      },
    }).initialized;
  }
  let path = null, mesh = null, spareGpu = null;
  /** The GPU source on screen, else one kept for tests and benchmarks. */
  const gpuSource = () => (meshes.gpu ? meshes.gpu.splats : (spareGpu = spareGpu || new GpuAvatar(rt, maxTex)));
  async function usePath(p) {
    if (p === "gpu" && noGpu) throw new Error(`no GPU path: ${noGpu}`);
    if (!meshes[p]) meshes[p] = await makeMesh(p);
    if (mesh) scene.remove(mesh);
    path = p;
    mesh = meshes[p];
    scene.add(mesh);
    state.dirty = true;
  }
  await usePath(query.get("eval") === "cpu" || noGpu ? "cpu" : "gpu");

  let evalMs = 0, evalCount = 0;
  function placeHead() {
    // Head pose turns the whole splat object about the head origin, as a tracked camera does in Python.
    const [hx, hy, hz] = state.head, angle = Math.hypot(hx, hy, hz);
    if (angle > 0) mesh.quaternion.setFromAxisAngle(new THREE.Vector3(hx / angle, hy / angle, hz / angle), angle);
    else mesh.quaternion.identity();
  }

  /** Spark's packed splats from the CPU runtime's Gaussians (the CPU path's upload). */
  function packSplats(g, packed) {
    const { means: m, scales: sc, quats: q, opacities: o, colors: col } = g;
    for (let i = 0; i < N; i++) {
      setPackedSplat(packed, i, m[3 * i], m[3 * i + 1], m[3 * i + 2], sc[3 * i], sc[3 * i + 1], sc[3 * i + 2],
        q[4 * i + 1], q[4 * i + 2], q[4 * i + 3], q[4 * i], o[i], col[3 * i], col[3 * i + 1], col[3 * i + 2]);
    }
  }

  function update() {
    const t0 = performance.now();
    const p = { expression: state.expression, jaw: state.jaw, eyes: state.eyes, pose: state.pose, stage: state.stage };
    if (path === "gpu") mesh.splats.update(p);
    else {
      packSplats(rt.evaluate(p), mesh.packedSplats.packedArray);
      mesh.packedSplats.needsUpdate = true;
    }
    mesh.updateVersion();
    evalMs = 0.9 * evalMs + 0.1 * (performance.now() - t0);
    evalCount++;
    state.dirty = false;
  }

  // -- driving ------------------------------------------------------------------------------------------
  const ui = buildControls($("controls"), rt, state, site, () => { state.dirty = true; });
  const player = { seq: null, frame: 0, playing: false, t0: 0 };
  async function loadSequence(entry) {
    const data = await (await fetch(entry.file)).json();
    player.seq = data;
    player.frame = 0;
    $("scrub").max = String(data.expression.length - 1);
    $("scrub").value = "0";
    setFrame(0);
  }
  function setFrame(i) {
    const s = player.seq;
    if (!s) return;
    player.frame = Math.max(0, Math.min(s.expression.length - 1, i));
    const ex = s.expression[player.frame];
    for (let k = 0; k < rt.Ne; k++) state.expression[k] = k < ex.length ? ex[k] : 0;
    state.jaw = s.jaw[player.frame].slice();
    state.eyes = s.eyes[player.frame].slice();
    if (s.head_rotation) state.head = s.head_rotation[player.frame].slice();
    $("scrub").value = String(player.frame);
    $("frame").textContent = `${player.frame + 1} / ${s.expression.length}`;
    ui.refresh();
    state.dirty = true;
  }
  const seqSelect = $("sequence");
  for (const [i, entry] of site.sequences.entries()) {
    const opt = document.createElement("option");
    opt.value = String(i);
    opt.textContent = entry.name;
    seqSelect.appendChild(opt);
  }
  seqSelect.onchange = () => loadSequence(site.sequences[+seqSelect.value]);
  $("play").onclick = () => {
    if (!player.seq) return;
    player.playing = !player.playing;
    player.t0 = performance.now() - (player.frame / player.seq.fps) * 1000;
    $("play").textContent = player.playing ? "pause" : "play";
  };
  $("scrub").oninput = () => { player.playing = false; $("play").textContent = "play"; setFrame(+$("scrub").value); };
  if (site.sequences.length) await loadSequence(site.sequences[0]);
  $("bg").value = `#${background.getHexString()}`;
  $("bg").oninput = () => { scene.background = new THREE.Color($("bg").value); };
  $("size").value = String(size);
  $("size").onchange = () => resize(parseInt($("size").value, 10));
  const stageSelect = $("stage");
  for (const s of rt.stages) { const o = document.createElement("option"); o.value = o.textContent = s; stageSelect.appendChild(o); }
  stageSelect.value = state.stage;
  stageSelect.onchange = () => { state.stage = stageSelect.value; state.dirty = true; };

  // Live: parameters pushed by `dejavu live` ({expression, jaw, eyes, head_rotation, t_sent}).
  const live = { frames: 0, socket: null };
  const liveUrl = query.get("live");
  if (liveUrl) {
    const ws = new WebSocket(liveUrl);
    live.socket = ws;
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (!msg.expression) return;
      player.playing = false;
      for (let k = 0; k < rt.Ne; k++) state.expression[k] = msg.expression[k] || 0;
      if (msg.jaw) state.jaw = msg.jaw;
      if (msg.eyes) state.eyes = msg.eyes;
      if (msg.head_rotation) state.head = msg.head_rotation;
      live.frames++;
      state.dirty = true;
      $("live").textContent = `live: ${live.frames} frames`;
    };
    ws.onclose = () => { $("live").textContent = `live: closed after ${live.frames} frames`; };
  }

  // -- loop -----------------------------------------------------------------------------------------------
  let frames = 0, drawn = 0, fpsT = performance.now(), fps = 0;
  function tick(now) {
    if (player.playing && player.seq) {
      const f = Math.floor(((now - player.t0) / 1000) * player.seq.fps);
      if (f !== player.frame) setFrame(f % player.seq.expression.length);
      if (f >= player.seq.expression.length) player.t0 = now;
    }
    if (state.dirty) update();
    placeHead(); // cheap: an object transform, no re-evaluation
    controls.update();
    renderer.render(scene, camera);
    drawn++;
    frames++;
    if (now - fpsT > 500) {
      fps = (frames * 1000) / (now - fpsT);
      frames = 0;
      fpsT = now;
      $("fps").textContent = `${fps.toFixed(1)} fps · ${path === "cpu" ? `cpu (${rt.engine})` : path} evaluation ${evalMs.toFixed(1)} ms (CPU) · ${N} Gaussians`;
    }
    requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);

  // -- test hooks ---------------------------------------------------------------------------------------
  window.dejavu = {
    runtime: rt,
    groupOf,
    /** Another pack's runtime (tests compare heads the site's avatar does not use), with its GPU twin. */
    async loadRuntime(url) {
      this.extra = await loadAvatar(url);
      this.extraGpu = gpuUnsupported(this.extra, maxTex) ? null : new GpuAvatar(this.extra, maxTex);
      return this.extra.N;
    },
    /** Like evaluate(), on the runtime loadRuntime() made. */
    evaluateExtra(p) { return encode(this.extra.evaluate(p)); },
    /** Like evaluateGpu(), on the runtime loadRuntime() made. */
    async evaluateExtraGpu(p) { this.extraGpu.update(p); return encode(await this.extraGpu.readGaussians(renderer)); },
    /** Gaussians for parameters p, base64 float32 per field (the browser test compares them with Python). */
    evaluate(p) { return encode(rt.evaluate(p)); },
    /** The GPU program's Gaussians for parameters p, read back (same fields as evaluate()). */
    async evaluateGpu(p) {
      const gpu = gpuSource();
      gpu.update(p);
      const g = await gpu.readGaussians(renderer);
      state.dirty = true; // the displayed frame goes back to the page's own parameters
      return encode(g);
    },
    /** Show the GPU or the CPU path ("gpu" | "cpu"). */
    async setPath(p) { await usePath(p); await this.settle(2); return path; },
    get path() { return path; },
    /** Both paths timed over n frames with random expressions (web/src/bench.js). */
    bench(n = 50, stage = "full") {
      const out = benchPaths({ rt, gpu: noGpu ? null : gpuSource(), renderer, packSplats, n, stage });
      state.dirty = true;
      return out;
    },
    /** Set parameters (as the sliders do) and resolve after the next frames are drawn. */
    async show(p) {
      if (p.expression) for (let k = 0; k < rt.Ne; k++) state.expression[k] = p.expression[k] || 0;
      for (const key of ["jaw", "eyes", "pose", "head"]) if (p[key]) state[key] = p[key].slice();
      if (p.stage) state.stage = p.stage;
      player.playing = false;
      state.dirty = true;
      ui.refresh();
      return this.settle();
    },
    async settle(n = 3) {
      const start = drawn;
      while (drawn < start + n || state.dirty) await new Promise((r) => requestAnimationFrame(r));
    },
    /** Load sequence s (index into site.json's list), move to frame i as the scrub bar does; the state after. */
    async seek(s, i) {
      await loadSequence(site.sequences[s]);
      setFrame(i);
      await this.settle(2);
      return { frame: player.frame, expression: Array.from(state.expression), jaw: state.jaw, eyes: state.eyes,
        head: state.head, scrub: +$("scrub").value };
    },
    get liveFrames() { return live.frames; },
    get evalCount() { return evalCount; },
  };
  await window.dejavu.settle(2);
  document.title = "ready";
}

main().catch((err) => {
  console.error(err);
  document.title = `error: ${err.message}`;
  const box = document.getElementById("fps");
  if (box) box.textContent = `error: ${err.message}`;
});

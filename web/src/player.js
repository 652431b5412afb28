// The avatar player page: the runtime (runtime.js) feeds Spark's splat renderer with three.js.
// Reads site.json (written by `dejavu web`): the avatar pack, the camera target, recorded sequences.
// Driving: sliders, recorded sequences / the expression sweep (play, pause, scrub) and a live
// WebSocket stream (`dejavu live`, page URL ?live=ws://127.0.0.1:PORT).
// Test hooks live on window.dejavu (tests/web drives them from headless Chromium).

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { SparkRenderer, SplatMesh, setPackedSplat } from "@sparkjsdev/spark";
import { loadAvatar } from "./runtime.js";
import { buildControls, groupOf } from "./controls.js";

const query = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

function b64(typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

async function main() {
  const site = await (await fetch("site.json")).json();
  const rt = await loadAvatar(site.avatar);
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

  const mesh = new SplatMesh({
    constructSplats: (splats) => {
      const v = new THREE.Vector3(), s = new THREE.Vector3(1e-3, 1e-3, 1e-3), q = new THREE.Quaternion(), c = new THREE.Color();
      for (let i = 0; i < N; i++) splats.pushSplat(v, s, q, 0, c);
    },
  });
  scene.add(mesh);
  await mesh.initialized;

  let evalMs = 0, evalCount = 0;
  function placeHead() {
    // Head pose turns the whole splat object about the head origin, as a tracked camera does in Python.
    const [hx, hy, hz] = state.head, angle = Math.hypot(hx, hy, hz);
    if (angle > 0) mesh.quaternion.setFromAxisAngle(new THREE.Vector3(hx / angle, hy / angle, hz / angle), angle);
    else mesh.quaternion.identity();
  }

  function update() {
    const t0 = performance.now();
    const g = rt.evaluate({ expression: state.expression, jaw: state.jaw, eyes: state.eyes, pose: state.pose, stage: state.stage });
    evalMs = 0.9 * evalMs + 0.1 * (performance.now() - t0);
    evalCount++;
    const packed = mesh.packedSplats.packedArray;
    const { means: m, scales: sc, quats: q, opacities: o, colors: col } = g;
    for (let i = 0; i < N; i++) {
      setPackedSplat(packed, i, m[3 * i], m[3 * i + 1], m[3 * i + 2], sc[3 * i], sc[3 * i + 1], sc[3 * i + 2],
        q[4 * i + 1], q[4 * i + 2], q[4 * i + 3], q[4 * i], o[i], col[3 * i], col[3 * i + 1], col[3 * i + 2]);
    }
    mesh.packedSplats.needsUpdate = true;
    mesh.updateVersion();
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
      $("fps").textContent = `${fps.toFixed(1)} fps · evaluation ${evalMs.toFixed(1)} ms · ${N} Gaussians`;
    }
    requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);

  // -- test hooks ---------------------------------------------------------------------------------------
  window.dejavu = {
    runtime: rt,
    groupOf,
    /** Another pack's runtime (tests compare heads the site's avatar does not use). */
    async loadRuntime(url) { this.extra = await loadAvatar(url); return this.extra.N; },
    /** Like evaluate(), on the runtime loadRuntime() made. */
    evaluateExtra(p) {
      const g = this.extra.evaluate(p);
      return Object.fromEntries(Object.entries(g).map(([k, v]) => [k, b64(v)]));
    },
    /** Gaussians for parameters p, base64 float32 per field (the browser test compares them with Python). */
    evaluate(p) {
      const g = rt.evaluate(p);
      return Object.fromEntries(Object.entries(g).map(([k, v]) => [k, b64(v)]));
    },
    /** Median milliseconds per rt.evaluate over n calls with random expressions. */
    bench(n = 50, stage = "full") {
      const times = [], ex = new Float64Array(rt.Ne);
      for (let i = 0; i < n + 3; i++) {
        for (let k = 0; k < rt.Ne; k++) ex[k] = Math.random();
        const t0 = performance.now();
        rt.evaluate({ expression: ex, jaw: [0.1, 0, 0], stage });
        if (i >= 3) times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      // Reference measured in the same page: one copy of the blendmap bytes (a memory-bandwidth floor), so
      // figures from a loaded machine can be read as a ratio.
      const src = rt.arrays.blendmaps || rt.arrays.mean_offsets, dst = new Float32Array(src.length), ref = [];
      for (let i = 0; i < n + 3; i++) { const t0 = performance.now(); dst.set(src); if (i >= 3) ref.push(performance.now() - t0); }
      ref.sort((a, b) => a - b);
      return { median_ms: times[Math.floor(times.length / 2)], min_ms: times[0], n, n_gaussians: N,
        reference_copy_ms: ref[Math.floor(ref.length / 2)], reference_copy_bytes: src.byteLength };
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

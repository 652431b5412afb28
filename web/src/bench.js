// In-page benchmark of both evaluation paths (`dejavu bench web` drives it through window.dejavu.bench).
// CPU path: the steps of AvatarRuntime.evaluate() timed one by one on the runtime's engine (the WebAssembly
// kernel or plain JS) and on the other engine in the same frames, then the upload to Spark's packed splats
// (setPackedSplat for every Gaussian). GPU path: GpuAvatar.update() (head model, weights, pose correction,
// vertex texture and uniforms: the CPU side of a frame), then one run of the per-splat program over all N
// Gaussians waited for with a one-texel read (what a frame needs before Spark can sort and draw).

// Untimed frames first: V8 runs a function's baseline code (WebAssembly: Liftoff, about half the kernel's speed)
// until its optimized code, compiled in the background once the function is hot, is ready (tens of frames on
// a loaded machine); the figures are for the steady state a playing page is in.
const WARMUP = 20;
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const stats = (xs) => ({ median_ms: median(xs), min_ms: Math.min(...xs) });

/**
 * @param {{rt: object, gpu: object|null, renderer: object, packSplats: Function, n: number, stage: string}} o
 *   rt an AvatarRuntime, gpu its GpuAvatar (null: no GPU path here), packSplats(gaussians, Uint32Array) the
 *   page's CPU upload, n timed frames (after WARMUP untimed), stage "full" | "global" | "mean".
 * @returns {object} milliseconds (median_ms, min_ms) per path and step, bytes uploaded per frame. CPU path (cpu:
 *   the page's engine; cpu_other_engine: the other, null without a kernel): evaluate = the Gaussians, frame =
 *   evaluate + the upload to Spark. GPU path: cpu = GpuAvatar.update(), frame = update + the per-splat program
 *   over all Gaussians, finished.
 */
export function benchPaths({ rt, gpu, renderer, packSplats, n, stage }) {
  const ex = new Float64Array(rt.Ne), jaw = [0.1, 0, 0], N = rt.N;
  const packed = new Uint32Array(N * 4);
  // The page's engine and, when that is the WebAssembly kernel, the plain-JS engine on the same frames (each
  // frame both, in alternating order), so their ratio holds however loaded the machine is.
  const engines = rt.kernel ? [rt.engine, rt.engine === "wasm" ? "js" : "wasm"] : [rt.engine];
  const runs = Object.fromEntries(engines.map((e) => [e, { steps: {}, total: [] }]));
  const withPack = [], page = rt.engine;
  for (let i = 0; i < n + WARMUP; i++) {
    for (let k = 0; k < rt.Ne; k++) ex[k] = Math.random();
    for (const e of i % 2 ? engines.slice().reverse() : engines) {
      rt.setEngine(e);
      const { steps, ms } = timeEvaluate(rt, ex, jaw, stage);
      if (i < WARMUP) continue;
      for (const [k, v] of Object.entries(steps)) (runs[e].steps[k] = runs[e].steps[k] || []).push(v);
      runs[e].total.push(ms);
      if (e === page) {
        const t0 = performance.now();
        packSplats(rt.out, packed);
        const pack = performance.now() - t0;
        (runs[e].steps.pack = runs[e].steps.pack || []).push(pack);
        withPack.push(ms + pack);
      }
    }
  }
  rt.setEngine(page);
  const summary = (r) => ({ evaluate: stats(r.total), steps: Object.fromEntries(Object.entries(r.steps).map(([k, v]) => [k, median(v)])) });
  const cpu = { engine: page, ...summary(runs[page]), frame: stats(withPack), upload_bytes: packed.byteLength };
  const other = engines.length > 1 ? { engine: engines[1], ...summary(runs[engines[1]]) } : null;
  let gpuOut = null;
  if (gpu) {
    const side = [], frame = [];
    for (let i = 0; i < n + WARMUP; i++) {
      for (let k = 0; k < rt.Ne; k++) ex[k] = Math.random();
      const t0 = performance.now();
      gpu.update({ expression: ex, jaw, stage });
      const t1 = performance.now();
      gpu.generateAndWait(renderer);
      const t2 = performance.now();
      if (i >= WARMUP) { side.push(t1 - t0); frame.push(t2 - t0); }
    }
    const gl = renderer.getContext(), info = gl.getExtension("WEBGL_debug_renderer_info");
    gpuOut = { cpu: stats(side), frame: stats(frame), upload_bytes: gpu.uploadBytes,
      renderer: info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER) };
  }
  // Reference measured in the same page: one copy of the blendmap bytes (a memory-bandwidth floor), so figures
  // from a loaded machine can be read as a ratio.
  const src = rt.arrays.blendmaps || rt.arrays.mean_offsets, dst = new Float32Array(src.length), ref = [];
  for (let i = 0; i < n + WARMUP; i++) { const t0 = performance.now(); dst.set(src); if (i >= WARMUP) ref.push(performance.now() - t0); }
  return { n, n_gaussians: N, stage, cpu, cpu_other_engine: other, gpu: gpuOut, reference_copy_ms: median(ref), reference_copy_bytes: src.byteLength };
}

/** One AvatarRuntime.evaluate() on the runtime's engine, step by step: {steps: {name: ms}, ms: the total}. */
function timeEvaluate(rt, ex, jaw, stage) {
  const t0 = performance.now();
  const verts = rt.vertices(ex, jaw, null, null);
  const t1 = performance.now();
  if (rt.engine === "wasm") { // blend, placement, activations and pose correction in one kernel pass
    const w = rt.slotWeights(ex, stage), corr = rt.poseCorrection(ex, jaw, stage);
    rt.kernel.run(w, corr, corr && rt.centroid.at(verts, w));
    const t2 = performance.now();
    return { steps: { vertices: t1 - t0, kernel: t2 - t1 }, ms: t2 - t0 };
  }
  const off = rt.offsetsFor(ex, stage);
  const t2 = performance.now();
  const w = rt.slotWeights(ex, stage), corr = rt.poseCorrection(ex, jaw, stage);
  rt.place(verts, off, corr, corr && rt.centroid.at(verts, w)); // placement, activations, pose correction
  const t3 = performance.now();
  return { steps: { vertices: t1 - t0, offsets: t2 - t1, place: t3 - t2 }, ms: t3 - t0 };
}

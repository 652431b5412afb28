// The avatar runtime: the browser twin of dejavu.avatar.Avatar.gaussians() (Python is the reference;
// tests/web compares the two in headless Chromium). No three.js here: plain typed arrays in, typed arrays out.
//
// Per frame: head model forward (expression blendshapes, pose correctives, joints, linear blend
// skinning; dejavu/head/base.py), barycentric gather of texel positions (dejavu/gaussians/uvmap.py),
// offsets = mean + sum_k w_k blendmap_k with w = softmax(clamp(z) / T) (dejavu/personalize/blendmaps.py),
// activations, then the pose model's rigid correction (dejavu/personalize/pose.py).
// Two engines for the per-Gaussian work (blend, placement, activations, pose correction): a WebAssembly SIMD
// kernel (kernel.js, the default where the engine runs WebAssembly SIMD) and the plain-JS code below (the
// fallback, and the kernel's reference in tests/web); the head model and the blend weights are JS in both, but for
// the expression blendshapes' sum, SIMD on the wasm engine (blendshapes.js).
// Letters: V vertices, J joints, N Gaussians, Ne expression components, K blendmaps, S map slots.

import { Blendshapes } from "./blendshapes.js";
import { Centroid } from "./centroid.js";
import { C } from "./channels.js";
import { Kernel, kernelUnsupported } from "./kernel.js";

const NO_CORRECTION = { R: [1, 0, 0, 0, 1, 0, 0, 0, 1], t: [0, 0, 0], q: [1, 0, 0, 0] }; // place() without a pose model
const DTYPES = { float32: Float32Array, float16: null, int32: Int32Array, uint16: Uint16Array, uint8: Uint8Array };

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

let halfLut = null; // float16 bits -> float32, built once (64k entries)

/** Typed arrays of a pack (avatar.json manifest + avatar.bin bytes); float16 arrays decoded to Float32Array once. */
export function unpackArrays(manifest, buffer) {
  const out = {};
  for (const [name, e] of Object.entries(manifest.arrays)) {
    const count = e.shape.reduce((a, b) => a * b, 1);
    if (e.dtype === "float16") {
      const src = new Uint16Array(buffer, e.offset, count);
      if (!halfLut) {
        halfLut = new Float32Array(65536);
        for (let i = 0; i < 65536; i++) halfLut[i] = halfToFloat(i);
      }
      const lut = halfLut, dst = new Float32Array(count);
      for (let i = 0; i < count; i++) dst[i] = lut[src[i]];
      out[name] = dst;
    } else {
      const T = DTYPES[e.dtype];
      if (!T) throw new Error(`avatar.json: array ${name} has unsupported dtype ${e.dtype}`);
      out[name] = new T(buffer, e.offset, count);
    }
  }
  return out;
}

/** Axis-angle (3) -> row-major 3x3, as dejavu.head.base.batch_rodrigues (angle = |r + 1e-8|). */
export function rodrigues(rx, ry, rz, out = new Float64Array(9)) {
  const ax = rx + 1e-8, ay = ry + 1e-8, az = rz + 1e-8;
  const angle = Math.sqrt(ax * ax + ay * ay + az * az);
  const x = rx / angle, y = ry / angle, z = rz / angle;
  const c = Math.cos(angle), s = Math.sin(angle), t = 1 - c;
  // I + s K + (1 - c) K^2 with K = [[0,-z,y],[z,0,-x],[-y,x,0]]; K^2 = a a^T - |a|^2 I.
  const n2 = x * x + y * y + z * z;
  out[0] = 1 + t * (x * x - n2); out[1] = -s * z + t * x * y; out[2] = s * y + t * x * z;
  out[3] = s * z + t * x * y; out[4] = 1 + t * (y * y - n2); out[5] = -s * x + t * y * z;
  out[6] = -s * y + t * x * z; out[7] = s * x + t * y * z; out[8] = 1 + t * (z * z - n2);
  return out;
}

/** Axis-angle -> quaternion wxyz, as dejavu.personalize.pose.axis_angle_to_quat. */
function axisAngleQuat(rx, ry, rz) {
  const ax = rx + 1e-8, ay = ry + 1e-8, az = rz + 1e-8;
  const angle = Math.sqrt(ax * ax + ay * ay + az * az);
  const s = Math.sin(0.5 * angle) / angle;
  return [Math.cos(0.5 * angle), s * rx, s * ry, s * rz];
}

/**
 * out[i] = mean[i] + sum_{k in ks} w[k] * B[i * K + k] for i < n (blendmaps interleaved (N * 13, K)), unrolled
 * over the listed k: V8 runs the unrolled body about 4x faster than an inner loop over k, and it is the bulk of
 * a CPU frame. ks lists the maps whose weight is not exactly 0 (a softmax weight underflows to 0 far from the
 * training range); those are skipped, not multiplied by 0.
 */
function makeCompose(K, ks) {
  const ws = ks.map((k) => `const w${k} = w[${k}];`).join(" ");
  const terms = ks.map((k) => `w${k} * B[j + ${k}]`).join(" + ") || "0";
  // eslint-disable-next-line no-new-func
  return new Function("o", "mean", "B", "w", "n",
    `${ws} for (let i = 0, j = 0; i < n; i++, j += ${K}) o[i] = mean[i] + (${terms});`);
}

export class AvatarRuntime {
  /**
   * @param {object} manifest avatar.json of a web pack (dejavu/web/pack.py).
   * @param {ArrayBuffer} buffer avatar.bin.
   * @param {{engine?: "wasm" | "js"}} [options] the per-Gaussian engine (default: "wasm" where it runs).
   */
  constructor(manifest, buffer, { engine } = {}) {
    this.meta = manifest;
    this.buffer = buffer; // the pack's bytes (the GPU path uploads float16 maps as stored)
    const a = (this.arrays = unpackArrays(manifest, buffer));
    this.N = manifest.n_gaussians;
    this.V = manifest.n_verts;
    this.Ne = manifest.n_expr;
    this.J = manifest.joint_names.length;
    this.K = manifest.blend.k;
    this.jointIndex = Object.fromEntries(manifest.joint_names.map((n, i) => [n, i]));
    this.hasEyes = "eye_left" in this.jointIndex && "eye_right" in this.jointIndex;
    this.stages = ["mean"].concat(a.global_delta ? ["global"] : [], a.blendmaps ? ["full"] : []);
    this.prior = Float32Array.from(manifest.opacity_prior);
    // per Gaussian: whether its offsets move its mean (0 in frozen regions, else the xyz unit), its opacity prior
    this.gain = new Float64Array(this.N);
    this.gaussPrior = new Float32Array(this.N);
    for (let n = 0; n < this.N; n++) {
      const r = a.texel_region[n];
      this.gain[n] = manifest.xyz_frozen[r] ? 0 : manifest.constants.xyz_unit_m;
      this.gaussPrior[n] = this.prior[r];
    }
    // Work buffers (allocated once; evaluate() reuses them: no per-frame allocation).
    this.vShaped = new Float64Array(this.V * 3);
    this.verts = new Float32Array(this.V * 3);
    this.offsets = new Float32Array(this.N * C);
    this.out = {
      means: new Float32Array(this.N * 3), quats: new Float32Array(this.N * 4), scales: new Float32Array(this.N * 3),
      opacities: new Float32Array(this.N), colors: new Float32Array(this.N * 3),
    };
    this.z = new Float64Array(this.K);
    this.weights = new Float64Array(this.K);
    this.rv = new Float64Array(this.J * 3);
    this.R = Array.from({ length: this.J }, () => new Float64Array(9));
    this.W = Array.from({ length: this.J }, () => new Float64Array(12));
    this.Wflat = new Float64Array(this.J * 12);
    this.moved = new Float64Array(a.expr_verts.length * 3);
    this.exprActive = new Int32Array(this.Ne);
    this.composers = new Map(); // active blendmaps (e.g. "0,1,2") -> unrolled compose function
    // Map slots, in the order the GPU program and the kernel store them: the mean offsets, the K blendmaps, the
    // stage-1 delta; names[s] is slot s's array.
    const blend = a.blendmaps ? 1 : -1, global = a.global_delta ? 1 + (a.blendmaps ? this.K : 0) : -1;
    const names = ["mean_offsets"].concat(a.blendmaps ? Array(this.K).fill("blendmaps") : [], a.global_delta ? ["global_delta"] : []);
    this.slots = { blend, global, count: names.length, names };
    this.slotW = new Float64Array(names.length);
    this.centroid = new Centroid(this);
    this.jsOut = this.out;
    this.kernelProblem = engine === "js" ? "the JS engine was asked for" : kernelUnsupported(this);
    if (!this.kernelProblem) {
      try {
        this.kernel = new Kernel(this);
      } catch (err) {
        this.kernelProblem = err.message;
      }
    }
    if (this.kernel) {
      this.verts = this.kernel.verts; // the head model writes where the kernel reads (both engines read it)
      if (this.Ne && this.moved.length) this.blendshapes = new Blendshapes(a.exprdirs, this.Ne, this.moved.length);
    }
    if (engine === "wasm" && this.kernelProblem) throw new Error(`no WebAssembly engine: ${this.kernelProblem}`);
    this.setEngine(this.kernel ? "wasm" : "js");
  }

  /** Run the per-Gaussian work on "wasm" (the kernel) or "js"; evaluate() then returns that engine's arrays. */
  setEngine(name) {
    if (name === "wasm" && !this.kernel) throw new Error(`no WebAssembly engine: ${this.kernelProblem}`);
    this.engine = name;
    this.out = name === "wasm" ? this.kernel.out : this.jsOut;
  }

  /** Which offsets a stage uses: "blend" (mean + weighted blendmaps), "global" (mean + stage-1 delta) or "mean". */
  offsetKind(stage) {
    const a = this.arrays;
    if (stage === "full" && a.blendmaps) return "blend";
    if ((stage === "full" || stage === "global") && a.global_delta) return "global";
    return "mean";
  }

  /** Blend inputs z (K): the scheme's projection, clamped to the training range (BlendScheme.clamped_inputs). */
  clampedInputs(expression) {
    const { K } = this, a = this.arrays, b = this.meta.blend, z = this.z;
    if (b.kind === "softmax_first_k") {
      for (let k = 0; k < K; k++) z[k] = k < expression.length ? expression[k] : 0;
    } else if (b.kind === "pca_softmax") {
      const Ne = this.Ne;
      for (let k = 0; k < K; k++) {
        let acc = 0;
        for (let e = 0; e < Ne; e++) acc += (expression[e] - a.blend_center[e]) * a.blend_basis[k * Ne + e];
        z[k] = acc / a.blend_scale[k];
      }
    } else throw new Error(`unknown blend scheme ${b.kind}`);
    if (a.blend_lo && a.blend_hi) for (let k = 0; k < K; k++) z[k] = Math.max(Math.min(z[k], a.blend_hi[k]), a.blend_lo[k]);
    return z;
  }

  /** Blend weights (K): softmax(z / T). */
  blendWeights(expression) {
    const z = this.clampedInputs(expression), T = this.meta.blend.temperature, w = this.weights;
    let m = -Infinity;
    for (let k = 0; k < this.K; k++) m = Math.max(m, z[k] / T);
    let s = 0;
    for (let k = 0; k < this.K; k++) { w[k] = Math.exp(z[k] / T - m); s += w[k]; }
    for (let k = 0; k < this.K; k++) w[k] /= s;
    return w;
  }

  /** Map slot weights (S): the mean offsets 1, then the stage's (the blend weights, or 1 for the stage-1 delta). */
  slotWeights(expression, stage) {
    const w = this.slotW.fill(0), kind = this.offsetKind(stage), { blend, global } = this.slots;
    w[0] = 1;
    if (kind === "blend") {
      const bw = this.blendWeights(expression);
      for (let k = 0; k < this.K; k++) w[blend + k] = bw[k];
    } else if (kind === "global") w[global] = 1;
    return w;
  }

  /**
   * The expression blendshapes summed over the moving vertices (expr_verts.length * 3), in JS (the wasm engine's
   * twin: blendshapes.js): four components a pass (contiguous inner loops, a quarter of the passes over the sum),
   * components at 0 skipped.
   */
  expressionSum(expression) {
    const dirs = this.arrays.exprdirs, M = this.moved.length, moved = this.moved.fill(0), es = this.exprActive;
    let ne = 0;
    for (let e = 0; e < this.Ne; e++) if (expression[e] !== 0) es[ne++] = e;
    let q = 0;
    for (; q + 4 <= ne; q += 4) {
      const c0 = expression[es[q]], c1 = expression[es[q + 1]], c2 = expression[es[q + 2]], c3 = expression[es[q + 3]];
      const d0 = es[q] * M, d1 = es[q + 1] * M, d2 = es[q + 2] * M, d3 = es[q + 3] * M;
      for (let i = 0; i < M; i++) moved[i] += c0 * dirs[d0 + i] + c1 * dirs[d1 + i] + c2 * dirs[d2 + i] + c3 * dirs[d3 + i];
    }
    for (; q < ne; q++) {
      const c = expression[es[q]], d = es[q] * M;
      for (let i = 0; i < M; i++) moved[i] += c * dirs[d + i];
    }
    return moved;
  }

  /** Posed vertices (V * 3, metres), HeadModel.forward with this avatar's identity. */
  vertices(expression, jaw, eyes, pose) {
    const { V, J } = this, a = this.arrays;
    const vs = this.vShaped, vId = a.v_id, ev = a.expr_verts, M = ev.length * 3;
    // The blendshapes' sum over the moving vertices first, then added where they are.
    const moved = this.engine === "wasm" && this.blendshapes ? this.blendshapes.at(expression) : this.expressionSum(expression);
    for (let i = 0; i < V * 3; i++) vs[i] = vId[i];
    for (let m = 0; m < M / 3; m++) {
      const v = ev[m] * 3;
      vs[v] += moved[m * 3]; vs[v + 1] += moved[m * 3 + 1]; vs[v + 2] += moved[m * 3 + 2];
    }
    // Local joint rotations: root = pose, neck unused (Avatar.gaussians has no neck), jaw, eyes.
    const rv = this.rv.fill(0);
    const setJ = (name, v, o = 0) => { const j = this.jointIndex[name]; if (j !== undefined && v) for (let d = 0; d < 3; d++) rv[j * 3 + d] = v[o + d]; };
    setJ("root", pose); setJ("jaw", jaw);
    if (eyes && this.hasEyes) { setJ("eye_left", eyes, 0); setJ("eye_right", eyes, 3); }
    const R = this.R;
    for (let j = 0; j < J; j++) rodrigues(rv[j * 3], rv[j * 3 + 1], rv[j * 3 + 2], R[j]);
    if (a.posedirs) {
      const P = (J - 1) * 9, pd = a.posedirs;
      for (let p = 0; p < P; p++) {
        const j = 1 + Math.floor(p / 9), r = p % 9;
        const f = R[j][r] - (r === 0 || r === 4 || r === 8 ? 1 : 0);
        if (f === 0) continue;
        const base = p * V * 3;
        for (let i = 0; i < V * 3; i++) vs[i] += f * pd[base + i];
      }
    }
    // Forward kinematics (lbs): world_j = world_parent @ [R_j | joint_j - joint_parent] (3x4 row-major).
    const jr = a.joints_rest, par = a.parents, W = this.W;
    for (let j = 0; j < J; j++) {
      const Rj = R[j], M = W[j];
      const tx = jr[j * 3] - (j > 0 ? jr[par[j] * 3] : 0);
      const ty = jr[j * 3 + 1] - (j > 0 ? jr[par[j] * 3 + 1] : 0);
      const tz = jr[j * 3 + 2] - (j > 0 ? jr[par[j] * 3 + 2] : 0);
      if (j === 0) {
        M[0] = Rj[0]; M[1] = Rj[1]; M[2] = Rj[2]; M[3] = tx;
        M[4] = Rj[3]; M[5] = Rj[4]; M[6] = Rj[5]; M[7] = ty;
        M[8] = Rj[6]; M[9] = Rj[7]; M[10] = Rj[8]; M[11] = tz;
        continue;
      }
      const P = W[par[j]];
      for (let r = 0; r < 3; r++) {
        for (let c = 0; c < 3; c++) M[r * 4 + c] = P[r * 4] * Rj[c] + P[r * 4 + 1] * Rj[3 + c] + P[r * 4 + 2] * Rj[6 + c];
        M[r * 4 + 3] = P[r * 4] * tx + P[r * 4 + 1] * ty + P[r * 4 + 2] * tz + P[r * 4 + 3];
      }
    }
    for (let j = 0; j < J; j++) { // remove the rest-pose joint so transforms act on rest vertices
      const M = W[j];
      for (let r = 0; r < 3; r++) M[r * 4 + 3] -= M[r * 4] * jr[j * 3] + M[r * 4 + 1] * jr[j * 3 + 1] + M[r * 4 + 2] * jr[j * 3 + 2];
    }
    const lw = a.lbs_weights, out = this.verts, Wf = this.Wflat;
    for (let j = 0; j < J; j++) Wf.set(W[j], j * 12);
    for (let v = 0; v < V; v++) {
      // the vertex's blended transform, in locals (registers) rather than an array
      let t0 = 0, t1 = 0, t2 = 0, t3 = 0, t4 = 0, t5 = 0, t6 = 0, t7 = 0, t8 = 0, t9 = 0, t10 = 0, t11 = 0;
      for (let j = 0; j < J; j++) {
        const w = lw[v * J + j];
        if (w === 0) continue;
        const o = j * 12;
        t0 += w * Wf[o]; t1 += w * Wf[o + 1]; t2 += w * Wf[o + 2]; t3 += w * Wf[o + 3];
        t4 += w * Wf[o + 4]; t5 += w * Wf[o + 5]; t6 += w * Wf[o + 6]; t7 += w * Wf[o + 7];
        t8 += w * Wf[o + 8]; t9 += w * Wf[o + 9]; t10 += w * Wf[o + 10]; t11 += w * Wf[o + 11];
      }
      const x = vs[v * 3], y = vs[v * 3 + 1], z = vs[v * 3 + 2];
      out[v * 3] = t0 * x + t1 * y + t2 * z + t3;
      out[v * 3 + 1] = t4 * x + t5 * y + t6 * z + t7;
      out[v * 3 + 2] = t8 * x + t9 * y + t10 * z + t11;
    }
    return out;
  }

  /** Per-Gaussian offsets (N * 13, network units) = mean [+ global delta | + sum_k w_k blendmap_k]. */
  offsetsFor(expression, stage) {
    // The offsets depend on the expression and stage only: jaw, eye and pose changes reuse them.
    const key = stage + ":" + Array.prototype.join.call(expression, ",");
    if (key === this.offsetsKey) return this.offsets;
    this.offsetsKey = key;
    const a = this.arrays, o = this.offsets, n = this.N * C, kind = this.offsetKind(stage);
    if (kind === "blend") {
      const w = this.blendWeights(expression), ks = [];
      for (let k = 0; k < this.K; k++) if (w[k] !== 0) ks.push(k);
      const id = ks.join(",");
      if (!this.composers.has(id)) this.composers.set(id, makeCompose(this.K, ks));
      this.composers.get(id)(o, a.mean_offsets, a.blendmaps, w, n);
    } else if (kind === "global") {
      const g = a.global_delta, m = a.mean_offsets;
      for (let i = 0; i < n; i++) o[i] = m[i] + g[i];
    } else o.set(a.mean_offsets);
    return o;
  }

  /**
   * Texel placement, activations and the pose model's rigid correction into this.out, in one pass.
   * @param {Float32Array} verts (V * 3) posed vertices, metres. @param {Float32Array} off (N * 13) offsets.
   * @param {object|null} corr the correction (poseCorrection) or null. @param {number[]} c (3) the means' centroid
   *   it turns about (this.centroid.at), metres.
   */
  place(verts, off, corr, c) {
    const a = this.arrays, k = this.meta.constants, N = this.N, out = this.out;
    const tv = a.texel_verts, tb = a.texel_bary, gain = this.gain, prior = this.gaussPrior;
    const means = out.means, scales = out.scales, quats = out.quats, opac = out.opacities, colors = out.colors;
    const c0 = k.sh_c0, ls0 = k.init_log_scale, col0 = k.init_color_dc;
    const { R, q, t } = corr || NO_CORRECTION, [cx, cy, cz] = corr ? c : NO_CORRECTION.t;
    const [R0, R1, R2, R3, R4, R5, R6, R7, R8] = R, [qw, qx, qy, qz] = q, [tx, ty, tz] = t;
    for (let n = 0; n < N; n++) {
      const o = n * C, i0 = tv[n * 3] * 3, i1 = tv[n * 3 + 1] * 3, i2 = tv[n * 3 + 2] * 3;
      const b0 = tb[n * 3], b1 = tb[n * 3 + 1], b2 = tb[n * 3 + 2], g = gain[n];
      const n3 = n * 3, n4 = n * 4;
      const x = verts[i0] * b0 + verts[i1] * b1 + verts[i2] * b2 + off[o] * g;
      const y = verts[i0 + 1] * b0 + verts[i1 + 1] * b1 + verts[i2 + 1] * b2 + off[o + 1] * g;
      const z = verts[i0 + 2] * b0 + verts[i1 + 2] * b1 + verts[i2 + 2] * b2 + off[o + 2] * g;
      const ox = off[o + 6], oy = off[o + 7], oz = off[o + 8];
      const inv = 1 / Math.sqrt(1 + ox * ox + oy * oy + oz * oz); // the norm is >= 1: the 1e-12 floor never applies
      const bw = inv, bx = ox * inv, by = oy * inv, bz = oz * inv;
      if (corr) { // turned about the centroid, shifted; the quaternion turned with it (pose.apply_rigid)
        const dx = x - cx, dy = y - cy, dz = z - cz;
        means[n3] = R0 * dx + R1 * dy + R2 * dz + cx + tx;
        means[n3 + 1] = R3 * dx + R4 * dy + R5 * dz + cy + ty;
        means[n3 + 2] = R6 * dx + R7 * dy + R8 * dz + cz + tz;
        quats[n4] = qw * bw - qx * bx - qy * by - qz * bz;
        quats[n4 + 1] = qw * bx + qx * bw + qy * bz - qz * by;
        quats[n4 + 2] = qw * by - qx * bz + qy * bw + qz * bx;
        quats[n4 + 3] = qw * bz + qx * by - qy * bx + qz * bw;
      } else {
        means[n3] = x; means[n3 + 1] = y; means[n3 + 2] = z;
        quats[n4] = bw; quats[n4 + 1] = bx; quats[n4 + 2] = by; quats[n4 + 3] = bz;
      }
      scales[n3] = Math.exp(ls0 + off[o + 3]);
      scales[n3 + 1] = Math.exp(ls0 + off[o + 4]);
      scales[n3 + 2] = Math.exp(ls0 + off[o + 5]);
      opac[n] = 1 / (1 + Math.exp(-(prior[n] + off[o + 9])));
      colors[n3] = Math.max(0.5 + c0 * (col0 + off[o + 10]), 0);
      colors[n3 + 1] = Math.max(0.5 + c0 * (col0 + off[o + 11]), 0);
      colors[n3 + 2] = Math.max(0.5 + c0 * (col0 + off[o + 12]), 0);
    }
  }

  /**
   * Activated Gaussians for one frame, the twin of Avatar.gaussians(head, uvmap, expression, jaw, eyes, pose, stage).
   * @param {{expression?: ArrayLike<number>, jaw?: number[], eyes?: number[], pose?: number[], stage?: string}} p
   *   expression (Ne), jaw (3) radians, eyes (6) radians, pose (3) radians, stage "full" | "global" | "mean".
   * @returns {{means: Float32Array, quats: Float32Array, scales: Float32Array, opacities: Float32Array, colors: Float32Array}}
   *   means (N*3) metres, quats (N*4) wxyz, scales (N*3) metres, opacities (N), colors (N*3) RGB >= 0. Reused between calls.
   */
  evaluate(p = {}) {
    const stage = p.stage || "full";
    const expression = p.expression || new Float64Array(this.Ne);
    const jaw = p.jaw || [0, 0, 0];
    const verts = this.vertices(expression, jaw, p.eyes || null, p.pose || null);
    const w = this.slotWeights(expression, stage), corr = this.poseCorrection(expression, jaw, stage);
    const c = corr && this.centroid.at(verts, w);
    if (this.engine === "wasm") return this.kernel.run(w, corr, c);
    this.place(verts, this.offsetsFor(expression, stage), corr, c);
    return this.out;
  }

  /**
   * The pose model's rigid correction for a frame (pose.apply_rigid), or null when the avatar or stage has none.
   * @returns {{R: Float64Array, t: number[], q: number[]} | null} R (9) row-major rotation, t (3) metres, q (4) wxyz.
   */
  poseCorrection(expression, jaw, stage) {
    const Wm = this.arrays.pose_model;
    if (!Wm || stage === "mean") return null;
    const K = this.K, F = K + 4, z = this.clampedInputs(expression);
    const feat = (f) => (f < K ? z[f] : f < K + 3 ? jaw[f - K] : 1);
    const corr = [0, 0, 0, 0, 0, 0];
    for (let r = 0; r < 6; r++) { let s = 0; for (let f = 0; f < F; f++) s += feat(f) * Wm[r * F + f]; corr[r] = s; }
    const unit = this.meta.constants.pose_trans_unit_m;
    return { R: rodrigues(corr[0], corr[1], corr[2]), t: [corr[3] * unit, corr[4] * unit, corr[5] * unit],
      q: axisAngleQuat(corr[0], corr[1], corr[2]) };
  }
}

/** Fetch a pack (manifest URL, e.g. "avatar.json") and build its runtime (options: AvatarRuntime's). */
export async function loadAvatar(url, options = {}) {
  const manifest = await (await fetch(url)).json();
  const bin = await (await fetch(new URL(manifest.bin, new URL(url, location.href)))).arrayBuffer();
  return new AvatarRuntime(manifest, bin, options);
}

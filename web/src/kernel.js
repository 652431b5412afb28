// The CPU path's per-Gaussian work as one WebAssembly SIMD pass (the plain-JS twin is AvatarRuntime's offsetsFor +
// place + applyRigid): for 4 Gaussians at a time (one f32x4 lane each), blend the maps, place the texel on its
// triangle, apply the activations and the pose model's rigid correction, and write the Gaussians. One pass
// instead of three: each Gaussian's 13 blended channels are used while they are in registers, the maps are read
// once, sequentially, as the pack stores them (float16 maps stay float16: half the bytes of the decoded float32
// the JS path reads, the blend being bound by memory bandwidth), and map channels that are 0 for every Gaussian
// are neither stored nor read. Arithmetic is float32 (as Python's); tests/web compares it with the JS path.
//
// Memory (one WebAssembly.Memory, laid out at load): parameters | posed vertices (AvatarRuntime.vertices writes
// them here) | per block of 4 Gaussians: vertex offsets, barycentric weights, xyz gain, opacity prior | per block:
// the maps, channel by channel, slot by slot, 4 lanes each | the outputs (the fields of AvatarRuntime.evaluate).
// The code is generated per avatar and per set of maps read (a stage, weights that underflowed to 0), so every
// address is a constant and the blend is unrolled over the maps.
// Letters as in runtime.js; S map slots (mean offsets, K blendmaps, stage-1 delta: AvatarRuntime.slots).

import { C, channelLayoutProblem } from "./channels.js";
import { assemble, simdSupported } from "./wasm.js";

const LANES = 4;
const STATIC_BYTES = 8 * 16; // per block: i0, i1, i2 (byte addresses of the vertices), b0, b1, b2, gain, prior
const PARAMS = 20; // floats before the slot weights: R (9), c + t (3), c (3), q wxyz (4), spare (1)
// float16 maps: bits << 13, sign kept, read as float32 is the value times 2^-112 (denormals included), so the
// weights carry the 2^112 (an exact power-of-two scaling). Exponent 31 (inf / NaN) would not decode: such packs
// use the JS path.
const HALF_MASK = 0x8fffe000 | 0;
const HALF_SCALE = 2 ** 112;
// expf after Cephes: n = round(x / ln 2), r = x - n ln 2 in two parts, e^r by a degree-7 polynomial, times 2^n.
// Inputs are clamped to [ln 2^-126, 88.376] (2^n stays a normal float): e^x below 1.2e-38 reads 1.2e-38 and above
// 2.4e38 reads 2.4e38 (a scale or an opacity logit that far out is already 0 or infinite to the renderer).
const EXP = { lo: -87.33654475, hi: 88.3762626647949, log2e: 1.44269504088896341, c1: 0.693359375, c2: -2.12194440e-4,
  p: [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1] };

const splat = (x) => `v128.const f32x4 ${x} ${x} ${x} ${x}`;
const align16 = (x) => Math.ceil(x / 16) * 16;

/** Why this runtime cannot use the kernel (it then evaluates in plain JS); null when it can. */
export function kernelUnsupported(rt) {
  if (!simdSupported()) return "this engine has no WebAssembly SIMD";
  const layout = channelLayoutProblem(rt.meta);
  if (layout) return layout;
  const dtypes = new Set(rt.slots.names.map((n) => rt.meta.arrays[n].dtype));
  if (dtypes.size !== 1) return "the pack's maps mix float16 and float32";
  return null;
}

export class Kernel {
  /** @param {import("./runtime.js").AvatarRuntime} rt its pack, slots and constants (the kernel keeps no link to it). */
  constructor(rt) {
    const { N, V } = rt, S = rt.slots.count;
    this.half = rt.meta.arrays.mean_offsets.dtype === "float16";
    const blocks = (this.blocks = Math.ceil(N / LANES));
    const maps = rt.slots.names.map((name) => {
      const e = rt.meta.arrays[name], count = e.shape.reduce((x, y) => x * y, 1);
      return this.half ? new Uint16Array(rt.buffer, e.offset, count) : rt.arrays[name];
    });
    // map s, channel c, Gaussian n: maps[s][(n * C + c) * stride[s] + sub[s]] (blendmaps are (N, 13, K))
    const at = rt.slots.names.map((name, s) => (name === "blendmaps" ? [rt.K, s - rt.slots.blend] : [1, 0]));
    const entries = this.mapEntries(maps, at, S, N);
    const mapBytes = (this.half ? 2 : 4) * LANES;
    const L = (this.layout = {});
    L.params = 0;
    L.verts = align16(4 * (PARAMS + S));
    L.static = align16(L.verts + 4 * V * 3);
    L.maps = L.static + blocks * STATIC_BYTES;
    L.block = align16(entries.length * mapBytes);
    L.means = L.maps + blocks * L.block;
    L.quats = L.means + blocks * 48;
    L.scales = L.quats + blocks * 64;
    L.opacities = L.scales + blocks * 48;
    L.colors = L.opacities + blocks * 16;
    const end = L.colors + blocks * 48;
    this.memory = new WebAssembly.Memory({ initial: Math.ceil(end / 65536) });
    const buf = this.memory.buffer;
    this.params = new Float32Array(buf, 0, PARAMS + S);
    this.verts = new Float32Array(buf, L.verts, V * 3);
    this.out = {
      means: new Float32Array(buf, L.means, N * 3), quats: new Float32Array(buf, L.quats, N * 4),
      scales: new Float32Array(buf, L.scales, N * 3), opacities: new Float32Array(buf, L.opacities, N),
      colors: new Float32Array(buf, L.colors, N * 3),
    };
    this.fillStatic(rt);
    // where (channel, slot) lives in a block of maps; what is not there is 0 for every Gaussian
    this.offset = new Map(entries.map(([c, s], i) => [c * S + s, i * mapBytes]));
    const T = this.half ? Uint16Array : Float32Array;
    const dst = new T(buf, L.maps, (blocks * L.block) / T.BYTES_PER_ELEMENT), per = L.block / T.BYTES_PER_ELEMENT;
    entries.forEach(([c, s], i) => {
      const [stride, sub] = at[s], src = maps[s];
      for (let n = 0; n < N; n++) dst[(n >> 2) * per + i * LANES + (n & 3)] = src[(n * C + c) * stride + sub];
    });
    this.S = S;
    this.constants = rt.meta.constants;
    this.runs = new Map(); // slots read (e.g. "0,1,2") -> the compiled run()
  }

  /** The (channel, slot) pairs that are not 0 for every Gaussian, in block order; throws on float16 inf / NaN. */
  mapEntries(maps, at, S, N) {
    const entries = [];
    for (let c = 0; c < C; c++) {
      for (let s = 0; s < S; s++) {
        const [stride, sub] = at[s], src = maps[s];
        let any = false;
        for (let n = 0; n < N; n++) {
          const x = src[(n * C + c) * stride + sub];
          if (this.half ? (x & 0x7c00) === 0x7c00 : !Number.isFinite(x)) throw new Error("a map holds inf or NaN");
          if (this.half ? x & 0x7fff : x !== 0) any = true;
        }
        if (any) entries.push([c, s]);
      }
    }
    return entries;
  }

  /** Per block: the three vertices' byte addresses in memory, barycentric weights, xyz gain and opacity prior. */
  fillStatic(rt) {
    const { N } = rt, a = rt.arrays, L = this.layout, frozen = rt.meta.xyz_frozen, unit = rt.meta.constants.xyz_unit_m;
    const buf = this.memory.buffer, i32 = new Int32Array(buf, L.static), f32 = new Float32Array(buf, L.static);
    for (let n = 0; n < this.blocks * LANES; n++) {
      const b = (n >> 2) * (STATIC_BYTES / 4), j = n & 3, real = n < N, r = real ? a.texel_region[n] : 0;
      for (let i = 0; i < 3; i++) {
        i32[b + i * 4 + j] = L.verts + 12 * (real ? a.texel_verts[n * 3 + i] : 0);
        f32[b + (3 + i) * 4 + j] = real ? a.texel_bary[n * 3 + i] : 0;
      }
      f32[b + 24 + j] = real && !frozen[r] ? unit : 0;
      f32[b + 28 + j] = real ? rt.prior[r] : 0;
    }
  }

  /**
   * One frame, the posed vertices already in this.verts: this.out = the Gaussians.
   * @param {Float64Array} w (S) slot weights (0: the slot is not read). @param {object|null} corr the pose model's
   *   correction (AvatarRuntime.poseCorrection) or null. @param {number[]} c (3) the centroid it turns about.
   */
  run(w, corr, c) {
    const p = this.params, S = this.S, read = [];
    for (let s = 0; s < S; s++) {
      p[PARAMS + s] = w[s] * (this.half ? HALF_SCALE : 1);
      if (w[s] !== 0) read.push(s);
    }
    // Without a correction: the identity, exactly (1 x + 0 y + 0 z = x, as the quaternion product with (1, 0, 0, 0)).
    const R = corr ? corr.R : [1, 0, 0, 0, 1, 0, 0, 0, 1], t = corr ? corr.t : [0, 0, 0], q = corr ? corr.q : [1, 0, 0, 0];
    const cc = corr ? c : [0, 0, 0];
    for (let i = 0; i < 9; i++) p[i] = R[i];
    for (let d = 0; d < 3; d++) { p[9 + d] = cc[d] + t[d]; p[12 + d] = cc[d]; }
    for (let i = 0; i < 4; i++) p[15 + i] = q[i];
    const key = read.join(",");
    let fn = this.runs.get(key);
    if (!fn) {
      const module = new WebAssembly.Module(this.source(read));
      fn = new WebAssembly.Instance(module, { env: { memory: this.memory } }).exports.run;
      this.runs.set(key, fn);
    }
    fn();
    return this.out;
  }

  /** The module reading slots `read` (see the top of this file); one function, run(), over every block. */
  source(read) {
    const L = this.layout, k = this.constants, half = this.half, S = this.S;
    const locals = [["$n", "i32"], ["$ps", "i32"], ["$pm", "i32"], ["$p3", "i32"], ["$p4", "i32"], ["$p1", "i32"],
      ["$a", "i32"], ["$mask", "v128"], ["$t", "v128"], ["$x", "v128"], ["$y", "v128"], ["$z", "v128"],
      ["$qn", "v128"], ["$bw", "v128"], ["$bx", "v128"], ["$by", "v128"], ["$bz", "v128"], ["$e", "v128"], ["$r", "v128"]];
    for (const s of read) locals.push([`$w${s}`, "v128"]);
    const names = ["R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "ct0", "ct1", "ct2", "c0", "c1", "c2", "qw", "qx", "qy", "qz"];
    for (const nm of names) locals.push([`$${nm}`, "v128"]);
    for (let i = 0; i < 3; i++) for (let d = 0; d < 3; d++) locals.push([`$v${i}${d}`, "v128"]);
    const lines = [];
    const emit = (...xs) => lines.push(...xs);
    // parameters, splatted once
    names.forEach((nm, i) => emit("i32.const 0", `v128.load32_splat offset=${4 * i}`, `local.set $${nm}`));
    for (const s of read) emit("i32.const 0", `v128.load32_splat offset=${4 * (PARAMS + s)}`, `local.set $w${s}`);
    emit(`v128.const i32x4 ${HALF_MASK} ${HALF_MASK} ${HALF_MASK} ${HALF_MASK}`, "local.set $mask");
    emit(`i32.const ${this.blocks}`, "local.set $n", "loop");

    /** Channel c blended onto the stack: (sum of the weighted blend slots) + the mean slot, as runtime.js sums. */
    const blend = (c) => {
      const here = read.filter((s) => this.offset.has(c * S + s));
      const ordered = here.filter((s) => s !== 0).concat(here.includes(0) ? [0] : []);
      if (!ordered.length) { emit(splat(0)); return; }
      ordered.forEach((s, i) => {
        const off = L.maps + this.offset.get(c * S + s);
        if (half) emit("local.get $pm", `v128.load16x4_s offset=${off}`, "i32.const 13", "i32x4.shl", "local.get $mask", "v128.and");
        else emit("local.get $pm", `v128.load offset=${off}`);
        if (half || s !== 0) emit(`local.get $w${s}`, "f32x4.mul"); // the mean's weight is 1 (float32) or exactly 2^112
        if (i > 0) emit("f32x4.add");
      });
    };
    /** e^(top of stack) onto the stack (EXP above). */
    const exp = () => {
      emit(splat(EXP.lo), "f32x4.pmax", splat(EXP.hi), "f32x4.pmin", "local.tee $x",
        splat(EXP.log2e), "f32x4.mul", "f32x4.nearest", "local.set $e",
        "local.get $x", "local.get $e", splat(EXP.c1), "f32x4.mul", "f32x4.sub",
        "local.get $e", splat(EXP.c2), "f32x4.mul", "f32x4.sub", "local.set $r", splat(EXP.p[0]));
      for (const c of EXP.p.slice(1)) emit("local.get $r", "f32x4.mul", splat(c), "f32x4.add");
      emit("local.get $r", "local.get $r", "f32x4.mul", "f32x4.mul", "local.get $r", "f32x4.add", splat(1), "f32x4.add",
        "local.get $e", "i32x4.trunc_sat_f32x4_s", "v128.const i32x4 127 127 127 127", "i32x4.add", "i32.const 23",
        "i32x4.shl", "f32x4.mul");
    };
    /** Store the vector in local v as field d of `width` floats per Gaussian at base (pointer local p). */
    const store = (v, p, base, width, d) => {
      for (let j = 0; j < LANES; j++) emit(`local.get ${p}`, `local.get ${v}`, `v128.store32_lane offset=${base + 4 * (width * j + d)} ${j}`);
    };

    // -- means: the texel on its posed triangle plus its offset, turned about the centroid -------------------
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < LANES; j++) {
        emit("local.get $ps", `i32.load offset=${L.static + 16 * i + 4 * j}`, "local.set $a");
        for (let d = 0; d < 3; d++) emit("local.get $a", `local.get $v${i}${d}`, `v128.load32_lane offset=${4 * d} ${j}`, `local.set $v${i}${d}`);
      }
    }
    const xyz = ["$x", "$y", "$z"];
    for (let d = 0; d < 3; d++) {
      for (let i = 0; i < 3; i++) {
        emit(`local.get $v${i}${d}`, "local.get $ps", `v128.load offset=${L.static + 48 + 16 * i}`, "f32x4.mul");
        if (i > 0) emit("f32x4.add");
      }
      blend(d);
      emit("local.get $ps", `v128.load offset=${L.static + 96}`, "f32x4.mul", "f32x4.add", `local.get $c${d}`, "f32x4.sub",
        `local.set ${xyz[d]}`);
    }
    for (let d = 0; d < 3; d++) {
      emit(`local.get $R${3 * d}`, "local.get $x", "f32x4.mul", `local.get $R${3 * d + 1}`, "local.get $y", "f32x4.mul", "f32x4.add",
        `local.get $R${3 * d + 2}`, "local.get $z", "f32x4.mul", "f32x4.add", `local.get $ct${d}`, "f32x4.add", "local.set $t");
      store("$t", "$p3", L.means, 3, d);
    }
    // -- scales: exp(initial log scale + offset) ----------------------------------------------------------------
    for (let d = 0; d < 3; d++) {
      emit(splat(k.init_log_scale));
      blend(3 + d);
      emit("f32x4.add");
      exp();
      emit("local.set $t");
      store("$t", "$p3", L.scales, 3, d);
    }
    // -- quaternions: (1, x, y, z) normalised (its norm is >= 1, so the 1e-12 floor never applies), then turned
    blend(6); emit("local.set $x"); blend(7); emit("local.set $y"); blend(8); emit("local.set $z");
    emit(splat(1), "local.get $x", "local.get $x", "f32x4.mul", "f32x4.add", "local.get $y", "local.get $y", "f32x4.mul",
      "f32x4.add", "local.get $z", "local.get $z", "f32x4.mul", "f32x4.add", "f32x4.sqrt", "local.set $qn",
      splat(1), "local.get $qn", "f32x4.div", "local.set $bw");
    for (const [src, dst] of [["$x", "$bx"], ["$y", "$by"], ["$z", "$bz"]]) emit(`local.get ${src}`, "local.get $qn", "f32x4.div", `local.set ${dst}`);
    const product = [ // q (x) b, wxyz
      [["+", "qw", "bw"], ["-", "qx", "bx"], ["-", "qy", "by"], ["-", "qz", "bz"]],
      [["+", "qw", "bx"], ["+", "qx", "bw"], ["+", "qy", "bz"], ["-", "qz", "by"]],
      [["+", "qw", "by"], ["-", "qx", "bz"], ["+", "qy", "bw"], ["+", "qz", "bx"]],
      [["+", "qw", "bz"], ["+", "qx", "by"], ["-", "qy", "bx"], ["+", "qz", "bw"]],
    ];
    product.forEach((terms, d) => {
      terms.forEach(([sign, a, b], i) => {
        emit(`local.get $${a}`, `local.get $${b}`, "f32x4.mul");
        if (i > 0) emit(sign === "+" ? "f32x4.add" : "f32x4.sub");
      });
      emit("local.set $t");
      store("$t", "$p4", L.quats, 4, d);
    });
    // -- opacity: sigmoid(prior + offset) --------------------------------------------------------------------------
    emit(splat(1), splat(0), "local.get $ps", `v128.load offset=${L.static + 112}`);
    blend(9);
    emit("f32x4.add", "f32x4.sub");
    exp();
    emit(splat(1), "f32x4.add", "f32x4.div", "local.set $t");
    store("$t", "$p1", L.opacities, 1, 0);
    // -- colours: max(0.5 + SH_C0 (initial DC + offset), 0) --------------------------------------------------------
    for (let d = 0; d < 3; d++) {
      emit(splat(0.5), splat(k.sh_c0), splat(k.init_color_dc));
      blend(10 + d);
      emit("f32x4.add", "f32x4.mul", "f32x4.add", splat(0), "f32x4.pmax", "local.set $t");
      store("$t", "$p3", L.colors, 3, d);
    }
    // -- next block ----------------------------------------------------------------------------------------------
    for (const [p, step] of [["$ps", STATIC_BYTES], ["$pm", L.block], ["$p3", 48], ["$p4", 64], ["$p1", 16]]) {
      emit(`local.get ${p}`, `i32.const ${step}`, "i32.add", `local.set ${p}`);
    }
    emit("local.get $n", "i32.const 1", "i32.sub", "local.tee $n", "br_if 0", "end");
    return assemble({ pages: this.memory.buffer.byteLength / 65536,
      funcs: [{ name: "run", params: [], locals, body: lines.join("\n") }] });
  }
}

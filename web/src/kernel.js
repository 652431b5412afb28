// The CPU path's per-Gaussian work as one WebAssembly SIMD pass (the plain-JS twin is AvatarRuntime's offsetsFor +
// place): for 4 Gaussians at a time (one f32x4 lane each), blend the maps, place the texel on its
// triangle, apply the activations and the pose model's rigid correction, and write the Gaussians. One pass instead
// of three: a block's 13 blended channels go through 208 bytes of scratch (in L1) rather than a 2.5 MB offsets
// array, and the maps are read once, sequentially (laid out block by block at load). float16 maps stay float16:
// half the bytes of the float32 the JS path reads, for 2-3 integer instructions per 4 values (measured faster
// than float32 maps); map channels that are 0 for every Gaussian are neither stored nor read. Arithmetic is
// float32, as Python's; tests/web compares the kernel with the JS path.
//
// Memory (one WebAssembly.Memory, laid out at load): parameters | posed vertices (AvatarRuntime.vertices writes
// them here) | per block of 4 Gaussians: vertex addresses, barycentric weights, xyz gain, opacity prior | per
// block: the maps, entry by entry (a channel's slots in turn) | scratch | the outputs (AvatarRuntime.evaluate's
// fields). The code is generated per avatar and per set of maps read (a stage; weights that underflowed to 0):
// the blend is unrolled over the maps and every offset is a constant.
// Letters as in runtime.js; S map slots (mean offsets, K blendmaps, stage-1 delta: AvatarRuntime.slots).

import { C, channelLayoutProblem } from "./channels.js";
import { assemble, simdSupported } from "./wasm.js";

const LANES = 4;
const STATIC_BYTES = 8 * 16; // per block: i0, i1, i2 (byte addresses of the vertices), b0, b1, b2, gain, prior
const PARAMS = 20; // floats before the slot weights: R (9), c + t (3), c (3), q wxyz (4), spare (1)
// float16 maps: the 16 bits at the top of a 32-bit lane, shifted right by 3 (the sign copied) and masked to the
// sign, 5 exponent and 10 mantissa bits, read as float32, are the value times 2^-112 (denormals included), so the
// weights carry the 2^112 (an exact power-of-two scaling). Exponent 31 (inf / NaN) would not decode: such packs
// use the JS path.
const HALF_MASK = 0x8fffe000 | 0;
const HALF_SCALE = 2 ** 112;
// expf after Cephes: n = round(x / ln 2), r = x - n ln 2 in two parts, e^r by a degree-7 polynomial, times 2^n.
// Inputs are clamped to [ln 2^-126, 88.376] (2^n stays a normal float): e^x below 1.2e-38 reads 1.2e-38 and above
// 2.4e38 reads 2.4e38 (a scale or an opacity logit that far out is already 0 or infinite to the renderer).
const EXP = { lo: -87.33654475, hi: 88.3762626647949, log2e: 1.44269504088896341, c1: 0.693359375, c2: -2.12194440e-4,
  p: [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1] };

const IDENTITY = { R: [1, 0, 0, 0, 1, 0, 0, 0, 1], t: [0, 0, 0], q: [1, 0, 0, 0] };
const splat = (x) => `v128.const f32x4 ${x} ${x} ${x} ${x}`;
const align16 = (x) => Math.ceil(x / 16) * 16;

/** Why this runtime cannot use the kernel (it then evaluates in plain JS); null when it can. */
export function kernelUnsupported(rt) {
  if (!simdSupported()) return "this engine has no WebAssembly SIMD";
  const layout = channelLayoutProblem(rt.meta);
  if (layout) return layout;
  if (rt.slots.count > 52) return `${rt.slots.count} map slots (at most 52)`;
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
    const L = (this.layout = {});
    L.params = 0;
    L.verts = align16(4 * (PARAMS + S));
    L.static = align16(L.verts + 4 * V * 3 + 4); // a vertex is read as 16 bytes: 4 to spare after the last
    L.maps = L.static + blocks * STATIC_BYTES;
    L.block = 16 * (this.half ? Math.ceil(entries.length / 2) : entries.length);
    L.scratch = L.maps + blocks * L.block; // one block's 13 blended channels
    // outputs; 16 bytes to spare after each (a Gaussian's 3 floats are written as 16 bytes, the next overwriting)
    L.means = L.scratch + C * 16;
    L.quats = L.means + blocks * 48 + 16;
    L.scales = L.quats + blocks * 64;
    L.opacities = L.scales + blocks * 48 + 16;
    L.colors = L.opacities + blocks * 16;
    const end = L.colors + blocks * 48 + 16;
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
    // which entry of a block (channel, slot) is; what is not there is 0 for every Gaussian
    this.entry = new Map(entries.map(([c, s], i) => [c * S + s, i]));
    // float32: entry i is 16 bytes at 16 i. float16: entries 2 i and 2 i + 1 share 16 bytes, their lanes
    // interleaved (the first in the low half of each 32-bit lane: two shifts and a mask decode either).
    const T = this.half ? Uint16Array : Float32Array;
    const dst = new T(buf, L.maps, (blocks * L.block) / T.BYTES_PER_ELEMENT), per = L.block / T.BYTES_PER_ELEMENT;
    const at4 = this.half ? (i, j) => (i >> 1) * 8 + 2 * j + (i & 1) : (i, j) => i * 4 + j;
    entries.forEach(([c, s], i) => {
      const [stride, sub] = at[s], src = maps[s];
      for (let n = 0; n < N; n++) dst[(n >> 2) * per + at4(i, n & 3)] = src[(n * C + c) * stride + sub];
    });
    this.S = S;
    this.constants = rt.meta.constants;
    this.runs = new Map(); // slots read (a bit mask, see run) -> the compiled run()
  }

  /** The (channel, slot) pairs that are not 0 for every Gaussian, in block order; throws on inf or NaN (float16
   *  inf / NaN would not decode). */
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
    const { N } = rt, a = rt.arrays, L = this.layout;
    const buf = this.memory.buffer, i32 = new Int32Array(buf, L.static), f32 = new Float32Array(buf, L.static);
    for (let n = 0; n < this.blocks * LANES; n++) {
      const b = (n >> 2) * (STATIC_BYTES / 4), j = n & 3, real = n < N;
      for (let i = 0; i < 3; i++) {
        i32[b + i * 4 + j] = L.verts + 12 * (real ? a.texel_verts[n * 3 + i] : 0);
        f32[b + (3 + i) * 4 + j] = real ? a.texel_bary[n * 3 + i] : 0;
      }
      f32[b + 24 + j] = real ? rt.gain[n] : 0;
      f32[b + 28 + j] = real ? rt.gaussPrior[n] : 0;
    }
  }

  /**
   * One frame, the posed vertices already in this.verts: this.out = the Gaussians.
   * @param {Float64Array} w (S) slot weights (0: the slot is not read). @param {object|null} corr the pose model's
   *   correction (AvatarRuntime.poseCorrection) or null. @param {number[]} c (3) the centroid it turns about.
   */
  run(w, corr, c) {
    const p = this.params, S = this.S;
    let key = 0; // the slots read, one bit each (exact in a double up to 52 slots)
    for (let s = 0; s < S; s++) {
      p[PARAMS + s] = w[s] * (this.half ? HALF_SCALE : 1);
      key = key * 2 + (w[s] !== 0 ? 1 : 0);
    }
    // Without a correction: the identity, exactly (1 x + 0 y + 0 z = x, as the quaternion product with (1, 0, 0, 0)).
    const { R, t, q } = corr || IDENTITY, cc = corr ? c : IDENTITY.t;
    for (let i = 0; i < 9; i++) p[i] = R[i];
    for (let d = 0; d < 3; d++) { p[9 + d] = cc[d] + t[d]; p[12 + d] = cc[d]; }
    for (let i = 0; i < 4; i++) p[15 + i] = q[i];
    let fn = this.runs.get(key);
    if (!fn) {
      const read = [];
      for (let s = 0; s < S; s++) if (w[s] !== 0) read.push(s);
      const module = new WebAssembly.Module(assemble(this.source(read)));
      fn = new WebAssembly.Instance(module, { env: { memory: this.memory } }).exports.run;
      this.runs.set(key, fn);
    }
    fn();
    return this.out;
  }

  /** The module reading slots `read` (see the top of this file), for wasm.js's assemble(): one function, run(),
   *  over every block. */
  source(read) {
    const L = this.layout, kc = this.constants, half = this.half, S = this.S;
    // Pointers (byte addresses, advanced a block at a time) and small constant offsets from them: V8 folds such
    // an offset into the instruction, where a large one (an array's base) became a register of its own, spilled.
    const pointers = [["$ps", L.static, STATIC_BYTES], ["$pm", L.maps, L.block], ["$pmeans", L.means, 48],
      ["$pquats", L.quats, 64], ["$pscales", L.scales, 48], ["$popac", L.opacities, 16], ["$pcolors", L.colors, 48],
      ["$pscratch", L.scratch, 0]];
    const locals = [["$n", "i32"], ...pointers.map(([p]) => [p, "i32"])];
    const vectors = ["$mask", "$bias", "$x", "$y", "$z", "$qn", "$bw", "$bx", "$by", "$bz", "$e", "$r",
      "$f0", "$f1", "$f2", "$f3", "$g0", "$g1", "$g2", "$g3", "$u0", "$u1", "$u2", "$u3"];
    const params = ["R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "ct0", "ct1", "ct2", "c0", "c1", "c2", "qw", "qx", "qy", "qz"];
    vectors.push(...params.map((nm) => `$${nm}`), ...read.map((s) => `$w${s}`));
    for (let i = 0; i < 3; i++) for (let d = 0; d < 3; d++) vectors.push(`$v${i}${d}`);
    const lines = [], consts = new Map();
    const emit = (...xs) => lines.push(...xs);
    // A constant splat, set once before the loop: V8 builds a v128.const from immediates at every use (several
    // instructions), a local costs at most a load.
    const k4 = (x) => {
      if (!consts.has(x)) consts.set(x, `$k${consts.size}`);
      return `local.get ${consts.get(x)}`;
    };
    const scratch = (c) => ["local.get $pscratch", `v128.load offset=${16 * c}`];

    /** Channel c blended into scratch: (sum of the weighted blend slots) + the mean slot, as runtime.js sums. */
    const blend = (c) => {
      const here = read.filter((s) => this.entry.has(c * S + s));
      const ordered = here.filter((s) => s !== 0).concat(here.includes(0) ? [0] : []);
      emit("local.get $pscratch");
      if (!ordered.length) emit(k4(0));
      ordered.forEach((s, i) => {
        const e = this.entry.get(c * S + s);
        if (!half) emit("local.get $pm", `v128.load offset=${16 * e}`);
        else { // 32-bit lane = (second << 16) | first; either to float32 bits as in HALF_MASK's comment
          emit("local.get $pm", `v128.load offset=${16 * (e >> 1)}`);
          if (!(e & 1)) emit("i32.const 16", "i32x4.shl");
          emit("i32.const 3", "i32x4.shr_s", "local.get $mask", "v128.and");
        }
        if (half || s !== 0) emit(`local.get $w${s}`, "f32x4.mul"); // the mean's weight is 1 (float32) or exactly 2^112
        if (i > 0) emit("f32x4.add");
      });
      emit(`v128.store offset=${16 * c}`);
    };
    /** e^(top of stack) onto the stack (EXP above). */
    const exp = () => {
      emit(k4(EXP.lo), "f32x4.pmax", k4(EXP.hi), "f32x4.pmin", "local.tee $x",
        k4(EXP.log2e), "f32x4.mul", "f32x4.nearest", "local.set $e",
        "local.get $x", "local.get $e", k4(EXP.c1), "f32x4.mul", "f32x4.sub",
        "local.get $e", k4(EXP.c2), "f32x4.mul", "f32x4.sub", "local.set $r", k4(EXP.p[0]));
      for (const c of EXP.p.slice(1)) emit("local.get $r", "f32x4.mul", k4(c), "f32x4.add");
      emit("local.get $r", "local.get $r", "f32x4.mul", "f32x4.mul", "local.get $r", "f32x4.add", k4(1), "f32x4.add",
        "local.get $e", "i32x4.trunc_sat_f32x4_s", "local.get $bias", "i32x4.add", "i32.const 23", "i32x4.shl", "f32x4.mul");
    };
    // 4x4 transposes (rows <-> columns: a field of 4 Gaussians <-> a Gaussian's fields) by shuffles that V8
    // emits as single unpack / move instructions
    const SHUF = { lo: "0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23", hi: "8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31",
      lo64: "0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23", hi64: "8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31" };
    const shuffle = (a, b, kind) => emit(`local.get ${a}`, `local.get ${b}`, `i8x16.shuffle ${SHUF[kind]}`);
    /** Locals rows (4) transposed into locals outs (those given). */
    const transpose = (rows, outs) => {
      [[rows[0], rows[1], "lo", "$u0"], [rows[0], rows[1], "hi", "$u1"], [rows[2], rows[3], "lo", "$u2"], [rows[2], rows[3], "hi", "$u3"]]
        .forEach(([a, b, kind, u]) => { shuffle(a, b, kind); emit(`local.set ${u}`); });
      [["$u0", "$u2", "lo64"], ["$u0", "$u2", "hi64"], ["$u1", "$u3", "lo64"], ["$u1", "$u3", "hi64"]]
        .forEach(([a, b, kind], j) => { if (outs[j]) { shuffle(a, b, kind); emit(`local.set ${outs[j]}`); } });
    };
    /** Store fields (locals, 3 or 4, each one per lane) as `width` floats per Gaussian at pointer p; 3-float
     *  Gaussians are written as 16 bytes each, in order, the next overwriting the spare float. */
    const store = (fields, p, width) => {
      transpose([...fields, fields[fields.length - 1]].slice(0, 4), ["$g0", "$g1", "$g2", "$g3"]);
      for (let j = 0; j < LANES; j++) emit(`local.get ${p}`, `local.get $g${j}`, `v128.store offset=${4 * width * j}`);
    };

    // -- the 13 channels, blended (each stored before the next is read, which keeps V8 from loading all maps
    // first and spilling them) ----------------------------------------------------------------------------------
    for (let c = 0; c < C; c++) blend(c);
    // -- means: the texel on its posed triangle plus its offset, turned about the centroid -------------------
    for (let i = 0; i < 3; i++) { // vertex i of 4 Gaussians: 4 loads of (x, y, z, spare), transposed
      for (let j = 0; j < LANES; j++) emit("local.get $ps", `i32.load offset=${16 * i + 4 * j}`, "v128.load", `local.set $g${j}`);
      transpose(["$g0", "$g1", "$g2", "$g3"], [`$v${i}0`, `$v${i}1`, `$v${i}2`]);
    }
    const xyz = ["$x", "$y", "$z"];
    for (let d = 0; d < 3; d++) {
      for (let i = 0; i < 3; i++) {
        emit(`local.get $v${i}${d}`, "local.get $ps", `v128.load offset=${48 + 16 * i}`, "f32x4.mul");
        if (i > 0) emit("f32x4.add");
      }
      emit(...scratch(d), "local.get $ps", "v128.load offset=96", "f32x4.mul", "f32x4.add", `local.get $c${d}`, "f32x4.sub",
        `local.set ${xyz[d]}`);
    }
    for (let d = 0; d < 3; d++) {
      emit(`local.get $R${3 * d}`, "local.get $x", "f32x4.mul", `local.get $R${3 * d + 1}`, "local.get $y", "f32x4.mul", "f32x4.add",
        `local.get $R${3 * d + 2}`, "local.get $z", "f32x4.mul", "f32x4.add", `local.get $ct${d}`, "f32x4.add", `local.set $f${d}`);
    }
    store(["$f0", "$f1", "$f2"], "$pmeans", 3);
    // -- scales: exp(initial log scale + offset) ----------------------------------------------------------------
    for (let d = 0; d < 3; d++) {
      emit(k4(kc.init_log_scale), ...scratch(3 + d), "f32x4.add");
      exp();
      emit(`local.set $f${d}`);
    }
    store(["$f0", "$f1", "$f2"], "$pscales", 3);
    // -- quaternions: (1, x, y, z) normalised (its norm is >= 1, so the 1e-12 floor never applies), then turned
    emit(...scratch(6), "local.set $x", ...scratch(7), "local.set $y", ...scratch(8), "local.set $z");
    emit(k4(1), "local.get $x", "local.get $x", "f32x4.mul", "f32x4.add", "local.get $y", "local.get $y", "f32x4.mul",
      "f32x4.add", "local.get $z", "local.get $z", "f32x4.mul", "f32x4.add", "f32x4.sqrt", "local.set $qn",
      k4(1), "local.get $qn", "f32x4.div", "local.set $bw");
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
      emit(`local.set $f${d}`);
    });
    store(["$f0", "$f1", "$f2", "$f3"], "$pquats", 4);
    // -- opacity: sigmoid(prior + offset) --------------------------------------------------------------------------
    emit("local.get $popac", k4(1), k4(0), "local.get $ps", "v128.load offset=112", ...scratch(9), "f32x4.add", "f32x4.sub");
    exp();
    emit(k4(1), "f32x4.add", "f32x4.div", "v128.store");
    // -- colours: max(0.5 + SH_C0 (initial DC + offset), 0) --------------------------------------------------------
    for (let d = 0; d < 3; d++) {
      emit(k4(0.5), k4(kc.sh_c0), k4(kc.init_color_dc), ...scratch(10 + d), "f32x4.add", "f32x4.mul", "f32x4.add", k4(0),
        "f32x4.pmax", `local.set $f${d}`);
    }
    store(["$f0", "$f1", "$f2"], "$pcolors", 3);
    // -- next block ----------------------------------------------------------------------------------------------
    for (const [p, , step] of pointers) if (step) emit(`local.get ${p}`, `i32.const ${step}`, "i32.add", `local.set ${p}`);
    emit("local.get $n", "i32.const 1", "i32.sub", "local.tee $n", "br_if 0", "end");

    // before the loop: pointers, parameters and constants
    const prelude = [`i32.const ${this.blocks}`, "local.set $n"];
    for (const [p, at] of pointers) prelude.push(`i32.const ${at}`, `local.set ${p}`);
    params.forEach((nm, i) => prelude.push("i32.const 0", `v128.load32_splat offset=${4 * i}`, `local.set $${nm}`));
    for (const s of read) prelude.push("i32.const 0", `v128.load32_splat offset=${4 * (PARAMS + s)}`, `local.set $w${s}`);
    prelude.push(`v128.const i32x4 ${HALF_MASK} ${HALF_MASK} ${HALF_MASK} ${HALF_MASK}`, "local.set $mask",
      "v128.const i32x4 127 127 127 127", "local.set $bias");
    for (const [x, name] of consts) { prelude.push(splat(x), `local.set ${name}`); vectors.push(name); }
    locals.push(...vectors.map((v) => [v, "v128"]));
    return { pages: this.memory.buffer.byteLength / 65536,
      funcs: [{ name: "run", params: [], locals, body: prelude.concat(["loop"], lines).join("\n") }] };
  }
}

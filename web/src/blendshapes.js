// The head model's expression blendshapes summed over the moving vertices with WebAssembly SIMD, for the runtime's
// wasm engine (runtime.js keeps the JS loop as the js engine's and the reference): sum_e c_e dirs_e over the
// components e whose coefficient is not 0, four components a pass, four floats an instruction, in float32.
// Memory: the components in use (row address, coefficient) | the sum (M floats) | dirs (Ne rows of M floats,
// each padded to a multiple of 4). Letters as in runtime.js; M = 3 x the number of moving vertices.

import { assemble } from "./wasm.js";

export class Blendshapes {
  /** @param {Float32Array} dirs (Ne * M) the pack's exprdirs. @param {number} Ne (> 0) @param {number} M (> 0) */
  constructor(dirs, Ne, M) {
    const row = Math.ceil(M / 4) * 16, groups = Math.ceil(Ne / 4); // bytes per padded row; passes at most
    this.Ne = Ne;
    this.L = { table: 0, sum: 16 * 4 * groups, dirs: 16 * 4 * groups + row };
    this.memory = new WebAssembly.Memory({ initial: Math.ceil((this.L.dirs + Ne * row) / 65536) });
    const buf = this.memory.buffer;
    this.table = new Int32Array(buf, 0, 8 * groups); // per component: its row's byte address, its coefficient's bits
    this.coef = new Float32Array(buf, 0, 8 * groups);
    this.sum = new Float32Array(buf, this.L.sum, M);
    for (let e = 0; e < Ne; e++) new Float32Array(buf, this.L.dirs + e * row, M).set(dirs.subarray(e * M, (e + 1) * M));
    this.row = row;
    this.run = new WebAssembly.Instance(new WebAssembly.Module(assemble(this.source(row / 16))),
      { env: { memory: this.memory } }).exports.run;
  }

  /** this.sum = sum_e expression[e] dirs_e (M floats; reused between calls). */
  at(expression) {
    let used = 0;
    for (let e = 0; e < this.Ne; e++) {
      if (expression[e] === 0) continue;
      this.table[2 * used] = this.L.dirs + e * this.row;
      this.coef[2 * used + 1] = expression[e];
      used++;
    }
    for (let u = used; u % 4; u++) { this.table[2 * u] = this.L.dirs; this.coef[2 * u + 1] = 0; } // 0 x row 0: exact 0
    this.run(Math.ceil(used / 4));
    return this.sum;
  }

  /** run(groups): sum = 0, then per group of 4 table entries: sum += c0 d0 + c1 d1 + c2 d2 + c3 d3, vector by vector. */
  source(vectors) {
    const L = this.L, lines = [];
    const emit = (...xs) => lines.push(...xs);
    /** A loop over the sum's vectors ($i its byte offset) around `body`. */
    const overSum = (...body) => emit("i32.const 0", "local.set $i", "loop", ...body, "local.get $i", "i32.const 16",
      "i32.add", "local.tee $i", `i32.const ${16 * vectors}`, "i32.ne", "br_if 0", "end");
    overSum("local.get $i", "v128.const i32x4 0 0 0 0", `v128.store offset=${L.sum}`);
    emit("local.get $groups", "i32.eqz", "br_if 0", "i32.const 0", "local.set $t", "loop");
    for (let j = 0; j < 4; j++) {
      emit("local.get $t", `i32.load offset=${8 * j}`, `local.set $d${j}`,
        "local.get $t", `v128.load32_splat offset=${8 * j + 4}`, `local.set $c${j}`);
    }
    const terms = [];
    for (let j = 0; j < 4; j++) {
      terms.push(`local.get $d${j}`, "local.get $i", "i32.add", "v128.load", `local.get $c${j}`, "f32x4.mul");
      if (j > 0) terms.push("f32x4.add");
    }
    overSum("local.get $i", "local.get $i", `v128.load offset=${L.sum}`, ...terms, "f32x4.add", `v128.store offset=${L.sum}`);
    emit("local.get $t", "i32.const 32", "i32.add", "local.set $t",
      "local.get $groups", "i32.const 1", "i32.sub", "local.tee $groups", "br_if 0", "end");
    const locals = [["$t", "i32"], ["$i", "i32"], ["$d0", "i32"], ["$d1", "i32"], ["$d2", "i32"], ["$d3", "i32"],
      ["$c0", "v128"], ["$c1", "v128"], ["$c2", "v128"], ["$c3", "v128"]];
    return { pages: this.memory.buffer.byteLength / 65536,
      funcs: [{ name: "run", params: [["$groups", "i32"]], locals, body: lines.join("\n") }] };
  }
}

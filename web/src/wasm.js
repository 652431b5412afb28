// A small assembler for the WebAssembly text instructions the runtime's kernels use (flat, one instruction per
// line, as `wat2wasm` reads them), so kernels can be generated per avatar at load time (unrolled over its maps)
// without a compiler toolchain or a build step: the same source runs under Node (tests) and in the page.
// Only what kernel.js and blendshapes.js need is here: a few i32 scalar instructions, 128-bit SIMD (f32x4, i32x4, shuffles),
// loop / br_if, locals, one imported memory.

const VALTYPE = { i32: 0x7f, v128: 0x7b };

// opcode, then the immediates: "mem" (align, offset=), "local", "depth", "blocktype", "i32", "v128" (f32x4 or
// i32x4 lanes), "lanes16" (a shuffle's 16 byte indices)
const PLAIN = {
  loop: [0x03, "blocktype"], end: [0x0b], br_if: [0x0d, "depth"],
  "local.get": [0x20, "local"], "local.set": [0x21, "local"], "local.tee": [0x22, "local"],
  "i32.load": [0x28, "mem"], "i32.const": [0x41, "i32"], "i32.eqz": [0x45], "i32.ne": [0x47], "i32.add": [0x6a],
  "i32.sub": [0x6b],
};
const SIMD = {
  "v128.load": [0x00, "mem"], "v128.load32_splat": [0x09, "mem"], "v128.store": [0x0b, "mem"],
  "v128.const": [0x0c, "v128"], "i8x16.shuffle": [0x0d, "lanes16"], "v128.and": [0x4e],
  "f32x4.nearest": [0x6a], "i32x4.shl": [0xab], "i32x4.shr_s": [0xac], "i32x4.add": [0xae],
  "f32x4.sqrt": [0xe3], "f32x4.add": [0xe4], "f32x4.sub": [0xe5], "f32x4.mul": [0xe6], "f32x4.div": [0xe7],
  "f32x4.pmin": [0xea], "f32x4.pmax": [0xeb], "i32x4.trunc_sat_f32x4_s": [0xf8],
};
const NATURAL_ALIGN = { "i32.load": 2, "v128.load": 4, "v128.load32_splat": 2, "v128.store": 4 };

const uleb = (out, v) => { do { let b = v & 0x7f; v >>>= 7; if (v) b |= 0x80; out.push(b); } while (v); };
function sleb(out, v) {
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && !(b & 0x40)) || (v === -1 && b & 0x40)) { out.push(b); return; }
    out.push(b | 0x80);
  }
}
const f32Bytes = (x) => Array.from(new Uint8Array(new Float32Array([x]).buffer));
const i32Bytes = (x) => Array.from(new Uint8Array(new Int32Array([x]).buffer));

/** One function body (instructions, one a line; `;;` starts a comment) -> code bytes, locals named by `names`. */
function encodeBody(text, names) {
  const out = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/;;.*/, "").trim();
    if (!line) continue;
    const [op, ...args] = line.split(/\s+/);
    const plain = PLAIN[op], simd = SIMD[op];
    if (!plain && !simd) throw new Error(`wasm.js: unknown instruction ${op}`);
    const [code, imm] = plain || simd;
    if (simd) { out.push(0xfd); uleb(out, code); } else out.push(code);
    if (imm === "mem") {
      const offset = args.find((a) => a.startsWith("offset="));
      out.push(NATURAL_ALIGN[op]);
      uleb(out, offset ? Number(offset.slice(7)) : 0);
    } else if (imm === "local") {
      const i = args[0].startsWith("$") ? names.get(args[0]) : Number(args[0]);
      if (i === undefined) throw new Error(`wasm.js: unknown local ${args[0]}`);
      uleb(out, i);
    } else if (imm === "depth") uleb(out, Number(args[0]));
    else if (imm === "blocktype") out.push(0x40); // no parameters, no results
    else if (imm === "lanes16") out.push(...args.slice(0, 16).map(Number));
    else if (imm === "i32") sleb(out, Number(args[0]) | 0);
    else if (imm === "v128") {
      if (args[0] === "f32x4") for (const x of args.slice(1, 5)) out.push(...f32Bytes(Number(x)));
      else if (args[0] === "i32x4") for (const x of args.slice(1, 5)) out.push(...i32Bytes(Number(x)));
      else throw new Error(`wasm.js: v128.const ${args[0]} is not supported`);
    }
  }
  out.push(0x0b);
  return out;
}

const section = (id, bytes) => { const out = [id]; uleb(out, bytes.length); return out.concat(bytes); };
const vec = (items) => { const out = []; uleb(out, items.length); return out.concat(...items); };
const name = (s) => { const b = Array.from(new TextEncoder().encode(s)); const out = []; uleb(out, b.length); return out.concat(b); };

/**
 * A module importing memory "env" "memory" (pages: its minimum) and exporting the given functions.
 * @param {{pages: number, funcs: {name: string, params: [string, string][], locals: [string, string][], body: string}[]}} m
 *   params and locals as [$name, type] with type "i32" | "v128"; functions return nothing.
 * @returns {Uint8Array} the module's bytes.
 */
export function assemble({ pages, funcs }) {
  const types = funcs.map((f) => [0x60, ...vec(f.params.map(([, t]) => [VALTYPE[t]])), 0]);
  const imports = [[...name("env"), ...name("memory"), 0x02, 0x00, ...(() => { const o = []; uleb(o, pages); return o; })()]];
  const codes = funcs.map((f) => {
    const names = new Map([...f.params, ...f.locals].map(([n], i) => [n, i]));
    const runs = []; // locals as (count, type) runs of one type
    for (const [, t] of f.locals) {
      if (runs.length && runs[runs.length - 1][1] === VALTYPE[t]) runs[runs.length - 1][0]++;
      else runs.push([1, VALTYPE[t]]);
    }
    const locals = vec(runs.map(([n, t]) => { const o = []; uleb(o, n); return o.concat(t); }));
    const body = locals.concat(encodeBody(f.body, names));
    const out = [];
    uleb(out, body.length);
    return out.concat(body);
  });
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, vec(imports)),
    ...section(3, vec(funcs.map((_, i) => { const o = []; uleb(o, i); return o; }))),
    ...section(7, vec(funcs.map((f, i) => { const o = [...name(f.name), 0x00]; uleb(o, i); return o; }))),
    ...section(10, vec(codes)),
  ]);
}

/** Whether this engine runs 128-bit WebAssembly SIMD (a one-instruction module that uses it validates). */
export function simdSupported() {
  if (typeof WebAssembly !== "object" || typeof WebAssembly.validate !== "function") return false;
  try {
    return WebAssembly.validate(assemble({ pages: 1, funcs: [{ name: "f", params: [], locals: [["$v", "v128"]],
      body: "v128.const i32x4 0 0 0 0\nlocal.set $v" }] }));
  } catch {
    return false;
  }
}

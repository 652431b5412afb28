// The avatar evaluated on the GPU: a Spark splat source (SplatMesh({splats})) whose per-splat program does the
// blend of the per-Gaussian maps, the barycentric texel placement, the activations and the pose model's rigid
// correction, reading textures uploaded once. Per frame the CPU runs only the head model (runtime.js
// AvatarRuntime.vertices), the K blend weights and the pose correction, and uploads the posed vertices
// (one small float texture) and a few uniforms. runtime.js stays the reference twin: tests/web reads this
// program's output back (readGaussians) and compares it with AvatarRuntime.evaluate.
// Letters as in runtime.js: V vertices, N Gaussians, K blendmaps; S map slots per Gaussian (mean, blendmaps,
// stage-1 delta), each 4 RGBA texels holding the 13 channels (dejavu/gaussians/channels.py) padded to 16.

import * as THREE from "three";
import { Readback, dyno } from "@sparkjsdev/spark";
import { C, channelLayoutProblem } from "./channels.js";

const VERT_BITS = 10; // the vertex texture is 1024 texels wide: a few rows for 3-5k vertices
const FIELDS = 14; // what readGaussians reads per splat: mean 3, quaternion wxyz 4, scales 3, opacity 1, colour 3

/** log2 of the per-Gaussian textures' width: 4096 texels, or the context's largest power of two below. */
const textureBits = (maxTextureSize) => Math.min(12, Math.floor(Math.log2(maxTextureSize)));

/** Why this pack or context cannot use the GPU path (the page then evaluates on the CPU); null when it can. */
export function gpuUnsupported(rt, maxTextureSize) {
  const layout = channelLayoutProblem(rt.meta);
  if (layout) return layout;
  const width = 1 << textureBits(maxTextureSize);
  const slots = rt.slots.count;
  const rows = Math.ceil((rt.N * slots * 4) / width);
  if (rows > maxTextureSize) return `${rt.N} Gaussians x ${slots} maps need ${rows} texture rows (limit ${maxTextureSize})`;
  return null;
}

function dataTexture(data, width, height, kind) {
  const [format, type, internal] = {
    u32: [THREE.RGBAIntegerFormat, THREE.UnsignedIntType, "RGBA32UI"],
    f32: [THREE.RGBAFormat, THREE.FloatType, "RGBA32F"],
    f16: [THREE.RGBAFormat, THREE.HalfFloatType, "RGBA16F"],
  }[kind];
  const tex = new THREE.DataTexture(data, width, height, format, type);
  tex.internalFormat = internal;
  tex.minFilter = tex.magFilter = THREE.NearestFilter;
  tex.generateMipmaps = false;
  tex.needsUpdate = true;
  return tex;
}

const glsl = (x) => (Number.isInteger(x) ? `${x}.0` : `${x}`);

/** A Spark SplatSource evaluating an AvatarRuntime's Gaussians on the GPU (see the top of this file). */
export class GpuAvatar {
  /**
   * @param {import("./runtime.js").AvatarRuntime} rt the CPU runtime (head model, blend weights, pose model).
   * @param {number} maxTextureSize the context's MAX_TEXTURE_SIZE (renderer.capabilities.maxTextureSize).
   */
  constructor(rt, maxTextureSize) {
    const why = gpuUnsupported(rt, maxTextureSize);
    if (why) throw new Error(why);
    this.rt = rt;
    const { V } = rt;
    this.bits = textureBits(maxTextureSize);
    const W = 1 << this.bits;
    // Map slots (AvatarRuntime.slots): 0 the mean offsets, then the K blendmaps, then the stage-1 delta.
    this.blendSlot = rt.slots.blend;
    this.globalSlot = rt.slots.global;
    const S = (this.S = rt.slots.count);
    this.textures = { texels: this.texelTexture(W), geom: this.geomTexture(W), maps: this.mapTexture(W) };
    const vRows = Math.ceil(V / (1 << VERT_BITS));
    this.vertData = new Float32Array((1 << VERT_BITS) * vRows * 4);
    this.textures.verts = dataTexture(this.vertData, 1 << VERT_BITS, vRows, "f32");
    this.uniformBytes = 4 * (S + 2 + 9 + 3 + 3 + 4 + 1);
    this.uniforms = {
      dejavu_texels: { value: this.textures.texels }, dejavu_geom: { value: this.textures.geom },
      dejavu_maps: { value: this.textures.maps }, dejavu_verts: { value: this.textures.verts },
      dejavu_w: { value: new Float32Array(S) }, dejavu_first: { value: 0 }, dejavu_last: { value: 0 },
      dejavu_rigid: { value: false }, dejavu_R: { value: new THREE.Matrix3() },
      dejavu_c: { value: new THREE.Vector3() }, dejavu_t: { value: new THREE.Vector3() },
      dejavu_q: { value: new THREE.Vector4(0, 0, 0, 1) },
    };
    this.params = {};
  }

  /** (v0, v1, v2, 1 if the offsets move the mean else 0) per Gaussian (N texels, RGBA32UI). */
  texelTexture(W) {
    const { N } = this.rt, a = this.rt.arrays, frozen = this.rt.meta.xyz_frozen;
    const data = new Uint32Array(Math.ceil(N / W) * W * 4);
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < 3; i++) data[n * 4 + i] = a.texel_verts[n * 3 + i];
      data[n * 4 + 3] = frozen[a.texel_region[n]] ? 0 : 1;
    }
    return dataTexture(data, W, Math.ceil(N / W), "u32");
  }

  /** (b0, b1, b2, opacity prior) per Gaussian (N texels, RGBA32F). */
  geomTexture(W) {
    const { N, prior } = this.rt, a = this.rt.arrays;
    const data = new Float32Array(Math.ceil(N / W) * W * 4);
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < 3; i++) data[n * 4 + i] = a.texel_bary[n * 3 + i];
      data[n * 4 + 3] = prior[a.texel_region[n]];
    }
    return dataTexture(data, W, Math.ceil(N / W), "f32");
  }

  /** The maps, (N, S, 16) texels of 4 channels: the pack's float16 bits as stored (RGBA16F), or RGBA32F. */
  mapTexture(W) {
    const { N, K, meta, buffer } = this.rt, S = this.S;
    const half = meta.arrays.mean_offsets.dtype === "float16";
    const raw = (name) => {
      const e = meta.arrays[name];
      if (!e) return null;
      const count = e.shape.reduce((x, y) => x * y, 1);
      if ((e.dtype === "float16") !== half) throw new Error(`avatar.json: ${name} is ${e.dtype}, mean_offsets is not`);
      return half ? new Uint16Array(buffer, e.offset, count) : this.rt.arrays[name];
    };
    const mean = raw("mean_offsets"), blend = raw("blendmaps"), delta = raw("global_delta");
    const rows = Math.ceil((N * S * 4) / W);
    const data = half ? new Uint16Array(rows * W * 4) : new Float32Array(rows * W * 4);
    for (let n = 0; n < N; n++) {
      const base = n * S * 16;
      for (let c = 0; c < C; c++) {
        data[base + c] = mean[n * C + c];
        if (blend) for (let k = 0; k < K; k++) data[base + (this.blendSlot + k) * 16 + c] = blend[(n * C + c) * K + k];
        if (delta) data[base + this.globalSlot * 16 + c] = delta[n * C + c];
      }
    }
    return dataTexture(data, W, rows, half ? "f16" : "f32");
  }

  /**
   * Set the frame: the head model and blend weights on the CPU, then the vertex texture and uniforms. The caller
   * marks the SplatMesh changed (mesh.updateVersion()) so Spark regenerates the splats.
   * @param {{expression?: ArrayLike<number>, jaw?: number[], eyes?: number[], pose?: number[], stage?: string}} p
   *   as AvatarRuntime.evaluate.
   */
  update(p = {}) {
    const rt = this.rt, u = this.uniforms, stage = p.stage || "full";
    const expression = p.expression || new Float64Array(rt.Ne), jaw = p.jaw || [0, 0, 0];
    this.params = { ...p, stage, expression: Float64Array.from(expression), jaw };
    const verts = rt.vertices(expression, jaw, p.eyes || null, p.pose || null);
    for (let v = 0; v < rt.V; v++) {
      this.vertData[v * 4] = verts[v * 3]; this.vertData[v * 4 + 1] = verts[v * 3 + 1]; this.vertData[v * 4 + 2] = verts[v * 3 + 2];
    }
    this.textures.verts.needsUpdate = true;
    const w = u.dejavu_w.value.fill(0), kind = rt.offsetKind(stage);
    if (kind === "blend") {
      const bw = rt.blendWeights(expression);
      for (let k = 0; k < rt.K; k++) w[this.blendSlot + k] = bw[k];
      u.dejavu_first.value = this.blendSlot; u.dejavu_last.value = this.blendSlot + rt.K;
    } else if (kind === "global") {
      w[this.globalSlot] = 1;
      u.dejavu_first.value = this.globalSlot; u.dejavu_last.value = this.globalSlot + 1;
    } else u.dejavu_first.value = u.dejavu_last.value = 0;
    const corr = rt.poseCorrection(expression, jaw, stage);
    u.dejavu_rigid.value = !!corr;
    if (corr) {
      const c = rt.centroid.at(verts, rt.slotWeights(expression, stage)); // the means' centroid, in O(V + S)
      const R = corr.R;
      u.dejavu_R.value.set(R[0], R[1], R[2], R[3], R[4], R[5], R[6], R[7], R[8]); // row-major in, column-major kept
      u.dejavu_c.value.set(c[0], c[1], c[2]);
      u.dejavu_t.value.set(corr.t[0], corr.t[1], corr.t[2]);
      u.dejavu_q.value.set(corr.q[1], corr.q[2], corr.q[3], corr.q[0]); // xyzw, Spark's order
    }
  }

  /** Bytes sent to the GPU per frame: the vertex texture and the uniforms. */
  get uploadBytes() { return this.vertData.byteLength + this.uniformBytes; }

  // -- Spark's SplatSource interface --------------------------------------------------------------------------
  prepareFetchSplat() {}
  dispose() { for (const t of Object.values(this.textures)) t.dispose(); }
  getNumSplats() { return this.rt.N; }
  hasRgbDir() { return false; }
  getNumSh() { return 0; }
  setMaxSh() {}

  /** Spark's bounding box and raycasts read the splats on the CPU: the twin's Gaussians at the current frame. */
  forEachSplat(callback) {
    const g = this.rt.evaluate(this.params), center = new THREE.Vector3(), scales = new THREE.Vector3();
    const quat = new THREE.Quaternion(), color = new THREE.Color();
    for (let n = 0; n < this.rt.N; n++) {
      center.fromArray(g.means, n * 3); scales.fromArray(g.scales, n * 3);
      quat.set(g.quats[n * 4 + 1], g.quats[n * 4 + 2], g.quats[n * 4 + 3], g.quats[n * 4]);
      color.fromArray(g.colors, n * 3);
      callback(n, center, scales, quat, g.opacities[n], color);
    }
  }

  /** The per-splat program: Gaussian index -> Gsplat (centre, scales, quaternion xyzw, rgba = colour, opacity). */
  fetchSplat({ index }) {
    return new dyno.Dyno({
      inTypes: { index: "int" }, outTypes: { gsplat: dyno.Gsplat }, inputs: { index },
      generate: ({ inputs, outputs }) => ({
        globals: [dyno.defineGsplat, this.globals()], uniforms: this.uniforms,
        statements: this.statements(inputs.index, outputs.gsplat).split("\n"),
      }),
    }).outputs.gsplat;
  }

  globals() {
    return `uniform highp usampler2D dejavu_texels;
uniform highp sampler2D dejavu_geom;
uniform highp sampler2D dejavu_maps;
uniform highp sampler2D dejavu_verts;
uniform float dejavu_w[${this.S}];
uniform int dejavu_first;
uniform int dejavu_last;
uniform bool dejavu_rigid;
uniform mat3 dejavu_R;
uniform vec3 dejavu_c;
uniform vec3 dejavu_t;
uniform vec4 dejavu_q;
ivec2 dejavuAt(int i) { return ivec2(i & ${(1 << this.bits) - 1}, i >> ${this.bits}); }
vec3 dejavuVert(uint v) { return texelFetch(dejavu_verts, ivec2(int(v) & ${(1 << VERT_BITS) - 1}, int(v) >> ${VERT_BITS}), 0).xyz; }`;
  }

  statements(index, out) {
    const k = this.rt.meta.constants;
    return `int n = ${index};
uvec4 tv = texelFetch(dejavu_texels, dejavuAt(n), 0);
vec4 gb = texelFetch(dejavu_geom, dejavuAt(n), 0);
int base = n * ${this.S * 4};
ivec2 at = dejavuAt(base);
vec4 o0 = texelFetch(dejavu_maps, at, 0), o1 = texelFetch(dejavu_maps, at + ivec2(1, 0), 0);
vec4 o2 = texelFetch(dejavu_maps, at + ivec2(2, 0), 0), o3 = texelFetch(dejavu_maps, at + ivec2(3, 0), 0);
vec4 a0 = vec4(0.0), a1 = vec4(0.0), a2 = vec4(0.0), a3 = vec4(0.0);
for (int s = dejavu_first; s < dejavu_last; s++) {
  float w = dejavu_w[s];
  if (w == 0.0) continue; // a map whose weight underflowed is not read
  ivec2 p = dejavuAt(base + 4 * s);
  a0 += w * texelFetch(dejavu_maps, p, 0); a1 += w * texelFetch(dejavu_maps, p + ivec2(1, 0), 0);
  a2 += w * texelFetch(dejavu_maps, p + ivec2(2, 0), 0); a3 += w * texelFetch(dejavu_maps, p + ivec2(3, 0), 0);
}
o0 += a0; o1 += a1; o2 += a2; o3 += a3;
vec3 mean = dejavuVert(tv.x) * gb.x + dejavuVert(tv.y) * gb.y + dejavuVert(tv.z) * gb.z + o0.xyz * (float(tv.w) * ${glsl(k.xyz_unit_m)});
vec3 scales = exp(${glsl(k.init_log_scale)} + vec3(o0.w, o1.x, o1.y));
vec3 r = vec3(o1.z, o1.w, o2.x);
float qn = max(sqrt(1.0 + dot(r, r)), 1e-12);
vec4 quat = vec4(r / qn, 1.0 / qn);
float opacity = 1.0 / (1.0 + exp(-(gb.w + o2.y)));
vec3 color = max(0.5 + ${glsl(k.sh_c0)} * (${glsl(k.init_color_dc)} + vec3(o2.z, o2.w, o3.x)), 0.0);
if (dejavu_rigid) {
  mean = dejavu_R * (mean - dejavu_c) + dejavu_c + dejavu_t;
  quat = quatQuat(dejavu_q, quat);
}
${out}.center = mean;
${out}.scales = scales;
${out}.quaternion = quat;
${out}.rgba = vec4(color, opacity);
${out}.index = n;
${out}.flags = GSPLAT_FLAG_ACTIVE;`;
  }

  // -- reading the program's output back (tests, benchmarks) --------------------------------------------------
  /** A Readback program: output index i -> the float32 bits of field i % 14 of Gaussian i / 14, or with
   *  one = true one output per Gaussian (a sum of its fields: the benchmark's pass, as much work as Spark's). */
  reader(one = false) {
    return dyno.dynoBlock({ index: "int" }, { rgba8: "vec4" }, ({ index }) => {
      const n = new dyno.Dyno({
        inTypes: { index: "int" }, outTypes: { n: "int" }, inputs: { index },
        statements: ({ inputs, outputs }) => [`${outputs.n} = ${inputs.index} / ${one ? 1 : FIELDS};`],
      }).outputs.n;
      const gsplat = this.fetchSplat({ index: n });
      const rgba8 = new dyno.Dyno({
        inTypes: { index: "int", gsplat: dyno.Gsplat }, outTypes: { rgba8: "vec4" }, inputs: { index, gsplat },
        statements: ({ inputs, outputs }) => {
          const g = inputs.gsplat;
          if (one) return [`${outputs.rgba8} = floatToVec4(dot(${g}.center, ${g}.scales) + dot(${g}.quaternion, ${g}.rgba));`];
          return [
            `float f[${FIELDS}] = float[${FIELDS}](${g}.center.x, ${g}.center.y, ${g}.center.z, ${g}.quaternion.w,`,
            `  ${g}.quaternion.x, ${g}.quaternion.y, ${g}.quaternion.z, ${g}.scales.x, ${g}.scales.y, ${g}.scales.z,`,
            `  ${g}.rgba.a, ${g}.rgba.r, ${g}.rgba.g, ${g}.rgba.b);`,
            `${outputs.rgba8} = floatToVec4(f[${inputs.index} % ${FIELDS}]);`,
          ];
        },
      }).outputs.rgba8;
      return { rgba8 };
    });
  }

  /**
   * The GPU program's Gaussians for the current frame (update() first), read back: the fields of
   * AvatarRuntime.evaluate (means, quats wxyz, scales, opacities, colors), float32, fresh arrays.
   * @param {THREE.WebGLRenderer} renderer
   */
  async readGaussians(renderer) {
    const N = this.rt.N;
    this.readback = this.readback || new Readback({ renderer });
    this.fieldReader = this.fieldReader || this.reader(false);
    this.readback.ensureCapacity(N * FIELDS);
    const buf = this.readback.ensureBuffer(N * FIELDS, new Float32Array(0));
    const f = await this.readback.renderReadback({ reader: this.fieldReader, count: N * FIELDS, renderer, readback: buf });
    const out = { means: new Float32Array(N * 3), quats: new Float32Array(N * 4), scales: new Float32Array(N * 3),
      opacities: new Float32Array(N), colors: new Float32Array(N * 3) };
    for (let n = 0; n < N; n++) {
      const b = n * FIELDS;
      for (let d = 0; d < 3; d++) {
        out.means[n * 3 + d] = f[b + d]; out.scales[n * 3 + d] = f[b + 7 + d]; out.colors[n * 3 + d] = f[b + 11 + d];
      }
      for (let d = 0; d < 4; d++) out.quats[n * 4 + d] = f[b + 3 + d];
      out.opacities[n] = f[b + 10];
    }
    return out;
  }

  /**
   * Run the per-splat program over all N Gaussians once (as Spark does when the frame changes) and wait for the
   * GPU (a one-texel read blocks until it is done): what a frame costs before its splats can be sorted and drawn.
   */
  generateAndWait(renderer) {
    const N = this.rt.N;
    this.readback = this.readback || new Readback({ renderer });
    this.sumReader = this.sumReader || this.reader(true);
    this.readback.ensureCapacity(N);
    this.readback.render({ reader: this.sumReader, count: N, renderer });
    const gl = renderer.getContext(), px = new Uint8Array(4), previous = renderer.getRenderTarget();
    renderer.setRenderTarget(this.readback.target, 0);
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
    renderer.setRenderTarget(previous);
  }
}

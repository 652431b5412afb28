// The centroid of an avatar's means (before the pose model) without a pass over its Gaussians: the means are
// linear in the posed vertices and the maps, so their centroid is sum_v A_v vertex_v + sum_s w_s M_s, with A (V)
// and M (S, 3) computed once. The pose model turns the Gaussians about it; the GPU program (gpu.js) and the
// WebAssembly kernel (kernel.js) need it before they place any Gaussian.

import { C } from "./channels.js";

export class Centroid {
  /** @param {import("./runtime.js").AvatarRuntime} rt */
  constructor(rt) {
    const { N, V, K } = rt, a = rt.arrays, frozen = rt.meta.xyz_frozen, { blend, global, count } = rt.slots;
    const unit = rt.meta.constants.xyz_unit_m;
    this.V = V;
    this.vertexWeights = new Float64Array(V);
    for (let n = 0; n < N; n++) for (let i = 0; i < 3; i++) this.vertexWeights[a.texel_verts[n * 3 + i]] += a.texel_bary[n * 3 + i] / N;
    const m = (this.slotCentroids = new Float64Array(count * 3));
    for (let n = 0; n < N; n++) {
      if (frozen[a.texel_region[n]]) continue;
      const g = unit / N;
      for (let d = 0; d < 3; d++) {
        m[d] += g * a.mean_offsets[n * C + d];
        if (blend >= 0) for (let k = 0; k < K; k++) m[(blend + k) * 3 + d] += g * a.blendmaps[(n * C + d) * K + k];
        if (global >= 0) m[global * 3 + d] += g * a.global_delta[n * C + d];
      }
    }
    this.c = [0, 0, 0];
  }

  /**
   * @param {Float32Array} verts (V * 3) posed vertices. @param {ArrayLike<number>} w (S) slot weights
   *   (AvatarRuntime.slotWeights). @returns {number[]} (3) the centroid, metres (reused between calls).
   */
  at(verts, w) {
    const m = this.slotCentroids, A = this.vertexWeights;
    for (let d = 0; d < 3; d++) {
      let s = 0;
      for (let sl = 0; sl < w.length; sl++) if (w[sl] !== 0) s += w[sl] * m[sl * 3 + d];
      for (let v = 0; v < this.V; v++) s += A[v] * verts[v * 3 + d];
      this.c[d] = s;
    }
    return this.c;
  }
}

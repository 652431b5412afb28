/* AVX2/FMA tile kernels of the CPU rasterizer: the per-tile bodies of ``_forward`` and ``_backward`` in
 * ``dejavu/render/cpu.py``, 8 adjacent pixels of a row span per vector (float32 lanes).
 *
 * Built and loaded by ``dejavu/render/simd.py`` (cc -O3 -mavx2 -mfma -shared -fPIC, no -ffast-math), which
 * passes the image-defining constants as -D flags (DJ_TILE, DJ_ALPHA_MIN, DJ_ALPHA_MAX, DJ_T_MIN) and
 * calls one tile per call from a numba prange loop (numba owns the threads). Arrays are C-contiguous
 * float32 / int32 / int64, laid out exactly as the numba kernels take them; the params columns below
 * are cpu.py's ``_MX .. _LIM``.
 *
 * The same algorithm as the numba kernels, lane-parallel: per-pixel state (T, accumulators, last index,
 * stopped) lives in tile arrays, so the 8 pixels of a vector are independent lanes; masks replace the
 * per-pixel branches; the backward's per-Gaussian gradient sums are lane accumulators summed at the end
 * of each Gaussian. Differences to numba are float rounding only: exp is a Cephes-style polynomial
 * (<= 2 ulp) and products are fused (FMA).
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define TS DJ_TILE
#define NPIX (TS * TS)
/* tile arrays are padded by one vector: a span's last vector may run past the row (into the next row,
 * or past the tile); those lanes are masked and store back what they loaded */
#define PADDED (NPIX + 8)
#define NP 13 /* params columns */
enum { MX, MY, CA, CB, CC, OP, CR, CG, CBL, Z, EX, EY, LIM };
#define NV 10 /* gradient columns: v_mx, v_my, v_ca, v_cb, v_cc, v_op, v_r, v_g, v_b, v_z */

/* exp(x) for 8 lanes, Cephes expf: x = n ln2 + r (ln2 split in two for exactness), a degree-6 polynomial
 * in r, times 2^n built in the exponent bits. x is clamped to [-87.3, 88.3] so 2^n stays normal. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* a < b ? a : b and the other way (fminf / fmaxf are library calls without -ffast-math) */
static inline float minf(float a, float b) { return a < b ? a : b; }
static inline float maxf(float a, float b) { return a > b ? a : b; }

/* A tile's list names Gaussians in depth order, scattered in params: fetch a row ahead of its use (a
 * row is 52 bytes, up to two cache lines). */
#define PREFETCH_AHEAD 8
static inline void prefetch_row(const float *params, int32_t g) {
    __builtin_prefetch(params + (int64_t)g * NP);
    __builtin_prefetch(params + (int64_t)g * NP + NP - 1);
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Tile pixel rect of global tile tid: columns [X0, X1), rows [Y0, Y1), frame b. */
typedef struct { int64_t b; int X0, Y0, X1, Y1; } Tile;

static inline Tile tile_rect(int64_t tid, int64_t tw, int64_t th, int64_t H, int64_t W) {
    Tile t;
    int64_t n_tiles = tw * th, tt = tid % n_tiles;
    t.b = tid / n_tiles;
    t.X0 = (int)((tt % tw) * TS);
    t.Y0 = (int)((tt / tw) * TS);
    t.X1 = (int)(t.X0 + TS < W ? t.X0 + TS : W);
    t.Y1 = (int)(t.Y0 + TS < H ? t.Y0 + TS : H);
    return t;
}

/* [lo, hi) of the tile's [T0, T1) whose pixel centres lie within m +- e (a Gaussian's pixel box along
 * one axis, as cpu._row_range). Clamped in float first: an int conversion of an out-of-range float is
 * undefined. */
static inline void box_range(float m, float e, int T0, int T1, int *lo, int *hi) {
    int a = (int)ceilf(maxf(m - e - 0.5f, (float)T0 - 1.0f)), b = (int)floorf(minf(m + e - 0.5f, (float)T1 + 1.0f)) + 1;
    *lo = a > T0 ? a : T0;
    *hi = b < T1 ? b : T1;
}

/* The pixels of tile t inside a Gaussian's pixel box: rows [py0, py1), columns [px0, px1); 0 when none.
 * A Gaussian is evaluated on its whole box, not only on its alpha >= 1/255 ellipse as numba does row by
 * row: the per-pixel alpha test is exact, so the same pixels composite, and a square root, two roundings
 * and an unpredictable trip count per row cost more than the lanes the box adds outside the ellipse (the
 * box is 4/pi of the ellipse's area). */
static inline int pixel_box(const float *p, const Tile *t, int *py0, int *py1, int *px0, int *px1) {
    box_range(p[MY], p[EY], t->Y0, t->Y1, py0, py1);
    box_range(p[MX], p[EX], t->X0, t->X1, px0, px1);
    return *py0 < *py1 && *px0 < *px1;
}

/* A box's columns [px0, px1) (<= TS) as one or two vectors from px0, built once per Gaussian and tile:
 * per vector v, dx_v = mx - x - 0.5 at the lanes' pixel centres x = px0 + 8 v + l, and in_v the lanes
 * inside the box (the others may lie past the row, in the next row or the padding). Returns the count. */
static inline int box_vectors(int px0, int px1, float mx, __m256 *dx0, __m256 *dx1, __m256 *in0, __m256 *in1) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), n = _mm256_set1_epi32(px1 - px0);
    *dx0 = _mm256_sub_ps(_mm256_set1_ps(mx - ((float)px0 + 0.5f)), _mm256_cvtepi32_ps(lanes));
    *dx1 = _mm256_sub_ps(*dx0, _mm256_set1_ps(8.0f));
    *in0 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(n, lanes));
    *in1 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(n, _mm256_add_epi32(lanes, _mm256_set1_epi32(8))));
    return px1 - px0 > 8 ? 2 : 1;
}

/* A Gaussian's per-tile setup, shared by both kernels: its pixel box in the tile (rows [py0, py1), columns
 * from px0, j0 = px0 - X0), the box's lane vectors (box_vectors) and its parameters, as scalars and broadcast. */
typedef struct {
    int py0, py1, px0, j0, nvec;
    float my, ca, cb, cc;
    __m256 dx0, dx1, in0, in1, vca, vo, vcr, vcg, vcb, vz, vlim;
} Splat;

/* Fill g for the Gaussian of params row p whose pixel box in tile t is rows [py0, py1), columns [px0, px1). */
static inline void splat_setup(const float *p, const Tile *t, int py0, int py1, int px0, int px1, Splat *g) {
    g->py0 = py0;
    g->py1 = py1;
    g->px0 = px0;
    g->my = p[MY];
    g->ca = p[CA];
    g->cb = p[CB];
    g->cc = p[CC];
    g->j0 = px0 - t->X0;
    g->nvec = box_vectors(px0, px1, p[MX], &g->dx0, &g->dx1, &g->in0, &g->in1);
    g->vca = _mm256_set1_ps(g->ca);
    g->vo = _mm256_set1_ps(p[OP]);
    g->vcr = _mm256_set1_ps(p[CR]);
    g->vcg = _mm256_set1_ps(p[CG]);
    g->vcb = _mm256_set1_ps(p[CBL]);
    g->vz = _mm256_set1_ps(p[Z]);
    /* power beyond lim means alpha < ALPHA_MIN: such lanes skip the exp. Widened by 1e-4 (relative and
     * absolute), far more than exp8's and lim's rounding, so no lane the alpha test keeps is skipped */
    g->vlim = _mm256_set1_ps(p[LIM] * 1.0001f + 1e-4f);
}

/* The box's columns [px0, px1) as bits of a tile row (bit j = column X0 + j). */
static inline uint32_t box_bits(const Tile *t, int px0, int px1) {
    return ((1u << (px1 - px0)) - 1u) << (px0 - t->X0);
}

/* Front-to-back compositing of tile tid (cpu._forward's loop body): writes out (B, H, W, 5) [r, g, b,
 * depth, alpha], T_out (B, H, W) and last_out (B, H, W) on the tile's pixels. With n_v > 0 also
 * v_rows[k] (I, n_v) += w * v_pix[b, y, x] (v_pix (B, H, W, n_v)) over the pixels of intersection k. */
void dj_forward_tile(const float *params, const int64_t *offsets, const int32_t *gids, const float *bg,
                     float *out, float *T_out, int32_t *last_out, int64_t tid, int64_t tw, int64_t th,
                     int64_t H, int64_t W, const float *v_pix, int64_t n_v, float *v_rows) {
    Tile t = tile_rect(tid, tw, th, H, W);
    float T[PADDED], acc[4][PADDED];
    int32_t last[PADDED], done[PADDED]; /* done: -1 = stopped (lane mask) */
    /* row_done[r]: bit j set when pixel (r, j) of the tile has stopped. Once the front of the head has
     * covered a pixel, every Gaussian behind it still lists there while the tile's outline pixels are
     * live (~60% of a trained head's vectors at 512^2): whole rows and Gaussians whose box is stopped
     * are skipped on these bits, without touching their lanes. */
    uint32_t row_done[TS];
    for (int q = 0; q < PADDED; q++) {
        T[q] = 1.0f;
        acc[0][q] = acc[1][q] = acc[2][q] = acc[3][q] = 0.0f;
        last[q] = -1;
        done[q] = 0;
    }
    for (int r = 0; r < TS; r++) row_done[r] = 0;
    int n_live = (t.X1 - t.X0) * (t.Y1 - t.Y0);
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 amax = _mm256_set1_ps(DJ_ALPHA_MAX), amin = _mm256_set1_ps(DJ_ALPHA_MIN);
    const __m256 tmin = _mm256_set1_ps(DJ_T_MIN);
    int64_t s = offsets[tid], e = offsets[tid + 1];
    for (int64_t k = s; k < e; k++) {
        if (n_live == 0) break;
        if (k + PREFETCH_AHEAD < e) prefetch_row(params, gids[k + PREFETCH_AHEAD]);
        const float *p = params + (int64_t)gids[k] * NP;
        int py0, py1, px0, px1;
        if (!pixel_box(p, &t, &py0, &py1, &px0, &px1)) continue;
        const uint32_t bits = box_bits(&t, px0, px1);
        while (py0 < py1 && (row_done[py0 - t.Y0] & bits) == bits) py0++;
        while (py1 > py0 && (row_done[py1 - 1 - t.Y0] & bits) == bits) py1--;
        if (py0 == py1) continue;
        Splat g;
        splat_setup(p, &t, py0, py1, px0, px1, &g);
        const __m256i vkl = _mm256_set1_epi32((int32_t)(k - s));
        for (int py = g.py0; py < g.py1; py++) {
            if ((row_done[py - t.Y0] & bits) == bits) continue;
            float dy = g.my - ((float)py + 0.5f);
            const __m256 ccdy2 = _mm256_set1_ps(g.cc * dy * dy), cbdy = _mm256_set1_ps(g.cb * dy);
            int row = (py - t.Y0) * TS;
            for (int v = 0; v < g.nvec; v++) {
                int q = row + g.j0 + 8 * v;
                __m256 dx = v ? g.dx1 : g.dx0, inside = v ? g.in1 : g.in0;
                __m256 live = _mm256_andnot_ps(_mm256_loadu_ps((const float *)&done[q]), inside);
                __m256 quad = _mm256_fmadd_ps(_mm256_mul_ps(g.vca, dx), dx, ccdy2);
                __m256 power = _mm256_fmadd_ps(half, quad, _mm256_mul_ps(cbdy, dx));
                __m256 m = _mm256_and_ps(live, _mm256_and_ps(_mm256_cmp_ps(power, zero, _CMP_GE_OQ),
                                                             _mm256_cmp_ps(power, g.vlim, _CMP_LE_OQ)));
                if (_mm256_testz_ps(m, m)) continue;
                __m256 alpha = _mm256_min_ps(amax, _mm256_mul_ps(g.vo, exp8(_mm256_sub_ps(zero, power))));
                m = _mm256_and_ps(m, _mm256_cmp_ps(alpha, amin, _CMP_GE_OQ));
                __m256 Ti = _mm256_loadu_ps(&T[q]);
                __m256 nT = _mm256_mul_ps(Ti, _mm256_sub_ps(one, alpha));
                __m256 stop = _mm256_and_ps(m, _mm256_cmp_ps(nT, tmin, _CMP_LE_OQ));
                __m256 comp = _mm256_andnot_ps(stop, m);
                int stops = _mm256_movemask_ps(stop);
                if (stops) {
                    n_live -= __builtin_popcount(stops);
                    row_done[py - t.Y0] |= (uint32_t)stops << (g.j0 + 8 * v); /* stop lanes lie in the box */
                    _mm256_storeu_ps((float *)&done[q], _mm256_or_ps(_mm256_loadu_ps((const float *)&done[q]), stop));
                }
                int comps = _mm256_movemask_ps(comp);
                if (!comps) continue;
                __m256 w = _mm256_and_ps(comp, _mm256_mul_ps(alpha, Ti));
                _mm256_storeu_ps(&acc[0][q], _mm256_fmadd_ps(w, g.vcr, _mm256_loadu_ps(&acc[0][q])));
                _mm256_storeu_ps(&acc[1][q], _mm256_fmadd_ps(w, g.vcg, _mm256_loadu_ps(&acc[1][q])));
                _mm256_storeu_ps(&acc[2][q], _mm256_fmadd_ps(w, g.vcb, _mm256_loadu_ps(&acc[2][q])));
                _mm256_storeu_ps(&acc[3][q], _mm256_fmadd_ps(w, g.vz, _mm256_loadu_ps(&acc[3][q])));
                _mm256_storeu_ps(&T[q], _mm256_blendv_ps(Ti, nT, comp));
                __m256i lq = _mm256_loadu_si256((const __m256i *)&last[q]);
                _mm256_storeu_si256((__m256i *)&last[q], _mm256_blendv_epi8(lq, vkl, _mm256_castps_si256(comp)));
                if (n_v > 0) { /* transpose of compositing: few channels, scalar over the lanes */
                    float wl[8];
                    _mm256_storeu_ps(wl, w);
                    float *vr = v_rows + k * n_v;
                    for (; comps; comps &= comps - 1) {
                        int l = __builtin_ctz(comps);
                        const float *vp = v_pix + ((t.b * H + py) * W + g.px0 + 8 * v + l) * n_v;
                        for (int64_t c = 0; c < n_v; c++) vr[c] += wl[l] * vp[c];
                    }
                }
            }
        }
    }
    for (int py = t.Y0; py < t.Y1; py++) {
        for (int px = t.X0; px < t.X1; px++) {
            int q = (py - t.Y0) * TS + px - t.X0;
            int64_t o = (t.b * H + py) * W + px;
            float Ti = T[q];
            out[o * 5 + 0] = acc[0][q] + Ti * bg[t.b * 3 + 0];
            out[o * 5 + 1] = acc[1][q] + Ti * bg[t.b * 3 + 1];
            out[o * 5 + 2] = acc[2][q] + Ti * bg[t.b * 3 + 2];
            out[o * 5 + 3] = acc[3][q];
            out[o * 5 + 4] = 1.0f - Ti;
            T_out[o] = Ti;
            last_out[o] = last[q];
        }
    }
}

/* Back-to-front gradients of tile tid (cpu._backward's loop body): v_out (B, H, W, 5) [rgb, depth,
 * alpha], T_final and last_idx (B, H, W) from the forward -> v_isect[k] (I, 10) for the tile's
 * intersections k (zeroed by the caller; rows of Gaussians that miss the tile stay zero). */
void dj_backward_tile(const float *params, const int64_t *offsets, const int32_t *gids, const float *bg,
                      const float *T_final, const int32_t *last_idx, const float *v_out, float *v_isect,
                      int64_t tid, int64_t tw, int64_t th, int64_t H, int64_t W) {
    int64_t s = offsets[tid], e = offsets[tid + 1];
    if (e == s) return;
    Tile t = tile_rect(tid, tw, th, H, W);
    /* vp: v_r, v_g, v_b, v_depth, d loss / d T_final times T_final */
    float T[PADDED], buf[4][PADDED], vp[5][PADDED];
    int32_t last[PADDED];
    /* row_last[r]: the latest last contributor in tile row r: a Gaussian after it adds nothing to the
     * row (its lanes all fail last > kl - 1), so such rows and Gaussians are skipped without their lanes */
    int32_t row_last[TS];
    for (int r = 0; r < TS; r++) row_last[r] = -1;
    for (int q = 0; q < PADDED; q++) {
        T[q] = 0.0f;
        buf[0][q] = buf[1][q] = buf[2][q] = buf[3][q] = 0.0f;
        vp[0][q] = vp[1][q] = vp[2][q] = vp[3][q] = vp[4][q] = 0.0f;
        last[q] = -1;
    }
    int32_t max_last = -1;
    const float *bgb = bg + t.b * 3;
    for (int py = t.Y0; py < t.Y1; py++) {
        for (int px = t.X0; px < t.X1; px++) {
            int q = (py - t.Y0) * TS + px - t.X0;
            int64_t o = (t.b * H + py) * W + px;
            const float *v = v_out + o * 5;
            float Tf = T_final[o];
            T[q] = Tf;
            vp[0][q] = v[0];
            vp[1][q] = v[1];
            vp[2][q] = v[2];
            vp[3][q] = v[3];
            vp[4][q] = Tf * (v[0] * bgb[0] + v[1] * bgb[1] + v[2] * bgb[2] - v[4]);
            last[q] = last_idx[o];
            if (last[q] > max_last) max_last = last[q];
            if (last[q] > row_last[py - t.Y0]) row_last[py - t.Y0] = last[q];
        }
    }
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 amax = _mm256_set1_ps(DJ_ALPHA_MAX), amin = _mm256_set1_ps(DJ_ALPHA_MIN);
    for (int64_t k = s + max_last; k >= s; k--) {
        if (k - PREFETCH_AHEAD >= s) prefetch_row(params, gids[k - PREFETCH_AHEAD]);
        const float *p = params + (int64_t)gids[k] * NP;
        const int32_t kl = (int32_t)(k - s);
        int py0, py1, px0, px1;
        if (!pixel_box(p, &t, &py0, &py1, &px0, &px1)) continue;
        while (py0 < py1 && row_last[py0 - t.Y0] < kl) py0++;
        while (py1 > py0 && row_last[py1 - 1 - t.Y0] < kl) py1--;
        if (py0 == py1) continue;
        Splat g;
        splat_setup(p, &t, py0, py1, px0, px1, &g);
        /* lanes where this Gaussian is at or before the pixel's last contributor: last > kl - 1 */
        const __m256i vkl1 = _mm256_set1_epi32(kl - 1);
        /* the conic and mean gradients are sums of v_sigma times dx^2, dx dy, dy^2, dx, dy (v_sigma =
         * d loss / d power): dy is a row's constant, so a row sums v_sigma and v_sigma dx, and the dy
         * factors are applied once per row (s_*), the conic's once per Gaussian (below) */
        __m256 s_dx2 = zero, s_dxdy = zero, s_dy2 = zero, s_dx = zero, s_dy = zero, g_o = zero;
        __m256 g_r = zero, g_g = zero, g_b = zero, g_z = zero;
        for (int py = g.py0; py < g.py1; py++) {
            if (row_last[py - t.Y0] < kl) continue; /* adds exact zeros to the sums below */
            float dy = g.my - ((float)py + 0.5f);
            __m256 r_s = zero, r_sdx = zero;
            const __m256 ccdy2 = _mm256_set1_ps(g.cc * dy * dy), cbdy = _mm256_set1_ps(g.cb * dy);
            int row = (py - t.Y0) * TS;
            for (int v = 0; v < g.nvec; v++) {
                int q = row + g.j0 + 8 * v;
                __m256 dx = v ? g.dx1 : g.dx0;
                __m256i lq = _mm256_loadu_si256((const __m256i *)&last[q]);
                __m256 m = _mm256_and_ps(v ? g.in1 : g.in0, _mm256_castsi256_ps(_mm256_cmpgt_epi32(lq, vkl1)));
                __m256 quad = _mm256_fmadd_ps(_mm256_mul_ps(g.vca, dx), dx, ccdy2);
                __m256 power = _mm256_fmadd_ps(half, quad, _mm256_mul_ps(cbdy, dx));
                m = _mm256_and_ps(m, _mm256_and_ps(_mm256_cmp_ps(power, zero, _CMP_GE_OQ),
                                                   _mm256_cmp_ps(power, g.vlim, _CMP_LE_OQ)));
                if (_mm256_testz_ps(m, m)) continue;
                __m256 vis = exp8(_mm256_sub_ps(zero, power));
                __m256 ov = _mm256_mul_ps(g.vo, vis);
                __m256 alpha = _mm256_min_ps(amax, ov);
                m = _mm256_and_ps(m, _mm256_cmp_ps(alpha, amin, _CMP_GE_OQ));
                if (_mm256_testz_ps(m, m)) continue;
                __m256 ra = _mm256_div_ps(one, _mm256_sub_ps(one, alpha));
                __m256 Tl = _mm256_loadu_ps(&T[q]);
                __m256 Ti = _mm256_mul_ps(Tl, ra);
                _mm256_storeu_ps(&T[q], _mm256_blendv_ps(Tl, Ti, m));
                __m256 fac = _mm256_and_ps(m, _mm256_mul_ps(alpha, Ti));
                __m256 vr = _mm256_loadu_ps(&vp[0][q]), vg = _mm256_loadu_ps(&vp[1][q]);
                __m256 vb = _mm256_loadu_ps(&vp[2][q]), vd = _mm256_loadu_ps(&vp[3][q]);
                g_r = _mm256_fmadd_ps(fac, vr, g_r);
                g_g = _mm256_fmadd_ps(fac, vg, g_g);
                g_b = _mm256_fmadd_ps(fac, vb, g_b);
                g_z = _mm256_fmadd_ps(fac, vd, g_z);
                __m256 b0 = _mm256_loadu_ps(&buf[0][q]), b1 = _mm256_loadu_ps(&buf[1][q]);
                __m256 b2 = _mm256_loadu_ps(&buf[2][q]), b3 = _mm256_loadu_ps(&buf[3][q]);
                __m256 v_alpha = _mm256_mul_ps(_mm256_fnmadd_ps(b0, ra, _mm256_mul_ps(g.vcr, Ti)), vr);
                v_alpha = _mm256_fmadd_ps(_mm256_fnmadd_ps(b1, ra, _mm256_mul_ps(g.vcg, Ti)), vg, v_alpha);
                v_alpha = _mm256_fmadd_ps(_mm256_fnmadd_ps(b2, ra, _mm256_mul_ps(g.vcb, Ti)), vb, v_alpha);
                v_alpha = _mm256_fmadd_ps(_mm256_fnmadd_ps(b3, ra, _mm256_mul_ps(g.vz, Ti)), vd, v_alpha);
                v_alpha = _mm256_fnmadd_ps(_mm256_loadu_ps(&vp[4][q]), ra, v_alpha);
                _mm256_storeu_ps(&buf[0][q], _mm256_fmadd_ps(g.vcr, fac, b0));
                _mm256_storeu_ps(&buf[1][q], _mm256_fmadd_ps(g.vcg, fac, b1));
                _mm256_storeu_ps(&buf[2][q], _mm256_fmadd_ps(g.vcb, fac, b2));
                _mm256_storeu_ps(&buf[3][q], _mm256_fmadd_ps(g.vz, fac, b3));
                /* alpha clamped at ALPHA_MAX: no gradient to the Gaussian's shape or opacity */
                v_alpha = _mm256_and_ps(_mm256_and_ps(m, _mm256_cmp_ps(ov, amax, _CMP_LE_OQ)), v_alpha);
                __m256 v_sigma = _mm256_mul_ps(_mm256_sub_ps(zero, ov), v_alpha);
                __m256 sdx = _mm256_mul_ps(v_sigma, dx);
                r_s = _mm256_add_ps(r_s, v_sigma);
                r_sdx = _mm256_add_ps(r_sdx, sdx);
                s_dx2 = _mm256_fmadd_ps(sdx, dx, s_dx2);
                g_o = _mm256_fmadd_ps(vis, v_alpha, g_o);
            }
            const __m256 vdy = _mm256_set1_ps(dy);
            s_dx = _mm256_add_ps(s_dx, r_sdx);
            s_dxdy = _mm256_fmadd_ps(r_sdx, vdy, s_dxdy);
            s_dy = _mm256_fmadd_ps(r_s, vdy, s_dy);
            s_dy2 = _mm256_fmadd_ps(_mm256_mul_ps(r_s, vdy), vdy, s_dy2);
        }
        float sx = hsum8(s_dx), sy = hsum8(s_dy);
        float *v = v_isect + k * NV;
        v[0] = g.ca * sx + g.cb * sy;
        v[1] = g.cb * sx + g.cc * sy;
        v[2] = 0.5f * hsum8(s_dx2);
        v[3] = hsum8(s_dxdy);
        v[4] = 0.5f * hsum8(s_dy2);
        v[5] = hsum8(g_o);
        v[6] = hsum8(g_r);
        v[7] = hsum8(g_g);
        v[8] = hsum8(g_b);
        v[9] = hsum8(g_z);
    }
}

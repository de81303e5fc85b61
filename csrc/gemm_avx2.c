/* AVX2 + FMA GEMM kernels, compiled per function with target attributes and
 * only called when pl_detect_isa() found AVX2 and FMA (never -mavx2 globally). */
#include "gemm_kernels.h"

#ifdef PL_HAVE_X86_KERNELS
#include <immintrin.h>
#include "gemm_small_body.h"

#define AVX2_FMA __attribute__((target("avx2,fma")))

#define TILE_TARGET AVX2_FMA
#define TILE_MR PL_AVX2_MR
#define TILE_NR PL_AVX2_NR
#define TILE_FN(name) name##_avx2
#define vec __m256
#define vec_zero _mm256_setzero_ps
#define vec_set1 _mm256_set1_ps
#define vec_load _mm256_loadu_ps
#define vec_store _mm256_storeu_ps
#define vec_fmadd _mm256_fmadd_ps
#define vec_mul _mm256_mul_ps
#include "gemm_tile_body.h"

/* The first `rows` rows (1..6, constant once inlined) of a 6x16 tile summed over taps:
 * tile = sum over t < taps of A_t @ (rows [t * cin, (t + 1) * cin) of b_panel), where
 * A_t(i, ch) = src[t][i * step + ch], in the order of t and ch, from zero; c = the tile.
 * An implicit-GEMM convolution's tile: src[t] is where tap t reads the inputs. */
AVX2_FMA static inline __attribute__((always_inline))
void tap_tile_rows(int rows, long taps, const float *const *src, long step, long cin,
                   const float *b_panel, float *c, long ldc) {
    __m256 lo[PL_AVX2_MR], hi[PL_AVX2_MR];
#pragma GCC unroll 6
    for (int i = 0; i < rows; i++) {
        lo[i] = _mm256_setzero_ps();
        hi[i] = _mm256_setzero_ps();
    }
    for (long t = 0; t < taps; t++, b_panel += cin * PL_AVX2_NR)
        accumulate_steps(rows, cin, src[t], step, 1, b_panel, PL_AVX2_NR, lo, hi);
#pragma GCC unroll 6
    for (int i = 0; i < rows; i++) {
        _mm256_storeu_ps(c + i * ldc, lo[i]);
        _mm256_storeu_ps(c + i * ldc + 8, hi[i]);
    }
}

AVX2_FMA void pl_sgemm_ukernel_taps_avx2(int rows, long taps, const float *const *src,
                                         long step, long cin, const float *b_panel, float *c,
                                         long ldc) {
    switch (rows) {
    case 1: tap_tile_rows(1, taps, src, step, cin, b_panel, c, ldc); break;
    case 2: tap_tile_rows(2, taps, src, step, cin, b_panel, c, ldc); break;
    case 3: tap_tile_rows(3, taps, src, step, cin, b_panel, c, ldc); break;
    case 4: tap_tile_rows(4, taps, src, step, cin, b_panel, c, ldc); break;
    case 5: tap_tile_rows(5, taps, src, step, cin, b_panel, c, ldc); break;
    default: tap_tile_rows(6, taps, src, step, cin, b_panel, c, ldc); break;
    }
}

/* The first `rows` rows (1..6, constant once inlined) of a 6x16 tile summed over runs
 * of k steps in order, from zero, then added to c (row stride ldc). */
AVX2_FMA static inline __attribute__((always_inline))
void runs_tile_rows(int rows, long n_runs, const pl_tile_run *runs, long a_offset, long a_step,
                    long b_offset, long ldb, float *c, long ldc) {
    __m256 lo[PL_AVX2_MR], hi[PL_AVX2_MR];
#pragma GCC unroll 6
    for (int i = 0; i < rows; i++) {
        lo[i] = _mm256_setzero_ps();
        hi[i] = _mm256_setzero_ps();
    }
    for (long r = 0; r < n_runs; r++)
        accumulate_steps(rows, runs[r].steps, runs[r].a + a_offset, 1, a_step,
                         runs[r].b + b_offset, ldb, lo, hi);
#pragma GCC unroll 6
    for (int i = 0; i < rows; i++) {
        float *c_row = c + i * ldc;
        _mm256_storeu_ps(c_row, _mm256_add_ps(_mm256_loadu_ps(c_row), lo[i]));
        _mm256_storeu_ps(c_row + 8, _mm256_add_ps(_mm256_loadu_ps(c_row + 8), hi[i]));
    }
}

AVX2_FMA void pl_sgemm_ukernel_runs_avx2(int rows, long n_runs, const pl_tile_run *runs,
                                         long a_offset, long a_step, long b_offset, long ldb,
                                         float *c, long ldc) {
    switch (rows) {
    case 1: runs_tile_rows(1, n_runs, runs, a_offset, a_step, b_offset, ldb, c, ldc); break;
    case 2: runs_tile_rows(2, n_runs, runs, a_offset, a_step, b_offset, ldb, c, ldc); break;
    case 3: runs_tile_rows(3, n_runs, runs, a_offset, a_step, b_offset, ldb, c, ldc); break;
    case 4: runs_tile_rows(4, n_runs, runs, a_offset, a_step, b_offset, ldb, c, ldc); break;
    case 5: runs_tile_rows(5, n_runs, runs, a_offset, a_step, b_offset, ldb, c, ldc); break;
    default: runs_tile_rows(6, n_runs, runs, a_offset, a_step, b_offset, ldb, c, ldc); break;
    }
}

/* rows[0..7] (8 floats each) transposed in place: rows[q] becomes lane q of every row. */
AVX2_FMA static inline void transpose8(__m256 rows[8]) {
    __m256 lo01 = _mm256_unpacklo_ps(rows[0], rows[1]), hi01 = _mm256_unpackhi_ps(rows[0], rows[1]);
    __m256 lo23 = _mm256_unpacklo_ps(rows[2], rows[3]), hi23 = _mm256_unpackhi_ps(rows[2], rows[3]);
    __m256 lo45 = _mm256_unpacklo_ps(rows[4], rows[5]), hi45 = _mm256_unpackhi_ps(rows[4], rows[5]);
    __m256 lo67 = _mm256_unpacklo_ps(rows[6], rows[7]), hi67 = _mm256_unpackhi_ps(rows[6], rows[7]);
    // lanes q and q + 4 of rows 0-3 (quad_a) and of rows 4-7 (quad_b), q = 0..3
    __m256 quad_a[4] = {_mm256_shuffle_ps(lo01, lo23, 0x44), _mm256_shuffle_ps(lo01, lo23, 0xEE),
                        _mm256_shuffle_ps(hi01, hi23, 0x44), _mm256_shuffle_ps(hi01, hi23, 0xEE)};
    __m256 quad_b[4] = {_mm256_shuffle_ps(lo45, lo67, 0x44), _mm256_shuffle_ps(lo45, lo67, 0xEE),
                        _mm256_shuffle_ps(hi45, hi67, 0x44), _mm256_shuffle_ps(hi45, hi67, 0xEE)};
    for (int q = 0; q < 4; q++) {
        rows[q] = _mm256_permute2f128_ps(quad_a[q], quad_b[q], 0x20);
        rows[q + 4] = _mm256_permute2f128_ps(quad_a[q], quad_b[q], 0x31);
    }
}

/* One full nr-column panel (nr a multiple of 8) of op(B) stored transposed:
 * panel[p * nr + col] = b[col * ldb + p] for p < kc, as 8 x 8 blocks read along the
 * rows of b. */
AVX2_FMA static inline __attribute__((always_inline))
void pack_columns_t(int nr, long kc, const float *b, long ldb, float *panel) {
    long p = 0;
    for (; p + 8 <= kc; p += 8)
        for (int group = 0; group < nr / 8; group++) {
            __m256 rows[8];
            for (int col = 0; col < 8; col++)
                rows[col] = _mm256_loadu_ps(b + (group * 8 + col) * ldb + p);
            transpose8(rows);
            for (int q = 0; q < 8; q++) _mm256_storeu_ps(panel + (p + q) * nr + group * 8, rows[q]);
        }
    for (; p < kc; p++)
        for (int col = 0; col < nr; col++) panel[p * nr + col] = b[col * ldb + p];
}

AVX2_FMA void pl_sgemm_pack_panel_t_avx2(long kc, const float *b, long ldb, float *panel) {
    pack_columns_t(16, kc, b, ldb, panel);
}

AVX2_FMA void pl_sgemm_pack_panel_t32_avx2(long kc, const float *b, long ldb, float *panel) {
    pack_columns_t(32, kc, b, ldb, panel);
}

/* One full 8-row panel of op(A) stored as rows (m, k): panel[p * 8 + r] = a[r * lda + p]
 * for p < kc, as 8 x 8 blocks. */
AVX2_FMA void pl_sgemm_pack_panel_a8_avx2(long kc, const float *a, long lda, float *panel) {
    long p = 0;
    for (; p + 8 <= kc; p += 8) {
        __m256 cols[8];
        for (int r = 0; r < 8; r++) cols[r] = _mm256_loadu_ps(a + r * lda + p);
        transpose8(cols);
        for (int q = 0; q < 8; q++) _mm256_storeu_ps(panel + (p + q) * 8, cols[q]);
    }
    for (; p < kc; p++)
        for (int r = 0; r < 8; r++) panel[p * 8 + r] = a[r * lda + p];
}

/* One full 6-row panel of op(A) stored as rows (m, k): panel[p * 6 + r] = a[r * lda + p]
 * for p < kc.  Each 8-column block is transposed as 8 x 8 (rows 6 and 7 zero) and its
 * columns stored 6 floats apart, in order, each store's 2 spare lanes overwritten by the
 * next; the last column of a block is stored as 4 + 2 floats, not past the block. */
AVX2_FMA void pl_sgemm_pack_panel_a_avx2(long kc, const float *a, long lda, float *panel) {
    long p = 0;
    for (; p + 8 <= kc; p += 8) {
        __m256 cols[8];
        for (int r = 0; r < 6; r++) cols[r] = _mm256_loadu_ps(a + r * lda + p);
        cols[6] = cols[7] = _mm256_setzero_ps();
        transpose8(cols);
        float *dst = panel + p * 6;
        for (int q = 0; q < 7; q++) _mm256_storeu_ps(dst + q * 6, cols[q]);
        _mm_storeu_ps(dst + 42, _mm256_castps256_ps128(cols[7]));
        _mm_storel_pi((__m64 *)(dst + 46), _mm256_extractf128_ps(cols[7], 1));
    }
    for (; p < kc; p++)
        for (int r = 0; r < 6; r++) panel[p * 6 + r] = a[r * lda + p];
}

AVX2_FMA void pl_sgemm_small_avx2(int trans_a, int trans_b, long m, long n, long k, float alpha,
                                  const float *a, long lda, const float *b, long ldb,
                                  float beta, float *c, long ldc) {
    small_sgemm_body(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
/* ---- Skinny products: few rows of A, op(B) streamed in place ---- */

/* Lanes [0, count) of a vector set, count 0..8: the mask of a partial last vector (8: all). */
AVX2_FMA static inline __m256i lanes_below(long count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* 8 floats at src, or only the mask's lanes (the others read as 0) when masked. */
AVX2_FMA static inline __m256 load_lanes(const float *src, int masked, __m256i mask) {
    return masked ? _mm256_maskload_ps(src, mask) : _mm256_loadu_ps(src);
}

AVX2_FMA static inline void store_lanes(float *dst, __m256 value, int masked, __m256i mask) {
    if (masked) _mm256_maskstore_ps(dst, mask, value);
    else _mm256_storeu_ps(dst, value);
}

/* Columns of b one streaming pass covers (its sums, 16 KB for 4 rows, stay in L1 or L2),
 * and rows of b each pass over the sums reads: 8 sequential streams. */
#define NN_CHUNK 1024
#define NN_KSTEP 8

/* acc[0:8 * vecs] += sum over s < steps of a_s * b[s * ldb + 0 : 8 * vecs] (in order of
 * s, one FMA each); the last vector masked when masked. */
AVX2_FMA static inline __attribute__((always_inline))
void nn_accumulate(int steps, long vecs, int masked, __m256i mask, const __m256 *a_s,
                   const float *b, long ldb, float *acc) {
    long v = 0;
    for (; v < vecs - masked; v++) {
        __m256 y = _mm256_load_ps(acc + 8 * v);
#pragma GCC unroll 8
        for (int s = 0; s < steps; s++)
            y = _mm256_fmadd_ps(a_s[s], _mm256_loadu_ps(b + s * ldb + 8 * v), y);
        _mm256_store_ps(acc + 8 * v, y);
    }
    if (masked) {
        __m256 y = _mm256_load_ps(acc + 8 * v);
#pragma GCC unroll 8
        for (int s = 0; s < steps; s++)
            y = _mm256_fmadd_ps(a_s[s], _mm256_maskload_ps(b + s * ldb + 8 * v, mask), y);
        _mm256_store_ps(acc + 8 * v, y);
    }
}

/* c (rows, cols) = alpha * a (rows, k) @ b (k, cols) + beta * c, b row stride ldb,
 * cols <= NN_CHUNK: the sums live in an L1 buffer, and each pass over NN_KSTEP rows of b
 * reads them in order.  Every element is one FMA chain over p in order. */
AVX2_FMA static void nn_chunk(long rows, long cols, long k, const float *a, long lda,
                              const float *b, long ldb, float alpha, float beta,
                              float *c, long ldc) {
    _Alignas(64) float acc[PL_SKINNY_GROUP][NN_CHUNK];
    long vecs = (cols + 7) / 8;
    int masked = cols % 8 != 0;
    __m256i mask = lanes_below(cols % 8);
    for (long i = 0; i < rows; i++)
        for (long v = 0; v < vecs; v++) _mm256_store_ps(acc[i] + 8 * v, _mm256_setzero_ps());
    long p = 0;
    for (; p + NN_KSTEP <= k; p += NN_KSTEP)
        for (long i = 0; i < rows; i++) {
            __m256 a_s[NN_KSTEP];
#pragma GCC unroll 8
            for (int s = 0; s < NN_KSTEP; s++)
                a_s[s] = _mm256_broadcast_ss(a + i * lda + p + s);
            if (masked) nn_accumulate(NN_KSTEP, vecs, 1, mask, a_s, b + p * ldb, ldb, acc[i]);
            else nn_accumulate(NN_KSTEP, vecs, 0, mask, a_s, b + p * ldb, ldb, acc[i]);
        }
    for (; p < k; p++)
        for (long i = 0; i < rows; i++) {
            __m256 a_s = _mm256_broadcast_ss(a + i * lda + p);
            nn_accumulate(1, vecs, masked, mask, &a_s, b + p * ldb, ldb, acc[i]);
        }
    __m256 alpha_v = _mm256_set1_ps(alpha), beta_v = _mm256_set1_ps(beta);
    for (long i = 0; i < rows; i++)
        for (long v = 0; v < vecs; v++) {
            int part = masked && v == vecs - 1;
            float *c_vec = c + i * ldc + 8 * v;
            __m256 value = _mm256_mul_ps(alpha_v, _mm256_load_ps(acc[i] + 8 * v));
            if (beta != 0.0f)
                value = _mm256_fmadd_ps(beta_v, load_lanes(c_vec, part, mask), value);
            store_lanes(c_vec, value, part, mask);
        }
}

/* Sum of the 8 lanes, always in the same order. */
AVX2_FMA static inline float lane_sum(__m256 v) {
    __m128 quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
    return _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)));
}

/* c (1, cols) = alpha * a (k) . rows of b (cols, k, row stride ldb) + beta * c: one
 * accumulator per column over p in steps of 8 (the last k % 8 masked), then a lane sum.
 * Every element is computed the same way for any cols. */
AVX2_FMA static inline __attribute__((always_inline))
void tn_tile(int cols, long k, const float *a, const float *b, long ldb, float alpha,
             float beta, float *c) {
    __m256 acc[8];
#pragma GCC unroll 8
    for (int col = 0; col < cols; col++) acc[col] = _mm256_setzero_ps();
    long p = 0;
    for (; p + 8 <= k; p += 8) {
        __m256 a_vec = _mm256_loadu_ps(a + p);
#pragma GCC unroll 8
        for (int col = 0; col < cols; col++)
            acc[col] = _mm256_fmadd_ps(a_vec, _mm256_loadu_ps(b + col * ldb + p), acc[col]);
    }
    if (p < k) {
        __m256i mask = lanes_below(k - p);
        __m256 a_vec = _mm256_maskload_ps(a + p, mask);
#pragma GCC unroll 8
        for (int col = 0; col < cols; col++)
            acc[col] = _mm256_fmadd_ps(a_vec, _mm256_maskload_ps(b + col * ldb + p, mask),
                                       acc[col]);
    }
#pragma GCC unroll 8
    for (int col = 0; col < cols; col++) {
        float value = alpha * lane_sum(acc[col]);
        c[col] = beta == 0.0f ? value : value + beta * c[col];
    }
}

/* Columns [j_begin, j_end) of c (m, n) = alpha * a @ b^T + beta * c for b stored (n, k):
 * 8 rows of b at a time against every row of a, so they are read from memory once. */
AVX2_FMA static void tn_columns(long m, long j_begin, long j_end, long k, float alpha,
                                const float *a, long lda, const float *b, long ldb,
                                float beta, float *c, long ldc) {
    long j = j_begin;
    for (; j + 8 <= j_end; j += 8)
        for (long i = 0; i < m; i++)
            tn_tile(8, k, a + i * lda, b + j * ldb, ldb, alpha, beta, c + i * ldc + j);
    for (; j < j_end; j++)
        for (long i = 0; i < m; i++)
            tn_tile(1, k, a + i * lda, b + j * ldb, ldb, alpha, beta, c + i * ldc + j);
}

/* Chain s of a row's running sums += a_p * b_row: lanes [0, 8) of the columns in low,
 * [8, 16) in high (when wide), the last vector's columns as its mask keeps. */
#define NARROW_STEP(s, a_p, b_row)                                                      \
    do {                                                                                \
        __m256 a_vec = _mm256_set1_ps(a_p);                                             \
        __m256 b_low = wide ? _mm256_loadu_ps(b_row) : _mm256_maskload_ps(b_row, low_mask); \
        low[s] = _mm256_fmadd_ps(a_vec, b_low, low[s]);                                 \
        if (wide)                                                                       \
            high[s] = _mm256_fmadd_ps(a_vec, _mm256_maskload_ps((b_row) + 8, high_mask), \
                                      high[s]);                                         \
    } while (0)

/* alpha * ((chain 0 + chain 1) + (chain 2 + chain 3)) + beta * c, written where mask keeps. */
AVX2_FMA static inline void narrow_store(const __m256 *chains, float alpha, float beta,
                                         float *c, __m256i mask) {
    __m256 sum = _mm256_add_ps(_mm256_add_ps(chains[0], chains[1]),
                               _mm256_add_ps(chains[2], chains[3]));
    __m256 value = _mm256_mul_ps(_mm256_set1_ps(alpha), sum);
    if (beta != 0.0f)
        value = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_maskload_ps(c, mask), value);
    _mm256_maskstore_ps(c, mask, value);
}

/* One row of c: its sums (two column vectors by four chains) stay in registers while it
 * streams b; every chain index is a constant, so no sum goes through memory. */
AVX2_FMA static inline __attribute__((always_inline))
void narrow_row(int wide, long k, const float *a_row, const float *b, long ldb, float alpha,
                float beta, float *c_row, __m256i low_mask, __m256i high_mask) {
    __m256 low[PL_NARROW_CHAINS], high[PL_NARROW_CHAINS];
    for (int s = 0; s < PL_NARROW_CHAINS; s++) low[s] = high[s] = _mm256_setzero_ps();
    long p = 0;
    for (; p + PL_NARROW_CHAINS <= k; p += PL_NARROW_CHAINS) {
        NARROW_STEP(0, a_row[p], b + p * ldb);
        NARROW_STEP(1, a_row[p + 1], b + (p + 1) * ldb);
        NARROW_STEP(2, a_row[p + 2], b + (p + 2) * ldb);
        NARROW_STEP(3, a_row[p + 3], b + (p + 3) * ldb);
    }
    if (p < k) NARROW_STEP(0, a_row[p], b + p * ldb);
    if (p + 1 < k) NARROW_STEP(1, a_row[p + 1], b + (p + 1) * ldb);
    if (p + 2 < k) NARROW_STEP(2, a_row[p + 2], b + (p + 2) * ldb);
    narrow_store(low, alpha, beta, c_row, low_mask);
    if (wide) narrow_store(high, alpha, beta, c_row + 8, high_mask);
}

/* See pl_narrow_fn. */
AVX2_FMA void pl_sgemm_narrow_avx2(long m, long n, long k, float alpha, const float *a,
                                   long lda, const float *b, long ldb, float beta, float *c,
                                   long ldc) {
    __m256i low_mask = lanes_below(n > 8 ? 8 : n), high_mask = lanes_below(n > 8 ? n - 8 : 0);
    for (long i = 0; i < m; i++) {
        if (n > 8)
            narrow_row(1, k, a + i * lda, b, ldb, alpha, beta, c + i * ldc, low_mask, high_mask);
        else
            narrow_row(0, k, a + i * lda, b, ldb, alpha, beta, c + i * ldc, low_mask, high_mask);
    }
}

/* Row groups of a, each streaming the columns of b in chunks. */
AVX2_FMA void pl_sgemm_skinny_avx2(int trans_b, long m, long j_begin, long j_end, long k,
                                   float alpha, const float *a, long lda, const float *b,
                                   long ldb, float beta, float *c, long ldc) {
    if (trans_b) {
        tn_columns(m, j_begin, j_end, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    for (long i0 = 0, rows; i0 < m; i0 += rows) {
        rows = pl_skinny_group_rows(m - i0);
        for (long j = j_begin; j < j_end; j += NN_CHUNK) {
            long cols = j_end - j < NN_CHUNK ? j_end - j : NN_CHUNK;
            nn_chunk(rows, cols, k, a + i0 * lda, lda, b + j, ldb, alpha, beta,
                     c + i0 * ldc + j, ldc);
        }
    }
}
#endif

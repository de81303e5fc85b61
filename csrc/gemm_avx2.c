/* AVX2 + FMA GEMM kernels, compiled per function with target attributes and
 * only called when pl_detect_isa() found AVX2 and FMA (never -mavx2 globally). */
#include "gemm_kernels.h"

#ifdef PL_HAVE_X86_KERNELS
#include <immintrin.h>
#include "gemm_small_body.h"

#define AVX2_FMA __attribute__((target("avx2,fma")))

/* c row = alpha * acc + beta * c row (beta == 0: c row is not read). */
AVX2_FMA static inline void store_row(float *c_row, __m256 lo, __m256 hi,
                                      __m256 alpha, float beta) {
    lo = _mm256_mul_ps(alpha, lo);
    hi = _mm256_mul_ps(alpha, hi);
    if (beta != 0.0f) {
        __m256 beta_v = _mm256_set1_ps(beta);
        lo = _mm256_fmadd_ps(beta_v, _mm256_loadu_ps(c_row), lo);
        hi = _mm256_fmadd_ps(beta_v, _mm256_loadu_ps(c_row + 8), hi);
    }
    _mm256_storeu_ps(c_row, lo);
    _mm256_storeu_ps(c_row + 8, hi);
}

/* The first `rows` rows (1..6, a compile-time constant once inlined) of a 6x16 tile:
 * row i lives in two ymm accumulators lo[i] (columns 0-7) and hi[i] (8-15); each k
 * step loads one 16-float row of the B panel and broadcasts the A panel column. */
AVX2_FMA static inline __attribute__((always_inline))
void tile_rows(int rows, long kc, const float *a_panel, const float *b_panel,
               float *c, long ldc, float alpha, float beta) {
    __m256 lo[PL_AVX2_MR], hi[PL_AVX2_MR];
#pragma GCC unroll 6
    for (int i = 0; i < rows; i++) {
        lo[i] = _mm256_setzero_ps();
        hi[i] = _mm256_setzero_ps();
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (long p = 0; p < kc; p++) {
        __m256 b_lo = _mm256_load_ps(b_panel), b_hi = _mm256_load_ps(b_panel + 8);
#pragma GCC unroll 6
        for (int i = 0; i < rows; i++) {
            __m256 a_bcast = _mm256_broadcast_ss(a_panel + i);
            lo[i] = _mm256_fmadd_ps(a_bcast, b_lo, lo[i]);
            hi[i] = _mm256_fmadd_ps(a_bcast, b_hi, hi[i]);
        }
        a_panel += PL_AVX2_MR;
        b_panel += PL_AVX2_NR;
    }
    __m256 alpha_v = _mm256_set1_ps(alpha);
#pragma GCC unroll 6
    for (int i = 0; i < rows; i++) store_row(c + i * ldc, lo[i], hi[i], alpha_v, beta);
}

AVX2_FMA void pl_sgemm_ukernel_avx2(long kc, const float *a_panel, const float *b_panel,
                                    float *c, long ldc, float alpha, float beta) {
    tile_rows(PL_AVX2_MR, kc, a_panel, b_panel, c, ldc, alpha, beta);
}

/* The first rows (< 6) rows of the tile, written straight into c. */
AVX2_FMA void pl_sgemm_ukernel_rows_avx2(int rows, long kc, const float *a_panel,
                                         const float *b_panel, float *c, long ldc,
                                         float alpha, float beta) {
    switch (rows) {
    case 1: tile_rows(1, kc, a_panel, b_panel, c, ldc, alpha, beta); break;
    case 2: tile_rows(2, kc, a_panel, b_panel, c, ldc, alpha, beta); break;
    case 3: tile_rows(3, kc, a_panel, b_panel, c, ldc, alpha, beta); break;
    case 4: tile_rows(4, kc, a_panel, b_panel, c, ldc, alpha, beta); break;
    default: tile_rows(5, kc, a_panel, b_panel, c, ldc, alpha, beta); break;
    }
}

AVX2_FMA void pl_sgemm_small_avx2(int trans_a, int trans_b, long m, long n, long k, float alpha,
                                  const float *a, long lda, const float *b, long ldb,
                                  float beta, float *c, long ldc) {
    small_sgemm_body(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#endif

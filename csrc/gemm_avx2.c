/* AVX2 + FMA GEMM kernels, compiled per function with target attributes and
 * only called when pl_detect_isa() found AVX2 and FMA (never -mavx2 globally). */
#include "gemm_kernels.h"

#ifdef PL_HAVE_X86_KERNELS
#include <immintrin.h>
#include "gemm_small_body.h"

#define AVX2_FMA __attribute__((target("avx2,fma")))

/* One row of the 6x16 tile: two ymm accumulators lo (columns 0-7), hi (8-15)
 * gain a[row] * (b_lo, b_hi). */
#define ROW_FMA(row, lo, hi)                                   \
    do {                                                       \
        __m256 a_bcast = _mm256_broadcast_ss(a_panel + (row)); \
        lo = _mm256_fmadd_ps(a_bcast, b_lo, lo);               \
        hi = _mm256_fmadd_ps(a_bcast, b_hi, hi);               \
    } while (0)

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

/* The 6x16 tile lives in 12 ymm accumulators; each k step loads one 16-float row
 * of the B panel (2 ymm) and broadcasts the 6 floats of the A panel column. */
AVX2_FMA void pl_sgemm_ukernel_avx2(long kc, const float *a_panel, const float *b_panel,
                                    float *c, long ldc, float alpha, float beta) {
    __m256 c0l = _mm256_setzero_ps(), c0h = _mm256_setzero_ps();
    __m256 c1l = _mm256_setzero_ps(), c1h = _mm256_setzero_ps();
    __m256 c2l = _mm256_setzero_ps(), c2h = _mm256_setzero_ps();
    __m256 c3l = _mm256_setzero_ps(), c3h = _mm256_setzero_ps();
    __m256 c4l = _mm256_setzero_ps(), c4h = _mm256_setzero_ps();
    __m256 c5l = _mm256_setzero_ps(), c5h = _mm256_setzero_ps();
    for (int i = 0; i < PL_AVX2_MR; i++) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
#pragma GCC unroll 4
    for (long p = 0; p < kc; p++) {
        __m256 b_lo = _mm256_load_ps(b_panel), b_hi = _mm256_load_ps(b_panel + 8);
        ROW_FMA(0, c0l, c0h);
        ROW_FMA(1, c1l, c1h);
        ROW_FMA(2, c2l, c2h);
        ROW_FMA(3, c3l, c3h);
        ROW_FMA(4, c4l, c4h);
        ROW_FMA(5, c5l, c5h);
        a_panel += PL_AVX2_MR;
        b_panel += PL_AVX2_NR;
    }
    __m256 alpha_v = _mm256_set1_ps(alpha);
    store_row(c + 0 * ldc, c0l, c0h, alpha_v, beta);
    store_row(c + 1 * ldc, c1l, c1h, alpha_v, beta);
    store_row(c + 2 * ldc, c2l, c2h, alpha_v, beta);
    store_row(c + 3 * ldc, c3l, c3h, alpha_v, beta);
    store_row(c + 4 * ldc, c4l, c4h, alpha_v, beta);
    store_row(c + 5 * ldc, c5l, c5h, alpha_v, beta);
}

AVX2_FMA void pl_sgemm_small_avx2(int trans_a, int trans_b, long m, long n, long k, float alpha,
                                  const float *a, long lda, const float *b, long ldb,
                                  float beta, float *c, long ldc) {
    small_sgemm_body(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#endif

/* AVX-512 GEMM micro-kernels: an 8 x 32 tile, compiled per function with target
 * attributes and only called when pl_detect_isa() found AVX-512F (never -mavx512f
 * globally).  Each element of C is the same chain of FMAs over k, in the same order,
 * as on the AVX2 path's 6 x 16 tile, so both paths give the same bits. */
#include "gemm_kernels.h"

#ifdef PL_HAVE_X86_KERNELS
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

/* c row (32 floats) = acc + beta * c row (beta == 0: c row is not read). */
AVX512 static inline void store_row(float *c_row, __m512 lo, __m512 hi, float beta) {
    if (beta != 0.0f) {
        __m512 beta_v = _mm512_set1_ps(beta);
        lo = _mm512_fmadd_ps(beta_v, _mm512_loadu_ps(c_row), lo);
        hi = _mm512_fmadd_ps(beta_v, _mm512_loadu_ps(c_row + 16), hi);
    }
    _mm512_storeu_ps(c_row, lo);
    _mm512_storeu_ps(c_row + 16, hi);
}

/* The first `rows` rows (1..8, a compile-time constant once inlined) of an 8 x 32 tile:
 * row i lives in two zmm accumulators lo[i] (columns 0-15) and hi[i] (16-31); each k
 * step loads one 32-float row of the B panel and broadcasts element (i, p) of op(A) at
 * a[i * row_step + p * col_step]: (1, 8) in a packed panel, or op(A) in place. */
AVX512 static inline __attribute__((always_inline))
void tile_rows(int rows, long kc, const float *a, long row_step, long col_step,
               const float *b_panel, float *c, long ldc, float alpha, float beta) {
    __m512 lo[PL_AVX512_MR], hi[PL_AVX512_MR];
#pragma GCC unroll 8
    for (int i = 0; i < rows; i++) {
        lo[i] = _mm512_setzero_ps();
        hi[i] = _mm512_setzero_ps();
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (long p = 0; p < kc; p++) {
        __m512 b_lo = _mm512_loadu_ps(b_panel), b_hi = _mm512_loadu_ps(b_panel + 16);
#pragma GCC unroll 8
        for (int i = 0; i < rows; i++) {
            __m512 a_bcast = _mm512_set1_ps(a[i * row_step]);
            lo[i] = _mm512_fmadd_ps(a_bcast, b_lo, lo[i]);
            hi[i] = _mm512_fmadd_ps(a_bcast, b_hi, hi[i]);
        }
        a += col_step;
        b_panel += PL_AVX512_NR;
    }
    if (alpha != 1.0f) {   // times 1 would give the same bits: skipped
        __m512 alpha_v = _mm512_set1_ps(alpha);
#pragma GCC unroll 8
        for (int i = 0; i < rows; i++) {
            lo[i] = _mm512_mul_ps(alpha_v, lo[i]);
            hi[i] = _mm512_mul_ps(alpha_v, hi[i]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < rows; i++) store_row(c + i * ldc, lo[i], hi[i], beta);
}

AVX512 void pl_sgemm_ukernel_avx512(long kc, const float *a_panel, const float *b_panel,
                                    float *c, long ldc, float alpha, float beta) {
    tile_rows(PL_AVX512_MR, kc, a_panel, 1, PL_AVX512_MR, b_panel, c, ldc, alpha, beta);
}

/* The first rows (< 8) rows of the tile, written straight into c. */
#define PANEL_ROWS(r) tile_rows(r, kc, a_panel, 1, PL_AVX512_MR, b_panel, c, ldc, alpha, beta)

AVX512 void pl_sgemm_ukernel_rows_avx512(int rows, long kc, const float *a_panel,
                                         const float *b_panel, float *c, long ldc,
                                         float alpha, float beta) {
    switch (rows) {
    case 1: PANEL_ROWS(1); break;
    case 2: PANEL_ROWS(2); break;
    case 3: PANEL_ROWS(3); break;
    case 4: PANEL_ROWS(4); break;
    case 5: PANEL_ROWS(5); break;
    case 6: PANEL_ROWS(6); break;
    default: PANEL_ROWS(7); break;
    }
}

/* rows (1..8) rows of a tile with op(A) read in place: a row of A holds a row of op(A)
 * (row_step lda, col_step 1) or a column of it (1, lda). */
#define IN_PLACE_ROWS(r)                                                                  \
    (col_step == 1 ? tile_rows(r, kc, a, row_step, 1, b_panel, c, ldc, alpha, beta)       \
                   : tile_rows(r, kc, a, 1, col_step, b_panel, c, ldc, alpha, beta))

AVX512 void pl_sgemm_ukernel_in_place_avx512(int rows, long kc, const float *a,
                                             long row_step, long col_step,
                                             const float *b_panel, float *c, long ldc,
                                             float alpha, float beta) {
    switch (rows) {
    case 1: IN_PLACE_ROWS(1); break;
    case 2: IN_PLACE_ROWS(2); break;
    case 3: IN_PLACE_ROWS(3); break;
    case 4: IN_PLACE_ROWS(4); break;
    case 5: IN_PLACE_ROWS(5); break;
    case 6: IN_PLACE_ROWS(6); break;
    case 7: IN_PLACE_ROWS(7); break;
    default: IN_PLACE_ROWS(8); break;
    }
}
#endif

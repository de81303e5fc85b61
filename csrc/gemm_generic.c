/* Portable GEMM kernels (any CPU): plain C the compiler vectorises for the
 * baseline instruction set. */
#include "gemm_kernels.h"
#include "gemm_small_body.h"

#define MR PL_GENERIC_MR
#define NR PL_GENERIC_NR

/* The first rows (1..MR) of an MR x NR tile, op(A)(i, p) at a[i * row_step + p * col_step]:
 * each sum from zero in the order of p, then c = alpha * sum (+ beta * c). */
static inline __attribute__((always_inline))
void tile_rows(int rows, long kc, const float *a, long row_step, long col_step,
               const float *b_panel, float *c, long ldc, float alpha, float beta) {
    float acc[MR][NR] = {{0}};
    for (long p = 0; p < kc; p++) {
        const float *b_row = b_panel + p * NR;   // row p of the (kc, NR) B slice
        for (int i = 0; i < rows; i++) {
            float a_ip = a[i * row_step + p * col_step];
            for (int j = 0; j < NR; j++) acc[i][j] += a_ip * b_row[j];
        }
    }
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < NR; j++) {
            float value = alpha * acc[i][j];
            c[i * ldc + j] = beta == 0.0f ? value : value + beta * c[i * ldc + j];
        }
}

void pl_sgemm_ukernel_generic(long kc, const float *a_panel, const float *b_panel,
                              float *c, long ldc, float alpha, float beta) {
    tile_rows(MR, kc, a_panel, 1, MR, b_panel, c, ldc, alpha, beta);   // column p at p * MR
}

void pl_sgemm_ukernel_in_place_generic(int rows, long kc, const float *a, long row_step,
                                       long col_step, const float *b_panel, float *c,
                                       long ldc, float alpha, float beta) {
    tile_rows(rows < MR ? rows : MR, kc, a, row_step, col_step, b_panel, c, ldc, alpha, beta);
}

void pl_sgemm_small_generic(int trans_a, int trans_b, long m, long n, long k, float alpha,
                            const float *a, long lda, const float *b, long ldb,
                            float beta, float *c, long ldc) {
    small_sgemm_body(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Columns of b one skinny pass covers: the sums of a row group stay in L1. */
#define SKINNY_CHUNK 1024

/* sums[0:cols] += a_0 * b_0[0:cols] + ... + a_3 * b_3[0:cols], added in that order
 * (b_s = b + s * ldb): four rows of b per pass over the sums. */
static void add_four_rows(long cols, const float *a_s, const float *b, long ldb, float *sums) {
    const float *b0 = b, *b1 = b + ldb, *b2 = b + 2 * ldb, *b3 = b + 3 * ldb;
    for (long j = 0; j < cols; j++)
        sums[j] = (((sums[j] + a_s[0] * b0[j]) + a_s[1] * b1[j]) + a_s[2] * b2[j])
                  + a_s[3] * b3[j];
}

/* c (rows, cols) = alpha * a (rows, k) @ b (k, cols) + beta * c, b row stride ldb,
 * cols <= SKINNY_CHUNK, rows <= PL_SKINNY_GROUP: row p of b is added into the sums of
 * every row of a, k loop outer.  Every element is one multiply-add chain over p in order. */
static void skinny_nn_chunk(long rows, long cols, long k, const float *a, long lda,
                            const float *b, long ldb, float alpha, float beta,
                            float *c, long ldc) {
    float sums[PL_SKINNY_GROUP][SKINNY_CHUNK];
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++) sums[i][j] = 0.0f;
    long p = 0;
    for (; p + 4 <= k; p += 4)
        for (long i = 0; i < rows; i++)
            add_four_rows(cols, a + i * lda + p, b + p * ldb, ldb, sums[i]);
    for (; p < k; p++)
        for (long i = 0; i < rows; i++) {
            float a_ip = a[i * lda + p];
            const float *b_row = b + p * ldb;
            for (long j = 0; j < cols; j++) sums[i][j] += a_ip * b_row[j];
        }
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++) {
            float value = alpha * sums[i][j];
            c[i * ldc + j] = beta == 0.0f ? value : value + beta * c[i * ldc + j];
        }
}

/* See pl_narrow_fn; a row's partial sums are a small array the compiler keeps in
 * registers. */
void pl_sgemm_narrow_generic(long m, long n, long k, float alpha, const float *a, long lda,
                             const float *b, long ldb, float beta, float *c, long ldc) {
    for (long i = 0; i < m; i++) {
        float sums[PL_NARROW_CHAINS][PL_NARROW_N] = {{0.0f}};
        const float *a_row = a + i * lda;
        for (long p = 0; p < k; p++) {
            float *chain = sums[p % PL_NARROW_CHAINS];
            const float *b_row = b + p * ldb;
            for (long j = 0; j < n; j++) chain[j] += a_row[p] * b_row[j];
        }
        for (long j = 0; j < n; j++) {
            float value = alpha * ((sums[0][j] + sums[1][j]) + (sums[2][j] + sums[3][j]));
            c[i * ldc + j] = beta == 0.0f ? value : value + beta * c[i * ldc + j];
        }
    }
}

void pl_sgemm_skinny_generic(int trans_b, long m, long j_begin, long j_end, long k,
                             float alpha, const float *a, long lda, const float *b, long ldb,
                             float beta, float *c, long ldc) {
    if (trans_b) {   // b stored (n, k): each element a dot product of two contiguous rows
        for (long j = j_begin; j < j_end; j++)
            for (long i = 0; i < m; i++) {
                float value = alpha * small_dot(a + i * lda, b + j * ldb, k);
                c[i * ldc + j] = beta == 0.0f ? value : value + beta * c[i * ldc + j];
            }
        return;
    }
    for (long i0 = 0, rows; i0 < m; i0 += rows) {
        rows = pl_skinny_group_rows(m - i0);
        for (long j = j_begin; j < j_end; j += SKINNY_CHUNK)
            skinny_nn_chunk(rows, j_end - j < SKINNY_CHUNK ? j_end - j : SKINNY_CHUNK, k,
                            a + i0 * lda, lda, b + j, ldb, alpha, beta, c + i0 * ldc + j, ldc);
    }
}

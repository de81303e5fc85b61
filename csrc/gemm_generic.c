/* Portable GEMM kernels (any CPU): plain C the compiler vectorises for the
 * baseline instruction set. */
#include "gemm_kernels.h"
#include "gemm_small_body.h"

#define MR PL_GENERIC_MR
#define NR PL_GENERIC_NR

void pl_sgemm_ukernel_generic(long kc, const float *a_panel, const float *b_panel,
                              float *c, long ldc, float alpha, float beta) {
    float acc[MR][NR] = {{0}};
    for (long p = 0; p < kc; p++) {
        const float *a_col = a_panel + p * MR;   // column p of the (MR, kc) A slice
        const float *b_row = b_panel + p * NR;   // row p of the (kc, NR) B slice
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] += a_col[i] * b_row[j];
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            float value = alpha * acc[i][j];
            c[i * ldc + j] = beta == 0.0f ? value : value + beta * c[i * ldc + j];
        }
}

void pl_sgemm_small_generic(int trans_a, int trans_b, long m, long n, long k, float alpha,
                            const float *a, long lda, const float *b, long ldb,
                            float beta, float *c, long ldc) {
    small_sgemm_body(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Columns of b one portable skinny tile spans (the compiler's vector width times 4). */
#define SKINNY_NR 16

/* c (rows, cols) = alpha * a (rows, k) @ b (k, cols) + beta * c, b row stride ldb,
 * cols <= SKINNY_NR: accumulators of a rows x SKINNY_NR tile, k loop outer.  Every
 * element is one multiply-add chain over p in order, whatever cols is. */
static void skinny_nn_tile(long rows, long cols, long k, const float *a, long lda,
                           const float *b, long ldb, float alpha, float beta,
                           float *c, long ldc) {
    float acc[PL_SKINNY_GROUP][SKINNY_NR] = {{0}};
    for (long p = 0; p < k; p++) {
        const float *b_row = b + p * ldb;
        for (long i = 0; i < rows; i++) {
            float a_ip = a[i * lda + p];
            if (cols == SKINNY_NR)   // constant trip count: vectorised
                for (int j = 0; j < SKINNY_NR; j++) acc[i][j] += a_ip * b_row[j];
            else
                for (long j = 0; j < cols; j++) acc[i][j] += a_ip * b_row[j];
        }
    }
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++) {
            float value = alpha * acc[i][j];
            c[i * ldc + j] = beta == 0.0f ? value : value + beta * c[i * ldc + j];
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
        for (long j = j_begin; j < j_end; j += SKINNY_NR)
            skinny_nn_tile(rows, j_end - j < SKINNY_NR ? j_end - j : SKINNY_NR, k,
                           a + i0 * lda, lda, b + j, ldb, alpha, beta, c + i0 * ldc + j, ldc);
    }
}

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

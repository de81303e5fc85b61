/* Placeholder reference GEMM (naive triple loop); replaced by the blocked kernel. */
#include "gemm.h"

void pl_sgemm(const pl_ctx *ctx, int trans_a, int trans_b,
              long m, long n, long k, float alpha,
              const float *a, long lda, const float *b, long ldb,
              float beta, float *c, long ldc) {
    (void)ctx;
    for (long i = 0; i < m; i++)
        for (long j = 0; j < n; j++) {
            float acc = 0.0f;
            for (long p = 0; p < k; p++) {
                float av = trans_a ? a[p * lda + i] : a[i * lda + p];
                float bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                acc += av * bv;
            }
            c[i * ldc + j] = alpha * acc + (beta == 0.0f ? 0.0f : beta * c[i * ldc + j]);
        }
}

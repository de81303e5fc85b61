#ifndef PL_GEMM_H
#define PL_GEMM_H
#include "pl_ctx.h"

/* C = alpha * op(A) @ op(B) + beta * C, single precision, row-major.
 * op(A) is (m, k): A stored (m, k) with row stride lda >= k, or, when trans_a,
 *   A stored (k, m) with lda >= m.  op(B) is (k, n) likewise with ldb.
 * C is (m, n) with ldc >= n.  beta == 0 overwrites C (NaNs in C are not read).
 * Any m, n, k >= 0.  Each output tile is owned by one thread, so the result
 * does not depend on ctx->n_threads. */
void pl_sgemm(const pl_ctx *ctx, int trans_a, int trans_b,
              long m, long n, long k, float alpha,
              const float *a, long lda, const float *b, long ldb,
              float beta, float *c, long ldc);

/* The naive triple loop with the same contract, on one thread: the readable
 * definition that tests compare against. */
void pl_sgemm_ref(int trans_a, int trans_b, long m, long n, long k, float alpha,
                  const float *a, long lda, const float *b, long ldb,
                  float beta, float *c, long ldc);

#endif

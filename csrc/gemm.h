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

/* One product of pl_sgemm_rows_chain: c (m, n) = a (m, k) @ b (k, n), rows k, n and n
 * floats apart, then finish(c + col, n, m, cols, col, arg) on blocks of whole columns
 * (finish NULL: none), or on all of c at once when whole_rows. */
typedef struct {
    long n, k;
    const float *a, *b;
    float *c;
    void (*finish)(float *c, long ldc, long rows, long cols, long col, const void *arg);
    const void *finish_arg;
    int whole_rows;
} pl_rows_product;

/* Products of m rows one after the other, each free to read the c of those before
 * (each product's c its own), in one parallel region for products of at most 8 rows
 * (batch-1 inference): the bits of pl_sgemm (alpha 1, beta 0) followed by finish for
 * each. False, with nothing done, for more rows or when memory is short. */
int pl_sgemm_rows_chain(const pl_ctx *ctx, long m, int count,
                        const pl_rows_product *products);

/* op(B) (k, n) packed once for many products with the same B (a layer's weights):
 * b stored (k, n) with row stride ldb, or (n, k) when trans_b.  Returns a new buffer
 * to release with free(), or NULL when memory is short or n, k <= 0.  Its layout
 * belongs to ctx->isa: use it only with a ctx of the same isa. */
float *pl_sgemm_pack_b(const pl_ctx *ctx, int trans_b, long n, long k, const float *b,
                       long ldb);

/* pl_sgemm, except that where it would pack op(B) it reads packed_b instead: the
 * buffer pl_sgemm_pack_b made of the same op(B) (k, n) values, stored either way.  The
 * same result, bit for bit, without the packing; packed_b NULL is exactly pl_sgemm.
 * One exception: small products that pl_sgemm runs unpacked (m > 8, m * n * k at most
 * 32^3) run the packed loops over packed_b here, much faster for the recurrent layers'
 * small steps, and may differ from pl_sgemm in the last bits. */
void pl_sgemm_packed_b(const pl_ctx *ctx, int trans_a, int trans_b,
                       long m, long n, long k, float alpha,
                       const float *a, long lda, const float *b, long ldb,
                       const float *packed_b, float beta, float *c, long ldc);

/* c (m, n) = a (m, k) @ op(B) + beta * c, op(B) read from packed_b (pl_sgemm_pack_b, any
 * trans_b), on the calling thread only.  Each row of c is summed on its own, in the order
 * of k, so it gets the same bits whichever other rows the call holds: threads that split
 * the rows of one product between them get the bits of one call, which are those
 * pl_sgemm_packed_b gives when it packs (m > 8).  a has row stride lda; m, n, k >= 1;
 * beta == 0 does not read c. */
void pl_sgemm_packed_b_serial(const pl_ctx *ctx, long m, long n, long k, const float *a,
                              long lda, const float *packed_b, float beta, float *c, long ldc);

/* The naive triple loop with the same contract, on one thread: the readable
 * definition that tests compare against. */
void pl_sgemm_ref(int trans_a, int trans_b, long m, long n, long k, float alpha,
                  const float *a, long lda, const float *b, long ldb,
                  float beta, float *c, long ldc);

#endif

/* Embedding lookup: gather rows of a table, and the scatter-add of its gradient. */
#ifndef PL_EMBEDDING_H
#define PL_EMBEDDING_H
#include <stdint.h>
#include "pl_ctx.h"

/* out (n, dim) = table[indices] with table (rows, dim); every index must lie in
 * [0, rows) (the caller checks: no bounds test here). */
void pl_embedding_forward(const pl_ctx *ctx, long n, long dim, const int64_t *indices,
                          const float *table, float *out);

/* dtable (rows, dim) += scatter of dy (n, dim) to the rows named by indices. Threads
 * split the columns, so each sum runs in index order whatever the thread count. */
void pl_embedding_backward(const pl_ctx *ctx, long n, long dim, const int64_t *indices,
                           const float *dy, float *dtable);

#endif

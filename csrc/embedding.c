/* Embedding gather and scatter-add (see embedding.h). */
#include <string.h>
#include "activations.h"
#include "embedding.h"

void pl_embedding_forward(const pl_ctx *ctx, long n, long dim, const int64_t *indices,
                          const float *table, float *out) {
    int nt = pl_elementwise_threads(ctx, n * dim);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long i = 0; i < n; i++)
        memcpy(out + i * dim, table + indices[i] * dim, dim * sizeof(float));
}

/* Columns [begin, end) of the scatter-add, every index in order. */
static void scatter_columns(long n, long dim, long begin, long end, const int64_t *indices,
                            const float *dy, float *dtable) {
    for (long i = 0; i < n; i++) {
        float *target = dtable + indices[i] * dim;
        const float *source = dy + i * dim;
        for (long j = begin; j < end; j++) target[j] += source[j];
    }
}

void pl_embedding_backward(const pl_ctx *ctx, long n, long dim, const int64_t *indices,
                           const float *dy, float *dtable) {
    int nt = pl_elementwise_threads(ctx, n * dim);
    if (nt > dim / 16) nt = dim / 16 > 1 ? (int)(dim / 16) : 1;
    #pragma omp parallel num_threads(nt) if(nt > 1)
    {
        long begin, end;
        pl_team_share(dim, &begin, &end);
        scatter_columns(n, dim, begin, end, indices, dy, dtable);
    }
}

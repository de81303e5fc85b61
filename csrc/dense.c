/* Dense layer: GEMM plus a fused bias/activation pass, and its backward; consecutive
 * layers' inference, a few rows in one parallel region. */
#include <stddef.h>
#include "dense.h"
#include "activations.h"
#include "gemm.h"

void pl_dense_forward(const pl_ctx *ctx, long m, long n, long k, const float *x,
                      const float *w, const float *bias, int act, float alpha, float *y) {
    pl_sgemm(ctx, 0, 0, m, n, k, 1.0f, x, k, w, n, 0.0f, y, n);
    pl_bias_act_forward(ctx, m, n, y, bias, act, alpha);
}

typedef struct {
    const float *bias;   /* (n) or NULL */
    int act;
    float alpha;
} bias_act;

/* pl_rows_product's finish: the block's bias and activation. */
static void finish_bias_act(float *y, long ldy, long rows, long cols, long col,
                            const void *arg) {
    const bias_act *how = arg;
    pl_bias_act_block(rows, cols, y, ldy, how->bias ? how->bias + col : NULL, how->act,
                      how->alpha);
}

/* Layers a chain runs in one parallel region at most (longer ones go layer by layer). */
#define REGION_MAX_LINKS 32

/* The chain as pl_sgemm_rows_chain products; false when it does not take them. */
static int chain_in_one_region(const pl_ctx *ctx, long m, int n_links, const long *widths,
                               const float *const *weights, const int *acts,
                               const float *alphas, const float *x, float *const *hidden,
                               float *y) {
    pl_rows_product products[REGION_MAX_LINKS];
    bias_act finishes[REGION_MAX_LINKS];
    if (n_links < 1 || n_links > REGION_MAX_LINKS) return 0;
    for (int i = 0; i < n_links; i++) {
        finishes[i] = (bias_act){weights[2 * i + 1], acts[i], alphas[i]};
        products[i] = (pl_rows_product){widths[i + 1], widths[i], i ? hidden[i - 1] : x,
                                        weights[2 * i], i + 1 < n_links ? hidden[i] : y,
                                        finish_bias_act, &finishes[i],
                                        acts[i] == PL_ACT_SOFTMAX};
    }
    return pl_sgemm_rows_chain(ctx, m, n_links, products);
}

void pl_dense_chain_forward(const pl_ctx *ctx, long m, int n_links, const long *widths,
                            const float *const *weights, const int *acts, const float *alphas,
                            const float *x, float *const *hidden, float *y) {
    if (chain_in_one_region(ctx, m, n_links, widths, weights, acts, alphas, x, hidden, y))
        return;
    for (int i = 0; i < n_links; i++)
        pl_dense_forward(ctx, m, widths[i + 1], widths[i], i ? hidden[i - 1] : x,
                         weights[2 * i], weights[2 * i + 1], acts[i], alphas[i],
                         i + 1 < n_links ? hidden[i] : y);
}

void pl_dense_backward(const pl_ctx *ctx, long m, long n, long k, const float *x,
                       const float *w, const float *y, const float *dy, int act, float alpha,
                       float *dz, float *dw, float *dbias, int accumulate, float *dx) {
    const float *grad_z = dy;
    if (act != PL_ACT_LINEAR) {
        pl_act_backward(ctx, m, n, y, dy, dz, act, alpha);
        grad_z = dz;
    }
    if (dbias) pl_bias_grad(ctx, m, n, grad_z, dbias, accumulate);
    if (dw) pl_sgemm(ctx, 1, 0, k, n, m, 1.0f, x, k, grad_z, n, accumulate ? 1.0f : 0.0f, dw, n);
    if (dx) pl_sgemm(ctx, 0, 1, m, k, n, 1.0f, grad_z, n, w, n, 0.0f, dx, k);
}

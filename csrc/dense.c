/* Dense layer: GEMM plus a fused bias/activation pass, and its backward. */
#include "dense.h"
#include "activations.h"
#include "gemm.h"

void pl_dense_forward(const pl_ctx *ctx, long m, long n, long k, const float *x,
                      const float *w, const float *bias, int act, float alpha, float *y) {
    pl_sgemm(ctx, 0, 0, m, n, k, 1.0f, x, k, w, n, 0.0f, y, n);
    pl_bias_act_forward(ctx, m, n, y, bias, act, alpha);
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

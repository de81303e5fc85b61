/* Batch and layer normalisation, forward and backward, as fused passes over x.
 * Functions returning int give 0, or -1 when scratch memory is unavailable.
 * Column reductions (per channel) are summed in double over a fixed number of row
 * blocks and combined in block order, so results do not depend on the thread count. */
#ifndef PL_NORM_H
#define PL_NORM_H
#include "pl_ctx.h"

/* x is (m, c): mean and biased variance of each column. */
int pl_bn_moments(const pl_ctx *ctx, long m, long c, const float *x, float *mean, float *var);

/* y (m, c) = (x - mean) / sqrt(var + eps) * gamma + beta; gamma, beta (c) may be NULL. */
int pl_bn_forward(const pl_ctx *ctx, long m, long c, const float *x, const float *mean,
                  const float *var, const float *gamma, const float *beta, float eps, float *y);

/* Gradients of pl_bn_forward.  batch_stats: mean and var are x's own moments (training),
 * so dx includes their dependence on x; otherwise they are constants.  dgamma, dbeta (c)
 * are accumulated when not NULL; dx (m, c) is overwritten when not NULL. */
int pl_bn_backward(const pl_ctx *ctx, long m, long c, const float *x, const float *mean,
                   const float *var, const float *gamma, float eps, const float *dy,
                   int batch_stats, float *dgamma, float *dbeta, float *dx);

/* x is (m, n), normalised over each row: y = (x - mean) * inv_std * gamma + beta with
 * gamma, beta (n) or NULL; mean and inv_std (m) are written for the backward pass. */
void pl_layer_norm_forward(const pl_ctx *ctx, long m, long n, const float *x,
                           const float *gamma, const float *beta, float eps, float *y,
                           float *mean, float *inv_std);

/* Gradients of pl_layer_norm_forward: dgamma, dbeta (n) accumulated when not NULL,
 * dx (m, n) overwritten when not NULL. */
int pl_layer_norm_backward(const pl_ctx *ctx, long m, long n, const float *x,
                           const float *mean, const float *inv_std, const float *gamma,
                           const float *dy, float *dgamma, float *dbeta, float *dx);

#endif

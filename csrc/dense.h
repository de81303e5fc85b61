#ifndef PL_DENSE_H
#define PL_DENSE_H
#include "pl_ctx.h"

/* x (m, k), w (k, n), bias (n) or NULL -> y (m, n) = act(x @ w + bias). */
void pl_dense_forward(const pl_ctx *ctx, long m, long n, long k, const float *x,
                      const float *w, const float *bias, int act, float alpha, float *y);

/* Consecutive layers: widths (n_links + 1) the input's features then each layer's units,
 * weights (2 per layer) kernel and bias (or NULL), acts and alphas per layer; x (m,
 * widths[0]) -> hidden[i] (m, widths[i + 1]) for all but the last layer -> y. Each layer
 * gets pl_dense_forward's bits; batches of at most 8 rows run in one parallel region. */
void pl_dense_chain_forward(const pl_ctx *ctx, long m, int n_links, const long *widths,
                            const float *const *weights, const int *acts, const float *alphas,
                            const float *x, float *const *hidden, float *y);

/* Given y (m, n) from the forward and dy (m, n):
 *   dz = dy * act'(y)           (dz (m, n) scratch; may alias dy)
 *   dw (k, n) += x^T @ dz       (skipped when dw is NULL: frozen weights)
 *   dbias (n) += colsum(dz)     (skipped when NULL)
 *   (dw and dbias are overwritten instead of added to when accumulate is 0)
 *   dx (m, k)  = dz @ w^T       (skipped when NULL: first layer) */
void pl_dense_backward(const pl_ctx *ctx, long m, long n, long k, const float *x,
                       const float *w, const float *y, const float *dy, int act, float alpha,
                       float *dz, float *dw, float *dbias, int accumulate, float *dx);

#endif

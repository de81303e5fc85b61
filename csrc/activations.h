#ifndef PL_ACTIVATIONS_H
#define PL_ACTIVATIONS_H
#include "pl_ctx.h"

/* Activations whose derivative is a function of the output y alone, so the backward
 * pass needs no stored pre-activation. */
enum pl_act {
    PL_ACT_LINEAR = 0, PL_ACT_RELU, PL_ACT_SIGMOID, PL_ACT_TANH, PL_ACT_SOFTMAX,
    PL_ACT_ELU, PL_ACT_SELU, PL_ACT_LEAKY_RELU, PL_ACT_SOFTPLUS, PL_ACT_SOFTSIGN,
    PL_ACT_EXPONENTIAL
};

/* y is (m, n), rows contiguous: y = act(y + bias) in place. bias is (n) or NULL.
 * alpha: ELU alpha or leaky-ReLU negative slope. Softmax is over each row. */
void pl_bias_act_forward(const pl_ctx *ctx, long m, long n, float *y,
                         const float *bias, int act, float alpha);

/* The rows x cols block y (row stride ldy) = act(y + bias) in place on the calling
 * thread, bias (cols) or NULL; softmax over the block's rows. Each element gets
 * pl_bias_act_forward's arithmetic, so a matrix finished block by block (whole rows for
 * softmax) has its bits. */
void pl_bias_act_block(long rows, long cols, float *y, long ldy, const float *bias, int act,
                       float alpha);

/* dz = dy * act'(.) evaluated from the output y, all (m, n); dz may alias dy.
 * Softmax: dz = y * (dy - sum_row(dy * y)). */
void pl_act_backward(const pl_ctx *ctx, long m, long n, const float *y,
                     const float *dy, float *dz, int act, float alpha);

/* dbias[j0, j1) += the column sums of dz (m, n), each over the rows in order from zero,
 * on the calling thread. */
void pl_column_sums(long m, long n, long j0, long j1, const float *dz, float *dbias);

/* dbias (n) += column sums of dz (m, n), or = them when accumulate is 0. Each column
 * summed by one thread in row order, so the result does not depend on the thread count. */
void pl_bias_grad(const pl_ctx *ctx, long m, long n, const float *dz, float *dbias,
                  int accumulate);

/* Threads worth using for `work` elementwise operations (1 below a threshold). */
int pl_elementwise_threads(const pl_ctx *ctx, long work);

#endif

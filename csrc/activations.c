/* Activation forward (with bias) and backward as single passes over (m, n) arrays. */
#include <math.h>
#include "activations.h"

#define SELU_ALPHA 1.6732632423543772f
#define SELU_SCALE 1.0507009873554805f
#define PARALLEL_MIN_WORK 32768L

int pl_elementwise_threads(const pl_ctx *ctx, long work) {
    if (work < PARALLEL_MIN_WORK || ctx->n_threads < 2) return 1;
    long by_work = work / PARALLEL_MIN_WORK;
    return by_work < ctx->n_threads ? (int)by_work : ctx->n_threads;
}

static float act_forward(float z, int act, float alpha) {
    switch (act) {
    case PL_ACT_RELU: return z < 0.0f ? 0.0f : z;   /* NaN passes through, as numpy */
    case PL_ACT_SIGMOID: return 1.0f / (1.0f + expf(-z));
    case PL_ACT_TANH: return tanhf(z);
    case PL_ACT_ELU: return z > 0.0f ? z : alpha * expm1f(z);
    case PL_ACT_SELU: return z > 0.0f ? SELU_SCALE * z : SELU_SCALE * SELU_ALPHA * expm1f(z);
    case PL_ACT_LEAKY_RELU: return z > 0.0f ? z : alpha * z;
    case PL_ACT_SOFTPLUS: return z > 0.0f ? z + log1pf(expf(-z)) : log1pf(expf(z));
    case PL_ACT_SOFTSIGN: return z / (1.0f + fabsf(z));
    case PL_ACT_EXPONENTIAL: return expf(z);
    default: return z;
    }
}

/* d act / d z written in terms of the output y. */
static float act_derivative(float y, int act, float alpha) {
    switch (act) {
    case PL_ACT_RELU: return y > 0.0f ? 1.0f : 0.0f;
    case PL_ACT_SIGMOID: return y * (1.0f - y);
    case PL_ACT_TANH: return 1.0f - y * y;
    case PL_ACT_ELU: return y > 0.0f ? 1.0f : y + alpha;
    case PL_ACT_SELU: return y > 0.0f ? SELU_SCALE : y + SELU_SCALE * SELU_ALPHA;
    case PL_ACT_LEAKY_RELU: return y > 0.0f ? 1.0f : alpha;
    case PL_ACT_SOFTPLUS: return -expm1f(-y);
    case PL_ACT_SOFTSIGN: { float r = 1.0f - fabsf(y); return r * r; }
    case PL_ACT_EXPONENTIAL: return y;
    default: return 1.0f;
    }
}

/* row (n) = softmax(row) */
static void softmax_row(long n, float *row) {
    float top = -INFINITY, total = 0.0f;
    for (long j = 0; j < n; j++)
        if (row[j] > top) top = row[j];
    for (long j = 0; j < n; j++) {
        row[j] = expf(row[j] - top);
        total += row[j];
    }
    float inv_total = 1.0f / total;
    for (long j = 0; j < n; j++) row[j] *= inv_total;
}

/* row (n) += bias (n) */
static void add_bias_row(long n, float *row, const float *bias) {
    for (long j = 0; j < n; j++) row[j] += bias[j];
}

/* row (n) = act(row): the piecewise-linear activations get their own loops, which
 * compilers vectorise; the transcendental ones go element by element. */
static void act_row(long n, float *row, int act, float alpha) {
    switch (act) {
    case PL_ACT_LINEAR: return;
    case PL_ACT_SOFTMAX: softmax_row(n, row); return;
    case PL_ACT_RELU:
        for (long j = 0; j < n; j++) row[j] = row[j] < 0.0f ? 0.0f : row[j];
        return;
    case PL_ACT_LEAKY_RELU:
        for (long j = 0; j < n; j++) row[j] = row[j] > 0.0f ? row[j] : alpha * row[j];
        return;
    default:
        for (long j = 0; j < n; j++) row[j] = act_forward(row[j], act, alpha);
    }
}

void pl_bias_act_block(long rows, long cols, float *y, long ldy, const float *bias, int act,
                       float alpha) {
    for (long i = 0; i < rows; i++) {
        float *row = y + i * ldy;
        if (bias) add_bias_row(cols, row, bias);
        act_row(cols, row, act, alpha);
    }
}

void pl_bias_act_forward(const pl_ctx *ctx, long m, long n, float *y,
                         const float *bias, int act, float alpha) {
    int nt = pl_elementwise_threads(ctx, m * n);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long i = 0; i < m; i++) pl_bias_act_block(1, n, y + i * n, n, bias, act, alpha);
}

/* dz (n) = dy * act'(z), written in terms of the output y (a NaN in dy stays NaN, as
 * in the float64 reference); relu and leaky relu as vectorisable selects. */
static void act_backward_row(long n, const float *y, const float *dy, float *dz, int act,
                             float alpha) {
    switch (act) {
    case PL_ACT_SOFTMAX: {
        float dot = 0.0f;
        for (long j = 0; j < n; j++) dot += dy[j] * y[j];
        for (long j = 0; j < n; j++) dz[j] = y[j] * (dy[j] - dot);
        return;
    }
    case PL_ACT_RELU:
        for (long j = 0; j < n; j++) dz[j] = dy[j] * (y[j] > 0.0f ? 1.0f : 0.0f);
        return;
    case PL_ACT_LEAKY_RELU:
        for (long j = 0; j < n; j++) dz[j] = dy[j] * (y[j] > 0.0f ? 1.0f : alpha);
        return;
    default:
        for (long j = 0; j < n; j++) dz[j] = dy[j] * act_derivative(y[j], act, alpha);
    }
}

void pl_act_backward(const pl_ctx *ctx, long m, long n, const float *y,
                     const float *dy, float *dz, int act, float alpha) {
    int nt = pl_elementwise_threads(ctx, m * n);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long i = 0; i < m; i++)
        act_backward_row(n, y + i * n, dy + i * n, dz + i * n, act, alpha);
}

/* Columns of dz summed in registers at a time: a row's block loads once and adds to
 * accumulators that never go through memory. */
#define SUM_BLOCK 16

void pl_column_sums(long m, long n, long j0, long j1, const float *dz, float *dbias) {
    long j = j0;
    for (; j + SUM_BLOCK <= j1; j += SUM_BLOCK) {
        float acc[SUM_BLOCK] = {0.0f};
        for (long i = 0; i < m; i++)
            for (int c = 0; c < SUM_BLOCK; c++) acc[c] += dz[i * n + j + c];
        for (int c = 0; c < SUM_BLOCK; c++) dbias[j + c] += acc[c];
    }
    for (; j < j1; j++) {
        float acc = 0.0f;
        for (long i = 0; i < m; i++) acc += dz[i * n + j];
        dbias[j] += acc;
    }
}

void pl_bias_grad(const pl_ctx *ctx, long m, long n, const float *dz, float *dbias,
                  int accumulate) {
    int nt = pl_elementwise_threads(ctx, m * n);
    if (nt > n / SUM_BLOCK) nt = n / SUM_BLOCK > 1 ? (int)(n / SUM_BLOCK) : 1;
    #pragma omp parallel num_threads(nt) if(nt > 1)
    {
        long j0, j1;
        pl_team_share(n, &j0, &j1);
        if (!accumulate)
            for (long j = j0; j < j1; j++) dbias[j] = 0.0f;
        pl_column_sums(m, n, j0, j1, dz, dbias);
    }
}

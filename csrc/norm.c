/* Normalisation kernels (see norm.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "norm.h"
#include "activations.h"

/* Row blocks of a column reduction: fixed, so the summation order is too. */
#define ROW_BLOCKS 32

/* What a column reduction sums over the rows of its block. */
enum column_term { TERM_X, TERM_SQUARED_DEVIATION, TERM_DY, TERM_DY_XHAT };

/* x, dy are (m, c); mean and inv_std are per column (c), or per row (m) when
 * stats_per_row (layer norm); xhat = (x - mean) * inv_std.  Unused inputs are NULL. */
typedef struct {
    const float *x, *dy, *mean, *inv_std;
    int stats_per_row;
} term_inputs;

/* out (c) = the sum over rows of the term.  Returns 0, or -1 without memory. */
static int column_sums(const pl_ctx *ctx, long m, long c, enum column_term term,
                       term_inputs in, double *out) {
    double *partial = calloc((size_t)(ROW_BLOCKS * c), sizeof(double));
    if (!partial) return -1;
    long block_rows = (m + ROW_BLOCKS - 1) / ROW_BLOCKS;
    int nt = pl_elementwise_threads(ctx, m * c);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long b = 0; b < ROW_BLOCKS; b++) {
        double *acc = partial + b * c;
        long end = (b + 1) * block_rows < m ? (b + 1) * block_rows : m;
        for (long i = b * block_rows; i < end; i++)
            for (long j = 0; j < c; j++) {
                long k = i * c + j, s = in.stats_per_row ? i : j;
                switch (term) {
                case TERM_X: acc[j] += in.x[k]; break;
                case TERM_SQUARED_DEVIATION: {
                    double d = (double)in.x[k] - in.mean[s];
                    acc[j] += d * d;
                    break;
                }
                case TERM_DY: acc[j] += in.dy[k]; break;
                case TERM_DY_XHAT:
                    acc[j] += (double)in.dy[k] * ((in.x[k] - in.mean[s]) * in.inv_std[s]);
                    break;
                }
            }
    }
    for (long j = 0; j < c; j++) out[j] = 0.0;
    for (long b = 0; b < ROW_BLOCKS; b++)
        for (long j = 0; j < c; j++) out[j] += partial[b * c + j];
    free(partial);
    return 0;
}

int pl_bn_moments(const pl_ctx *ctx, long m, long c, const float *x, float *mean, float *var) {
    double *sums = malloc((size_t)c * sizeof(double));
    term_inputs in = {x, NULL, mean, NULL, 0};
    int status = sums ? column_sums(ctx, m, c, TERM_X, in, sums) : -1;
    if (status == 0) {
        for (long j = 0; j < c; j++) mean[j] = (float)(sums[j] / m);
        status = column_sums(ctx, m, c, TERM_SQUARED_DEVIATION, in, sums);
    }
    if (status == 0)
        for (long j = 0; j < c; j++) var[j] = (float)(sums[j] / m);
    free(sums);
    return status;
}

/* scale (c) = gamma / sqrt(var + eps) and, when shift is not NULL,
 * shift (c) = beta - mean * scale. */
static void affine_of(long c, const float *mean, const float *var, const float *gamma,
                      const float *beta, float eps, float *scale, float *shift) {
    for (long j = 0; j < c; j++) {
        scale[j] = (gamma ? gamma[j] : 1.0f) / sqrtf(var[j] + eps);
        if (shift) shift[j] = (beta ? beta[j] : 0.0f) - mean[j] * scale[j];
    }
}

int pl_bn_forward(const pl_ctx *ctx, long m, long c, const float *x, const float *mean,
                  const float *var, const float *gamma, const float *beta, float eps, float *y) {
    float *scale = malloc((size_t)(2 * c) * sizeof(float));
    if (!scale) return -1;
    float *shift = scale + c;
    affine_of(c, mean, var, gamma, beta, eps, scale, shift);
    int nt = pl_elementwise_threads(ctx, m * c);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long i = 0; i < m; i++)
        for (long j = 0; j < c; j++) y[i * c + j] = x[i * c + j] * scale[j] + shift[j];
    free(scale);
    return 0;
}

/* The gradients from the column sums of dy and dy * xhat (c). */
static void bn_apply_backward(const pl_ctx *ctx, long m, long c, const float *x,
                              const float *mean, float *inv_std, const float *gamma,
                              const float *dy, int batch_stats, const double *sum_dy,
                              const double *sum_dy_xhat, float *dgamma, float *dbeta,
                              float *dx) {
    float *mean_dy = inv_std + c, *mean_dy_xhat = inv_std + 2 * c;
    for (long j = 0; j < c; j++) {
        if (dgamma) dgamma[j] += (float)sum_dy_xhat[j];
        if (dbeta) dbeta[j] += (float)sum_dy[j];
        mean_dy[j] = batch_stats ? (float)(sum_dy[j] / m) : 0.0f;
        mean_dy_xhat[j] = batch_stats ? (float)(sum_dy_xhat[j] / m) : 0.0f;
    }
    if (dx) {
        int nt = pl_elementwise_threads(ctx, m * c);
        #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
        for (long i = 0; i < m; i++)
            for (long j = 0; j < c; j++) {
                long k = i * c + j;
                // with fixed statistics dx does not depend on x (not even a NaN in x)
                float through_stats = batch_stats
                    ? mean_dy[j] + (x[k] - mean[j]) * inv_std[j] * mean_dy_xhat[j] : 0.0f;
                float g = gamma ? gamma[j] : 1.0f;
                dx[k] = g * inv_std[j] * (dy[k] - through_stats);
            }
    }
}

int pl_bn_backward(const pl_ctx *ctx, long m, long c, const float *x, const float *mean,
                   const float *var, const float *gamma, float eps, const float *dy,
                   int batch_stats, float *dgamma, float *dbeta, float *dx) {
    float *inv_std = malloc((size_t)(3 * c) * sizeof(float));
    double *sum_dy = malloc((size_t)(2 * c) * sizeof(double));
    int status = inv_std && sum_dy ? 0 : -1;
    if (status == 0) {
        for (long j = 0; j < c; j++) inv_std[j] = 1.0f / sqrtf(var[j] + eps);
        term_inputs in = {x, dy, mean, inv_std, 0};
        status = column_sums(ctx, m, c, TERM_DY, in, sum_dy);
        if (status == 0) status = column_sums(ctx, m, c, TERM_DY_XHAT, in, sum_dy + c);
    }
    if (status == 0) bn_apply_backward(ctx, m, c, x, mean, inv_std, gamma, dy, batch_stats,
                                       sum_dy, sum_dy + c, dgamma, dbeta, dx);
    free(inv_std);
    free(sum_dy);
    return status;
}

void pl_layer_norm_forward(const pl_ctx *ctx, long m, long n, const float *x,
                           const float *gamma, const float *beta, float eps, float *y,
                           float *mean, float *inv_std) {
    int nt = pl_elementwise_threads(ctx, m * n);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long i = 0; i < m; i++) {
        const float *row = x + i * n;   // (n)
        double sum = 0.0, squares = 0.0;
        for (long j = 0; j < n; j++) sum += row[j];
        double row_mean = sum / n;
        for (long j = 0; j < n; j++) squares += (row[j] - row_mean) * (row[j] - row_mean);
        mean[i] = (float)row_mean;
        inv_std[i] = (float)(1.0 / sqrt(squares / n + eps));
        for (long j = 0; j < n; j++) {
            float xhat = (row[j] - mean[i]) * inv_std[i];
            y[i * n + j] = xhat * (gamma ? gamma[j] : 1.0f) + (beta ? beta[j] : 0.0f);
        }
    }
}

int pl_layer_norm_backward(const pl_ctx *ctx, long m, long n, const float *x,
                           const float *mean, const float *inv_std, const float *gamma,
                           const float *dy, float *dgamma, float *dbeta, float *dx) {
    if (dgamma) {
        double *sums = malloc((size_t)n * sizeof(double));
        term_inputs in = {x, dy, mean, inv_std, 1};
        int status = sums ? column_sums(ctx, m, n, TERM_DY_XHAT, in, sums) : -1;
        for (long j = 0; j < n && status == 0; j++) dgamma[j] += (float)sums[j];
        free(sums);
        if (status) return status;
    }
    if (dbeta) pl_bias_grad(ctx, m, n, dy, dbeta, 1);
    if (!dx) return 0;
    int nt = pl_elementwise_threads(ctx, m * n);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long i = 0; i < m; i++) {
        const float *x_row = x + i * n, *dy_row = dy + i * n;   // (n)
        double sum_g = 0.0, sum_g_xhat = 0.0;
        for (long j = 0; j < n; j++) {
            double g = (double)dy_row[j] * (gamma ? gamma[j] : 1.0f);
            sum_g += g;
            sum_g_xhat += g * ((x_row[j] - mean[i]) * inv_std[i]);
        }
        float mean_g = (float)(sum_g / n), mean_g_xhat = (float)(sum_g_xhat / n);
        for (long j = 0; j < n; j++) {
            float xhat = (x_row[j] - mean[i]) * inv_std[i];
            float g = dy_row[j] * (gamma ? gamma[j] : 1.0f);
            dx[i * n + j] = inv_std[i] * (g - mean_g - xhat * mean_g_xhat);
        }
    }
    return 0;
}

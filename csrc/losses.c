/* Losses fused with their activation (see losses.h): one pass over the rows. */
#include <math.h>
#include "losses.h"

static long first_bad_label(long n, long classes, const int64_t *labels) {
    for (long i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= classes) return i;
    return -1;
}

/* clip that passes NaN through, as numpy's does. */
static double clipped(double x, double low, double high) {
    return x < low ? low : (x > high ? high : x);
}

long pl_sparse_softmax_crossentropy(long n, long classes, const float *p,
                                    const int64_t *labels, double row_weight, double low,
                                    double high, double *value, float *grad) {
    long bad = first_bad_label(n, classes, labels);
    if (bad >= 0) return bad;
    double total_loss = 0.0;
    for (long i = 0; i < n; i++) {
        const float *p_row = p + i * classes;       // (classes)
        float *grad_row = grad + i * classes;
        double row_sum = 0.0;
        for (long j = 0; j < classes; j++) {
            row_sum += (double)p_row[j];
            grad_row[j] = (float)(row_weight * (double)p_row[j]);
        }
        grad_row[labels[i]] = (float)(row_weight * ((double)p_row[labels[i]] - 1.0));
        total_loss += row_weight * -log(clipped((double)p_row[labels[i]] / row_sum, low, high));
    }
    *value = total_loss;
    return -1;
}

void pl_mean_squared_error(long n, long width, const float *p, const float *t,
                           double row_weight, double *value, float *grad) {
    double total_loss = 0.0;
    for (long i = 0; i < n; i++) {
        double row_sum = 0.0;
        for (long j = i * width; j < (i + 1) * width; j++) {
            double error = (double)p[j] - (double)t[j];
            row_sum += error * error;
            grad[j] = (float)(row_weight * (2.0 * error / (double)width));
        }
        total_loss += row_weight * (row_sum / (double)width);
    }
    *value = total_loss;
}

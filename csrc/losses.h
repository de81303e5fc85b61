/* Losses fused with the activation that made their input. */
#ifndef PL_LOSSES_H
#define PL_LOSSES_H
#include <stdint.h>

/* Sparse categorical crossentropy of softmax probabilities p (n, classes), row i
 * labelled labels[i], in double precision:
 *   *value = sum_i row_weight * -log(clip(p[i, label_i] / sum_j p[i, j], low, high))
 *   grad (n, classes) = row_weight * (p[i, :] - onehot(label_i))   (d value / d logits)
 * Returns -1, or the first row whose label lies outside [0, classes); nothing is
 * written then. */
long pl_sparse_softmax_crossentropy(long n, long classes, const float *p,
                                    const int64_t *labels, double row_weight, double low,
                                    double high, double *value, float *grad);

/* Mean squared error of predictions p against targets t, both (n, width):
 *   *value = sum_i row_weight * mean_j (p[i, j] - t[i, j])^2
 *   grad (n, width) = row_weight * 2 (p - t) / width
 * in double precision. */
void pl_mean_squared_error(long n, long width, const float *p, const float *t,
                           double row_weight, double *value, float *grad);

#endif

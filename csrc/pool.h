/* Max and average pooling over 1, 2 or 3 spatial axes, channels last.
 *
 *   x is (n, in_size[0], in_size[1], in_size[2], channels)
 *   y is (n, out_size[0], out_size[1], out_size[2], channels)
 * (1-D and 2-D pooling pass size 1 for the unused leading axes.)  Output position o
 * along axis a covers inputs o * stride[a] - pad[a] + t, t in [0, window[a]); padded
 * positions are skipped: they never win a max and are not counted in an average
 * (TensorFlow's "same" pooling).  Backward passes give each image to one thread. */
#ifndef PL_POOL_H
#define PL_POOL_H
#include "pl_ctx.h"

typedef struct {
    long batch, channels;
    long in_size[3], out_size[3], window[3], stride[3], pad[3];
} pl_pool_geom;

/* 1 when sizes are positive, 0 <= pad < window, and every window holds at least one
 * input position. */
int pl_pool_geom_valid(const pl_pool_geom *g);

/* y = window maxima; argmax (same shape as y, or NULL for none) = index of the winning
 * element inside its image's (in..., channels) block. */
void pl_max_pool_forward(const pl_ctx *ctx, const pl_pool_geom *g, const float *x,
                         float *y, int *argmax);

/* Output line o01 (the flat (o0, o1) index) of one image, as pl_max_pool_forward writes
 * it: maxima into y_line (out_size[2], channels), argmax into arg_line (or NULL), counted
 * from the image's start.  The image's element at offset i is read at x_part[i - skip]:
 * x_part need only hold the input rows this line's windows cover. */
void pl_max_pool_line(const pl_ctx *ctx, const pl_pool_geom *g, long o01, const float *x_part,
                      long skip, float *y_line, int *arg_line);

/* dx (overwritten) = dy routed to the argmax positions. Returns -1, or the position of
 * the first argmax entry outside its image, in which case dx is left untouched. */
long pl_max_pool_backward(const pl_ctx *ctx, const pl_pool_geom *g, const float *dy,
                          const int *argmax, float *dx);

/* y = window means over the non-padded positions. */
void pl_avg_pool_forward(const pl_ctx *ctx, const pl_pool_geom *g, const float *x, float *y);

/* dx (overwritten) = each dy spread evenly over its window's non-padded positions. */
void pl_avg_pool_backward(const pl_ctx *ctx, const pl_pool_geom *g, const float *dy, float *dx);

#endif
